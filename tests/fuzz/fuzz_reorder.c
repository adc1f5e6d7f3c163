/* SPDX-License-Identifier: MIT */
/* Target functions: reorder_init, reorder_put, reorder_pop, reorder_clear, credit_init, credit_can_send,
 * credit_on_send, credit_on_ack, credit_rx_check. */
/*
 * The input is a script (PROTOCOL.md §5.2, §5.3). Two bytes pick the byte
 * window; then each op byte is followed by its arguments:
 *   PUT   be16 signed seq offset from next_seq, be24 raw length
 *   POP   (none)          DRAIN (none)          CLEAR (none)
 *   SEND  be24 raw length (taken as 1 + value % WIRE_MAX_CHUNK)
 *   ACK   u8 chunks to acknowledge, u8 signed byte-count tamper
 * A model of the reorder buffer and of the sender's totals runs beside the
 * real ones; every result must match it. Pops must come out in sequence,
 * every chunk is freed exactly once, and nothing is left at the end.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/credit.h"
#include "stream/reorder.h"
#include "check.h"

enum { OP_PUT, OP_POP, OP_DRAIN, OP_CLEAR, OP_SEND, OP_ACK, OP_COUNT };
enum { MAGIC_LIVE = 0x6c697665, MAGIC_DEAD = 0x64656164 };

struct chunk {
	uint32_t magic;
	uint32_t len;
	uint64_t seq;
};

struct model {
	/* receiver */
	bool has[WIRE_WINDOW_CHUNKS];
	uint64_t seq[WIRE_WINDOW_CHUNKS];
	uint32_t len[WIRE_WINDOW_CHUNKS];
	uint64_t next, count, bytes;
	long live; /* chunks allocated and not yet freed */
	/* sender */
	uint32_t window;
	uint64_t sent_c, sent_b, acked_c, acked_b;
	uint32_t fifo[WIRE_WINDOW_CHUNKS]; /* lengths of unacknowledged chunks, oldest first */
	unsigned head, n;
	bool exact; /* no tampered ACK was accepted, so acked_b is a true prefix sum */
};

static struct model *cur; /* for chunk_free, which reorder_clear calls without context */

static void chunk_free(void *p)
{
	struct chunk *c = p;

	CHECK(c && c->magic == MAGIC_LIVE);
	c->magic = MAGIC_DEAD;
	cur->live--;
	free(c);
}

static uint32_t be24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static void check_counts(const struct reorder *r, const struct model *m)
{
	CHECK(r->next_seq == m->next);
	CHECK(r->count == m->count);
	CHECK(r->stored_bytes == m->bytes);
	CHECK(m->live == (long)m->count);
}

static void op_put(struct reorder *r, struct model *m, int16_t off, uint32_t len)
{
	uint64_t seq;
	struct chunk *c;
	unsigned s;
	int want, got, rx;

	if (off < 0 && (uint64_t)(-(int32_t)off) > m->next)
		seq = 0;
	else
		seq = off < 0 ? m->next - (uint64_t)(-(int32_t)off) : m->next + (uint64_t)off;
	s = (unsigned)(seq % WIRE_WINDOW_CHUNKS);
	if (seq < m->next)
		want = 1;
	else if (seq - m->next >= WIRE_WINDOW_CHUNKS)
		want = -ERANGE;
	else if (m->has[s])
		want = 1;
	else
		want = 0;

	/* The receiver's window check agrees with where the chunk may go. */
	rx = credit_rx_check(seq, m->next, m->bytes, len, m->window);
	CHECK(rx == 0 || rx == -EBADMSG);
	if (want == -ERANGE)
		CHECK(rx == -EBADMSG);
	if (m->bytes == 0 && want != -ERANGE)
		CHECK(rx == 0);
	if (m->bytes > 0 && m->bytes + len > m->window)
		CHECK(rx == -EBADMSG);

	c = malloc(sizeof(*c));
	CHECK(c);
	c->magic = MAGIC_LIVE;
	c->len = len;
	c->seq = seq;
	m->live++;
	got = reorder_put(r, seq, c, len);
	CHECK(got == want);
	if (got != 0) {
		chunk_free(c); /* not stored: still ours */
		return;
	}
	m->has[s] = true;
	m->seq[s] = seq;
	m->len[s] = len;
	m->count++;
	m->bytes += len;
}

/* Returns true if a chunk came out. */
static bool op_pop(struct reorder *r, struct model *m)
{
	unsigned s = (unsigned)(m->next % WIRE_WINDOW_CHUNKS);
	uint32_t len = 0xdeadbeef;
	struct chunk *c = reorder_pop(r, &len);

	if (!m->has[s]) {
		CHECK(!c);
		return false;
	}
	CHECK(c && c->magic == MAGIC_LIVE);
	CHECK(c->seq == m->next && m->seq[s] == m->next);
	CHECK(len == c->len && len == m->len[s]);
	m->has[s] = false;
	m->count--;
	m->bytes -= len;
	m->next++;
	chunk_free(c);
	return true;
}

