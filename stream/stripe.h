/* SPDX-License-Identifier: MIT */
/*
 * The stripe scheduler and the ack/replay bookkeeping of a session
 * (PROTOCOL.md §2.3, §5.2, §5.3). Pure: no threads, locks, sockets or
 * syscalls; the caller serialises access (the session's lock).
 *
 * - Which connection ("link") takes the next chunk: the open link with the
 *   fewest bytes queued, round-robin on ties.
 * - Each stream's unacknowledged chunks, oldest first, each remembering the
 *   link it was last queued on; an ACK releases a prefix; losing a link
 *   names the chunks to queue again.
 * - What a lost link means for the session, and what control state a
 *   resync repeats for a stream.
 * - The bound on control frames queued per link (a peer that sends PINGs
 *   and never reads must not grow this side's memory).
 *
 * Links are indexed 0..STRIPE_LINKS-1 and described by bit masks the
 * caller computes from its connections: <open> (alive and taking new
 * frames) and <alive> (not dead; a draining link still delivers what it
 * has queued).
 */
#ifndef MR_STREAM_STRIPE_H
#define MR_STREAM_STRIPE_H

#include <stdbool.h>
#include <stdint.h>

#include "wire.h"

enum stripe_limits {
	STRIPE_LINKS = WIRE_MAX_CONNS, /* one bit per link in a uint64_t mask */
	/*
	 * 64 KiB of control frames (header + payload) queued on one link:
	 * far above what a correct peer causes (a resync of 64 streams
	 * queues about 7 KiB; an ERROR per stream 17 KiB), far below what
	 * a flood could pile up. Exceeding it drops the link.
	 */
	STRIPE_CTL_MAX_BYTES = 64 << 10,
};

/* One unacknowledged chunk's place in its stream's list; embedded in the caller's chunk. */
struct stripe_ent {
	struct stripe_ent *next;
	uint64_t seq; /* the chunk's sequence number in its stream direction */
	int link;     /* link it was last queued on; -1 when none */
};

/* A stream direction's unacknowledged chunks, in sequence order. */
struct stripe_list {
	struct stripe_ent *head, *tail;
	uint32_t count;
};

struct stripe {
	unsigned rr; /* round-robin cursor: where the next tie-break starts */
};

void stripe_init(struct stripe *sp);

/*
 * Picks the link for the next chunk among the bits of <open>, by <queued>
 * (bytes waiting per link). Returns the link, or -1 when none is open (the
 * chunk stays in its unacked list and goes when a link comes back).
 */
int stripe_pick(struct stripe *sp, uint64_t open, const uint64_t queued[STRIPE_LINKS]);

/* The first open link, where control frames go so that OPENs keep their order (§5.1); -1 if none. */
int stripe_first(uint64_t open);

/* Appends <e> (seq must grow along the list). */
void stripe_list_push(struct stripe_list *l, struct stripe_ent *e);

/*
 * An ACK for chunks below <acked> (§5.3): unlinks and returns the oldest
 * entry it covers, or NULL when none is left. Call until NULL; the caller
 * releases each entry.
 */
struct stripe_ent *stripe_list_acked(struct stripe_list *l, uint64_t acked);

/* Unlinks and returns the oldest entry, or NULL (teardown). */
struct stripe_ent *stripe_list_pop(struct stripe_list *l);

/*
 * After link <lost> was lost (-1: after a rejoin, nothing lost): must <e>
 * be queued again? Yes when it was queued nowhere, on <lost>, or on a link
 * not in <alive> (§2.3). The receiver drops duplicates (§5.2).
 */
bool stripe_must_resend(const struct stripe_ent *e, int lost, uint64_t alive);

/* What losing a link means for the session. */
enum stripe_loss {
	STRIPE_LOSS_QUIET = 0,	    /* nothing in flight (done, failed, or between streams): nothing to do */
	STRIPE_LOSS_RESEND = 1,	    /* other links live: queue again what the lost one carried, repeat control state */
	STRIPE_LOSS_FAIL = 2,	    /* the last link, no reconnection: the session fails TRUNCATED */
	STRIPE_LOSS_WAIT = 3,	    /* the last link: wait for a rejoin within the reconnect timeout */
	STRIPE_LOSS_WAIT_REKEY = 4, /* the last link closed cleanly to be replaced for fresh keys: wait for it */
};

struct stripe_loss_facts {
	int live_after;	  /* links alive once the lost one is gone */
	bool reconnect;	  /* the session waits for rejoins */
	bool failed;	  /* the session failed already */
	bool finished;	  /* the session is being closed */
	int open_streams; /* streams neither complete nor failed */
	bool clean;	  /* the link ended with a close_notify */
};
enum stripe_loss stripe_on_loss(const struct stripe_loss_facts *f);

/* What a resync repeats for one stream (§2.3); a set of STRIPE_RS_* bits. */
#define STRIPE_RS_OPEN 0x01u	 /* the OPEN (client, stream opened) */
#define STRIPE_RS_CHUNKS 0x02u	 /* unacknowledged chunks on lost links */
#define STRIPE_RS_END 0x04u	 /* the END, not verified yet */
#define STRIPE_RS_ACK 0x08u	 /* the current ACK */
#define STRIPE_RS_VERIFIED 0x10u /* the VERIFIED, inbound done */
#define STRIPE_RS_OPENED 0x20u	 /* the OPENED (server, target connected, the session asked for OPENED) */

struct stripe_resync_facts {
	bool client;
	bool failed; /* the stream failed: nothing more is sent for it (§5.6) */
	bool opened; /* client: OPEN sent; server: the target is connected */
	bool end_sent, verified, in_done;
	bool open_ack; /* the session acknowledges OPENs with OPENED (§5.1) */
};
unsigned stripe_resync_plan(const struct stripe_resync_facts *f);

/*
 * Control-frame bound for one link: <queued> bytes of control frames wait
 * there; may <len> more be queued? 0, or -ENOBUFS: the peer is not reading
 * what it asks for, and the link must be dropped.
 */
MR_MUST_CHECK int stripe_ctl_admit(uint64_t queued, uint32_t len);

#endif
