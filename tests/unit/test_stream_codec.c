/* SPDX-License-Identifier: MIT */
/* Chunk codec (PROTOCOL.md §5.2): ZERO, ZSTD only when smaller, hostile payloads. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "stream/codec.h"

/* Text-like bytes zstd compresses well. */
static void fill_text(uint8_t *p, size_t len)
{
	static const char words[] = "the quick brown fox jumps over the lazy dog; migration page ";

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)words[(i * 7 + i / 61) % (sizeof(words) - 1)];
}

static void fill_random(uint8_t *p, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1664525u + 1013904223u;
		p[i] = (uint8_t)(seed >> 24);
	}
}

static void test_is_zero(void **state)
{
	static const size_t lens[] = { 1, 7, 4095, 4096, 4097, 65536, 1 << 20 };
	uint8_t *b = calloc(1, 1 << 20);

	(void)state;
	assert_non_null(b);
	assert_true(codec_is_zero(b, 0));
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t n = lens[i];

		assert_true(codec_is_zero(b, n));
		/* One set bit anywhere, including past the first comparison block. */
		for (size_t pos = 0; pos < n; pos += n / 3 + 1) {
			b[pos] = 0x80;
			assert_false(codec_is_zero(b, n));
			b[pos] = 0;
		}
		b[n - 1] = 1;
		assert_false(codec_is_zero(b, n));
		b[n - 1] = 0;
	}
	free(b);
}

/* Encodes into a buffer of exactly <len> bytes (so ASan sees any overrun), decodes, compares. */
static unsigned roundtrip(struct codec *c, bool compress, const uint8_t *src, size_t len, size_t *plen)
{
	uint8_t *dst = malloc(len), *raw = malloc(WIRE_MAX_CHUNK);
	size_t n = 0;
	unsigned fl;
	int r;

	assert_non_null(dst);
	assert_non_null(raw);
	fl = codec_encode(c, compress, src, len, dst, &n);
	*plen = n;
	if (fl == 0) {
		assert_int_equal(n, len);
		assert_int_equal(codec_decode(c, 0, src, len, raw, WIRE_MAX_CHUNK), (int)len);
	} else {
		assert_true(n < len); /* only ever when it saves space */
		assert_int_equal(wire_load_be32(dst), len);
		r = codec_decode(c, fl, dst, n, raw, WIRE_MAX_CHUNK);
		assert_int_equal(r, (int)len);
		assert_memory_equal(raw, src, len);
		/* A capacity of exactly the raw length is enough. */
		assert_int_equal(codec_decode(c, fl, dst, n, raw, len), (int)len);
		assert_int_equal(codec_decode(c, fl, dst, n, raw, len - 1), -EBADMSG);
	}
	free(dst);
	free(raw);
	return fl;
}

