/* SPDX-License-Identifier: MIT */
/*
 * Connections between accept and WELCOME ("pending"): the server's
 * defence against peers that connect and then do nothing, or trickle.
 *
 *  - One deadline for the whole setup (TLS handshake, HELLO or JOIN, up
 *    to the WELCOME): at that deadline gw_preauth_sweep shuts the socket
 *    down, which ends whatever the handshake thread is waiting in.
 *  - Per source address (IPv4 /32, IPv6 /64): a connect rate (token
 *    bucket; above it a new connection is closed at once) and a cap on
 *    pending connections.
 *  - At a cap, the OLDEST pending connection is evicted (its socket shut
 *    down), not the newest refused: preferably one still in its TLS
 *    handshake, at the per-address cap one of the same address.
 *
 * The guarantee (SECURITY.md): a connection is evicted only after
 * max_per_addr newer connections from its own address, or max_pending
 * newer connections in all, arrived while it was pending. Idle or slow
 * connections therefore cannot keep a client out, whatever their number:
 * an attacker must keep opening connections faster than the client's
 * setup takes, and its connect rate per address is bounded.
 */
#ifndef MR_GATEWAY_PREAUTH_H
#define MR_GATEWAY_PREAUTH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "stream/wire.h"

struct gw_preauth_cfg {
	int max_pending;  /* pending connections in all */
	int max_per_addr; /* pending connections per source address */
	int rate;	  /* new connections per second per source address (burst: 2 x rate) */
	int setup_ms;	  /* accept -> WELCOME */
};

struct gw_pending {
	struct gw_pending *prev, *next; /* oldest first */
	int fd;
	uint8_t addr[16];
	uint64_t deadline_ns;
	bool authed;  /* past its TLS handshake */
	bool evicted; /* shut down; its thread is on its way out */
};

enum { GW_PREAUTH_BUCKETS = 4096 };

struct gw_rate_bucket {
	uint8_t addr[16];
	bool used;
	double tokens;
	uint64_t last_ns;
};

struct gw_preauth {
	pthread_mutex_t lock;
	struct gw_preauth_cfg cfg;
	struct gw_pending *head, *tail;
	int n;	   /* in the list, evicted ones included */
	int nlive; /* not evicted */
	uint64_t nevicted, nexpired, nrated;
	uint32_t salt;
	struct gw_rate_bucket *buckets;
};

/* Sets up <p> with <cfg>. 0 or -ENOMEM. Main thread. */
MR_MUST_CHECK int gw_preauth_init(struct gw_preauth *p, const struct gw_preauth_cfg *cfg);
/* Frees the tables; every pending connection must be done. Main thread. */
void gw_preauth_free(struct gw_preauth *p);

/*
 * Accept thread: takes accepted socket <fd> from <sa> into the pending
 * list, evicting the oldest as the caps require. Returns 0 with *out set
 * (the caller's handshake thread calls gw_preauth_done), -EAGAIN when the
 * address is over its connect rate, -EBUSY when evicted connections have
 * not left yet (twice max_pending in the list), -ENOMEM. On failure the
 * caller closes <fd>.
 */
MR_MUST_CHECK int gw_preauth_admit(struct gw_preauth *p, int fd, const struct sockaddr *sa, struct gw_pending **out);

/* Handshake thread: <pe> finished its TLS handshake (evicted after those still in theirs). */
void gw_preauth_authed(struct gw_preauth *p, struct gw_pending *pe);

/*
 * Handshake thread: <pe> leaves the list (WELCOME sent, or setup failed).
 * From then on nothing here touches its fd; the caller may hand it over
 * or close it. Frees <pe>.
 */
void gw_preauth_done(struct gw_preauth *p, struct gw_pending *pe);

/* Accept thread, a few times a second: shuts down connections past their setup deadline. */
void gw_preauth_sweep(struct gw_preauth *p);

/* Connections pending (evicted ones included). Any thread. */
int gw_preauth_count(struct gw_preauth *p);

#endif
