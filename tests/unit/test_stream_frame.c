/* SPDX-License-Identifier: MIT */
/* Frame header and payload codecs (PROTOCOL.md §3-§5), table-driven. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stream/frame.h"
#include "util.h"

/* Headers: type flags stream len seq. */
/* clang-format off */
static const struct {
	const char *hex;
	int want;
} hdr_cases[] = {
	/* valid */
	{ "01 00 0000 00000008 0000000000000000", WIRE_HDR_LEN },  /* HELLO, fixed part only */
	{ "01 00 0000 00001000 0000000000000000", WIRE_HDR_LEN },  /* HELLO at the control cap */
	{ "02 00 0000 00000034 0000000000000000", WIRE_HDR_LEN },  /* WELCOME 52 */
	{ "02 01 0000 00000034 0000000000000000", WIRE_HDR_LEN },  /* WELCOME, plaintext mode */
	{ "03 00 0000 0000002a 0000000000000000", WIRE_HDR_LEN },  /* JOIN 42 */
	{ "04 00 003f 00000004 0000000000000000", WIRE_HDR_LEN },  /* OPEN, last stream id */
	{ "05 00 0001 00000001 ffffffffffffffff", WIRE_HDR_LEN },  /* DATA, 1 raw byte, any seq */
	{ "05 00 0001 00100000 0000000000000007", WIRE_HDR_LEN },  /* DATA at the payload cap */
	{ "05 01 0001 00000005 0000000000000007", WIRE_HDR_LEN },  /* ZSTD, smallest */
	{ "05 02 0001 00000004 0000000000000007", WIRE_HDR_LEN },  /* ZERO */
	{ "06 00 0002 00000008 0000000000000003", WIRE_HDR_LEN },  /* ACK */
	{ "07 00 0002 00000018 0000000000000003", WIRE_HDR_LEN },  /* END 24 */
	{ "08 00 0002 00000008 0000000000000003", WIRE_HDR_LEN },  /* VERIFIED */
	{ "09 00 ffff 00000002 0000000000000000", WIRE_HDR_LEN },  /* ERROR for the session */
	{ "09 00 0005 00000101 0000000000000000", WIRE_HDR_LEN },  /* ERROR, 255 bytes of text */
	{ "0a 00 0000 00000008 0000000000000000", WIRE_HDR_LEN },  /* PING */
	{ "0b 00 0000 00000008 0000000000000000", WIRE_HDR_LEN },  /* PONG */
	{ "0c 00 0000 00000000 0000000000000000", WIRE_HDR_LEN },  /* BYE */
	{ "0d 00 0000 00000000 0000000000000000", WIRE_HDR_LEN },  /* OPENED, stream 0 */
	{ "0d 00 003f 00000000 0000000000000000", WIRE_HDR_LEN },  /* OPENED, last stream id */
	{ "02 02 0000 00000034 0000000000000000", WIRE_HDR_LEN },  /* WELCOME, OPEN acknowledgements */
	{ "02 03 0000 00000034 0000000000000000", WIRE_HDR_LEN },  /* WELCOME, both flags */
	/* unknown types */
	{ "00 00 0000 00000000 0000000000000000", -EBADMSG },
	{ "0e 00 0000 00000000 0000000000000000", -EBADMSG },
	{ "ff 00 0000 ffffffff 0000000000000000", -EBADMSG },
	/* oversize */
	{ "05 00 0001 00100001 0000000000000000", -EMSGSIZE },     /* DATA over 1 MiB */
	{ "05 00 0001 ffffffff 0000000000000000", -EMSGSIZE },
	{ "05 01 0001 ffffffff 0000000000000000", -EMSGSIZE },
	{ "01 00 0000 00001001 0000000000000000", -EMSGSIZE },     /* HELLO over 4 KiB */
	{ "06 00 0000 ffffffff 0000000000000000", -EMSGSIZE },
	{ "09 00 0000 00100000 0000000000000000", -EMSGSIZE },
	/* DATA flags and lengths */
	{ "05 03 0001 00000010 0000000000000000", -EBADMSG },      /* ZSTD and ZERO */
	{ "05 04 0001 00000010 0000000000000000", -EBADMSG },      /* unknown flag */
	{ "05 80 0001 00000010 0000000000000000", -EBADMSG },
	{ "05 00 0001 00000000 0000000000000000", -EBADMSG },      /* empty chunk */
	{ "05 02 0001 00000005 0000000000000000", -EBADMSG },      /* ZERO not exactly 4 */
	{ "05 02 0001 00000003 0000000000000000", -EBADMSG },
	{ "05 01 0001 00000004 0000000000000000", -EBADMSG },      /* ZSTD without a frame */
	{ "05 00 0040 00000010 0000000000000000", -EBADMSG },      /* stream id past the cap */
	{ "05 00 ffff 00000010 0000000000000000", -EBADMSG },      /* session id only on ERROR */
	/* flags on control frames */
	{ "06 01 0000 00000008 0000000000000000", -EBADMSG },
	{ "0c 02 0000 00000000 0000000000000000", -EBADMSG },
	{ "02 04 0000 00000034 0000000000000000", -EBADMSG },      /* WELCOME: only PLAINTEXT and OPENED */
	{ "02 81 0000 00000034 0000000000000000", -EBADMSG },
	{ "0d 02 0001 00000000 0000000000000000", -EBADMSG },      /* OPENED carries no flag */
	{ "0d 01 0001 00000000 0000000000000000", -EBADMSG },
	{ "01 01 0000 00000008 0000000000000000", -EBADMSG },      /* PLAINTEXT only on WELCOME */
	{ "03 01 0000 0000002a 0000000000000000", -EBADMSG },
	/* fixed lengths must match exactly */
	{ "01 00 0000 00000007 0000000000000000", -EBADMSG },      /* HELLO shorter than its fixed part */
	{ "02 00 0000 00000033 0000000000000000", -EBADMSG },
	{ "02 00 0000 00000035 0000000000000000", -EBADMSG },
	{ "03 00 0000 00000029 0000000000000000", -EBADMSG },
	{ "04 00 0000 00000005 0000000000000000", -EBADMSG },
	{ "06 00 0000 00000007 0000000000000000", -EBADMSG },
	{ "07 00 0000 00000010 0000000000000000", -EBADMSG },
	{ "08 00 0000 00000000 0000000000000000", -EBADMSG },
	{ "0a 00 0000 00000000 0000000000000000", -EBADMSG },
	{ "0b 00 0000 00000010 0000000000000000", -EBADMSG },
	{ "0c 00 0000 00000001 0000000000000000", -EBADMSG },
	{ "0d 00 0001 00000001 0000000000000000", -EBADMSG },      /* OPENED is empty */
	{ "0d 00 0001 00000004 0000000000000000", -EBADMSG },
	{ "09 00 0000 00000001 0000000000000000", -EBADMSG },      /* ERROR without a code */
	{ "09 00 0000 00000102 0000000000000000", -EBADMSG },      /* ERROR text over 255 */
	/* stream ids */
	{ "01 00 0001 00000008 0000000000000000", -EBADMSG },      /* HELLO carries stream 0 */
	{ "02 00 0001 00000034 0000000000000000", -EBADMSG },
	{ "03 00 0001 0000002a 0000000000000000", -EBADMSG },
	{ "0a 00 0001 00000008 0000000000000000", -EBADMSG },
	{ "0b 00 ffff 00000008 0000000000000000", -EBADMSG },
	{ "0c 00 0001 00000000 0000000000000000", -EBADMSG },
	{ "04 00 0040 00000004 0000000000000000", -EBADMSG },
	{ "04 00 ffff 00000004 0000000000000000", -EBADMSG },
	{ "0d 00 0040 00000000 0000000000000000", -EBADMSG },      /* OPENED: a stream id, never 0xffff */
	{ "0d 00 ffff 00000000 0000000000000000", -EBADMSG },
	{ "06 00 ffff 00000008 0000000000000000", -EBADMSG },
	{ "07 00 0040 00000018 0000000000000000", -EBADMSG },
	{ "08 00 ffff 00000008 0000000000000000", -EBADMSG },
	{ "09 00 0040 00000002 0000000000000000", -EBADMSG },      /* ERROR: < 64 or 0xffff */
	{ "09 00 fffe 00000002 0000000000000000", -EBADMSG },
};
/* clang-format on */

