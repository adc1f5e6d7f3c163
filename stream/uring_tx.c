/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine's send side (see uring.h, uring.c).
 *
 * TX buffer life cycle: FREE -> HELD (mr_uring_tx_get) -> SENDING
 * (mr_uring_tx_send) -> INFLIGHT while notifications are pending -> FREE.
 * A SEND_ZC result CQE with IORING_CQE_F_MORE promises one notification
 * CQE for that request; the slot counts those promises and is free only
 * when every one has been kept.
 */
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

/* ---- TX ---- */

enum ur_slot_state { SLOT_FREE = 0, SLOT_HELD = 1, SLOT_SENDING = 2, SLOT_INFLIGHT = 3 };

struct ur_slot {
	int refs; /* notifications promised (F_MORE) and not yet received */
	uint8_t state;
};

struct mr_uring_tx {
	struct io_uring ring;
	bool ring_ok, enabled;
	int fd;
	unsigned nbufs;
	size_t bufsize, stride, pool_len;
	uint8_t *pool;
	struct ur_slot *slots;
	unsigned *freelist, nfree, held;
	bool zc;	   /* the socket takes SEND_ZC (TCP); else copying sends */
	unsigned zc_flags; /* IORING_SEND_ZC_REPORT_USAGE while the kernel takes it */
	size_t zc_min;
	int msg_flags;
	bool zc_auto;
	unsigned probe_n, probe_copied; /* auto: notifications looked at, of which the kernel copied */
	/* the one request in flight */
	bool cur_done;
	int cur_res;
	int broken;	/* a request was lost track of, or timed out: the engine refuses further work */
	int timeout_ms; /* a send that moves no byte for this long fails (0: never) */

	_Atomic uint64_t sends, bytes, zc_sends, notifs, notifs_copied, copied_sends, short_sends, waits;
	_Atomic uint64_t inflight;
	atomic_bool zc_given_up;
};

static bool ur_sock_zc(int fd)
{
	int dom = 0, type = 0, proto = 0;
	socklen_t l = sizeof(int);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0)
		return false;
	l = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0)
		return false;
	l = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) < 0)
		return false;
	return (dom == AF_INET || dom == AF_INET6) && type == SOCK_STREAM && proto == IPPROTO_TCP;
}

