/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine (stream/uring.h) on real sockets: a socketpair and a
 * TCP loopback pair. Every byte carries a pattern that depends on its
 * offset in the stream, so loss, duplication, reordering and a buffer
 * reused while the kernel still sends from it all show as a mismatch.
 * Skips (77) only when io_uring is unavailable. Every loop is bounded in
 * count and time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "stream/uring.h"
#include "tests/unit/util.h"

enum {
	T_LIMIT_MS = 20000, /* no single test may take longer */
	T_JOIN_MS = 5000,   /* a thread that must end, ends within this */
};

/* Exit codes of the children that probe in a changed environment (0: as expected; 77: cannot set up). */
static int posix_child_status = -1, seccomp_child_status = -1, memlock_child_status = -1;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static inline uint8_t pat(uint64_t off)
{
	return (uint8_t)((off * 2654435761u) >> 13 ^ (off >> 20));
}

static void fill(uint8_t *p, size_t n, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		p[i] = pat(off + i);
}

/* Offset of the first byte that breaks the pattern, or UINT64_MAX. */
static uint64_t check(const uint8_t *p, size_t n, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pat(off + i))
			return off + i;
	return UINT64_MAX;
}

/* A connected TCP loopback pair: fds[0] sends (<sndbuf> > 0: its SO_SNDBUF), fds[1] receives (<rcvbuf>). */
static void tcp_pair(int fds[2], int sndbuf, int rcvbuf)
{
	int p[2];

	test_tcp_pair(p, sndbuf, rcvbuf);
	fds[0] = p[1];
	fds[1] = p[0];
}

static void unix_pair(int fds[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
}

/* Runs <fn> on a fresh TCP (<tcp>) or AF_UNIX pair, then closes both ends. */
static void on_pair(void (*fn)(int fds[2]), bool tcp)
{
	int fds[2];

	if (tcp)
		tcp_pair(fds, 0, 0);
	else
		unix_pair(fds);
	fn(fds);
	close(fds[0]);
	close(fds[1]);
}

/* ---- a plain reader thread that checks the pattern ---- */

struct reader {
	int fd;
	int delay_ms; /* pause after every read: a slow peer */
	size_t chunk; /* bytes per read */
	uint64_t total;
	uint64_t bad; /* first mismatching offset, or UINT64_MAX */
	int err;
	pthread_t thr;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t *buf = malloc(r->chunk);
	int64_t end = now_ms() + T_LIMIT_MS;

	r->bad = UINT64_MAX;
	while (buf && now_ms() < end) {
		ssize_t n = recv(r->fd, buf, r->chunk, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r->err = n < 0 ? errno : 0;
			break;
		}
		if (r->bad == UINT64_MAX)
			r->bad = check(buf, (size_t)n, r->total);
		r->total += (uint64_t)n;
		if (r->delay_ms)
			sleep_ms(r->delay_ms);
	}
	free(buf);
	return NULL;
}

static void reader_start(struct reader *r, int fd, size_t chunk, int delay_ms)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->chunk = chunk;
	r->delay_ms = delay_ms;
	assert_int_equal(pthread_create(&r->thr, NULL, reader_main, r), 0);
}

static void join_bounded(pthread_t thr)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += T_JOIN_MS / 1000;
	assert_int_equal(pthread_timedjoin_np(thr, NULL, &ts), 0);
}

/* ---- TX ---- */

static size_t next_size(uint32_t *seed, size_t cap, unsigned i)
{
	static const size_t fixed[] = {1, 2, 3, 7, 64, 1000, 4095, 4096, 4097};

	if (i < sizeof(fixed) / sizeof(fixed[0]))
		return fixed[i] < cap ? fixed[i] : cap;
	if (i % 5 == 0)
		return cap;
	*seed = *seed * 1103515245u + 12345u;
	return 1 + (*seed >> 8) % cap;
}

/*
 * Sends <count> buffers of varied sizes; the reader checks every byte.
 * Every buffer handed out must have no notification pending, and at the
 * end every zero-copy send must have had its notification.
 */
