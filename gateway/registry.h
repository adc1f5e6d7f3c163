/* SPDX-License-Identifier: MIT */
/*
 * The server's sessions: admission against --max-sessions, lookup for
 * JOIN, and each session's supervisor, which removes it once it ended.
 * The registry lock guards only the list and its counters: it is never
 * held across network I/O, QMP, a thread join or a wait on a session, so
 * one slow JOIN or peer cannot hold up a HELLO of another client.
 */
#ifndef MR_GATEWAY_REGISTRY_H
#define MR_GATEWAY_REGISTRY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"
#include "session.h"
#include "snapshot.h"
#include "status.h"

/* A configuration snapshot (gateway/snapshot.h) a session's connections were set up with. */
struct gw_snap_hold {
	struct gw_snap_hold *next;
	struct gw_snap *snap;
};

struct gw_reg_entry {
	struct gw_reg_entry *next;
	struct gw_session *s;
	uint64_t id;
	uint8_t token[WIRE_TOKEN_LEN];
	char *identity;			  /* the peer's whole identity, compared whole at JOIN */
	int refs;			  /* 1 for the supervisor (or the HELLO until then) + 1 per JOIN in progress */
	bool ready;			  /* connection 0 is in: a JOIN may go ahead */
	bool listed;			  /* findable; false once the session ended */
	pthread_mutex_t join_lock;	  /* one JOIN of this session at a time, held across its WELCOME */
	struct gw_snap_hold *snaps;	  /* held until the session is closed (registry lock) */
	uint32_t rejoins[WIRE_MAX_CONNS]; /* per connection (registry lock) */
	uint64_t joined;		  /* bit per connection index that ever joined (registry lock) */
	pthread_mutex_t flow_lock;	  /* <flow>: one metrics update at a time */
	struct gw_metrics_flow flow;	  /* what this session's bytes added to the metrics */
};

struct gw_registry {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* an entry became ready, was unlisted, or lost a reference */
	struct gw_reg_entry *head;
	int max_sessions;
	int nsessions; /* listed */
	int reserved;  /* admitted HELLOs not yet listed */
	struct gw_reg_pending *pending; /* their identities, for --max-sessions-per-identity */
	int closing;   /* unlisted, still being closed */
};

/* Initialises an empty registry for <max_sessions>. Main thread, before any other call. */
void gw_registry_init(struct gw_registry *r, int max_sessions);

/*
 * Reserves a session slot for peer <identity> before anything is done for
 * its HELLO. Returns 0; -EBUSY at --max-sessions (closing sessions count
 * until they have released everything); -EDQUOT when <per_identity> > 0
 * and that identity already holds as many sessions, listed or reserved.
 * Any thread.
 */
MR_MUST_CHECK int gw_registry_reserve(struct gw_registry *r, const char *identity, int per_identity);
/* Gives <identity>'s reservation back (the HELLO was refused later). Any thread. */
void gw_registry_unreserve(struct gw_registry *r, const char *identity);

/*
 * Lists session <s> (id and token set) for peer <identity> in place of a
 * reservation, not yet ready. Returns 0 with *out holding the creator's
 * reference, or -ENOMEM (the reservation is given back). Any thread.
 */
MR_MUST_CHECK int gw_registry_add(struct gw_registry *r, struct gw_session *s, const char *identity,
				  struct gw_reg_entry **out);

/* Connection 0 is in: JOINs of <e> may proceed. Any thread. */
void gw_registry_ready(struct gw_registry *r, struct gw_reg_entry *e);

/*
 * JOIN lookup: the listed session <id> whose token equals <token>
 * (compared in constant time) and whose identity equals <identity> in
 * full. Waits for a session not yet ready until <deadline_ns>, with the
 * lock released. Returns 0 with *out referenced (gw_registry_put), or
 * -ENOENT (no such session or a wrong token, *code WIRE_E_BAD_TOKEN),
 * -EACCES (another identity, *code WIRE_E_IDENTITY), -ETIMEDOUT.
 */
MR_MUST_CHECK int gw_registry_find(struct gw_registry *r, uint64_t id, const uint8_t *token, const char *identity,
				   uint64_t deadline_ns, struct gw_reg_entry **out, uint16_t *code);
/*
 * Takes <e>'s JOIN turn (one JOIN of a session at a time, held across its
 * wait and WELCOME) by <deadline_ns>, never longer. 0 or -ETIMEDOUT. Needs
 * a reference on <e>; gw_registry_join_unlock gives the turn back.
 */
MR_MUST_CHECK int gw_registry_join_lock(struct gw_reg_entry *e, uint64_t deadline_ns);
void gw_registry_join_unlock(struct gw_reg_entry *e);

/* Drops a reference taken by gw_registry_find. Any thread. */
void gw_registry_put(struct gw_registry *r, struct gw_reg_entry *e);

/*
 * Starts the supervisor of <e>, which takes over the creator's reference:
 * it waits for the session's end, unlists it, waits for JOINs in progress,
 * closes the session and logs how it ended. If the thread cannot start,
 * the session is failed and closed here. Any thread.
 */
void gw_registry_supervise(struct gw_registry *r, struct gw_reg_entry *e);

/*
 * Ends a session that never got going (connection 0 could not be added):
 * unlists it, waits for JOINs in progress, closes it, frees <e>.
 */
void gw_registry_drop(struct gw_registry *r, struct gw_reg_entry *e);

/* Fails every listed session with <code> (peers get an ERROR). Main thread, at shutdown. */
void gw_registry_fail_all(struct gw_registry *r, int code, const char *text);

/* Sessions listed, reserved or closing: 0 when the registry is idle. Any thread. */
int gw_registry_busy(struct gw_registry *r);

/*
 * Makes <e> hold <h>->snap until the session is closed, taking over <h>
 * and its reference (a second hold of the same snapshot only drops the
 * extra reference and frees <h>). Needs a reference on <e>. Any thread.
 */
void gw_registry_hold(struct gw_registry *r, struct gw_reg_entry *e, struct gw_snap_hold *h);

/* Connection <idx> of <e> came in by JOIN: counted as a rejoin if that index was there before. Any thread. */
void gw_registry_joined(struct gw_registry *r, struct gw_reg_entry *e, int idx);

/*
 * Feeds every listed session's byte totals into the metrics
 * (gw_metrics_flow_update). Takes each session's lock briefly, never with
 * the registry lock held. The daemon's main loop, about once a second.
 */
void gw_registry_metrics_tick(struct gw_registry *r);

/* Sessions listed, sessions closing, and the live connections of the fullest session. Any thread. */
void gw_registry_counts(struct gw_registry *r, int *listed, int *closing, int *conns_used);

/*
 * Adds every listed session to <status> (gw_status_add_session). Reads each
 * session's numbers under its lock, without I/O. Returns 0 or -ENOMEM. Any thread.
 */
MR_MUST_CHECK int gw_registry_status(struct gw_registry *r, struct json_object *status);

#endif