int mr_uring_tx_new(struct mr_uring_tx **out, int fd, unsigned nbufs, size_t bufsize, char *why, size_t whylen)
{
	struct mr_uring_tx *tx = NULL;
	struct iovec *iov = NULL;
	int type = 0;
	socklen_t l = sizeof(type);
	int r;

	*out = NULL;
	if ((r = mr_uring_probe(why, whylen)) < 0)
		return r;
	if (nbufs == 0 || nbufs > MR_URING_MAX_BUFS || bufsize == 0 || bufsize > MR_URING_MAX_BUFSIZE) {
		ur_msg(why, whylen, "io_uring send pool of %u buffers of %zu bytes is out of range (1..%d of 1..%d)",
		       nbufs, bufsize, MR_URING_MAX_BUFS, MR_URING_MAX_BUFSIZE);
		return -EINVAL;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0 || type != SOCK_STREAM) {
		ur_msg(why, whylen, "io_uring send: fd %d is not a stream socket", fd);
		return -ENOTSOCK;
	}
	tx = calloc(1, sizeof(*tx));
	if (!tx)
		goto nomem;
	tx->fd = fd;
	tx->nbufs = nbufs;
	tx->bufsize = bufsize;
	tx->stride = ur_round_up(bufsize, UR_PAGE);
	tx->pool_len = tx->stride * nbufs;
	tx->slots = calloc(nbufs, sizeof(*tx->slots));
	tx->freelist = calloc(nbufs, sizeof(*tx->freelist));
	iov = calloc(nbufs, sizeof(*iov));
	if (!tx->slots || !tx->freelist || !iov)
		goto nomem;
	tx->pool = mmap(NULL, tx->pool_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (tx->pool == MAP_FAILED) {
		tx->pool = NULL;
		goto nomem;
	}
	/* a child of fork() must not share pages the kernel may be sending */
	(void)madvise(tx->pool, tx->pool_len, MADV_DONTFORK);
	for (unsigned i = 0; i < nbufs; i++) {
		iov[i].iov_base = tx->pool + (size_t)i * tx->stride;
		iov[i].iov_len = bufsize;
		tx->freelist[i] = nbufs - 1 - i; /* hand out buffer 0 first */
	}
	tx->nfree = nbufs;
	/* one result and up to a few notifications per buffer may wait in the CQ */
	r = ur_ring_init(&tx->ring, 4 * nbufs + 16);
	if (r < 0) {
		ur_msg(why, whylen, "cannot set up an io_uring for sending: %s", ur_setup_hint(r));
		r = -ENOSYS;
		goto out;
	}
	tx->ring_ok = true;
	r = io_uring_register_buffers(&tx->ring, iov, nbufs);
	if (r < 0) {
		ur_msg(why, whylen, "cannot register %zu KiB of send buffers with io_uring: %s", tx->pool_len >> 10,
		       ur_setup_hint(r));
		r = -EOPNOTSUPP; /* RLIMIT_MEMLOCK, most likely */
		goto out;
	}
	tx->zc = ur_sock_zc(fd);
	tx->zc_flags = IORING_SEND_ZC_REPORT_USAGE;
	tx->msg_flags = MSG_NOSIGNAL | MSG_WAITALL;
	tx->zc_auto = true;
	tx->zc_min = MR_URING_ZC_MIN;
	*out = tx;
	tx = NULL;
	r = 0;
	goto out;
nomem:
	ur_msg(why, whylen, "io_uring send pool: out of memory (%u buffers of %zu bytes)", nbufs, bufsize);
	r = -ENOMEM;
out:
	free(iov);
	mr_uring_tx_free(tx);
	return r;
}

void mr_uring_tx_set_zc_min(struct mr_uring_tx *tx, size_t bytes)
{
	tx->zc_min = bytes;
}

void mr_uring_tx_set_zc_auto(struct mr_uring_tx *tx, bool on)
{
	tx->zc_auto = on;
}

void mr_uring_tx_set_timeout(struct mr_uring_tx *tx, int ms)
{
	tx->timeout_ms = ms > 0 ? ms : 0;
}

void mr_uring_tx_set_waitall(struct mr_uring_tx *tx, bool on)
{
	tx->msg_flags = MSG_NOSIGNAL | (on ? MSG_WAITALL : 0);
}

static void tx_slot_release(struct mr_uring_tx *tx, unsigned idx)
{
	tx->slots[idx].state = SLOT_FREE;
	tx->freelist[tx->nfree++] = idx;
}

/* Takes one CQE of the TX ring into account. */
static void tx_cqe(struct mr_uring_tx *tx, const struct io_uring_cqe *cqe)
{
	unsigned idx = (unsigned)(cqe->user_data >> 8);
	struct ur_slot *s;

	if (idx >= tx->nbufs || (cqe->user_data & 0xff) == UR_K_CANCEL)
		return; /* the answer to a cancel: its request's own CQE is what counts */
	s = &tx->slots[idx];
	if (cqe->flags & IORING_CQE_F_NOTIF) {
		ur_add(&tx->notifs, 1);
		if ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED)
			ur_add(&tx->notifs_copied, 1);
		if (tx->zc_auto && tx->zc && tx->zc_flags && tx->probe_n < MR_URING_ZC_PROBE) {
			tx->probe_n++;
			if ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED)
				tx->probe_copied++;
			if (tx->probe_n == MR_URING_ZC_PROBE && tx->probe_copied == tx->probe_n) {
				tx->zc = false; /* pinning and notifications bought nothing */
				atomic_store_explicit(&tx->zc_given_up, true, memory_order_relaxed);
			}
		}
		if (--s->refs == 0 && s->state == SLOT_INFLIGHT) {
			tx_slot_release(tx, idx);
			atomic_fetch_sub_explicit(&tx->inflight, 1, memory_order_relaxed);
		}
		return;
	}
	if ((cqe->user_data & 0xff) == UR_K_ZC && (cqe->flags & IORING_CQE_F_MORE)) {
		s->refs++;
		ur_add(&tx->zc_sends, 1);
	}
	tx->cur_done = true;
	tx->cur_res = cqe->res;
}