static void test_hdr_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(hdr_cases) / sizeof(hdr_cases[0]); i++) {
		uint8_t b[WIRE_HDR_LEN], again[WIRE_HDR_LEN];
		struct wire_hdr h;
		size_t n = unhex(hdr_cases[i].hex, b, sizeof(b));
		int r;

		assert_int_equal(n, WIRE_HDR_LEN);
		memset(&h, 0xa5, sizeof(h));
		r = wire_hdr_parse(&h, b, b + n);
		if (r != hdr_cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i, hdr_cases[i].hex, r, hdr_cases[i].want);
		if (r < 0)
			continue;
		wire_hdr_encode(again, &h);
		assert_memory_equal(again, b, WIRE_HDR_LEN);
	}
}

static void test_hdr_short(void **state)
{
	uint8_t b[WIRE_HDR_LEN] = { WIRE_T_BYE };
	struct wire_hdr h;

	(void)state;
	for (size_t n = 0; n < WIRE_HDR_LEN; n++)
		assert_int_equal(wire_hdr_parse(&h, b, b + n), 0);
	assert_int_equal(wire_hdr_parse(&h, b, b + WIRE_HDR_LEN), WIRE_HDR_LEN);
	assert_int_equal(wire_hdr_parse(&h, NULL, NULL), 0);
	assert_int_equal(wire_hdr_parse(&h, b + 4, b), 0); /* end before the cursor */
}

