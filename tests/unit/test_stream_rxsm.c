/* SPDX-License-Identifier: MIT */
/* Receive state machine (PROTOCOL.md §5, §7): table-driven frame scripts, refusals and what they leave. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stream/rxsm.h"

enum { W = 1000 }; /* a small window keeps the tables readable */

/* The session around the machine, as small as the rules need: streams, their failed flags, the open count. */
struct hx {
	struct rxsm m;
	struct rxsm_stream *st[WIRE_MAX_STREAMS];
	bool failed[WIRE_MAX_STREAMS];
	bool session_failed;
	int open_streams;
	int created;
};

static void hx_init(struct hx *x, bool server, uint16_t max_streams)
{
	memset(x, 0, sizeof(*x));
	rxsm_init(&x->m, server, W, max_streams);
}

static struct rxsm_stream *hx_new(struct hx *x, uint16_t id)
{
	struct rxsm_stream *st = calloc(1, sizeof(*st));

	assert_non_null(st);
	rxsm_stream_init(st, W);
	x->st[id] = st;
	x->open_streams++;
	x->created++;
	return st;
}

static void hx_free(struct hx *x)
{
	for (int i = 0; i < WIRE_MAX_STREAMS; i++)
		if (x->st[i]) {
			reorder_clear(&x->st[i]->ro, free);
			free(x->st[i]);
		}
}

