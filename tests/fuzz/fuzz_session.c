/* SPDX-License-Identifier: MIT */
/* Target functions: rxsm_init, rxsm_stream_init, rxsm_step, rxsm_delivered, rxsm_ack_taken, rxsm_in_ended,
 * rxsm_sent, stripe_list_push, stripe_list_acked, stripe_list_pop. */
/*
 * Drives the receive state machine (PROTOCOL.md §5, §7) with a script of
 * frame sequences and the session's own moves, as the session does: it
 * creates streams when asked, carries out the actions, runs the inbound
 * pump (delivers chunks in order, ACKs as told, verifies the END) and the
 * outbound one (sends chunks within credit, keeps them in the unacked list
 * until ACKed, ends the direction). The first byte picks client or server,
 * max_streams, and whether the session asked for OPENED (§5.1); then each
 * op byte is followed by its arguments:
 *   FRAME  u8 type, u8 stream, be16 seq, u8 a, u8 b   (a frame from the peer;
 *          a and b shape its payload: DATA length, ACK/VERIFIED/END counts,
 *          ERROR code, OPEN role, payload length tampering; a type byte of
 *          0xf0 and up is OPENED)
 *   POP    u8 stream    (the inbound pump delivers what it can)
 *   SEND   u8 stream, u8 length   (the outbound pump sends one chunk)
 *   ENDOUT u8 stream    (the outbound direction ends)
 *   FAIL   u8 stream    (the session fails a stream itself)
 * A model beside the machine says what every frame must do; the checks:
 * chunks are delivered in sequence and each is freed exactly once; a
 * refused frame changes nothing it guards (a second END leaves the first);
 * an ERROR for a stream the session does not have creates nothing; OPENs
 * connect streams in id order, each once, never a failed one; no stream is
 * created beyond max_streams; credit is never broken by what is accepted;
 * ACKs release exactly the chunks they cover; OPENED is taken only by a
 * client that asked for it, only for a stream it opened, and marks that
 * stream connected once (a repeat or one for a failed stream does nothing).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/rxsm.h"
#include "stream/stripe.h"
#include "check.h"

enum { OP_FRAME, OP_POP, OP_SEND, OP_ENDOUT, OP_FAIL, OP_COUNT };
enum { NSTREAMS = 6, WINDOW = 4096, MAGIC_LIVE = 0x6c697665, MAGIC_DEAD = 0x64656164 };
/*
 * Frame types a type byte below 0xf0 picks: those of revision 1.0, so the
 * corpus keeps its meaning; 0xf0 and up pick OPENED (revision 1.2).
 */
enum { OLD_TYPES = 12, OPENED_BYTE = 0xf0 };

struct chunk {
	uint32_t magic;
	uint16_t stream;
	uint64_t seq;
	uint32_t len;
};

/* A chunk this side sent, kept until ACKed. */
struct sent {
	struct stripe_ent ent;
	uint32_t len;
};

struct mstream {
	bool exists, failed, opened;
	bool target_opened; /* client: an OPENED was taken */
	/* inbound */
	bool held[WIRE_WINDOW_CHUNKS];
	uint64_t held_seq[WIRE_WINDOW_CHUNKS];
	uint64_t delivered, delivered_b, held_b, acked_c, acked_b;
	uint64_t refused_b; /* bytes of a chunk stored before its credit check refused it (the last frame) */
	bool end_seen, done;
	uint64_t end_total, end_bytes;
	uint8_t end_dg[WIRE_DIGEST_LEN];
	/* outbound */
	uint64_t sent_c, sent_b, ack_c, ack_b;
	bool end_sent, verified;
	struct stripe_list unacked;
};

struct fx {
	struct rxsm m;
	struct rxsm_stream *st[WIRE_MAX_STREAMS];
	struct mstream ms[WIRE_MAX_STREAMS];
	bool server, session_failed, open_ack;
	uint16_t max_streams, next_open;
	int open_streams;
	long live; /* chunks from the peer allocated and not freed */
	long kept; /* sent chunks not yet released */
};

static void chunk_free(void *p, struct fx *x)
{
	struct chunk *c = p;

	CHECK(c && c->magic == MAGIC_LIVE);
	c->magic = MAGIC_DEAD;
	x->live--;
	free(c);
}

static struct fx *cur;
static void chunk_free_cb(void *p)
{
	chunk_free(p, cur);
}

