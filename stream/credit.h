/* SPDX-License-Identifier: MIT */
/*
 * Credit accounting for one stream direction (PROTOCOL.md §5.3). The
 * receiver's ACK is the credit: the sender may have at most <window_bytes>
 * raw bytes and WIRE_WINDOW_CHUNKS chunks sent and not yet acknowledged.
 * Pure; the caller serialises access.
 */
#ifndef MR_STREAM_CREDIT_H
#define MR_STREAM_CREDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "wire.h"

struct credit {
	uint32_t window_bytes;
	uint64_t sent_chunks, sent_bytes;   /* sender: totals sent */
	uint64_t acked_chunks, acked_bytes; /* sender: totals acknowledged */
};

void credit_init(struct credit *c, uint32_t window_bytes);

/* Sender: may a chunk of <len> raw bytes go now? A chunk larger than the
 * window may go only when nothing is in flight. */
bool credit_can_send(const struct credit *c, uint32_t len);
void credit_on_send(struct credit *c, uint32_t len);

/*
 * Sender: an ACK says <chunks> chunks and <bytes> raw bytes were delivered
 * (cumulative). Returns 0, or -EBADMSG when the ACK goes backwards, claims
 * more than was sent, or chunks and bytes disagree in direction.
 */
MR_MUST_CHECK int credit_on_ack(struct credit *c, uint64_t chunks, uint64_t bytes);

/*
 * Receiver check, stateless: a DATA frame with sequence <seq> while
 * <delivered> chunks were delivered breaks the window if seq >= delivered +
 * WIRE_WINDOW_CHUNKS. Byte windows are checked by the receiver from the
 * bytes it holds: <held> + <len> > <window_bytes> (with the same exception
 * for a lone oversized chunk) is a violation. Returns 0 or -EBADMSG.
 */
MR_MUST_CHECK int credit_rx_check(uint64_t seq, uint64_t delivered, uint64_t held, uint32_t len,
				  uint32_t window_bytes);

#endif