static void test_hdr_fields(void **state)
{
	const struct wire_hdr h = {
		.type = WIRE_T_DATA, .flags = WIRE_F_ZSTD, .stream = 0x0102, .len = 0x0a0b0c, .seq = 0x1122334455667788
	};
	uint8_t b[WIRE_HDR_LEN];
	struct wire_hdr g;

	(void)state;
	wire_hdr_encode(b, &h);
	assert_int_equal(b[0], WIRE_T_DATA);
	assert_int_equal(b[1], WIRE_F_ZSTD);
	assert_int_equal(b[2], 0x01);
	assert_int_equal(b[3], 0x02);
	assert_int_equal(wire_load_be32(b + 4), 0x0a0b0c);
	assert_int_equal(b[8], 0x11);
	assert_int_equal(b[15], 0x88);
	b[3] = 0x02;
	b[2] = 0;
	assert_int_equal(wire_hdr_parse(&g, b, b + sizeof(b)), WIRE_HDR_LEN);
	assert_int_equal(g.stream, 2);
	assert_true(g.seq == h.seq);
}

static void test_frame_parse(void **state)
{
	uint8_t buf[3 * WIRE_HDR_LEN + 8 + 2 + 3];
	struct wire_frame f;
	size_t off = 0;
	ssize_t k;
	uint8_t *p;

	(void)state;
	wire_hdr_encode(buf, &(struct wire_hdr){ .type = WIRE_T_PING, .len = 8, .seq = 0 });
	memcpy(buf + WIRE_HDR_LEN, "\1\2\3\4\5\6\7\x08", 8);
	p = buf + WIRE_HDR_LEN + 8;
	wire_hdr_encode(p, &(struct wire_hdr){ .type = WIRE_T_ERROR, .stream = WIRE_STREAM_SESSION, .len = 2 });
	p[WIRE_HDR_LEN] = 0;
	p[WIRE_HDR_LEN + 1] = WIRE_E_LIMIT;
	p += WIRE_HDR_LEN + 2;
	wire_hdr_encode(p, &(struct wire_hdr){ .type = WIRE_T_DATA, .stream = 3, .len = 3, .seq = 9 });
	memcpy(p + WIRE_HDR_LEN, "abc", 3);

	/* Every prefix that cuts a frame asks for more. */
	for (size_t n = 0; n < WIRE_HDR_LEN + 8; n++)
		assert_int_equal(wire_frame_parse(&f, buf, buf + n), 0);

	k = wire_frame_parse(&f, buf, buf + sizeof(buf));
	assert_int_equal(k, WIRE_HDR_LEN + 8);
	assert_int_equal(f.h.type, WIRE_T_PING);
	assert_ptr_equal(f.payload, buf + WIRE_HDR_LEN);
	off += (size_t)k;
	k = wire_frame_parse(&f, buf + off, buf + sizeof(buf));
	assert_int_equal(k, WIRE_HDR_LEN + 2);
	assert_int_equal(f.h.stream, WIRE_STREAM_SESSION);
	off += (size_t)k;
	assert_int_equal(wire_frame_parse(&f, buf + off, buf + sizeof(buf) - 1), 0);
	k = wire_frame_parse(&f, buf + off, buf + sizeof(buf));
	assert_int_equal(k, WIRE_HDR_LEN + 3);
	assert_true(f.h.seq == 9);
	assert_memory_equal(f.payload, "abc", 3);
	off += (size_t)k;
	assert_int_equal(off, sizeof(buf));
	assert_int_equal(wire_frame_parse(&f, buf + off, buf + off), 0);

	/* A bad header fails even before its payload is there. */
	buf[0] = 0x42;
	assert_int_equal(wire_frame_parse(&f, buf, buf + WIRE_HDR_LEN), -EBADMSG);
	wire_hdr_encode(buf, &(struct wire_hdr){ .type = WIRE_T_DATA, .len = WIRE_MAX_PAYLOAD + 1 });
	assert_int_equal(wire_frame_parse(&f, buf, buf + WIRE_HDR_LEN), -EMSGSIZE);
}

