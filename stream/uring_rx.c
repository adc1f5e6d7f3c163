/* SPDX-License-Identifier: MIT */
/* The io_uring engine's receive side (see uring.h, uring.c). */
#include "uring.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>
#include "uring_int.h"

/* ---- RX ---- */

struct mr_uring_rx {
	struct io_uring ring;
	bool ring_ok, enabled;
	int fd;
	unsigned nbufs;
	int mask;
	size_t bufsize, stride, bufs_len, br_len;
	uint8_t *bufs;
	struct io_uring_buf_ring *br;
	uint8_t *held_map; /* 1 while the caller holds that buffer */
	unsigned held;
	bool armed, eof, multishot, multishot_seen;
	int err; /* sticky socket error */

	_Atomic uint64_t completions, bytes, arms, enobufs, timeouts;
	_Atomic uint64_t held_pub; /* copies of held and multishot for mr_uring_rx_stats */
	atomic_bool multishot_pub;
};

int mr_uring_rx_new(struct mr_uring_rx **out, int fd, unsigned nbufs, size_t bufsize, char *why, size_t whylen)
{
	struct mr_uring_rx *rx = NULL;
	struct io_uring_buf_reg reg;
	int type = 0;
	socklen_t l = sizeof(type);
	int r;

	*out = NULL;
	if ((r = mr_uring_probe(why, whylen)) < 0)
		return r;
	if (nbufs == 0 || nbufs > MR_URING_MAX_BUFS || (nbufs & (nbufs - 1)) || bufsize == 0 ||
	    bufsize > MR_URING_MAX_BUFSIZE) {
		ur_msg(why, whylen,
		       "io_uring receive ring of %u buffers of %zu bytes is out of range (a power of two up to %d, of "
		       "1..%d bytes)",
		       nbufs, bufsize, MR_URING_MAX_BUFS, MR_URING_MAX_BUFSIZE);
		return -EINVAL;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0 || type != SOCK_STREAM) {
		ur_msg(why, whylen, "io_uring receive: fd %d is not a stream socket", fd);
		return -ENOTSOCK;
	}
	rx = calloc(1, sizeof(*rx));
	if (!rx)
		goto nomem;
	rx->fd = fd;
	rx->nbufs = nbufs;
	rx->mask = io_uring_buf_ring_mask(nbufs);
	rx->bufsize = bufsize;
	rx->stride = ur_round_up(bufsize, 64);
	rx->bufs_len = ur_round_up(rx->stride * nbufs, UR_PAGE);
	rx->br_len = ur_round_up(nbufs * sizeof(struct io_uring_buf), UR_PAGE);
	rx->held_map = calloc(nbufs, 1);
	if (!rx->held_map)
		goto nomem;
	rx->bufs = mmap(NULL, rx->bufs_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rx->bufs == MAP_FAILED) {
		rx->bufs = NULL;
		goto nomem;
	}
	rx->br = mmap(NULL, rx->br_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rx->br == MAP_FAILED) {
		rx->br = NULL;
		goto nomem;
	}
	r = ur_ring_init(&rx->ring, 2 * nbufs + 16);
	if (r < 0) {
		ur_msg(why, whylen, "cannot set up an io_uring for receiving: %s", ur_setup_hint(r));
		r = -ENOSYS;
		goto out;
	}
	rx->ring_ok = true;
	io_uring_buf_ring_init(rx->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)rx->br;
	reg.ring_entries = nbufs;
	reg.bgid = 0;
	r = io_uring_register_buf_ring(&rx->ring, &reg, 0);
	if (r < 0) {
		ur_msg(why, whylen, "cannot register an io_uring provided buffer ring: %s", ur_setup_hint(r));
		r = -EOPNOTSUPP;
		goto out;
	}
	for (unsigned i = 0; i < nbufs; i++)
		io_uring_buf_ring_add(rx->br, rx->bufs + (size_t)i * rx->stride, (unsigned)bufsize, (unsigned short)i,
				      rx->mask, (int)i);
	io_uring_buf_ring_advance(rx->br, (int)nbufs);
	rx->multishot = true; /* until the kernel says otherwise */
	atomic_store_explicit(&rx->multishot_pub, true, memory_order_relaxed);
	*out = rx;
	rx = NULL;
	r = 0;
	goto out;
nomem:
	ur_msg(why, whylen, "io_uring receive ring: out of memory (%u buffers of %zu bytes)", nbufs, bufsize);
	r = -ENOMEM;
out:
	mr_uring_rx_free(rx);
	return r;
}

static int rx_arm(struct mr_uring_rx *rx)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&rx->ring);
	int r;

	if (!sqe)
		return -EBUSY;
	if (rx->multishot)
		io_uring_prep_recv_multishot(sqe, rx->fd, NULL, 0, 0);
	else
		io_uring_prep_recv(sqe, rx->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, ur_ud(0, UR_K_RECV));
	r = io_uring_submit(&rx->ring);
	if (r < 0)
		return r;
	rx->armed = true;
	ur_add(&rx->arms, 1);
	return 0;
}

static void rx_give_back(struct mr_uring_rx *rx, unsigned bid)
{
	io_uring_buf_ring_add(rx->br, rx->bufs + (size_t)bid * rx->stride, (unsigned)rx->bufsize, (unsigned short)bid,
			      rx->mask, 0);
	io_uring_buf_ring_advance(rx->br, 1);
}

