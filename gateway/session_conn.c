/* SPDX-License-Identifier: MIT */
/*
 * A connection's two threads. The writer takes control frames, then DATA
 * chunks, from the connection's queues (session_sched.c), compresses
 * chunks (stream/codec.h) and sends through the connection's engine
 * (stream/conn.h). The reader receives frames through the same engine,
 * decompresses DATA, and runs each frame through the receive state machine
 * (stream/rxsm.h), carrying out its actions. Each thread binds the engine's
 * transport of its direction to itself for its whole life.
 */
#include "session_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "net.h"
#include "stream/conn.h"

/* ---- the connection's own transport (stream/conn.h) ------------------ */

/* Once per process: how the data path moves bytes, and why not otherwise. */
static void io_note(const struct gw_conn *c, const char *uring_why)
{
	static atomic_bool said_engine, said_uring;
	const char *k = mr_conn_note(c->conn);

	if (uring_why && !atomic_exchange(&said_uring, true))
		gw_info("io_uring not used: %s; sending and receiving with send()/recv()", uring_why);
	if (!atomic_exchange(&said_engine, true))
		gw_dbg("data path: engine %s%s%s", mr_conn_name(c->conn), *k ? "; " : "", k);
}

/*
 * Writer (<tx>) or reader thread, at its start: the engine's transport of
 * that direction is bound to this thread, which may set up what a
 * connection may have for itself (an io_uring under the in-place TLS
 * records).
 */
static void conn_io_start(struct gw_conn *c, bool tx)
{
	struct mr_conn_io io = { .tx_bufs = GW_URING_TX_BUFS, .tx_bufsize = GW_URING_TX_BUFSIZE,
				 .rx_bufs = GW_URING_RX_BUFS, .rx_bufsize = GW_URING_RX_BUFSIZE,
				 .loopback = net_peer_is_loopback(c->fd) };
	char why[256] = "";

	if (tx)
		mr_conn_start_tx(c->conn, &io, why, sizeof(why));
	else
		mr_conn_start_rx(c->conn, &io, why, sizeof(why));
	io_note(c, why[0] ? why : NULL);
}

/*
 * Writer or reader thread, at its end: a ring is used only by the thread
 * that made it, so that thread ends it (cancelling what is armed, waiting
 * for zero-copy notifications), while the socket is still open.
 */
static void conn_io_stop_tx(struct gw_conn *c)
{
	mr_conn_stop_tx(c->conn);
}

static void conn_io_stop_rx(struct gw_conn *c)
{
	mr_conn_stop_rx(c->conn);
}

/*
 * Writer, locked. Waits for a queue entry and takes it off its queue,
 * control frames first, and starts the send deadline the timer watches.
 * Returns the entry (the caller owns it), or NULL when the connection is
 * dead, or closing with both queues drained.
 */
static struct gw_qent *writer_take_locked(struct gw_conn *c)
{
	struct gw_session *s = c->s;
	struct gw_qent *e;

	while (!c->dead && !c->ctl_head && !c->data_head && !c->closing)
		pthread_cond_wait(&c->cond, &s->lock);
	if (c->dead)
		return NULL;
	if ((e = c->ctl_head)) {
		c->ctl_head = e->next;
		if (!c->ctl_head)
			c->ctl_tail = NULL;
	} else if ((e = c->data_head)) {
		c->data_head = e->next;
		if (!c->data_head)
			c->data_tail = NULL;
	} else {
		return NULL; /* closing and drained */
	}
	c->queued -= e->len;
	if (!e->c)
		c->ctl_queued -= e->len;
	c->tx_since_ns = gw_now_ns(); /* the timer drops a send that makes no progress */
	return e;
}

/*
 * Writer, unlocked. The bytes that carry entry <e>: a control frame as it
 * was queued; a chunk compressed into c->txbuf when <z> and the codec
 * finds it worth it, else the chunk's own buffer (header and raw bytes).
 * Sets *len; the bytes stay valid while <e> and c->txbuf do.
 */
