/* SPDX-License-Identifier: MIT */
/*
 * bench_floor: the least CPU time a gateway side can spend per GB of
 * migration stream on this machine, whatever its threads, framing and
 * scheduling: the work no design of migrelay's data path can leave out.
 *
 *   source side:      read QEMU's stream from a unix socket into 256 KiB
 *                     chunks (kept in a 4 MiB window, as the gateway keeps
 *                     them until acknowledged), XXH3-128 over them, seal
 *                     16 KiB TLS 1.3 records with AES-128-GCM
 *                     (crypto/record.c), send them over TCP;
 *   destination side: receive them from TCP, open the records into
 *                     chunks, XXH3-128, write the chunks to QEMU's socket.
 *
 * Four threads: a stand-in for each QEMU (not counted) and one thread per
 * gateway side doing all of its side's steps in turn, with no hand-off,
 * frame header, acknowledgement or wake-up beyond the sockets' own. Each
 * step is timed by the thread's CPU clock. --plaintext leaves the records
 * out (migrelay's --insecure-plaintext). TCP runs over loopback, where the
 * sender's CPU also carries the receiver's TCP input, as in bench/compare's
 * one-host layout; or, with --listen on the destination side and --connect
 * on the source side, two processes measure one side each over whatever
 * path joins them (bench/compare's 2x1 layout: a veth pair between two
 * network namespaces, each side on its own CPU).
 *
 * Prints a table and one line for scripts:
 *   floor MODE src S dst S    (CPU seconds per GB = 1e9 bytes of stream)
 * (only the side measured with --listen or --connect). For each side the
 * best run of --runs counts (a floor: interference only adds).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "crypto/record.h"
#include "stream/digest.h"

enum {
	CHUNK = 256 << 10,                  /* the gateway's chunk */
	WINDOW_CHUNKS = 16,                 /* its default window, 4 MiB */
	REC_PLAIN = MR_REC_MAX_PLAIN,       /* 16 KiB records */
	RECS = CHUNK / REC_PLAIN,
	SEALED = RECS * (REC_PLAIN + MR_REC_OVERHEAD),
	QEMU_READ = 32 << 10,               /* what QEMU's QEMUFile reads at a time */
	LOCAL_SNDBUF = 1 << 20,             /* the gateway's send buffer towards QEMU */
};

enum step { S_QREAD, S_DIGEST_SRC, S_SEAL, S_SEND, S_RECV, S_OPEN, S_DIGEST_DST, S_QWRITE, S_N };

static const char *const step_name[S_N] = {
	"read QEMU's stream (unix socket)", "XXH3-128", "AES-128-GCM seal", "TCP send",
	"TCP receive", "AES-128-GCM open", "XXH3-128", "write to QEMU (unix socket)",
};

struct run {
	bool plaintext;
	bool src, dst;          /* the sides this process measures */
	size_t chunks;
	int qsrc[2], qdst[2], tcp[2];
	struct mr_rec seal, open;
	double cpu[S_N];
	const char *err, *dst_err; /* what failed: source side (or setup), destination side */
};

