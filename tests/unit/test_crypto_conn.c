/* SPDX-License-Identifier: MIT */
/*
 * The connection interface (stream/conn.h) over TLS: connections handed
 * over by mr_conn_from_tls after a PSK handshake, for each record engine
 * this machine has (in-place over send()/recv(), in-place over io_uring,
 * GnuTLS's records), the plaintext switch after the handshake, and the
 * hand-over's refusals. Kernel TLS has its own test (test_crypto_ktls).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto/tls.h"
#include "stream/conn.h"
#include "stream/uring.h"
#include "tests/unit/util.h"

#define PSK_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static char dir[PATH_MAX], keys_file[PATH_MAX];

static int group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	FILE *f;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/mr-conn-test.XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
	if (!mkdtemp(dir))
		return -1;
	snprintf(keys_file, sizeof(keys_file), "%s/keys.psk", dir);
	if (!(f = fopen(keys_file, "w")))
		return -1;
	fprintf(f, "alice:%s\n", PSK_HEX);
	/* kernel TLS has its own test: here the engines of user space, on any kernel */
	setenv("MIGRELAY_KTLS", "0", 1);
	return fclose(f) ? -1 : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	test_rm_tree(dir);
	return 0;
}

struct hs {
	struct mr_tls_cfg *cfg;
	struct mr_tls *t;
	int fd, r;
	enum mr_tls_fail fail;
	char err[512];
};

static void *hs_run(void *arg)
{
	struct hs *h = arg;

	h->r = mr_tls_handshake(&h->t, h->cfg, h->fd, NULL, 10000, &h->fail, h->err, sizeof(h->err));
	return NULL;
}

/* A PSK handshake on a TCP pair: s on fds[0], c on fds[1]. */
static void tls_pair(struct hs *c, struct hs *s)
{
	char err[512];
	pthread_t th;
	int fds[2];

	memset(c, 0, sizeof(*c));
	memset(s, 0, sizeof(*s));
	test_tcp_pair(fds, 0, 0);
	assert_int_equal(mr_tls_cfg_psk(&c->cfg, keys_file, false, "alice", err, sizeof(err)), 0);
	assert_int_equal(mr_tls_cfg_psk(&s->cfg, keys_file, true, NULL, err, sizeof(err)), 0);
	s->fd = fds[0];
	c->fd = fds[1];
	assert_int_equal(pthread_create(&th, NULL, hs_run, s), 0);
	hs_run(c);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (c->r || s->r)
		fail_msg("handshake: %s / %s", c->err, s->err);
}

/* Hands both sessions over: each connection owns its session and socket from now on. */
static void conn_pair(struct hs *c, struct hs *s, struct mr_conn *a[2])
{
	assert_int_equal(mr_conn_from_tls(&a[0], c->t, c->fd), 0);
	assert_int_equal(mr_conn_from_tls(&a[1], s->t, s->fd), 0);
	c->t = s->t = NULL;
	c->fd = s->fd = -1;
}

static void cfg_free(struct hs *c, struct hs *s)
{
	mr_tls_cfg_free(c->cfg);
	mr_tls_cfg_free(s->cfg);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 131 + seed * 7 + (i >> 8));
}

struct peer {
	struct mr_conn *c;
	const struct mr_conn_io *io;
	unsigned char *out, *in;
	size_t n;
	ssize_t sent, got;
	char why[256];
};

/* Sending thread of one side: its own transport for the duration, as the session's writer does. */
static void *tx_run(void *arg)
{
	struct peer *p = arg;

	mr_conn_start_tx(p->c, p->io, p->why, sizeof(p->why));
	p->sent = mr_conn_send_stable(p->c, p->out, p->n);
	if (p->sent == (ssize_t)p->n)
		p->sent = mr_conn_send(p->c, "end!", 4) == 4 ? p->sent : -EIO;
	mr_conn_stop_tx(p->c);
	return NULL;
}