static const uint8_t *writer_frame(struct gw_conn *c, const struct gw_qent *e, bool z, size_t *len)
{
	const struct gw_chunk *ch = e->c;
	size_t zl = 0;
	unsigned fl;

	if (!ch) {
		*len = e->len;
		return e->buf;
	}
	fl = codec_encode(c->enc, z, ch->mem + WIRE_HDR_LEN, ch->len, c->txbuf + WIRE_HDR_LEN, &zl);
	if (!fl) {
		*len = WIRE_HDR_LEN + ch->len;
		return ch->mem;
	}
	wire_hdr_encode(c->txbuf, &(struct wire_hdr){ .type = WIRE_T_DATA, .flags = (uint8_t)fl, .stream = 0,
						     .len = (uint32_t)zl, .seq = ch->seq });
	/* stream id: copy from the chunk's own header */
	memcpy(c->txbuf + 2, ch->mem + 2, 2);
	*len = WIRE_HDR_LEN + zl;
	return c->txbuf;
}

/*
 * Writer, locked, after a send. Rekey policy: a connection that sent
 * gw_rekey_bytes() under one key is replaced (one at a time, unless it
 * is half as far again past the threshold). Returns true when this one
 * is: it half-closed and the writer ends.
 */
static bool writer_rekey_locked(struct gw_conn *c)
{
	struct gw_session *s = c->s;

	/* No keys to renew in plaintext mode: its connections are never replaced for that. */
	if (!(c->tx_bytes >= gw_rekey_bytes() && !c->closing && !s->cfg.plaintext &&
	      (!others_replaced_locked(c) || c->tx_bytes >= gw_rekey_bytes() / 2 * 3)))
		return false;
	/*
	 * Fresh keys by a fresh handshake, long before the AEAD usage
	 * limits of one key: drop this connection as if lost; its
	 * chunks go on the others and the client rejoins it (§2.3).
	 * GnuTLS's own key update is not safe with one thread sending
	 * and another receiving on the session.
	 */
	gw_info("connection %d: %llu bytes sent under one key; reconnecting for fresh keys", c->idx,
		(unsigned long long)c->tx_bytes);
	/*
	 * The peer sees a clean close, not a failure: close_notify
	 * and a FIN, while the reader reads what is still on its
	 * way here until the peer closes too. Closing the socket
	 * at once would answer those bytes with an RST, and the
	 * RST would discard the end of this side's own stream at
	 * the peer. What is queued here is re-sent on the others
	 * once the reader has seen the close (conn_dead_locked).
	 */
	c->clean_close = true;
	c->closing = true; /* nothing new goes on it */
	c->draining = true;
	c->drain_ns = gw_now_ns();
	mr_conn_half_close(c->conn);
	c->tx_bytes = 0;
	return true;
}

void conn_lent_release(struct gw_conn *c, bool all)
{
	ssize_t q = all ? 0 : mr_conn_unsent(c->conn);
	uint64_t done;

	if (q < 0)
		return;
	done = c->sock_bytes - (uint64_t)q;
	while (c->lent_n && (all || c->lent[c->lent_head].end <= done)) {
		chunk_put(c->lent[c->lent_head].ch);
		c->lent_head = (c->lent_head + 1) % GW_LENT_MAX;
		c->lent_n--;
	}
}

