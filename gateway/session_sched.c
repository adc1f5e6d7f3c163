/* SPDX-License-Identifier: MIT */
/*
 * The session's scheduling glue (PROTOCOL.md §2.3): a connection's queues
 * (control frames first, bounded; DATA chunks), stream/stripe.h's choices
 * applied to them (which connection takes a chunk, what a lost connection
 * re-sends), and two policies of the writers: when a connection is
 * replaced for fresh keys, and when compress auto compresses. All under
 * s->lock; no I/O here beyond shutdown() of a dropped connection's socket.
 */
#include "session_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

struct gw_chunk *chunk_alloc(size_t payload)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), cap = (WIRE_HDR_LEN + payload + page - 1) / page * page;
	struct gw_chunk *c;

	/*
	 * mem is the first page boundary after the struct, and its cap bytes
	 * end before the block does (two pages of slack; one would do), so
	 * neither malloc's header before the block nor the next block's lies
	 * in them.
	 */
	if (cap > UINT32_MAX || !(c = malloc(sizeof(*c) + cap + 2 * page)))
		return NULL;
	c->mem = (uint8_t *)(((uintptr_t)(c + 1) + page - 1) & ~(uintptr_t)(page - 1));
	c->cap = (uint32_t)cap;
	atomic_init(&c->flags, 0);
	return c;
}

void chunk_put(struct gw_chunk *c)
{
	unsigned f;

	if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	f = atomic_load(&c->flags);
	/*
	 * Whole pages of its own (chunk_alloc): malloc's bookkeeping lies
	 * outside them, and what malloc's next user writes lands on fresh pages.
	 */
	if ((f & (CHUNK_LENT | CHUNK_RESENT)) == (CHUNK_LENT | CHUNK_RESENT))
		(void)madvise(c->mem, c->cap, MADV_DONTNEED);
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
void conn_drop_locked(struct gw_conn *c, const char *why)
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

/* Locked. Appends <e> to one of <c>'s queues (<head>, <tail>) and wakes its writer. */
static void conn_enqueue(struct gw_conn *c, struct gw_qent **head, struct gw_qent **tail, struct gw_qent *e)
{
	if (*tail)
		(*tail)->next = e;
	else
		*head = e;
	*tail = e;
	c->queued += e->len;
	pthread_cond_signal(&c->cond);
}

/*
 * Locked. Queues a control frame on <c>. Returns 0, -EPIPE (dead or
 * dropped), -ENOMEM, or -ENOBUFS: the control queue would pass its bound
 * (STRIPE_CTL_MAX_BYTES) because the peer does not read what it asks for,
 * and the connection is dropped.
 */
int conn_queue_ctl(struct gw_conn *c, const struct wire_hdr *h, const void *payload)
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
	c->ctl_queued += e->len;
	conn_enqueue(c, &c->ctl_head, &c->ctl_tail, e);
	return 0;
}

/* Locked. First live connection: where control frames go so that OPENs stay in order. */
static struct gw_conn *first_live(struct gw_session *s)
{
	int i = stripe_first(open_links(s));

	return i < 0 ? NULL : s->conns[i];
}

/* Locked. Sends a control frame on the first live connection; dropped if none (the session is failing then). */
void send_ctl(struct gw_session *s, uint8_t type, uint16_t stream, uint64_t seq, const void *p, uint32_t len)
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
int queue_chunk(struct gw_session *s, struct gw_chunk *ch)
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
	if (atomic_fetch_or(&ch->flags, CHUNK_QUEUED) & CHUNK_QUEUED)
		atomic_fetch_or(&ch->flags, CHUNK_RESENT);
	ch->ent.link = c->idx;
	conn_enqueue(c, &c->data_head, &c->data_tail, e);
	return 0;
}

struct gw_chunk *chunk_of(struct stripe_ent *e)
{
	return e ? (struct gw_chunk *)((char *)e - offsetof(struct gw_chunk, ent)) : NULL;
}

/*
 * Locked. After losing connection <lost> (or, with -1, after a rejoin):
 * re-queue the unacknowledged chunks that were on a connection that is gone,
 * and repeat the control state a lost frame may have carried: OPENs, ENDs,
 * ACKs, VERIFIEDs and OPENEDs (PROTOCOL.md §2.3). The receiver drops duplicates.
 */
void resync_locked(struct gw_session *s, int lost)
{
	uint64_t alive = alive_links(s);

	for (int i = 0; i < s->nstreams; i++) {
		struct gw_stream *st = s->streams[i];
		unsigned plan;

		if (!st)
			continue;
		plan = stripe_resync_plan(&(struct stripe_resync_facts){
			.client = !s->cfg.server, .failed = st->fail_code != 0, .opened = st->opened,
			.end_sent = st->sm.out_end_sent, .verified = st->sm.out_verified, .in_done = st->sm.in_done,
			.open_ack = s->cfg.open_ack });
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
		if (plan & STRIPE_RS_OPENED)
			send_ctl(s, WIRE_T_OPENED, st->id, 0, NULL, 0);
	}
}

/*
 * Locked. Is another connection of the session being replaced (draining,
 * dead, or not back yet)? Connections striped evenly reach the rekey
 * threshold together; one at a time keeps the session moving meanwhile.
 */
bool others_replaced_locked(const struct gw_conn *c)
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
void conn_dead_locked(struct gw_conn *c)
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
uint64_t gw_rekey_bytes(void)
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
 * bytes: stream/zauto.h decides, this logs.
 */
void auto_account(struct gw_session *s, uint32_t raw)
{
	struct zauto *z = &s->za;
	bool was = z->on;

	if (!zauto_account(z, raw, gw_now_ns()))
		return;
	gw_dbg("compress auto: raw %.2f ns/byte, zstd %.2f ns/byte; zstd sample %.2f ns/byte, ratio %.2f%s",
	       z->cost[0], z->cost[1], z->sample_ns, z->sample_ratio,
	       z->on == was ? "" : z->on ? "; now zstd" : "; now raw");
}
