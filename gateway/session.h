/* SPDX-License-Identifier: MIT */
/*
 * The session engine shared by both ends: a session owns N TLS connections
 * and up to max_streams full-duplex streams. Each connection has a reader
 * and a writer thread; each stream has a pump thread per direction (local
 * fd -> chunks, and reorder buffer -> local fd). One mutex per session
 * guards all of its state (PROTOCOL.md §2, §5).
 */
#ifndef MR_GATEWAY_SESSION_H
#define MR_GATEWAY_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/tls.h"
#include "stream/codec.h"
#include "stream/credit.h"
#include "stream/digest.h"
#include "stream/frame.h"
#include "stream/reorder.h"
#include "stream/rxsm.h"
#include "stream/stripe.h"

enum {
	GW_DEFAULT_CHUNK = 256 << 10,      /* raw bytes per chunk */
	GW_DEFAULT_WINDOW = 4 << 20,       /* bytes in flight per stream direction */
	GW_DEFAULT_MAX_STREAMS = 8,        /* open at once per session */
	GW_SETUP_TIMEOUT_MS = 10000,       /* TLS handshake and HELLO/JOIN */
	GW_IDENTITY_MAX = 512,
	GW_DEFAULT_RECONNECT_MS = 30000,   /* a session without connections waits this long for a rejoin */
	GW_DEFAULT_KEEPALIVE_MS = 5000,    /* PING after this much send silence; dead after 3x receive silence */
	GW_TICK_MS = 250,                  /* session timer period */
	GW_REJOIN_TRIES = 10,              /* rejoin attempts per connection while others live */
	GW_DRAIN_MS = 2000,                /* a connection replaced for fresh keys waits this long for the peer's close */
	GW_URING_TX_BUFS = 4,              /* registered send buffers per connection ... */
	GW_URING_TX_BUFSIZE = 288 << 10,   /* ... each holding a sealed 256 KiB chunk frame */
	GW_URING_RX_BUFS = 16,             /* provided receive buffers per connection ... */
	GW_URING_RX_BUFSIZE = 64 << 10,    /* ... of this size */
	GW_LENT_MAX = 32,                  /* chunks one connection's socket may hold lent (8 MiB of 256 KiB chunks) */
};

struct gw_session;
struct gw_stream;
struct mr_conn;

/* How a stream's inbound direction ends at the local side. */
struct gw_sink_ops {
	/* After the inbound END verified: finish the sink (rename a temp file, half-close a socket). 0 or -errno. */
	int (*finish)(struct gw_stream *st);
	/* The stream failed: undo what a success would have kept (remove a temp file). */
	void (*abort)(struct gw_stream *st);
	/* Both directions done or failed: release local resources. */
	void (*close)(struct gw_stream *st);
	/*
	 * Optional, called unlocked from a pump thread. <eof>: the local side
	 * ended its outbound direction; return 0 to send END, or -errno with
	 * <why> set to fail the stream instead (a QEMU that failed to load).
	 * Not <eof>: local I/O failed with <err>; may rewrite <why> with the
	 * real reason (QEMU's own error text).
	 */
	int (*check)(struct gw_stream *st, bool eof, int err, char *why, size_t whylen);
};

struct gw_session_cfg {
	bool server;
	uint32_t window, chunk_size;
	uint16_t max_streams;
	bool compress;
	bool compress_auto; /* compress only while the connections, not the CPU, hold things up */
	int zlevel;
	int reconnect_ms; /* 0: default; < 0: fail as soon as every connection is gone */
	int keepalive_ms; /* 0: default */
	int idle_ms;      /* server: close a session with no open stream after this long (0: never) */
	bool plaintext;   /* --insecure-plaintext: every connection moves its frames raw after WELCOME (PROTOCOL.md §4.4) */
	/*
	 * OPEN acknowledgements (PROTOCOL.md §5.1, revision 1.2): the HELLO
	 * asked for them and the WELCOME confirmed it. The server then sends
	 * OPENED once a stream's target is connected; the client accepts them.
	 */
	bool open_ack;