void *conn_writer_main(void *arg)
{
	struct gw_conn *c = arg;
	struct gw_session *s = c->s;
	struct gw_qent *e;
	bool bye;

	thread_name("mr-wr", (unsigned)c->idx);
	conn_io_start(c, true);

	pthread_mutex_lock(&s->lock);
	while ((e = writer_take_locked(c))) {
		bool z = s->cfg.compress && (!s->cfg.compress_auto || s->za.on);
		uint32_t raw = e->c ? e->c->len : 0;
		bool sample = s->cfg.compress && s->cfg.compress_auto && zauto_take_sample(&s->za, raw);
		uint64_t t = 0;
		bool stable, lend;
		const uint8_t *p;
		size_t len;
		ssize_t n;

		pthread_mutex_unlock(&s->lock);
		if (sample) {
			t = gw_now_ns();
			z = true; /* the sample is sent compressed: its cost is not wasted */
		}
		p = writer_frame(c, e, z, &len);
		if (sample)
			t = gw_now_ns() - t;
		/* a raw chunk stays untouched until the peer ACKs it: it may be lent to the kernel */
		stable = e->c && p == e->c->mem;
		lend = stable && mr_conn_lends(c->conn);
		if (lend && c->lent_n == GW_LENT_MAX)
			conn_lent_release(c, false);
		if (lend && c->lent_n == GW_LENT_MAX)
			stable = lend = false; /* the socket holds enough lent memory: copy this one */
		n = stable ? mr_conn_send_stable(c->conn, p, len) : mr_conn_send(c->conn, p, len);
		if (n >= 0) {
			c->sock_bytes += len;
			if (lend) {
				unsigned k = (c->lent_head + c->lent_n++) % GW_LENT_MAX;

				atomic_fetch_add(&e->c->refs, 1);
				atomic_fetch_or(&e->c->flags, CHUNK_LENT);
				c->lent[k].ch = e->c;
				c->lent[k].end = c->sock_bytes;
			}
		}
		chunk_put(e->c);
		free(e);
		if (c->lent_n)
			conn_lent_release(c, false);
		pthread_mutex_lock(&s->lock);
		c->tx_since_ns = 0;
		if (sample)
			zauto_sample(&s->za, raw, t, (uint32_t)(len - WIRE_HDR_LEN));
		if (raw && s->cfg.compress_auto && n >= 0)
			auto_account(s, raw);
		if (n < 0) {
			if (!c->closing && !c->clean_close && !s->finished && s->open_streams > 0)
				gw_warn("connection %d: send failed: %s", c->idx, strerror((int)-n));
			conn_dead_locked(c);
			break;
		}
		c->tx_bytes += len;
		c->last_tx_ns = gw_now_ns();
		if (writer_rekey_locked(c))
			break;
	}
	bye = c->closing && !c->dead && !c->draining;
	pthread_mutex_unlock(&s->lock);
	/* Unlocked: a peer that stopped reading may hold it up until gw_session_close shuts the socket. */
	if (bye)
		mr_conn_bye(c->conn);
	conn_io_stop_tx(c);
	pthread_mutex_lock(&s->lock);
	c->wr_done = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Locked. A frame that breaks the protocol: the peer is not trusted further (PROTOCOL.md §7). */
static void protocol_error(struct gw_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void protocol_error(struct gw_conn *c, const char *fmt, ...)
{
	char t[WIRE_MAX_ERROR_TEXT + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t, sizeof(t), fmt, ap);
	va_end(ap);
	gw_ratelimited(GW_LOG_ERR, "connection %d: protocol error: %s", c->idx, t);
	gw_session_fail_locked(c->s, WIRE_E_PROTOCOL, true, "protocol error: %s", t);
}

/*
 * Locked on entry and return; drops the lock while it connects stream <st>
 * to the target (on_open may block on a connect or on QMP). Runs in the
 * reader of the connection that carried the OPEN; OPENs arrive in id order
 * on connection 0 (PROTOCOL.md §5.1), so targets are connected in order.
 */
static void open_stream(struct gw_session *s, struct gw_stream *st, uint8_t role)
{
	char why[200] = "";
	int r;

	st->role = role;
	pthread_mutex_unlock(&s->lock);
	r = s->on_open ? s->on_open(s, st, why, sizeof(why)) : -ENOTSUP;
	pthread_mutex_lock(&s->lock);
	if (r < 0) {
		gw_err("session %016llx stream %u: %s", (unsigned long long)s->id, st->id, why);
		stream_fail_locked(st, WIRE_E_TARGET, true, why);
		return;
	}
	st->opened = true;
	if (stream_start(st) < 0) {
		stream_fail_locked(st, WIRE_E_INTERNAL, true, "cannot start stream threads");
		return;
	}
	/* The target is connected: a client that asked is told so (§5.1), and may open its next stream elsewhere. */
	if (s->cfg.open_ack && !st->fail_code)
		send_ctl(s, WIRE_T_OPENED, st->id, 0, NULL, 0);
}

/* Locked (open_stream aside). Carries out one action of the receive state machine for stream <st> (may be NULL). */
static void run_action(struct gw_conn *c, struct gw_stream *st, const struct rxsm_action *a)
{
	struct gw_session *s = c->s;

	switch (a->kind) {
	case RXSM_A_NONE:
		break;
	case RXSM_A_WAKE_IN:
		pthread_cond_signal(&st->in_cond);
		break;
	case RXSM_A_ACKED:
		for (struct stripe_ent *e; (e = stripe_list_acked(&st->unacked, a->seq));)
			chunk_put(chunk_of(e));
		pthread_cond_signal(&st->out_cond); /* credit: the out pump is its only waiter */
		break;
	case RXSM_A_OUT_VERIFIED:
		gw_dbg("session %016llx stream %u: the peer verified the %llu bytes sent", (unsigned long long)s->id,
		       st->id, (unsigned long long)st->sm.out_bytes);
		stream_check_complete(st);
		break;
	case RXSM_A_OPEN:
		open_stream(s, st, (uint8_t)a->code);
		break;
	case RXSM_A_STREAM_FAIL:
		stream_fail_locked(st, a->code, false, a->text);
		break;
	case RXSM_A_SESSION_FAIL:
		s->err_from_peer = true;
		gw_session_fail_locked(s, a->code, false, "%s", a->text);
		break;
	case RXSM_A_PONG: {
		struct wire_hdr ph = { .type = WIRE_T_PONG, .len = WIRE_PING_LEN };

		/* Over the control-queue bound the connection is dropped: a PING flood gains nothing. */
		(void)!conn_queue_ctl(c, &ph, a->view);
		break;
	}
	case RXSM_A_BYE:
		gw_dbg("session %016llx: BYE received", (unsigned long long)s->id);
		s->bye = true;
		pthread_cond_broadcast(&s->cond);
		break;
	case RXSM_A_OPENED:
		pthread_cond_broadcast(&s->cond); /* gw_stream_snapshot's target_connected is now true */
		break;
	case RXSM_A_PROTOCOL:
		protocol_error(c, "%s", a->text);
		break;
	}
}

/*
 * Reader thread of <c>, locked (the lock is dropped only inside
 * open_stream, for on_open). Runs one frame through the receive state
 * machine (stream/rxsm.h), creating the stream it names when the machine
 * asks, then carries out the machine's actions in order. Owns <chunk>
 * (DATA): the reorder buffer took it or it is freed here. Returns 0, or <0
 * when the connection must stop reading.
 */
static int dispatch(struct gw_conn *c, const struct wire_hdr *h, const uint8_t *p, uint8_t *chunk)
{
	struct gw_session *s = c->s;
	struct gw_stream *st = h->stream < WIRE_MAX_STREAMS ? s->streams[h->stream] : NULL;
	struct rxsm_out out;
	int r;

	for (;;) {
		struct rxsm_facts f = { .session_failed = s->err_code != 0,
					.stream_failed = st && st->fail_code,
					.open_streams = s->open_streams };

		r = rxsm_step(&s->sm, st ? &st->sm : NULL, &f, h, p, chunk, &out);
		if (r != RXSM_NEED_STREAM)
			break;
		/* The server creates a stream on first sight (DATA may overtake OPEN, §5.1). */
		if (!(st = stream_new(s, h->stream, WIRE_ROLE_PLAIN))) {
			free(chunk);
			gw_session_fail_locked(s, WIRE_E_INTERNAL, true, "out of memory");
			return -ENOMEM;
		}
	}
	if (!out.chunk_kept)
		free(chunk);
	for (unsigned i = 0; i < out.n; i++)
		run_action(c, st, &out.act[i]);
	return r;
}

/*
 * Reader, unlocked. Receives the payload of DATA frame <h> (its header
 * read) into a new buffer of raw bytes, decompressing it when h->flags say
 * so; h->len becomes the raw length. Returns 0 with *chunk set (the
 * caller owns it), or <0 with *why set when the connection must stop
 * reading: -EMSGSIZE or -EBADMSG (a protocol error: the session failed),
 * -ENOMEM (the session failed), -EPIPE (closed or a receive failed).
 */
static int reader_recv_data(struct gw_conn *c, struct wire_hdr *h, uint8_t **chunk, const char **why)
{
	struct gw_session *s = c->s;
	uint32_t wlen = h->len;
	uint8_t *b = NULL;
	ssize_t n;

	*chunk = NULL;
	if (h->flags == 0) {
		if (h->len > s->cfg.chunk_size)
			goto too_big;
		b = malloc(h->len);
		if (!b)
			goto nomem;
		n = h->len ? mr_conn_recv_all(c->conn, b, h->len) : 0;
	} else {
		n = mr_conn_recv_all(c->conn, c->rxbuf, h->len);
		if (n == (ssize_t)h->len) {
			uint32_t raw = wire_load_be32(c->rxbuf);

			if (raw > s->cfg.chunk_size || raw == 0)
				goto too_big;
			b = malloc(raw);
			if (!b)
				goto nomem;
			if (codec_decode(c->dec, h->flags, c->rxbuf, h->len, b, raw) != (int)raw) {
				free(b);
				pthread_mutex_lock(&s->lock);
				protocol_error(c, "stream %u chunk %llu does not decompress", h->stream,
					       (unsigned long long)h->seq);
				pthread_mutex_unlock(&s->lock);
				*why = "protocol error";
				return -EBADMSG;
			}
			h->len = raw;
		}
	}
	if (n < (ssize_t)wlen) {
		free(b);
		*why = n < 0 ? mr_conn_last_error(c->conn) : "closed by the peer in the middle of a frame";
		return -EPIPE;
	}
	*chunk = b;
	return 0;
too_big:
	pthread_mutex_lock(&s->lock);
	protocol_error(c, "DATA chunk larger than the %u-byte chunk size", s->cfg.chunk_size);
	pthread_mutex_unlock(&s->lock);
	*why = "protocol error";
	return -EMSGSIZE;
nomem:
	gw_session_fail(s, WIRE_E_INTERNAL, true, "out of memory");
	*why = "out of memory";
	return -ENOMEM;
}

/*
 * Reader, at its end (<why> it stopped, <peer_clean> when the peer closed
 * cleanly): ends the receive transport, lets the writer flush a failing
 * session's ERROR frame (2 s at most), then declares the connection dead.
 */
static void reader_end(struct gw_conn *c, const char *why, bool peer_clean)
{
	struct gw_session *s = c->s;

	conn_io_stop_rx(c);
	pthread_mutex_lock(&s->lock);
	if (peer_clean)
		c->clean_close = true;
	if (!c->dead && !c->closing && !s->finished && !s->err_code && s->open_streams > 0 && !c->clean_close)
		gw_warn("connection %d: %s", c->idx, why ? why : "closed");
	/* Failing: let the writer flush the ERROR frame (2 s at most) before the socket goes. */
	if (s->err_code && !c->dead) {
		struct timespec ts;

		c->closing = true;
		pthread_cond_broadcast(&c->cond);
		deadline(&ts, 2000);
		while (!c->wr_done && !c->dead)
			if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
				break;
	}
	conn_dead_locked(c);
	pthread_mutex_unlock(&s->lock);
}

void *conn_reader_main(void *arg)
{
	struct gw_conn *c = arg;
	struct gw_session *s = c->s;
	uint8_t hb[WIRE_HDR_LEN], ctl[WIRE_MAX_CONTROL];
	const char *why = NULL;
	bool peer_clean = false;
	ssize_t n;

	thread_name("mr-rd", (unsigned)c->idx);
	conn_io_start(c, false);

	for (;;) {
		struct wire_hdr h;
		uint8_t *chunk = NULL;
		const uint8_t *p = ctl;
		uint32_t wlen;
		int r;

		n = mr_conn_recv_all(c->conn, hb, sizeof(hb));
		if (n <= 0) {
			why = n == 0 ? "closed by the peer" : mr_conn_last_error(c->conn);
			peer_clean = n == 0;
			break;
		}
		r = wire_hdr_parse(&h, hb, hb + sizeof(hb));
		if (r < 0) {
			pthread_mutex_lock(&s->lock);
			protocol_error(c, "bad frame header (type %u, length %u): %s", hb[0], wire_load_be32(hb + 4),
				       r == -EMSGSIZE ? "length over the cap" : "unknown type or bad field");
			pthread_mutex_unlock(&s->lock);
			why = "protocol error";
			break;
		}
		wlen = h.len;
		if (h.type == WIRE_T_DATA) {
			if (reader_recv_data(c, &h, &chunk, &why) < 0)
				break;
			p = NULL;
		} else {
			n = h.len ? mr_conn_recv_all(c->conn, ctl, h.len) : 0;
			if (n < (ssize_t)wlen) {
				why = n < 0 ? mr_conn_last_error(c->conn) : "closed by the peer in the middle of a frame";
				break;
			}
		}
		pthread_mutex_lock(&s->lock);
		c->rx_bytes += WIRE_HDR_LEN + wlen;
		c->last_rx_ns = gw_now_ns();
		r = dispatch(c, &h, p, chunk);
		pthread_mutex_unlock(&s->lock);
		if (r < 0) {
			why = "protocol error";
			break;
		}
	}
	reader_end(c, why, peer_clean);
	return NULL;
}