/* Processes every CQE that is ready; returns how many. */
static unsigned tx_reap(struct mr_uring_tx *tx)
{
	struct io_uring_cqe *cqe;
	unsigned n = 0;

	while (io_uring_peek_cqe(&tx->ring, &cqe) == 0) {
		tx_cqe(tx, cqe);
		io_uring_cqe_seen(&tx->ring, cqe);
		n++;
	}
	return n;
}

/*
 * The socket's state when no notification comes: -EPIPE if it was shut
 * down for sending or failed (its error then), 0 if it is fine.
 */
static int ur_sock_dead(int fd)
{
	struct pollfd p = {.fd = fd, .events = 0};

	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLNVAL))) {
		int e = 0;
		socklen_t l = sizeof(e);

		if ((p.revents & POLLERR) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) == 0 && e)
			return -e;
		return -EPIPE;
	}
	return 0;
}

int mr_uring_tx_get(struct mr_uring_tx *tx, uint8_t **buf, size_t *cap)
{
	struct io_uring_cqe *cqe;
	int64_t since = ur_now_ms();
	bool waited = false;
	int r;

	if (tx->broken)
		return tx->broken;
	if ((r = ur_enable(&tx->ring, &tx->enabled)) < 0)
		return r;
	tx_reap(tx);
	while (tx->nfree == 0) {
		if (tx->held == tx->nbufs)
			return -EBUSY;
		if (!waited)
			ur_add(&tx->waits, 1);
		waited = true;
		r = ur_wait(&tx->ring, &cqe, ur_now_ms() + UR_SLICE_MS);
		if (r == -ETIME) {
			/* pages queued to a peer that no longer reads stay pinned until the socket dies */
			if ((r = ur_sock_dead(tx->fd)) < 0)
				return r;
			if (tx->timeout_ms > 0 && ur_now_ms() - since >= tx->timeout_ms)
				return -ETIMEDOUT;
			continue;
		}
		if (r < 0)
			return r;
		tx_reap(tx);
	}
	{
		unsigned idx = tx->freelist[--tx->nfree];

		tx->slots[idx].state = SLOT_HELD;
		tx->held++;
		*buf = tx->pool + (size_t)idx * tx->stride;
		*cap = tx->bufsize;
	}
	return 0;
}

/* The index of the held slot <buf>..<buf+len> lies in, or -EINVAL. */
static int tx_slot_of(const struct mr_uring_tx *tx, const uint8_t *buf, size_t len)
{
	uintptr_t b = (uintptr_t)buf, base = (uintptr_t)tx->pool;
	size_t idx, off;

	if (!buf || b < base || b >= base + tx->pool_len)
		return -EINVAL;
	idx = (b - base) / tx->stride;
	off = (b - base) % tx->stride;
	if (off > tx->bufsize || len > tx->bufsize - off || tx->slots[idx].state != SLOT_HELD)
		return -EINVAL;
	return (int)idx;
}

void mr_uring_tx_put(struct mr_uring_tx *tx, uint8_t *buf)
{
	int idx = tx_slot_of(tx, buf, 0);

	if (idx < 0)
		return;
	tx->held--;
	tx_slot_release(tx, (unsigned)idx);
}

