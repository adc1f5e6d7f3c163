/* SPDX-License-Identifier: MIT */
/*
 * The TLS record layer alone: two mr_tls sessions over TCP loopback, one
 * thread sends frames of 1 MiB + 16 bytes with mr_tls_send, the other
 * receives each as a 16-byte header and a payload with mr_tls_recv_all, as
 * the gateway does. Prints the record layer in use, the wall time and each
 * thread's CPU time. Usage:
 *   bench_tls_records SERVER_TLS_DIR CLIENT_TLS_DIR [MIB]
 * (directories from `migrelay pki issue server` and `... client`; MIB
 * defaults to 1024). MIGRELAY_TLS_RECORDS=gnutls compares with GnuTLS's
 * record layer, MIGRELAY_KTLS=0 keeps kernel TLS out.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crypto/tls.h"

enum { FRAME = (1 << 20) + 16, HDR = 16 };

struct side {
	struct mr_tls_cfg *cfg;
	struct mr_tls *t;
	int fd, r;
	enum mr_tls_fail fail;
	char err[512];
	size_t frames;
	double cpu;
};

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *handshake(void *arg)
{
	struct side *s = arg;

	s->r = mr_tls_handshake(&s->t, s->cfg, s->fd, NULL, 10000, &s->fail, s->err, sizeof(s->err));
	return NULL;
}

static void *sender(void *arg)
{
	struct side *s = arg;
	unsigned char *b = malloc(FRAME);
	double c0;

	if (!b)
		abort();
	for (size_t i = 0; i < FRAME; i++)
		b[i] = (unsigned char)(i * 131 + (i >> 12));
	c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
	for (size_t i = 0; i < s->frames; i++)
		if (mr_tls_send(s->t, b, FRAME) != FRAME)
			abort();
	s->cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
	free(b);
	return NULL;
}

static int tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &len) < 0)
		return -1;
	*b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*b < 0 || connect(*b, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	*a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	close(l);
	return *a < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct side c = { 0 }, s = { 0 };
	unsigned char hdr[HDR], *p;
	double w0, c0, rcpu, wall;
	char err[512];
	pthread_t th;

	if (argc < 3) {
		fprintf(stderr, "usage: %s SERVER_TLS_DIR CLIENT_TLS_DIR [MIB]\n", argv[0]);
		return 2;
	}
	c.frames = argc > 3 ? strtoul(argv[3], NULL, 10) : 1024;
	if (tcp_pair(&s.fd, &c.fd) < 0) {
		perror("loopback connection");
		return 1;
	}
	if (mr_tls_cfg_x509(&s.cfg, argv[1], true, err, sizeof(err)) < 0 ||
	    mr_tls_cfg_x509(&c.cfg, argv[2], false, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	pthread_create(&th, NULL, handshake, &s);
	handshake(&c);
	pthread_join(th, NULL);
	if (c.r < 0 || s.r < 0) {
		fprintf(stderr, "handshake: %s %s\n", c.err, s.err);
		return 1;
	}
	p = malloc(FRAME);
	if (!p)
		return 1;
	w0 = clock_s(CLOCK_MONOTONIC);
	pthread_create(&th, NULL, sender, &c);
	c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
	for (size_t i = 0; i < c.frames; i++)
		if (mr_tls_recv_all(s.t, hdr, HDR) != HDR || mr_tls_recv_all(s.t, p, FRAME - HDR) != FRAME - HDR) {
			fprintf(stderr, "receive: %s\n", mr_tls_last_error(s.t));
			return 1;
		}
	rcpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
	pthread_join(th, NULL);
	wall = clock_s(CLOCK_MONOTONIC) - w0;
	printf("records=%s frames=%zu MiB/s=%.0f wall_s=%.3f send_cpu_s=%.3f recv_cpu_s=%.3f\n", mr_tls_engine(c.t),
	       c.frames, (double)c.frames * FRAME / (1 << 20) / wall, wall, c.cpu, rcpu);
	mr_tls_free(c.t);
	mr_tls_free(s.t);
	mr_tls_cfg_free(c.cfg);
	mr_tls_cfg_free(s.cfg);
	free(p);
	return 0;
}
