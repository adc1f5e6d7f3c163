/* SPDX-License-Identifier: MIT */
/*
 * uring_bench: what the io_uring engine (stream/uring.h) costs and gains
 * against plain send()/recv(), two threads over TCP loopback.
 *
 *   uring_bench [--mode posix|zc|ringcopy|sendprov|all] [--mib N] [--write KIB]
 *               [--runs N] [--bufs N] [--rxbuf KIB] [--rxbufs N]
 *
 * Modes (sender / receiver):
 *   posix     send() / recv()                      (today's path)
 *   zc        SEND_ZC from the registered pool / provided-buffer recv
 *   ringcopy  copying IORING_OP_SEND from the pool / provided-buffer recv
 *   sendprov  send() / provided-buffer recv
 * Prints MB/s (10^6 bytes per second of wall time) and the CPU seconds of
 * the whole process (getrusage RUSAGE_SELF: both threads and any io_uring
 * workers) per run. Bounded: at most 4096 MiB and 60 s per run.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "stream/uring.h"

enum mode { M_POSIX, M_ZC, M_RINGCOPY, M_SENDPROV, M_N };
static const char *const mode_name[M_N] = {"posix", "zc", "ringcopy", "sendprov"};

enum { RUN_LIMIT_S = 60, MAX_MIB = 4096 };

struct cfg {
	uint64_t bytes;
	size_t write;
	unsigned bufs, rxbufs;
	size_t rxbuf;
	int runs;
};

struct run {
	const struct cfg *c;
	enum mode m;
	int fd[2];
	uint64_t got;
	int err;
	char why[256];
	struct mr_uring_tx_stats txs;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

static int tcp_pair(int fds[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	int ls = socket(AF_INET, SOCK_STREAM, 0);

	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &l) < 0)
		return -errno;
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, sizeof(a)) < 0)
		return -errno;
	fds[1] = accept(ls, NULL, NULL);
	close(ls);
	return fds[1] < 0 ? -errno : 0;
}

static void *sender(void *arg)
{
	struct run *r = arg;
	const struct cfg *c = r->c;
	double end = now_s() + RUN_LIMIT_S;
	uint64_t off = 0;

	if (r->m == M_POSIX || r->m == M_SENDPROV) {
		uint8_t *b = malloc(c->write);

		if (!b) {
			r->err = -ENOMEM;
			goto out;
		}
		memset(b, 0x5a, c->write);
		while (off < c->bytes && now_s() < end) {
			size_t n = c->bytes - off < c->write ? (size_t)(c->bytes - off) : c->write;
			ssize_t k = send(r->fd[0], b, n, MSG_NOSIGNAL);

			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				r->err = -errno;
				break;
			}
			off += (uint64_t)k;
		}
		free(b);
	} else {
		struct mr_uring_tx *tx;
		int e;

		if ((e = mr_uring_tx_new(&tx, r->fd[0], c->bufs, c->write, r->why, sizeof(r->why))) < 0) {
			r->err = e;
			goto out;
		}
		if (r->m == M_RINGCOPY)
			mr_uring_tx_set_zc_min(tx, SIZE_MAX);
		else
			mr_uring_tx_set_zc_auto(tx, false); /* measure zero-copy itself, even where the kernel copies */
		while (off < c->bytes && now_s() < end) {
			size_t n = c->bytes - off < c->write ? (size_t)(c->bytes - off) : c->write, cap;
			uint8_t *b;

			if ((e = mr_uring_tx_get(tx, &b, &cap)) < 0 || (e = mr_uring_tx_send(tx, b, n)) < 0) {
				r->err = e;
				break;
			}
			off += n;
		}
		if (mr_uring_tx_drain(tx, 5000) < 0 && !r->err)
			r->err = -ETIMEDOUT;
		mr_uring_tx_stats(tx, &r->txs);
		mr_uring_tx_free(tx);
	}
out:
	shutdown(r->fd[0], SHUT_WR);
	return NULL;
}

static void *receiver(void *arg)
{
	struct run *r = arg;
	const struct cfg *c = r->c;
	double end = now_s() + RUN_LIMIT_S + 5;

	if (r->m == M_POSIX) {
		uint8_t *b = malloc(c->rxbuf);

		while (b && now_s() < end) {
			ssize_t k = recv(r->fd[1], b, c->rxbuf, 0);

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				if (k < 0)
					r->err = -errno;
				break;
			}
			r->got += (uint64_t)k;
		}
		free(b);
	} else {
		struct mr_uring_rx *rx;
		char why[256];
		int e;

		if ((e = mr_uring_rx_new(&rx, r->fd[1], c->rxbufs, c->rxbuf, why, sizeof(why))) < 0) {
			fprintf(stderr, "uring_bench: %s\n", why);
			r->err = e;
			shutdown(r->fd[1], SHUT_RDWR);
			return NULL;
		}
		while (now_s() < end) {
			const uint8_t *d;
			unsigned bid;
			ssize_t k = mr_uring_rx_recv(rx, &d, &bid, 1000);

			if (k == -EAGAIN)
				continue;
			if (k <= 0) {
				if (k < 0)
					r->err = (int)k;
				break;
			}
			r->got += (uint64_t)k;
			mr_uring_rx_put(rx, bid);
		}
		mr_uring_rx_free(rx);
	}
	return NULL;
}

