/* SPDX-License-Identifier: MIT */
/* HELLO's pre-flight TLVs (PROTOCOL.md §4.1, revision 1.2): round trips, the encoder's refusals, malformed input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stream/frame.h"
#include "util.h"

static void base_hello(struct wire_hello *h)
{
	memset(h, 0, sizeof(*h));
	h->version = WIRE_VERSION;
	h->nconns = 2;
	strcpy(h->target, "vm");
}

/* <n> feature names "fNNN", ascending, into pf. */
static void many_features(struct wire_preflight *pf, int n)
{
	size_t off = 0;

	pf->features[0] = '\0';
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(pf->features + off, sizeof(pf->features) - off, "%sf%03d", i ? " " : "", i);
	pf->nfeatures = (uint16_t)n;
	pf->have |= WIRE_PF_CPU_FEATURES;
}

static void test_roundtrip(void **state)
{
	struct wire_hello h, g;
	uint8_t buf[WIRE_MAX_CONTROL];
	int n, tlvs = 0;

	(void)state;
	base_hello(&h);
	h.pf.have = WIRE_PF_RAM | WIRE_PF_MACHINE | WIRE_PF_CPU_MODEL | WIRE_PF_RAMBLOCKS;
	h.pf.ram_base = 128ull << 20;
	h.pf.ram_plugged = 1ull << 30;
	strcpy(h.pf.machine, "pc-i440fx-7.2");
	strcpy(h.pf.cpu_model, "Skylake-Client-v4");
	h.pf.nblocks = 3;
	strcpy(h.pf.blocks[0].name, "pc.ram");
	h.pf.blocks[0].used = 128ull << 20;
	strcpy(h.pf.blocks[1].name, "/rom@etc/acpi/tables");
	h.pf.blocks[1].used = 0x20000;
	strcpy(h.pf.blocks[2].name, "0000:00:02.0/vga.rom");
	h.pf.blocks[2].used = 0x10000;
	/* 300 names of 4 bytes: 1499 bytes of list, so several TLVs, each cut at a space */
	many_features(&h.pf, 300);
	n = wire_hello_encode(buf, sizeof(buf), &h);
	assert_true(n > 0);
	assert_int_equal(wire_hello_decode(&g, buf, (size_t)n), 0);
	assert_memory_equal(&g, &h, sizeof(h));
	for (int off = 8; off < n; off += 2 + buf[off + 1]) {
		if (buf[off] != WIRE_TAG_PF_CPU_FEATURES)
			continue;
		tlvs++;
		assert_true(buf[off + 2] != ' ' && buf[off + 1 + buf[off + 1]] != ' ');
	}
	assert_int_equal(tlvs, 6); /* 1499 bytes, at most 255 (51 names) a TLV */
	/* Every shorter buffer is refused, never overrun. */
	for (int cap = 0; cap < n; cap++)
		assert_int_equal(wire_hello_encode(buf, (size_t)cap, &h), -EMSGSIZE);

	/* An empty feature list is one empty TLV. */
	base_hello(&h);
	h.pf.have = WIRE_PF_CPU_FEATURES;
	n = wire_hello_encode(buf, sizeof(buf), &h);
	assert_int_equal(n, 8 + 4 + 2);
	assert_int_equal(buf[12], WIRE_TAG_PF_CPU_FEATURES);
	assert_int_equal(buf[13], 0);
	assert_int_equal(wire_hello_decode(&g, buf, (size_t)n), 0);
	assert_memory_equal(&g, &h, sizeof(h));

	/* Without facts the HELLO is what a revision 1.1 server takes. */
	base_hello(&h);
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), 8 + 4);
}

