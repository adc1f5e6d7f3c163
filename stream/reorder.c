/* SPDX-License-Identifier: MIT */
/*
 * Reorder buffer for one stream direction (PROTOCOL.md §5.2).
 *
 * A ring of WIRE_WINDOW_CHUNKS slots indexed by seq modulo its size. The
 * sender may have at most that many chunks unacknowledged (§5.3), so every
 * sequence number a well-behaved peer can send falls in [next_seq, next_seq +
 * WIRE_WINDOW_CHUNKS) and owns a slot of its own. A stored chunk is never
 * NULL, which is how an empty slot is told apart.
 */
#include <errno.h>
#include <string.h>

#include "reorder.h"

static unsigned slot_of(uint64_t seq)
{
	return (unsigned)(seq % WIRE_WINDOW_CHUNKS);
}

void reorder_init(struct reorder *r)
{
	memset(r, 0, sizeof(*r));
}

/*
 * Caller serialises. Also returns -EINVAL for a NULL <chunk>: NULL is what
 * reorder_pop() says for "not arrived", so it cannot be stored.
 */
int reorder_put(struct reorder *r, uint64_t seq, void *chunk, uint32_t len)
{
	struct reorder_item *it;

	if (!chunk)
		return -EINVAL;
	/* Delivered already: a re-send of a chunk whose ACK was lost with its connection (§5.2). */
	if (seq < r->next_seq)
		return 1;
	/* seq >= next_seq here, so the subtraction cannot wrap. */
	if (seq - r->next_seq >= WIRE_WINDOW_CHUNKS)
		return -ERANGE;
	it = &r->slot[slot_of(seq)];
	if (it->chunk)
		return 1;
	it->chunk = chunk;
	it->len = len;
	r->count++;
	r->stored_bytes += len;
	return 0;
}

/* Caller serialises. <len> may be NULL. */
void *reorder_pop(struct reorder *r, uint32_t *len)
{
	struct reorder_item *it = &r->slot[slot_of(r->next_seq)];
	void *chunk = it->chunk;

	if (!chunk)
		return NULL;
	if (len)
		*len = it->len;
	r->stored_bytes -= it->len;
	r->count--;
	it->chunk = NULL;
	it->len = 0;
	r->next_seq++;
	return chunk;
}

/*
 * Caller serialises. <free_fn> may be NULL when the caller frees the chunks
 * some other way. next_seq is kept, so a late duplicate is still recognised.
 */
void reorder_clear(struct reorder *r, void (*free_fn)(void *chunk))
{
	for (unsigned i = 0; i < WIRE_WINDOW_CHUNKS && r->count; i++) {
		struct reorder_item *it = &r->slot[i];

		if (!it->chunk)
			continue;
		if (free_fn)
			free_fn(it->chunk);
		it->chunk = NULL;
		it->len = 0;
		r->count--;
	}
	r->count = 0;
	r->stored_bytes = 0;
}