/* One frame of a script. DATA carries a chunk of <len> bytes; other types the payload in <hex>. */
struct fr {
	uint8_t type;
	uint16_t stream;
	uint64_t seq;
	uint32_t len;
	const char *hex;
};

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;

	for (; hex && hex[0] && hex[1] && n < cap; hex += 2) {
		unsigned v;

		assert_int_equal(sscanf(hex, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
	}
	return n;
}

/* Steps the machine with <f> as the session would, creating streams it asks for. */
static int hx_step(struct hx *x, const struct fr *f, struct rxsm_out *out)
{
	uint8_t p[WIRE_MAX_CONTROL];
	struct wire_hdr h = {.type = f->type, .stream = f->stream, .seq = f->seq};
	void *chunk = NULL;
	int r;

	if (f->type == WIRE_T_DATA) {
		h.len = f->len;
		chunk = malloc(f->len ? f->len : 1);
		assert_non_null(chunk);
	} else {
		h.len = (uint32_t)unhex(f->hex, p, sizeof(p));
	}
	for (;;) {
		struct rxsm_stream *st = f->stream < WIRE_MAX_STREAMS ? x->st[f->stream] : NULL;
		struct rxsm_facts fa = {.session_failed = x->session_failed,
					.stream_failed = f->stream < WIRE_MAX_STREAMS && x->failed[f->stream],
					.open_streams = x->open_streams};

		r = rxsm_step(&x->m, st, &fa, &h, f->type == WIRE_T_DATA ? NULL : p, chunk, out);
		if (r != RXSM_NEED_STREAM)
			break;
		assert_null(st);
		hx_new(x, f->stream);
	}
	if (!out->chunk_kept)
		free(chunk);
	for (unsigned i = 0; i < out->n; i++) {
		if (out->act[i].kind == RXSM_A_STREAM_FAIL && !x->failed[f->stream]) {
			x->failed[f->stream] = true;
			x->open_streams--;
		}
		if (out->act[i].kind == RXSM_A_SESSION_FAIL || out->act[i].kind == RXSM_A_PROTOCOL)
			x->session_failed = true;
	}
	return r;
}

/* The inbound pump: delivers what is in order. */
static void hx_drain(struct hx *x, uint16_t id)
{
	uint32_t len;
	void *c;

	while ((c = reorder_pop(&x->st[id]->ro, &len))) {
		free(c);
		(void)rxsm_delivered(x->st[id], len, W);
	}
}

#define OPEN0 "00000000"
#define END(bytes, dg) bytes dg
#define B8(v) "00000000000000" v
#define DG_A "0102030405060708090a0b0c0d0e0f10"
#define DG_B "ffffffffffffffffffffffffffffff10"

/* ---- refusals: every script ends in a frame the machine must refuse ---- */

/* clang-format off */
static const struct refusal {
	const char *name;
	bool client;        /* the machine of a client (else a server) */
	uint16_t max_streams;
	int sent;           /* chunks of 100 bytes this side sent on stream 0 beforehand (client only) */
	struct fr pre[4];   /* accepted first */
	struct fr bad;      /* refused */
	const char *why;    /* in the PROTOCOL action's text */
} refusals[] = {
	{ "OPEN out of order", false, 8, 0, { { 0 } }, { WIRE_T_OPEN, 1, 0, 0, OPEN0 }, "expected 0" },
	{ "OPEN from the server", true, 8, 0, { { 0 } }, { WIRE_T_OPEN, 0, 0, 0, OPEN0 }, "malformed OPEN" },
	{ "OPEN role 3", false, 8, 0, { { 0 } }, { WIRE_T_OPEN, 0, 0, 0, "03000000" }, "malformed OPEN" },
	{ "OPEN reserved byte", false, 8, 0, { { 0 } }, { WIRE_T_OPEN, 0, 0, 0, "00000100" }, "malformed OPEN" },
	{ "DATA past 256 chunks", false, 8, 0, { { 0 } }, { WIRE_T_DATA, 0, 256, 10, NULL }, "outside the window" },
	{ "DATA past the bytes", false, 8, 0, { { WIRE_T_DATA, 0, 1, 600, NULL } },
	  { WIRE_T_DATA, 0, 2, 600, NULL }, "beyond its 1000-byte window" },
	{ "DATA on a client's unknown stream", true, 8, 0, { { 0 } }, { WIRE_T_DATA, 3, 0, 10, NULL },
	  "unknown stream 3" },
	{ "stream id 64", false, 8, 0, { { 0 } }, { WIRE_T_DATA, 64, 0, 10, NULL }, "unknown stream 64" },
	{ "one stream over max_streams", false, 2, 0,
	  { { WIRE_T_DATA, 0, 0, 10, NULL }, { WIRE_T_DATA, 1, 0, 10, NULL } },
	  { WIRE_T_DATA, 2, 0, 10, NULL }, "exceeds the 2 open streams" },
	{ "ACK of chunks never sent", true, 8, 1, { { 0 } }, { WIRE_T_ACK, 0, 2, 0, B8("c8") }, "ACK of 2 chunks" },
	{ "ACK short payload", true, 8, 1, { { 0 } }, { WIRE_T_ACK, 0, 1, 0, "0064" }, "malformed ACK" },
	{ "second END, other digest", false, 8, 0, { { WIRE_T_END, 0, 3, 0, END(B8("0a"), DG_A) } },
	  { WIRE_T_END, 0, 3, 0, END(B8("0a"), DG_B) }, "second END disagrees" },
	{ "second END, other bytes", false, 8, 0, { { WIRE_T_END, 0, 3, 0, END(B8("0a"), DG_A) } },
	  { WIRE_T_END, 0, 3, 0, END(B8("0b"), DG_A) }, "second END disagrees" },
	{ "second END, other total", false, 8, 0, { { WIRE_T_END, 0, 3, 0, END(B8("0a"), DG_A) } },
	  { WIRE_T_END, 0, 4, 0, END(B8("0a"), DG_A) }, "second END disagrees" },
	{ "END short payload", false, 8, 0, { { 0 } }, { WIRE_T_END, 0, 3, 0, B8("0a") }, "malformed END" },
	{ "VERIFIED of a direction not ended", true, 8, 1, { { 0 } }, { WIRE_T_VERIFIED, 0, 1, 0, B8("64") },
	  "not ended" },
	{ "BYE to a client", true, 8, 0, { { 0 } }, { WIRE_T_BYE, 0, 0, 0, NULL }, "malformed BYE" },
	{ "HELLO after setup", false, 8, 0, { { 0 } }, { WIRE_T_HELLO, 0, 0, 0, "0001" }, "malformed HELLO" },
	{ "ERROR without a code", false, 8, 0, { { 0 } }, { WIRE_T_ERROR, 0, 0, 0, "07" }, "malformed ERROR" },
	{ "PING short", false, 8, 0, { { 0 } }, { WIRE_T_PING, 0, 0, 0, "0102" }, "malformed PING" },
};
/* clang-format on */

static void test_refusals(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		const struct refusal *c = &refusals[i];
		struct rxsm_out out;
		struct wire_end before;
		struct hx x;
		int r;

		hx_init(&x, !c->client, c->max_streams);
		if (c->client || c->sent) {
			hx_new(&x, 0);
			for (int k = 0; k < c->sent; k++)
				rxsm_sent(x.st[0], 100);
		}
		for (size_t k = 0; k < 4 && c->pre[k].type; k++) {
			r = hx_step(&x, &c->pre[k], &out);
			if (r != 0)
				fail_msg("%s: setup frame %zu refused: %s", c->name, k, out.n ? out.act[0].text : "");
		}
		if (x.st[0])
			before = x.st[0]->in_end;
		r = hx_step(&x, &c->bad, &out);
		if (r != -EBADMSG)
			fail_msg("%s: got %d", c->name, r);
		assert_int_equal(out.n, 1);
		assert_int_equal(out.act[0].kind, RXSM_A_PROTOCOL);
		assert_int_equal(out.act[0].code, WIRE_E_PROTOCOL);
		if (!strstr(out.act[0].text, c->why))
			fail_msg("%s: text \"%s\" lacks \"%s\"", c->name, out.act[0].text, c->why);
		/* A refused END leaves the first one as it was (§5.4). */
		if (x.st[0])
			assert_memory_equal(&before, &x.st[0]->in_end, sizeof(before));
		hx_free(&x);
	}
}

