/* SPDX-License-Identifier: MIT */
/*
 * mr_sshpeer: drives crypto/ssh.c against a real sshd for the integration
 * tests (tests/integ/test_ssh_channel.sh) and the SSH benchmark
 * (bench/ssh_channel.sh).
 *
 *   mr_sshpeer open URL [opts]            connect, print the methods, close
 *   mr_sshpeer echo URL [opts]            per connection: one thread sends a
 *                                         pseudo-random stream, another reads
 *                                         it back from an echo server and
 *                                         checks every byte
 *   mr_sshpeer sink URL [opts]            send only (to a server that reads
 *                                         to EOF and closes), for throughput
 *   mr_sshpeer tcp HOST:PORT [opts]       the same over plain TCP (ssh -L)
 *   mr_sshpeer conn-abort URL [opts]      through stream/conn.h (crypto/ssh_conn.c)
 *                                         against a server that stays silent:
 *                                         SO_RCVTIMEO on c->fd gives -EAGAIN,
 *                                         shutdown(c->fd) ends a blocked recv
 *
 * opts: -n CONNECTIONS, -b BYTES (per connection), --known-hosts F,
 * --global-known-hosts F, --key F, --accept-new, --no-agent, --ciphers L,
 * --macs L, --timeout MS, --conn (echo/sink through stream/conn.h: mr_conn_send,
 * mr_conn_recv, mr_conn_half_close, as the session uses a connection).
 *
 * A failed connect prints the library's sentence and exits with its errno
 * (ENOKEY, EKEYREJECTED, EACCES, EPERM, ENXIO, ...), so a test can tell
 * the refusals apart; any other failure exits 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "crypto/ssh.h"
#include "crypto/ssh_conn.h"

enum { MAX_CONNS = 64, CHUNK_MAX = 300000 };

struct peer {
	int idx;
	struct mr_ssh *ssh; /* or */
	struct mr_conn *conn; /* or */
	int fd;             /* plain TCP (mode tcp) */
	uint64_t bytes;
	bool verify;        /* echo mode: receive and check everything */
	int err;            /* first failure: -errno, or 1 for a data mismatch */
	char what[160];
	pthread_t tx, rx;
};

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Byte <i> of connection <idx>'s stream: random access, so sender and receiver need no shared state. */
static void fill(uint8_t *p, int idx, uint64_t off, size_t n)
{
	for (size_t k = 0; k < n;) {
		uint64_t pos = off + k, w = splitmix(((uint64_t)idx << 56) ^ (pos >> 3));
		unsigned b = (unsigned)(pos & 7);

		for (; b < 8 && k < n; b++, k++)
			p[k] = (uint8_t)(w >> (8 * b));
	}
}

