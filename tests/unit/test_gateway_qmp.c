// SPDX-License-Identifier: MIT
/*
 * The QMP client: the pure reply parser on byte tables, then the client
 * against a scripted fake monitor on a socketpair (a thread plays QEMU),
 * and qemu.c's wait for MIGRATION events.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/log.h"
#include "gateway/qemu.h"
#include "gateway/qmp.h"

/* Feeds <in> in pieces of <chunk> bytes (0: all); counts messages until the end or an error. */
static int feed_all(const char *in, size_t n, size_t chunk, size_t cap, int *msgs)
{
	struct qmp_parser p;
	struct json_object *m;
	size_t len;
	int r = 0, guard;

	*msgs = 0;
	assert_int_equal(qmp_parser_init(&p), 0);
	if (cap)
		p.max_msg = cap;
	for (guard = 0; n && guard < 100000; guard++) {
		len = chunk && chunk < n ? chunk : n;
		r = qmp_parser_feed(&p, in, len, &m);
		if (r < 0)
			break;
		if (m) {
			(*msgs)++;
			json_object_put(m);
		}
		in += r;
		n -= (size_t)r;
		r = 0;
	}
	qmp_parser_fini(&p);
	return r;
}

static void test_parser_table(void **state)
{
	static const struct {
		const char *in;
		int want; /* 0 or -errno */
		int msgs;
	} cases[] = {
	    {"{\"return\": {}}\r\n", 0, 1},
	    {"{\"a\": 1}{\"b\": [1, 2, {\"c\": null}]}\r\n{\"d\": \"\\u00e9\"}", 0, 3},
	    {" \r\n\t ", 0, 0},
	    {"", 0, 0},
	    {"{\"return\": {}, \"id\": 7", 0, 0}, /* incomplete: needs more */
	    {"[1, 2]", -EBADMSG, 0},		  /* not an object */
	    {"\"text\"", -EBADMSG, 0},		  /* not an object */
	    {"{\"a\": 1}}", -EBADMSG, 1},	  /* stray brace after a good message */
	    {"{\"a\": 1,}", -EBADMSG, 0},	  /* trailing comma */
	    {"{\"a\": tru}", -EBADMSG, 0},
	    {"{\"a\": 01}", -EBADMSG, 0},
	    {"{\"a\": 1} /* c */ {\"b\": 2}", -EBADMSG, 1},
	};
	size_t i, chunk;
	int r, msgs, bad = 0;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (chunk = 0; chunk < 8; chunk++) {
			r = feed_all(cases[i].in, strlen(cases[i].in), chunk, 0, &msgs);
			if (r != cases[i].want || msgs != cases[i].msgs) {
				print_error("case %zu chunk %zu: r %d msgs %d\n", i, chunk, r, msgs);
				bad++;
			}
		}
	}
	assert_int_equal(bad, 0);
}

static void test_parser_limits(void **state)
{
	char buf[4096];
	size_t i;
	int msgs;

	(void)state;
	/* a NUL byte would end json-c's input early */
	assert_int_equal(feed_all("{\"a\": \"x\0y\"}", 12, 0, 0, &msgs), -EBADMSG);
	/* size cap, whether the bytes come at once or in pieces */
	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "{\"a\": \"", 7);
	memcpy(buf + sizeof(buf) - 2, "\"}", 2);
	assert_int_equal(feed_all(buf, sizeof(buf), 0, 1024, &msgs), -EMSGSIZE);
	assert_int_equal(feed_all(buf, sizeof(buf), 100, 1024, &msgs), -EMSGSIZE);
	assert_int_equal(feed_all(buf, sizeof(buf), 0, 0, &msgs), 0);
	assert_int_equal(msgs, 1);
	/* nesting deeper than QMP_MAX_DEPTH */
	for (i = 0; i < 200; i++) {
		memcpy(buf + i * 6, "{\"a\": ", 6);
		buf[200 * 6 + 200 - 1 - i] = '}';
	}
	assert_int_equal(feed_all(buf, 200 * 7, 0, 0, &msgs), -EBADMSG);
}