/* ---- accepted frames: what they do ---- */

static void test_error_for_unknown_stream_is_ignored(void **state)
{
	struct rxsm_out out;
	struct hx x;
	(void)state;

	/* §5.6: no stream is created or failed, so none counts against max_streams, and its OPEN still works. */
	hx_init(&x, true, 1);
	for (uint16_t id = 0; id < 10; id++) {
		assert_int_equal(hx_step(&x,
					 &(struct fr){WIRE_T_ERROR, id, 0, 0,
						      "0007"
						      "6e6f"},
					 &out),
				 0);
		assert_int_equal(out.n, 0);
	}
	assert_int_equal(x.created, 0);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_OPEN, 0, 0, 0, OPEN0}, &out), 0);
	assert_int_equal(out.n, 1);
	assert_int_equal(out.act[0].kind, RXSM_A_OPEN);
	assert_int_equal(out.act[0].code, WIRE_ROLE_PLAIN);
	hx_free(&x);
}

static void test_error_fails_a_known_stream_once(void **state)
{
	struct rxsm_out out;
	struct hx x;
	(void)state;

	hx_init(&x, true, 8);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 0, 10, NULL}, &out), 0);
	assert_int_equal(hx_step(&x,
				 &(struct fr){WIRE_T_ERROR, 0, 0, 0,
					      "0007"
					      "6e6f"},
				 &out),
			 0);
	assert_int_equal(out.n, 1);
	assert_int_equal(out.act[0].kind, RXSM_A_STREAM_FAIL);
	assert_int_equal(out.act[0].code, WIRE_E_TARGET);
	assert_string_equal(out.act[0].text, "peer: no");
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_ERROR, 0, 0, 0, "0007"}, &out), 0);
	assert_int_equal(out.n, 0);
	/* Its OPEN now connects nothing: the stream is failed, the next id is expected. */
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_OPEN, 0, 0, 0, OPEN0}, &out), 0);
	assert_int_equal(out.n, 0);
	assert_int_equal(x.m.next_open, 1);
	/* Its DATA is dropped, not held. */
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 1, 10, NULL}, &out), 0);
	assert_false(out.chunk_kept);
	hx_free(&x);
}

