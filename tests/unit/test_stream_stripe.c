/* SPDX-License-Identifier: MIT */
/* Stripe scheduler and ack/replay bookkeeping (PROTOCOL.md §2.3, §5.3), table-driven. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stream/stripe.h"

#define BIT(i) (1ull << (i))

static void test_pick(void **state)
{
	/* clang-format off */
	static const struct {
		uint64_t open;
		uint64_t q0, q1, q2;
		unsigned rr;
		int want;
	} cases[] = {
		{ 0, 0, 0, 0, 0, -1 },                        /* nothing open: the chunk waits */
		{ BIT(1), 0, 0, 0, 0, 1 },
		{ BIT(0) | BIT(1) | BIT(2), 30, 10, 20, 0, 1 }, /* fewest bytes queued */
		{ BIT(0) | BIT(2), 30, 0, 20, 0, 2 },          /* link 1 closed or dead, however idle */
		{ BIT(0) | BIT(1) | BIT(2), 5, 5, 5, 0, 0 },   /* ties: from the cursor on */
		{ BIT(0) | BIT(1) | BIT(2), 5, 5, 5, 1, 1 },
		{ BIT(0) | BIT(1) | BIT(2), 5, 5, 5, 2, 2 },
		{ BIT(0) | BIT(1) | BIT(2), 5, 5, 5, 3, 0 },   /* wraps */
		{ BIT(63), 0, 0, 0, 0, 63 },
	};
	/* clang-format on */
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t q[STRIPE_LINKS] = {cases[i].q0, cases[i].q1, cases[i].q2};
		struct stripe sp;
		int got;

		stripe_init(&sp);
		sp.rr = cases[i].rr;
		got = stripe_pick(&sp, cases[i].open, q);
		if (got != cases[i].want)
			fail_msg("case %zu: picked %d, want %d", i, got, cases[i].want);
		if (got >= 0)
			assert_int_equal(sp.rr, ((unsigned)got + 1) % STRIPE_LINKS);
	}
}

static void test_round_robin_spreads(void **state)
{
	uint64_t q[STRIPE_LINKS] = {0};
	int count[4] = {0};
	struct stripe sp;
	(void)state;

	/* Equal chunks, equal drain: each of 4 links gets a quarter. */
	stripe_init(&sp);
	for (int k = 0; k < 400; k++) {
		int i = stripe_pick(&sp, 0xf, q);

		assert_true(i >= 0 && i < 4);
		count[i]++;
		q[i] += 100;
		if (k % 4 == 3)
			memset(q, 0, sizeof(q));
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(count[i], 100);
	assert_int_equal(stripe_first(0), -1);
	assert_int_equal(stripe_first(BIT(5) | BIT(9)), 5);
}

static void test_unacked_list(void **state)
{
	struct stripe_ent e[5];
	struct stripe_list l = {0};
	struct stripe_ent *x;
	(void)state;

	for (int i = 0; i < 5; i++) {
		e[i].seq = (uint64_t)i;
		e[i].link = i % 2;
		stripe_list_push(&l, &e[i]);
	}
	assert_int_equal(l.count, 5);
	/* ACK of 0 chunks releases nothing; ACK of 3 releases 0, 1, 2 in order */
	assert_null(stripe_list_acked(&l, 0));
	for (int i = 0; i < 3; i++) {
		x = stripe_list_acked(&l, 3);
		assert_ptr_equal(x, &e[i]);
	}
	assert_null(stripe_list_acked(&l, 3));
	assert_int_equal(l.count, 2);
	/* an old ACK releases nothing more */
	assert_null(stripe_list_acked(&l, 2));
	assert_ptr_equal(stripe_list_acked(&l, 100), &e[3]);
	assert_ptr_equal(stripe_list_pop(&l), &e[4]);
	assert_null(stripe_list_pop(&l));
	assert_null(l.head);
	assert_null(l.tail);
	assert_int_equal(l.count, 0);
	/* usable again after emptying */
	stripe_list_push(&l, &e[0]);
	assert_ptr_equal(l.head, &e[0]);
	assert_ptr_equal(l.tail, &e[0]);
}

static void test_must_resend(void **state)
{
	/* clang-format off */
	static const struct {
		int link, lost;
		uint64_t alive;
		bool want;
	} cases[] = {
		{ -1, -1, ~0ull, true },       /* queued nowhere (no link was open) */
		{ 2, 2, ~0ull, true },         /* on the lost link */
		{ 2, 3, BIT(2), false },       /* on a live link: it will arrive */
		{ 2, -1, BIT(3), true },       /* after a rejoin: its link is gone */
		{ 2, 3, BIT(3), true },        /* its link died before */
		{ 64, -1, ~0ull, true },       /* out of range: treat as nowhere */
	};
	/* clang-format on */
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct stripe_ent e = {.seq = 7, .link = cases[i].link};

		if (stripe_must_resend(&e, cases[i].lost, cases[i].alive) != cases[i].want)
			fail_msg("case %zu", i);
	}
}

