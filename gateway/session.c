/* SPDX-License-Identifier: MIT */
/*
 * Session engine (PROTOCOL.md §2, §5): the session's life cycle and its
 * public API (session.h). The threads live in the other session_*.c files
 * (see session_int.h for who does what):
 *   conn reader  - reads frames, decodes DATA, puts chunks in reorder buffers (session_conn.c)
 *   conn writer  - sends control frames first, then DATA chunks, compressing them (session_conn.c)
 *   stream out   - reads the local fd into chunks while credit allows (session_stream.c)
 *   stream in    - writes reordered chunks to the local fd, ACKs, verifies END (session_stream.c)
 *   timer        - keepalive, deadlines, rejoin (session_timer.c)
 * All shared state is under s->lock. The protocol's rules are not here but
 * in stream/: what a frame from the peer does is stream/rxsm.h's state
 * machine; which connection takes a chunk, what an ACK releases and what a
 * lost connection re-sends is stream/stripe.h.
 */
#include "session_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "net.h"
#include "stream/conn.h"

uint64_t gw_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void deadline(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Locked. Marks one stream failed; wakes its pumps. */
void stream_fail_locked(struct gw_stream *st, int code, bool tell_peer, const char *text)
{
	if (st->fail_code || st->complete)
		return;
	snprintf(st->fail_text, sizeof(st->fail_text), "%s", text);
	__atomic_store_n(&st->fail_code, code, __ATOMIC_RELEASE);
	if (tell_peer) {
		uint8_t buf[2 + WIRE_MAX_ERROR_TEXT];
		int n = wire_error_encode(buf, (uint16_t)code, text);

		send_ctl(st->s, WIRE_T_ERROR, st->id, 0, buf, (uint32_t)n);
	}
	if (--st->s->open_streams == 0)
		st->s->idle_since_ns = gw_now_ns();
	/* Unblock pumps stuck in local socket I/O; the fds are closed by ops->close at teardown. */
	if (st->rfd >= 0)
		shutdown(st->rfd, SHUT_RDWR);
	if (st->wfd >= 0 && st->wfd != st->rfd)
		shutdown(st->wfd, SHUT_RDWR);
	pthread_cond_broadcast(&st->out_cond);
	pthread_cond_broadcast(&st->in_cond);
	pthread_cond_broadcast(&st->s->cond);
}

static void vfail(struct gw_session *s, int code, bool tell_peer, const char *fmt, va_list ap)
{
	char text[WIRE_MAX_ERROR_TEXT + 1];

	vsnprintf(text, sizeof(text), fmt, ap);
	if (s->err_code)
		return;
	s->err_code = code;
	snprintf(s->err_text, sizeof(s->err_text), "%s", text);
	if (tell_peer) {
		uint8_t buf[2 + WIRE_MAX_ERROR_TEXT];
		int n = wire_error_encode(buf, (uint16_t)code, text);

		for (int i = 0; i < WIRE_MAX_CONNS; i++)
			if (s->conns[i] && !s->conns[i]->dead) {
				struct wire_hdr h = { .type = WIRE_T_ERROR, .stream = WIRE_STREAM_SESSION,
						      .len = (uint32_t)n };

				(void)!conn_queue_ctl(s->conns[i], &h, buf);
			}
	}
	for (int i = 0; i < s->nstreams; i++)
		if (s->streams[i])
			stream_fail_locked(s->streams[i], code, false, text);
	pthread_cond_broadcast(&s->cond);
}

void gw_session_fail_locked(struct gw_session *s, int code, bool tell_peer, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(s, code, tell_peer, fmt, ap);
	va_end(ap);
}

void gw_session_fail(struct gw_session *s, int code, bool tell_peer, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->lock);
	va_start(ap, fmt);
	vfail(s, code, tell_peer, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&s->lock);
}

/* ---- session lifecycle ----------------------------------------------- */