static void test_session_error(void **state)
{
	struct rxsm_out out;
	struct hx x;
	(void)state;

	hx_init(&x, false, 8);
	assert_int_equal(hx_step(&x,
				 &(struct fr){WIRE_T_ERROR, WIRE_STREAM_SESSION, 0, 0,
					      "0008"
					      "6f6b"},
				 &out),
			 0);
	assert_int_equal(out.n, 1);
	assert_int_equal(out.act[0].kind, RXSM_A_SESSION_FAIL);
	assert_int_equal(out.act[0].code, WIRE_E_LIMIT);
	/* the first failure wins: a second ERROR does nothing */
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_ERROR, WIRE_STREAM_SESSION, 0, 0, "0001"}, &out), 0);
	assert_int_equal(out.n, 0);
	hx_free(&x);
}

static void test_data_end_and_repeats(void **state)
{
	struct rxsm_out out;
	struct hx x;
	(void)state;

	hx_init(&x, true, 8);
	/* END first (it may overtake DATA), then the chunks out of order, duplicates dropped */
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_END, 0, 2, 0, END(B8("14"), DG_A)}, &out), 0);
	assert_int_equal(out.act[0].kind, RXSM_A_WAKE_IN);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 1, 10, NULL}, &out), 0);
	assert_true(out.chunk_kept);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 1, 10, NULL}, &out), 0);
	assert_false(out.chunk_kept);
	assert_int_equal(out.n, 0);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 2, 10, NULL}, &out), 0);
	assert_false(out.chunk_kept); /* at the END's total: dropped */
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 0, 10, NULL}, &out), 0);
	assert_true(out.chunk_kept);
	assert_false(rxsm_in_ended(x.st[0]));
	hx_drain(&x, 0);
	assert_true(rxsm_in_ended(x.st[0]));
	assert_int_equal(x.st[0]->in_bytes, 20);
	/* delivered: a re-send is dropped; the equal END again is ignored */
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 0, 10, NULL}, &out), 0);
	assert_false(out.chunk_kept);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_END, 0, 2, 0, END(B8("14"), DG_A)}, &out), 0);
	assert_int_equal(out.n, 0);
	hx_free(&x);
}

static void test_end_below_delivered(void **state)
{
	struct rxsm_out out;
	struct hx x;
	(void)state;

	hx_init(&x, true, 8);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 0, 10, NULL}, &out), 0);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 1, 10, NULL}, &out), 0);
	hx_drain(&x, 0);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_END, 0, 1, 0, END(B8("0a"), DG_A)}, &out), -EBADMSG);
	assert_false(x.st[0]->in_end_seen);
	hx_free(&x);
}

static void test_ack_and_verified(void **state)
{
	struct rxsm_out out;
	struct hx x;
	(void)state;

	hx_init(&x, false, 8);
	hx_new(&x, 0);
	rxsm_sent(x.st[0], 100);
	rxsm_sent(x.st[0], 50);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_ACK, 0, 1, 0, B8("64")}, &out), 0);
	assert_int_equal(out.n, 1);
	assert_int_equal(out.act[0].kind, RXSM_A_ACKED);
	assert_int_equal(out.act[0].seq, 1);
	/* the same ACK again (a resync) is ignored */
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_ACK, 0, 1, 0, B8("64")}, &out), 0);
	assert_int_equal(out.n, 0);
	x.st[0]->out_end_sent = true;
	/* VERIFIED must match what was sent: 150 bytes in 2 chunks */
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_VERIFIED, 0, 2, 0, B8("95")}, &out), -EBADMSG);
	assert_false(x.st[0]->out_verified);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_VERIFIED, 0, 2, 0, B8("96")}, &out), 0);
	assert_int_equal(out.act[0].kind, RXSM_A_OUT_VERIFIED);
	assert_true(x.st[0]->out_verified);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_VERIFIED, 0, 2, 0, B8("96")}, &out), 0);
	assert_int_equal(out.n, 0);
	hx_free(&x);
}

