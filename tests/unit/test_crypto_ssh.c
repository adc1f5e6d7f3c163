/* SPDX-License-Identifier: MIT */
/*
 * crypto/ssh.c without a server: ssh:// address parsing (defaults, IPv6
 * literals, ports, socket paths) and its refusals. The connection itself
 * runs against a real sshd in tests/integ/test_ssh_channel.sh.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/ssh.h"

static void test_url_ok(void **state)
{
	static const struct {
		const char *in, *user, *host;
		uint16_t port;
		const char *path;
	} cases[] = {
		{ "ssh://alice@db1", "alice", "db1", 22, MR_SSH_DEFAULT_SOCKET },
		{ "ssh://alice@db1:2222", "alice", "db1", 2222, MR_SSH_DEFAULT_SOCKET },
		{ "ssh://alice@db1/run/x/serve.sock", "alice", "db1", 22, "/run/x/serve.sock" },
		{ "ssh://m@10.0.0.7:65535/tmp/s", "m", "10.0.0.7", 65535, "/tmp/s" },
		{ "ssh://m@[fe80::1]:23/tmp/s", "m", "fe80::1", 23, "/tmp/s" },
		{ "ssh://m@[::1]", "m", "::1", 22, MR_SSH_DEFAULT_SOCKET },
		{ "ssh://host.example", "tester", "host.example", 22, MR_SSH_DEFAULT_SOCKET }, /* $USER */
		{ "ssh://h:1/a@b", "tester", "h", 1, "/a@b" }, /* '@' in the path is not a user */
	};
	struct mr_ssh_url u;
	char err[200];

	(void)state;
	setenv("USER", "tester", 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_int_equal(mr_ssh_url_parse(cases[i].in, &u, err, sizeof(err)), 0);
		assert_string_equal(u.user, cases[i].user);
		assert_string_equal(u.host, cases[i].host);
		assert_int_equal(u.port, cases[i].port);
		assert_string_equal(u.path, cases[i].path);
	}
}

static void test_url_default_user_without_env(void **state)
{
	struct mr_ssh_url u;
	char err[200];

	(void)state;
	unsetenv("USER");
	assert_int_equal(mr_ssh_url_parse("ssh://h", &u, err, sizeof(err)), 0);
	assert_true(u.user[0] != '\0'); /* getpwuid's name */
}

static void test_url_bad(void **state)
{
	static const struct {
		const char *in, *says;
	} cases[] = {
		{ "db1:4433", "not an ssh://" },
		{ "ssh://", "no host" },
		{ "ssh://@h", "bad user" },
		{ "ssh://a:b@h", "bad user" },
		{ "ssh://u@", "no host" },
		{ "ssh://u@h:", "bad port" },
		{ "ssh://u@h:0", "bad port" },
		{ "ssh://u@h:65536", "bad port" },
		{ "ssh://u@h:99999999999999999999", "bad port" },
		{ "ssh://u@h:22x", "bad port" },
		{ "ssh://u@h/", "must name a socket" },
		{ "ssh://u@h/dir/", "must name a socket" },
		{ "ssh://u@[::1", "bad [address]" },
		{ "ssh://u@[]:22", "bad [address]" },
		{ "ssh://u@[::1]x", "unexpected characters" },
		{ "ssh://u@h /x", "spaces or control" },
		{ "ssh://u@h/x\ny", "spaces or control" },
		{ "ssh://u@h/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "longer than" },
	};
	struct mr_ssh_url u;
	char err[200];

	(void)state;
	setenv("USER", "tester", 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_int_equal(mr_ssh_url_parse(cases[i].in, &u, err, sizeof(err)), -EINVAL);
		if (!strstr(err, cases[i].says))
			fail_msg("%s: \"%s\" does not say \"%s\"", cases[i].in, err, cases[i].says);
	}
	assert_int_equal(mr_ssh_url_parse(NULL, &u, err, sizeof(err)), -EINVAL);
}

/* Nothing listens on the port: the TCP error comes back as itself, with a sentence. */
static void test_connect_refused(void **state)
{
	struct mr_ssh_url u;
	struct mr_ssh *c = (struct mr_ssh *)&u;
	struct mr_ssh_opts o = { .known_hosts = "/nonexistent", .global_known_hosts = "", .no_agent = true };
	char err[300];

	(void)state;
	assert_int_equal(mr_ssh_url_parse("ssh://u@127.0.0.1:1/x.sock", &u, err, sizeof(err)), 0);
	assert_int_equal(mr_ssh_connect(&u, &o, &c, err, sizeof(err)), -ECONNREFUSED);
	assert_null(c);
	assert_non_null(strstr(err, "cannot connect to 127.0.0.1 port 1"));
	mr_ssh_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_ok),
		cmocka_unit_test(test_url_default_user_without_env),
		cmocka_unit_test(test_url_bad),
		cmocka_unit_test(test_connect_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