/* Submits one send of <len> bytes at <p> from slot <idx> and waits for its result. */
static int tx_one(struct mr_uring_tx *tx, unsigned idx, const uint8_t *p, size_t len, bool zc)
{
	int64_t deadline = tx->timeout_ms > 0 ? ur_now_ms() + tx->timeout_ms : -1;
	uint64_t ud = ur_ud(idx, zc ? UR_K_ZC : UR_K_COPY);
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	bool cancelled = false;
	int r;

	tx_reap(tx); /* room in the CQ, and the SQ is empty */
	sqe = io_uring_get_sqe(&tx->ring);
	if (!sqe)
		return -EBUSY;
	if (len > INT_MAX)
		len = INT_MAX; /* a CQE's res is an int; the rest goes in the next request */
	if (zc)
		io_uring_prep_send_zc_fixed(sqe, tx->fd, p, len, tx->msg_flags, tx->zc_flags, idx);
	else
		io_uring_prep_send(sqe, tx->fd, p, len, tx->msg_flags);
	io_uring_sqe_set_data64(sqe, ud);
	tx->cur_done = false;
	r = io_uring_submit(&tx->ring);
	if (r < 0) {
		/* the SQE may still go later (e.g. -EEXIST: not the owner thread): keep off the slot */
		tx->broken = r;
		return r;
	}
	/* a shutdown() by another thread wakes the request: it ends with -EPIPE */
	while (!tx->cur_done) {
		r = ur_wait(&tx->ring, &cqe, deadline);
		if (r == -ETIME && !cancelled) {
			/* no byte moved for timeout_ms: cancel, and wait (bounded) for the request's end */
			sqe = io_uring_get_sqe(&tx->ring);
			if (sqe) {
				io_uring_prep_cancel64(sqe, ud, 0);
				io_uring_sqe_set_data64(sqe, ur_ud(0, UR_K_CANCEL));
				if (io_uring_submit(&tx->ring) >= 0) {
					cancelled = true;
					deadline = ur_now_ms() + MR_URING_DRAIN_MS;
					continue;
				}
			}
		}
		if (r < 0) {
			/* the kernel may still read the slot: it is never handed out again */
			tx->broken = r == -ETIME ? -ETIMEDOUT : r;
			return tx->broken;
		}
		tx_reap(tx);
	}
	if (cancelled && tx->cur_res != (int)len) {
		/* how many bytes a cancelled request sent is unknown: the stream cannot go on */
		tx->broken = -ETIMEDOUT;
		return -ETIMEDOUT;
	}
	return tx->cur_res;
}

int mr_uring_tx_send(struct mr_uring_tx *tx, uint8_t *buf, size_t len)
{
	int idx = tx_slot_of(tx, buf, len);
	unsigned stalls = 0;
	size_t off = 0;
	bool zc;
	int r = 0;

	if (idx < 0)
		return idx;
	if (tx->broken)
		return tx->broken;
	if ((r = ur_enable(&tx->ring, &tx->enabled)) < 0)
		return r;
	tx->held--;
	tx->slots[idx].state = SLOT_SENDING;
	zc = tx->zc && len >= tx->zc_min;
	while (off < len) {
		struct pollfd pf = {.fd = tx->fd, .events = POLLOUT};
		bool was_zc = zc;

		r = tx_one(tx, (unsigned)idx, buf + off, len - off, zc);
		if (!was_zc && r != -EBUSY)
			ur_add(&tx->copied_sends, 1);
		if (r > 0) {
			if ((size_t)r < len - off)
				ur_add(&tx->short_sends, 1);
			off += (size_t)r;
			stalls = 0;
			r = 0;
			continue;
		}
		if (++stalls > UR_MAX_STALLS) {
			r = r < 0 ? r : -EIO;
			break;
		}
		switch (r) {
		case 0:
		case -EINTR:
			continue;
		case -EAGAIN: /* a non-blocking socket: io_uring does not wait for it */
			(void)poll(&pf, 1, UR_SLICE_MS);
			continue;
		case -ENOBUFS: /* no memory for a zero-copy send now (optmem): copy this one */
			if (!zc)
				(void)poll(&pf, 1, UR_SLICE_MS);
			zc = false;
			continue;
		case -EOPNOTSUPP: /* this socket cannot send zero-copy at all */
			if (!zc)
				break;
			tx->zc = zc = false;
			continue;
		case -EINVAL: /* a kernel before 6.2 does not know REPORT_USAGE */
			if (!zc || !tx->zc_flags)
				break;
			tx->zc_flags = 0;
			continue;
		default:
			break;
		}
		break;
	}
	if (tx->broken && !tx->cur_done) {
		return tx->broken; /* the kernel may still read the slot: it stays SENDING for good */
	} else if (tx->slots[idx].refs > 0) {
		tx->slots[idx].state = SLOT_INFLIGHT;
		atomic_fetch_add_explicit(&tx->inflight, 1, memory_order_relaxed);
	} else {
		tx_slot_release(tx, (unsigned)idx);
	}
	if (r < 0)
		return r;
	ur_add(&tx->sends, 1);
	ur_add(&tx->bytes, len);
	return 0;
}