static void test_classify(void **state)
{
	static const struct {
		const char *json;
		int kind;
		int64_t id;
		const char *err;
	} cases[] = {
	    {"{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}", QMP_MSG_GREETING, -1, NULL},
	    {"{\"return\": {}, \"id\": 7}", QMP_MSG_RETURN, 7, NULL},
	    {"{\"return\": [1]}", QMP_MSG_RETURN, -1, NULL},
	    {"{\"return\": {}, \"id\": \"x\"}", QMP_MSG_RETURN, -2, NULL},
	    {"{\"id\": 3, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command x has not been found\"}}",
	     QMP_MSG_ERROR, 3, "CommandNotFound: The command x has not been found"},
	    {"{\"error\": {\"class\": \"GenericError\", \"desc\": \"a\\nb\\u001bc\"}}", QMP_MSG_ERROR, -1,
	     "GenericError: a?b?c"},
	    {"{\"error\": {\"class\": \"GenericError\", \"desc\": \"caf\\u00e9\"}}", QMP_MSG_ERROR, -1,
	     "GenericError: caf??"},
	    {"{\"error\": {}}", QMP_MSG_ERROR, -1, "Error: (no description)"},
	    {"{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}", QMP_MSG_EVENT, -1, NULL},
	    {"{\"event\": 5}", -EBADMSG, -1, NULL},
	    {"{\"QMP\": 1}", -EBADMSG, -1, NULL},
	    {"{\"error\": \"x\"}", -EBADMSG, -1, NULL},
	    {"{}", -EBADMSG, -1, NULL},
	};
	struct json_object *o;
	char err[QMP_ERR_MAX];
	int64_t id;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		o = json_tokener_parse(cases[i].json);
		assert_non_null(o);
		err[0] = '\0';
		assert_int_equal(qmp_msg_classify(o, &id, err, sizeof(err)), cases[i].kind);
		if (cases[i].kind == QMP_MSG_RETURN || cases[i].kind == QMP_MSG_ERROR)
			assert_int_equal(id, cases[i].id);
		if (cases[i].err)
			assert_string_equal(err, cases[i].err);
		json_object_put(o);
	}
	assert_int_equal(qmp_msg_classify(NULL, NULL, NULL, 0), -EBADMSG);
	assert_string_equal(qmp_event_name(NULL), "");
}

/* ---- a scripted fake monitor ---- */

#define GREETING                                                                                                       \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, \"capabilities\": []}}\r\n"

/* One step: wait for command <expect>, then send <reply> with "@ID@" replaced by its id. */
struct step {
	const char *expect; /* NULL: send only, do not read */
	const char *reply;  /* NULL: send nothing; "CLOSE": close the socket */
	int want_fd;	    /* the command must carry an fd; the server writes "ok" into it */
};

struct fake {
	int fd;
	const struct step *steps;
	int failed;
	char why[256];
};

