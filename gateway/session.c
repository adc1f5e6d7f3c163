/* SPDX-License-Identifier: MIT */
/*
 * Session engine (PROTOCOL.md §2, §5). Threads:
 *   conn reader  - reads frames, decodes DATA, puts chunks in reorder buffers
 *   conn writer  - sends control frames first, then DATA chunks (compressing them)
 *   stream out   - reads the local fd into chunks while credit allows
 *   stream in    - writes reordered chunks to the local fd, ACKs, verifies END
 * All shared state is under s->lock. The protocol's rules are not here but
 * in stream/: what a frame from the peer does is stream/rxsm.h's state
 * machine (dispatch() runs it and carries out its actions); which
 * connection takes a chunk, what an ACK releases and what a lost
 * connection re-sends is stream/stripe.h. This file owns the threads, the
 * queues and the sockets around them.
 */
#include "session.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "exitcodes.h"
#include "log.h"
#include "net.h"
#include "stream/conn.h"

uint64_t gw_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int gw_exit_for_wire_error(int code)
{
	switch (code) {
	case 0:
		return MR_EXIT_OK;
	case WIRE_E_NOT_ALLOWED:
	case WIRE_E_BAD_TOKEN:
	case WIRE_E_IDENTITY:
		return MR_EXIT_AUTH;
	case WIRE_E_NO_TARGET:
	case WIRE_E_TARGET:
		return MR_EXIT_TARGET;
	case WIRE_E_DIGEST:
		return MR_EXIT_DIGEST;
	case WIRE_E_TRUNCATED:
		return MR_EXIT_PEER_GONE;
	case WIRE_E_PROTOCOL:
		return MR_EXIT_PROTOCOL;
	case WIRE_E_LIMIT:
	case WIRE_E_UNSUPPORTED:
		return MR_EXIT_USAGE;
	default:
		return MR_EXIT_FAIL;
	}
}

