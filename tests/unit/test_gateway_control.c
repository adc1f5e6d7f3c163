// SPDX-License-Identifier: MIT
/*
 * The control socket: the request parser on a table of good and bad
 * lines, the socket path syntax, the status builders' shape, and the
 * server itself on a temporary socket (mode, stale and live sockets,
 * status, reload accepted and refused, bad and oversized requests).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/control.h"

static void test_parse_table(void **state)
{
	static const struct {
		const char *in;
		int want;
		enum gw_control_cmd cmd;
	} cases[] = {
		{ "{\"cmd\":\"status\"}", 0, GW_CTL_STATUS },
		{ "{\"cmd\":\"reload\"}", 0, GW_CTL_RELOAD },
		{ "  { \"cmd\" : \"status\" }  \r", 0, GW_CTL_STATUS },
		{ "{\"cmd\":\"st\\u0061tus\"}", 0, GW_CTL_STATUS }, /* JSON escapes are JSON */
		{ "{\"cmd\":\"stop\"}", -EOPNOTSUPP, GW_CTL_NONE },
		{ "{\"cmd\":\"STATUS\"}", -EOPNOTSUPP, GW_CTL_NONE },
		{ "{\"cmd\":\"\"}", -EOPNOTSUPP, GW_CTL_NONE },
		{ "", -EBADMSG, GW_CTL_NONE },
		{ "   ", -EBADMSG, GW_CTL_NONE },
		{ "status", -EBADMSG, GW_CTL_NONE },
		{ "{}", -EBADMSG, GW_CTL_NONE },                                     /* no cmd */
		{ "{\"cmd\":1}", -EBADMSG, GW_CTL_NONE },                            /* not a string */
		{ "{\"cmd\":null}", -EBADMSG, GW_CTL_NONE },
		{ "{\"cmd\":[\"status\"]}", -EBADMSG, GW_CTL_NONE },
		{ "{\"cmd\":\"status\",\"x\":1}", -EBADMSG, GW_CTL_NONE },            /* unknown key */
		{ "{\"cmd\":\"status\"} {\"cmd\":\"reload\"}", -EBADMSG, GW_CTL_NONE }, /* two objects */
		{ "{\"cmd\":\"status\"}x", -EBADMSG, GW_CTL_NONE },
		{ "{\"cmd\":\"status\"", -EBADMSG, GW_CTL_NONE },                    /* cut */
		{ "{\"cmd\":\"status\",}", -EBADMSG, GW_CTL_NONE },                  /* trailing comma (strict) */
		{ "{'cmd':'status'}", -EBADMSG, GW_CTL_NONE },
		{ "[\"status\"]", -EBADMSG, GW_CTL_NONE },
		{ "\"status\"", -EBADMSG, GW_CTL_NONE },
		{ "42", -EBADMSG, GW_CTL_NONE },
		{ "{\"cmd\":{\"a\":{\"b\":1}}}", -EBADMSG, GW_CTL_NONE },            /* deeper than a request */
		{ "{\"cmd\":\"status\"}\n", 0, GW_CTL_STATUS },                     /* white space after the object */
		/* job commands (a running migrate's socket) */
		{ "{\"cmd\":\"info\"}", 0, GW_CTL_JOB },
		{ "{\"cmd\":\"postcopy\"}", 0, GW_CTL_JOB },
		{ "{\"cmd\":\"cancel\"}", 0, GW_CTL_JOB },
		{ "{\"cmd\":\"set-speed\",\"arg\":\"64M\"}", 0, GW_CTL_JOB },
		{ "{\"arg\":\"300\",\"cmd\":\"set-downtime\"}", 0, GW_CTL_JOB },
		{ "{\"cmd\":\"set-speed\"}", -EBADMSG, GW_CTL_NONE },                   /* needs arg */
		{ "{\"cmd\":\"info\",\"arg\":\"x\"}", -EBADMSG, GW_CTL_NONE },          /* takes none */
		{ "{\"cmd\":\"status\",\"arg\":\"x\"}", -EBADMSG, GW_CTL_NONE },
		{ "{\"cmd\":\"set-speed\",\"arg\":64}", -EBADMSG, GW_CTL_NONE },        /* not a string */
		{ "{\"cmd\":\"set-speed\",\"arg\":\"\"}", -EBADMSG, GW_CTL_NONE },      /* empty */
		{ "{\"cmd\":\"set-speed\",\"arg\":\"1\\u0001\"}", -EBADMSG, GW_CTL_NONE }, /* control character */
		{ "{\"cmd\":\"set-speed\",\"arg\":\"1234567890123456789012345678901234567890123456789012345678901234\"}",
		  -EBADMSG, GW_CTL_NONE },                                              /* 64 bytes: one too many */
		{ "{\"cmd\":\"set-speed\",\"arg\":\"1\",\"arg\":\"2\"}", 0, GW_CTL_JOB }, /* json-c keeps the last */
	};
	struct gw_control_req req;
	char why[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r;

		why[0] = '\0';
		req.cmd = (enum gw_control_cmd)99;
		r = gw_control_parse_request(cases[i].in, strlen(cases[i].in), &req, why, sizeof(why));
		if (r != cases[i].want || req.cmd != cases[i].cmd)
			fail_msg("case %zu %s: got %d cmd %d (%s), want %d cmd %d", i, cases[i].in, r, req.cmd, why,
				 cases[i].want, cases[i].cmd);
		if (r < 0 && !why[0])
			fail_msg("case %zu: no reason given", i);
	}
	{
		static const char nul[] = "{\"cmd\":\"status\"}\0";

		assert_int_equal(gw_control_parse_request(nul, sizeof(nul) - 1, &req, why, sizeof(why)), -EBADMSG);
	}
	{
		char *big = malloc(GW_CONTROL_MAX_REQUEST + 1);

		memset(big, ' ', GW_CONTROL_MAX_REQUEST);
		memcpy(big, "{\"cmd\":\"status\"}", 16);
		assert_int_equal(gw_control_parse_request(big, GW_CONTROL_MAX_REQUEST - 1, &req, why, sizeof(why)), 0);
		assert_int_equal(gw_control_parse_request(big, GW_CONTROL_MAX_REQUEST, &req, why, sizeof(why)), -EMSGSIZE);
		free(big);
	}
}