static void stream_create(struct fx *x, uint16_t id)
{
	CHECK(id < WIRE_MAX_STREAMS && !x->st[id]);
	/* The machine asks for a stream only within max_streams (§5.1). */
	CHECK(x->open_streams < x->max_streams);
	x->st[id] = calloc(1, sizeof(*x->st[id]));
	CHECK(x->st[id]);
	rxsm_stream_init(x->st[id], WINDOW);
	x->ms[id].exists = true;
	x->open_streams++;
}

static void stream_fail(struct fx *x, uint16_t id)
{
	if (!x->ms[id].exists || x->ms[id].failed)
		return;
	x->ms[id].failed = true;
	x->open_streams--;
}

/* The model's verdict on a DATA frame: 0 dropped, 1 kept, -1 window broken (kept), -2 outside the window. */
static int model_data(const struct fx *x, const struct mstream *ms, uint64_t seq, uint32_t len)
{
	uint64_t unacked_b;

	if (ms->failed || ms->done || (ms->end_seen && seq >= ms->end_total) || seq < ms->delivered)
		return 0;
	if (seq - ms->delivered >= WIRE_WINDOW_CHUNKS)
		return -2;
	if (ms->held[seq % WIRE_WINDOW_CHUNKS])
		return 0;
	unacked_b = ms->delivered_b + ms->held_b - ms->acked_b;
	if (seq >= ms->acked_c + WIRE_WINDOW_CHUNKS || (unacked_b > 0 && unacked_b + len > x->m.window))
		return -1;
	return 1;
}

static void check_stream(const struct fx *x, uint16_t id)
{
	const struct rxsm_stream *st = x->st[id];
	const struct mstream *ms = &x->ms[id];

	if (!st)
		return;
	CHECK(st->in_chunks == ms->delivered && st->in_bytes == ms->delivered_b);
	CHECK(st->in_held == ms->held_b && st->ro.stored_bytes == ms->held_b + ms->refused_b);
	CHECK(st->in_acked == ms->acked_c && st->in_acked_bytes == ms->acked_b);
	CHECK(st->in_end_seen == ms->end_seen);
	if (ms->end_seen) {
		/* The first END stays as it was, whatever came after (§5.4). */
		CHECK(st->in_end_chunks == ms->end_total && st->in_end.bytes == ms->end_bytes);
		CHECK(!memcmp(st->in_end.digest, ms->end_dg, WIRE_DIGEST_LEN));
	}
	CHECK(st->cr.sent_chunks == ms->sent_c && st->cr.sent_bytes == ms->sent_b);
	CHECK(st->cr.acked_chunks == ms->ack_c && st->cr.acked_bytes == ms->ack_b);
	CHECK(st->cr.acked_chunks <= st->cr.sent_chunks && st->cr.acked_bytes <= st->cr.sent_bytes);
	CHECK(st->out_verified == ms->verified && st->out_end_sent == ms->end_sent);
	CHECK(st->opened_seen == ms->target_opened);
	CHECK(ms->unacked.count == ms->sent_c - ms->ack_c);
	CHECK(!ms->unacked.head || ms->unacked.head->seq == ms->ack_c);
}

/* Every chunk from the peer is either held by a reorder buffer or freed. */
static void check_all(const struct fx *x)
{
	long held = 0;

	for (uint16_t i = 0; i < WIRE_MAX_STREAMS; i++)
		if (x->st[i]) {
			check_stream(x, i);
			held += x->st[i]->ro.count;
		}
	CHECK(held == x->live);
}

