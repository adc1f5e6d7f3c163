/* SPDX-License-Identifier: MIT */
#include "preauth.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "session.h"

int gw_preauth_init(struct gw_preauth *p, const struct gw_preauth_cfg *cfg)
{
	memset(p, 0, sizeof(*p));
	p->buckets = calloc(GW_PREAUTH_BUCKETS, sizeof(*p->buckets));
	if (!p->buckets)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	p->cfg = *cfg;
	/* A salted hash, so an attacker cannot aim its addresses at another address's bucket. */
	if (getrandom(&p->salt, sizeof(p->salt), 0) != sizeof(p->salt))
		p->salt = (uint32_t)gw_now_ns();
	return 0;
}

void gw_preauth_free(struct gw_preauth *p)
{
	free(p->buckets);
	p->buckets = NULL;
	pthread_mutex_destroy(&p->lock);
}

/* IPv4 (plain or v4-mapped) as ::ffff:a.b.c.d; IPv6 cut to its /64, which one host usually holds whole. */
static void addr_key(uint8_t key[16], const struct sockaddr *sa)
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		static const uint8_t v4map[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		memcpy(key, a, memcmp(a, v4map, 12) ? 8 : 16);
	}
}

/* Token bucket of <key>: true if one more connection may come now. Locked. */
static bool rate_ok_locked(struct gw_preauth *p, const uint8_t key[16], uint64_t now)
{
	uint32_t h = p->salt;
	struct gw_rate_bucket *b;
	double burst = 2.0 * p->cfg.rate;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	b = &p->buckets[h % GW_PREAUTH_BUCKETS];
	if (!b->used || memcmp(b->addr, key, 16)) {
		memcpy(b->addr, key, 16);
		b->used = true;
		b->tokens = burst;
		b->last_ns = now;
	}
	b->tokens += (double)(now - b->last_ns) * p->cfg.rate / 1e9;
	if (b->tokens > burst)
		b->tokens = burst;
	b->last_ns = now;
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}

static void evict_locked(struct gw_preauth *p, struct gw_pending *pe, const char *why)
{
	pe->evicted = true;
	p->nlive--;
	/* Ends the handshake thread's wait; the thread closes the fd after gw_preauth_done. */
	shutdown(pe->fd, SHUT_RDWR);
	gw_ratelimited(GW_LOG_WARN, "pending connection dropped: %s", why);
}

/* The oldest live entry (of address <key> if not NULL), preferring those not past their TLS handshake. */
static struct gw_pending *oldest_locked(struct gw_preauth *p, const uint8_t *key)
{
	struct gw_pending *any = NULL;

	for (struct gw_pending *pe = p->head; pe; pe = pe->next) {
		if (pe->evicted || (key && memcmp(pe->addr, key, 16)))
			continue;
		if (!pe->authed)
			return pe;
		if (!any)
			any = pe;
	}
	return any;
}

int gw_preauth_admit(struct gw_preauth *p, int fd, const struct sockaddr *sa, struct gw_pending **out)
{
	struct gw_pending *pe = calloc(1, sizeof(*pe)), *victim;
	uint64_t now = gw_now_ns();
	int same = 0;

	if (!pe)
		return -ENOMEM;
	pe->fd = fd;
	addr_key(pe->addr, sa);
	pe->deadline_ns = now + (uint64_t)p->cfg.setup_ms * 1000000ull;
	pthread_mutex_lock(&p->lock);
	if (!rate_ok_locked(p, pe->addr, now)) {
		p->nrated++;
		pthread_mutex_unlock(&p->lock);
		free(pe);
		return -EAGAIN;
	}
	if (p->n >= 2 * p->cfg.max_pending) {
		pthread_mutex_unlock(&p->lock);
		free(pe);
		return -EBUSY;
	}
	for (struct gw_pending *q = p->head; q; q = q->next)
		same += !q->evicted && !memcmp(q->addr, pe->addr, 16);
	if (same >= p->cfg.max_per_addr && (victim = oldest_locked(p, pe->addr))) {
		p->nevicted++;
		evict_locked(p, victim, "its address holds --max-pending-per-address; the oldest makes room");
	} else if (p->nlive >= p->cfg.max_pending && (victim = oldest_locked(p, NULL))) {
		p->nevicted++;
		evict_locked(p, victim, "--max-pending reached; the oldest makes room");
	}
	pe->prev = p->tail;
	if (p->tail)
		p->tail->next = pe;
	else
		p->head = pe;
	p->tail = pe;
	p->n++;
	p->nlive++;
	pthread_mutex_unlock(&p->lock);
	*out = pe;
	return 0;
}

void gw_preauth_authed(struct gw_preauth *p, struct gw_pending *pe)
{
	pthread_mutex_lock(&p->lock);
	pe->authed = true;
	pthread_mutex_unlock(&p->lock);
}

void gw_preauth_done(struct gw_preauth *p, struct gw_pending *pe)
{
	pthread_mutex_lock(&p->lock);
	if (pe->prev)
		pe->prev->next = pe->next;
	else
		p->head = pe->next;
	if (pe->next)
		pe->next->prev = pe->prev;
	else
		p->tail = pe->prev;
	p->n--;
	if (!pe->evicted)
		p->nlive--;
	pthread_mutex_unlock(&p->lock);
	free(pe);
}

void gw_preauth_sweep(struct gw_preauth *p)
{
	uint64_t now = gw_now_ns();

	pthread_mutex_lock(&p->lock);
	for (struct gw_pending *pe = p->head; pe; pe = pe->next)
		if (!pe->evicted && now >= pe->deadline_ns) {
			p->nexpired++;
			evict_locked(p, pe,
				     "setup not finished within --handshake-timeout (TLS handshake and HELLO/JOIN)");
		}
	pthread_mutex_unlock(&p->lock);
}

int gw_preauth_count(struct gw_preauth *p)
{
	int n;

	pthread_mutex_lock(&p->lock);
	n = p->n;
	pthread_mutex_unlock(&p->lock);
	return n;
}