static void tx_stream(int fds[2], unsigned nbufs, size_t bufsize, unsigned count, int delay_ms, bool want_zc,
		      bool waitall, struct mr_uring_tx_stats *out)
{
	struct mr_uring_tx *tx;
	struct mr_uring_tx_stats st;
	struct reader rd;
	char why[256] = "";
	uint32_t seed = 1;
	uint64_t off = 0;
	int64_t end = now_ms() + T_LIMIT_MS;
	int r;

	r = mr_uring_tx_new(&tx, fds[0], nbufs, bufsize, why, sizeof(why));
	if (r < 0)
		fail_msg("mr_uring_tx_new: %s", why);
	mr_uring_tx_set_waitall(tx, waitall);
	if (want_zc) { /* zero-copy on every send where the test is about it */
		mr_uring_tx_set_zc_auto(tx, false);
		mr_uring_tx_set_zc_min(tx, 0);
	}
	reader_start(&rd, fds[1], 64 << 10, delay_ms);
	for (unsigned i = 0; i < count && now_ms() < end; i++) {
		uint8_t *b;
		size_t cap, n;

		assert_int_equal(mr_uring_tx_get(tx, &b, &cap), 0);
		assert_int_equal(cap, bufsize);
		/* never handed out while the kernel may still read it */
		assert_int_equal(mr_uring_tx_pending(tx, b), 0);
		n = next_size(&seed, cap, i);
		fill(b, n, off); /* a buffer reused too early would change bytes in flight */
		assert_int_equal(mr_uring_tx_send(tx, b, n), 0);
		off += n;
	}
	assert_int_equal(mr_uring_tx_drain(tx, 5000), 0);
	mr_uring_tx_stats(tx, &st);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.notifs, st.zc_sends);
	assert_int_equal(st.bytes, off);
	assert_int_equal(st.sends, count);
	if (want_zc)
		assert_true(st.zc_sends > 0);
	else
		assert_int_equal(st.zc_sends, 0);
	assert_int_equal(shutdown(fds[0], SHUT_WR), 0);
	join_bounded(rd.thr);
	assert_int_equal(rd.err, 0);
	assert_int_equal(rd.bad, UINT64_MAX);
	assert_int_equal(rd.total, off);
	mr_uring_tx_free(tx);
	if (out)
		*out = st;
}

static void test_tx_sizes_tcp(void **state)
{
	struct mr_uring_tx_stats st;
	int fds[2];

	(void)state;
	tcp_pair(fds, 0, 0);
	tx_stream(fds, 8, 64 << 10, 600, 0, true, true, &st);
	print_message(
	    "tcp: %llu zc sends, %llu notifications (%llu copied by the kernel), %llu copied sends, %llu waits\n",
	    (unsigned long long)st.zc_sends, (unsigned long long)st.notifs, (unsigned long long)st.notifs_copied,
	    (unsigned long long)st.copied_sends, (unsigned long long)st.waits);
	close(fds[0]);
	close(fds[1]);
}

/* Auto mode on loopback: the kernel reports it copied every zero-copy send, so the engine stops asking. */
static void test_tx_zc_auto_loopback(void **state)
{
	struct mr_uring_tx *tx;
	struct mr_uring_tx_stats st;
	struct reader rd;
	char why[256];
	uint64_t off = 0;
	int fds[2];

	(void)state;
	tcp_pair(fds, 0, 0);
	assert_int_equal(mr_uring_tx_new(&tx, fds[0], 4, 32 << 10, why, sizeof(why)), 0);
	reader_start(&rd, fds[1], 64 << 10, 0);
	for (unsigned i = 0; i < 300; i++) {
		uint8_t *b;
		size_t cap;

		assert_int_equal(mr_uring_tx_get(tx, &b, &cap), 0);
		fill(b, cap, off);
		assert_int_equal(mr_uring_tx_send(tx, b, cap), 0);
		off += cap;
	}
	assert_int_equal(mr_uring_tx_drain(tx, 5000), 0);
	mr_uring_tx_stats(tx, &st);
	print_message("auto: %llu zc sends (%llu copied by the kernel), then %llu copying sends; given up: %d\n",
		      (unsigned long long)st.zc_sends, (unsigned long long)st.notifs_copied,
		      (unsigned long long)st.copied_sends, st.zc_given_up);
	assert_int_equal(st.notifs, st.zc_sends);
	if (st.notifs_copied == st.notifs) { /* a kernel that reports usage (6.2+), on loopback */
		assert_true(st.zc_given_up);
		assert_true(st.zc_sends >= MR_URING_ZC_PROBE && st.zc_sends < 300);
		assert_int_equal(st.copied_sends + st.zc_sends, 300);
	}
	assert_int_equal(shutdown(fds[0], SHUT_WR), 0);
	join_bounded(rd.thr);
	assert_int_equal(rd.bad, UINT64_MAX);
	assert_int_equal(rd.total, off);
	mr_uring_tx_free(tx);
	close(fds[0]);
	close(fds[1]);
}