static void test_path(void **state)
{
	char p[108], long_path[200];

	(void)state;
	assert_int_equal(gw_control_parse_path("unix:/run/x.sock", p, sizeof(p)), 0);
	assert_string_equal(p, "/run/x.sock");
	assert_int_equal(gw_control_parse_path("/run/x.sock", p, sizeof(p)), 0);
	assert_string_equal(p, "/run/x.sock");
	assert_int_equal(gw_control_parse_path("rel/x.sock", p, sizeof(p)), 0);
	assert_int_equal(gw_control_parse_path("unix:", p, sizeof(p)), -EINVAL);
	assert_int_equal(gw_control_parse_path("", p, sizeof(p)), -EINVAL);
	assert_int_equal(gw_control_parse_path("127.0.0.1:9000", p, sizeof(p)), -EINVAL);
	assert_int_equal(gw_control_parse_path("tcp:x", p, sizeof(p)), -EINVAL);
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	assert_int_equal(gw_control_parse_path(long_path, p, sizeof(p)), -ENAMETOOLONG);
	assert_int_equal(gw_control_parse_path("/a/b", p, 4), -ENAMETOOLONG);
}

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("no \"%s\" in %s", key, json_object_to_json_string(o));
	return v;
}

static void test_builders(void **state)
{
	struct json_object *st = json_object_new_object(), *s, *a;
	struct gw_status_conn conns[2] = { { .index = 0, .live = true, .wire_in = 50 },
					   { .index = 1, .live = false, .rejoins = 3, .wire_in = 50 } };

	(void)state;
	assert_int_equal(gw_status_set_daemon(st, &(struct gw_status_daemon){ .version = "v", .config_generation = 4 }),
			 0);
	assert_int_equal(gw_status_add_listener(st, "tcp", "0.0.0.0:4433"), 0);
	assert_int_equal(gw_status_add_listener(st, "unix", "/run/s"), 0);
	assert_int_equal(gw_status_add_limit(st, "sessions", 3, 12), 0);
	assert_int_equal(gw_status_add_limit(st, "unlimited", 3, 0), 0);
	assert_int_equal(gw_status_add_session(st, &(struct gw_status_session){
				 .id = 0xabcULL, .identity = "CN=a \"quoted\"", .target = "vm", .state = "running",
				 .bytes_in = 300, .bytes_out = 100, .wire_in = 100, .wire_out = 100,
				 .connections_expected = 2, .conns = conns, .nconns = 2, .streams_open = 1,
				 .streams_verified = 2 }),
			 0);
	assert_int_equal(get(get(st, "daemon"), "config_generation") != NULL, 1);
	assert_int_equal(json_object_get_int(get(get(st, "daemon"), "config_generation")), 4);
	assert_null(get(get(st, "daemon"), "last_reload"));
	assert_int_equal(json_object_get_int(get(get(st, "daemon"), "pid")), getpid());
	assert_int_equal(json_object_array_length(get(st, "listeners")), 2);
	a = get(st, "limits");
	assert_true(json_object_get_double(get(json_object_array_get_idx(a, 0), "ratio")) == 0.25);
	assert_null(get(json_object_array_get_idx(a, 1), "ratio"));
	s = json_object_array_get_idx(get(st, "sessions"), 0);
	assert_string_equal(json_object_get_string(get(s, "id")), "0000000000000abc");
	assert_string_equal(json_object_get_string(get(s, "identity")), "CN=a \"quoted\"");
	assert_true(json_object_get_double(get(s, "compression_ratio")) == 2.0);
	assert_int_equal(json_object_get_int(get(s, "connections_live")), 1);
	assert_int_equal(json_object_get_int(get(s, "rejoins")), 3);
	assert_int_equal(json_object_array_length(get(s, "connections")), 2);
	assert_int_equal(json_object_get_int(get(get(s, "streams"), "verified")), 2);
	assert_null(get(s, "error"));
	/* the JSON text round-trips (json-c escapes the identity's quotes) */
	{
		struct json_object *back = json_tokener_parse(json_object_to_json_string(st));

		assert_non_null(back);
		assert_true(json_object_equal(back, st));
		json_object_put(back);
	}
	json_object_put(st);
}

