/* SPDX-License-Identifier: MIT */
/*
 * A stream's two pump threads (PROTOCOL.md §5): "out" reads the local fd
 * into chunks while credit allows and queues them (session_sched.c), then
 * sends END with the digest; "in" writes what the reorder buffer releases
 * to the local fd, ACKs it (the ACK is the credit), and at END checks the
 * digest and sends VERIFIED. Also the creation of streams.
 */
#include "session_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"

/* Locked. Both directions verified: the stream is done. */
void stream_check_complete(struct gw_stream *st)
{
	if (st->complete || st->fail_code || !st->sm.out_verified || !st->sm.in_done)
		return;
	st->complete = true;
	if (--st->s->open_streams == 0)
		st->s->idle_since_ns = gw_now_ns();
	pthread_cond_broadcast(&st->out_cond);
	pthread_cond_broadcast(&st->in_cond);
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
 * then takes what is ready at once: from a socket with reads that do not
 * wait (one call each), else after asking poll(). Returns bytes, 0 at EOF,
 * -errno.
 */
static ssize_t read_fill(const struct gw_stream *st, int fd, uint8_t *p, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int pr;

		if (got && st->out_sock) {
			n = recv(fd, p + got, cap - got, MSG_DONTWAIT);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) /* nothing more ready (or an error or the end, which the next call sees) */
				break;
			got += (size_t)n;
			continue;
		}
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

	thread_name("mr-out", st->id);
	for (;;) {
		struct gw_chunk *ch;
		ssize_t n;

		pthread_mutex_lock(&s->lock);
		while (!st->fail_code && !credit_can_send(&st->sm.cr, csize))
			pthread_cond_wait(&st->out_cond, &s->lock);
		pthread_mutex_unlock(&s->lock);
		if (stream_failed(st))
			break;

		ch = chunk_alloc(csize);
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
				gw_dbg("session %016llx stream %u: local side ended after %llu bytes, END sent",
				       (unsigned long long)s->id, st->id, (unsigned long long)e.bytes);
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
void send_ack(struct gw_stream *st)
{
	uint8_t p[WIRE_ACK_LEN];

	wire_u64_encode(p, st->sm.in_bytes);
	rxsm_ack_taken(&st->sm);
	send_ctl(st->s, WIRE_T_ACK, st->id, st->sm.in_chunks, p, sizeof(p));
}

/* Locked. VERIFIED for the direction this side received in full (PROTOCOL.md §5.5). */
void send_verified(struct gw_stream *st)
{
	uint8_t p[WIRE_VERIFIED_LEN];

	wire_u64_encode(p, st->sm.in_bytes);
	send_ctl(st->s, WIRE_T_VERIFIED, st->id, st->sm.in_chunks, p, sizeof(p));
}

static void *stream_in_main(void *arg)
{
	struct gw_stream *st = arg;
	struct gw_session *s = st->s;

	thread_name("mr-in", st->id);
	for (;;) {
		uint32_t len = 0;
		uint8_t *buf = NULL;
		int r = 0;

		pthread_mutex_lock(&s->lock);
		while (!st->fail_code && !(buf = reorder_pop(&st->sm.ro, &len)) &&
		       !rxsm_in_ended(&st->sm))
			pthread_cond_wait(&st->in_cond, &s->lock);
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
				gw_dbg("session %016llx stream %u: %llu bytes received and verified, VERIFIED sent",
				       (unsigned long long)s->id, st->id, (unsigned long long)st->sm.in_bytes);
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

int stream_start(struct gw_stream *st)
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
struct gw_stream *stream_new(struct gw_session *s, uint16_t id, uint8_t role)
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
	pthread_cond_init(&st->out_cond, NULL);
	pthread_cond_init(&st->in_cond, NULL);
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