/* Below MR_URING_ZC_MIN a send copies (no notification); from it on, zero-copy. */
static void test_tx_zc_min(void **state)
{
	struct mr_uring_tx *tx;
	struct mr_uring_tx_stats st;
	struct reader rd;
	char why[256];
	uint8_t *b;
	size_t cap;
	int fds[2];

	(void)state;
	tcp_pair(fds, 0, 0);
	assert_int_equal(mr_uring_tx_new(&tx, fds[0], 2, MR_URING_ZC_MIN, why, sizeof(why)), 0);
	reader_start(&rd, fds[1], 64 << 10, 0);
	assert_int_equal(mr_uring_tx_get(tx, &b, &cap), 0);
	fill(b, MR_URING_ZC_MIN - 1, 0);
	assert_int_equal(mr_uring_tx_send(tx, b, MR_URING_ZC_MIN - 1), 0);
	assert_int_equal(mr_uring_tx_get(tx, &b, &cap), 0);
	fill(b, MR_URING_ZC_MIN, MR_URING_ZC_MIN - 1);
	assert_int_equal(mr_uring_tx_send(tx, b, MR_URING_ZC_MIN), 0);
	assert_int_equal(mr_uring_tx_drain(tx, 5000), 0);
	mr_uring_tx_stats(tx, &st);
	assert_int_equal(st.copied_sends, 1);
	assert_int_equal(st.zc_sends, 1);
	assert_int_equal(st.notifs, 1);
	assert_int_equal(shutdown(fds[0], SHUT_WR), 0);
	join_bounded(rd.thr);
	assert_int_equal(rd.bad, UINT64_MAX);
	assert_int_equal(rd.total, 2 * MR_URING_ZC_MIN - 1);
	mr_uring_tx_free(tx);
	close(fds[0]);
	close(fds[1]);
}

static void test_tx_sizes_unix(void **state)
{
	struct mr_uring_tx_stats st;
	int fds[2];

	(void)state;
	unix_pair(fds);
	tx_stream(fds, 4, 16 << 10, 400, 0, false, true, &st);
	assert_int_equal(st.copied_sends, st.sends); /* AF_UNIX has no zero-copy: copying sends from the pool */
	close(fds[0]);
	close(fds[1]);
}

/* Small socket buffers, a slow reader and few big buffers: sends are partial, buffers wait for notifications. */
static void test_tx_slow_reader(void **state)
{
	struct mr_uring_tx_stats st;
	int fds[2];

	(void)state;
	for (int waitall = 1; waitall >= 0; waitall--) {
		tcp_pair(fds, 16 << 10, 16 << 10);
		tx_stream(fds, 3, 256 << 10, 40, 1, true, waitall, &st);
		print_message("slow reader, MSG_WAITALL %s: %llu sends, %llu short (resent), %llu zc requests, %llu "
			      "waits for a notification\n",
			      waitall ? "on" : "off", (unsigned long long)st.sends, (unsigned long long)st.short_sends,
			      (unsigned long long)st.zc_sends, (unsigned long long)st.waits);
		/* whether get() had to wait here depends on timing; test_tx_timeout makes it wait for sure */
		if (!waitall)
			assert_true(st.short_sends > 0); /* our own resubmission of the rest was exercised */
		close(fds[0]);
		close(fds[1]);
	}
}

/* Sockets without zero-copy, with partial sends resubmitted from here. */
static void test_tx_unix_partial(void **state)
{
	struct mr_uring_tx_stats st;
	int fds[2], small = 8192;

	(void)state;
	unix_pair(fds);
	assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	tx_stream(fds, 2, 128 << 10, 30, 1, false, false, &st);
	print_message("unix partial: %llu sends, %llu short\n", (unsigned long long)st.sends,
		      (unsigned long long)st.short_sends);
	close(fds[0]);
	close(fds[1]);
}