static int one_run(const struct cfg *c, enum mode m, int i)
{
	struct run r = {.c = c, .m = m};
	pthread_t ts, tr;
	double t0, c0, dt, dc;
	int e;

	if ((e = tcp_pair(r.fd)) < 0) {
		fprintf(stderr, "uring_bench: loopback pair: %s\n", strerror(-e));
		return e;
	}
	t0 = now_s();
	c0 = cpu_s();
	if (pthread_create(&tr, NULL, receiver, &r) != 0 || pthread_create(&ts, NULL, sender, &r) != 0) {
		fprintf(stderr, "uring_bench: cannot start threads\n");
		exit(1);
	}
	pthread_join(ts, NULL);
	pthread_join(tr, NULL);
	dt = now_s() - t0;
	dc = cpu_s() - c0;
	close(r.fd[0]);
	close(r.fd[1]);
	if (r.err) {
		fprintf(stderr, "uring_bench: %s run %d: %s%s%s\n", mode_name[m], i, strerror(-r.err),
			r.why[0] ? ": " : "", r.why);
		return r.err;
	}
	printf("%-9s run %d: %8.1f MB/s  %6.3f CPU s (%5.2f CPU s/GB)  %llu MiB", mode_name[m], i,
	       (double)r.got / dt / 1e6, dc, dc / ((double)r.got / 1e9), (unsigned long long)(r.got >> 20));
	if (m == M_ZC || m == M_RINGCOPY)
		printf("  [zc %llu, notif %llu (kernel copied %llu), copied %llu, get waited %llu]",
		       (unsigned long long)r.txs.zc_sends, (unsigned long long)r.txs.notifs,
		       (unsigned long long)r.txs.notifs_copied, (unsigned long long)r.txs.copied_sends,
		       (unsigned long long)r.txs.waits);
	printf("\n");
	fflush(stdout);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: uring_bench [--mode posix|zc|ringcopy|sendprov|all] [--mib N (<= %d)] [--write KIB]\n"
		"                   [--runs N] [--bufs N] [--rxbuf KIB] [--rxbufs N (power of two)]\n",
		MAX_MIB);
	exit(2);
}

int main(int argc, char **argv)
{
	struct cfg c = {
	    .bytes = 1024ull << 20, .write = 256 << 10, .bufs = 16, .rxbufs = 16, .rxbuf = 256 << 10, .runs = 3};
	int mode = -1, fails = 0;
	char why[256];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			usage();
		i++;
		if (strcmp(a, "--mode") == 0) {
			mode = -1;
			for (int m = 0; m < M_N; m++)
				if (strcmp(v, mode_name[m]) == 0)
					mode = m;
			if (mode < 0 && strcmp(v, "all") != 0)
				usage();
		} else if (strcmp(a, "--mib") == 0) {
			unsigned long n = strtoul(v, NULL, 10);

			if (n == 0 || n > MAX_MIB)
				usage();
			c.bytes = (uint64_t)n << 20;
		} else if (strcmp(a, "--write") == 0) {
			c.write = (size_t)strtoul(v, NULL, 10) << 10;
		} else if (strcmp(a, "--runs") == 0) {
			c.runs = atoi(v);
		} else if (strcmp(a, "--bufs") == 0) {
			c.bufs = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--rxbuf") == 0) {
			c.rxbuf = (size_t)strtoul(v, NULL, 10) << 10;
		} else if (strcmp(a, "--rxbufs") == 0) {
			c.rxbufs = (unsigned)strtoul(v, NULL, 10);
		} else {
			usage();
		}
	}
	if (c.write == 0 || c.write > MR_URING_MAX_BUFSIZE || c.runs < 1 || c.runs > 20 || c.rxbuf == 0)
		usage();
	if (mr_uring_probe(why, sizeof(why)) < 0)
		fprintf(stderr, "uring_bench: %s (only posix runs)\n", why);
	printf("%llu MiB per run, %zu KiB writes, %u pool buffers, %u x %zu KiB provided buffers\n",
	       (unsigned long long)(c.bytes >> 20), c.write >> 10, c.bufs, c.rxbufs, c.rxbuf >> 10);
	/* round-robin, so a slow phase of a shared machine hits every mode alike */
	for (int i = 1; i <= c.runs; i++)
		for (int m = 0; m < M_N; m++)
			if ((mode < 0 || mode == m) && one_run(&c, (enum mode)m, i) < 0)
				fails++;
	return fails ? 1 : 0;
}