	/* Who the session is: set here once, read back with gw_session_id() and the other getters. */
	uint64_t id;                     /* server, 0: gw_session_new draws one at random; client: the WELCOME's */
	uint8_t token[WIRE_TOKEN_LEN];   /* server, all zero: drawn at random; client: the WELCOME's */
	char identity[GW_IDENTITY_MAX];  /* the peer's authenticated identity ("" on the client) */
	char target[WIRE_MAX_NAME + 1];  /* the target's name */
	struct wire_hello hello;         /* server: what the client asked for */
	int nconns;                      /* connections the session expects */
	/*
	 * Client: how a dead connection comes back, with its context, and the
	 * credentials its TLS sessions use. <rejoin> opens a new connection
	 * and JOINs it as index <idx>; the timer thread calls it unlocked; it
	 * returns 0 with *conn set, or -errno. The session owns <rejoin_ctx>
	 * (released with <rejoin_ctx_free> at gw_session_close) and <tls_cfg>
	 * from gw_session_new on, even when it fails.
	 */
	int (*rejoin)(struct gw_session *s, int idx, struct mr_conn **conn);
	void *rejoin_ctx;
	void (*rejoin_ctx_free)(void *rejoin_ctx);
	struct mr_tls_cfg *tls_cfg;
};

/*
 * Allocates a session (no connections yet) from <cfg>, which is copied;
 * on the server a zero id or token is drawn at random. Takes over cfg->rejoin_ctx and
 * cfg->tls_cfg even on failure. Returns 0, -ENOMEM, or mr_random's error.
 * Any thread.
 */
MR_MUST_CHECK int gw_session_new(struct gw_session **out, const struct gw_session_cfg *cfg);

/*
 * Adds connection <idx>, set up and past its WELCOME (stream/conn.h:
 * mr_conn_from_tls, mr_conn_plain), and starts its threads. The session
 * owns <conn> (and its socket) from then on, even on failure.
 * Returns 0, -EEXIST if the index is taken, -ENOMEM.
 */
MR_MUST_CHECK int gw_session_add_conn(struct gw_session *s, int idx, struct mr_conn *conn);

/*
 * Waits up to <timeout_ms> until connection <idx> is gone or dead: a client
 * rejoins as soon as it sees its end of a connection close, which may be a
 * moment before this end has read the close. False if it still lives then,
 * or the session failed. Takes s->lock.
 */
bool gw_session_conn_gone(struct gw_session *s, int idx, int timeout_ms);

/*
 * Like gw_session_add_conn for a connection index that was used before and
 * whose connection died (a rejoin): waits for the dead one's threads, frees
 * it, adds the new one and re-sends what the dead one carried.
 * Returns 0, -EEXIST if the old connection still lives.
 */
MR_MUST_CHECK int gw_session_replace_conn(struct gw_session *s, int idx, struct mr_conn *conn);

/*
 * Client: creates stream <role> on the next id with local fds and sink ops,
 * sends OPEN and starts its pumps. Returns the stream id or -errno
 * (-EMFILE when max_streams are open, -ENOSPC when the ids are used up).
 */
MR_MUST_CHECK int gw_stream_open(struct gw_session *s, uint8_t role, int rfd, int wfd,
				 const struct gw_sink_ops *ops, void *ctx);

/* Server on_open helpers: attach local fds to a stream the peer opened. */
void gw_stream_attach(struct gw_stream *st, int rfd, int wfd, const struct gw_sink_ops *ops, void *ctx);

/* Client: no more streams; sends BYE. */
void gw_session_bye(struct gw_session *s);

/*
 * Marks the session failed (first failure wins), tells the peer when
 * <tell_peer>, fails every open stream. Takes s->lock (session_int.h has
 * the variant for the session's own code, which holds it).
 */