/* clang-format off */
static const struct {
	const char *s;
	bool ok;
} name_cases[] = {
	{ "vm1", true },
	{ "a", true },
	{ "A-Z_0.9", true },
	{ "disk.qcow2", true },
	{ "0123456789012345678901234567890123456789012345678901234567890123", true }, /* 64 */
	{ "01234567890123456789012345678901234567890123456789012345678901234", false }, /* 65 */
	{ "", false },
	{ ".", false },
	{ "..", false },
	{ ".hidden", false },
	{ "a/b", false },
	{ "/etc", false },
	{ "a b", false },
	{ "a\tb", false },
	{ "caf\xc3\xa9", false },
	{ "semi;colon", false },
	{ "x:y", false },
};
/* clang-format on */

static void test_name_ok(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++)
		if (wire_name_ok(name_cases[i].s, strlen(name_cases[i].s)) != name_cases[i].ok)
			fail_msg("name case %zu \"%s\"", i, name_cases[i].s);
	assert_false(wire_name_ok("ab\0c", 4)); /* an embedded NUL is not a name byte */
	assert_false(wire_name_ok(NULL, 3));
}

static void test_hello_roundtrip(void **state)
{
	struct wire_hello h, g;
	uint8_t buf[WIRE_MAX_CONTROL];
	int n;

	(void)state;
	memset(&h, 0, sizeof(h));
	h.version = WIRE_VERSION;
	h.nconns = 4;
	h.flags = WIRE_HELLO_F_ZSTD;
	strcpy(h.target, "vm-42");
	h.multifd = 4;
	h.ndevices = 2;
	strcpy(h.devices[0], "drive0");
	strcpy(h.devices[1], "drive1");
	n = wire_hello_encode(buf, sizeof(buf), &h);
	assert_int_equal(n, 8 + 2 + 5 + 3 + 2 * (2 + 6));
	assert_int_equal(wire_hello_decode(&g, buf, (size_t)n), 0);
	assert_memory_equal(&g, &h, sizeof(h));

	/* Largest HELLO: every field at its cap. */
	memset(&h, 0, sizeof(h));
	h.version = WIRE_VERSION;
	h.nconns = WIRE_MAX_CONNS;
	h.flags = WIRE_HELLO_F_MASK;
	memset(h.target, 't', WIRE_MAX_NAME);
	h.multifd = WIRE_MAX_STREAMS - 1;
	h.ndevices = WIRE_MAX_DEVICES;
	for (int i = 0; i < WIRE_MAX_DEVICES; i++) {
		memset(h.devices[i], 'd', WIRE_MAX_NAME);
		h.devices[i][0] = (char)('a' + i);
	}
	n = wire_hello_encode(buf, sizeof(buf), &h);
	assert_true(n > 0 && n <= WIRE_MAX_CONTROL);
	assert_int_equal(wire_hello_decode(&g, buf, (size_t)n), 0);
	assert_memory_equal(&g, &h, sizeof(h));
	/* Every shorter buffer is refused, never overrun. */
	for (int cap = 0; cap < n; cap++)
		assert_int_equal(wire_hello_encode(buf, (size_t)cap, &h), -EMSGSIZE);

	/* The version is reported, not judged: the server answers UNSUPPORTED. */
	memset(&h, 0, sizeof(h));
	h.version = 77;
	h.nconns = 1;
	strcpy(h.target, "t");
	n = wire_hello_encode(buf, sizeof(buf), &h);
	assert_int_equal(n, 8 + 3);
	assert_int_equal(wire_hello_decode(&g, buf, (size_t)n), 0);
	assert_int_equal(g.version, 77);
	assert_int_equal(g.multifd, 0);
}