static void test_open_order_ping_bye(void **state)
{
	struct rxsm_out out;
	struct hx x;
	(void)state;

	hx_init(&x, true, 8);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_OPEN, 0, 0, 0, "02000000"}, &out), 0);
	assert_int_equal(out.act[0].kind, RXSM_A_OPEN);
	assert_int_equal(out.act[0].code, WIRE_ROLE_NBD);
	assert_int_equal(x.created, 1);
	/* a re-sent OPEN is ignored */
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_OPEN, 0, 0, 0, "02000000"}, &out), 0);
	assert_int_equal(out.n, 0);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_PING, 0, 0, 0, "0102030405060708"}, &out), 0);
	assert_int_equal(out.act[0].kind, RXSM_A_PONG);
	assert_non_null(out.act[0].view);
	assert_int_equal(out.act[0].view[7], 8);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_PONG, 0, 0, 0, "0102030405060708"}, &out), 0);
	assert_int_equal(out.n, 0);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_BYE, 0, 0, 0, NULL}, &out), 0);
	assert_int_equal(out.act[0].kind, RXSM_A_BYE);
	hx_free(&x);
}

static void test_ack_pacing(void **state)
{
	struct rxsm_out out;
	struct hx x;
	(void)state;

	/* An ACK is due after a quarter window of bytes, or when nothing more is held (§5.3). */
	hx_init(&x, true, 8);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 0, 100, NULL}, &out), 0);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 1, 100, NULL}, &out), 0);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_DATA, 0, 2, 100, NULL}, &out), 0);
	{
		uint32_t len;
		void *c = reorder_pop(&x.st[0]->ro, &len);

		free(c);
		assert_false(rxsm_delivered(x.st[0], len, W)); /* 100 < 250, more held */
		c = reorder_pop(&x.st[0]->ro, &len);
		free(c);
		assert_false(rxsm_delivered(x.st[0], len, W));
		c = reorder_pop(&x.st[0]->ro, &len);
		free(c);
		assert_true(rxsm_delivered(x.st[0], len, W)); /* 300 >= 250 */
	}
	rxsm_ack_taken(x.st[0]);
	assert_int_equal(x.st[0]->in_acked, 3);
	assert_int_equal(x.st[0]->in_acked_bytes, 300);
	assert_int_equal(x.st[0]->in_held, 0);
	hx_free(&x);
}

/* ---- OPENED (§5.1, revision 1.2): the server says a stream's target is connected ---- */

/* clang-format off */
static const struct opened_refusal {
	const char *name;
	bool client;     /* the machine of a client (else a server) */
	bool ack;        /* the session asked for OPENED */
	int streams;     /* streams 0..streams-1 this side has (a client opened them) */
	struct fr bad;
	const char *why;
} opened_refusals[] = {
	{ "OPENED to the server", false, true, 1, { WIRE_T_OPENED, 0, 0, 0, NULL }, "malformed OPENED" },
	{ "OPENED to a server that has no stream", false, true, 0, { WIRE_T_OPENED, 0, 0, 0, NULL },
	  "malformed OPENED" },
	{ "OPENED not asked for", true, false, 1, { WIRE_T_OPENED, 0, 0, 0, NULL }, "did not ask for OPENED" },
	{ "OPENED for a stream never opened", true, true, 2, { WIRE_T_OPENED, 2, 0, 0, NULL }, "never opened" },
	{ "OPENED for stream 63, never opened", true, true, 1, { WIRE_T_OPENED, 63, 0, 0, NULL }, "never opened" },
	{ "OPENED for stream id 64", true, true, 1, { WIRE_T_OPENED, 64, 0, 0, NULL }, "never opened" },
	{ "OPENED for the session id", true, true, 1, { WIRE_T_OPENED, WIRE_STREAM_SESSION, 0, 0, NULL },
	  "never opened" },
	{ "OPENED with a payload", true, true, 1, { WIRE_T_OPENED, 0, 0, 0, "00000000" }, "malformed OPENED" },
	{ "OPENED with one byte", true, true, 1, { WIRE_T_OPENED, 0, 0, 0, "01" }, "malformed OPENED" },
};
/* clang-format on */