int gw_session_new(struct gw_session **out, const struct gw_session_cfg *cfg)
{
	static const uint8_t zero_token[WIRE_TOKEN_LEN];
	struct gw_session *s = calloc(1, sizeof(*s));
	int r = -ENOMEM;

	if (!s)
		goto fail;
	s->cfg = *cfg;
	/* What the session owns moves out of the copy: one owner for each. */
	s->rejoin = cfg->rejoin;
	s->rejoin_ctx = cfg->rejoin_ctx;
	s->rejoin_ctx_free = cfg->rejoin_ctx_free;
	s->own_cfg = cfg->tls_cfg;
	s->cfg.rejoin_ctx = NULL;
	s->cfg.tls_cfg = NULL;
	s->id = cfg->id;
	memcpy(s->token, cfg->token, WIRE_TOKEN_LEN);
	snprintf(s->identity, sizeof(s->identity), "%s", cfg->identity);
	snprintf(s->target, sizeof(s->target), "%s", cfg->target);
	s->hello = cfg->hello;
	s->nconns = cfg->nconns;
	/* The server names its sessions; a client's come from the WELCOME, as they are. */
	if (s->cfg.server && ((!s->id && (r = mr_random(&s->id, sizeof(s->id))) < 0) ||
			      (!memcmp(s->token, zero_token, WIRE_TOKEN_LEN) &&
			       (r = mr_random(s->token, sizeof(s->token))) < 0)))
		goto fail;
	if (!s->cfg.window)
		s->cfg.window = GW_DEFAULT_WINDOW;
	if (!s->cfg.chunk_size)
		s->cfg.chunk_size = GW_DEFAULT_CHUNK;
	if (!s->cfg.max_streams)
		s->cfg.max_streams = GW_DEFAULT_MAX_STREAMS;
	if (!s->cfg.reconnect_ms)
		s->cfg.reconnect_ms = GW_DEFAULT_RECONNECT_MS;
	if (s->cfg.keepalive_ms <= 0)
		s->cfg.keepalive_ms = GW_DEFAULT_KEEPALIVE_MS;
	rxsm_init(&s->sm, s->cfg.server, s->cfg.window, s->cfg.max_streams);
	s->sm.open_ack = s->cfg.open_ack;
	stripe_init(&s->stripe);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->started_ns = gw_now_ns();
	s->idle_since_ns = s->started_ns;
	*out = s;
	return 0;
fail:
	/* taken over even on failure (session.h) */
	if (cfg->rejoin_ctx && cfg->rejoin_ctx_free)
		cfg->rejoin_ctx_free(cfg->rejoin_ctx);
	mr_tls_cfg_free(cfg->tls_cfg);
	free(s);
	return r;
}

static void conn_free(struct gw_conn *c)
{
	if (!c)
		return;
	/*
	 * Lent chunks the socket still holds (its peer has not acknowledged
	 * them): on close the kernel would go on sending them from memory
	 * freed below. A reset on close discards them first.
	 */
	if (c->lent_n && mr_conn_unsent(c->conn) != 0 && c->fd >= 0)
		(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &(struct linger){.l_onoff = 1, .l_linger = 0},
				 sizeof(struct linger));
	mr_conn_free(c->conn); /* closes the socket */
	conn_lent_release(c, true);
	codec_free(c->enc);
	codec_free(c->dec);
	free(c->txbuf);
	free(c->rxbuf);
	pthread_cond_destroy(&c->cond);
	free(c);
}

int gw_session_add_conn(struct gw_session *s, int idx, struct mr_conn *conn)
{
	struct gw_conn *c = calloc(1, sizeof(*c));
	int fd = conn->fd;
	int r = -ENOMEM;

	if (!c) {
		mr_conn_free(conn);
		return -ENOMEM;
	}
	c->s = s;
	c->idx = idx;
	c->fd = fd;
	c->conn = conn;
	pthread_cond_init(&c->cond, NULL);
	c->enc = codec_new(s->cfg.zlevel > 0 ? s->cfg.zlevel : 3);
	c->dec = codec_new(1);
	c->txbuf = malloc(WIRE_HDR_LEN + WIRE_MAX_PAYLOAD);
	c->rxbuf = malloc(WIRE_MAX_PAYLOAD);
	if (!c->enc || !c->dec || !c->txbuf || !c->rxbuf)
		goto fail;
	pthread_mutex_lock(&s->lock);
	if (idx < 0 || idx >= WIRE_MAX_CONNS || s->conns[idx]) {
		pthread_mutex_unlock(&s->lock);
		r = -EEXIST;
		goto fail;
	}
	/* A peer that takes no bytes for a minute is gone; the writer must not block forever. */
	net_set_timeouts(fd, 0, 60000);
	s->conns[idx] = c;
	s->nlive++;
	s->never++;
	s->all_dead_ns = 0;
	c->last_rx_ns = c->last_tx_ns = gw_now_ns();
	if (!s->timer_started && pthread_create(&s->timer, NULL, session_timer_main, s) == 0)
		s->timer_started = true;
	if ((r = pthread_create(&c->rd, NULL, conn_reader_main, c)) != 0 ||
	    (r = pthread_create(&c->wr, NULL, conn_writer_main, c)) != 0) {
		/* Cannot happen short of resource exhaustion; the reader, if it started, owns the conn. */
		gw_session_fail_locked(s, WIRE_E_INTERNAL, true, "cannot start connection threads");
		pthread_mutex_unlock(&s->lock);
		return -r;
	}
	c->threads = true;
	pthread_mutex_unlock(&s->lock);
	return 0;
fail:
	conn_free(c);
	return r;
}