static void test_hello_encode_bad(void **state)
{
	struct wire_hello h, base;
	uint8_t buf[WIRE_MAX_CONTROL];

	(void)state;
	memset(&base, 0, sizeof(base));
	base.version = WIRE_VERSION;
	base.nconns = 2;
	strcpy(base.target, "vm");

	h = base;
	h.nconns = 0;
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	h.nconns = WIRE_MAX_CONNS + 1;
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	h.flags = 0x20;
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	h.target[0] = '\0';
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	strcpy(h.target, "../x");
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	memset(h.target, 'a', sizeof(h.target)); /* not NUL-terminated */
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	h.ndevices = WIRE_MAX_DEVICES + 1;
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	h.ndevices = 1;
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL); /* empty device name */
	h = base;
	h.ndevices = 2;
	strcpy(h.devices[0], "d");
	strcpy(h.devices[1], "d");
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL); /* duplicate */
	h = base;
	h.multifd = WIRE_MAX_STREAMS;
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
}

/* HELLO payloads: be16 version, be16 nconns, be32 flags, then TLVs. */
/* clang-format off */
static const struct {
	const char *hex;
	int want;
} hello_cases[] = {
	{ "0001 0001 00000000 01 02 766d", 0 },                     /* target "vm" */
	{ "0001 0001 00000000 02 01 00 01 02 766d", 0 },            /* TLVs in any order */
	{ "0001 0001 00000000 03 01 64 01 02 766d 03 01 65", 0 },   /* two devices */
	{ "", -EBADMSG },
	{ "0001 0001 000000", -EBADMSG },                           /* short fixed part */
	{ "0001 0001 00000000", -EBADMSG },                         /* no target */
	{ "0001 0000 00000000 01 02 766d", -EBADMSG },              /* nconns 0 */
	{ "0001 0041 00000000 01 02 766d", -EBADMSG },              /* nconns 65 */
	{ "0001 ffff 00000000 01 02 766d", -EBADMSG },
	{ "0001 0001 00000010 01 02 766d", 0 },                     /* OPENED (revision 1.2) */
	{ "0001 0001 00000020 01 02 766d", -EBADMSG },              /* unknown flag */
	{ "0001 0001 80000000 01 02 766d", -EBADMSG },
	{ "0001 0001 00000000 01 02 766d 01 02 766d", -EBADMSG },   /* duplicate target */
	{ "0001 0001 00000000 01 00", -EBADMSG },                   /* empty target */
	{ "0001 0001 00000000 01 03 766d", -EBADMSG },              /* TLV runs past the end */
	{ "0001 0001 00000000 01 02 766d 02", -EBADMSG },           /* half a TLV header */
	{ "0001 0001 00000000 01 02 2e2e", -EBADMSG },              /* ".." */
	{ "0001 0001 00000000 01 03 612f62", -EBADMSG },            /* "a/b" */
	{ "0001 0001 00000000 01 03 610062", -EBADMSG },            /* embedded NUL */
	{ "0001 0001 00000000 01 02 766d 09 00", -EBADMSG },        /* unknown tag */
	{ "0001 0001 00000000 01 02 766d 00 00", -EBADMSG },
	{ "0001 0001 00000000 01 02 766d 02 02 0000", -EBADMSG },   /* MULTIFD not 1 byte */
	{ "0001 0001 00000000 01 02 766d 02 00", -EBADMSG },
	{ "0001 0001 00000000 01 02 766d 02 01 40", -EBADMSG },     /* 64 multifd channels */
	{ "0001 0001 00000000 01 02 766d 02 01 01 02 01 01", -EBADMSG }, /* MULTIFD twice */
	{ "0001 0001 00000000 01 02 766d 03 00", -EBADMSG },        /* empty device */
	{ "0001 0001 00000000 01 02 766d 03 01 64 03 01 64", -EBADMSG }, /* same device twice */
	{ "0001 0001 00000000 01 02 766d 03 01 2e", -EBADMSG },
};
/* clang-format on */