void gw_session_fail(struct gw_session *s, int code, bool tell_peer, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * Waits until stream <id> completed or failed, or <timeout_ms> passed (-1:
 * forever). Returns 0 when complete, -EPROTO when it failed (its WIRE_E_*
 * code and text: gw_stream_result), -ETIMEDOUT. Any thread but the session's.
 */
MR_MUST_CHECK int gw_stream_wait(struct gw_session *s, int id, int timeout_ms);

/*
 * Waits until no stream is open. Returns 0, -EPROTO when the session failed
 * (gw_session_first_failure says why), -ETIMEDOUT.
 */
MR_MUST_CHECK int gw_session_wait_idle(struct gw_session *s, int timeout_ms);

/* Server: waits until every connection is gone. */
void gw_session_wait_dead(struct gw_session *s);

/* Closes every connection (flushing queued frames first, then TLS close_notify), joins all threads, frees. NULL-safe. */
void gw_session_close(struct gw_session *s);

/* Total bytes: raw stream bytes both ways and TLS payload bytes on the wire both ways. */
struct gw_stats {
	uint64_t raw_out, raw_in, wire_out, wire_in;
	int live_conns;
};
void gw_session_stats(struct gw_session *s, struct gw_stats *st);

/*
 * The failure a command reports, for commands that must not walk
 * s->streams[] themselves. Takes s->lock: any thread but the session's own
 * (not from on_open or sink ops). Sets *code to the WIRE_E_* code of the
 * first failed stream (lowest id) and <text> (<len> bytes, NUL-terminated,
 * may be NULL) to its text; with no failed stream, to the session's own
 * failure; with neither, *code = 0 and text "". Returns the number of
 * failed streams (0 when none), never an error.
 */
int gw_session_first_failure(struct gw_session *s, int *code, char *text, size_t len);

/* How a session stands or ended, in one consistent snapshot (gw_session_outcome). */
struct gw_outcome {
	bool ok;               /* every stream complete, none open or failed, no session failure */
	int nstreams;          /* stream ids used */
	int open_streams;      /* neither complete nor failed */
	int failed_streams;
	int first_failed;      /* id of the first failed stream, -1 for none */
	int stream_code;       /* its WIRE_E_* code, 0 for none */
	char stream_text[WIRE_MAX_ERROR_TEXT + 1];
	int session_code;      /* the session's own failure, 0 for none */
	char session_text[WIRE_MAX_ERROR_TEXT + 1];
	bool session_from_peer; /* that failure came in the peer's ERROR */
	bool bye;              /* server: the client sent BYE */
	int live_conns;
};

/* Fills <o> under s->lock; same threads as gw_session_first_failure. */
void gw_session_outcome(struct gw_session *s, struct gw_outcome *o);

/*
 * Server supervisor: waits until the session has nothing more to wait for,
 * that is until it failed, or no connection lives and it need not wait
 * for a rejoin: either reconnect is off (reconnect_ms <= 0), or no stream
 * is open and no BYE is awaited (a server whose streams all completed waits
 * for the client's BYE, since the last VERIFIED may have gone down with a
 * connection: PROTOCOL.md §5.8; the timer ends both waits at the reconnect
 * timeout). Then fills <o> (may
 * be NULL) in the same hold of the lock. Any thread but the session's own.
 */
void gw_session_wait_finished(struct gw_session *s, struct gw_outcome *o);

/*
 * Stream <id>'s result: *code (may be NULL) its WIRE_E_* failure (0 while fine), <text>
 * (<len> bytes, may be NULL) its failure text, or the session's when the
 * stream has none, <end> (may be NULL) the END this side sent (zero before
 * it was sent). Returns 1 when the stream completed (both directions
 * verified), 0 when not (yet), -ENOENT for no such stream. Takes s->lock:
 * same threads as gw_session_outcome.
 */
int gw_stream_result(struct gw_session *s, int id, int *code, char *text, size_t len, struct wire_end *end);

/*
 * One stream, copied out in one hold of s->lock: for sink ops (finish,
 * check and close run unlocked) and for commands that follow single streams
 * (forward.h), none of which may read the stream's fields.
 */
struct gw_stream_info {
	uint16_t id;
	uint8_t role;
	bool complete;                /* both directions verified */
	int fail_code;                /* WIRE_E_*, 0 while fine */
	char fail_text[WIRE_MAX_ERROR_TEXT + 1];
	uint64_t out_bytes, in_bytes; /* raw bytes sent, and received in order */
	/*
	 * The peer has acted on the stream's OPEN: it acknowledged a chunk,
	 * sent bytes or its END, or the stream ended (complete or failed).
	 */
	bool peer_seen;
	/*
	 * The stream's target is connected: on the server, on_open succeeded;
	 * on a client, the server's OPENED arrived (only in a session with
	 * cfg.open_ack; never in others).
	 */
	bool target_connected;
	int session_code;             /* the session's own failure, 0 for none */
	char session_text[WIRE_MAX_ERROR_TEXT + 1];
};

/*
 * Fills <o> for stream <id> of <s> under s->lock. Returns 0, or -ENOENT when
 * the id was never used. Any thread that does not hold s->lock: commands,
 * and the session's own threads in on_open and sink ops.
 */
MR_MUST_CHECK int gw_stream_snapshot(struct gw_session *s, int id, struct gw_stream_info *o);

/*
 * Who the session is (gw_session_cfg): set before its first connection and
 * never changed after, so any thread may read them without the lock.
 */
uint64_t gw_session_id(const struct gw_session *s);
const uint8_t *gw_session_token(const struct gw_session *s); /* WIRE_TOKEN_LEN bytes */
const char *gw_session_identity(const struct gw_session *s);
const char *gw_session_target(const struct gw_session *s);
const struct wire_hello *gw_session_hello(const struct gw_session *s);
int gw_session_nconns(const struct gw_session *s);
/* The tunables after defaults were applied (window, chunk_size, max_streams, plaintext, reconnect_ms, ...). */
const struct gw_session_cfg *gw_session_cfg_get(const struct gw_session *s);
/* Client: the rejoin context and TLS credentials given in gw_session_cfg (the session still owns them). */
void *gw_session_rejoin_ctx(const struct gw_session *s);
struct mr_tls_cfg *gw_session_tls_cfg(const struct gw_session *s);

/*
 * Server: the target side of the session. <on_open> connects a newly
 * opened stream (it runs unlocked in the reader thread of connection 0,
 * and may call gw_stream_attach), <ctx> is the target's data, released by
 * <ctx_free> at gw_session_close. Call before the first connection is
 * added; takes the lock.
 */
void gw_session_set_target_ops(struct gw_session *s,
			       int (*on_open)(struct gw_session *s, struct gw_stream *st, char *why, size_t whylen),
			       void *ctx, void (*ctx_free)(struct gw_session *s));
void *gw_session_ctx(const struct gw_session *s);

/* For sink ops and on_open: the stream's session, id, role, local fds and sink data. */
struct gw_session *gw_stream_session(const struct gw_stream *st);
uint16_t gw_stream_id(const struct gw_stream *st);
uint8_t gw_stream_role(const struct gw_stream *st);
int gw_stream_rfd(const struct gw_stream *st);
int gw_stream_wfd(const struct gw_stream *st);
void *gw_stream_ctx(const struct gw_stream *st);

/* One connection index in a status snapshot. */
struct gw_session_conn_status {
	bool live;
	uint32_t rejoins;            /* times this index got a new connection */
	uint64_t wire_in, wire_out;  /* frame bytes on the current connection */
};

enum gw_stream_state { GW_STREAM_OPEN = 0, GW_STREAM_VERIFIED = 1, GW_STREAM_FAILED = 2 };

struct gw_session_stream_status {
	uint16_t id;
	uint8_t role;
	enum gw_stream_state state;
	uint64_t bytes_out, bytes_in; /* raw bytes sent and delivered so far */
	bool out_verified;            /* the peer verified what this side sent */
	bool in_verified;             /* this side verified what it received */
};

/* A session as the control socket shows it (control.h, status.h), copied out in one hold of the lock. */
struct gw_session_status {
	uint64_t id;
	char identity[GW_IDENTITY_MAX];
	char target[WIRE_MAX_NAME + 1];
	const char *state; /* "setup" (no connection yet), "running", "rejoining" (none live), "closing" (failed or closed) */
	double age_s;
	uint64_t bytes_in, bytes_out; /* raw stream bytes from / to the peer */
	uint64_t wire_in, wire_out;   /* frame bytes on the connections */
	int connections_expected, connections_live;
	uint32_t rejoins;             /* sum over the connections */
	int nconns;                   /* entries in conns[], by index */
	struct gw_session_conn_status conns[WIRE_MAX_CONNS];
	int nstreams;                 /* entries in streams[], by id (an id not seen yet: open, no bytes, not counted) */
	int streams_open, streams_verified, streams_failed;
	struct gw_session_stream_status streams[WIRE_MAX_STREAMS];
	int error_code;                      /* the session's failure (WIRE_E_*), 0 while fine */
	char error[WIRE_MAX_ERROR_TEXT + 1]; /* its text, "" while fine */
};

/* Fills <st> (about 4 KiB: the caller allocates it). Cheap; same threads as gw_session_outcome. */
void gw_session_status(struct gw_session *s, struct gw_session_status *st);
const char *gw_stream_state_name(enum gw_stream_state state);

uint64_t gw_now_ns(void);

#endif