int mr_uring_tx_drain(struct mr_uring_tx *tx, int timeout_ms)
{
	int64_t deadline = ur_now_ms() + (timeout_ms < 0 ? MR_URING_DRAIN_MS : timeout_ms);
	struct io_uring_cqe *cqe;

	if (!tx->enabled)
		return 0; /* nothing was ever sent */
	tx_reap(tx);
	while (atomic_load_explicit(&tx->inflight, memory_order_relaxed) > 0) {
		int r = ur_wait(&tx->ring, &cqe, deadline);

		if (r == -ETIME)
			return -ETIMEDOUT;
		if (r < 0)
			return r;
		tx_reap(tx);
	}
	return 0;
}

void mr_uring_tx_free(struct mr_uring_tx *tx)
{
	if (!tx)
		return;
	if (tx->ring_ok) {
		/*
		 * On a timeout the kernel keeps the pages of what is still
		 * queued pinned until the socket dies; unmapping the pool only
		 * takes them out of our address space, so they are not reused.
		 */
		int ms = ur_sock_dead(tx->fd) < 0 ? UR_DEAD_DRAIN_MS : MR_URING_DRAIN_MS;

		if (mr_uring_tx_drain(tx, ms) < 0)
			tx->broken = -ETIMEDOUT;
		io_uring_queue_exit(&tx->ring);
	}
	if (tx->pool)
		munmap(tx->pool, tx->pool_len);
	free(tx->slots);
	free(tx->freelist);
	free(tx);
}

void mr_uring_tx_stats(const struct mr_uring_tx *tx, struct mr_uring_tx_stats *st)
{
	st->sends = ur_get(&tx->sends);
	st->bytes = ur_get(&tx->bytes);
	st->zc_sends = ur_get(&tx->zc_sends);
	st->notifs = ur_get(&tx->notifs);
	st->notifs_copied = ur_get(&tx->notifs_copied);
	st->copied_sends = ur_get(&tx->copied_sends);
	st->short_sends = ur_get(&tx->short_sends);
	st->waits = ur_get(&tx->waits);
	st->inflight = (uint32_t)ur_get(&tx->inflight);
	st->zc_given_up = atomic_load_explicit(&tx->zc_given_up, memory_order_relaxed);
}

unsigned mr_uring_tx_pending(const struct mr_uring_tx *tx, const uint8_t *buf)
{
	uintptr_t b = (uintptr_t)buf, base = (uintptr_t)tx->pool;
	int refs;

	if (!buf || b < base || b >= base + tx->pool_len)
		return 0;
	refs = tx->slots[(b - base) / tx->stride].refs;
	return refs > 0 ? (unsigned)refs : 0;
}
