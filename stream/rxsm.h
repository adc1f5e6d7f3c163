/* SPDX-License-Identifier: MIT */
/*
 * The receive state machine of a session (PROTOCOL.md §5, §7): what one
 * frame from the peer does to the session's stream state, and what the
 * session must do about it. Pure: no threads, locks, sockets or syscalls;
 * the caller serialises access (the session holds its lock around
 * rxsm_step and carries out the actions afterwards).
 *
 * A step is (state, frame) -> (state', actions). The machine owns the
 * per-stream counters of both directions (struct rxsm_stream, embedded in
 * each stream) and the session-wide OPEN order (struct rxsm). What the
 * session owns and the machine only reads (has the stream failed, has the
 * session failed, how many streams are open) goes in as struct rxsm_facts.
 */
#ifndef MR_STREAM_RXSM_H
#define MR_STREAM_RXSM_H

#include <stdbool.h>
#include <stdint.h>

#include "credit.h"
#include "frame.h"
#include "reorder.h"
#include "wire.h"

/* One stream's rule state, both directions. */
struct rxsm_stream {
	/* outbound (this side sends; the peer sends ACK and VERIFIED) */
	struct credit cr;
	uint64_t out_bytes; /* raw bytes sent so far */
	bool out_end_sent;  /* END went (or is queued) */
	bool out_verified;  /* the peer's VERIFIED matched */
	/* inbound (the peer sends; this side sends ACK and VERIFIED) */
	struct reorder ro;
	uint64_t in_chunks, in_bytes;	   /* delivered to the local side */
	uint64_t in_held;		   /* raw bytes received, not yet delivered */
	uint64_t in_acked, in_acked_bytes; /* what the last ACK sent said */
	bool in_end_seen;		   /* the peer's END arrived ... */
	struct wire_end in_end;		   /* ... with these totals ... */
	uint64_t in_end_chunks;		   /* ... and this many chunks */
	bool in_done;			   /* END matched, VERIFIED sent */
	bool open_seen;			   /* server: its OPEN was accepted */
	bool opened_seen;		   /* client: the server's OPENED arrived: the target is connected */
};

/* Session-wide rule state. */
struct rxsm {
	bool server;
	uint32_t window;      /* bytes per stream direction (§5.3) */
	uint16_t max_streams; /* open at once (§5.1) */
	uint16_t next_open;   /* server: the stream id the next OPEN must name */
	/*
	 * The session's HELLO asked for OPENED and its WELCOME confirmed it
	 * (§5.1): a client accepts OPENED only then. Set after rxsm_init.
	 */
	bool open_ack;
};

/* What the session knows and the machine reads, for the frame at hand. */
struct rxsm_facts {
	bool session_failed; /* a session failure happened (first failure wins) */
	bool stream_failed;  /* the stream the frame names failed (false if it does not exist) */
	int open_streams;    /* streams neither complete nor failed */
};

enum rxsm_act {
	RXSM_A_NONE = 0,
	RXSM_A_WAKE_IN = 1,	 /* a chunk or the END arrived: wake the stream's inbound pump */
	RXSM_A_ACKED = 2,	 /* the peer acknowledged chunks below <seq>: release them, wake the outbound pump */
	RXSM_A_OUT_VERIFIED = 3, /* the outbound direction is verified: the stream may be complete */
	RXSM_A_OPEN = 4,	 /* server: connect stream to the target (role in <code>), OUTSIDE the lock */
	RXSM_A_STREAM_FAIL = 5,	 /* the peer failed the stream: fail it with <code>, <text>, not told back */
	RXSM_A_SESSION_FAIL = 6, /* the peer failed the session: <code>, <text>, not told back */
	RXSM_A_PONG = 7,	 /* answer a PING on the same connection with the nonce at <view> */
	RXSM_A_BYE = 8,		 /* server: the client opens no more streams */
	RXSM_A_PROTOCOL = 9,	 /* violation (§7): fail the session with PROTOCOL, <text>; stop reading */
	RXSM_A_OPENED = 10,	 /* client: the server connected the stream to its target: wake who waits for that */
};

enum { RXSM_MAX_ACTIONS = 2 };

struct rxsm_action {
	enum rxsm_act kind;
	uint16_t stream;
	uint64_t seq;
	int code;
	const uint8_t *view; /* borrowed from the frame's payload */
	char text[WIRE_MAX_ERROR_TEXT + 1];
};

struct rxsm_out {
	unsigned n;
	struct rxsm_action act[RXSM_MAX_ACTIONS];
	/* DATA: the reorder buffer took the chunk; otherwise the caller still owns (and frees) it */
	bool chunk_kept;
};

/* rxsm_step's return when the server must create the named stream and step again. */
#define RXSM_NEED_STREAM 1

/* Sets up the session-wide state. */
void rxsm_init(struct rxsm *m, bool server, uint32_t window, uint16_t max_streams);

/* Sets up a new stream's state for a session with <window>. */
void rxsm_stream_init(struct rxsm_stream *st, uint32_t window);

/*
 * One frame from the peer. <h> is a header that passed wire_hdr_parse;
 * <p> its payload (h->len bytes; NULL for DATA); <chunk> for DATA the
 * decoded raw chunk of h->len bytes (opaque to the machine), else NULL;
 * <st> the state of stream h->stream, or NULL when the session has no such
 * stream. Fills <out> (actions in order, and whether the chunk was kept).
 *
 * Returns 0; RXSM_NEED_STREAM when the server must create stream h->stream
 * (DATA, END and ACK may overtake OPEN, §5.1) and step again with it,
 * nothing else changed; or -EBADMSG for a violation, with one
 * RXSM_A_PROTOCOL action: the connection must stop reading (§7).
 * Any thread, serialised by the caller.
 */
MR_MUST_CHECK int rxsm_step(struct rxsm *m, struct rxsm_stream *st, const struct rxsm_facts *f,
			    const struct wire_hdr *h, const uint8_t *p, void *chunk, struct rxsm_out *out);

/*
 * Inbound pump bookkeeping, serialised with rxsm_step:
 * rxsm_delivered counts a chunk of <len> raw bytes written to the local side
 * and says whether an ACK should go now (a quarter of the window in bytes or
 * chunks since the last one, or nothing more held, §5.3); rxsm_ack_taken
 * records that an ACK with the current counts was queued; rxsm_in_ended says
 * every chunk up to the END's total was delivered.
 */
bool rxsm_delivered(struct rxsm_stream *st, uint32_t len, uint32_t window);
void rxsm_ack_taken(struct rxsm_stream *st);
bool rxsm_in_ended(const struct rxsm_stream *st);

/* Outbound pump bookkeeping: a chunk of <len> raw bytes goes out (after credit_can_send said yes). */
void rxsm_sent(struct rxsm_stream *st, uint32_t len);

#endif
