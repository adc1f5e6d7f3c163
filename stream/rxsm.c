/* SPDX-License-Identifier: MIT */
/*
 * Receive state machine (PROTOCOL.md §5, §7); contract in rxsm.h. Every
 * payload is decoded before any state is looked at or changed, so a
 * malformed frame changes nothing; every check that can refuse a frame
 * comes before the first write to the state it guards (a second END that
 * disagrees leaves the first one as it was, §5.4).
 */
#include "rxsm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void rxsm_init(struct rxsm *m, bool server, uint32_t window, uint16_t max_streams)
{
	memset(m, 0, sizeof(*m));
	m->server = server;
	m->window = window;
	m->max_streams = max_streams;
}

void rxsm_stream_init(struct rxsm_stream *st, uint32_t window)
{
	memset(st, 0, sizeof(*st));
	credit_init(&st->cr, window);
	reorder_init(&st->ro);
}

static struct rxsm_action *act(struct rxsm_out *out, enum rxsm_act kind, const struct wire_hdr *h)
{
	struct rxsm_action *a = &out->act[out->n++];

	a->kind = kind;
	a->stream = h->stream;
	a->seq = h->seq;
	return a;
}

/* Records a violation (§7) and returns -EBADMSG. */
static int violation(struct rxsm_out *out, const struct wire_hdr *h, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int violation(struct rxsm_out *out, const struct wire_hdr *h, const char *fmt, ...)
{
	struct rxsm_action *a;
	va_list ap;

	out->n = 0; /* nothing else is carried out after a violation */
	a = act(out, RXSM_A_PROTOCOL, h);
	a->code = WIRE_E_PROTOCOL;
	va_start(ap, fmt);
	vsnprintf(a->text, sizeof(a->text), fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

static int malformed(struct rxsm_out *out, const struct wire_hdr *h)
{
	return violation(out, h, "unexpected or malformed %s frame", wire_type_name(h->type));
}

/*
 * A stream frame names a stream the session does not have. The server
 * creates it on first sight, within max_streams (§5.1: DATA, END and ACK
 * may overtake OPEN); anything else is a violation.
 */
static int no_stream(const struct rxsm *m, const struct rxsm_facts *f, const struct wire_hdr *h, struct rxsm_out *out)
{
	if (!m->server || h->stream >= WIRE_MAX_STREAMS)
		return violation(out, h, "%s for unknown stream %u", wire_type_name(h->type), h->stream);
	if (f->open_streams >= m->max_streams)
		return violation(out, h, "stream %u exceeds the %u open streams allowed", h->stream, m->max_streams);
	return RXSM_NEED_STREAM;
}

static int on_data(const struct rxsm *m, struct rxsm_stream *st, const struct rxsm_facts *f, const struct wire_hdr *h,
		   void *chunk, struct rxsm_out *out)
{
	int r;

	/* Failed or finished, at or beyond END's total, or delivered already: dropped (§5.2, §5.6). */
	if (f->stream_failed || st->in_done || (st->in_end_seen && h->seq >= st->in_end_chunks) ||
	    h->seq < st->in_chunks)
		return 0;
	r = reorder_put(&st->ro, h->seq, chunk, h->len);
	if (r == 1)
		return 0; /* held already: a re-send after a lost connection */
	if (r < 0)
		return violation(out, h, "stream %u: chunk %llu outside the window (next %llu)", h->stream,
				 (unsigned long long)h->seq, (unsigned long long)st->in_chunks);
	out->chunk_kept = true;
	/*
	 * The sender can only have seen the ACKs we queued: everything
	 * received beyond the last one plus the window breaks the credit
	 * (§5.3), however fast we write it out.
	 */
	if (credit_rx_check(h->seq, st->in_acked, st->in_bytes + st->in_held - st->in_acked_bytes, h->len, m->window) <
	    0)
		return violation(out, h, "stream %u: peer sent chunk %llu beyond its %u-byte window", h->stream,
				 (unsigned long long)h->seq, m->window);
	st->in_held += h->len;
	act(out, RXSM_A_WAKE_IN, h);
	return 0;
}

static int on_ack(struct rxsm_stream *st, const struct wire_hdr *h, uint64_t bytes, struct rxsm_out *out)
{
	if (h->seq <= st->cr.acked_chunks && bytes <= st->cr.acked_bytes)
		return 0; /* stale ACK re-sent after a reconnect */
	if (credit_on_ack(&st->cr, h->seq, bytes) < 0)
		return violation(out, h, "stream %u: ACK of %llu chunks but %llu were sent", h->stream,
				 (unsigned long long)h->seq, (unsigned long long)st->cr.sent_chunks);
	act(out, RXSM_A_ACKED, h);
	return 0;
}

static int on_end(struct rxsm_stream *st, const struct wire_hdr *h, const struct wire_end *e, struct rxsm_out *out)
{
	if (st->in_end_seen) {
		/* A repeat after a reconnect is equal in every field; anything else contradicts (§5.4). */
		if (st->in_end_chunks != h->seq || st->in_end.bytes != e->bytes ||
		    memcmp(st->in_end.digest, e->digest, WIRE_DIGEST_LEN))
			return violation(out, h, "stream %u: second END disagrees", h->stream);
		return 0;
	}
	if (h->seq < st->in_chunks)
		return violation(out, h, "stream %u: END at chunk %llu after %llu were delivered", h->stream,
				 (unsigned long long)h->seq, (unsigned long long)st->in_chunks);
	st->in_end = *e;
	st->in_end_seen = true;
	st->in_end_chunks = h->seq;
	act(out, RXSM_A_WAKE_IN, h);
	return 0;
}

static int on_verified(struct rxsm_stream *st, const struct wire_hdr *h, uint64_t bytes, struct rxsm_out *out)
{
	if (!st->out_end_sent || bytes != st->out_bytes || h->seq != st->cr.sent_chunks)
		return violation(out, h, "stream %u: VERIFIED for %llu bytes, but %llu were sent%s", h->stream,
				 (unsigned long long)bytes, (unsigned long long)st->out_bytes,
				 st->out_end_sent ? "" : " and not ended");
	if (!st->out_verified) {
		st->out_verified = true;
		act(out, RXSM_A_OUT_VERIFIED, h);
	}
	return 0;
}

static int on_open(struct rxsm *m, struct rxsm_stream *st, const struct rxsm_facts *f, const struct wire_hdr *h,
		   uint8_t role, struct rxsm_out *out)
{
	if (h->stream < m->next_open)
		return 0; /* re-sent after a reconnect */
	if (h->stream != m->next_open)
		return violation(out, h, "OPEN of stream %u, expected %u", h->stream, m->next_open);
	if (!st)
		return no_stream(m, f, h, out);
	m->next_open++;
	st->open_seen = true;
	/*
	 * A stream failed before its OPEN (the peer's ERROR overtook it) is
	 * never connected: its data would go nowhere (§5.6).
	 */
	if (!f->stream_failed)
		act(out, RXSM_A_OPEN, h)->code = role;
	return 0;
}

/*
 * Client: the server connected stream <st> to its target (§5.1). Only in a
 * session that asked for it, only for a stream this side opened; a repeat
 * (§2.3) and one for a stream that failed meanwhile change nothing.
 */
static int on_opened(const struct rxsm *m, struct rxsm_stream *st, const struct rxsm_facts *f, const struct wire_hdr *h,
		     struct rxsm_out *out)
{
	if (!m->open_ack)
		return violation(out, h, "OPENED for stream %u, but this session did not ask for OPENED", h->stream);
	if (!st)
		return violation(out, h, "OPENED for stream %u, which this side never opened", h->stream);
	if (st->opened_seen || f->stream_failed)
		return 0;
	st->opened_seen = true;
	act(out, RXSM_A_OPENED, h);
	return 0;
}

static int on_error(struct rxsm_stream *st, const struct rxsm_facts *f, const struct wire_hdr *h,
		    const struct wire_errmsg *em, struct rxsm_out *out)
{
	struct rxsm_action *a;

	if (h->stream == WIRE_STREAM_SESSION) {
		if (f->session_failed)
			return 0;
		a = act(out, RXSM_A_SESSION_FAIL, h);
	} else {
		/* A stream this side does not know, or that failed already: ignored (§5.6). */
		if (!st || f->stream_failed)
			return 0;
		a = act(out, RXSM_A_STREAM_FAIL, h);
	}
	a->code = em->code;
	snprintf(a->text, sizeof(a->text), "peer: %s", em->text);
	return 0;
}

int rxsm_step(struct rxsm *m, struct rxsm_stream *st, const struct rxsm_facts *f, const struct wire_hdr *h,
	      const uint8_t *p, void *chunk, struct rxsm_out *out)
{
	struct wire_errmsg em;
	struct wire_end e;
	uint64_t v = 0;
	uint8_t role;

	out->n = 0;
	out->chunk_kept = false;
	/* Payloads first: a malformed one is a violation whatever the state. */
	switch (h->type) {
	case WIRE_T_DATA:
		if (!chunk && h->len)
			return malformed(out, h);
		break;
	case WIRE_T_ACK:
	case WIRE_T_VERIFIED:
		if (wire_u64_decode(&v, p, h->len) < 0)
			return malformed(out, h);
		break;
	case WIRE_T_END:
		if (wire_end_decode(&e, p, h->len) < 0)
			return malformed(out, h);
		break;
	case WIRE_T_OPEN:
		if (!m->server || wire_open_decode(&role, p, h->len) < 0)
			return malformed(out, h);
		return on_open(m, st, f, h, role, out);
	case WIRE_T_OPENED:
		if (m->server || h->len != WIRE_OPENED_LEN)
			return malformed(out, h); /* from the client, or a bad length */
		return on_opened(m, st, f, h, out);
	case WIRE_T_ERROR:
		if (wire_error_decode(&em, p, h->len) < 0)
			return malformed(out, h);
		return on_error(st, f, h, &em, out);
	case WIRE_T_PING:
		if (h->len != WIRE_PING_LEN || !p)
			return malformed(out, h);
		act(out, RXSM_A_PONG, h)->view = p;
		return 0;
	case WIRE_T_PONG:
		return 0; /* asked for or not, nothing to do (§5.7) */
	case WIRE_T_BYE:
		if (!m->server)
			return malformed(out, h);
		act(out, RXSM_A_BYE, h);
		return 0;
	default:
		return malformed(out, h); /* setup frames after setup, unknown types */
	}
	if (!st) {
		if (!m->server && h->type != WIRE_T_DATA && h->type != WIRE_T_END)
			return malformed(out, h);
		return no_stream(m, f, h, out);
	}
	switch (h->type) {
	case WIRE_T_DATA:
		return on_data(m, st, f, h, chunk, out);
	case WIRE_T_ACK:
		return on_ack(st, h, v, out);
	case WIRE_T_END:
		return on_end(st, h, &e, out);
	default:
		return on_verified(st, h, v, out);
	}
}

bool rxsm_delivered(struct rxsm_stream *st, uint32_t len, uint32_t window)
{
	st->in_chunks++;
	st->in_bytes += len;
	st->in_held -= len;
	/* ACK every quarter window, or when the writer caught up, so credit never stalls the sender (§5.3). */
	return st->in_chunks - st->in_acked >= WIRE_WINDOW_CHUNKS / 4 ||
	       st->in_bytes - st->in_acked_bytes >= window / 4 ||
	       st->ro.slot[st->ro.next_seq % WIRE_WINDOW_CHUNKS].chunk == NULL;
}

void rxsm_ack_taken(struct rxsm_stream *st)
{
	st->in_acked = st->in_chunks;
	st->in_acked_bytes = st->in_bytes;
}

bool rxsm_in_ended(const struct rxsm_stream *st)
{
	return st->in_end_seen && st->in_chunks == st->in_end_chunks;
}

void rxsm_sent(struct rxsm_stream *st, uint32_t len)
{
	credit_on_send(&st->cr, len);
	st->out_bytes += len;
}