static void test_encode_choices(void **state)
{
	struct codec *c = codec_new(3);
	uint8_t *b = malloc(WIRE_MAX_CHUNK);
	size_t n;

	(void)state;
	assert_non_null(c);
	assert_non_null(b);

	memset(b, 0, WIRE_MAX_CHUNK);
	assert_int_equal(roundtrip(c, true, b, WIRE_MAX_CHUNK, &n), WIRE_F_ZERO);
	assert_int_equal(n, WIRE_ZHDR_LEN);
	assert_int_equal(roundtrip(c, false, b, 4096, &n), WIRE_F_ZERO); /* ZERO needs no zstd */
	assert_int_equal(roundtrip(c, true, b, 5, &n), WIRE_F_ZERO);
	assert_int_equal(roundtrip(c, true, b, 4, &n), 0); /* would not save anything */
	assert_int_equal(roundtrip(c, true, b, 1, &n), 0);

	fill_text(b, WIRE_MAX_CHUNK);
	assert_int_equal(roundtrip(c, true, b, WIRE_MAX_CHUNK, &n), WIRE_F_ZSTD);
	assert_true(n < WIRE_MAX_CHUNK / 4);
	assert_int_equal(roundtrip(c, true, b, 256 << 10, &n), WIRE_F_ZSTD);
	assert_int_equal(roundtrip(c, false, b, 256 << 10, &n), 0);
	assert_int_equal(roundtrip(NULL, true, b, 256 << 10, &n), 0); /* no codec: raw */
	assert_int_equal(roundtrip(c, true, b, 8, &n), 0);            /* too small to gain */

	fill_random(b, WIRE_MAX_CHUNK, 7);
	assert_int_equal(roundtrip(c, true, b, WIRE_MAX_CHUNK, &n), 0);
	assert_int_equal(roundtrip(c, true, b, 100, &n), 0);

	/* Nothing to encode, or too much: raw, and nothing written. */
	n = 99;
	assert_int_equal(codec_encode(c, true, NULL, 10, b, &n), 0);
	assert_int_equal(n, 10);
	assert_int_equal(codec_encode(c, true, b, 0, b, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(codec_encode(c, true, b, WIRE_MAX_CHUNK + 1, b, &n), 0);

	/* A chunk where zstd saves just a few bytes: either way, never bigger. */
	fill_random(b, 4096, 9);
	memset(b + 4000, 'a', 96);
	roundtrip(c, true, b, 4096, &n);
	assert_true(n <= 4096);

	codec_free(c);
	free(b);
}

static void test_levels(void **state)
{
	static const int levels[] = { -5, 0, 1, 3, 9, 19, 22, 1000 };
	uint8_t *b = malloc(WIRE_MAX_CHUNK);
	size_t n;

	(void)state;
	assert_non_null(b);
	fill_text(b, WIRE_MAX_CHUNK);
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		struct codec *c = codec_new(levels[i]);

		assert_non_null(c);
		/* High levels pick big windows: what we send must still pass our own decoder. */
		assert_int_equal(roundtrip(c, true, b, WIRE_MAX_CHUNK, &n), WIRE_F_ZSTD);
		codec_free(c);
	}
	codec_free(NULL);
	free(b);
}

/* A hostile payload: be32 raw length, then <z> (its own zstd bytes). */
static size_t payload(uint8_t *out, uint32_t raw, const void *z, size_t zlen)
{
	wire_store_be32(out, raw);
	memcpy(out + WIRE_ZHDR_LEN, z, zlen);
	return WIRE_ZHDR_LEN + zlen;
}

static void test_decode_hostile(void **state)
{
	struct codec *c = codec_new(3);
	uint8_t *src = malloc(WIRE_MAX_CHUNK), *z = malloc(ZSTD_compressBound(WIRE_MAX_CHUNK));
	uint8_t *p = malloc(2 * ZSTD_compressBound(WIRE_MAX_CHUNK) + 8), *dst = malloc(WIRE_MAX_CHUNK);
	size_t zbig, zsmall, z2, n;

	(void)state;
	assert_true(c && src && z && p && dst);
	fill_text(src, WIRE_MAX_CHUNK);
	zbig = ZSTD_compress(z, ZSTD_compressBound(WIRE_MAX_CHUNK), src, WIRE_MAX_CHUNK, 3);
	assert_false(ZSTD_isError(zbig));

	/* Flags */
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD | WIRE_F_ZERO, p, 8, dst, WIRE_MAX_CHUNK), -EBADMSG);
	assert_int_equal(codec_decode(c, 0x4, p, 8, dst, WIRE_MAX_CHUNK), -EBADMSG);
	assert_int_equal(codec_decode(c, 0x100, p, 8, dst, WIRE_MAX_CHUNK), -EBADMSG);
	/* Raw */
	assert_int_equal(codec_decode(c, 0, p, 0, dst, WIRE_MAX_CHUNK), -EBADMSG);
	assert_int_equal(codec_decode(c, 0, p, WIRE_MAX_CHUNK + 1, dst, WIRE_MAX_CHUNK), -EBADMSG);
	assert_int_equal(codec_decode(c, 0, p, 17, NULL, 0), 17);
	wire_store_be32(p, 10);
	assert_int_equal(codec_decode(c, WIRE_F_ZERO, p, 4, NULL, WIRE_MAX_CHUNK), -EINVAL);

	/* ZERO: the raw length is bounded before anything is written. */
	/* clang-format off */
	static const struct {
		size_t len;
		uint32_t raw;
		size_t cap;
		int want;
	} zero_cases[] = {
		{ 4, 1, WIRE_MAX_CHUNK, 1 },
		{ 4, WIRE_MAX_CHUNK, WIRE_MAX_CHUNK, WIRE_MAX_CHUNK },
		{ 4, 0, WIRE_MAX_CHUNK, -EBADMSG },
		{ 4, WIRE_MAX_CHUNK + 1, 2 * WIRE_MAX_CHUNK, -EBADMSG },
		{ 4, 0xffffffffu, WIRE_MAX_CHUNK, -EBADMSG },
		{ 4, 4097, 4096, -EBADMSG },
		{ 3, 1, WIRE_MAX_CHUNK, -EBADMSG },
		{ 5, 1, WIRE_MAX_CHUNK, -EBADMSG },
	};
	/* clang-format on */
	for (size_t i = 0; i < sizeof(zero_cases) / sizeof(zero_cases[0]); i++) {
		memset(p, 0xff, 8);
		wire_store_be32(p, zero_cases[i].raw);
		memset(dst, 0x55, WIRE_MAX_CHUNK);
		if (codec_decode(c, WIRE_F_ZERO, p, zero_cases[i].len, dst, zero_cases[i].cap) != zero_cases[i].want)
			fail_msg("zero case %zu", i);
		if (zero_cases[i].want > 0)
			assert_true(codec_is_zero(dst, (size_t)zero_cases[i].want));
	}

	/* ZSTD */
	n = payload(p, WIRE_MAX_CHUNK, z, zbig);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, dst, WIRE_MAX_CHUNK), WIRE_MAX_CHUNK);
	assert_memory_equal(dst, src, WIRE_MAX_CHUNK);
	/* declared shorter than the frame's output: refused, nothing written past it */
	n = payload(p, 100, z, zbig);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, dst, WIRE_MAX_CHUNK), -EBADMSG);
	{
		uint8_t *tight = malloc(100); /* ASan guards its end */

		assert_non_null(tight);
		assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, tight, 100), -EBADMSG);
		free(tight);
	}
	/* declared longer than the frame's output */
	zsmall = ZSTD_compress(z, ZSTD_compressBound(WIRE_MAX_CHUNK), src, 1000, 3);
	assert_false(ZSTD_isError(zsmall));
	n = payload(p, 1001, z, zsmall);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, dst, WIRE_MAX_CHUNK), -EBADMSG);
	n = payload(p, 1000, z, zsmall);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, dst, WIRE_MAX_CHUNK), 1000);
	/* raw length over the chunk cap or the capacity, or zero */
	wire_store_be32(p, WIRE_MAX_CHUNK + 1);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, dst, 4 * WIRE_MAX_CHUNK), -EBADMSG);
	wire_store_be32(p, 1000);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, dst, 999), -EBADMSG);
	wire_store_be32(p, 0);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, dst, WIRE_MAX_CHUNK), -EBADMSG);
	/* truncated frame, at every cut */
	for (size_t cut = 0; cut < zsmall; cut++) {
		n = payload(p, 1000, z, cut);
		assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, dst, WIRE_MAX_CHUNK), -EBADMSG);
	}
	/* trailing bytes, and two frames back to back */
	n = payload(p, 1000, z, zsmall);
	p[n++] = 0;
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, dst, WIRE_MAX_CHUNK), -EBADMSG);
	z2 = ZSTD_compress(z + zsmall, ZSTD_compressBound(WIRE_MAX_CHUNK) - zsmall, src, 500, 3);
	assert_false(ZSTD_isError(z2));
	n = payload(p, 1500, z, zsmall + z2);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, dst, WIRE_MAX_CHUNK), -EBADMSG);
	/* garbage and single-bit corruption */
	memset(p + 4, 0xa5, 64);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, 68, dst, WIRE_MAX_CHUNK), -EBADMSG);
	for (size_t bit = 0; bit < 8 * zsmall; bit += 13) {
		int r;

		n = payload(p, 1000, z, zsmall);
		p[4 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
		r = codec_decode(c, WIRE_F_ZSTD, p, n, dst, WIRE_MAX_CHUNK);
		/* zstd without its checksum may decode a flipped literal: the stream digest catches that (§5.4) */
		assert_true(r == -EBADMSG || r == 1000);
	}
	/* ZSTD payload with no frame */
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, 4, dst, WIRE_MAX_CHUNK), -EBADMSG);
	/* missing codec or destination */
	n = payload(p, 1000, z, zsmall);
	assert_int_equal(codec_decode(NULL, WIRE_F_ZSTD, p, n, dst, WIRE_MAX_CHUNK), -EINVAL);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, n, NULL, WIRE_MAX_CHUNK), -EINVAL);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, NULL, n, dst, WIRE_MAX_CHUNK), -EBADMSG);

	codec_free(c);
	free(src);
	free(z);
	free(p);
	free(dst);
}