static double thread_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sends (<out>) or receives all <n> bytes at <p> on socket <fd>. Returns 0, or -1 on an error or EOF. */
static int move_all(int fd, void *p, size_t n, bool out)
{
	unsigned char *b = p;

	while (n > 0) {
		ssize_t k = out ? send(fd, b, n, MSG_NOSIGNAL) : recv(fd, b, n, 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
	return move_all(fd, (void *)(uintptr_t)p, n, true); /* send() only reads it */
}

static int read_all(int fd, void *p, size_t n)
{
	return move_all(fd, p, n, false);
}

static void nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Stands for the source QEMU: writes the stream, mixed bytes, into its socket. */
static void *qemu_src_main(void *arg)
{
	struct run *r = arg;
	unsigned char *b = malloc(CHUNK);

	if (b) {
		for (size_t i = 0; i < CHUNK; i++)
			b[i] = (unsigned char)(i * 2654435761u >> 13);
		for (size_t c = 0; c < r->chunks && write_all(r->qsrc[0], b, CHUNK) == 0; c++)
			;
	}
	free(b);
	shutdown(r->qsrc[0], SHUT_WR);
	return NULL;
}

/* Stands for the destination QEMU: reads 32 KiB at a time until EOF. */
static void *qemu_dst_main(void *arg)
{
	struct run *r = arg;
	unsigned char *b = malloc(QEMU_READ);

	while (b && recv(r->qdst[1], b, QEMU_READ, 0) > 0)
		;
	free(b);
	return NULL;
}

static void *src_main(void *arg)
{
	struct run *r = arg;
	unsigned char *win = malloc((size_t)WINDOW_CHUNKS * CHUNK), *out = malloc(SEALED);
	struct digest d = { 0 };
	double t;

	if (!win || !out || digest_init(&d) < 0) {
		r->err = "out of memory";
		goto done;
	}
	for (size_t c = 0; c < r->chunks; c++) {
		unsigned char *ch = win + (c % WINDOW_CHUNKS) * CHUNK;
		size_t olen = 0;

		t = thread_cpu();
		if (read_all(r->qsrc[1], ch, CHUNK) < 0) {
			r->err = "reading the stand-in QEMU's stream failed";
			break;
		}
		r->cpu[S_QREAD] += thread_cpu() - t;
		t = thread_cpu();
		digest_update(&d, ch, CHUNK);
		r->cpu[S_DIGEST_SRC] += thread_cpu() - t;
		if (!r->plaintext) {
			t = thread_cpu();
			for (int k = 0; k < RECS; k++) {
				struct iovec v = { ch + (size_t)k * REC_PLAIN, REC_PLAIN };
				ssize_t n = mr_rec_seal(&r->seal, MR_REC_T_DATA, &v, 1, out + olen, SEALED - olen);

				if (n < 0) {
					r->err = "sealing a record failed";
					goto done;
				}
				olen += (size_t)n;
			}
			r->cpu[S_SEAL] += thread_cpu() - t;
		}
		t = thread_cpu();
		if (write_all(r->tcp[0], r->plaintext ? ch : out, r->plaintext ? CHUNK : olen) < 0) {
			r->err = "sending over TCP failed";
			break;
		}
		r->cpu[S_SEND] += thread_cpu() - t;
	}
done:
	shutdown(r->tcp[0], SHUT_WR);
	shutdown(r->qsrc[1], SHUT_RDWR); /* a stand-in still writing stops */
	digest_free(&d);
	free(win);
	free(out);
	return NULL;
}

static void *dst_main(void *arg)
{
	struct run *r = arg;
	unsigned char *in = malloc(SEALED), *chunk = malloc(CHUNK + 1); /* + the inner content type of the last record */
	size_t reclen = REC_PLAIN + MR_REC_OVERHEAD;
	struct digest d = { 0 };
	double t;

	if (!in || !chunk || digest_init(&d) < 0) {
		r->dst_err = "out of memory";
		goto done;
	}
	for (size_t c = 0; c < r->chunks; c++) {
		t = thread_cpu();
		if (read_all(r->tcp[1], r->plaintext ? chunk : in, r->plaintext ? CHUNK : SEALED) < 0) {
			r->dst_err = "receiving over TCP failed";
			break;
		}
		r->cpu[S_RECV] += thread_cpu() - t;
		if (!r->plaintext) {
			t = thread_cpu();
			for (int k = 0; k < RECS; k++) {
				size_t pl = 0;
				unsigned char type = 0;

				if (mr_rec_open_to(&r->open, in + (size_t)k * reclen, reclen, chunk + (size_t)k * REC_PLAIN,
						   REC_PLAIN + 1, &pl, &type) < 0 ||
				    pl != REC_PLAIN || type != MR_REC_T_DATA) {
					r->dst_err = "opening a record failed";
					goto done;
				}
			}
			r->cpu[S_OPEN] += thread_cpu() - t;
		}
		t = thread_cpu();
		digest_update(&d, chunk, CHUNK);
		r->cpu[S_DIGEST_DST] += thread_cpu() - t;
		t = thread_cpu();
		if (write_all(r->qdst[0], chunk, CHUNK) < 0) {
			r->dst_err = "writing to the stand-in QEMU failed";
			break;
		}
		r->cpu[S_QWRITE] += thread_cpu() - t;
	}
done:
	shutdown(r->qdst[0], SHUT_WR);
	shutdown(r->tcp[1], SHUT_RDWR); /* after a failure, the source's sends fail instead of waiting */
	digest_free(&d);
	free(in);
	free(chunk);
	return NULL;
}

/* A TCP connection over loopback: [0] connects, [1] accepted. Returns 0 or -1. */
static int tcp_pair(int fds[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	fds[0] = fds[1] = -1;
	if (lfd < 0)
		return -1;
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &l) < 0 ||
	    (fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fds[0], (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (fds[1] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
		close(lfd);
		if (fds[0] >= 0)
			close(fds[0]);
		return -1;
	}
	close(lfd);
	nodelay(fds[0]);
	nodelay(fds[1]);
	return 0;
}

/* Parses IPv4 "ADDR:PORT" into <a>. Returns 0 or -1. */
static int parse_addr(const char *arg, struct sockaddr_in *a)
{
	char host[64];
	const char *colon = strrchr(arg, ':');
	char *end = NULL;
	long port;

	if (!colon || (size_t)(colon - arg) >= sizeof(host))
		return -1;
	memcpy(host, arg, (size_t)(colon - arg));
	host[colon - arg] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (!end || *end || colon[1] == '\0' || port < 0 || port > 65535)
		return -1;
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

/* Destination side alone: the next connection on <lfd>, within 30 s. Returns the socket or -1. */
static int accept_one(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int fd;

	if (poll(&p, 1, 30000) != 1) {
		fprintf(stderr, "bench_floor: no source side connected within 30 s\n");
		return -1;
	}
	if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
		fprintf(stderr, "bench_floor: accept: %s\n", strerror(errno));
		return -1;
	}
	nodelay(fd);
	return fd;
}

/* Source side alone: connects to <a>, trying for 10 s while it is refused. Returns the socket or -1. */
static int connect_to(const struct sockaddr_in *a)
{
	for (int tries = 0; tries < 100; tries++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			break;
		if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0) {
			nodelay(fd);
			return fd;
		}
		close(fd);
		if (errno != ECONNREFUSED)
			break;
		usleep(100 * 1000);
	}
	fprintf(stderr, "bench_floor: cannot connect to the destination side: %s\n", strerror(errno));
	return -1;
}

/* One run of the sides this process measures; <lfd> or <to> for one side alone. Returns 0 or -1. */
static int one_run(struct run *r, int lfd, const struct sockaddr_in *to)
{
	static const unsigned char key[16] = { 0x6d, 0x69, 0x67, 0x72, 0x65, 0x6c, 0x61, 0x79 };
	static const unsigned char iv[MR_REC_IV] = { 1 };
	pthread_t th[4];
	bool started[4] = { false };
	int v = LOCAL_SNDBUF, rc = -1;

	r->qsrc[0] = r->qsrc[1] = r->qdst[0] = r->qdst[1] = r->tcp[0] = r->tcp[1] = -1;
	if ((r->src && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r->qsrc) < 0) ||
	    (r->dst && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r->qdst) < 0)) {
		fprintf(stderr, "bench_floor: cannot make the sockets: %s\n", strerror(errno));
		goto out;
	}
	if (r->src && r->dst ? tcp_pair(r->tcp) < 0 :
	    r->dst ? (r->tcp[1] = accept_one(lfd)) < 0 : (r->tcp[0] = connect_to(to)) < 0) {
		if (r->src && r->dst)
			fprintf(stderr, "bench_floor: cannot connect over loopback: %s\n", strerror(errno));
		goto out;
	}
	if (r->dst)
		(void)setsockopt(r->qdst[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	if (mr_rec_init(&r->seal, MR_REC_AES_128_GCM, key, sizeof(key), iv, sizeof(iv), 0) < 0 ||
	    mr_rec_init(&r->open, MR_REC_AES_128_GCM, key, sizeof(key), iv, sizeof(iv), 0) < 0) {
		fprintf(stderr, "bench_floor: AES-128-GCM is not available from GnuTLS\n");
		goto out;
	}
	if (r->src) {
		started[0] = pthread_create(&th[0], NULL, qemu_src_main, r) == 0;
		started[1] = pthread_create(&th[1], NULL, src_main, r) == 0;
	}
	if (r->dst) {
		started[2] = pthread_create(&th[2], NULL, dst_main, r) == 0;
		started[3] = pthread_create(&th[3], NULL, qemu_dst_main, r) == 0;
	}
	for (int i = 0; i < 4; i++)
		if (started[i])
			pthread_join(th[i], NULL);
	if (r->err || r->dst_err)
		fprintf(stderr, "bench_floor: %s\n", r->err ? r->err : r->dst_err);
	else if ((r->src && !(started[0] && started[1])) || (r->dst && !(started[2] && started[3])))
		fprintf(stderr, "bench_floor: cannot start its threads\n");
	else
		rc = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (r->qsrc[i] >= 0)
			close(r->qsrc[i]);
		if (r->qdst[i] >= 0)
			close(r->qdst[i]);
		if (r->tcp[i] >= 0)
			close(r->tcp[i]);
	}
	mr_rec_free(&r->seal);
	mr_rec_free(&r->open);
	return rc;
}

static double side(const struct run *r, bool src)
{
	double s = 0;

	for (int i = src ? S_QREAD : S_RECV; i <= (src ? S_SEND : S_QWRITE); i++)
		s += r->cpu[i];
	return s;
}

static const char usage[] =
	"Usage: bench_floor [--mib N] [--runs N] [--plaintext]\n"
	"                   [--listen ADDR:PORT | --connect ADDR:PORT]\n"
	"\n"
	"Measures the least CPU time a gateway side spends per GB of migration\n"
	"stream on this machine: one thread per side doing only the work no data\n"
	"path can leave out (the socket to QEMU, XXH3-128, AES-128-GCM records,\n"
	"TCP), with stand-in QEMUs that are not counted. Prints each step and a\n"
	"line `floor tls|plaintext src S dst S` (CPU seconds per GB of stream);\n"
	"for each side the best of the runs counts. Both sides run here over\n"
	"loopback, or one side each in two processes (same --mib, --runs and\n"
	"--plaintext on both):\n"
	"\n"
	"      --mib N              stream length per run in MiB (default 512)\n"
	"      --runs N             runs (default 3)\n"
	"      --plaintext          without the records (--insecure-plaintext's floor)\n"
	"      --listen ADDR:PORT   the destination side alone: accept the source\n"
	"                           side's connections on this IPv4 address (port 0:\n"
	"                           any; the first line printed is `listening PORT`)\n"
	"      --connect ADDR:PORT  the source side alone: connect to a --listen\n"
	"  -h, --help               this text\n";

/* --<name> <arg>: a whole number from <lo> to <hi> into <*v>. Returns 0, or -1 with the message printed. */
static int ranged(const char *name, const char *arg, long lo, long hi, long *v)
{
	char *end = NULL;

	*v = strtol(arg, &end, 10);
	if (end == arg || *end || *v < lo || *v > hi) {
		fprintf(stderr, "bench_floor: --%s takes %ld to %ld, not '%s'\n", name, lo, hi, arg);
		return -1;
	}
	return 0;
}

static void print_side(const struct run *r, bool src, double gb)
{
	printf("  %s side\n", src ? "source" : "destination");
	for (int i = src ? S_QREAD : S_RECV; i <= (src ? S_SEND : S_QWRITE); i++)
		if (!r->plaintext || (i != S_SEAL && i != S_OPEN))
			printf("    %-34s %6.3f\n", step_name[i], r->cpu[i] / gb);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mib", required_argument, NULL, 'm' },
		{ "runs", required_argument, NULL, 'r' },
		{ "plaintext", no_argument, NULL, 'p' },
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	long mib = 512, runs = 3;
	bool plaintext = false, src = true, dst = true;
	struct sockaddr_in addr;
	struct run best_src = { 0 }, best_dst = { 0 };
	int lfd = -1, o;
	double gb;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'm':
			if (ranged("mib", optarg, 16, 65536, &mib) < 0)
				return 2;
			break;
		case 'r':
			if (ranged("runs", optarg, 1, 20, &runs) < 0)
				return 2;
			break;
		case 'p':
			plaintext = true;
			break;
		case 'l':
		case 'c':
			if (!src || !dst) {
				fprintf(stderr, "bench_floor: --listen and --connect exclude each other\n");
				return 2;
			}
			if (parse_addr(optarg, &addr) < 0) {
				fprintf(stderr, "bench_floor: --%s takes an IPv4 ADDR:PORT, not '%s'\n",
					o == 'l' ? "listen" : "connect", optarg);
				return 2;
			}
			src = o == 'c';
			dst = o == 'l';
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "bench_floor: unexpected argument '%s'\n%s", argv[optind], usage);
		return 2;
	}
	if (!src) {
		struct sockaddr_in got;
		socklen_t l = sizeof(got);
		int one = 1; /* SO_REUSEADDR */

		if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 4) < 0 ||
		    getsockname(lfd, (struct sockaddr *)&got, &l) < 0) {
			fprintf(stderr, "bench_floor: cannot listen on the --listen address: %s\n", strerror(errno));
			return 1;
		}
		printf("listening %u\n", ntohs(got.sin_port));
		fflush(stdout);
	}
	for (long i = 0; i < runs; i++) {
		struct run r = { .plaintext = plaintext, .src = src, .dst = dst,
				 .chunks = (size_t)mib * (1 << 20) / CHUNK };

		if (one_run(&r, lfd, &addr) < 0) {
			if (lfd >= 0)
				close(lfd);
			return 1;
		}
		if (i == 0 || side(&r, true) < side(&best_src, true))
			best_src = r;
		if (i == 0 || side(&r, false) < side(&best_dst, false))
			best_dst = r;
	}
	if (lfd >= 0)
		close(lfd);
	gb = (double)best_src.chunks * CHUNK / 1e9;
	printf("CPU seconds per GB of stream, best of %ld run(s) of %ld MiB, %s:\n", runs, mib,
	       plaintext ? "plaintext" : "TLS records (AES-128-GCM)");
	if (src)
		print_side(&best_src, true, gb);
	if (dst)
		print_side(&best_dst, false, gb);
	printf("floor %s", plaintext ? "plaintext" : "tls");
	if (src)
		printf(" src %.3f", side(&best_src, true) / gb);
	if (dst)
		printf(" dst %.3f", side(&best_dst, false) / gb);
	printf("\n");
	return 0;
}