static void test_tx_busy_and_put(void **state)
{
	struct mr_uring_tx *tx;
	uint8_t *b[3], *x;
	size_t cap;
	char why[256];
	int fds[2];

	(void)state;
	tcp_pair(fds, 0, 0);
	assert_int_equal(mr_uring_tx_new(&tx, fds[0], 3, 4096, why, sizeof(why)), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(mr_uring_tx_get(tx, &b[i], &cap), 0);
	assert_true(b[0] != b[1] && b[1] != b[2] && b[0] != b[2]);
	assert_int_equal(mr_uring_tx_get(tx, &x, &cap), -EBUSY);	    /* the caller holds them all */
	assert_int_equal(mr_uring_tx_send(tx, b[0] + 1, 4096), -EINVAL);    /* past the buffer's end */
	assert_int_equal(mr_uring_tx_send(tx, (uint8_t *)why, 1), -EINVAL); /* not a pool buffer */
	mr_uring_tx_put(tx, b[1]);
	assert_int_equal(mr_uring_tx_send(tx, b[1], 1), -EINVAL); /* given back: not held any more */
	assert_int_equal(mr_uring_tx_get(tx, &x, &cap), 0);
	assert_ptr_equal(x, b[1]);
	mr_uring_tx_put(tx, b[0]);
	mr_uring_tx_put(tx, b[1]);
	mr_uring_tx_put(tx, b[2]);
	mr_uring_tx_free(tx);
	close(fds[0]);
	close(fds[1]);
}

/* The peer closes with unread data (a reset) or cleanly: sends fail, nothing hangs. */
static void tx_peer_close(int fds[2], bool tcp)
{
	struct mr_uring_tx *tx;
	char why[256];
	int r = 0;
	int64_t end = now_ms() + T_LIMIT_MS;
	unsigned i;

	assert_int_equal(mr_uring_tx_new(&tx, fds[0], 4, 64 << 10, why, sizeof(why)), 0);
	for (i = 0; i < 4; i++) { /* some data the peer never reads */
		uint8_t *b;
		size_t cap;

		assert_int_equal(mr_uring_tx_get(tx, &b, &cap), 0);
		fill(b, 1000, 0);
		assert_int_equal(mr_uring_tx_send(tx, b, 1000), 0);
	}
	close(fds[1]);
	for (i = 0; i < 10000 && now_ms() < end; i++) {
		uint8_t *b;
		size_t cap;

		if ((r = mr_uring_tx_get(tx, &b, &cap)) < 0)
			break;
		if ((r = mr_uring_tx_send(tx, b, cap)) < 0)
			break;
	}
	print_message("%s: send after the peer closed: %s after %u sends\n", tcp ? "tcp" : "unix", strerror(-r), i);
	assert_true(r == -EPIPE || r == -ECONNRESET);
	assert_int_equal(mr_uring_tx_drain(tx, 2000), 0); /* the reset released every pinned page */
	mr_uring_tx_free(tx);
	close(fds[0]);
}

static void test_tx_peer_close_tcp(void **state)
{
	int fds[2];

	(void)state;
	tcp_pair(fds, 0, 0);
	tx_peer_close(fds, true);
}

static void test_tx_peer_close_unix(void **state)
{
	int fds[2];

	(void)state;
	unix_pair(fds);
	tx_peer_close(fds, false);
}

struct blocked_tx {
	struct mr_uring_tx *tx;
	atomic_int done;
	int r;
	unsigned sends;
};

static void *blocked_tx_main(void *arg)
{
	struct blocked_tx *b = arg;
	int64_t end = now_ms() + T_LIMIT_MS;

	for (unsigned i = 0; i < 1000000 && now_ms() < end; i++) {
		uint8_t *p;
		size_t cap;

		if ((b->r = mr_uring_tx_get(b->tx, &p, &cap)) < 0)
			break;
		if ((b->r = mr_uring_tx_send(b->tx, p, cap)) < 0)
			break;
		b->sends++;
	}
	atomic_store(&b->done, 1);
	return NULL;
}

/* Nobody reads: the sender blocks; shutdown() from another thread must end it. */
static void tx_shutdown_ends_send(int fds[2])
{
	struct blocked_tx b = {0};
	char why[256];
	pthread_t thr;
	int64_t t0;

	assert_int_equal(mr_uring_tx_new(&b.tx, fds[0], 4, 128 << 10, why, sizeof(why)), 0);
	assert_int_equal(pthread_create(&thr, NULL, blocked_tx_main, &b), 0);
	sleep_ms(400);
	assert_int_equal(atomic_load(&b.done), 0); /* blocked, not failed */
	t0 = now_ms();
	assert_int_equal(shutdown(fds[0], SHUT_RDWR), 0);
	join_bounded(thr);
	print_message("blocked after %u sends; shutdown ended it in %lld ms with %s\n", b.sends,
		      (long long)(now_ms() - t0), strerror(-b.r));
	assert_true(b.r == -EPIPE || b.r == -ECONNRESET);
	close(fds[1]); /* the peer goes: the kernel lets go of what was queued */
	assert_int_equal(mr_uring_tx_drain(b.tx, 3000), 0);
	mr_uring_tx_free(b.tx);
	close(fds[0]);
}

/*
 * Nobody reads and a timeout is set. With few buffers, get() times out
 * waiting for a notification; with many and small socket buffers, the send
 * request itself is cancelled, and that is for good (the stream position
 * is unknown). Nothing stays pinned once the peer goes.
 */
static void tx_timeout(unsigned nbufs, int sockbuf, bool in_send)
{
	struct mr_uring_tx *tx;
	char why[256];
	int fds[2], r = 0;
	unsigned i;
	int64_t t0, end = now_ms() + T_LIMIT_MS;
	uint8_t *b;
	size_t cap;

	tcp_pair(fds, sockbuf, sockbuf);
	assert_int_equal(mr_uring_tx_new(&tx, fds[0], nbufs, 128 << 10, why, sizeof(why)), 0);
	mr_uring_tx_set_timeout(tx, 200);
	t0 = now_ms();
	for (i = 0; i < 10000 && now_ms() < end; i++) {
		if ((r = mr_uring_tx_get(tx, &b, &cap)) < 0)
			break;
		if ((r = mr_uring_tx_send(tx, b, cap)) < 0) {
			assert_true(in_send);
			break;
		}
	}
	print_message("timeout in %s: %s after %u sends, %lld ms\n", in_send ? "send" : "get", strerror(-r), i,
		      (long long)(now_ms() - t0));
	assert_int_equal(r, -ETIMEDOUT);
	assert_true(now_ms() - t0 < 5000);
	if (!in_send) {
		struct mr_uring_tx_stats st;

		/* every buffer sent and not yet notified: get() waited instead of handing one out */
		mr_uring_tx_stats(tx, &st);
		assert_int_equal(st.inflight, nbufs);
		assert_true(st.waits > 0);
	}
	if (in_send)
		assert_int_equal(mr_uring_tx_get(tx, &b, &cap), -ETIMEDOUT);
	close(fds[1]);
	assert_int_equal(mr_uring_tx_drain(tx, 3000), 0);
	mr_uring_tx_free(tx);
	close(fds[0]);
}

static void test_tx_timeout(void **state)
{
	(void)state;
	tx_timeout(4, 0, false);
	tx_timeout(64, 16 << 10, true);
}

/* Freeing after shutdown() with data the peer never read: quick, though the kernel still holds pages. */
static void test_tx_free_dead_socket(void **state)
{
	struct mr_uring_tx *tx;
	char why[256];
	int fds[2], r = 0;
	int64_t t0, end = now_ms() + T_LIMIT_MS;
	uint8_t *b;
	size_t cap;

	(void)state;
	tcp_pair(fds, 0, 0);
	assert_int_equal(mr_uring_tx_new(&tx, fds[0], 4, 128 << 10, why, sizeof(why)), 0);
	mr_uring_tx_set_timeout(tx, 200);
	for (unsigned i = 0; i < 10000 && now_ms() < end && r == 0; i++)
		if ((r = mr_uring_tx_get(tx, &b, &cap)) == 0)
			r = mr_uring_tx_send(tx, b, cap);
	assert_int_equal(r, -ETIMEDOUT); /* every buffer in flight */
	assert_int_equal(shutdown(fds[0], SHUT_RDWR), 0);
	t0 = now_ms();
	mr_uring_tx_free(tx);
	print_message("free with 4 buffers still pinned: %lld ms\n", (long long)(now_ms() - t0));
	assert_true(now_ms() - t0 < 2000);
	close(fds[1]);
	close(fds[0]);
}

static void test_tx_shutdown_tcp(void **state)
{
	int fds[2];

	(void)state;
	tcp_pair(fds, 0, 0);
	tx_shutdown_ends_send(fds);
}

static void test_tx_shutdown_unix(void **state)
{
	int fds[2];

	(void)state;
	unix_pair(fds);
	tx_shutdown_ends_send(fds);
}

/* ---- RX ---- */

static int rx_new(struct mr_uring_rx **rx, int fd, unsigned nbufs, size_t bufsize)
{
	char why[256] = "";
	int r = mr_uring_rx_new(rx, fd, nbufs, bufsize, why, sizeof(why));

	if (r < 0)
		fail_msg("mr_uring_rx_new: %s", why);
	return r;
}

struct writer {
	int fd;
	uint64_t total; /* bytes to write */
	size_t chunk;
	int pause_ms; /* pause between chunks */
	int err;
	pthread_t thr;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint8_t *buf = malloc(w->chunk);
	uint64_t off = 0;
	int64_t end = now_ms() + T_LIMIT_MS;

	while (buf && off < w->total && now_ms() < end) {
		size_t n = w->total - off < w->chunk ? (size_t)(w->total - off) : w->chunk;
		ssize_t k;

		fill(buf, n, off);
		k = send(w->fd, buf, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			w->err = errno;
			break;
		}
		/* a short send: the rest goes next round, with the pattern at its offset */
		off += (uint64_t)k;
		if (w->pause_ms)
			sleep_ms(w->pause_ms);
	}
	free(buf);
	shutdown(w->fd, SHUT_WR);
	return NULL;
}

static void writer_start(struct writer *w, int fd, uint64_t total, size_t chunk, int pause_ms)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->total = total;
	w->chunk = chunk;
	w->pause_ms = pause_ms;
	assert_int_equal(pthread_create(&w->thr, NULL, writer_main, w), 0);
}