/* Receiving thread of one side: a frame-like read, a 16-byte head then the rest, as the session's reader. */
static void *rx_run(void *arg)
{
	struct peer *p = arg;
	unsigned char end[4];
	char why[256];

	mr_conn_start_rx(p->c, p->io, why, sizeof(why));
	p->got = mr_conn_recv_all(p->c, p->in, 16);
	if (p->got == 16)
		p->got = mr_conn_recv_all(p->c, p->in + 16, p->n - 16);
	if (p->got > 0 && (mr_conn_recv_all(p->c, end, 4) != 4 || memcmp(end, "end!", 4)))
		p->got = -EBADMSG;
	mr_conn_stop_rx(p->c);
	return NULL;
}

/* Both directions at once through connections <a>, each side with a sending and a receiving thread. */
static void full_duplex(struct mr_conn *a[2], const struct mr_conn_io *io)
{
	const size_t n = (3 << 20) + 777;
	struct peer tx[2], rx[2];
	pthread_t th[4];

	for (int i = 0; i < 2; i++) {
		tx[i] = (struct peer){ .c = a[i], .io = io, .out = malloc(n), .n = n };
		rx[i] = (struct peer){ .c = a[i], .io = io, .in = malloc(n), .n = n };
		assert_non_null(tx[i].out);
		assert_non_null(rx[i].in);
		fill(tx[i].out, n, (unsigned)i + 1);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_create(&th[2 * i], NULL, tx_run, &tx[i]), 0);
		assert_int_equal(pthread_create(&th[2 * i + 1], NULL, rx_run, &rx[1 - i]), 0);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < 2; i++) {
		if (io && tx[i].why[0]) /* an engine that sets up its own transport says why it could not */
			fail_msg("send %d: no transport of its own: %s", i, tx[i].why);
		if (tx[i].sent != (ssize_t)n)
			fail_msg("send %d: %zd: %s", i, tx[i].sent, mr_conn_last_error(a[i]));
		if (rx[1 - i].got != (ssize_t)(n - 16))
			fail_msg("receive %d: %zd: %s", 1 - i, rx[1 - i].got, mr_conn_last_error(a[1 - i]));
		assert_memory_equal(rx[1 - i].in, tx[i].out, n);
		free(tx[i].out);
		free(rx[1 - i].in);
	}
}

/* A clean end through the interface: half_close is close_notify and a FIN, read as 0 by the peer. */
static void clean_end(struct mr_conn *a[2])
{
	unsigned char buf[8];

	mr_conn_half_close(a[0]);
	assert_int_equal(mr_conn_recv(a[1], buf, sizeof(buf)), 0);
	/* the other direction goes on */
	assert_int_equal(mr_conn_send(a[1], "late", 4), 4);
	assert_int_equal(mr_conn_recv_all(a[0], buf, 4), 4);
	assert_memory_equal(buf, "late", 4);
}

static void engine_test(const char *records, const char *want, bool uring)
{
	struct mr_conn_io io = { .tx_bufs = 4, .tx_bufsize = 288 << 10, .rx_bufs = 16, .rx_bufsize = 64 << 10 };
	struct mr_conn *a[2];
	struct hs c, s;

	if (records)
		setenv("MIGRELAY_TLS_RECORDS", records, 1);
	tls_pair(&c, &s);
	unsetenv("MIGRELAY_TLS_RECORDS");
	assert_string_equal(mr_tls_engine(c.t), want);
	/* setup frames through the session, then the connection takes over */
	assert_int_equal(mr_tls_send(c.t, "HELLO", 5), 5);
	{
		unsigned char buf[5];

		assert_int_equal(mr_tls_recv_all(s.t, buf, 5), 5);
		assert_memory_equal(buf, "HELLO", 5);
	}
	conn_pair(&c, &s, a);
	assert_string_equal(mr_conn_name(a[0]), want);
	assert_string_equal(mr_conn_name(a[1]), want);
	assert_non_null(strstr(mr_conn_note(a[0]), "kernel TLS"));
	full_duplex(a, uring ? &io : NULL);
	clean_end(a);
	mr_conn_free(a[0]);
	mr_conn_free(a[1]);
	cfg_free(&c, &s);
}

