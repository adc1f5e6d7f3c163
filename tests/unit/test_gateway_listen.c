// SPDX-License-Identifier: MIT
/*
 * serve's listeners (gateway/listen.c): which --listen values add up and
 * which replace, the socket's mode and group, a stale socket file replaced
 * and a live one left alone, and the UID=name identity of a unix peer.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/listen.h"
#include "gateway/net.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mr-listen-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char p[128];

	(void)state;
	snprintf(p, sizeof(p), "%s/a.sock", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/b.sock", dir);
	unlink(p);
	return rmdir(dir);
}

static void specs(void **state)
{
	struct gw_listen_set s;
	char why[256];

	(void)state;
	gw_listen_init(&s);
	assert_int_equal(s.mode, 0660);
	assert_int_equal(gw_listen_add(&s, "127.0.0.1:1", why, sizeof(why)), 0);
	assert_int_equal(gw_listen_add(&s, "unix:/run/a.sock", why, sizeof(why)), 0);
	assert_int_equal(gw_listen_add(&s, "unix:/run/b.sock", why, sizeof(why)), 0);
	/* a second HOST:PORT replaces the first (the command line after a configuration file) */
	assert_int_equal(gw_listen_add(&s, "127.0.0.1:2", why, sizeof(why)), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.l[0].spec, "127.0.0.1:2");
	assert_true(s.l[1].local && !strcmp(s.l[1].path, "/run/a.sock"));
	assert_int_equal(gw_listen_count(&s, true), 2);
	assert_int_equal(gw_listen_count(&s, false), 1);
	assert_int_equal(gw_listen_add(&s, "unix:relative.sock", why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "absolute"));
	for (int i = 0; i < GW_LISTEN_MAX; i++)
		(void)!gw_listen_add(&s, "unix:/x", why, sizeof(why));
	assert_int_equal(s.n, GW_LISTEN_MAX);
	assert_int_equal(gw_listen_add(&s, "unix:/y", why, sizeof(why)), -E2BIG);

	assert_int_equal(gw_listen_set_mode(&s, "0600", why, sizeof(why)), 0);
	assert_int_equal(s.mode, 0600);
	assert_int_equal(gw_listen_set_mode(&s, "0400", why, sizeof(why)), -EINVAL);
	assert_int_equal(gw_listen_set_mode(&s, "4770", why, sizeof(why)), -EINVAL);
	assert_int_equal(gw_listen_set_mode(&s, "0669x", why, sizeof(why)), -EINVAL);
	assert_int_equal(gw_listen_set_group(&s, "0", why, sizeof(why)), 0);
	assert_true(s.has_gid && s.gid == 0);
	assert_int_equal(gw_listen_set_group(&s, "no-such-group-here", why, sizeof(why)), -EINVAL);
}

static void open_mode_stale_busy(void **state)
{
	struct gw_listen_set s, s2;
	char spec_a[128], spec_b[128], why[256];
	struct stat st;
	int fd;

	(void)state;
	snprintf(spec_a, sizeof(spec_a), "unix:%s/a.sock", dir);
	snprintf(spec_b, sizeof(spec_b), "unix:%s/b.sock", dir);
	/* a stale socket file (nobody listens) is replaced */
	fd = net_unix_listen(spec_a + 5, 1);
	assert_true(fd >= 0);
	close(fd);
	gw_listen_init(&s);
	assert_int_equal(gw_listen_add(&s, spec_a, why, sizeof(why)), 0);
	assert_int_equal(gw_listen_add(&s, spec_b, why, sizeof(why)), 0);
	assert_int_equal(gw_listen_set_mode(&s, "0640", why, sizeof(why)), 0);
	assert_int_equal(gw_listen_open(&s, why, sizeof(why)), 0);
	assert_int_equal(stat(spec_a + 5, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0640);
	/* a live one is not taken over */
	gw_listen_init(&s2);
	assert_int_equal(gw_listen_add(&s2, spec_b, why, sizeof(why)), 0);
	assert_int_equal(gw_listen_open(&s2, why, sizeof(why)), -EADDRINUSE);
	assert_non_null(strstr(why, "another server"));
	/* it listens; closing removes both socket files */
	fd = net_unix_connect(spec_a + 5);
	assert_true(fd >= 0);
	close(fd);
	gw_listen_close(&s);
	assert_int_equal(access(spec_a + 5, F_OK), -1);
	assert_int_equal(access(spec_b + 5, F_OK), -1);
	/* a path that is not a socket is refused */
	fd = creat(spec_a + 5, 0600);
	assert_true(fd >= 0);
	close(fd);
	gw_listen_init(&s);
	assert_int_equal(gw_listen_add(&s, spec_a, why, sizeof(why)), 0);
	assert_int_equal(gw_listen_open(&s, why, sizeof(why)), -EEXIST);
	unlink(spec_a + 5);
}

static void peer_identity(void **state)
{
	struct passwd *pw = getpwuid(getuid());
	char want[GW_PEER_ID_MAX], got[GW_PEER_ID_MAX];
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	if (pw)
		snprintf(want, sizeof(want), "UID=%s", pw->pw_name);
	else
		snprintf(want, sizeof(want), "UID=%u", (unsigned)getuid());
	assert_int_equal(gw_unix_peer_identity(sv[0], got, sizeof(got)), 0);
	assert_string_equal(got, want);
	close(sv[0]);
	close(sv[1]);
	/* not a unix socket: an error, never a made-up identity */
	assert_true(gw_unix_peer_identity(-1, got, sizeof(got)) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(specs),
	    cmocka_unit_test(open_mode_stale_busy),
	    cmocka_unit_test(peer_identity),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
