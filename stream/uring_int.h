/* SPDX-License-Identifier: MIT */
/* The io_uring engine's own (uring.c, uring_tx.c, uring_rx.c); not for other files. */
#ifndef MIGRELAY_STREAM_URING_INT_H
#define MIGRELAY_STREAM_URING_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <liburing.h>

/* Newer than liburing 2.3's header; the kernel has them since 6.2. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

enum {
	UR_SQ_ENTRIES = 8, /* at most one request in flight per object, plus a cancel */
	UR_SLICE_MS = 100, /* waits for notifications look at the socket this often */
	UR_MAX_STALLS = 1000,
	UR_DEAD_DRAIN_MS = 200,
	/* free: a shut down or closed socket may never release what it queued */ /* zero-byte results in a row before a
										     send gives up */
	UR_PAGE = 4096,
};

/* user_data: slot index << 8 | kind; notifications carry their request's user_data. */
enum ur_kind { UR_K_ZC = 1, UR_K_COPY = 2, UR_K_RECV = 3, UR_K_CANCEL = 4 };

static inline uint64_t ur_ud(unsigned idx, enum ur_kind k)
{
	return (uint64_t)idx << 8 | (uint64_t)k;
}

/* Counters have one writer (the owner thread) and any number of readers. */
static inline void ur_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline uint64_t ur_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)c, memory_order_relaxed);
}

void ur_msg(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int64_t ur_now_ms(void);
size_t ur_round_up(size_t n, size_t a);
/* Why io_uring_queue_init failed with <r>, for messages. */
const char *ur_setup_hint(int r);
int ur_ring_init(struct io_uring *ring, unsigned cq);
int ur_wait(struct io_uring *ring, struct io_uring_cqe **cqe, int64_t deadline);
/* Enables the ring (once) in the calling thread, which then owns it. 0 or -errno. */
int ur_enable(struct io_uring *ring, bool *enabled);

#endif