static void test_on_loss(void **state)
{
	/* clang-format off */
	static const struct {
		struct stripe_loss_facts f;
		enum stripe_loss want;
	} cases[] = {
		{ { 2, true, false, false, 1, false }, STRIPE_LOSS_RESEND },
		{ { 2, true, false, false, 0, false }, STRIPE_LOSS_QUIET },      /* nothing in flight */
		{ { 2, true, true, false, 1, false }, STRIPE_LOSS_QUIET },       /* failed already */
		{ { 2, true, false, true, 1, false }, STRIPE_LOSS_QUIET },       /* closing */
		{ { 0, false, false, false, 1, false }, STRIPE_LOSS_FAIL },      /* no reconnection */
		{ { 0, false, false, false, 0, false }, STRIPE_LOSS_QUIET },
		{ { 0, true, false, false, 1, false }, STRIPE_LOSS_WAIT },
		{ { 0, true, false, false, 1, true }, STRIPE_LOSS_WAIT_REKEY },
		{ { 0, true, true, false, 1, true }, STRIPE_LOSS_QUIET },
	};
	/* clang-format on */
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (stripe_on_loss(&cases[i].f) != cases[i].want)
			fail_msg("case %zu: got %d", i, stripe_on_loss(&cases[i].f));
}

static void test_resync_plan(void **state)
{
	/* clang-format off */
	static const struct {
		struct stripe_resync_facts f;
		unsigned want;
	} cases[] = {
		{ { true, true, true, true, false, true, false }, 0 },  /* failed: nothing more for it (§5.6) */
		{ { false, false, true, false, false, false, false }, STRIPE_RS_CHUNKS | STRIPE_RS_ACK },
		{ { true, false, true, false, false, false, false }, STRIPE_RS_OPEN | STRIPE_RS_CHUNKS | STRIPE_RS_ACK },
		{ { true, false, false, false, false, false, false }, STRIPE_RS_CHUNKS | STRIPE_RS_ACK },
		{ { true, false, true, true, false, false, false },
		  STRIPE_RS_OPEN | STRIPE_RS_CHUNKS | STRIPE_RS_END | STRIPE_RS_ACK },
		{ { true, false, true, true, true, true, false },
		  STRIPE_RS_OPEN | STRIPE_RS_CHUNKS | STRIPE_RS_ACK | STRIPE_RS_VERIFIED },
		/* OPENED: a server's, for a connected stream, in a session that asked for it (§5.1) */
		{ { false, false, true, false, false, false, true }, STRIPE_RS_OPENED | STRIPE_RS_CHUNKS | STRIPE_RS_ACK },
		{ { false, false, false, false, false, false, true }, STRIPE_RS_CHUNKS | STRIPE_RS_ACK },
		{ { false, true, true, false, false, false, true }, 0 },
		{ { true, false, true, false, false, false, true }, STRIPE_RS_OPEN | STRIPE_RS_CHUNKS | STRIPE_RS_ACK },
	};
	/* clang-format on */
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (stripe_resync_plan(&cases[i].f) != cases[i].want)
			fail_msg("case %zu: got %#x", i, stripe_resync_plan(&cases[i].f));
}

static void test_ctl_bound(void **state)
{
	/* clang-format off */
	static const struct {
		uint64_t queued;
		uint32_t len;
		int want;
	} cases[] = {
		{ 0, 24, 0 },
		{ STRIPE_CTL_MAX_BYTES - 24, 24, 0 },          /* exactly at the bound */
		{ STRIPE_CTL_MAX_BYTES - 23, 24, -ENOBUFS },
		{ STRIPE_CTL_MAX_BYTES, 0, 0 },
		{ 0, STRIPE_CTL_MAX_BYTES + 1, -ENOBUFS },
		{ UINT64_MAX, 24, -ENOBUFS },                  /* no wrap */
	};
	/* clang-format on */
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (stripe_ctl_admit(cases[i].queued, cases[i].len) != cases[i].want)
			fail_msg("case %zu", i);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pick),	 cmocka_unit_test(test_round_robin_spreads),
	    cmocka_unit_test(test_unacked_list), cmocka_unit_test(test_must_resend),
	    cmocka_unit_test(test_on_loss),	 cmocka_unit_test(test_resync_plan),
	    cmocka_unit_test(test_ctl_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