/* One frame from the peer. Returns false when the connection stops reading (a violation). */
static bool op_frame(struct fx *x, const uint8_t *a)
{
	uint8_t p[WIRE_MAX_CONTROL];
	struct wire_hdr h = {.type = a[0] >= OPENED_BYTE ? WIRE_T_OPENED : (uint8_t)(1 + a[0] % OLD_TYPES),
			     .seq = wire_load_be16(a + 2)};
	uint16_t id = a[1] < 240 ? (uint16_t)(a[1] % NSTREAMS) : a[1] == 255 ? WIRE_STREAM_SESSION : a[1];
	struct mstream *ms = id < WIRE_MAX_STREAMS ? &x->ms[id] : NULL;
	struct mstream before = {0};
	struct chunk *c = NULL;
	struct rxsm_out out;
	bool existed = ms && ms->exists, tamper = a[5] >= 250;
	int want = 0, r, creates = 0;

	h.stream = id;
	memset(p, 0, sizeof(p));
	switch (h.type) {
	case WIRE_T_DATA:
		/* small sequence numbers, so chunks land inside and around the window */
		h.seq = a[2] & 0x80 ? wire_load_be16(a + 2) : a[3] % 8 + (ms ? ms->delivered : 0);
		h.len = 1 + (uint32_t)a[4] * 8;
		c = malloc(sizeof(*c));
		CHECK(c);
		*c = (struct chunk){MAGIC_LIVE, id, h.seq, h.len};
		x->live++;
		break;
	case WIRE_T_ACK:
	case WIRE_T_VERIFIED:
		/* counts near the truth, so both good and lying ones come */
		if (ms) {
			h.seq = (a[2] & 0x80 ? ms->sent_c : ms->ack_c + a[3] % 4) + (a[4] & 1);
			wire_u64_encode(p, (a[2] & 0x40 ? ms->sent_b : ms->ack_b + a[4]) + (a[5] & 1));
		}
		h.len = tamper ? a[5] % 16 : 8;
		break;
	case WIRE_T_END:
		h.seq = a[2] & 0x80 ? (ms ? ms->end_total : 0) + (a[3] & 1) : a[3] % 8;
		wire_u64_encode(p, a[4]);
		memset(p + 8, a[5] & 0x0f, WIRE_DIGEST_LEN);
		h.len = tamper ? a[5] % 32 : WIRE_END_LEN;
		break;
	case WIRE_T_OPEN:
		if (!(a[2] & 0x80))
			h.stream = id = x->next_open + (a[3] % 3 == 2); /* mostly the expected one */
		p[0] = a[4] % 4;
		p[1] = a[5] == 1;
		h.len = tamper ? 3 : WIRE_OPEN_LEN;
		ms = id < WIRE_MAX_STREAMS ? &x->ms[id] : NULL;
		existed = ms && ms->exists;
		break;
	case WIRE_T_ERROR:
		wire_store_be16(p, a[4] % 12);
		h.len = 2 + a[5] % 8;
		if (tamper)
			h.len = 1;
		break;
	case WIRE_T_PING:
	case WIRE_T_PONG:
		h.len = tamper ? 7 : WIRE_PING_LEN;
		break;
	case WIRE_T_OPENED:
		h.len = tamper ? 1 + a[4] % 8 : WIRE_OPENED_LEN;
		break;
	default:
		h.len = a[5] % 8;
		break;
	}
	if (ms)
		before = *ms;

	for (;;) {
		struct rxsm_facts f = {.session_failed = x->session_failed,
				       .stream_failed = ms && ms->failed,
				       .open_streams = x->open_streams};

		r = rxsm_step(&x->m, ms ? x->st[id] : NULL, &f, &h, h.type == WIRE_T_DATA ? NULL : p, c, &out);
		CHECK(out.n <= RXSM_MAX_ACTIONS);
		if (r != RXSM_NEED_STREAM)
			break;
		/* Asked only by a server, for a stream it does not have, by a stream frame. */
		CHECK(x->server && ms && !ms->exists && out.n == 0 && !out.chunk_kept);
		CHECK(h.type == WIRE_T_DATA || h.type == WIRE_T_ACK || h.type == WIRE_T_END ||
		      h.type == WIRE_T_VERIFIED || h.type == WIRE_T_OPEN);
		CHECK(creates++ == 0);
		stream_create(x, id);
	}
	CHECK(r == 0 || r == -EBADMSG);
	if (r < 0) {
		CHECK(out.n == 1 && out.act[0].kind == RXSM_A_PROTOCOL && out.act[0].code == WIRE_E_PROTOCOL);
		CHECK(out.act[0].text[0]);
	}
	/* An ERROR never creates a stream (§5.6). */
	if (h.type == WIRE_T_ERROR)
		CHECK(!ms || ms->exists == existed);

	if (h.type == WIRE_T_DATA) {
		if (ms && ms->exists)
			want = model_data(x, ms, h.seq, h.len);
		else
			want = -3; /* unknown stream: refused */
		if (want == 1 || want == -1) {
			CHECK(out.chunk_kept);
			ms->held[h.seq % WIRE_WINDOW_CHUNKS] = true;
			ms->held_seq[h.seq % WIRE_WINDOW_CHUNKS] = h.seq;
			if (want == 1)
				ms->held_b += h.len;
			else
				ms->refused_b += h.len;
		} else {
			CHECK(!out.chunk_kept);
			chunk_free(c, x);
		}
		CHECK((r == 0) == (want >= 0));
		CHECK(want != 1 || (out.n == 1 && out.act[0].kind == RXSM_A_WAKE_IN));
		CHECK(want != 0 || out.n == 0);
	} else {
		CHECK(!out.chunk_kept);
	}
	if (h.type == WIRE_T_END && r == 0 && ms && ms->exists && !before.end_seen) {
		CHECK(out.n == 1 && out.act[0].kind == RXSM_A_WAKE_IN);
		ms->end_seen = true;
		ms->end_total = h.seq;
		ms->end_bytes = wire_load_be64(p);
		memcpy(ms->end_dg, p + 8, WIRE_DIGEST_LEN);
		CHECK(h.seq >= ms->delivered);
	}
	if (h.type == WIRE_T_END && r == 0 && before.end_seen)
		CHECK(out.n == 0 && h.seq == before.end_total && wire_load_be64(p) == before.end_bytes);
	if (h.type == WIRE_T_OPENED) {
		/* Only a client that asked, for a stream it opened, empty (§5.1); else a violation. */
		CHECK((r == 0) == (!x->server && x->m.open_ack && existed && !tamper));
		if (r == 0)
			CHECK(out.n == (before.failed || before.target_opened ? 0u : 1u));
	}

	for (unsigned i = 0; i < out.n; i++) {
		const struct rxsm_action *ac = &out.act[i];

		switch (ac->kind) {
		case RXSM_A_ACKED: {
			struct stripe_ent *e;
			uint64_t n = 0;

			CHECK(h.type == WIRE_T_ACK && ms && ms->exists && ac->seq > ms->ack_c);
			CHECK(ac->seq <= ms->sent_c);
			ms->ack_c = x->st[id]->cr.acked_chunks;
			ms->ack_b = x->st[id]->cr.acked_bytes;
			CHECK(ms->ack_c == ac->seq);
			while ((e = stripe_list_acked(&ms->unacked, ac->seq))) {
				CHECK(e->seq < ac->seq);
				free(e);
				x->kept--;
				n++;
			}
			CHECK(n == ac->seq - before.ack_c);
			break;
		}
		case RXSM_A_OUT_VERIFIED:
			/* Only what was sent and ended, exactly (§5.5). */
			CHECK(h.type == WIRE_T_VERIFIED && ms->end_sent && !ms->verified);
			CHECK(h.seq == ms->sent_c && wire_load_be64(p) == ms->sent_b);
			ms->verified = true;
			break;
		case RXSM_A_OPEN:
			/* In id order, each once, never a failed stream (§5.1, §5.6). */
			CHECK(x->server && h.type == WIRE_T_OPEN && id == x->next_open && !ms->failed && !ms->opened);
			CHECK(ac->code <= WIRE_ROLE_MAX);
			ms->opened = true;
			break;
		case RXSM_A_STREAM_FAIL:
			CHECK(h.type == WIRE_T_ERROR && existed && !before.failed);
			stream_fail(x, id);
			break;
		case RXSM_A_SESSION_FAIL:
			CHECK(h.type == WIRE_T_ERROR && id == WIRE_STREAM_SESSION && !x->session_failed);
			x->session_failed = true;
			break;
		case RXSM_A_PONG:
			CHECK(h.type == WIRE_T_PING && ac->view == p);
			break;
		case RXSM_A_BYE:
			CHECK(x->server && h.type == WIRE_T_BYE);
			break;
		case RXSM_A_WAKE_IN:
			CHECK(h.type == WIRE_T_DATA || h.type == WIRE_T_END);
			break;
		case RXSM_A_OPENED:
			CHECK(!x->server && h.type == WIRE_T_OPENED && existed && !ms->failed && !ms->target_opened);
			ms->target_opened = true;
			break;
		case RXSM_A_PROTOCOL:
			x->session_failed = true;
			break;
		default:
			CHECK(0);
		}
	}
	if (h.type == WIRE_T_OPEN && r == 0 && x->server && id == x->next_open)
		x->next_open++;
	CHECK(x->m.next_open == x->next_open);
	if (ms && r < 0 && h.type != WIRE_T_DATA) {
		/* A refused frame changes nothing it guards. */
		CHECK(ms->end_seen == before.end_seen && ms->ack_c == before.ack_c && ms->verified == before.verified);
	}
	check_all(x);
	return r == 0;
}