/* ---- the server ---- */

struct fake {
	int status_calls, reload_calls;
	int reload_result;
};

static int fake_status(void *ctx, struct json_object *st)
{
	struct fake *f = ctx;

	f->status_calls++;
	return gw_status_add_session(st, &(struct gw_status_session){ .id = 7, .identity = "i", .target = "t",
								      .state = "running", .age_s = 2, .bytes_in = 2000 });
}

static int fake_reload(void *ctx, char *msg, size_t len)
{
	struct fake *f = ctx;

	f->reload_calls++;
	snprintf(msg, len, f->reload_result ? "line 3: bad certificate" : "reloaded");
	return f->reload_result;
}

/* Sends raw <req> bytes and returns the raw answer (malloc'ed, maybe ""). */
static char *raw(const char *path, const char *req, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *buf = calloc(1, 65536);
	size_t got = 0;
	ssize_t n;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	(void)!write(fd, req, len);
	shutdown(fd, SHUT_WR); /* the request ends here, newline or not */
	while ((n = read(fd, buf + got, 65535 - got)) > 0)
		got += (size_t)n;
	close(fd);
	return buf;
}

static void test_server(void **state)
{
	struct fake f = { 0 };
	struct gw_control_ops ops = { .status = fake_status, .reload = fake_reload, .ctx = &f };
	struct gw_control *c = NULL, *c2 = NULL;
	struct json_object *reply = NULL, *s;
	char dir[] = "/tmp/mr-ctl-test.XXXXXX", path[128], why[512];
	struct stat st;
	mode_t old;
	char *ans, *big;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sub/ctl.sock", dir);
	old = umask(0);
	assert_int_equal(gw_control_start(&c, path, &ops, why, sizeof(why)), 0);
	umask(old);
	/* 0600 even under umask 0, its new directory 0700 */
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	snprintf(why, sizeof(why), "%s/sub", dir);
	assert_int_equal(lstat(why, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);

	/* a second server on a live socket is refused */
	assert_int_equal(gw_control_start(&c2, path, &ops, why, sizeof(why)), -EADDRINUSE);
	assert_non_null(strstr(why, "another daemon"));

	assert_int_equal(gw_control_call(path, "status", 5000, &reply, why, sizeof(why)), 0);
	assert_true(json_object_get_boolean(get(reply, "ok")));
	s = json_object_array_get_idx(get(get(reply, "status"), "sessions"), 0);
	assert_string_equal(json_object_get_string(get(s, "id")), "0000000000000007");
	assert_true(json_object_get_double(get(s, "rate_in")) > 0); /* first sample: the average, 1000 B/s */
	json_object_put(reply);

	assert_int_equal(gw_control_call(path, "reload", 5000, &reply, why, sizeof(why)), 0);
	assert_true(json_object_get_boolean(get(reply, "ok")));
	assert_string_equal(json_object_get_string(get(reply, "message")), "reloaded");
	json_object_put(reply);
	f.reload_result = -EINVAL;
	assert_int_equal(gw_control_call(path, "reload", 5000, &reply, why, sizeof(why)), 0);
	assert_false(json_object_get_boolean(get(reply, "ok")));
	assert_string_equal(json_object_get_string(get(reply, "error")), "line 3: bad certificate");
	assert_int_equal(json_object_get_int(get(reply, "errno")), EINVAL);
	json_object_put(reply);
	assert_int_equal(f.reload_calls, 2);

	assert_int_equal(gw_control_call(path, "shutdown", 5000, &reply, why, sizeof(why)), 0);
	assert_false(json_object_get_boolean(get(reply, "ok")));
	assert_int_equal(json_object_get_int(get(reply, "errno")), EOPNOTSUPP);
	json_object_put(reply);

	ans = raw(path, "not json\n", 9);
	assert_non_null(strstr(ans, "\"ok\":false"));
	assert_int_equal(ans[strlen(ans) - 1], '\n');
	free(ans);
	/* a request without its newline, then the client's FIN, still counts */
	ans = raw(path, "{\"cmd\":\"status\"}", 16);
	assert_non_null(strstr(ans, "\"ok\":true"));
	free(ans);
	big = malloc(GW_CONTROL_MAX_REQUEST + 100);
	memset(big, ' ', GW_CONTROL_MAX_REQUEST + 100);
	ans = raw(path, big, GW_CONTROL_MAX_REQUEST + 100);
	assert_non_null(strstr(ans, "too long"));
	free(ans);
	free(big);

	gw_control_stop(c);
	assert_int_equal(lstat(path, &st), -1); /* removed */
	assert_int_equal(gw_control_call(path, "status", 1000, &reply, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, path));

	/* a stale socket (nothing listens) is replaced */
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		close(fd);
	}
	assert_int_equal(gw_control_call(path, "status", 1000, &reply, why, sizeof(why)), -ECONNREFUSED);
	assert_int_equal(gw_control_start(&c, path, &ops, why, sizeof(why)), 0);
	assert_int_equal(gw_control_call(path, "status", 5000, &reply, why, sizeof(why)), 0);
	json_object_put(reply);
	gw_control_stop(c);

	/* a file that is not a socket is left alone */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(gw_control_start(&c, path, &ops, why, sizeof(why)), -EEXIST);
	assert_int_equal(gw_control_call(path, "status", 1000, &reply, why, sizeof(why)), -ECONNREFUSED);
	unlink(path);
	snprintf(why, sizeof(why), "%s/sub", dir);
	rmdir(why);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_builders),
		cmocka_unit_test(test_server),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