/*
 * Receives until EOF with <timeout_ms> per call, checks the pattern, puts
 * every buffer back. Returns the bytes and counts -EAGAIN returns.
 */
static uint64_t rx_drain_all(struct mr_uring_rx *rx, int timeout_ms, unsigned *eagain)
{
	uint64_t off = 0;
	int64_t end = now_ms() + T_LIMIT_MS;

	*eagain = 0;
	for (unsigned i = 0; i < 10000000 && now_ms() < end; i++) {
		const uint8_t *d;
		unsigned bid;
		ssize_t n = mr_uring_rx_recv(rx, &d, &bid, timeout_ms);

		if (n == -EAGAIN) {
			(*eagain)++;
			continue;
		}
		if (n == 0)
			break;
		assert_true(n > 0);
		assert_int_equal(check(d, (size_t)n, off), UINT64_MAX);
		off += (uint64_t)n;
		mr_uring_rx_put(rx, bid);
	}
	return off;
}

static void rx_stream(int fds[2], uint64_t total, size_t chunk, int pause_ms, unsigned nbufs, size_t bufsize)
{
	struct mr_uring_rx *rx;
	struct mr_uring_rx_stats st;
	struct writer w;
	unsigned eagain;
	const uint8_t *d;
	unsigned bid;

	assert_int_equal(rx_new(&rx, fds[1], nbufs, bufsize), 0);
	writer_start(&w, fds[0], total, chunk, pause_ms);
	assert_int_equal(rx_drain_all(rx, 5000, &eagain), total);
	assert_int_equal(mr_uring_rx_recv(rx, &d, &bid, 0), 0); /* EOF stays EOF */
	join_bounded(w.thr);
	assert_int_equal(w.err, 0);
	mr_uring_rx_stats(rx, &st);
	print_message("rx: %llu completions over %llu arms (multishot %d), %llu bytes\n",
		      (unsigned long long)st.completions, (unsigned long long)st.arms, st.multishot,
		      (unsigned long long)st.bytes);
	assert_int_equal(st.bytes, total);
	assert_int_equal(st.held, 0);
	mr_uring_rx_free(rx);
}

