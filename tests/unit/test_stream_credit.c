/* SPDX-License-Identifier: MIT */
/* Credit accounting (PROTOCOL.md §5.3), table-driven. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stream/credit.h"

enum { W = 1000 }; /* a small window keeps the tables readable */

/* SEND: can_send(len) must be <want>, and if 1 the chunk is sent. ACK: on_ack(chunks, bytes) must be <want>. */
enum { SEND, ACK };
/* clang-format off */
static const struct step {
	int op;
	uint64_t a, b;
	int want;
} script[] = {
	{ SEND, 400, 0, 1 },
	{ SEND, 400, 0, 1 },
	{ SEND, 201, 0, 0 },     /* 800 + 201 is over the window */
	{ SEND, 200, 0, 1 },     /* exactly the window */
	{ SEND, 1, 0, 0 },
	{ ACK, 0, 0, 0 },        /* nothing new: harmless */
	{ ACK, 1, 0, -EBADMSG }, /* a chunk is at least one byte */
	{ ACK, 0, 1, -EBADMSG }, /* bytes without chunks */
	{ ACK, 2, 1, -EBADMSG }, /* two chunks, one byte */
	{ ACK, 4, 1000, -EBADMSG }, /* more chunks than sent */
	{ ACK, 3, 1001, -EBADMSG }, /* more bytes than sent */
	{ ACK, 3, 999, -EBADMSG },  /* all chunks, not all bytes */
	{ ACK, 1, 400, 0 },
	{ ACK, 0, 0, -EBADMSG },    /* backwards */
	{ ACK, 1, 399, -EBADMSG },
	{ ACK, 1, 400, 0 },         /* the same ACK again */
	{ SEND, 400, 0, 1 },
	{ SEND, 1, 0, 0 },
	{ ACK, 4, 1400, 0 },        /* everything */
	{ SEND, 5000, 0, 1 },       /* bigger than the window, alone */
	{ SEND, 1, 0, 0 },          /* ... and nothing beside it */
	{ ACK, 5, 6400, 0 },
	{ SEND, 1, 0, 1 },
	{ SEND, 5000, 0, 0 },       /* not alone now */
	{ ACK, 6, 6401, 0 },
};
/* clang-format on */

static void test_script(void **state)
{
	struct credit c;

	(void)state;
	credit_init(&c, W);
	for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		const struct step *s = &script[i];
		int got;

		if (s->op == SEND) {
			got = credit_can_send(&c, (uint32_t)s->a);
			if (got)
				credit_on_send(&c, (uint32_t)s->a);
		} else {
			got = credit_on_ack(&c, s->a, s->b);
		}
		if (got != s->want)
			fail_msg("step %zu: got %d, want %d", i, got, s->want);
	}
	assert_true(c.sent_chunks == 6 && c.sent_bytes == 6401);
	assert_true(c.acked_chunks == 6 && c.acked_bytes == 6401);
}

/* However small the chunks, at most WIRE_WINDOW_CHUNKS are in flight. */
static void test_chunk_window(void **state)
{
	struct credit c;
	int sent = 0;

	(void)state;
	credit_init(&c, WIRE_MAX_WINDOW);
	while (credit_can_send(&c, 1)) {
		credit_on_send(&c, 1);
		assert_true(++sent <= WIRE_WINDOW_CHUNKS);
	}
	assert_int_equal(sent, WIRE_WINDOW_CHUNKS);
	assert_int_equal(credit_on_ack(&c, 1, 1), 0);
	assert_true(credit_can_send(&c, 1));
	assert_int_equal(credit_on_ack(&c, WIRE_WINDOW_CHUNKS, WIRE_WINDOW_CHUNKS), 0);
}

/* The defaults: 4 MiB window, 256 KiB chunks: 16 in flight. */
static void test_default_window(void **state)
{
	struct credit c;
	int sent = 0;

	(void)state;
	credit_init(&c, 4 << 20);
	while (credit_can_send(&c, 256 << 10)) {
		credit_on_send(&c, 256 << 10);
		sent++;
	}
	assert_int_equal(sent, 16);
	assert_int_equal(credit_on_ack(&c, 16, 4ull << 20), 0);
	assert_true(credit_can_send(&c, WIRE_MAX_CHUNK));
}

/* clang-format off */
static const struct {
	uint64_t seq, delivered, held;
	uint32_t len, window;
	int want;
} rx_cases[] = {
	{ 0, 0, 0, 1000, 4000, 0 },
	{ 255, 0, 0, 1, 4000, 0 },             /* last chunk of the window */
	{ 256, 0, 0, 1, 4000, -EBADMSG },      /* one past it */
	{ 300, 50, 3000, 1000, 4000, 0 },
	{ 306, 50, 0, 1, 4000, -EBADMSG },
	{ UINT64_MAX, 0, 0, 1, 4000, -EBADMSG },
	{ 10, 20, 0, 1, 4000, 0 },             /* behind: a duplicate, not a window breach */
	{ 1, 0, 3000, 1000, 4000, 0 },         /* fills the window exactly */
	{ 1, 0, 3000, 1001, 4000, -EBADMSG },  /* beyond it */
	{ 1, 0, 5000, 1, 4000, -EBADMSG },     /* already beyond it */
	{ 0, 0, 0, 9000, 4000, 0 },            /* a lone oversized chunk */
	{ 1, 0, 1, 9000, 4000, -EBADMSG },     /* not alone */
	{ 1, 0, 1, UINT32_MAX, UINT32_MAX, -EBADMSG },
	{ 1, 0, 1, UINT32_MAX - 1, UINT32_MAX, 0 },
};
/* clang-format on */

static void test_rx_check(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rx_cases) / sizeof(rx_cases[0]); i++) {
		int got = credit_rx_check(rx_cases[i].seq, rx_cases[i].delivered, rx_cases[i].held, rx_cases[i].len,
					  rx_cases[i].window);

		if (got != rx_cases[i].want)
			fail_msg("rx case %zu: got %d, want %d", i, got, rx_cases[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_script),
		cmocka_unit_test(test_chunk_window),
		cmocka_unit_test(test_default_window),
		cmocka_unit_test(test_rx_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
