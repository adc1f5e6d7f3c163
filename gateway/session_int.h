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
#include "stream/zauto.h"

/*
 * The session's own structures: opaque to every other file, which goes
 * through the functions of session.h.
 */
/*
 * A chunk on the sending side: header and raw bytes in one buffer, kept
 * until acknowledged. The buffer starts on the first page boundary after
 * the struct, inside the chunk's own malloc block and ending before it does,
 * so its pages hold nothing of malloc's and chunk_put can take them away
 * from under a kernel that still reads them (CHUNK_LENT and CHUNK_RESENT,
 * below).
 */
struct gw_chunk {
	struct stripe_ent ent; /* place in its stream's unacked list, and the connection it was last queued on */
	atomic_int refs;       /* 1 for the unacked list + 1 per queue entry */
	atomic_uint flags;     /* CHUNK_* */
	uint64_t seq;
	uint32_t len;
	uint32_t cap;          /* bytes of whole pages from mem: what chunk_put unmaps */
	uint8_t *mem;          /* WIRE_HDR_LEN header, then len raw bytes; page-aligned, in the chunk's own block */
};

enum {
	CHUNK_QUEUED = 1u << 0, /* queued on a connection at least once */
	/*
	 * Queued again after a connection was lost: more than one copy of it
	 * may be on its way, and the peer's ACK says that one arrived, not that
	 * every other copy has left the kernel.
	 */
	CHUNK_RESENT = 1u << 1,
	/*
	 * Its pages were lent to the kernel (vmsplice): a socket's peer on
	 * this host (loopback, veth) holds them in its receive queue until it
	 * reads them, after its TCP has acknowledged them.
	 */
	CHUNK_LENT = 1u << 2,
};

struct gw_qent {
	struct gw_qent *next;
	struct gw_chunk *c; /* DATA, or NULL for a control frame in buf */
	uint32_t len;
	uint8_t buf[];
};

struct gw_conn {
	struct gw_session *s;
	int idx;
	int fd;               /* conn's socket, for shutdown() from any thread; closed with conn */
	struct mr_conn *conn; /* stream/conn.h: the engine chosen when the connection was set up */
	pthread_t rd, wr;
	bool threads;
	pthread_cond_t cond; /* writer waits here for queue entries */
	struct gw_qent *ctl_head, *ctl_tail, *data_head, *data_tail;
	uint64_t queued; /* bytes waiting in the queues */
	uint64_t ctl_queued; /* of which control frames: bounded by STRIPE_CTL_MAX_BYTES */
	uint64_t tx_since_ns; /* when the send in progress began, 0 when none: bounded by the send deadline */
	bool dead, closing, wr_done;
	bool clean_close; /* the peer closed with a TLS close_notify */
	bool dropped;     /* broke a bound (control queue, send deadline): shut, taking nothing new */
	/*
	 * Replaced for fresh keys: close_notify and a FIN went out, the reader
	 * reads on until the peer's close (so no RST discards what is still in
	 * flight towards the peer), bounded by GW_DRAIN_MS from drain_ns.
	 */
	bool draining;
	uint64_t drain_ns;
	uint64_t last_rx_ns, last_tx_ns; /* for keepalive */
	struct codec *enc, *dec;
	uint8_t *txbuf, *rxbuf;
	uint64_t tx_bytes, rx_bytes; /* wire bytes (frames), for reports */
	/*
	 * Writer, then conn_free: the chunks whose memory the engine lent to
	 * the kernel (mr_conn_lends), oldest first, each with the count of
	 * bytes written to the socket up to its end. Each holds a reference
	 * until the socket no longer holds those bytes: the peer may have
	 * acknowledged the chunk through another copy (a re-send after a
	 * lost connection) while this one still waits in the socket, and
	 * memory reused under it would go out in its place.
	 */
	struct {
		struct gw_chunk *ch;
		uint64_t end;
	} lent[GW_LENT_MAX];
	unsigned lent_head, lent_n;
	uint64_t sock_bytes; /* written to the socket, every frame */
};

struct gw_stream {
	struct gw_session *s;
	uint16_t id;
	uint8_t role;
	bool opened;       /* client: OPEN sent; server: OPEN received and target connected */
	int rfd, wfd;      /* local fds; -1 for none (outbound ends at once / inbound discarded) */
	const struct gw_sink_ops *ops;
	void *ctx;         /* sink's own data */
	/*
	 * Each pump waits on its own: the out pump for credit (an ACK), the in
	 * pump for the reorder buffer or the END; an ACK wakes no in pump.
	 */
	pthread_cond_t out_cond, in_cond;
	pthread_t out_thr, in_thr;
	bool out_started, in_started;

	/* the protocol counters of both directions: credit, reorder buffer, END and VERIFIED (stream/rxsm.h) */
	struct rxsm_stream sm;

	/* outbound: local rfd -> peer */
	struct digest out_dg;
	bool out_sock; /* rfd is a socket: reads that do not wait are one call each */
	struct stripe_list unacked; /* of struct gw_chunk, by ent */
	uint8_t out_end[WIRE_END_LEN];

	/* inbound: peer -> local wfd */
	struct digest in_dg;

	bool complete;     /* both directions verified */
	int fail_code;     /* WIRE_E_*, 0 while fine */
	char fail_text[WIRE_MAX_ERROR_TEXT + 1];
};