static void test_encode_bad(void **state)
{
	struct wire_hello h, base;
	uint8_t buf[WIRE_MAX_CONTROL];

	(void)state;
	base_hello(&base);
	h = base;
	h.pf.have = 0x20; /* no such fact */
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	h.pf.have = WIRE_PF_MACHINE; /* empty name */
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	h.pf.have = WIRE_PF_CPU_MODEL;
	strcpy(h.pf.cpu_model, "a b");
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	h.pf.have = WIRE_PF_CPU_FEATURES;
	strcpy(h.pf.features, "sse avx"); /* not ascending */
	h.pf.nfeatures = 2;
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	strcpy(h.pf.features, "avx sse");
	h.pf.nfeatures = 3; /* count does not match */
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h.pf.nfeatures = 2;
	assert_true(wire_hello_encode(buf, sizeof(buf), &h) > 0);
	strcpy(h.pf.features, "avx  sse"); /* an empty name */
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	strcpy(h.pf.features, "avx avx");
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	many_features(&h.pf, WIRE_MAX_CPU_FEATURES + 1);
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	h.pf.have = WIRE_PF_RAMBLOCKS; /* with no block */
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h.pf.nblocks = 2;
	strcpy(h.pf.blocks[0].name, "pc.ram");
	strcpy(h.pf.blocks[1].name, "pc.ram");
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	strcpy(h.pf.blocks[1].name, "a\"b");
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h.pf.nblocks = WIRE_MAX_RAMBLOCKS + 1;
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);
	h = base;
	h.pf.nblocks = 1; /* a block without its fact bit */
	strcpy(h.pf.blocks[0].name, "pc.ram");
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EINVAL);

	/* Facts that do not fit beside 16 long device names: -EMSGSIZE, for the client to say so. */
	h = base;
	h.ndevices = WIRE_MAX_DEVICES;
	for (int i = 0; i < WIRE_MAX_DEVICES; i++) {
		memset(h.devices[i], 'd', WIRE_MAX_NAME);
		h.devices[i][0] = (char)('a' + i);
	}
	h.pf.have = WIRE_PF_RAMBLOCKS;
	h.pf.nblocks = WIRE_MAX_RAMBLOCKS;
	for (int i = 0; i < WIRE_MAX_RAMBLOCKS; i++) {
		memset(h.pf.blocks[i].name, 'b', WIRE_MAX_NAME);
		h.pf.blocks[i].name[0] = (char)(i < 26 ? 'A' + i : 'a' + i - 26);
	}
	many_features(&h.pf, 400);
	assert_int_equal(wire_hello_encode(buf, sizeof(buf), &h), -EMSGSIZE);
}

/* HELLO payloads: "0001 0001 00000000 01 02 766d" is nconns 1, target "vm"; pre-flight TLVs follow. */
#define H "0001 0001 00000000 01 02 766d "
#define RAM "04 10 0000000008000000 0000000000000000 "
/* clang-format off */
static const struct {
	const char *hex;
	int want;
} cases[] = {
	{ H RAM, 0 },
	{ H "04 08 0000000008000000", -EBADMSG },                  /* RAM not 16 bytes */
	{ H RAM RAM, -EBADMSG },                                   /* RAM twice */
	{ H "05 02 7063", 0 },                                     /* machine "pc" */
	{ H "05 02 7063 05 02 7063", -EBADMSG },                   /* machine twice */
	{ H "05 00", -EBADMSG },                                   /* empty machine */
	{ H "05 03 612f62", -EBADMSG },                            /* "a/b" */
	{ H "06 06 71656d753634", 0 },                             /* CPU model "qemu64" */
	{ H "06 06 71656d753634 06 01 61", -EBADMSG },             /* model twice */
	{ H "06 02 2e61", -EBADMSG },                              /* ".a" */
	{ H "07 05 6120622063", 0 },                               /* features "a b c" */
	{ H "07 01 61 07 01 62", 0 },                              /* "a", "b": a list spans TLVs */
	{ H "07 03 622061", -EBADMSG },                            /* "b a": not ascending */
	{ H "07 03 612061", -EBADMSG },                            /* "a a" */
	{ H "07 01 62 07 01 61", -EBADMSG },                       /* not ascending across TLVs */
	{ H "07 01 61 07 01 61", -EBADMSG },                       /* a name twice across TLVs */
	{ H "07 02 6120", -EBADMSG },                              /* trailing space */
	{ H "07 02 2061", -EBADMSG },                              /* leading space */
	{ H "07 04 61202062", -EBADMSG },                          /* two spaces */
	{ H "07 03 612f62", -EBADMSG },                            /* "a/b" */
	{ H "07 00", 0 },                                          /* the empty list */
	{ H "07 00 07 01 61", -EBADMSG },                          /* the empty list is alone */
	{ H "07 01 61 07 00", -EBADMSG },
	{ H "07 00 07 00", -EBADMSG },
	{ H "08 0e 0000000008000000 70632e72616d", 0 },             /* block "pc.ram" */
	{ H "08 10 0000000000020000 2f726f6d40657463", 0 },         /* "/rom@etc" */
	{ H "08 08 0000000008000000", -EBADMSG },                  /* no name */
	{ H "08 07 00000000000000", -EBADMSG },                    /* shorter than its size */
	{ H "08 09 0000000000000000 22", -EBADMSG },               /* '"' */
	{ H "08 0a 0000000000000000 6120", -EBADMSG },             /* a space */
	{ H "08 09 0000000000000000 61 08 09 0000000000000001 61", -EBADMSG }, /* a block twice */
	{ H "08 0e 0000000008000000 70632e72616d", 0 },
	{ H RAM "05 02 7063 06 01 61 07 01 61 08 09 0000000000001000 61", 0 }, /* all of them */
	{ H "09 00", -EBADMSG },                                   /* unknown tag */
	{ H "08 ff 00", -EBADMSG },                                /* TLV runs past the end */
	{ "0001 0001 00000000 " RAM, -EBADMSG },                   /* facts, but no target */
};
/* clang-format on */

