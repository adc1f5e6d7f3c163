/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine (see uring.h). Each object owns one small ring; the
 * ring is created disabled (IORING_SETUP_R_DISABLED) by *_new so that every
 * failure is reported there, and enabled by the first call in the thread
 * that then owns it, which with IORING_SETUP_SINGLE_ISSUER binds the ring to
 * that thread.
 *
 * This file: the process-wide probe and what both sides use (ring set-up,
 * waits, enabling). The send side is uring_tx.c (with its buffer life
 * cycle), the receive side uring_rx.c.
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

void ur_msg(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

int64_t ur_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t ur_round_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

/* ---- process-wide probe ---- */

static pthread_once_t ur_once = PTHREAD_ONCE_INIT;
static int ur_probe_r;
static char ur_probe_why[200];
static bool ur_want = true;

const char *ur_setup_hint(int r)
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
int ur_ring_init(struct io_uring *ring, unsigned cq)
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
int ur_wait(struct io_uring *ring, struct io_uring_cqe **cqe, int64_t deadline)
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
int ur_enable(struct io_uring *ring, bool *enabled)
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