static void test_opened_refusals(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(opened_refusals) / sizeof(opened_refusals[0]); i++) {
		const struct opened_refusal *c = &opened_refusals[i];
		struct rxsm_out out;
		struct hx x;
		int r;

		hx_init(&x, !c->client, 8);
		x.m.open_ack = c->ack;
		for (uint16_t id = 0; id < c->streams; id++)
			hx_new(&x, id);
		r = hx_step(&x, &c->bad, &out);
		if (r != -EBADMSG)
			fail_msg("%s: got %d", c->name, r);
		assert_int_equal(out.n, 1);
		assert_int_equal(out.act[0].kind, RXSM_A_PROTOCOL);
		assert_int_equal(out.act[0].code, WIRE_E_PROTOCOL);
		if (!strstr(out.act[0].text, c->why))
			fail_msg("%s: text \"%s\" lacks \"%s\"", c->name, out.act[0].text, c->why);
		/* A refused OPENED marks nothing, and a server creates no stream for it. */
		for (uint16_t id = 0; id < WIRE_MAX_STREAMS; id++)
			assert_true(!x.st[id] || !x.st[id]->opened_seen);
		assert_int_equal(x.created, c->streams);
		hx_free(&x);
	}
}

static void test_opened(void **state)
{
	struct rxsm_out out;
	struct hx x;
	(void)state;

	hx_init(&x, false, 8);
	x.m.open_ack = true;
	hx_new(&x, 0);
	hx_new(&x, 1);
	hx_new(&x, 2);
	/* in any order: each says its stream is connected, once */
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_OPENED, 1, 0, 0, NULL}, &out), 0);
	assert_int_equal(out.n, 1);
	assert_int_equal(out.act[0].kind, RXSM_A_OPENED);
	assert_int_equal(out.act[0].stream, 1);
	assert_true(x.st[1]->opened_seen);
	assert_false(x.st[0]->opened_seen);
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_OPENED, 0, 7, 0, NULL}, &out), 0); /* seq is ignored */
	assert_int_equal(out.n, 1);
	assert_true(x.st[0]->opened_seen);
	/* a repeat after a lost connection (§2.3) is ignored */
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_OPENED, 1, 0, 0, NULL}, &out), 0);
	assert_int_equal(out.n, 0);
	assert_true(x.st[1]->opened_seen);
	/* for a stream that failed meanwhile: ignored, like every frame for it (§5.6) */
	x.failed[2] = true;
	assert_int_equal(hx_step(&x, &(struct fr){WIRE_T_OPENED, 2, 0, 0, NULL}, &out), 0);
	assert_int_equal(out.n, 0);
	assert_false(x.st[2]->opened_seen);
	/* nothing else of the stream changed */
	assert_int_equal(x.st[0]->in_chunks, 0);
	assert_false(x.st[0]->in_end_seen);
	assert_int_equal(x.st[0]->cr.acked_chunks, 0);
	assert_int_equal(x.created, 3);
	hx_free(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_error_for_unknown_stream_is_ignored),
	    cmocka_unit_test(test_error_fails_a_known_stream_once),
	    cmocka_unit_test(test_session_error),
	    cmocka_unit_test(test_data_end_and_repeats),
	    cmocka_unit_test(test_end_below_delivered),
	    cmocka_unit_test(test_ack_and_verified),
	    cmocka_unit_test(test_open_order_ping_bye),
	    cmocka_unit_test(test_ack_pacing),
	    cmocka_unit_test(test_opened_refusals),
	    cmocka_unit_test(test_opened),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