static void test_rx_stream_tcp(void **state)
{
	int fds[2];

	(void)state;
	tcp_pair(fds, 0, 0);
	rx_stream(fds, 32 << 20, 300000, 0, 8, 64 << 10);
	close(fds[0]);
	close(fds[1]);
}

static void test_rx_stream_unix(void **state)
{
	int fds[2];

	(void)state;
	unix_pair(fds);
	rx_stream(fds, 8 << 20, 100000, 0, 4, 16 << 10);
	close(fds[0]);
	close(fds[1]);
}

/* A timeout keeps the receive armed; what comes later arrives in order and whole. */
static void test_rx_timeout_then_data(void **state)
{
	struct mr_uring_rx *rx;
	struct writer w;
	const uint8_t *d;
	unsigned bid, eagain;
	int fds[2];
	int64_t t0;

	(void)state;
	tcp_pair(fds, 0, 0);
	assert_int_equal(rx_new(&rx, fds[1], 4, 4096), 0);
	t0 = now_ms();
	assert_int_equal(mr_uring_rx_recv(rx, &d, &bid, 50), -EAGAIN);
	assert_true(now_ms() - t0 >= 45);
	assert_int_equal(mr_uring_rx_recv(rx, &d, &bid, 0), -EAGAIN);
	/* bursts with pauses longer than the receive timeout */
	writer_start(&w, fds[0], 200000, 20000, 60);
	assert_int_equal(rx_drain_all(rx, 20, &eagain), 200000);
	print_message("rx timeout: %u timeouts while the data trickled in\n", eagain);
	assert_true(eagain > 0);
	join_bounded(w.thr);
	mr_uring_rx_free(rx);
	close(fds[0]);
	close(fds[1]);
}

/* The reader holds every provided buffer: -ENOBUFS, then it recovers after puts without losing a byte. */
static void rx_exhaust(int fds[2])
{
	struct mr_uring_rx *rx;
	struct mr_uring_rx_stats st;
	struct writer w;
	const uint8_t *d;
	unsigned bid, bids[4], eagain;
	uint64_t off = 0;
	ssize_t n;

	assert_int_equal(rx_new(&rx, fds[1], 4, 1024), 0);
	writer_start(&w, fds[0], 256 << 10, 8192, 0);
	for (int i = 0; i < 4; i++) {
		n = mr_uring_rx_recv(rx, &d, &bids[i], 5000);
		assert_true(n > 0);
		assert_int_equal(check(d, (size_t)n, off), UINT64_MAX);
		off += (uint64_t)n;
	}
	sleep_ms(50); /* more data arrives while no buffer is free */
	assert_int_equal(mr_uring_rx_recv(rx, &d, &bid, 100), -ENOBUFS);
	assert_int_equal(mr_uring_rx_recv(rx, &d, &bid, 100), -ENOBUFS);
	mr_uring_rx_put(rx, bids[2]);
	mr_uring_rx_put(rx, bids[2]); /* twice: ignored */
	n = mr_uring_rx_recv(rx, &d, &bid, 5000);
	assert_true(n > 0);
	assert_int_equal(check(d, (size_t)n, off), UINT64_MAX);
	off += (uint64_t)n;
	mr_uring_rx_put(rx, bid);
	mr_uring_rx_put(rx, bids[0]);
	mr_uring_rx_put(rx, bids[1]);
	mr_uring_rx_put(rx, bids[3]);
	/* the rest, checked from where we are */
	{
		int64_t end = now_ms() + T_LIMIT_MS;

		eagain = 0;
		for (unsigned i = 0; i < 1000000 && now_ms() < end; i++) {
			n = mr_uring_rx_recv(rx, &d, &bid, 5000);
			if (n == -EAGAIN) {
				eagain++;
				continue;
			}
			if (n == 0)
				break;
			assert_true(n > 0);
			assert_int_equal(check(d, (size_t)n, off), UINT64_MAX);
			off += (uint64_t)n;
			mr_uring_rx_put(rx, bid);
		}
	}
	assert_int_equal(off, 256 << 10);
	join_bounded(w.thr);
	mr_uring_rx_stats(rx, &st);
	print_message("rx exhaustion: %llu -ENOBUFS completions, %llu arms\n", (unsigned long long)st.enobufs,
		      (unsigned long long)st.arms);
	mr_uring_rx_free(rx);
}

