/* SPDX-License-Identifier: MIT */
/*
 * The connection interface (stream/conn.h) over its plaintext engine
 * (stream/plain.c) on socket pairs: every op, the bytes read before the
 * engine took over, the clean and the unclean end, timeouts, the error
 * texts, and the arguments it refuses.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "stream/conn.h"
#include "tests/unit/util.h"

static void assert_contains(const char *s, const char *sub)
{
	if (!strstr(s, sub))
		fail_msg("\"%s\" does not contain \"%s\"", s, sub);
}

static void set_rcvtimeo(int fd, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 131 + seed * 7 + (i >> 8));
}

/* Two plaintext connections on a pair: a[0] on fds[0], a[1] on fds[1]; both own their fd. */
static void plain_pair(struct mr_conn *a[2], bool tcp)
{
	int fds[2];

	test_sock_pair(fds, tcp);
	for (int i = 0; i < 2; i++)
		assert_int_equal(mr_conn_plain(&a[i], fds[i], true, NULL, 0), 0);
}

static void test_roundtrip(void **state)
{
	struct mr_conn *a[2];
	unsigned char buf[16];

	(void)state;
	plain_pair(a, false);
	assert_string_equal(mr_conn_name(a[0]), "plaintext");
	assert_string_equal(mr_conn_note(a[0]), "");
	assert_string_equal(mr_conn_last_error(a[0]), "");
	assert_int_equal(mr_conn_send(a[0], "ping", 4), 4);
	assert_int_equal(mr_conn_recv_all(a[1], buf, 4), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(mr_conn_send_stable(a[1], "pong!", 5), 5);
	assert_int_equal(mr_conn_recv(a[0], buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "pong!", 5);
	/* nothing to set up for this engine: start/stop do nothing and say nothing */
	{
		struct mr_conn_io io = { .tx_bufs = 4, .tx_bufsize = 1 << 16, .rx_bufs = 4, .rx_bufsize = 1 << 16 };
		char why[64] = "x";

		mr_conn_start_tx(a[0], &io, why, sizeof(why));
		assert_string_equal(why, "");
		mr_conn_start_rx(a[0], &io, why, sizeof(why));
		assert_string_equal(why, "");
		mr_conn_stop_tx(a[0]);
		mr_conn_stop_rx(a[0]);
	}
	mr_conn_free(a[0]);
	mr_conn_free(a[1]);
}

struct sender {
	struct mr_conn *c;
	const unsigned char *p;
	size_t len;
	bool stable;
	ssize_t r;
};

static void *send_run(void *arg)
{
	struct sender *s = arg;

	s->r = s->stable ? mr_conn_send_stable(s->c, s->p, s->len) : mr_conn_send(s->c, s->p, s->len);
	return NULL;
}

/* Bulk both ways through send() and through vmsplice/splice, over AF_UNIX and TCP. */
static void bulk(bool tcp, bool stable)
{
	const size_t n = (4 << 20) + 12345;
	unsigned char *out = malloc(n), *in = malloc(n);
	struct mr_conn *a[2];
	struct sender s;
	pthread_t th;

	assert_non_null(out);
	assert_non_null(in);
	fill(out, n, tcp * 2 + stable);
	plain_pair(a, tcp);
	s = (struct sender){ .c = a[0], .p = out, .len = n, .stable = stable };
	assert_int_equal(pthread_create(&th, NULL, send_run, &s), 0);
	assert_int_equal(mr_conn_recv_all(a[1], in, n), (ssize_t)n);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(s.r, (ssize_t)n);
	assert_memory_equal(in, out, n);
	mr_conn_free(a[0]);
	mr_conn_free(a[1]);
	free(out);
	free(in);
}

static void test_bulk(void **state)
{
	(void)state;
	bulk(false, false);
	bulk(false, true);
	bulk(true, false);
	bulk(true, true);
}

/* Bytes read before the engine took over come first, in pieces as small as the caller asks. */
static void test_unread_first(void **state)
{
	struct mr_conn *c;
	unsigned char buf[32];
	int fds[2];

	(void)state;
	test_sock_pair(fds, false);
	assert_int_equal(mr_conn_plain(&c, fds[0], false, "abcdef", 6), 0);
	assert_int_equal(send(fds[1], "ghij", 4, 0), 4);
	assert_int_equal(mr_conn_recv(c, buf, 4), 4);
	assert_memory_equal(buf, "abcd", 4);
	assert_int_equal(mr_conn_recv_all(c, buf, 6), 6);
	assert_memory_equal(buf, "efghij", 6);
	mr_conn_free(c);
	/* not owned: still open */
	assert_true(fcntl(fds[0], F_GETFD) >= 0);
	close(fds[0]);
	close(fds[1]);
}

/* bye is the clean end (0 at the peer); half_close too, and the other direction goes on. */
static void test_bye_half_close(void **state)
{
	struct mr_conn *a[2];
	unsigned char buf[8];

	(void)state;
	plain_pair(a, true);
	mr_conn_bye(a[0]);
	assert_int_equal(mr_conn_recv(a[1], buf, sizeof(buf)), 0);
	assert_int_equal(mr_conn_recv_all(a[1], buf, 4), 0);
	mr_conn_free(a[0]);
	mr_conn_free(a[1]);

	plain_pair(a, true);
	mr_conn_half_close(a[1]);
	assert_int_equal(mr_conn_recv(a[0], buf, sizeof(buf)), 0);
	assert_int_equal(mr_conn_send(a[0], "late", 4), 4);
	assert_int_equal(mr_conn_recv_all(a[1], buf, 4), 4);
	assert_memory_equal(buf, "late", 4);
	mr_conn_free(a[0]);
	mr_conn_free(a[1]);
}

/* A receive timeout: -EAGAIN with nothing lost; part way through recv_all, -ETIMEDOUT. An end part way: -ECONNRESET. */
static void test_timeouts_and_ends(void **state)
{
	struct mr_conn *a[2];
	unsigned char buf[8];

	(void)state;
	plain_pair(a, false);
	set_rcvtimeo(a[1]->fd, 50);
	assert_int_equal(mr_conn_recv(a[1], buf, sizeof(buf)), -EAGAIN);
	assert_contains(mr_conn_last_error(a[1]), "receive timeout");
	assert_int_equal(mr_conn_recv_all(a[1], buf, 4), -EAGAIN);
	assert_int_equal(mr_conn_send(a[0], "ab", 2), 2);
	assert_int_equal(mr_conn_recv_all(a[1], buf, 4), -ETIMEDOUT);
	assert_contains(mr_conn_last_error(a[1]), "stopped sending in the middle");
	assert_int_equal(mr_conn_send(a[0], "cd", 2), 2);
	mr_conn_bye(a[0]);
	assert_int_equal(mr_conn_recv_all(a[1], buf, 4), -ECONNRESET);
	assert_contains(mr_conn_last_error(a[1]), "closed the connection in the middle");
	mr_conn_free(a[0]);
	mr_conn_free(a[1]);
}

/* A peer gone: the send fails with -EPIPE or -ECONNRESET and says why; the text stays the newest. */
static void test_send_to_closed(void **state)
{
	static unsigned char big[1 << 16];
	struct mr_conn *a[2];
	int fd;
	ssize_t n;

	(void)state;
	for (int stable = 0; stable < 2; stable++) {
		plain_pair(a, false);
		fd = a[1]->fd;
		mr_conn_free(a[1]);
		assert_true(fcntl(fd, F_GETFD) < 0); /* owned: closed */
		n = stable ? mr_conn_send_stable(a[0], big, sizeof(big)) : mr_conn_send(a[0], big, sizeof(big));
		assert_true(n == -EPIPE || n == -ECONNRESET);
		assert_contains(mr_conn_last_error(a[0]), "cannot send to the peer");
		mr_conn_free(a[0]);
	}
}

static void test_arguments(void **state)
{
	static const struct {
		int fd;
		const void *unread;
		size_t len;
	} bad[] = {
		{ -1, NULL, 0 },  /* no socket */
		{ 0, NULL, 5 },   /* a length without bytes */
	};
	struct mr_conn *a[2], *c = NULL;
	unsigned char buf[4];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mr_conn_plain(&c, bad[i].fd, false, bad[i].unread, bad[i].len), -EINVAL);
	assert_int_equal(mr_conn_plain(NULL, 0, false, NULL, 0), -EINVAL);
	assert_null(c);
	plain_pair(a, false);
	assert_int_equal(mr_conn_send(NULL, "x", 1), -EINVAL);
	assert_int_equal(mr_conn_send(a[0], NULL, 1), -EINVAL);
	assert_int_equal(mr_conn_send(a[0], "x", 0), 0);
	assert_int_equal(mr_conn_send_stable(a[0], NULL, 1), -EINVAL);
	assert_int_equal(mr_conn_recv(a[0], NULL, 1), -EINVAL);
	assert_int_equal(mr_conn_recv(a[0], buf, 0), -EINVAL);
	assert_int_equal(mr_conn_recv_all(a[0], buf, 0), -EINVAL);
	assert_int_equal(mr_conn_recv_all(NULL, buf, 1), -EINVAL);
	mr_conn_free(a[0]);
	mr_conn_free(a[1]);
	/* NULL-safe */
	mr_conn_free(NULL);
	mr_conn_bye(NULL);
	mr_conn_half_close(NULL);
	mr_conn_stop_tx(NULL);
	mr_conn_stop_rx(NULL);
	assert_string_equal(mr_conn_last_error(NULL), "");
	assert_string_equal(mr_conn_name(NULL), "");
	assert_string_equal(mr_conn_note(NULL), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_bulk),
		cmocka_unit_test(test_unread_first),
		cmocka_unit_test(test_bye_half_close),
		cmocka_unit_test(test_timeouts_and_ends),
		cmocka_unit_test(test_send_to_closed),
		cmocka_unit_test(test_arguments),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
