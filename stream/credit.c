/* SPDX-License-Identifier: MIT */
/*
 * Credit accounting for one stream direction (PROTOCOL.md §5.3).
 *
 * The ACK is both the acknowledgement and the credit, so the sender's
 * in-flight amount is simply sent minus acked. Every chunk carries at least
 * one raw byte (§3.2), which lets an ACK be checked for consistency: chunks
 * and bytes move together, and bytes never move less than chunks.
 */
#include <errno.h>
#include <string.h>

#include "credit.h"

void credit_init(struct credit *c, uint32_t window_bytes)
{
	memset(c, 0, sizeof(*c));
	c->window_bytes = window_bytes;
}

/* Caller serialises. */
bool credit_can_send(const struct credit *c, uint32_t len)
{
	uint64_t chunks = c->sent_chunks - c->acked_chunks;
	uint64_t bytes = c->sent_bytes - c->acked_bytes;

	if (chunks >= WIRE_WINDOW_CHUNKS)
		return false;
	/* A chunk bigger than the whole window would never fit: let it go alone (§5.3). */
	if (chunks == 0)
		return true;
	return bytes <= c->window_bytes && len <= c->window_bytes - bytes;
}

/* Caller serialises; call once per chunk actually queued. */
void credit_on_send(struct credit *c, uint32_t len)
{
	c->sent_chunks++;
	c->sent_bytes += len;
}

/* Caller serialises. <chunks> and <bytes> come from the peer: check them before use (§5.3, §7). */
int credit_on_ack(struct credit *c, uint64_t chunks, uint64_t bytes)
{
	uint64_t dc, db;

	if (chunks < c->acked_chunks || bytes < c->acked_bytes)
		return -EBADMSG;
	if (chunks > c->sent_chunks || bytes > c->sent_bytes)
		return -EBADMSG;
	dc = chunks - c->acked_chunks;
	db = bytes - c->acked_bytes;
	/* Every chunk stands for at least one byte, so bytes move with chunks and at least as far. */
	if (db < dc || (dc == 0 && db != 0))
		return -EBADMSG;
	/* All chunks acknowledged means all bytes, exactly. */
	if (chunks == c->sent_chunks && bytes != c->sent_bytes)
		return -EBADMSG;
	c->acked_chunks = chunks;
	c->acked_bytes = bytes;
	return 0;
}

/* Stateless; the caller passes what it holds for this stream direction (§5.3). */
int credit_rx_check(uint64_t seq, uint64_t delivered, uint64_t held, uint32_t len, uint32_t window_bytes)
{
	if (seq >= delivered && seq - delivered >= WIRE_WINDOW_CHUNKS)
		return -EBADMSG;
	if (held == 0)
		return 0;
	if (held > window_bytes || len > window_bytes - held)
		return -EBADMSG;
	return 0;
}
