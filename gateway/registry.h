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

#include "session.h"

struct gw_reg_entry {
	struct gw_reg_entry *next;
	struct gw_session *s;
	uint64_t id;
	uint8_t token[WIRE_TOKEN_LEN];
	char *identity;		   /* the peer's whole identity, compared whole at JOIN */
	int refs;		   /* 1 for the supervisor (or the HELLO until then) + 1 per JOIN in progress */
	bool ready;		   /* connection 0 is in: a JOIN may go ahead */
	bool listed;		   /* findable; false once the session ended */
	pthread_mutex_t join_lock; /* one JOIN of this session at a time, held across its WELCOME */
};

struct gw_registry {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* an entry became ready, was unlisted, or lost a reference */
	struct gw_reg_entry *head;
	int max_sessions;
	int nsessions; /* listed */
	int reserved;  /* admitted HELLOs not yet listed */
	int closing;   /* unlisted, still being closed */
};

/* Initialises an empty registry for <max_sessions>. Main thread, before any other call. */
void gw_registry_init(struct gw_registry *r, int max_sessions);

/* Reserves a session slot before anything is done for a HELLO. 0, or -EBUSY at --max-sessions. Any thread. */
MR_MUST_CHECK int gw_registry_reserve(struct gw_registry *r);
/* Gives a reservation back (the HELLO was refused later). Any thread. */
void gw_registry_unreserve(struct gw_registry *r);

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

#endif
