/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine (see uring.h). Each object owns one small ring; the
 * ring is created disabled (IORING_SETUP_R_DISABLED) by *_new so that every
 * failure is reported there, and enabled by the first call in the thread
 * that then owns it, which with IORING_SETUP_SINGLE_ISSUER binds the ring to
 * that thread.
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

static void ur_msg(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void ur_msg(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

static int64_t ur_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t ur_round_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

/* ---- process-wide probe ---- */

static pthread_once_t ur_once = PTHREAD_ONCE_INIT;
static int ur_probe_r;
static char ur_probe_why[200];
static bool ur_want = true;

static const char *ur_setup_hint(int r)
{
	switch (r) {
	case -ENOSYS:
		return "the kernel has no io_uring";
	case -EPERM:
		return "io_uring is refused (sysctl kernel.io_uring_disabled, or a seccomp filter)";
	case -ENOMEM:
		return "not enough lockable memory (raise RLIMIT_MEMLOCK, e.g. LimitMEMLOCK= in the unit)";
	default:
		return strerror(-r);
	}
}

static void ur_probe_once(void)
{
	const char *env = getenv("MIGRELAY_IO");
	struct io_uring_params p;
	struct io_uring ring;
	struct io_uring_probe *pr = NULL;
	struct io_uring_buf_reg reg;
	struct iovec iov;
	void *page = MAP_FAILED;
	int r;

	if (env && strcmp(env, "posix") == 0) {
		ur_want = false;
		ur_probe_r = -EOPNOTSUPP;
		snprintf(ur_probe_why, sizeof(ur_probe_why), "io_uring not used: MIGRELAY_IO=posix");
		return;
	}
	memset(&p, 0, sizeof(p));
	r = io_uring_queue_init_params(4, &ring, &p);
	if (r < 0) {
		ur_probe_r = -ENOSYS; /* whatever the cause: no io_uring for this process */
		snprintf(ur_probe_why, sizeof(ur_probe_why), "io_uring unavailable: %s", ur_setup_hint(r));
		return;
	}
	r = -EOPNOTSUPP;
	if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_NODROP)) {
		snprintf(ur_probe_why, sizeof(ur_probe_why), "io_uring too old: no timed waits (kernel before 5.11)");
		goto out;
	}
	pr = io_uring_get_probe_ring(&ring);
	if (!pr) {
		snprintf(ur_probe_why, sizeof(ur_probe_why), "io_uring too old: cannot probe opcodes");
		goto out;
	}
	if (!io_uring_opcode_supported(pr, IORING_OP_SEND_ZC) || !io_uring_opcode_supported(pr, IORING_OP_SEND) ||
	    !io_uring_opcode_supported(pr, IORING_OP_RECV)) {
		snprintf(ur_probe_why, sizeof(ur_probe_why),
			 "io_uring too old: no IORING_OP_SEND_ZC (kernel before 6.0)");
		goto out;
	}
	page = mmap(NULL, UR_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED) {
		r = -ENOMEM;
		snprintf(ur_probe_why, sizeof(ur_probe_why), "io_uring probe: out of memory");
		goto out;
	}
	iov.iov_base = page;
	iov.iov_len = UR_PAGE;
	r = io_uring_register_buffers(&ring, &iov, 1);
	if (r < 0) {
		snprintf(ur_probe_why, sizeof(ur_probe_why), "io_uring cannot register buffers: %s", ur_setup_hint(r));
		r = -EOPNOTSUPP;
		goto out;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)page;
	reg.ring_entries = 1;
	reg.bgid = 0;
	r = io_uring_register_buf_ring(&ring, &reg, 0);
	if (r < 0) {
		snprintf(ur_probe_why, sizeof(ur_probe_why),
			 "io_uring has no provided buffer rings (kernel before 5.19): %s", strerror(-r));
		r = -EOPNOTSUPP;
		goto out;
	}
	r = 0;
out:
	io_uring_free_probe(pr);
	io_uring_queue_exit(&ring); /* unregisters everything */
	if (page != MAP_FAILED)
		munmap(page, UR_PAGE);
	ur_probe_r = r;
}

bool mr_uring_wanted(void)
{
	pthread_once(&ur_once, ur_probe_once);
	return ur_want;
}

int mr_uring_probe(char *why, size_t whylen)
{
	pthread_once(&ur_once, ur_probe_once);
	if (ur_probe_r < 0)
		ur_msg(why, whylen, "%s", ur_probe_why);
	return ur_probe_r;
}

/*
 * A disabled ring with room for <cq> completions. Kernels without
 * SINGLE_ISSUER (before 6.0) or COOP_TASKRUN (before 5.19) get fewer flags.
 */
static int ur_ring_init(struct io_uring *ring, unsigned cq)
{
	static const unsigned tries[] = {
	    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
	    IORING_SETUP_COOP_TASKRUN,
	    0,
	};
	struct io_uring_params p;
	int r = -EINVAL;

	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		memset(&p, 0, sizeof(p));
		p.flags = tries[i] | IORING_SETUP_R_DISABLED | IORING_SETUP_CQSIZE;
		p.cq_entries = cq;
		r = io_uring_queue_init_params(UR_SQ_ENTRIES, ring, &p);
		if (r != -EINVAL)
			break;
	}
	return r;
}

/*
 * Waits for one CQE, at most until <deadline> (ms, CLOCK_MONOTONIC; < 0:
 * no limit). Returns 0 with *cqe, -ETIME, or -errno; EINTR is retried.
 */
static int ur_wait(struct io_uring *ring, struct io_uring_cqe **cqe, int64_t deadline)
{
	for (;;) {
		int r;

		if (deadline < 0) {
			r = io_uring_wait_cqe(ring, cqe);
		} else {
			int64_t left = deadline - ur_now_ms();
			struct __kernel_timespec ts;

			if (left < 0)
				left = 0;
			ts.tv_sec = left / 1000;
			ts.tv_nsec = (left % 1000) * 1000000;
			r = io_uring_wait_cqe_timeout(ring, cqe, &ts);
		}
		if (r == -EINTR)
			continue;
		return r;
	}
}

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

static int ur_enable(struct io_uring *ring, bool *enabled)
{
	int r;

	if (*enabled)
		return 0;
	/* liburing 2.3 declares io_uring_enable_rings but does not export it */
	r = (int)syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
	if (r < 0)
		return -errno;
	*enabled = true;
	return 0;
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