static void test_inplace(void **state)
{
	(void)state;
	engine_test(NULL, "in-place", false);
}

static void test_inplace_uring(void **state)
{
	char why[256];

	(void)state;
	if (mr_uring_probe(why, sizeof(why)) < 0 || !mr_uring_wanted())
		skip();
	engine_test(NULL, "in-place", true);
}

static void test_gnutls(void **state)
{
	(void)state;
	engine_test("gnutls", "gnutls", true); /* the io offer is ignored: GnuTLS keeps its own I/O */
}

/* The plaintext switch after the handshake: the bytes behind the last record reach the plaintext connection. */
static void plaintext_after(const char *records)
{
	struct mr_conn *a[2];
	unsigned char buf[32];
	struct hs c, s;
	int sfd;

	if (records)
		setenv("MIGRELAY_TLS_RECORDS", records, 1);
	tls_pair(&c, &s);
	unsetenv("MIGRELAY_TLS_RECORDS");
	sfd = s.fd;
	assert_int_equal(mr_tls_send(s.t, "WELCOME", 7), 7);
	assert_int_equal(mr_tls_set_plaintext(s.t), 0);
	assert_int_equal(mr_tls_send(s.t, "raw-after", 9), 9);
	usleep(20000); /* the record and the raw bytes are in the client's socket together */
	assert_int_equal(mr_tls_recv_all(c.t, buf, 7), 7);
	assert_memory_equal(buf, "WELCOME", 7);
	assert_int_equal(mr_tls_set_plaintext(c.t), 0);
	conn_pair(&c, &s, a);
	assert_string_equal(mr_conn_name(a[0]), "plaintext");
	assert_string_equal(mr_conn_name(a[1]), "plaintext");
	assert_int_equal(mr_conn_recv_all(a[0], buf, 9), 9);
	assert_memory_equal(buf, "raw-after", 9);
	assert_int_equal(mr_conn_send_stable(a[0], "raw-back", 8), 8);
	assert_int_equal(recv(sfd, buf, 8, MSG_WAITALL), 8); /* raw on the wire */
	assert_memory_equal(buf, "raw-back", 8);
	full_duplex(a, NULL);
	clean_end(a);
	mr_conn_free(a[0]);
	mr_conn_free(a[1]);
	assert_true(fcntl(sfd, F_GETFD) < 0); /* the connection owned the socket */
	cfg_free(&c, &s);
}

static void test_plaintext_after_tls(void **state)
{
	(void)state;
	plaintext_after(NULL);
	plaintext_after("gnutls");
}

/* mr_conn_from_tls takes the session and the socket whatever the result. */
static void test_from_tls_refusals(void **state)
{
	struct mr_conn *conn = NULL;
	struct hs c, s;
	int other[2];

	(void)state;
	tls_pair(&c, &s);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, other), 0);
	/* not the handshake's socket: refused, and both are gone */
	assert_int_equal(mr_conn_from_tls(&conn, c.t, other[0]), -EINVAL);
	assert_null(conn);
	assert_true(fcntl(other[0], F_GETFD) < 0);
	close(other[1]);
	close(c.fd);
	assert_int_equal(mr_conn_from_tls(NULL, s.t, s.fd), -EINVAL);
	assert_true(fcntl(s.fd, F_GETFD) < 0);
	assert_int_equal(mr_conn_from_tls(&conn, NULL, -1), -EINVAL);
	assert_int_equal(mr_tls_set_plaintext(NULL), -EINVAL);
	cfg_free(&c, &s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inplace),
		cmocka_unit_test(test_inplace_uring),
		cmocka_unit_test(test_gnutls),
		cmocka_unit_test(test_plaintext_after_tls),
		cmocka_unit_test(test_from_tls_refusals),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