static int read_cmd(int fd, struct qmp_parser *p, struct json_object **cmd, int *got_fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh;
	struct iovec iov;
	struct cmsghdr *c;
	char b;
	ssize_t n;
	int r;

	*got_fd = -1;
	/* byte by byte, so nothing of the next command is read ahead */
	for (;;) {
		memset(&mh, 0, sizeof(mh));
		iov.iov_base = &b;
		iov.iov_len = 1;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		n = recvmsg(fd, &mh, 0);
		if (n <= 0)
			return -ECONNRESET;
		for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
				memcpy(got_fd, CMSG_DATA(c), sizeof(int));
		r = qmp_parser_feed(p, &b, 1, cmd);
		if (r < 0)
			return r;
		if (*cmd)
			return 0;
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct qmp_parser p;
	struct json_object *cmd = NULL, *v;
	const struct step *s;
	char out[1024], idtext[32];
	const char *at, *exec;
	size_t n;
	int fd = -1;

	if (qmp_parser_init(&p) < 0)
		return NULL;
	if (write(f->fd, GREETING, strlen(GREETING)) < 0)
		goto fail;
	for (s = f->steps; s->expect || s->reply; s++) {
		snprintf(idtext, sizeof(idtext), "null");
		if (s->expect) {
			if (read_cmd(f->fd, &p, &cmd, &fd) < 0)
				goto fail;
			exec = json_object_object_get_ex(cmd, "execute", &v) ? json_object_get_string(v) : "";
			if (strcmp(exec, s->expect)) {
				snprintf(f->why, sizeof(f->why), "got %s, expected %s", exec, s->expect);
				goto fail;
			}
			if (json_object_object_get_ex(cmd, "id", &v))
				snprintf(idtext, sizeof(idtext), "%s", json_object_to_json_string(v));
			json_object_put(cmd);
			cmd = NULL;
			if (s->want_fd && (fd < 0 || write(fd, "ok", 2) != 2)) {
				snprintf(f->why, sizeof(f->why), "no fd with %s", s->expect);
				goto fail;
			}
			if (fd >= 0)
				close(fd);
			fd = -1;
		}
		if (!s->reply)
			continue;
		if (!strcmp(s->reply, "CLOSE"))
			break;
		/* replace each @ID@ */
		n = 0;
		for (at = s->reply; *at && n < sizeof(out) - 40;) {
			if (!strncmp(at, "@ID@", 4)) {
				n += (size_t)snprintf(out + n, sizeof(out) - n, "%s", idtext);
				at += 4;
			} else {
				out[n++] = *at++;
			}
		}
		if (write(f->fd, out, n) != (ssize_t)n)
			goto fail;
	}
	goto done;
fail:
	f->failed = 1;
done:
	json_object_put(cmd);
	qmp_parser_fini(&p);
	shutdown(f->fd, SHUT_RDWR);
	return NULL;
}

struct rig {
	struct fake f;
	pthread_t th;
	struct qmp *q;
};

static void rig_start(struct rig *g, const struct step *steps, int timeout_ms)
{
	char err[QMP_ERR_MAX];
	int sv[2];

	memset(g, 0, sizeof(*g));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	g->f.fd = sv[1];
	g->f.steps = steps;
	assert_int_equal(pthread_create(&g->th, NULL, fake_main, &g->f), 0);
	assert_int_equal(qmp_open_fd(&g->q, sv[0], timeout_ms, err, sizeof(err)), 0);
}

static void rig_stop(struct rig *g)
{
	qmp_close(g->q);
	pthread_join(g->th, NULL);
	close(g->f.fd);
	if (g->f.failed)
		fail_msg("fake monitor: %s", g->f.why);
}

static void test_client_basic(void **state)
{
	static const struct step steps[] = {
	    {"qmp_capabilities", "{\"return\": {}, \"id\": @ID@}\r\n", 0},
	    /* an event and a stale reply before the answer */
	    {"query-status",
	     "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"STOP\"}\r\n"
	     "{\"return\": {\"status\": \"old\"}, \"id\": 999}\r\n"
	     "{\"return\": {\"status\": \"paused\", \"running\": false}, \"id\": @ID@}\r\n",
	     0},
	    {"no-such", "{\"id\": @ID@, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"nope\"}}", 0},
	    /* a reply without an id answers the command in flight */
	    {"migrate", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}", 0},
	    {"getfd", "{\"return\": {}, \"id\": @ID@}", 1},
	    {"cont", "{\"return\": {}, \"id\": @ID@}{\"event\": \"RESUME\", \"timestamp\": {}}", 0},
	    {NULL, "CLOSE", 0},
	};
	struct json_object *ret = NULL, *ev = NULL, *v;
	char err[QMP_ERR_MAX], buf[4];
	struct rig g;
	int pfd[2];

	(void)state;
	rig_start(&g, steps, 2000);
	assert_int_equal(qmp_cmd(g.q, "query-status", NULL, &ret, err, sizeof(err)), 0);
	assert_true(json_object_object_get_ex(ret, "status", &v));
	assert_string_equal(json_object_get_string(v), "paused");
	json_object_put(ret);
	assert_int_equal(qmp_cmd(g.q, "no-such", NULL, &ret, err, sizeof(err)), -EREMOTEIO);
	assert_null(ret);
	assert_string_equal(err, "CommandNotFound: nope");
	assert_int_equal(qmp_cmdf(g.q, "migrate", NULL, err, sizeof(err), "{\"uri\": \"%s\"}", "fd:x"), -EREMOTEIO);
	assert_string_equal(err, "GenericError: JSON parse error");
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(qmp_getfd(g.q, pfd[1], "mig", err, sizeof(err)), 0);
	close(pfd[1]);
	assert_int_equal(read(pfd[0], buf, sizeof(buf)), 2);
	close(pfd[0]);
	assert_int_equal(qmp_cmd(g.q, "cont", NULL, NULL, err, sizeof(err)), 0);
	/* STOP was queued during query-status; RESUME is still on the socket */
	assert_int_equal(qmp_next_event(g.q, 1000, &ev), 0);
	assert_string_equal(qmp_event_name(ev), "STOP");
	json_object_put(ev);
	assert_int_equal(qmp_next_event(g.q, 1000, &ev), 0);
	assert_string_equal(qmp_event_name(ev), "RESUME");
	json_object_put(ev);
	/* then the fake monitor closes */
	assert_int_equal(qmp_next_event(g.q, 1000, &ev), -ECONNRESET);
	assert_int_equal(qmp_cmd(g.q, "query-status", NULL, NULL, err, sizeof(err)), -ECONNRESET);
	rig_stop(&g);
}

static long elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void test_client_timeout(void **state)
{
	static const struct step steps[] = {
	    {"qmp_capabilities", "{\"return\": {}, \"id\": @ID@}", 0},
	    {"query-status", NULL, 0}, /* never answered */
	    {"query-migrate",
	     "{\"return\": {\"status\": \"late\"}, \"id\": 2}" /* the late answer */
	     "{\"return\": {\"status\": \"none\"}, \"id\": @ID@}",
	     0},
	    {"bad", "{\"return\": {}, \"id\": @ID@} [1]", 0},
	    {NULL, "CLOSE", 0},
	};
	struct json_object *ret = NULL, *ev = NULL, *v;
	char err[QMP_ERR_MAX];
	struct timespec t0;
	struct rig g;

	(void)state;
	rig_start(&g, steps, 300);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(qmp_cmd(g.q, "query-status", NULL, NULL, err, sizeof(err)), -ETIMEDOUT);
	assert_in_range(elapsed_ms(&t0), 250, 2000);
	assert_int_equal(qmp_next_event(g.q, 0, &ev), -ETIMEDOUT);
	assert_int_equal(qmp_cmd(g.q, "query-migrate", NULL, &ret, err, sizeof(err)), 0);
	assert_true(json_object_object_get_ex(ret, "status", &v));
	assert_string_equal(json_object_get_string(v), "none");
	json_object_put(ret);
	/* the reply is fine; the array after it breaks the stream */
	assert_int_equal(qmp_cmd(g.q, "bad", NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(qmp_next_event(g.q, 1000, &ev), -EBADMSG);
	rig_stop(&g);
}

/* qmp_cmd_many: more commands than the window, answered in order, with the oddities QEMU's stream may hold. */
static void test_client_many(void **state)
{
	enum { N = 75 };
	static char replies[N][256];
	static struct step steps[N + 3];
	struct json_object *args[N], *rets[N], *ev = NULL;
	char err[QMP_ERR_MAX];
	int rcs[N];
	struct rig g;

	(void)state;
	memset(steps, 0, sizeof(steps));
	steps[0] = (struct step){"qmp_capabilities", "{\"return\": {}, \"id\": @ID@}", 0};
	for (int i = 0; i < N; i++) {
		if (i == 3)
			snprintf(replies[i], sizeof(replies[i]),
				 "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no f3\"}, \"id\": @ID@}");
		else if (i == 40) /* no id: QEMU could not parse it; answers the oldest in flight */
			snprintf(replies[i], sizeof(replies[i]),
				 "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}");
		else if (i == 50) /* an event and a stale reply first */
			snprintf(replies[i], sizeof(replies[i]),
				 "{\"event\": \"STOP\", \"timestamp\": {}}{\"return\": 7, \"id\": 9999}"
				 "{\"return\": %s, \"id\": @ID@}",
				 i % 2 ? "true" : "false");
		else
			snprintf(replies[i], sizeof(replies[i]), "{\"return\": %s, \"id\": @ID@}",
				 i % 2 ? "true" : "false");
		steps[1 + i] = (struct step){"qom-get", replies[i], 0};
	}
	steps[1 + N] = (struct step){NULL, "CLOSE", 0};
	for (int i = 0; i < N; i++) {
		args[i] = json_object_new_object();
		json_object_object_add(args[i], "property", json_object_new_int(i));
	}
	rig_start(&g, steps, 2000);
	assert_int_equal(qmp_cmd_many(g.q, "qom-get", N, args, rets, rcs, err, sizeof(err)), 0);
	for (int i = 0; i < N; i++) {
		if (i == 3 || i == 40) {
			assert_int_equal(rcs[i], -EREMOTEIO);
			assert_null(rets[i]);
			continue;
		}
		assert_int_equal(rcs[i], 0);
		assert_true(json_object_is_type(rets[i], json_type_boolean));
		assert_int_equal(json_object_get_boolean(rets[i]), i % 2);
		json_object_put(rets[i]);
	}
	/* the event was queued, and the stream is still in step */
	assert_int_equal(qmp_next_event(g.q, 1000, &ev), 0);
	assert_string_equal(qmp_event_name(ev), "STOP");
	json_object_put(ev);
	/* the monitor closes: a batch fails as a whole, with what arrived in rets */
	assert_int_equal(qmp_cmd_many(g.q, "qom-get", 2, args, rets, rcs, err, sizeof(err)), -ECONNRESET);
	assert_non_null(strstr(err, "qmp qom-get: ")); /* closed while sending or while waiting */
	assert_int_equal(qmp_cmd_many(g.q, "qom-get", 0, args, rets, rcs, err, sizeof(err)), 0);
	for (int i = 0; i < N; i++)
		json_object_put(args[i]);
	rig_stop(&g);
}

/* qemu.c: the MIGRATION events migrate and the qmp: target wait for. */
static void test_migration_events(void **state)
{
	static const struct step steps[] = {
	    {"qmp_capabilities", "{\"return\": {}, \"id\": @ID@}", 0},
	    /* events around the reply: the ones before it are queued, the rest stay on the socket */
	    {"migrate-set-capabilities",
	     "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"setup\"}, \"timestamp\": {}}"
	     "{\"return\": {}, \"id\": @ID@}"
	     "{\"event\": \"STOP\", \"timestamp\": {}}"
	     "{\"event\": \"MIGRATION_PASS\", \"data\": {\"pass\": 2}, \"timestamp\": {}}"
	     "{\"event\": \"MIGRATION\", \"data\": {}, \"timestamp\": {}}"
	     "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}, \"timestamp\": {}}",
	     0},
	    {"query-migrate", "{\"return\": {\"status\": \"completed\", \"total-time\": 12}, \"id\": @ID@}", 0},
	    {NULL, "CLOSE", 0},
	};
	struct qemu_mig_info mi;
	char err[QMP_ERR_MAX], status[32];
	struct rig g;

	(void)state;
	rig_start(&g, steps, 2000);
	assert_int_equal(qemu_enable_migration_events(g.q, err, sizeof(err)), 0);
	assert_int_equal(qemu_wait_migration_event(g.q, 1000, status, sizeof(status)), 0);
	assert_string_equal(status, "setup");
	/* STOP, MIGRATION_PASS and a MIGRATION without a status are passed over */
	assert_int_equal(qemu_wait_migration_event(g.q, 1000, status, sizeof(status)), 0);
	assert_string_equal(status, "completed");
	assert_int_equal(qemu_wait_migration_event(g.q, 50, status, sizeof(status)), -ETIMEDOUT);
	assert_int_equal(qemu_query_migrate(g.q, &mi, err, sizeof(err)), 0);
	assert_string_equal(mi.status, "completed");
	assert_int_equal(mi.total_time, 12);
	/* the monitor closes */
	assert_int_equal(qemu_wait_migration_event(g.q, 1000, status, sizeof(status)), -ECONNRESET);
	rig_stop(&g);
}

/* TCG before QEMU 9.0 is told apart from KVM, from 9.0, and from a QEMU without the commands. */
static void test_tcg_stale_risk(void **state)
{
#define KVM(on) "{\"return\": {\"enabled\": " on ", \"present\": true}, \"id\": @ID@}"
#define VERSION(maj, min, mic)                                                                                         \
	"{\"return\": {\"qemu\": {\"major\": " maj ", \"minor\": " min ", \"micro\": " mic                             \
	"}, \"package\": \"\"}, \"id\": @ID@}"
	static const struct step steps[] = {
	    {"qmp_capabilities", "{\"return\": {}, \"id\": @ID@}", 0},
	    {"query-kvm", KVM("true"), 0},
	    {"query-kvm", KVM("false"), 0},
	    {"query-version", VERSION("7", "2", "22"), 0},
	    {"query-kvm", KVM("false"), 0},
	    {"query-version", VERSION("9", "0", "0"), 0},
	    {"query-kvm", "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}, \"id\": @ID@}", 0},
	    {"query-kvm", KVM("false"), 0},
	    {"query-version", "{\"return\": {}, \"id\": @ID@}", 0},
	    {"query-kvm", "CLOSE", 0},
	    {NULL, NULL, 0},
	};
#undef KVM
#undef VERSION
	char err[QMP_ERR_MAX], ver[32] = "";
	struct rig g;

	(void)state;
	rig_start(&g, steps, 2000);
	assert_int_equal(qemu_tcg_stale_risk(g.q, ver, sizeof(ver), err, sizeof(err)), 0); /* KVM */
	assert_int_equal(qemu_tcg_stale_risk(g.q, ver, sizeof(ver), err, sizeof(err)), 1); /* TCG, 7.2 */
	assert_string_equal(ver, "7.2.22");
	assert_int_equal(qemu_tcg_stale_risk(g.q, ver, sizeof(ver), err, sizeof(err)), 0); /* TCG, 9.0 */
	assert_int_equal(qemu_tcg_stale_risk(g.q, ver, sizeof(ver), err, sizeof(err)), 0); /* no query-kvm */
	assert_int_equal(qemu_tcg_stale_risk(g.q, ver, sizeof(ver), err, sizeof(err)), 0); /* no version given */
	/* the monitor itself failing is an error, not an answer */
	assert_int_equal(qemu_tcg_stale_risk(g.q, ver, sizeof(ver), err, sizeof(err)), -ECONNRESET);
	rig_stop(&g);
}

static void test_open_errors(void **state)
{
	static const struct step not_qmp[] = {
	    {NULL, "CLOSE", 0},
	};
	char err[QMP_ERR_MAX];
	struct qmp *q = NULL;
	struct rig g;
	int sv[2];

	(void)state;
	assert_int_equal(qmp_open(&q, "/nonexistent/qmp.sock", 100, err, sizeof(err)), -ENOENT);
	assert_null(q);
	assert_int_equal(qmp_open_fd(&q, -1, 100, err, sizeof(err)), -EBADF);
	/* a peer that sends something other than a greeting */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(write(sv[1], "{\"return\": {}}", 14), 14);
	assert_int_equal(qmp_open_fd(&q, sv[0], 500, err, sizeof(err)), -EPROTO);
	assert_null(q);
	close(sv[1]);
	/* a peer that greets and then hangs up before qmp_capabilities is answered */
	memset(&g, 0, sizeof(g));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	g.f.fd = sv[1];
	g.f.steps = not_qmp;
	assert_int_equal(pthread_create(&g.th, NULL, fake_main, &g.f), 0);
	assert_int_equal(qmp_open_fd(&q, sv[0], 500, err, sizeof(err)), -ECONNRESET);
	assert_null(q);
	pthread_join(g.th, NULL);
	close(sv[1]);
	qmp_close(NULL);
	qmp_parser_fini(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parser_table),     cmocka_unit_test(test_parser_limits),
	    cmocka_unit_test(test_classify),	     cmocka_unit_test(test_client_basic),
	    cmocka_unit_test(test_client_timeout),   cmocka_unit_test(test_open_errors),
	    cmocka_unit_test(test_migration_events), cmocka_unit_test(test_client_many),
	    cmocka_unit_test(test_tcg_stale_risk),
	};

	gw_log_level = -1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