static void test_hello_decode_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(hello_cases) / sizeof(hello_cases[0]); i++) {
		uint8_t b[256];
		struct wire_hello h;
		size_t n = unhex(hello_cases[i].hex, b, sizeof(b));
		int r = wire_hello_decode(&h, b, n);

		if (r != hello_cases[i].want)
			fail_msg("hello case %zu (%s): got %d, want %d", i, hello_cases[i].hex, r, hello_cases[i].want);
		if (r < 0)
			assert_int_equal(h.target[0], '\0'); /* nothing half-filled */
	}
}

static void test_hello_decode_limits(void **state)
{
	uint8_t b[WIRE_MAX_CONTROL + 1];
	struct wire_hello h;
	size_t n = 8;

	(void)state;
	memset(b, 0, sizeof(b));
	wire_store_be16(b, 1);
	wire_store_be16(b + 2, 1);
	b[n++] = WIRE_TAG_TARGET;
	b[n++] = 1;
	b[n++] = 't';
	/* 17 devices */
	for (int i = 0; i <= WIRE_MAX_DEVICES; i++) {
		b[n++] = WIRE_TAG_DEVICE;
		b[n++] = 2;
		b[n++] = 'd';
		b[n++] = (uint8_t)('a' + i);
	}
	assert_int_equal(wire_hello_decode(&h, b, n), -EBADMSG);
	assert_int_equal(wire_hello_decode(&h, b, n - 4), 0);
	assert_int_equal(h.ndevices, WIRE_MAX_DEVICES);
	/* Longer than the control cap, however it is built. */
	assert_int_equal(wire_hello_decode(&h, b, sizeof(b)), -EBADMSG);
	/* A 65-byte name. */
	n = 8;
	b[n++] = WIRE_TAG_TARGET;
	b[n++] = WIRE_MAX_NAME + 1;
	memset(b + n, 'x', WIRE_MAX_NAME + 1);
	n += WIRE_MAX_NAME + 1;
	assert_int_equal(wire_hello_decode(&h, b, n), -EBADMSG);
	b[9] = WIRE_MAX_NAME;
	assert_int_equal(wire_hello_decode(&h, b, n - 1), 0);
	assert_int_equal(strlen(h.target), WIRE_MAX_NAME);
}

static void test_welcome(void **state)
{
	struct wire_welcome w = { .session_id = 0x0123456789abcdefull,
				  .conn_index = 3,
				  .max_streams = 8,
				  .window = 4 << 20,
				  .chunk_size = 256 << 10 };
	struct wire_welcome g;
	uint8_t b[WIRE_WELCOME_LEN];

	(void)state;
	for (int i = 0; i < WIRE_TOKEN_LEN; i++)
		w.token[i] = (uint8_t)(i * 7 + 1);
	wire_welcome_encode(b, &w);
	assert_int_equal(wire_welcome_decode(&g, b, sizeof(b)), 0);
	assert_memory_equal(&g, &w, sizeof(w));
	assert_int_equal(wire_welcome_decode(&g, b, sizeof(b) - 1), -EBADMSG);
	assert_int_equal(wire_welcome_decode(&g, NULL, 0), -EBADMSG);

	/* clang-format off */
	static const struct {
		uint16_t conn_index, max_streams;
		uint32_t window, chunk;
		int want;
	} cases[] = {
		{ 0, 1, WIRE_MIN_WINDOW, 1, 0 },
		{ 63, 64, WIRE_MAX_WINDOW, WIRE_MAX_CHUNK, 0 },
		{ 64, 8, 4 << 20, 256 << 10, -EBADMSG },               /* conn index past the cap */
		{ 0, 0, 4 << 20, 256 << 10, -EBADMSG },                /* no streams */
		{ 0, 65, 4 << 20, 256 << 10, -EBADMSG },
		{ 0, 8, WIRE_MIN_WINDOW - 1, 256 << 10, -EBADMSG },    /* window too small */
		{ 0, 8, WIRE_MAX_WINDOW + 1, 256 << 10, -EBADMSG },    /* window too big */
		{ 0, 8, 0xffffffffu, 256 << 10, -EBADMSG },
		{ 0, 8, 4 << 20, 0, -EBADMSG },                        /* chunk size 0 */
		{ 0, 8, 4 << 20, WIRE_MAX_CHUNK + 1, -EBADMSG },
	};
	/* clang-format on */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		w.conn_index = cases[i].conn_index;
		w.max_streams = cases[i].max_streams;
		w.window = cases[i].window;
		w.chunk_size = cases[i].chunk;
		wire_welcome_encode(b, &w);
		if (wire_welcome_decode(&g, b, sizeof(b)) != cases[i].want)
			fail_msg("welcome case %zu", i);
	}
}