bool gw_session_awaits_bye_locked(const struct gw_session *s)
{
	if (s->bye || s->bye_wait_over || s->err_code || s->nstreams == 0 || s->open_streams > 0)
		return false;
	for (int i = 0; i < s->nstreams; i++)
		if (s->streams[i] && s->streams[i]->fail_code)
			return false;
	return true;
}

void thread_name(const char *what, unsigned n)
{
	char name[16];

	snprintf(name, sizeof(name), "%s%u", what, n);
	(void)pthread_setname_np(pthread_self(), name);
}

bool gw_session_conn_gone_locked(struct gw_session *s, int idx, int timeout_ms)
{
	struct timespec ts;

	deadline(&ts, timeout_ms);
	while (s->conns[idx] && !s->conns[idx]->dead && !s->err_code)
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
			break;
	return !(s->conns[idx] && !s->conns[idx]->dead) && !s->err_code;
}

bool gw_session_conn_gone(struct gw_session *s, int idx, int timeout_ms)
{
	bool r;

	pthread_mutex_lock(&s->lock);
	r = gw_session_conn_gone_locked(s, idx, timeout_ms);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int gw_session_replace_conn(struct gw_session *s, int idx, struct mr_conn *conn)
{
	struct gw_conn *old;
	int r;

	if (idx < 0 || idx >= WIRE_MAX_CONNS) {
		mr_conn_free(conn);
		return -EINVAL;
	}
	pthread_mutex_lock(&s->lock);
	old = s->conns[idx];
	if (s->finished || (old && !old->dead)) {
		pthread_mutex_unlock(&s->lock);
		mr_conn_free(conn);
		return -EEXIST;
	}
	s->conns[idx] = NULL;
	pthread_mutex_unlock(&s->lock);
	if (old) {
		/* Dead: its reader has returned or is returning, its writer sees c->dead. */
		if (old->threads) {
			pthread_join(old->wr, NULL);
			pthread_join(old->rd, NULL);
		}
		conn_free(old);
	}
	r = gw_session_add_conn(s, idx, conn);
	if (r < 0)
		return r;
	/* What the old connection at this index carried is gone with it, though the index lives again. */
	pthread_mutex_lock(&s->lock);
	if (old)
		s->rejoins[idx]++;
	resync_locked(s, idx);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void gw_session_bye(struct gw_session *s)
{
	pthread_mutex_lock(&s->lock);
	if (!s->bye) {
		/*
		 * The VERIFIEDs again, on the connection BYE takes, ahead of it:
		 * one sent before may have gone down with another connection,
		 * and a server that has BYE must not miss one (PROTOCOL.md
		 * §5.8). The server ignores repeats.
		 */
		for (int i = 0; i < s->nstreams; i++)
			if (s->streams[i] && !s->streams[i]->fail_code && s->streams[i]->sm.in_done)
				send_verified(s->streams[i]);
		send_ctl(s, WIRE_T_BYE, 0, 0, NULL, 0);
	}
	s->bye = true;
	pthread_mutex_unlock(&s->lock);
}

int gw_stream_wait(struct gw_session *s, int id, int timeout_ms)
{
	struct timespec ts;
	int r = 0;

	if (timeout_ms >= 0)
		deadline(&ts, timeout_ms);
	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct gw_stream *st = s->streams[id];

		if (st->complete) {
			r = 0;
			break;
		}
		if (st->fail_code) {
			r = -EPROTO; /* the code: gw_stream_result */
			break;
		}
		if (timeout_ms >= 0) {
			if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT) {
				r = -ETIMEDOUT;
				break;
			}
		} else {
			pthread_cond_wait(&s->cond, &s->lock);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

int gw_session_wait_idle(struct gw_session *s, int timeout_ms)
{
	struct timespec ts;
	int r = 0;

	if (timeout_ms >= 0)
		deadline(&ts, timeout_ms);
	pthread_mutex_lock(&s->lock);
	while (s->open_streams > 0 && !s->err_code) {
		if (timeout_ms < 0)
			pthread_cond_wait(&s->cond, &s->lock);
		else if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT) {
			r = -ETIMEDOUT;
			break;
		}
	}
	if (!r && s->err_code)
		r = -EPROTO; /* the code: gw_session_first_failure */
	pthread_mutex_unlock(&s->lock);
	return r;
}

void gw_session_wait_dead(struct gw_session *s)
{
	pthread_mutex_lock(&s->lock);
	while (s->nlive > 0)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

/* Locked. The predicate gw_session_wait_finished waits for (session.h says why each part). */
static bool finished_locked(const struct gw_session *s)
{
	return s->err_code ||
	       !(s->nlive > 0 || (s->cfg.reconnect_ms > 0 && (s->open_streams > 0 || gw_session_awaits_bye_locked(s))));
}

void gw_session_wait_finished(struct gw_session *s, struct gw_outcome *o)
{
	pthread_mutex_lock(&s->lock);
	while (!finished_locked(s))
		pthread_cond_wait(&s->cond, &s->lock);
	if (o)
		outcome_locked(s, o);
	pthread_mutex_unlock(&s->lock);
}

void gw_session_set_target_ops(struct gw_session *s,
			       int (*on_open)(struct gw_session *s, struct gw_stream *st, char *why, size_t whylen),
			       void *ctx, void (*ctx_free)(struct gw_session *s))
{
	pthread_mutex_lock(&s->lock);
	s->on_open = on_open;
	s->ctx = ctx;
	s->ctx_free = ctx_free;
	pthread_mutex_unlock(&s->lock);
}

/* Locked. Whether every connection's writer has ended (flushed its queue and said goodbye). */
static bool writers_done_locked(const struct gw_session *s)
{
	for (int i = 0; i < WIRE_MAX_CONNS; i++) {
		const struct gw_conn *c = s->conns[i];

		if (c && c->threads && !c->wr_done)
			return false;
	}
	return true;
}

void gw_session_close(struct gw_session *s)
{
	struct timespec ts;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	/*
	 * A client that closes with streams unfinished cancelled them: say so to
	 * the server (an ERROR goes out before the close_notify), which would
	 * otherwise take clean closes for connections replaced for fresh keys.
	 */
	if (!s->cfg.server && s->open_streams > 0 && !s->err_code)
		gw_session_fail_locked(s, WIRE_E_TRUNCATED, true,
				       "the client cancelled: it closed the session with %d stream(s) unfinished",
				       s->open_streams);
	s->finished = true;
	/* Any stream still open now did not end well. */
	for (int i = 0; i < s->nstreams; i++) {
		struct gw_stream *st = s->streams[i];

		if (st && !st->complete && !st->fail_code)
			stream_fail_locked(st, WIRE_E_TRUNCATED, false, "session closed before the stream ended");
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	/* The timer may be rejoining a connection: let it finish first. */
	if (s->timer_started)
		pthread_join(s->timer, NULL);
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		if (s->conns[i] && !s->conns[i]->dead) {
			s->conns[i]->closing = true;
			pthread_cond_broadcast(&s->conns[i]->cond);
		}
	/*
	 * Writers flush and send close_notify, for GW_DRAIN_MS at most: a peer
	 * that stopped reading must not keep a closing session (its threads,
	 * sockets and buffers) alive. Then the sockets are shut, which ends a
	 * send still blocked and makes the readers return.
	 */
	deadline(&ts, GW_DRAIN_MS);
	while (!writers_done_locked(s))
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		if (s->conns[i] && s->conns[i]->fd >= 0)
			shutdown(s->conns[i]->fd, SHUT_RDWR);
	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		if (s->conns[i] && s->conns[i]->threads)
			pthread_join(s->conns[i]->wr, NULL);
	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		if (s->conns[i] && s->conns[i]->threads)
			pthread_join(s->conns[i]->rd, NULL);
	for (int i = 0; i < s->nstreams; i++) {
		struct gw_stream *st = s->streams[i];

		if (!st)
			continue;
		if (st->out_started)
			pthread_join(st->out_thr, NULL);
		if (st->in_started)
			pthread_join(st->in_thr, NULL);
		if (st->fail_code && st->ops && st->ops->abort)
			st->ops->abort(st);
		if (st->ops && st->ops->close)
			st->ops->close(st);
		reorder_clear(&st->sm.ro, free);
		for (struct stripe_ent *e; (e = stripe_list_pop(&st->unacked));)
			chunk_put(chunk_of(e));
		digest_free(&st->out_dg);
		digest_free(&st->in_dg);
		pthread_cond_destroy(&st->out_cond);
		pthread_cond_destroy(&st->in_cond);
		free(st);
	}
	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		conn_free(s->conns[i]);
	if (s->ctx_free)
		s->ctx_free(s);
	if (s->rejoin_ctx && s->rejoin_ctx_free)
		s->rejoin_ctx_free(s->rejoin_ctx);
	mr_tls_cfg_free(s->own_cfg);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