static void op_pop(struct fx *x, uint16_t id)
{
	struct mstream *ms = &x->ms[id];
	struct chunk *c;
	uint32_t len;

	if (!ms->exists || ms->failed)
		return;
	while ((c = reorder_pop(&x->st[id]->ro, &len))) {
		unsigned s = (unsigned)(ms->delivered % WIRE_WINDOW_CHUNKS);

		CHECK(c->magic == MAGIC_LIVE && c->stream == id && c->seq == ms->delivered && c->len == len);
		CHECK(ms->held[s] && ms->held_seq[s] == ms->delivered);
		ms->held[s] = false;
		ms->held_b -= len;
		ms->delivered++;
		ms->delivered_b += len;
		chunk_free(c, x);
		if (rxsm_delivered(x->st[id], len, WINDOW)) {
			rxsm_ack_taken(x->st[id]);
			ms->acked_c = ms->delivered;
			ms->acked_b = ms->delivered_b;
		}
	}
	/* caught up: nothing delivered is left unacknowledged, or a sender waiting for room could wait forever (§5.3) */
	CHECK(ms->acked_b == ms->delivered_b);
	if (rxsm_in_ended(x->st[id]) && !ms->done) {
		CHECK(ms->end_seen && ms->delivered == ms->end_total);
		/* the digest matched (or not: then the stream fails; both are the pump's business) */
		x->st[id]->in_done = ms->done = true;
		rxsm_ack_taken(x->st[id]);
		ms->acked_c = ms->delivered;
		ms->acked_b = ms->delivered_b;
	}
	check_all(x);
}