static ssize_t peer_send(struct peer *p, const void *b, size_t n)
{
	if (p->conn)
		return mr_conn_send(p->conn, b, n);
	if (p->ssh)
		return mr_ssh_send_all(p->ssh, b, n);
	for (size_t o = 0; o < n;) {
		ssize_t k = send(p->fd, (const char *)b + o, n - o, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		o += (size_t)k;
	}
	return (ssize_t)n;
}

static ssize_t peer_recv(struct peer *p, void *b, size_t n)
{
	ssize_t k;

	if (p->conn)
		return mr_conn_recv(p->conn, b, n);
	if (p->ssh)
		return mr_ssh_recv(p->ssh, b, n);
	do
		k = recv(p->fd, b, n, 0);
	while (k < 0 && errno == EINTR);
	return k < 0 ? -errno : k;
}

static void fail(struct peer *p, int err, const char *what)
{
	if (!p->err) {
		p->err = err;
		snprintf(p->what, sizeof(p->what), "%s", what);
	}
	/* The other thread of this connection must not wait for a peer that will not come. */
	if (p->conn)
		(void)shutdown(p->conn->fd, SHUT_RDWR);
	else if (p->ssh)
		mr_ssh_abort(p->ssh);
	else
		(void)shutdown(p->fd, SHUT_RDWR);
}

static void *tx_main(void *arg)
{
	struct peer *p = arg;
	uint8_t *buf = malloc(CHUNK_MAX);
	uint64_t off = 0, r = (uint64_t)p->idx;

	if (!buf) {
		fail(p, -ENOMEM, "malloc");
		return NULL;
	}
	while (off < p->bytes) {
		/* Chunk sizes vary from 1 byte to ~300 KB: partial channel writes, window edges. */
		size_t n = (size_t)(splitmix(++r) % CHUNK_MAX) + 1;
		ssize_t k;

		if (n > p->bytes - off)
			n = (size_t)(p->bytes - off);
		if (p->verify)
			fill(buf, p->idx, off, n);
		k = peer_send(p, buf, n);
		if (k != (ssize_t)n) {
			fail(p, (int)k, "send");
			break;
		}
		off += n;
	}
	if (!p->err) {
		if (p->conn) {
			mr_conn_half_close(p->conn);
		} else {
			int r2 = p->ssh ? mr_ssh_shutdown_send(p->ssh) : (shutdown(p->fd, SHUT_WR) ? -errno : 0);

			if (r2 < 0)
				fail(p, r2, "half-close");
		}
	}
	free(buf);
	return NULL;
}

static void *rx_main(void *arg)
{
	struct peer *p = arg;
	uint8_t *buf = malloc(CHUNK_MAX), *want = malloc(CHUNK_MAX);
	uint64_t off = 0;

	if (!buf || !want) {
		fail(p, -ENOMEM, "malloc");
		goto out;
	}
	for (;;) {
		ssize_t k = peer_recv(p, buf, CHUNK_MAX);

		if (k < 0) {
			fail(p, (int)k, "recv");
			break;
		}
		if (k == 0)
			break;
		if (!p->verify) {
			fail(p, 1, "the sink sent data back");
			break;
		}
		fill(want, p->idx, off, (size_t)k);
		if (off + (uint64_t)k > p->bytes || memcmp(buf, want, (size_t)k) != 0) {
			char m[96];

			snprintf(m, sizeof(m), "data differs in the %zd bytes at offset %" PRIu64, k, off);
			fail(p, 1, m);
			break;
		}
		off += (uint64_t)k;
	}
	if (p->verify && !p->err && off != p->bytes) {
		char m[96];

		snprintf(m, sizeof(m), "echo ended after %" PRIu64 " of %" PRIu64 " bytes", off, p->bytes);
		fail(p, 1, m);
	}
out:
	free(buf);
	free(want);
	return NULL;
}

static int tcp_open(const char *hp)
{
	char host[256];
	const char *colon = strrchr(hp, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	int fd, one = 1;

	if (!colon || (size_t)(colon - hp) >= sizeof(host))
		return -EINVAL;
	memcpy(host, hp, (size_t)(colon - hp));
	host[colon - hp] = '\0';
	if (getaddrinfo(host, colon + 1, &hints, &res))
		return -ENOENT;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		int e = -errno;

		freeaddrinfo(res);
		if (fd >= 0)
			close(fd);
		return e;
	}
	freeaddrinfo(res);
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static double now_s(void);

struct shut_later {
	int fd;
	int ms;
};

static void *shut_main(void *arg)
{
	struct shut_later *sl = arg;

	usleep((useconds_t)sl->ms * 1000);
	shutdown(sl->fd, SHUT_RDWR);
	return NULL;
}

/*
 * The server (a unix socket that accepts and stays silent) sends nothing:
 * a receive timeout set on c->fd must give -EAGAIN after that time, and
 * shutdown(c->fd, SHUT_RDWR) from another thread must end a recv blocked
 * without a timeout, as they do on a TCP connection.
 */
static int conn_abort(struct mr_conn *c)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 300000 };
	struct shut_later sl = { .fd = c->fd, .ms = 300 };
	pthread_t t;
	char b[16];
	double t0;
	ssize_t n;

	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		return 1;
	t0 = now_s();
	n = mr_conn_recv(c, b, sizeof(b));
	if (n != -EAGAIN || now_s() - t0 < 0.25 || now_s() - t0 > 5) {
		fprintf(stderr, "error: recv with a 300 ms timeout: %zd after %.2f s\n", n, now_s() - t0);
		return 1;
	}
	printf("receive timeout: -EAGAIN after %.2f s\n", now_s() - t0);
	tv.tv_usec = 0;
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    pthread_create(&t, NULL, shut_main, &sl))
		return 1;
	t0 = now_s();
	n = mr_conn_recv(c, b, sizeof(b));
	pthread_join(t, NULL);
	if (n != -ECONNRESET || now_s() - t0 > 5) {
		fprintf(stderr, "error: recv ended by shutdown: %zd after %.2f s\n", n, now_s() - t0);
		return 1;
	}
	printf("shutdown(c->fd): blocked recv ended with -ECONNRESET after %.2f s (%s)\n", now_s() - t0,
	       mr_conn_last_error(c));
	return 0;
}

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

