/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by unit tests: socket pairs, temporary trees and hex tables (include
 * after <cmocka.h>). Not a test of its own: tests/unit/CMakeLists.txt
 * builds only test_*.c.
 */
#ifndef MR_TESTS_UNIT_UTIL_H
#define MR_TESTS_UNIT_UTIL_H

#include <arpa/inet.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * A connected TCP pair on 127.0.0.1: fds[0] the accepted (server) end,
 * fds[1] the connecting (client) end, which gets TCP_NODELAY. <sndbuf> > 0
 * sets the client end's SO_SNDBUF, <rcvbuf> > 0 the server end's SO_RCVBUF
 * (on the listener, so that it counts before the window scale is chosen).
 */
static inline void test_tcp_pair(int fds[2], int sndbuf, int rcvbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	assert_true(l >= 0);
	if (rcvbuf > 0)
		assert_int_equal(setsockopt(l, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fds[1] >= 0);
	if (sndbuf > 0)
		assert_int_equal(setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
	assert_int_equal(connect(fds[1], (struct sockaddr *)&a, sizeof(a)), 0);
	fds[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(fds[0] >= 0);
	(void)setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(l);
}

/* A pair for the tests that run over TCP and over AF_UNIX alike: <tcp> picks. */
static inline void test_sock_pair(int fds[2], bool tcp)
{
	if (tcp)
		test_tcp_pair(fds, 0, 0);
	else
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
}

static inline int test_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Removes the tree at <dir> (a test's temporary directory); nothing if <dir> is "". */
static inline void test_rm_tree(const char *dir)
{
	if (dir[0])
		nftw(dir, test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Decodes hex (spaces ignored) into <out>; returns the byte count. */
static inline size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;

	for (; *s; s++) {
		int v = 0;

		if (*s == ' ')
			continue;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else
			fail_msg("bad hex in test table: %s", s);
		if (hi < 0) {
			hi = v;
			continue;
		}
		assert_true(n < cap);
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	assert_int_equal(hi, -1);
	return n;
}

#endif