static void test_rx_exhaust_tcp(void **state)
{
	(void)state;
	on_pair(rx_exhaust, true);
}

static void test_rx_exhaust_unix(void **state)
{
	(void)state;
	on_pair(rx_exhaust, false);
}

struct blocked_rx {
	struct mr_uring_rx *rx;
	atomic_int done;
	ssize_t r;
};

static void *blocked_rx_main(void *arg)
{
	struct blocked_rx *b = arg;
	const uint8_t *d;
	unsigned bid;

	b->r = mr_uring_rx_recv(b->rx, &d, &bid, -1);
	atomic_store(&b->done, 1);
	return NULL;
}

static void rx_shutdown(int fds[2])
{
	struct blocked_rx b = {0};
	pthread_t thr;

	assert_int_equal(rx_new(&b.rx, fds[1], 4, 4096), 0);
	assert_int_equal(pthread_create(&thr, NULL, blocked_rx_main, &b), 0);
	sleep_ms(200);
	assert_int_equal(atomic_load(&b.done), 0);
	assert_int_equal(shutdown(fds[1], SHUT_RDWR), 0);
	join_bounded(thr);
	assert_true(b.r <= 0); /* end of stream, or an error: not a hang */
	mr_uring_rx_free(b.rx);
}

static void test_rx_shutdown_tcp(void **state)
{
	(void)state;
	on_pair(rx_shutdown, true);
}

static void test_rx_shutdown_unix(void **state)
{
	(void)state;
	on_pair(rx_shutdown, false);
}

/* A peer that resets the connection: the receiver gets -ECONNRESET (or EOF), then the same again. */
static void test_rx_reset(void **state)
{
	struct mr_uring_rx *rx;
	struct linger lg = {1, 0};
	const uint8_t *d;
	unsigned bid;
	ssize_t n;
	int fds[2];

	(void)state;
	tcp_pair(fds, 0, 0);
	assert_int_equal(rx_new(&rx, fds[1], 4, 4096), 0);
	assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(fds[0]); /* RST */
	n = mr_uring_rx_recv(rx, &d, &bid, 5000);
	assert_true(n == -ECONNRESET || n == 0);
	assert_int_equal(mr_uring_rx_recv(rx, &d, &bid, 0), n);
	mr_uring_rx_free(rx);
	close(fds[1]);
}

static void test_bad_args(void **state)
{
	struct mr_uring_tx *tx = (struct mr_uring_tx *)1;
	struct mr_uring_rx *rx = (struct mr_uring_rx *)1;
	char why[256];
	int fds[2];

	(void)state;
	unix_pair(fds);
	assert_int_equal(mr_uring_tx_new(&tx, fds[0], 0, 4096, why, sizeof(why)), -EINVAL);
	assert_null(tx);
	assert_int_equal(mr_uring_tx_new(&tx, fds[0], 4, 0, why, sizeof(why)), -EINVAL);
	assert_int_equal(mr_uring_rx_new(&rx, fds[0], 3, 4096, why, sizeof(why)), -EINVAL); /* not a power of two */
	assert_null(rx);
	assert_int_equal(mr_uring_rx_new(&rx, 0 == 1 ? 0 : 1000000, 4, 4096, why, sizeof(why)), -ENOTSOCK);
	mr_uring_tx_free(NULL);
	mr_uring_rx_free(NULL);
	close(fds[0]);
	close(fds[1]);
}

static void test_posix_env(void **state)
{
	(void)state;
	/* run in a child before this process probed: MIGRELAY_IO=posix refuses with a reason */
	assert_int_equal(posix_child_status, 0);
}

static void test_seccomp_refused(void **state)
{
	(void)state;
	if (seccomp_child_status == 77)
		skip();
	assert_int_equal(seccomp_child_status, 0);
}