static void test_join(void **state)
{
	struct wire_join j = { .session_id = 42, .conn_index = 1 }, g;
	uint8_t b[WIRE_JOIN_LEN];

	(void)state;
	memset(j.token, 0xee, sizeof(j.token));
	wire_join_encode(b, &j);
	assert_int_equal(wire_join_decode(&g, b, sizeof(b)), 0);
	assert_memory_equal(&g, &j, sizeof(j));
	assert_int_equal(wire_join_decode(&g, b, sizeof(b) + 1), -EBADMSG);
	assert_int_equal(wire_join_decode(&g, b, sizeof(b) - 1), -EBADMSG);

	/* clang-format off */
	static const struct {
		uint16_t idx;
		int want;
	} cases[] = { { 1, 0 }, { 63, 0 }, { 0, 0 /* rejoin of connection 0 */ }, { 64, -EBADMSG }, { 0xffff, -EBADMSG } };
	/* clang-format on */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		j.conn_index = cases[i].idx;
		wire_join_encode(b, &j);
		if (wire_join_decode(&g, b, sizeof(b)) != cases[i].want)
			fail_msg("join case %zu", i);
	}
}

static void test_open_end_u64(void **state)
{
	/* clang-format off */
	static const struct {
		const char *hex;
		int want;
	} open_cases[] = {
		{ "00000000", 0 },             /* PLAIN */
		{ "01000000", 0 },             /* MIGRATION */
		{ "02000000", 0 },             /* NBD */
		{ "03000000", -EBADMSG },      /* unknown role */
		{ "ff000000", -EBADMSG },
		{ "00010000", -EBADMSG },      /* reserved bytes must be 0 */
		{ "00000001", -EBADMSG },
		{ "000000", -EBADMSG },        /* short */
		{ "0000000000", -EBADMSG },    /* long */
	};
	/* clang-format on */
	struct wire_end e = { .bytes = 0xfedcba9876543210ull }, ge;
	uint8_t b[WIRE_END_LEN + 1], role;
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(open_cases) / sizeof(open_cases[0]); i++) {
		size_t n = unhex(open_cases[i].hex, b, sizeof(b));

		if (wire_open_decode(&role, b, n) != open_cases[i].want)
			fail_msg("open case %zu", i);
	}
	wire_open_encode(b, WIRE_ROLE_NBD);
	assert_int_equal(wire_open_decode(&role, b, WIRE_OPEN_LEN), 0);
	assert_int_equal(role, WIRE_ROLE_NBD);

	memset(e.digest, 0x5a, sizeof(e.digest));
	e.digest[15] = 1;
	wire_end_encode(b, &e);
	assert_int_equal(wire_end_decode(&ge, b, WIRE_END_LEN), 0);
	assert_memory_equal(&ge, &e, sizeof(e));
	assert_int_equal(wire_end_decode(&ge, b, WIRE_END_LEN - 1), -EBADMSG);
	assert_int_equal(wire_end_decode(&ge, b, WIRE_END_LEN + 1), -EBADMSG);

	wire_u64_encode(b, 0x0102030405060708ull);
	assert_int_equal(b[0], 1);
	assert_int_equal(wire_u64_decode(&v, b, 8), 0);
	assert_true(v == 0x0102030405060708ull);
	assert_int_equal(wire_u64_decode(&v, b, 7), -EBADMSG);
	assert_int_equal(wire_u64_decode(&v, b, 9), -EBADMSG);
	assert_int_equal(wire_u64_decode(&v, b, 0), -EBADMSG);
}