/*
 * A frame without a content size and with a huge window (as a streaming
 * compressor writes it) is still decoded within the raw length.
 */
static void test_streamed_frame(void **state)
{
	struct codec *c = codec_new(1);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	uint8_t *src = malloc(4096), *p = malloc(8192), *dst = malloc(WIRE_MAX_CHUNK);
	ZSTD_outBuffer out;
	ZSTD_inBuffer in;
	size_t r;

	(void)state;
	assert_true(c && cc && src && p && dst);
	fill_text(src, 4096);
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 27)));
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)));
	out = (ZSTD_outBuffer){ p + 4, 8192 - 4, 0 };
	in = (ZSTD_inBuffer){ src, 4096, 0 };
	r = ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end);
	assert_int_equal(r, 0);
	wire_store_be32(p, 4096);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, 4 + out.pos, dst, WIRE_MAX_CHUNK), 4096);
	assert_memory_equal(dst, src, 4096);
	wire_store_be32(p, 4095);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, 4 + out.pos, dst, WIRE_MAX_CHUNK), -EBADMSG);
	wire_store_be32(p, 4097);
	assert_int_equal(codec_decode(c, WIRE_F_ZSTD, p, 4 + out.pos, dst, WIRE_MAX_CHUNK), -EBADMSG);
	ZSTD_freeCCtx(cc);
	codec_free(c);
	free(src);
	free(p);
	free(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_is_zero),
		cmocka_unit_test(test_encode_choices),
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_decode_hostile),
		cmocka_unit_test(test_streamed_frame),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
