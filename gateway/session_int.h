/* SPDX-License-Identifier: MIT */
/*
 * What the session's own files share, and nobody else includes:
 *   session.c        life cycle and the public API (new, add/replace a connection, bye, waits, failure, close)
 *   session_conn.c   a connection's reader and writer threads: frames in through stream/conn.h and
 *                    stream/rxsm.h's state machine, frames out through stream/conn.h
 *   session_stream.c a stream's two pumps: local fd -> chunks, reorder buffer -> local fd; ACK, END, VERIFIED
 *   session_sched.c  queues per connection, stream/stripe.h glue (pick, resync, loss), rekey and
 *                    compress-auto policies
 *   session_timer.c  the timer thread: keepalive, send and drain deadlines, idle/reconnect deadlines, rejoin
 *   session_query.c  what commands and the control socket read: stats, outcome, results, getters, status
 *   exitmap.c        (not the session's) wire codes to exit codes, for the commands
 * Every function here marked "Locked." is called with s->lock held; the
 * lock guards all of a session's state (session.h).
 */
#ifndef MR_GATEWAY_SESSION_INT_H
#define MR_GATEWAY_SESSION_INT_H

#include <time.h>

#include "session.h"

/* session.c */

/* Sets <ts> to CLOCK_REALTIME now + <timeout_ms>, for pthread_cond_timedwait. */
void deadline(struct timespec *ts, int timeout_ms);
/* Locked. Marks one stream failed (first failure wins), tells the peer when <tell_peer>; wakes its pumps. */
void stream_fail_locked(struct gw_stream *st, int code, bool tell_peer, const char *text);

/* session_query.c */

/* Locked. The outcome snapshot behind gw_session_outcome, gw_session_first_failure, gw_session_wait_finished. */
void outcome_locked(const struct gw_session *s, struct gw_outcome *o);

/* session_sched.c */

/* Drops one reference to chunk <c>; frees it with the last. NULL-safe; any thread. */
void chunk_put(struct gw_chunk *c);
/* The chunk that holds stripe entry <e>; NULL for NULL. */
struct gw_chunk *chunk_of(struct stripe_ent *e);
/* Locked. Drops connection <c> for breaking a bound: nothing new on it, socket shut. */
void conn_drop_locked(struct gw_conn *c, const char *why);
/* Locked. Queues a control frame on <c>. 0, -EPIPE, -ENOMEM, -ENOBUFS (bound broken: <c> dropped). */
int conn_queue_ctl(struct gw_conn *c, const struct wire_hdr *h, const void *payload);
/* Locked. Queues a control frame on the first live connection; dropped if none. */
void send_ctl(struct gw_session *s, uint8_t type, uint16_t stream, uint64_t seq, const void *p, uint32_t len);
/* Locked. Queues chunk <ch> on the connection the stripe scheduler picks (or none now). 0 or -ENOMEM. */
int queue_chunk(struct gw_session *s, struct gw_chunk *ch);
/* Locked. Re-queues and repeats what connection <lost> (-1: none) may have carried. */
void resync_locked(struct gw_session *s, int lost);
/* Locked. Is another connection of <c>'s session being replaced? (rekey one at a time) */
bool others_replaced_locked(const struct gw_conn *c);
/* Locked. Connection <c> is gone: empties its queues, applies stream/stripe.h's loss rule. */
void conn_dead_locked(struct gw_conn *c);
/* Bytes one connection sends under one key before it is replaced. Any thread. */
uint64_t gw_rekey_bytes(void);
/* Locked, writer. compress auto: accounts <raw> bytes sent; may switch s->z_on. */
void auto_account(struct gw_session *s, uint32_t raw);

/* session_stream.c */

/* Locked. Both directions verified: marks the stream complete. */
void stream_check_complete(struct gw_stream *st);
/* Locked. Sends the ACK (and credit) for what stream <st> delivered. */
void send_ack(struct gw_stream *st);
/* Locked. Sends VERIFIED for the direction <st> received in full. */
void send_verified(struct gw_stream *st);
/* Locked. Allocates stream <id> and counts it open. NULL when out of memory. */
struct gw_stream *stream_new(struct gw_session *s, uint16_t id, uint8_t role);
/* Locked. Starts both pumps of <st>. 0 or -errno (pthread_create). */
int stream_start(struct gw_stream *st);

/* session_conn.c: thread bodies, started by gw_session_add_conn. <arg> is the struct gw_conn. */
void *conn_reader_main(void *arg);
void *conn_writer_main(void *arg);

/* session_timer.c: thread body, started with the first connection. <arg> is the session. */
void *session_timer_main(void *arg);

#endif