static void op_clear(struct reorder *r, struct model *m)
{
	reorder_clear(r, chunk_free);
	memset(m->has, 0, sizeof(m->has));
	m->count = 0;
	m->bytes = 0;
}

static void op_send(struct credit *cr, struct model *m, uint32_t len)
{
	uint64_t fc = m->sent_c - m->acked_c, fb = m->sent_b - m->acked_b;
	bool want = fc < WIRE_WINDOW_CHUNKS && (fc == 0 || fb + len <= m->window);

	CHECK(credit_can_send(cr, len) == want);
	if (!want)
		return;
	credit_on_send(cr, len);
	m->sent_c++;
	m->sent_b += len;
	CHECK(m->n < WIRE_WINDOW_CHUNKS);
	m->fifo[(m->head + m->n) % WIRE_WINDOW_CHUNKS] = len;
	m->n++;
}

static void op_ack(struct credit *cr, struct model *m, unsigned k, int8_t tamper)
{
	uint64_t chunks, bytes = m->acked_b, dc, db;
	bool ok;
	int got;

	if (k > m->n + 1)
		k = m->n + 1; /* one more than was sent is a lie worth trying */
	for (unsigned i = 0; i < k && i < m->n; i++)
		bytes += m->fifo[(m->head + i) % WIRE_WINDOW_CHUNKS];
	chunks = m->acked_c + k;
	if (tamper < 0 && (uint64_t)(-(int)tamper) > bytes)
		bytes = 0;
	else
		bytes = tamper < 0 ? bytes - (uint64_t)(-(int)tamper) : bytes + (uint64_t)tamper;

	/* What a consistent cumulative ACK looks like (§5.3). */
	ok = chunks >= m->acked_c && chunks <= m->sent_c && bytes >= m->acked_b && bytes <= m->sent_b;
	if (ok) {
		dc = chunks - m->acked_c;
		db = bytes - m->acked_b;
		ok = db >= dc && (dc != 0 || db == 0) && (chunks != m->sent_c || bytes == m->sent_b);
	}
	/* An exact ACK of what was sent is always good. */
	if (m->exact && tamper == 0 && k <= m->n)
		CHECK(ok);
	got = credit_on_ack(cr, chunks, bytes);
	CHECK(got == (ok ? 0 : -EBADMSG));
	if (ok) {
		if (tamper)
			m->exact = false; /* undetectable without per-chunk lengths; the digest catches it (§5.4) */
		m->acked_c = chunks;
		m->acked_b = bytes;
		m->head = (m->head + k) % WIRE_WINDOW_CHUNKS;
		m->n -= k;
	}
	/* A refused ACK changes nothing. */
	CHECK(cr->acked_chunks == m->acked_c && cr->acked_bytes == m->acked_b);
	CHECK(cr->sent_chunks == m->sent_c && cr->sent_bytes == m->sent_b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	struct reorder *r = malloc(sizeof(*r));
	struct model *m = calloc(1, sizeof(*m));
	struct credit cr;

	CHECK(r && m);
	cur = m;
	reorder_init(r);
	/* Windows from 1 byte to about 1 MiB, so small lengths reach the edges. */
	m->exact = true;
	m->window = 1;
	if (end - p >= 2) {
		m->window = 1 + ((uint32_t)wire_load_be16(p) << 4);
		p += 2;
	}
	credit_init(&cr, m->window);
	while (p < end) {
		uint8_t op = *p++ % OP_COUNT;

		switch (op) {
		case OP_PUT:
			if (end - p < 5)
				goto done;
			op_put(r, m, (int16_t)wire_load_be16(p), be24(p + 2));
			p += 5;
			break;
		case OP_POP:
			op_pop(r, m);
			break;
		case OP_DRAIN:
			while (op_pop(r, m))
				;
			break;
		case OP_CLEAR:
			op_clear(r, m);
			break;
		case OP_SEND:
			if (end - p < 3)
				goto done;
			/* A DATA chunk is 1..WIRE_MAX_CHUNK raw bytes (§5.2). */
			op_send(&cr, m, 1 + be24(p) % WIRE_MAX_CHUNK);
			p += 3;
			break;
		case OP_ACK:
			if (end - p < 2)
				goto done;
			op_ack(&cr, m, p[0], (int8_t)p[1]);
			p += 2;
			break;
		}
		check_counts(r, m);
	}
done:
	reorder_clear(r, chunk_free);
	CHECK(r->count == 0 && r->stored_bytes == 0);
	CHECK(m->live == 0);
	free(r);
	free(m);
	cur = NULL;
	return 0;
}
