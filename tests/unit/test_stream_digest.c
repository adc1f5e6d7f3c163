/* SPDX-License-Identifier: MIT */
/* Stream digests (PROTOCOL.md §5.4): XXH3-128, canonical big-endian. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "stream/digest.h"

static void hex_of(const void *p, size_t len, char out[2 * WIRE_DIGEST_LEN + 1])
{
	struct digest d;
	uint8_t dg[WIRE_DIGEST_LEN];

	assert_int_equal(digest_init(&d), 0);
	digest_update(&d, p, len);
	assert_true(d.bytes == len);
	digest_final(&d, dg);
	digest_hex(dg, out);
	digest_free(&d);
}

/* The empty stream: a fixed value every implementation must produce. */
static void test_empty(void **state)
{
	char hex[2 * WIRE_DIGEST_LEN + 1];

	(void)state;
	hex_of("", 0, hex);
	assert_string_equal(hex, "99aa06d3014798d86001c324468d497f");
}

/* Canonical form: high 64 bits first, each big-endian. */
static void test_canonical(void **state)
{
	static const char msg[] = "migrelay";
	XXH128_hash_t h = XXH3_128bits(msg, sizeof(msg) - 1);
	struct digest d;
	uint8_t dg[WIRE_DIGEST_LEN];

	(void)state;
	assert_int_equal(digest_init(&d), 0);
	digest_update(&d, msg, sizeof(msg) - 1);
	digest_final(&d, dg);
	assert_true(wire_load_be64(dg) == h.high64);
	assert_true(wire_load_be64(dg + 8) == h.low64);
	digest_free(&d);
}

/* Any split of the same bytes gives the same digest; final does not reset. */
static void test_splits(void **state)
{
	enum { N = 300000 };
	uint8_t *buf = malloc(N), one[WIRE_DIGEST_LEN], dg[WIRE_DIGEST_LEN];
	static const size_t steps[] = { 1, 3, 64, 4095, 65536, 65537, N };
	XXH128_canonical_t c;
	uint32_t x = 1;

	(void)state;
	assert_non_null(buf);
	for (size_t i = 0; i < N; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (uint8_t)(x >> 16);
	}
	XXH128_canonicalFromHash(&c, XXH3_128bits(buf, N));
	memcpy(one, c.digest, sizeof(one));
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		struct digest d;

		assert_int_equal(digest_init(&d), 0);
		for (size_t off = 0; off < N; off += steps[s]) {
			size_t n = N - off < steps[s] ? N - off : steps[s];

			digest_update(&d, buf + off, n);
			if (off == 0) {
				uint8_t mid[WIRE_DIGEST_LEN];

				digest_final(&d, mid); /* a peek in the middle changes nothing */
			}
		}
		assert_true(d.bytes == N);
		digest_final(&d, dg);
		assert_memory_equal(dg, one, sizeof(dg));
		digest_final(&d, dg);
		assert_memory_equal(dg, one, sizeof(dg));
		digest_free(&d);
	}
	free(buf);
}

/* digest_update_zero() is the same as feeding real zeros, across its 64 KiB block. */
static void test_zero(void **state)
{
	static const size_t lens[] = { 0, 1, 4096, 65535, 65536, 65537, 1 << 20, (1 << 20) + 12345 };
	uint8_t *zeros = calloc(1, (1 << 20) + 12345);

	(void)state;
	assert_non_null(zeros);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct digest a, b;
		uint8_t da[WIRE_DIGEST_LEN], db[WIRE_DIGEST_LEN];

		assert_int_equal(digest_init(&a), 0);
		assert_int_equal(digest_init(&b), 0);
		digest_update(&a, "x", 1);
		digest_update(&b, "x", 1);
		digest_update(&a, zeros, lens[i]);
		digest_update_zero(&b, lens[i]);
		digest_update(&a, "y", 1);
		digest_update(&b, "y", 1);
		assert_true(a.bytes == b.bytes && a.bytes == lens[i] + 2);
		digest_final(&a, da);
		digest_final(&b, db);
		if (memcmp(da, db, sizeof(da)))
			fail_msg("zero length %zu", lens[i]);
		digest_free(&a);
		digest_free(&b);
	}
	free(zeros);
}

static void test_hex_free(void **state)
{
	uint8_t in[WIRE_DIGEST_LEN];
	char out[2 * WIRE_DIGEST_LEN + 1];
	struct digest d = { 0 };

	(void)state;
	for (int i = 0; i < WIRE_DIGEST_LEN; i++)
		in[i] = (uint8_t)(i * 17);
	digest_hex(in, out);
	assert_string_equal(out, "00112233445566778899aabbccddeeff");
	digest_free(NULL);
	digest_free(&d);
	/* A digest whose init failed reads as the empty stream and ignores updates. */
	digest_update(&d, "abc", 3);
	digest_update_zero(&d, 5);
	digest_final(&d, in);
	digest_hex(in, out);
	assert_string_equal(out, "99aa06d3014798d86001c324468d497f");
	assert_int_equal(digest_init(&d), 0);
	digest_free(&d);
	assert_null(d.state);
	digest_free(&d); /* twice is harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_splits),
		cmocka_unit_test(test_zero),
		cmocka_unit_test(test_hex_free),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