struct gw_session {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* stream completion, connection death, failure */
	struct gw_session_cfg cfg;
	uint64_t id;
	uint8_t token[WIRE_TOKEN_LEN];
	char identity[GW_IDENTITY_MAX];
	char target[WIRE_MAX_NAME + 1];
	struct wire_hello hello; /* server: what the client asked for */
	int nconns;              /* connections the session expects */
	int nlive, never;        /* live connections; connections that ever joined */
	uint64_t all_dead_ns;    /* when the last connection went, 0 while one lives */
	uint64_t idle_since_ns;  /* when the last open stream ended (or the session began) */
	uint64_t rejoin_at_ns[WIRE_MAX_CONNS]; /* client: next rejoin attempt per dead connection */
	int rejoin_tries[WIRE_MAX_CONNS];
	uint32_t rejoins[WIRE_MAX_CONNS]; /* times each connection index was replaced by a new connection */
	pthread_t timer;
	bool timer_started;
	/*
	 * Client: opens a new connection and JOINs it as index <idx>; called
	 * unlocked from the timer thread. Returns 0 with *conn set, or -errno.
	 */
	int (*rejoin)(struct gw_session *s, int idx, struct mr_conn **conn);
	void *rejoin_ctx;
	void (*rejoin_ctx_free)(void *rejoin_ctx); /* releases rejoin_ctx at gw_session_close */
	struct gw_conn *conns[WIRE_MAX_CONNS];
	struct gw_stream *streams[WIRE_MAX_STREAMS];
	int nstreams;            /* ids used so far */
	int open_streams;        /* not yet complete or failed */
	struct rxsm sm;          /* receive rules: OPEN order, window, limits (stream/rxsm.h) */
	struct stripe stripe;    /* stripe scheduler (stream/stripe.h) */
	struct zauto za;         /* compress auto's choice (stream/zauto.h), under lock */
	bool bye;
	/*
	 * server: every connection went after the streams completed but before
	 * BYE, and no rejoin came within the reconnect timeout. Until then the
	 * session waits: the client may not have the last VERIFIED yet.
	 */
	bool bye_wait_over;
	bool finished;           /* no more work: conns being closed */
	int err_code;            /* first session failure (WIRE_E_*) */
	char err_text[WIRE_MAX_ERROR_TEXT + 1];
	bool err_from_peer;
	/* server: connect a newly opened stream to the target; runs in the reader thread of connection 0, unlocked */
	int (*on_open)(struct gw_session *s, struct gw_stream *st, char *why, size_t whylen);
	void *ctx;
	void (*ctx_free)(struct gw_session *s); /* releases ctx at gw_session_close */
	struct mr_tls_cfg *own_cfg; /* client: credentials its TLS sessions use; freed last */
	uint64_t started_ns;
};

/* session.c */

/* Locked. gw_session_fail for a caller that holds s->lock. */
void gw_session_fail_locked(struct gw_session *s, int code, bool tell_peer, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Locked. gw_session_conn_gone for a caller that holds s->lock. */
bool gw_session_conn_gone_locked(struct gw_session *s, int idx, int timeout_ms);
/*
 * Locked, server. True while the session must wait for the client's BYE:
 * its streams all completed here, but the last VERIFIED may have gone down
 * with a connection, so the client may yet rejoin to fetch it (PROTOCOL.md
 * §5.8). False once BYE came, after a failure, or when the wait timed out.
 */
bool gw_session_awaits_bye_locked(const struct gw_session *s);

/* Sets <ts> to CLOCK_REALTIME now + <timeout_ms>, for pthread_cond_timedwait. */
void deadline(struct timespec *ts, int timeout_ms);
/* Locked. Marks one stream failed (first failure wins), tells the peer when <tell_peer>; wakes its pumps. */
void stream_fail_locked(struct gw_stream *st, int code, bool tell_peer, const char *text);

/* session_query.c */

/* Locked. The outcome snapshot behind gw_session_outcome, gw_session_first_failure, gw_session_wait_finished. */
void outcome_locked(const struct gw_session *s, struct gw_outcome *o);

/* session_sched.c */

/* A chunk for up to <payload> raw bytes (one malloc block); NULL without memory. Free with chunk_put or free(). */
struct gw_chunk *chunk_alloc(size_t payload);
/*
 * Drops one reference to chunk <c>; frees it with the last. A chunk both
 * lent and re-sent first has its pages unmapped (MADV_DONTNEED): a copy the
 * kernel still holds keeps the bytes it was given, and the memory malloc
 * hands out next is fresh. NULL-safe; any thread.
 */
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
/* Writer (unlocked), or conn_free: drops the references of lent chunks the socket no longer holds; <all>: every one. */
void conn_lent_release(struct gw_conn *c, bool all);

/* Locked, writer. compress auto: accounts <raw> bytes sent (zauto_account) and logs each decision. */
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

/* Names the calling thread "<what><n>" (as top -H and perf show it), e.g. "mr-rd0". */
void thread_name(const char *what, unsigned n);

/* session_conn.c: thread bodies, started by gw_session_add_conn. <arg> is the struct gw_conn. */
void *conn_reader_main(void *arg);
void *conn_writer_main(void *arg);

/* session_timer.c: thread body, started with the first connection. <arg> is the session. */
void *session_timer_main(void *arg);

#endif