static void test_decode_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t b[512];
		struct wire_hello h;
		size_t n = unhex(cases[i].hex, b, sizeof(b));
		int r = wire_hello_decode(&h, b, n);

		if (r != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i, cases[i].hex, r, cases[i].want);
		if (r < 0) /* nothing half-filled */
			assert_true(h.target[0] == '\0' && h.pf.have == 0 && h.pf.nblocks == 0 &&
				    h.pf.features[0] == '\0');
	}
}

/* A HELLO with <count> feature names of 4 bytes, 51 a TLV. Its length. */
static size_t feature_tlvs(uint8_t *b, size_t cap, int count)
{
	size_t n = unhex(H, b, cap);

	for (int i = 0; i < count;) {
		size_t len_at = n + 1;

		b[n] = WIRE_TAG_PF_CPU_FEATURES;
		n += 2;
		for (int k = 0; k < 51 && i < count; k++, i++)
			n += (size_t)snprintf((char *)b + n, cap - n, "%sf%03d", k ? " " : "", i);
		b[len_at] = (uint8_t)(n - len_at - 1);
	}
	assert_true(n < cap);
	return n;
}

static void test_decode_limits(void **state)
{
	uint8_t b[WIRE_MAX_CONTROL];
	struct wire_hello h;
	size_t n, blocks_end;

	(void)state;
	n = unhex(H, b, sizeof(b));
	for (int i = 0; i <= WIRE_MAX_RAMBLOCKS; i++) {
		b[n++] = WIRE_TAG_PF_RAMBLOCK;
		b[n++] = 10;
		memset(b + n, 0, 8);
		n += 8;
		b[n++] = 'b';
		b[n++] = (uint8_t)(i < 26 ? 'A' + i : 'a' + i - 26);
	}
	assert_int_equal(wire_hello_decode(&h, b, n), -EBADMSG); /* 33 blocks */
	blocks_end = n - 12;
	assert_int_equal(wire_hello_decode(&h, b, blocks_end), 0);
	assert_int_equal(h.pf.nblocks, WIRE_MAX_RAMBLOCKS);

	n = feature_tlvs(b, sizeof(b), WIRE_MAX_CPU_FEATURES + 1);
	assert_int_equal(wire_hello_decode(&h, b, n), -EBADMSG);
	n = feature_tlvs(b, sizeof(b), WIRE_MAX_CPU_FEATURES);
	assert_int_equal(wire_hello_decode(&h, b, n), 0);
	assert_int_equal(h.pf.nfeatures, WIRE_MAX_CPU_FEATURES);
}

static void test_label_ok(void **state)
{
	(void)state;
	assert_true(wire_label_ok("pc.ram", 6));
	assert_true(wire_label_ok("0000:00:02.0/vga.rom", 20));
	assert_true(wire_label_ok("/rom@etc/acpi/tables", 20));
	assert_false(wire_label_ok("", 0));
	assert_false(wire_label_ok("a b", 3));
	assert_false(wire_label_ok("a\\b", 3));
	assert_false(wire_label_ok("a\"b", 3));
	assert_false(wire_label_ok("a\nb", 3));
	assert_false(wire_label_ok(NULL, 1));
	{
		char big[WIRE_MAX_NAME + 2];

		memset(big, 'x', sizeof(big));
		assert_true(wire_label_ok(big, WIRE_MAX_NAME));
		assert_false(wire_label_ok(big, WIRE_MAX_NAME + 1));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),	 cmocka_unit_test(test_encode_bad),
	    cmocka_unit_test(test_decode_table), cmocka_unit_test(test_decode_limits),
	    cmocka_unit_test(test_label_ok),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