static void test_error(void **state)
{
	uint8_t b[WIRE_ERROR_MIN_LEN + WIRE_MAX_ERROR_TEXT + 1];
	char longtext[400];
	struct wire_errmsg e;
	int n;

	(void)state;
	n = wire_error_encode(b, WIRE_E_DIGEST, "stream 1: mismatch");
	assert_int_equal(n, 2 + 18);
	assert_int_equal(wire_error_decode(&e, b, (size_t)n), 0);
	assert_int_equal(e.code, WIRE_E_DIGEST);
	assert_string_equal(e.text, "stream 1: mismatch");

	n = wire_error_encode(b, WIRE_E_LIMIT, NULL);
	assert_int_equal(n, 2);
	assert_int_equal(wire_error_decode(&e, b, (size_t)n), 0);
	assert_string_equal(e.text, "");

	/* Cut at 255 bytes. */
	memset(longtext, 'x', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	n = wire_error_encode(b, WIRE_E_PROTOCOL, longtext);
	assert_int_equal(n, 2 + WIRE_MAX_ERROR_TEXT);
	assert_int_equal(wire_error_decode(&e, b, (size_t)n), 0);
	assert_int_equal(strlen(e.text), WIRE_MAX_ERROR_TEXT);

	/* Control bytes and non-ASCII become '?', both ways. */
	n = wire_error_encode(b, WIRE_E_TARGET, "a\033[2Jb\n\xff");
	assert_int_equal(wire_error_decode(&e, b, (size_t)n), 0);
	assert_string_equal(e.text, "a?[2Jb??");
	memcpy(b, "\x00\x07" "ok\x00\x7f\x80~ ", 10);
	assert_int_equal(wire_error_decode(&e, b, 10), 0);
	assert_int_equal(e.code, WIRE_E_TARGET);
	assert_string_equal(e.text, "ok???~ ?"); /* the NUL at the end too */

	/* Unknown codes are kept. */
	wire_store_be16(b, 0x7777);
	assert_int_equal(wire_error_decode(&e, b, 2), 0);
	assert_int_equal(e.code, 0x7777);

	assert_int_equal(wire_error_decode(&e, b, 1), -EBADMSG);
	assert_int_equal(wire_error_decode(&e, b, 0), -EBADMSG);
	assert_int_equal(wire_error_decode(&e, b, 2 + WIRE_MAX_ERROR_TEXT + 1), -EBADMSG);
}

static void test_names(void **state)
{
	(void)state;
	for (unsigned c = 0; c <= 0xffff; c++)
		assert_non_null(wire_error_name((uint16_t)c));
	for (unsigned t = 0; t <= 0xff; t++)
		assert_non_null(wire_type_name((uint8_t)t));
	assert_string_equal(wire_error_name(WIRE_E_DIGEST), "digest mismatch");
	assert_string_equal(wire_error_name(WIRE_E_MAX + 1), "unknown error");
	assert_string_equal(wire_type_name(WIRE_T_DATA), "DATA");
	assert_string_equal(wire_type_name(WIRE_T_BYE), "BYE");
	assert_string_equal(wire_type_name(WIRE_T_OPENED), "OPENED");
	assert_string_equal(wire_type_name(WIRE_T_MAX + 1), "UNKNOWN");
	assert_string_equal(wire_type_name(0), "UNKNOWN");
	for (unsigned t = 1; t <= WIRE_T_MAX; t++)
		assert_string_not_equal(wire_type_name((uint8_t)t), "UNKNOWN");
	for (unsigned c = 0; c <= WIRE_E_MAX; c++)
		assert_string_not_equal(wire_error_name((uint16_t)c), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_table),
		cmocka_unit_test(test_hdr_short),
		cmocka_unit_test(test_hdr_fields),
		cmocka_unit_test(test_frame_parse),
		cmocka_unit_test(test_name_ok),
		cmocka_unit_test(test_hello_roundtrip),
		cmocka_unit_test(test_hello_encode_bad),
		cmocka_unit_test(test_hello_decode_table),
		cmocka_unit_test(test_hello_decode_limits),
		cmocka_unit_test(test_welcome),
		cmocka_unit_test(test_join),
		cmocka_unit_test(test_open_end_u64),
		cmocka_unit_test(test_error),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
