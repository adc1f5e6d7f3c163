/* SPDX-License-Identifier: MIT */
/* Reorder buffer (PROTOCOL.md §5.2): order, duplicates, window, ownership. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stream/reorder.h"

/* Chunks are tagged with their sequence number so a pop can be checked. */
struct tchunk {
	uint64_t seq;
};

static int live_chunks;

static struct tchunk *tchunk_new(uint64_t seq)
{
	struct tchunk *c = malloc(sizeof(*c));

	assert_non_null(c);
	c->seq = seq;
	live_chunks++;
	return c;
}

static void tchunk_free(void *p)
{
	if (!p)
		return;
	live_chunks--;
	free(p);
}

static struct reorder *ro_new(void)
{
	struct reorder *r = malloc(sizeof(*r));

	assert_non_null(r);
	reorder_init(r);
	return r;
}

/* A script step: put <seq> (want result) or pop (want seq, or -1 for nothing). */
enum { PUT, POP };
/* clang-format off */
static const struct step {
	int op;
	uint64_t seq;
	int want;
} script[] = {
	{ POP, 0, -1 },
	{ PUT, 2, 0 },
	{ POP, 0, -1 },        /* 0 not there yet */
	{ PUT, 2, 1 },         /* stored already */
	{ PUT, 0, 0 },
	{ POP, 0, 0 },
	{ POP, 0, -1 },        /* 1 missing */
	{ PUT, 0, 1 },         /* delivered already */
	{ PUT, 256, 0 },       /* next_seq 1: 1 + 255 is the last slot */
	{ PUT, 257, -ERANGE }, /* past the window */
	{ PUT, UINT64_MAX, -ERANGE },
	{ PUT, 1, 0 },
	{ POP, 0, 1 },
	{ POP, 0, 2 },
	{ POP, 0, -1 },
	{ PUT, 257, 0 },       /* the window moved */
	{ PUT, 258, 0 },
	{ PUT, 259, -ERANGE }, /* 3 + 256 */
	{ PUT, 2, 1 },
};
/* clang-format on */

static void test_script(void **state)
{
	struct reorder *r = ro_new();
	uint64_t bytes = 0;
	uint32_t count = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		const struct step *s = &script[i];

		if (s->op == PUT) {
			struct tchunk *c = tchunk_new(s->seq);
			uint32_t len = (uint32_t)(s->seq % 1000) + 1;
			int rc = reorder_put(r, s->seq, c, len);

			if (rc != s->want)
				fail_msg("step %zu: put %llu gave %d, want %d", i, (unsigned long long)s->seq, rc,
					 s->want);
			if (rc == 0) {
				count++;
				bytes += len;
			} else {
				tchunk_free(c); /* the caller keeps what was not stored */
			}
		} else {
			uint32_t len = 0;
			struct tchunk *c = reorder_pop(r, &len);

			if (s->want < 0) {
				if (c)
					fail_msg("step %zu: popped %llu, want nothing", i, (unsigned long long)c->seq);
				continue;
			}
			assert_non_null(c);
			assert_true(c->seq == (uint64_t)s->want);
			assert_int_equal(len, (uint32_t)(c->seq % 1000) + 1);
			count--;
			bytes -= len;
			tchunk_free(c);
		}
		assert_int_equal(r->count, count);
		assert_true(r->stored_bytes == bytes);
	}
	assert_true(r->next_seq == 3);
	reorder_clear(r, tchunk_free);
	assert_int_equal(r->count, 0);
	assert_true(r->stored_bytes == 0);
	assert_int_equal(live_chunks, 0);
	assert_true(r->next_seq == 3); /* a late duplicate is still recognised */
	free(r);
}

static void test_bad_args(void **state)
{
	struct reorder *r = ro_new();
	int x;

	(void)state;
	assert_int_equal(reorder_put(r, 0, NULL, 1), -EINVAL);
	assert_int_equal(r->count, 0);
	assert_null(reorder_pop(r, NULL));
	assert_int_equal(reorder_put(r, 0, &x, 0), 0); /* zero raw length is still a chunk */
	assert_ptr_equal(reorder_pop(r, NULL), &x);
	reorder_clear(r, NULL);
	free(r);
}

/* Sequence numbers near the top of the range: no wrap-around anywhere. */
static void test_high_seq(void **state)
{
	struct reorder *r = ro_new();
	uint32_t len;
	int a, b;

	(void)state;
	r->next_seq = UINT64_MAX - 1;
	assert_int_equal(reorder_put(r, UINT64_MAX, &b, 2), 0);
	assert_int_equal(reorder_put(r, 0, &a, 1), 1); /* far behind, not far ahead */
	assert_int_equal(reorder_put(r, UINT64_MAX - 1, &a, 1), 0);
	assert_ptr_equal(reorder_pop(r, &len), &a);
	assert_int_equal(len, 1);
	assert_ptr_equal(reorder_pop(r, &len), &b);
	assert_int_equal(len, 2);
	reorder_clear(r, NULL);
	free(r);
}

/*
 * Many chunks, delivered in scrambled blocks of 200 (which does not divide
 * the ring size, so blocks straddle the ring's end), all popped in order.
 */
static void test_scrambled(void **state)
{
	struct reorder *r = ro_new();
	uint64_t next = 0, rng = 12345;
	enum { TOTAL = 20000, BLOCK = 200 };

	(void)state;
	for (uint64_t base = 0; base < TOTAL; base += BLOCK) {
		uint64_t order[BLOCK];

		for (uint64_t i = 0; i < BLOCK; i++)
			order[i] = base + i;
		for (uint64_t i = BLOCK - 1; i > 0; i--) {
			uint64_t j, t;

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			j = (rng >> 33) % (i + 1);
			t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		for (uint64_t i = 0; i < BLOCK; i++) {
			struct tchunk *c = tchunk_new(order[i]);

			assert_int_equal(reorder_put(r, order[i], c, 7), 0);
			/* a re-send of something stored already */
			if (order[i] % 5 == 0) {
				struct tchunk *d = tchunk_new(order[i]);

				assert_int_equal(reorder_put(r, order[i], d, 7), 1);
				tchunk_free(d);
			}
		}
		assert_int_equal(r->count, BLOCK);
		assert_true(r->stored_bytes == 7 * BLOCK);
		assert_int_equal(reorder_put(r, base + WIRE_WINDOW_CHUNKS, r, 1), -ERANGE);
		while (r->count) {
			uint32_t len = 0;
			struct tchunk *c = reorder_pop(r, &len);

			assert_non_null(c);
			assert_true(c->seq == next);
			assert_int_equal(len, 7);
			next++;
			tchunk_free(c);
		}
		assert_null(reorder_pop(r, NULL));
	}
	assert_true(next == TOTAL);
	assert_int_equal(live_chunks, 0);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_script),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_high_seq),
		cmocka_unit_test(test_scrambled),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