static void op_send(struct fx *x, uint16_t id, uint32_t len)
{
	struct mstream *ms = &x->ms[id];
	struct sent *e;

	if (!ms->exists) {
		/* the client opens its streams itself */
		if (x->server || x->open_streams >= x->max_streams)
			return;
		stream_create(x, id);
	}
	if (ms->failed || ms->end_sent || !credit_can_send(&x->st[id]->cr, len))
		return;
	rxsm_sent(x->st[id], len);
	e = calloc(1, sizeof(*e));
	CHECK(e);
	e->ent.seq = ms->sent_c;
	e->ent.link = -1;
	e->len = len;
	stripe_list_push(&ms->unacked, &e->ent);
	x->kept++;
	ms->sent_c++;
	ms->sent_b += len;
	check_stream(x, id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	struct fx *x = calloc(1, sizeof(*x));

	CHECK(x);
	cur = x;
	if (p < end) {
		x->server = !(*p & 1);
		x->max_streams = (uint16_t)(1 + (*p >> 1) % NSTREAMS);
		x->open_ack = ((*p >> 1) / NSTREAMS) & 1;
		p++;
	} else {
		x->server = true;
		x->max_streams = 2;
	}
	rxsm_init(&x->m, x->server, WINDOW, x->max_streams);
	x->m.open_ack = x->open_ack;
	while (p < end) {
		uint8_t op = *p++ % OP_COUNT;

		if (op == OP_FRAME) {
			if (end - p < 6)
				break;
			if (!op_frame(x, p))
				break; /* the connection stops reading (§7) */
			p += 6;
			continue;
		}
		if (p >= end)
			break;
		switch (op) {
		case OP_POP:
			op_pop(x, (uint16_t)(*p++ % NSTREAMS));
			break;
		case OP_SEND:
			if (end - p < 2)
				goto done;
			op_send(x, (uint16_t)(p[0] % NSTREAMS), 1 + (uint32_t)p[1] * 16);
			p += 2;
			break;
		case OP_ENDOUT: {
			uint16_t id = (uint16_t)(*p++ % NSTREAMS);

			if (x->ms[id].exists && !x->ms[id].failed) {
				x->ms[id].end_sent = x->st[id]->out_end_sent = true;
			}
			break;
		}
		case OP_FAIL:
			stream_fail(x, (uint16_t)(*p++ % NSTREAMS));
			break;
		}
	}
done:
	for (int i = 0; i < WIRE_MAX_STREAMS; i++) {
		struct stripe_ent *e;

		if (!x->st[i])
			continue;
		reorder_clear(&x->st[i]->ro, chunk_free_cb);
		while ((e = stripe_list_pop(&x->ms[i].unacked))) {
			free(e);
			x->kept--;
		}
		free(x->st[i]);
	}
	CHECK(x->live == 0 && x->kept == 0);
	free(x);
	cur = NULL;
	return 0;
}