ssize_t mr_uring_rx_recv(struct mr_uring_rx *rx, const uint8_t **data, unsigned *bid, int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? -1 : ur_now_ms() + timeout_ms;
	struct io_uring_cqe *cqe;
	int r;

	if (rx->eof)
		return 0;
	if (rx->err)
		return rx->err;
	if ((r = ur_enable(&rx->ring, &rx->enabled)) < 0)
		return r;
	for (;;) {
		struct pollfd pf = {.fd = rx->fd, .events = POLLIN};
		unsigned flags;
		int res;

		if (io_uring_peek_cqe(&rx->ring, &cqe) != 0) {
			if (!rx->armed) {
				if (rx->held == rx->nbufs)
					return -ENOBUFS;
				if ((r = rx_arm(rx)) < 0)
					return r;
			} else if (rx->held == rx->nbufs) {
				return -ENOBUFS; /* the pending receive has no buffer to fill */
			}
			r = ur_wait(&rx->ring, &cqe, deadline);
			if (r == -ETIME) {
				ur_add(&rx->timeouts, 1);
				return -EAGAIN; /* still armed: the next call picks it up */
			}
			if (r < 0)
				return r;
		}
		res = cqe->res;
		flags = cqe->flags;
		io_uring_cqe_seen(&rx->ring, cqe);
		if (!(flags & IORING_CQE_F_MORE))
			rx->armed = false;
		if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
			unsigned b = flags >> IORING_CQE_BUFFER_SHIFT;

			if (b >= rx->nbufs || rx->held_map[b])
				return -EIO; /* the kernel broke the ring's contract */
			if (rx->multishot && (flags & IORING_CQE_F_MORE))
				rx->multishot_seen = true;
			rx->held_map[b] = 1;
			rx->held++;
			atomic_store_explicit(&rx->held_pub, rx->held, memory_order_relaxed);
			ur_add(&rx->completions, 1);
			ur_add(&rx->bytes, (uint64_t)res);
			*data = rx->bufs + (size_t)b * rx->stride;
			*bid = b;
			return res;
		}
		if ((flags & IORING_CQE_F_BUFFER) && (flags >> IORING_CQE_BUFFER_SHIFT) < rx->nbufs &&
		    !rx->held_map[flags >> IORING_CQE_BUFFER_SHIFT]) /* a buffer came with no data: back to the ring */
			rx_give_back(rx, flags >> IORING_CQE_BUFFER_SHIFT);
		if (res == 0) {
			rx->eof = true;
			return 0;
		}
		switch (res) {
		case -ENOBUFS: /* the ring ran empty: re-armed above once a buffer is back */
			ur_add(&rx->enobufs, 1);
			continue;
		case -EINTR:
			continue;
		case -EAGAIN: /* a non-blocking socket */
			(void)poll(&pf, 1, UR_SLICE_MS);
			continue;
		case -EINVAL: /* a kernel before 6.0 has no multishot receive */
			if (rx->multishot && !rx->multishot_seen) {
				rx->multishot = false;
				atomic_store_explicit(&rx->multishot_pub, false, memory_order_relaxed);
				continue;
			}
			break;
		default:
			break;
		}
		rx->err = res < 0 ? res : -EIO;
		return rx->err;
	}
}

void mr_uring_rx_put(struct mr_uring_rx *rx, unsigned bid)
{
	if (bid >= rx->nbufs || !rx->held_map[bid])
		return;
	rx->held_map[bid] = 0;
	rx->held--;
	atomic_store_explicit(&rx->held_pub, rx->held, memory_order_relaxed);
	rx_give_back(rx, bid);
}

/*
 * Cancels the armed receive and waits (bounded) for its last CQE. Returns
 * true when no receive can write into the buffers any more.
 */
static bool rx_disarm(struct mr_uring_rx *rx)
{
	int64_t deadline = ur_now_ms() + MR_URING_DRAIN_MS;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;

	if (!rx->armed)
		return true;
	sqe = io_uring_get_sqe(&rx->ring);
	if (!sqe)
		return false;
	io_uring_prep_cancel64(sqe, ur_ud(0, UR_K_RECV), 0);
	io_uring_sqe_set_data64(sqe, 0);
	if (io_uring_submit(&rx->ring) < 0)
		return false; /* another thread than the owner (SINGLE_ISSUER) */
	while (rx->armed) {
		if (ur_wait(&rx->ring, &cqe, deadline) < 0)
			return false;
		if (cqe->user_data == ur_ud(0, UR_K_RECV) && !(cqe->flags & IORING_CQE_F_MORE))
			rx->armed = false;
		io_uring_cqe_seen(&rx->ring, cqe);
	}
	return true;
}

void mr_uring_rx_free(struct mr_uring_rx *rx)
{
	bool quiet = true;

	if (!rx)
		return;
	if (rx->ring_ok) {
		quiet = rx_disarm(rx);
		io_uring_queue_exit(&rx->ring);
	}
	if (rx->br)
		munmap(rx->br, rx->br_len);
	/*
	 * A receive we could not cancel may still complete into the buffers:
	 * leave them mapped rather than let it write into memory reused later.
	 */
	if (rx->bufs && quiet)
		munmap(rx->bufs, rx->bufs_len);
	free(rx->held_map);
	free(rx);
}

void mr_uring_rx_stats(const struct mr_uring_rx *rx, struct mr_uring_rx_stats *st)
{
	st->completions = ur_get(&rx->completions);
	st->bytes = ur_get(&rx->bytes);
	st->arms = ur_get(&rx->arms);
	st->enobufs = ur_get(&rx->enobufs);
	st->timeouts = ur_get(&rx->timeouts);
	st->held = (uint32_t)ur_get(&rx->held_pub);
	st->multishot = atomic_load_explicit((atomic_bool *)(uintptr_t)&rx->multishot_pub, memory_order_relaxed);
}