static void deadline(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void chunk_put(struct gw_chunk *c)
{
	if (c && atomic_fetch_sub(&c->refs, 1) == 1)
		free(c);
}

/* ---- queues ---------------------------------------------------------- */

/* Locked. Connections that take new frames (stream/stripe.h's <open> mask). */
static uint64_t open_links(const struct gw_session *s)
{
	uint64_t m = 0;

	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		if (s->conns[i] && !s->conns[i]->dead && !s->conns[i]->closing)
			m |= 1ull << i;
	return m;
}

/* Locked. Connections not dead, draining ones included (stream/stripe.h's <alive> mask). */
static uint64_t alive_links(const struct gw_session *s)
{
	uint64_t m = 0;

	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		if (s->conns[i] && !s->conns[i]->dead)
			m |= 1ull << i;
	return m;
}

/*
 * Locked. A peer that broke a bound on this connection (it does not read
 * what it asks for, or a send made no progress within its deadline): take
 * nothing new on it and shut the socket, so that a writer blocked in a send
 * and the reader both return; the reader then declares the connection dead
 * and what it carried goes on the others (PROTOCOL.md §2.3).
 */
static void conn_drop_locked(struct gw_conn *c, const char *why)
{
	if (c->dead || c->dropped)
		return;
	c->dropped = true;
	gw_ratelimited(GW_LOG_WARN, "connection %d: %s; dropping it", c->idx, why);
	c->closing = true;
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	pthread_cond_broadcast(&c->cond);
}

/*
 * Locked. Queues a control frame on <c>. Returns 0, -EPIPE (dead or
 * dropped), -ENOMEM, or -ENOBUFS: the control queue would pass its bound
 * (STRIPE_CTL_MAX_BYTES) because the peer does not read what it asks for,
 * and the connection is dropped.
 */
static int conn_queue_ctl(struct gw_conn *c, const struct wire_hdr *h, const void *payload)
{
	struct gw_qent *e;

	if (c->dead || c->dropped)
		return -EPIPE;
	if (stripe_ctl_admit(c->ctl_queued, WIRE_HDR_LEN + h->len) < 0) {
		char why[128];

		snprintf(why, sizeof(why), "the peer does not read its control frames (%llu bytes queued)",
			 (unsigned long long)c->ctl_queued);
		conn_drop_locked(c, why);
		return -ENOBUFS;
	}
	e = malloc(sizeof(*e) + WIRE_HDR_LEN + h->len);
	if (!e)
		return -ENOMEM;
	e->next = NULL;
	e->c = NULL;
	e->len = WIRE_HDR_LEN + h->len;
	wire_hdr_encode(e->buf, h);
	if (h->len)
		memcpy(e->buf + WIRE_HDR_LEN, payload, h->len);
	if (c->ctl_tail)
		c->ctl_tail->next = e;
	else
		c->ctl_head = e;
	c->ctl_tail = e;
	c->queued += e->len;
	c->ctl_queued += e->len;
	pthread_cond_signal(&c->cond);
	return 0;
}

/* Locked. First live connection: where control frames go so that OPENs stay in order. */
static struct gw_conn *first_live(struct gw_session *s)
{
	int i = stripe_first(open_links(s));

	return i < 0 ? NULL : s->conns[i];
}

/* Locked. Sends a control frame on the first live connection; dropped if none (the session is failing then). */
static void send_ctl(struct gw_session *s, uint8_t type, uint16_t stream, uint64_t seq, const void *p, uint32_t len)
{
	struct wire_hdr h = { .type = type, .stream = stream, .len = len, .seq = seq };
	struct gw_conn *c = first_live(s);
	int r;

	if (c && (r = conn_queue_ctl(c, &h, p)) < 0 && r != -ENOBUFS)
		gw_warn("conn %d: cannot queue %s frame", c->idx, wire_type_name(type));
}

/* Locked. Stripe scheduler (stream/stripe.h): the live connection with the fewest bytes queued. */
static struct gw_conn *pick_conn(struct gw_session *s)
{
	uint64_t queued[STRIPE_LINKS] = { 0 };
	int i;

	for (i = 0; i < WIRE_MAX_CONNS; i++)
		if (s->conns[i])
			queued[i] = s->conns[i]->queued;
	i = stripe_pick(&s->stripe, open_links(s), queued);
	return i < 0 ? NULL : s->conns[i];
}

/* Locked. Queues chunk <ch> on the connection the scheduler picks. */
static int queue_chunk(struct gw_session *s, struct gw_chunk *ch)
{
	struct gw_conn *c = pick_conn(s);
	struct gw_qent *e;

	if (!c) {
		/* No connection now: kept in the unacked list, sent again when one rejoins. */
		ch->ent.link = -1;
		return 0;
	}
	e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->next = NULL;
	e->c = ch;
	e->len = WIRE_HDR_LEN + ch->len;
	atomic_fetch_add(&ch->refs, 1);
	ch->ent.link = c->idx;
	if (c->data_tail)
		c->data_tail->next = e;
	else
		c->data_head = e;
	c->data_tail = e;
	c->queued += e->len;
	pthread_cond_signal(&c->cond);
	return 0;
}

static struct gw_chunk *chunk_of(struct stripe_ent *e)
{
	return e ? (struct gw_chunk *)((char *)e - offsetof(struct gw_chunk, ent)) : NULL;
}

/* ---- failure --------------------------------------------------------- */

/* Locked. Marks one stream failed; wakes its pumps. */
static void stream_fail_locked(struct gw_stream *st, int code, bool tell_peer, const char *text)
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
	pthread_cond_broadcast(&st->cond);
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

/* Locked. Both directions verified: the stream is done. */
static void stream_check_complete(struct gw_stream *st)
{
	if (st->complete || st->fail_code || !st->sm.out_verified || !st->sm.in_done)
		return;
	st->complete = true;
	if (--st->s->open_streams == 0)
		st->s->idle_since_ns = gw_now_ns();
	pthread_cond_broadcast(&st->cond);
	pthread_cond_broadcast(&st->s->cond);
}

/* ---- stream pumps ---------------------------------------------------- */

static int stream_failed(const struct gw_stream *st)
{
	return __atomic_load_n(&st->fail_code, __ATOMIC_ACQUIRE);
}

/*
 * Reads up to <cap> bytes: waits for the first bytes (checking for failure
 * of the stream every 200 ms, since pipes and files cannot be shut down),
 * then takes what is ready at once. Returns bytes, 0 at EOF, -errno.
 */
static ssize_t read_fill(const struct gw_stream *st, int fd, uint8_t *p, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int pr;

		pr = poll(&pfd, 1, got ? 0 : 200);
		if (pr < 0 && errno != EINTR)
			return got ? (ssize_t)got : -errno;
		if (pr <= 0) {
			if (got)
				break;
			if (stream_failed(st))
				return -ECANCELED;
			continue;
		}
		n = read(fd, p + got, cap - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (got)
				break;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static void *stream_out_main(void *arg)
{
	struct gw_stream *st = arg;
	struct gw_session *s = st->s;
	uint32_t csize = s->cfg.chunk_size;
	uint64_t seq = 0;

	for (;;) {
		struct gw_chunk *ch;
		ssize_t n;

		pthread_mutex_lock(&s->lock);
		while (!st->fail_code && !credit_can_send(&st->sm.cr, csize))
			pthread_cond_wait(&st->cond, &s->lock);
		pthread_mutex_unlock(&s->lock);
		if (stream_failed(st))
			break;

		ch = malloc(sizeof(*ch) + WIRE_HDR_LEN + csize);
		if (!ch) {
			gw_session_fail(s, WIRE_E_INTERNAL, true, "out of memory");
			break;
		}
		n = st->rfd >= 0 ? read_fill(st, st->rfd, ch->mem + WIRE_HDR_LEN, csize) : 0;
		if (n <= 0) {
			uint8_t end[WIRE_END_LEN];
			struct wire_end e;
			char t[WIRE_MAX_ERROR_TEXT + 1];
			int cr = (int)n;

			free(ch);
			if (n < 0)
				snprintf(t, sizeof(t), "stream %u: reading the local side failed: %s", st->id,
					 strerror((int)-n));
			if (st->ops && st->ops->check && !stream_failed(st))
				cr = st->ops->check(st, n == 0, (int)n, t, sizeof(t));
			pthread_mutex_lock(&s->lock);
			if (cr < 0 && !st->fail_code)
				stream_fail_locked(st, WIRE_E_TARGET, true, t);
			if (!st->fail_code) {
				e.bytes = st->sm.out_bytes;
				digest_final(&st->out_dg, e.digest);
				wire_end_encode(end, &e);
				memcpy(st->out_end, end, sizeof(end));
				st->sm.out_end_sent = true;
				send_ctl(s, WIRE_T_END, st->id, seq, end, sizeof(end));
			}
			pthread_mutex_unlock(&s->lock);
			break;
		}
		digest_update(&st->out_dg, ch->mem + WIRE_HDR_LEN, (size_t)n);
		atomic_init(&ch->refs, 1);
		ch->seq = seq++;
		ch->ent.seq = ch->seq;
		ch->ent.link = -1;
		ch->len = (uint32_t)n;
		/* The header never changes, so re-sends on other connections share it. */
		wire_hdr_encode(ch->mem, &(struct wire_hdr){ .type = WIRE_T_DATA, .stream = st->id, .len = ch->len,
							     .seq = ch->seq });
		pthread_mutex_lock(&s->lock);
		if (st->fail_code) {
			pthread_mutex_unlock(&s->lock);
			free(ch);
			break;
		}
		rxsm_sent(&st->sm, ch->len);
		stripe_list_push(&st->unacked, &ch->ent);
		if (queue_chunk(s, ch) < 0)
			gw_session_fail_locked(s, WIRE_E_INTERNAL, true, "out of memory");
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

/* Locked. ACK what was delivered (the ACK is also the credit, PROTOCOL.md §5.3). */
static void send_ack(struct gw_stream *st)
{
	uint8_t p[WIRE_ACK_LEN];

	wire_u64_encode(p, st->sm.in_bytes);
	rxsm_ack_taken(&st->sm);
	send_ctl(st->s, WIRE_T_ACK, st->id, st->sm.in_chunks, p, sizeof(p));
}

/* Locked. VERIFIED for the direction this side received in full (PROTOCOL.md §5.5). */
static void send_verified(struct gw_stream *st)
{
	uint8_t p[WIRE_VERIFIED_LEN];

	wire_u64_encode(p, st->sm.in_bytes);
	send_ctl(st->s, WIRE_T_VERIFIED, st->id, st->sm.in_chunks, p, sizeof(p));
}

static void *stream_in_main(void *arg)
{
	struct gw_stream *st = arg;
	struct gw_session *s = st->s;

	for (;;) {
		uint32_t len = 0;
		uint8_t *buf = NULL;
		int r = 0;

		pthread_mutex_lock(&s->lock);
		while (!st->fail_code && !(buf = reorder_pop(&st->sm.ro, &len)) &&
		       !rxsm_in_ended(&st->sm))
			pthread_cond_wait(&st->cond, &s->lock);
		if (st->fail_code) {
			pthread_mutex_unlock(&s->lock);
			if (buf)
				free(buf);
			break;
		}
		if (!buf) {
			uint8_t dg[WIRE_DIGEST_LEN];
			char want[33], got[33];

			digest_final(&st->in_dg, dg);
			if (st->sm.in_bytes != st->sm.in_end.bytes || memcmp(dg, st->sm.in_end.digest, sizeof(dg))) {
				char t[WIRE_MAX_ERROR_TEXT + 1];

				digest_hex(st->sm.in_end.digest, want);
				digest_hex(dg, got);
				snprintf(t, sizeof(t),
					 "stream %u: digest mismatch: sender says %llu bytes xxh3-128 %s, received %llu bytes xxh3-128 %s",
					 st->id, (unsigned long long)st->sm.in_end.bytes, want,
					 (unsigned long long)st->sm.in_bytes, got);
				gw_err("%s", t);
				stream_fail_locked(st, WIRE_E_DIGEST, true, t);
				pthread_mutex_unlock(&s->lock);
				break;
			}
			pthread_mutex_unlock(&s->lock);
			if (st->ops && st->ops->finish)
				r = st->ops->finish(st);
			pthread_mutex_lock(&s->lock);
			if (r < 0) {
				char t[128];

				snprintf(t, sizeof(t), "stream %u: finishing the target failed: %s", st->id, strerror(-r));
				stream_fail_locked(st, WIRE_E_TARGET, true, t);
			} else if (!st->fail_code) {
				st->sm.in_done = true;
				send_ack(st);
				send_verified(st);
				stream_check_complete(st);
			}
			pthread_mutex_unlock(&s->lock);
			break;
		}
		pthread_mutex_unlock(&s->lock);

		if (st->wfd >= 0) {
			ssize_t w = net_write_all(st->wfd, buf, len);

			if (w < 0)
				r = (int)w;
		}
		digest_update(&st->in_dg, buf, len);
		free(buf);

		if (r < 0) {
			char t[WIRE_MAX_ERROR_TEXT + 1];

			snprintf(t, sizeof(t), "stream %u: writing to the target failed: %s", st->id, strerror(-r));
			if (st->ops && st->ops->check && !stream_failed(st))
				(void)st->ops->check(st, false, r, t, sizeof(t));
			pthread_mutex_lock(&s->lock);
			stream_fail_locked(st, WIRE_E_TARGET, true, t);
			pthread_mutex_unlock(&s->lock);
			break;
		}
		pthread_mutex_lock(&s->lock);
		if (rxsm_delivered(&st->sm, len, s->cfg.window))
			send_ack(st);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static int stream_start(struct gw_stream *st)
{
	int r;

	if ((r = pthread_create(&st->out_thr, NULL, stream_out_main, st)) != 0)
		return -r;
	st->out_started = true;
	if ((r = pthread_create(&st->in_thr, NULL, stream_in_main, st)) != 0)
		return -r;
	st->in_started = true;
	return 0;
}

/* Locked. Allocates stream <id>. */
static struct gw_stream *stream_new(struct gw_session *s, uint16_t id, uint8_t role)
{
	struct gw_stream *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	if (digest_init(&st->out_dg) < 0 || digest_init(&st->in_dg) < 0) {
		digest_free(&st->out_dg);
		free(st);
		return NULL;
	}
	st->s = s;
	st->id = id;
	st->role = role;
	st->rfd = st->wfd = -1;
	pthread_cond_init(&st->cond, NULL);
	rxsm_stream_init(&st->sm, s->cfg.window);
	s->streams[id] = st;
	if (id >= s->nstreams)
		s->nstreams = id + 1;
	s->open_streams++;
	return st;
}

int gw_stream_open(struct gw_session *s, uint8_t role, int rfd, int wfd, const struct gw_sink_ops *ops, void *ctx)
{
	struct gw_stream *st;
	uint8_t p[WIRE_OPEN_LEN];
	int id, r;

	pthread_mutex_lock(&s->lock);
	if (s->err_code) {
		r = -EPIPE;
		goto out;
	}
	if (s->nstreams >= WIRE_MAX_STREAMS) {
		r = -ENOSPC;
		goto out;
	}
	if (s->open_streams >= s->cfg.max_streams) {
		r = -EMFILE;
		goto out;
	}
	id = s->nstreams;
	st = stream_new(s, (uint16_t)id, role);
	if (!st) {
		r = -ENOMEM;
		goto out;
	}
	gw_stream_attach(st, rfd, wfd, ops, ctx);
	st->opened = true;
	wire_open_encode(p, role);
	send_ctl(s, WIRE_T_OPEN, st->id, 0, p, sizeof(p));
	r = stream_start(st);
	if (r < 0)
		stream_fail_locked(st, WIRE_E_INTERNAL, true, "cannot start stream threads");
	else
		r = id;
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

void gw_stream_attach(struct gw_stream *st, int rfd, int wfd, const struct gw_sink_ops *ops, void *ctx)
{
	st->rfd = rfd;
	st->wfd = wfd;
	st->ops = ops;
	st->ctx = ctx;
}

/* ---- connection threads ---------------------------------------------- */

/*
 * Locked. After losing connection <lost> (or, with -1, after a rejoin):
 * re-queue the unacknowledged chunks that were on a connection that is gone,
 * and repeat the control state a lost frame may have carried: OPENs, ENDs,
 * ACKs and VERIFIEDs (PROTOCOL.md §2.3). The receiver drops duplicates.
 */
static void resync_locked(struct gw_session *s, int lost)
{
	uint64_t alive = alive_links(s);

	for (int i = 0; i < s->nstreams; i++) {
		struct gw_stream *st = s->streams[i];
		unsigned plan;

		if (!st)
			continue;
		plan = stripe_resync_plan(&(struct stripe_resync_facts){
			.client = !s->cfg.server, .failed = st->fail_code != 0, .opened = st->opened,
			.end_sent = st->sm.out_end_sent, .verified = st->sm.out_verified, .in_done = st->sm.in_done });
		if (plan & STRIPE_RS_OPEN) {
			uint8_t p[WIRE_OPEN_LEN];

			wire_open_encode(p, st->role);
			send_ctl(s, WIRE_T_OPEN, st->id, 0, p, sizeof(p));
		}
		if (plan & STRIPE_RS_CHUNKS)
			for (struct stripe_ent *e = st->unacked.head; e; e = e->next)
				if (stripe_must_resend(e, lost, alive) && queue_chunk(s, chunk_of(e)) < 0)
					break;
		if (plan & STRIPE_RS_END)
			send_ctl(s, WIRE_T_END, st->id, st->sm.cr.sent_chunks, st->out_end, WIRE_END_LEN);
		if (plan & STRIPE_RS_ACK)
			send_ack(st);
		if (plan & STRIPE_RS_VERIFIED)
			send_verified(st);
	}
}

/*
 * Locked. Is another connection of the session being replaced (draining,
 * dead, or not back yet)? Connections striped evenly reach the rekey
 * threshold together; one at a time keeps the session moving meanwhile.
 */
static bool others_replaced_locked(const struct gw_conn *c)
{
	const struct gw_session *s = c->s;

	for (int i = 0; i < s->nconns; i++) {
		const struct gw_conn *o = s->conns[i];

		if (i != c->idx && (!o || o->dead || o->draining))
			return true;
	}
	return false;
}

/* Locked. Connection <c> is gone: re-send what it carried on the others (PROTOCOL.md §2.3). */
static void conn_dead_locked(struct gw_conn *c)
{
	struct gw_session *s = c->s;
	struct gw_qent *e;

	if (c->dead)
		return;
	c->dead = true;
	s->nlive--;
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	pthread_cond_broadcast(&c->cond);
	/* Drop what was queued; the resync below re-queues what matters. */
	while ((e = c->ctl_head)) {
		c->ctl_head = e->next;
		free(e);
	}
	while ((e = c->data_head)) {
		c->data_head = e->next;
		chunk_put(e->c);
		free(e);
	}
	c->ctl_tail = c->data_tail = NULL;
	c->queued = 0;
	c->ctl_queued = 0;
	pthread_cond_broadcast(&s->cond);
	if (s->nlive == 0)
		s->all_dead_ns = gw_now_ns();

	switch (stripe_on_loss(&(struct stripe_loss_facts){
		.live_after = s->nlive, .reconnect = s->cfg.reconnect_ms >= 0, .failed = s->err_code != 0,
		.finished = s->finished, .open_streams = s->open_streams, .clean = c->clean_close })) {
	case STRIPE_LOSS_QUIET:
		break;
	case STRIPE_LOSS_FAIL:
		gw_session_fail_locked(s, WIRE_E_TRUNCATED, false,
				       "the peer went away: all connections closed with %d stream(s) unfinished",
				       s->open_streams);
		break;
	case STRIPE_LOSS_WAIT_REKEY:
		gw_info("the last connection closed to be replaced for fresh keys; waiting up to %d s for its replacement",
			s->cfg.reconnect_ms / 1000);
		break;
	case STRIPE_LOSS_WAIT:
		gw_warn("all connections lost; waiting up to %d s for them to come back", s->cfg.reconnect_ms / 1000);
		break;
	case STRIPE_LOSS_RESEND:
		if (!c->clean_close)
			gw_warn("connection %d lost; %d left, re-sending its unacknowledged chunks", c->idx, s->nlive);
		resync_locked(s, c->idx);
		break;
	}
}

/*
 * Bytes one connection sends before it is replaced to get fresh TLS keys:
 * 64 GiB, far below AES-GCM's limit of about 370 GiB per key (RFC 8446
 * §5.5). MIGRELAY_REKEY_BYTES lowers it (tests, cautious operators).
 */
static uint64_t gw_rekey_bytes(void)
{
	static _Atomic uint64_t v; /* computed once; any thread may race to compute the same value */
	uint64_t r = atomic_load_explicit(&v, memory_order_relaxed);

	if (!r) {
		const char *e = getenv("MIGRELAY_REKEY_BYTES");
		unsigned long long x = e ? strtoull(e, NULL, 10) : 0;

		r = x >= (1 << 20) && x <= (64ull << 30) ? x : 64ull << 30;
		atomic_store_explicit(&v, r, memory_order_relaxed);
	}
	return r;
}

/*
 * compress auto, called locked by a writer after it sent a chunk of <raw>
 * bytes. Compress only while that gets the data out sooner: the wall time
 * per raw byte over a window of the session's chunks is what a slow network
 * (credit waits for ACKs) and a busy CPU (zstd's time, on 2 cores also
 * taken from QEMU) both show up in. After a warm-up window, one window
 * sends raw, a probe window compresses, then the cheaper mode goes on; the other is tried again in a
 * shorter probe window after z_every windows (doubling up to
 * GW_AUTO_EXPLORE_MAX while the choice holds, back to GW_AUTO_EXPLORE when
 * it flips), so the choice follows the data (zero pages, incompressible
 * pages) and the network as the migration goes.
 */
static void auto_account(struct gw_session *s, uint32_t raw)
{
	uint64_t now = gw_now_ns();
	bool was = s->z_on, best;

	if (!s->z_t0)
		s->z_t0 = now;
	s->z_raw += raw;
	if (s->z_raw < (s->z_probe || !s->z_every ? GW_AUTO_PROBE : GW_AUTO_WINDOW))
		return;
	if (!s->z_every) {
		/* the first window warms up (QEMU's first pass starts slowly): not a measurement */
		s->z_every = GW_AUTO_EXPLORE;
		s->z_t0 = now;
		s->z_raw = 0;
		return;
	}
	s->z_cost[was] = (double)(now - s->z_t0) / (double)s->z_raw;
	gw_dbg("compress auto: %s %.2f ns/byte, %s %.2f ns/byte", was ? "zstd" : "raw", s->z_cost[was],
	       was ? "raw" : "zstd", s->z_cost[!was]);
	s->z_t0 = now;
	s->z_raw = 0;
	s->z_probe = false;
	s->z_windows++;
	if (!s->z_cost[!was]) { /* the other mode not measured yet */
		s->z_on = !was;
		s->z_probe = true;
		return;
	}
	best = s->z_cost[1] < s->z_cost[0];
	if (best != was) {
		s->z_on = best;
		s->z_every = GW_AUTO_EXPLORE;
		s->z_windows = 0;
		return;
	}
	if (s->z_windows >= s->z_every) {
		s->z_on = !was;
		s->z_probe = true;
		s->z_windows = 0;
		if (s->z_every < GW_AUTO_EXPLORE_MAX)
			s->z_every *= 2;
	}
}

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

/* What a connection may set up for itself (an io_uring under the in-place TLS records). */
static void conn_io(const struct gw_conn *c, struct mr_conn_io *io)
{
	*io = (struct mr_conn_io){ .tx_bufs = GW_URING_TX_BUFS, .tx_bufsize = GW_URING_TX_BUFSIZE,
				   .rx_bufs = GW_URING_RX_BUFS, .rx_bufsize = GW_URING_RX_BUFSIZE,
				   .loopback = net_peer_is_loopback(c->fd) };
}

/* Writer thread, at its start: the engine's send transport is bound to this thread. */
static void conn_io_start_tx(struct gw_conn *c)
{
	struct mr_conn_io io;
	char why[256] = "";

	conn_io(c, &io);
	mr_conn_start_tx(c->conn, &io, why, sizeof(why));
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

/* Reader thread, at its start. */
static void conn_io_start_rx(struct gw_conn *c)
{
	struct mr_conn_io io;
	char why[256] = "";

	conn_io(c, &io);
	mr_conn_start_rx(c->conn, &io, why, sizeof(why));
	io_note(c, why[0] ? why : NULL);
}

static void *conn_writer_main(void *arg)
{
	struct gw_conn *c = arg;
	struct gw_session *s = c->s;
	uint32_t raw;
	bool z;

	conn_io_start_tx(c);

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct gw_qent *e;
		const uint8_t *p;
		size_t len;
		ssize_t n;

		while (!c->dead && !c->ctl_head && !c->data_head && !c->closing)
			pthread_cond_wait(&c->cond, &s->lock);
		if (c->dead)
			break;
		if ((e = c->ctl_head)) {
			c->ctl_head = e->next;
			if (!c->ctl_head)
				c->ctl_tail = NULL;
		} else if ((e = c->data_head)) {
			c->data_head = e->next;
			if (!c->data_head)
				c->data_tail = NULL;
		} else {
			break; /* closing and drained */
		}
		c->queued -= e->len;
		if (!e->c)
			c->ctl_queued -= e->len;
		c->tx_since_ns = gw_now_ns(); /* the timer drops a send that makes no progress */

		z = s->cfg.compress && (!s->cfg.compress_auto || s->z_on);
		pthread_mutex_unlock(&s->lock);

		if (e->c) {
			struct gw_chunk *ch = e->c;
			size_t zl = 0;
			unsigned fl;

			fl = codec_encode(c->enc, z, ch->mem + WIRE_HDR_LEN, ch->len, c->txbuf + WIRE_HDR_LEN, &zl);

			if (fl) {
				wire_hdr_encode(c->txbuf, &(struct wire_hdr){ .type = WIRE_T_DATA, .flags = (uint8_t)fl,
									     .stream = 0, .len = (uint32_t)zl,
									     .seq = ch->seq });
				/* stream id: copy from the chunk's own header */
				memcpy(c->txbuf + 2, ch->mem + 2, 2);
				p = c->txbuf;
				len = WIRE_HDR_LEN + zl;
			} else {
				p = ch->mem;
				len = WIRE_HDR_LEN + ch->len;
			}
		} else {
			p = e->buf;
			len = e->len;
		}
		/* a raw chunk stays untouched until the peer ACKs it: it may be lent to the kernel */
		n = e->c && p == e->c->mem ? mr_conn_send_stable(c->conn, p, len) : mr_conn_send(c->conn, p, len);
		raw = e->c ? e->c->len : 0;
		chunk_put(e->c);
		free(e);
		pthread_mutex_lock(&s->lock);
		c->tx_since_ns = 0;
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
		/* No keys to renew in plaintext mode: its connections are never replaced for that. */
		if (c->tx_bytes >= gw_rekey_bytes() && !c->closing && !s->cfg.plaintext &&
		    (!others_replaced_locked(c) || c->tx_bytes >= gw_rekey_bytes() / 2 * 3)) {
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
			break;
		}
	}
	if (c->closing && !c->dead && !c->draining)
		mr_conn_bye(c->conn);
	pthread_mutex_unlock(&s->lock);
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
	if (stream_start(st) < 0)
		stream_fail_locked(st, WIRE_E_INTERNAL, true, "cannot start stream threads");
}

/* Locked (open_stream aside). Carries out one action of the receive state machine for stream <st> (may be NULL). */
static void run_action(struct gw_conn *c, struct gw_stream *st, const struct rxsm_action *a)
{
	struct gw_session *s = c->s;

	switch (a->kind) {
	case RXSM_A_NONE:
		break;
	case RXSM_A_WAKE_IN:
		pthread_cond_signal(&st->cond);
		break;
	case RXSM_A_ACKED:
		for (struct stripe_ent *e; (e = stripe_list_acked(&st->unacked, a->seq));)
			chunk_put(chunk_of(e));
		pthread_cond_broadcast(&st->cond);
		break;
	case RXSM_A_OUT_VERIFIED:
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
		s->bye = true;
		pthread_cond_broadcast(&s->cond);
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

static void *conn_reader_main(void *arg)
{
	struct gw_conn *c = arg;
	struct gw_session *s = c->s;
	uint8_t hb[WIRE_HDR_LEN], ctl[WIRE_MAX_CONTROL];
	const char *why = NULL;
	bool peer_clean = false;
	ssize_t n;

	conn_io_start_rx(c);

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
			if (h.flags == 0) {
				if (h.len > s->cfg.chunk_size)
					goto too_big;
				chunk = malloc(h.len);
				if (!chunk)
					goto nomem;
				n = h.len ? mr_conn_recv_all(c->conn, chunk, h.len) : 0;
			} else {
				n = mr_conn_recv_all(c->conn, c->rxbuf, h.len);
				if (n == (ssize_t)h.len) {
					uint32_t raw = wire_load_be32(c->rxbuf);

					if (raw > s->cfg.chunk_size || raw == 0)
						goto too_big;
					chunk = malloc(raw);
					if (!chunk)
						goto nomem;
					r = codec_decode(c->dec, h.flags, c->rxbuf, h.len, chunk, raw);
					if (r != (int)raw) {
						free(chunk);
						pthread_mutex_lock(&s->lock);
						protocol_error(c, "stream %u chunk %llu does not decompress", h.stream,
							       (unsigned long long)h.seq);
						pthread_mutex_unlock(&s->lock);
						why = "protocol error";
						break;
					}
					h.len = raw;
				}
			}
		} else {
			n = h.len ? mr_conn_recv_all(c->conn, ctl, h.len) : 0;
		}
		if (n < (ssize_t)wlen) {
			free(chunk);
			why = n < 0 ? mr_conn_last_error(c->conn) : "closed by the peer in the middle of a frame";
			break;
		}
		pthread_mutex_lock(&s->lock);
		c->rx_bytes += WIRE_HDR_LEN + wlen;
		c->last_rx_ns = gw_now_ns();
		if (h.type == WIRE_T_DATA)
			p = NULL;
		r = dispatch(c, &h, p, chunk);
		pthread_mutex_unlock(&s->lock);
		if (r < 0) {
			why = "protocol error";
			break;
		}
		continue;
too_big:
		free(chunk);
		pthread_mutex_lock(&s->lock);
		protocol_error(c, "DATA chunk larger than the %u-byte chunk size", s->cfg.chunk_size);
		pthread_mutex_unlock(&s->lock);
		why = "protocol error";
		break;
nomem:
		gw_session_fail(s, WIRE_E_INTERNAL, true, "out of memory");
		why = "out of memory";
		break;
	}
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
	return NULL;
}

/* ---- session lifecycle ----------------------------------------------- */

int gw_session_new(struct gw_session **out, const struct gw_session_cfg *cfg)
{
	struct gw_session *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
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
	stripe_init(&s->stripe);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->started_ns = gw_now_ns();
	s->idle_since_ns = s->started_ns;
	*out = s;
	return 0;
}

static void conn_free(struct gw_conn *c)
{
	if (!c)
		return;
	mr_conn_free(c->conn); /* closes the socket */
	codec_free(c->enc);
	codec_free(c->dec);
	free(c->txbuf);
	free(c->rxbuf);
	pthread_cond_destroy(&c->cond);
	free(c);
}

/*
 * Session timer: keepalive (PING after keepalive_ms of send silence; a
 * connection that stays silent for 3 x keepalive_ms is dropped, which
 * catches half-open connections), the reconnect deadline, and on the client
 * the rejoin of dead connections with backoff.
 */
static void *session_timer_main(void *arg)
{
	struct gw_session *s = arg;
	uint64_t ka = (uint64_t)s->cfg.keepalive_ms * 1000000ull;

	pthread_mutex_lock(&s->lock);
	while (!s->finished) {
		struct timespec ts;
		uint64_t now;

		deadline(&ts, GW_TICK_MS);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		if (s->finished)
			break;
		now = gw_now_ns();
		for (int i = 0; i < WIRE_MAX_CONNS; i++) {
			struct gw_conn *c = s->conns[i];

			if (c && !c->dead && c->draining && now - c->drain_ns > (uint64_t)GW_DRAIN_MS * 1000000ull) {
				/* The peer did not close its end after our close_notify: stop waiting for it. */
				shutdown(c->fd, SHUT_RDWR);
				c->drain_ns = now;
				continue;
			}
			if (c && !c->dead && c->tx_since_ns && now - c->tx_since_ns > 3 * ka) {
				/*
				 * A send blocked that long: the peer does not read (the
				 * io_uring send and the flush of a partial record wait
				 * for socket space without a deadline of their own).
				 */
				char why[96];

				snprintf(why, sizeof(why), "a send made no progress for %llu s",
					 (unsigned long long)((now - c->tx_since_ns) / 1000000000ull));
				conn_drop_locked(c, why);
				continue;
			}
			if (!c || c->dead || c->closing)
				continue;
			if (now - c->last_rx_ns > 3 * ka) {
				gw_warn("connection %d: nothing received for %llu s; dropping it", c->idx,
					(unsigned long long)((now - c->last_rx_ns) / 1000000000ull));
				/* The reader fails on the shut socket and declares the connection dead. */
				shutdown(c->fd, SHUT_RDWR);
				c->last_rx_ns = now;
			} else if (now - c->last_tx_ns > ka && !c->ctl_head) {
				struct wire_hdr h = { .type = WIRE_T_PING, .len = WIRE_PING_LEN };
				uint8_t nonce[WIRE_PING_LEN];

				wire_u64_encode(nonce, now);
				(void)!conn_queue_ctl(c, &h, nonce);
				c->last_tx_ns = now; /* one PING per period, sent or not */
			}
		}
		if (!s->err_code && s->open_streams == 0 && s->cfg.idle_ms > 0 && s->nlive > 0 &&
		    now - s->idle_since_ns > (uint64_t)s->cfg.idle_ms * 1000000ull) {
			gw_session_fail_locked(s, WIRE_E_LIMIT, true, "session idle for %d s without a stream; closed",
					       s->cfg.idle_ms / 1000);
			continue;
		}
		if (s->cfg.server && gw_session_awaits_bye_locked(s) && s->nlive == 0 && s->cfg.reconnect_ms > 0 &&
		    now - s->all_dead_ns > (uint64_t)s->cfg.reconnect_ms * 1000000ull) {
			gw_info("the client went without BYE and did not come back within %d s; closing the session",
				s->cfg.reconnect_ms / 1000);
			s->bye_wait_over = true;
			pthread_cond_broadcast(&s->cond);
			continue;
		}
		if (s->err_code || s->open_streams == 0)
			continue;
		if (s->nlive == 0 && s->cfg.reconnect_ms > 0 &&
		    now - s->all_dead_ns > (uint64_t)s->cfg.reconnect_ms * 1000000ull) {
			gw_session_fail_locked(s, WIRE_E_TRUNCATED, false,
					       "no connection came back within the %d s reconnect timeout; %d stream(s) unfinished",
					       s->cfg.reconnect_ms / 1000, s->open_streams);
			continue;
		}
		if (!s->rejoin)
			continue;
		for (int i = 0; i < s->nconns && !s->finished && !s->err_code; i++) {
			struct gw_conn *c = s->conns[i];
			struct mr_conn *conn = NULL;
			int r;

			if (!c || !c->dead || now < s->rejoin_at_ns[i] ||
			    (s->nlive > 0 && s->rejoin_tries[i] >= GW_REJOIN_TRIES))
				continue;
			pthread_mutex_unlock(&s->lock);
			r = s->rejoin(s, i, &conn);
			if (r == 0)
				r = gw_session_replace_conn(s, i, conn);
			pthread_mutex_lock(&s->lock);
			if (r == 0) {
				gw_info("connection %d rejoined the session", i);
				s->rejoin_tries[i] = 0;
			} else if (r == -ENOENT) {
				gw_session_fail_locked(s, WIRE_E_TRUNCATED, false,
						       "the server no longer knows this session; it cannot be resumed");
			} else {
				int k = s->rejoin_tries[i] < 5 ? s->rejoin_tries[i] : 5;

				/*
				 * Backoff 100 ms, 200 ms, ... 3.2 s. While other connections
				 * live, give up on this one after GW_REJOIN_TRIES; with none
				 * left, the reconnect timeout bounds the attempts.
				 */
				s->rejoin_tries[i]++;
				s->rejoin_at_ns[i] = gw_now_ns() + (100000000ull << k);
				if (s->rejoin_tries[i] == GW_REJOIN_TRIES && s->nlive > 0)
					gw_warn("connection %d: giving up rejoining it after %d attempts; %d connection(s) carry on",
						i, GW_REJOIN_TRIES, s->nlive);
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
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

bool gw_session_conn_gone_locked(struct gw_session *s, int idx, int timeout_ms)
{
	struct timespec ts;

	deadline(&ts, timeout_ms);
	while (s->conns[idx] && !s->conns[idx]->dead && !s->err_code)
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
			break;
	return !(s->conns[idx] && !s->conns[idx]->dead) && !s->err_code;
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
			r = st->fail_code;
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
	if (!r)
		r = s->err_code;
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

void gw_session_close(struct gw_session *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
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
	pthread_mutex_unlock(&s->lock);
	/* Writers flush and send close_notify; then the sockets are shut so readers return. */
	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		if (s->conns[i] && s->conns[i]->threads)
			pthread_join(s->conns[i]->wr, NULL);
	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		if (s->conns[i] && s->conns[i]->fd >= 0)
			shutdown(s->conns[i]->fd, SHUT_RDWR);
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
		pthread_cond_destroy(&st->cond);
		free(st);
	}
	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		conn_free(s->conns[i]);
	if (s->ctx_free)
		s->ctx_free(s);
	mr_tls_cfg_free(s->own_cfg);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void gw_session_stats(struct gw_session *s, struct gw_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->nstreams; i++)
		if (s->streams[i]) {
			out->raw_out += s->streams[i]->sm.out_bytes;
			out->raw_in += s->streams[i]->sm.in_bytes;
		}
	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		if (s->conns[i]) {
			out->wire_out += s->conns[i]->tx_bytes;
			out->wire_in += s->conns[i]->rx_bytes;
		}
	out->live_conns = s->nlive;
	pthread_mutex_unlock(&s->lock);
}

/* Locked. The outcome snapshot behind gw_session_outcome and gw_session_first_failure. */
static void outcome_locked(const struct gw_session *s, struct gw_outcome *o)
{
	memset(o, 0, sizeof(*o));
	o->first_failed = -1;
	o->nstreams = s->nstreams;
	o->open_streams = s->open_streams;
	for (int i = 0; i < s->nstreams; i++) {
		const struct gw_stream *st = s->streams[i];

		if (!st || !st->fail_code)
			continue;
		if (o->failed_streams++ == 0) {
			o->first_failed = i;
			o->stream_code = st->fail_code;
			snprintf(o->stream_text, sizeof(o->stream_text), "%s", st->fail_text);
		}
	}
	o->session_code = s->err_code;
	snprintf(o->session_text, sizeof(o->session_text), "%s", s->err_text);
	o->session_from_peer = s->err_from_peer;
	o->bye = s->bye;
	o->live_conns = s->nlive;
	o->ok = !s->err_code && !s->open_streams && !o->failed_streams;
}

void gw_session_outcome(struct gw_session *s, struct gw_outcome *o)
{
	pthread_mutex_lock(&s->lock);
	outcome_locked(s, o);
	pthread_mutex_unlock(&s->lock);
}

int gw_session_first_failure(struct gw_session *s, int *code, char *text, size_t len)
{
	struct gw_outcome o;

	gw_session_outcome(s, &o);
	*code = o.stream_code ? o.stream_code : o.session_code;
	if (text && len)
		snprintf(text, len, "%s", o.stream_code ? o.stream_text : o.session_text);
	return o.failed_streams;
}