static int usage(void)
{
	fprintf(stderr, "usage: mr_sshpeer open|echo|sink URL | tcp HOST:PORT [-n N] [-b BYTES] [--known-hosts F]\n"
			"       [--global-known-hosts F] [--key F] [--accept-new] [--no-agent] [--ciphers L]\n"
			"       [--macs L] [--timeout MS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static struct peer peers[MAX_CONNS];
	struct mr_ssh_opts o = { .global_known_hosts = "" };
	struct mr_ssh_url u;
	const char *mode, *target;
	char err[512];
	int n = 1, r, rc = 0;
	uint64_t bytes = 64ull << 20;
	bool use_conn = false;
	double t0, c0, dt, dc;

	if (argc < 3)
		return usage();
	mode = argv[1];
	target = argv[2];
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--accept-new")) {
			o.accept_new = true;
			continue;
		}
		if (!strcmp(a, "--conn")) {
			use_conn = true;
			continue;
		}
		if (!strcmp(a, "--no-agent")) {
			o.no_agent = true;
			continue;
		}
		if (!v)
			return usage();
		i++;
		if (!strcmp(a, "-n"))
			n = atoi(v);
		else if (!strcmp(a, "-b"))
			bytes = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--known-hosts"))
			o.known_hosts = v;
		else if (!strcmp(a, "--global-known-hosts"))
			o.global_known_hosts = v;
		else if (!strcmp(a, "--key"))
			o.key_file = v;
		else if (!strcmp(a, "--ciphers"))
			o.ciphers = v;
		else if (!strcmp(a, "--macs"))
			o.macs = v;
		else if (!strcmp(a, "--timeout"))
			o.timeout_ms = atoi(v);
		else
			return usage();
	}
	if (n < 1 || n > MAX_CONNS)
		return usage();
	if (strcmp(mode, "tcp") != 0) {
		r = mr_ssh_url_parse(target, &u, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "error: %s\n", err);
			return -r;
		}
	}
	for (int i = 0; i < n; i++) {
		peers[i] = (struct peer){ .idx = i, .fd = -1, .bytes = bytes, .verify = !strcmp(mode, "echo") };
		if (!strcmp(mode, "tcp")) {
			peers[i].fd = tcp_open(target);
			if (peers[i].fd < 0) {
				fprintf(stderr, "error: %s: %s\n", target, strerror(-peers[i].fd));
				return 1;
			}
			continue;
		}
		r = mr_ssh_connect(&u, &o, &peers[i].ssh, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "error: %s\n", err);
			for (int k = 0; k < i; k++)
				mr_conn_free(peers[k].conn), mr_ssh_close(peers[k].ssh);
			return -r;
		}
		if (use_conn || !strcmp(mode, "conn-abort")) {
			printf("methods: %s\n", mr_ssh_methods(peers[i].ssh));
			r = mr_conn_ssh(&peers[i].conn, peers[i].ssh);
			peers[i].ssh = NULL; /* the connection owns it, also on failure */
			if (r < 0) {
				fprintf(stderr, "error: mr_conn_ssh: %s\n", strerror(-r));
				return 1;
			}
		}
	}
	if (!strcmp(mode, "conn-abort")) {
		rc = conn_abort(peers[0].conn);
		for (int i = 0; i < n; i++)
			mr_conn_free(peers[i].conn);
		return rc;
	}
	if (peers[0].ssh)
		printf("methods: %s\n", mr_ssh_methods(peers[0].ssh));
	if (!strcmp(mode, "open")) {
		for (int i = 0; i < n; i++)
			mr_ssh_close(peers[i].ssh);
		return 0;
	}
	if (strcmp(mode, "echo") && strcmp(mode, "sink") && strcmp(mode, "tcp"))
		return usage();
	t0 = now_s();
	c0 = cpu_s();
	for (int i = 0; i < n; i++) {
		if (pthread_create(&peers[i].tx, NULL, tx_main, &peers[i]) ||
		    pthread_create(&peers[i].rx, NULL, rx_main, &peers[i])) {
			fprintf(stderr, "error: pthread_create\n");
			return 1;
		}
	}
	for (int i = 0; i < n; i++) {
		pthread_join(peers[i].tx, NULL);
		pthread_join(peers[i].rx, NULL);
	}
	dt = now_s() - t0;
	dc = cpu_s() - c0;
	for (int i = 0; i < n; i++) {
		char lastbuf[160];

		if (peers[i].err) {
			fprintf(stderr, "error: connection %d: %s: %s %s\n", i, peers[i].what,
				peers[i].err < 0 ? strerror(-peers[i].err) : "",
				peers[i].conn ? mr_conn_last_error(peers[i].conn) :
				peers[i].ssh  ? mr_ssh_last_error(peers[i].ssh, lastbuf, sizeof(lastbuf)) : "");
			rc = 1;
		}
		if (peers[i].conn)
			mr_conn_free(peers[i].conn);
		else if (peers[i].ssh)
			mr_ssh_close(peers[i].ssh);
		else
			close(peers[i].fd);
	}
	if (!rc)
		printf("%s: %d connection(s) x %" PRIu64 " bytes in %.2f s: %.1f MB/s; client CPU %.2f s = %.2f s/GiB\n",
		       mode, n, bytes, dt, (double)bytes * n / dt / 1e6, dc,
		       dc / ((double)bytes * n / (1u << 30)));
	return rc;
}
