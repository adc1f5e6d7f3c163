/* SPDX-License-Identifier: MIT */
/*
 * Reorder buffer for one stream direction (PROTOCOL.md §5.2). Chunks of a
 * stream arrive over several connections in any order; this puts them back
 * in sequence. Pure: no locking, no syscalls; the caller serialises access.
 * Capacity is WIRE_WINDOW_CHUNKS slots, so memory is bounded by the sender's
 * window whatever the chunk sizes.
 */
#ifndef MR_STREAM_REORDER_H
#define MR_STREAM_REORDER_H

#include <stdint.h>

#include "wire.h"

struct reorder_item {
	void *chunk; /* opaque, owned by the buffer while stored */
	uint32_t len; /* raw bytes the chunk stands for */
};

struct reorder {
	uint64_t next_seq;      /* sequence number reorder_pop returns next */
	uint32_t count;         /* chunks stored */
	uint64_t stored_bytes;  /* sum of len over stored chunks */
	struct reorder_item slot[WIRE_WINDOW_CHUNKS];
};

void reorder_init(struct reorder *r);

/*
 * Stores <chunk> (raw length <len>) as sequence <seq>.
 * Returns 0 when stored (the buffer owns <chunk>), 1 when <seq> was already
 * delivered or is already stored (a duplicate after a re-send: the caller
 * keeps and frees <chunk>), -ERANGE when <seq> >= next_seq +
 * WIRE_WINDOW_CHUNKS (the peer broke its window; caller keeps <chunk>).
 */
MR_MUST_CHECK int reorder_put(struct reorder *r, uint64_t seq, void *chunk, uint32_t len);

/* Returns the chunk for next_seq and advances, or NULL if it has not arrived.
 * The caller owns the returned chunk; *len gets its raw length. */
void *reorder_pop(struct reorder *r, uint32_t *len);

/* Calls <free_fn> on every stored chunk and empties the buffer. */
void reorder_clear(struct reorder *r, void (*free_fn)(void *chunk));

#endif