static void test_memlock_refused(void **state)
{
	(void)state;
	if (memlock_child_status == 77)
		skip();
	assert_int_equal(memlock_child_status, 0);
}

/* Child: io_uring_setup refused by a seccomp filter: -ENOSYS and a reason that says so. */
static int seccomp_child(void)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	struct mr_uring_tx *tx;
	struct mr_uring_rx *rx;
	char why[256] = "";
	int fds[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
		return 2;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return 77;
	if (mr_uring_tx_new(&tx, fds[0], 4, 4096, why, sizeof(why)) != -ENOSYS || !strstr(why, "seccomp"))
		return 3;
	if (mr_uring_rx_new(&rx, fds[0], 4, 4096, why, sizeof(why)) != -ENOSYS)
		return 4;
	printf("seccomp child: \"%s\"\n", why);
	return 0;
}

/* Child: without CAP_IPC_LOCK and with a small RLIMIT_MEMLOCK, a big pool cannot be registered. */
static int memlock_child(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2];
	struct rlimit rl = {64 << 10, 64 << 10};
	struct mr_uring_tx *tx;
	char why[256] = "";
	int fds[2], r;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
		return 2;
	if (syscall(SYS_capget, &h, d) < 0)
		return 77;
	d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	d[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
	if (syscall(SYS_capset, &h, d) < 0 || setrlimit(RLIMIT_MEMLOCK, &rl) < 0)
		return 77;
	r = mr_uring_tx_new(&tx, fds[0], 16, 1 << 20, why, sizeof(why));
	printf("memlock child: %d \"%s\"\n", r, why);
	if (r != -EOPNOTSUPP || !strstr(why, "RLIMIT_MEMLOCK"))
		return 3;
	/* a pool within the limit still works */
	if ((r = mr_uring_tx_new(&tx, fds[0], 2, 4096, why, sizeof(why))) < 0)
		return 4;
	mr_uring_tx_free(tx);
	return 0;
}

static int run_child(int (*fn)(void))
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	int st;

	if (pid == 0) {
		int r = fn();

		fflush(stdout);
		_exit(r);
	}
	if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st))
		return WEXITSTATUS(st);
	return -1;
}

/* Child: exit 0 when MIGRELAY_IO=posix makes both *_new refuse with -EOPNOTSUPP and say why. */
static int posix_child(void)
{
	struct mr_uring_tx *tx;
	struct mr_uring_rx *rx;
	char why[256] = "";
	int fds[2];

	setenv("MIGRELAY_IO", "posix", 1);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
		return 2;
	if (mr_uring_wanted())
		return 3;
	if (mr_uring_tx_new(&tx, fds[0], 4, 4096, why, sizeof(why)) != -EOPNOTSUPP || !strstr(why, "MIGRELAY_IO"))
		return 4;
	if (mr_uring_rx_new(&rx, fds[0], 4, 4096, why, sizeof(why)) != -EOPNOTSUPP)
		return 5;
	return 0;
}

int main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_posix_env),
		cmocka_unit_test(test_seccomp_refused),
		cmocka_unit_test(test_memlock_refused),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_tx_sizes_tcp),
		cmocka_unit_test(test_tx_zc_auto_loopback),
		cmocka_unit_test(test_tx_zc_min),
		cmocka_unit_test(test_tx_sizes_unix),
		cmocka_unit_test(test_tx_slow_reader),
		cmocka_unit_test(test_tx_unix_partial),
		cmocka_unit_test(test_tx_busy_and_put),
		cmocka_unit_test(test_tx_peer_close_tcp),
		cmocka_unit_test(test_tx_peer_close_unix),
		cmocka_unit_test(test_tx_timeout),
		cmocka_unit_test(test_tx_free_dead_socket),
		cmocka_unit_test(test_tx_shutdown_tcp),
		cmocka_unit_test(test_tx_shutdown_unix),
		cmocka_unit_test(test_rx_stream_tcp),
		cmocka_unit_test(test_rx_stream_unix),
		cmocka_unit_test(test_rx_timeout_then_data),
		cmocka_unit_test(test_rx_exhaust_tcp),
		cmocka_unit_test(test_rx_exhaust_unix),
		cmocka_unit_test(test_rx_shutdown_tcp),
		cmocka_unit_test(test_rx_shutdown_unix),
		cmocka_unit_test(test_rx_reset),
	};
	/* clang-format on */
	char why[256] = "";

	posix_child_status = run_child(posix_child);
	if (getenv("MIGRELAY_IO") && strcmp(getenv("MIGRELAY_IO"), "posix") == 0)
		unsetenv("MIGRELAY_IO"); /* this test is about the engine itself */
	seccomp_child_status = run_child(seccomp_child);
	memlock_child_status = run_child(memlock_child);
	if (mr_uring_probe(why, sizeof(why)) < 0) {
		printf("SKIP: %s\n", why);
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
