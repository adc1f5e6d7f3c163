/* SPDX-License-Identifier: MIT */
/*
 * The session's functions for commands and the control socket:
 * gw_session_first_failure, gw_session_outcome, the identity given in
 * gw_session_cfg and its getters, gw_stream_result, gw_session_wait_finished,
 * the status snapshot; and two real sessions talking over socketpairs.
 */
#include <errno.h>
#include <fcntl.h>
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

#include "gateway/cmd_common.h"
#include "gateway/exitcodes.h"
#include "gateway/session.h"
#include "stream/conn.h"

static void test_no_failure(void **state)
{
	struct gw_session_cfg cfg = {.reconnect_ms = -1};
	struct gw_session *s;
	struct gw_outcome o;
	char text[64] = "stale";
	int code = -1;
	(void)state;

	assert_int_equal(gw_session_new(&s, &cfg), 0);
	assert_int_equal(gw_session_first_failure(s, &code, text, sizeof(text)), 0);
	assert_int_equal(code, 0);
	assert_string_equal(text, "");
	gw_session_outcome(s, &o);
	assert_true(o.ok);
	assert_int_equal(o.first_failed, -1);
	assert_int_equal(o.nstreams, 0);
	gw_session_close(s);
}

static void test_session_failure_then_streams(void **state)
{
	struct gw_session_cfg cfg = {.reconnect_ms = -1};
	struct gw_session *s;
	struct gw_outcome o;
	char text[8];
	int code = 0, id;
	(void)state;

	assert_int_equal(gw_session_new(&s, &cfg), 0);
	/* A stream with no local side and no connection: it waits for credit and its END goes nowhere. */
	id = gw_stream_open(s, WIRE_ROLE_PLAIN, -1, -1, NULL, NULL);
	assert_int_equal(id, 0);
	gw_session_outcome(s, &o);
	assert_false(o.ok);
	assert_int_equal(o.open_streams, 1);

	gw_session_fail(s, WIRE_E_LIMIT, false, "limit reached: %d", 7);
	/* the stream failed with the session: its failure comes first, cut to the buffer */
	assert_int_equal(gw_session_first_failure(s, &code, text, sizeof(text)), 1);
	assert_int_equal(code, WIRE_E_LIMIT);
	assert_string_equal(text, "limit r");
	/* the first failure wins */
	gw_session_fail(s, WIRE_E_PROTOCOL, false, "later");
	assert_int_equal(gw_session_first_failure(s, &code, NULL, 0), 1);
	assert_int_equal(code, WIRE_E_LIMIT);
	gw_session_outcome(s, &o);
	assert_false(o.ok);
	assert_int_equal(o.first_failed, 0);
	assert_int_equal(o.failed_streams, 1);
	assert_int_equal(o.open_streams, 0);
	assert_int_equal(o.session_code, WIRE_E_LIMIT);
	assert_string_equal(o.session_text, "limit reached: 7");
	assert_false(o.session_from_peer);
	/* no new stream after a failure */
	assert_int_equal(gw_stream_open(s, WIRE_ROLE_PLAIN, -1, -1, NULL, NULL), -EPIPE);
	gw_session_close(s);
}

static int freed;

static void count_free(void *p)
{
	freed++;
	free(p);
}

static void test_cfg_identity(void **state)
{
	static const uint8_t zero[WIRE_TOKEN_LEN];
	struct gw_session_cfg cfg = {.server = true, .reconnect_ms = -1, .nconns = 3, .identity = "CN=client-a",
				     .target = "vm1", .hello = {.nconns = 3}};
	struct gw_session_cfg ccfg = {.reconnect_ms = -1, .id = 0x1122334455667788ull, .target = "vm2",
				      .rejoin_ctx = malloc(16), .rejoin_ctx_free = count_free};
	const struct gw_session_cfg *got;
	struct gw_session *s, *c;
	(void)state;

	assert_int_equal(gw_session_new(&s, &cfg), 0);
	/* a server names its session: id and token drawn at random */
	assert_true(gw_session_id(s) != 0);
	assert_memory_not_equal(gw_session_token(s), zero, WIRE_TOKEN_LEN);
	assert_string_equal(gw_session_identity(s), "CN=client-a");
	assert_string_equal(gw_session_target(s), "vm1");
	assert_int_equal(gw_session_nconns(s), 3);
	assert_int_equal(gw_session_hello(s)->nconns, 3);
	/* the tunables come back with their defaults applied */
	got = gw_session_cfg_get(s);
	assert_int_equal(got->window, GW_DEFAULT_WINDOW);
	assert_int_equal(got->chunk_size, GW_DEFAULT_CHUNK);
	assert_int_equal(got->max_streams, GW_DEFAULT_MAX_STREAMS);
	assert_int_equal(got->reconnect_ms, -1);
	assert_true(got->server);
	assert_null(gw_session_rejoin_ctx(s));
	assert_null(gw_session_tls_cfg(s));
	gw_session_close(s);

	/* a client keeps what its WELCOME said (a zero token stays zero), and owns its rejoin context */
	freed = 0;
	assert_int_equal(gw_session_new(&c, &ccfg), 0);
	assert_true(gw_session_id(c) == 0x1122334455667788ull);
	assert_memory_equal(gw_session_token(c), zero, WIRE_TOKEN_LEN);
	assert_string_equal(gw_session_identity(c), "");
	assert_ptr_equal(gw_session_rejoin_ctx(c), ccfg.rejoin_ctx);
	assert_null(gw_session_cfg_get(c)->rejoin_ctx);
	gw_session_close(c);
	assert_int_equal(freed, 1);
}

static void test_stream_result(void **state)
{
	struct gw_session_cfg cfg = {.reconnect_ms = -1};
	struct gw_session *s;
	struct wire_end end = {.bytes = 99};
	char text[64];
	int code = -1, id, r;
	(void)state;

	assert_int_equal(gw_session_new(&s, &cfg), 0);
	assert_int_equal(gw_stream_result(s, 0, &code, text, sizeof(text), &end), -ENOENT);
	assert_int_equal(gw_stream_result(s, -1, &code, NULL, 0, NULL), -ENOENT);
	id = gw_stream_open(s, WIRE_ROLE_PLAIN, -1, -1, NULL, NULL);
	assert_int_equal(id, 0);
	/* no local side: the pump sends END at once (to no connection); wait for it, 5 s at most */
	for (int i = 0; i < 500; i++) {
		r = gw_stream_result(s, id, &code, text, sizeof(text), &end);
		if (end.bytes == 0 && memcmp(end.digest, (uint8_t[WIRE_DIGEST_LEN]){0}, WIRE_DIGEST_LEN))
			break;
		nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
	}
	assert_int_equal(r, 0); /* not complete: nobody verified it */
	assert_int_equal(code, 0);
	assert_string_equal(text, "");
	assert_true(end.bytes == 0);
	assert_memory_not_equal(end.digest, (uint8_t[WIRE_DIGEST_LEN]){0}, WIRE_DIGEST_LEN);

	gw_session_fail(s, WIRE_E_TARGET, false, "the target went away");
	assert_int_equal(gw_stream_result(s, id, &code, text, sizeof(text), NULL), 0);
	assert_int_equal(code, WIRE_E_TARGET);
	assert_string_equal(text, "the target went away");
	gw_session_close(s);
}

static void test_status_without_connections(void **state)
{
	struct gw_session_cfg cfg = {.reconnect_ms = -1, .nconns = 2, .target = "vm"};
	struct gw_session_status *st = calloc(1, sizeof(*st));
	struct gw_stream_info si;
	struct gw_session *s;
	(void)state;

	assert_non_null(st);
	assert_int_equal(gw_session_new(&s, &cfg), 0);
	gw_session_status(s, st);
	assert_string_equal(st->state, "setup");
	assert_string_equal(st->target, "vm");
	assert_int_equal(st->connections_expected, 2);
	assert_int_equal(st->connections_live, 0);
	assert_int_equal(st->nconns, 2);
	assert_false(st->conns[0].live);
	assert_false(st->conns[1].live);
	assert_int_equal(st->nstreams, 0);
	assert_int_equal(st->error_code, 0);
	assert_string_equal(st->error, "");
	assert_int_equal(gw_stream_snapshot(s, 0, &si), -ENOENT);

	assert_int_equal(gw_stream_open(s, WIRE_ROLE_PLAIN, -1, -1, NULL, NULL), 0);
	gw_session_status(s, st);
	assert_int_equal(st->nstreams, 1);
	assert_int_equal(st->streams_open, 1);
	assert_int_equal(st->streams[0].state, GW_STREAM_OPEN);
	assert_string_equal(gw_stream_state_name(st->streams[0].state), "open");
	assert_int_equal(gw_stream_snapshot(s, 0, &si), 0);
	assert_int_equal(si.id, 0);
	assert_int_equal(si.role, WIRE_ROLE_PLAIN);
	assert_false(si.complete);
	assert_false(si.peer_seen); /* no connection: the OPEN went nowhere */
	assert_int_equal(si.fail_code, 0);
	assert_int_equal(si.session_code, 0);
	assert_int_equal(gw_stream_snapshot(s, 1, &si), -ENOENT);
	assert_int_equal(gw_stream_snapshot(s, -1, &si), -ENOENT);

	gw_session_fail(s, WIRE_E_LIMIT, false, "too many");
	gw_session_status(s, st);
	assert_string_equal(st->state, "closing");
	assert_int_equal(st->error_code, WIRE_E_LIMIT);
	assert_string_equal(st->error, "too many");
	assert_int_equal(gw_stream_snapshot(s, 0, &si), 0);
	assert_int_equal(si.fail_code, WIRE_E_LIMIT);
	assert_string_equal(si.fail_text, "too many");
	assert_true(si.peer_seen); /* it ended */
	assert_int_equal(si.session_code, WIRE_E_LIMIT);
	assert_string_equal(si.session_text, "too many");
	assert_int_equal(st->streams_open, 0);
	assert_int_equal(st->streams_failed, 1);
	assert_string_equal(gw_stream_state_name(st->streams[0].state), "failed");
	gw_session_close(s);
	free(st);
}

struct failer {
	struct gw_session *s;
};

static void *fail_later(void *arg)
{
	struct failer *f = arg;

	nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
	gw_session_fail(f->s, WIRE_E_TRUNCATED, false, "gone");
	return NULL;
}

static void test_wait_finished(void **state)
{
	struct gw_session_cfg quick = {.server = true, .reconnect_ms = -1};
	struct gw_session_cfg patient = {.server = true, .reconnect_ms = 30000};
	struct gw_session *s;
	struct gw_outcome o;
	struct failer f;
	pthread_t thr;
	(void)state;

	/* no connection and no rejoin to wait for: done at once */
	assert_int_equal(gw_session_new(&s, &quick), 0);
	gw_session_wait_finished(s, &o);
	assert_true(o.ok);
	gw_session_close(s);

	/* a stream open and rejoins allowed: waits, until the session fails */
	assert_int_equal(gw_session_new(&s, &patient), 0);
	assert_int_equal(gw_stream_open(s, WIRE_ROLE_PLAIN, -1, -1, NULL, NULL), 0);
	f.s = s;
	assert_int_equal(pthread_create(&thr, NULL, fail_later, &f), 0);
	gw_session_wait_finished(s, &o);
	pthread_join(thr, NULL);
	assert_false(o.ok);
	assert_int_equal(o.session_code, WIRE_E_TRUNCATED);
	assert_int_equal(o.first_failed, 0);
	gw_session_wait_finished(s, NULL);
	gw_session_close(s);
}

/* ---- two sessions over socketpairs ---------------------------------- */

enum { PAYLOAD = 600 << 10, NCONNS = 2 };

static int sink_fd = -1;

/* Server on_open: what the client sends goes to /dev/null; nothing goes back. */
static int open_to_null(struct gw_session *s, struct gw_stream *st, char *why, size_t whylen)
{
	(void)why;
	(void)whylen;
	assert_ptr_equal(gw_stream_session(st), s);
	assert_int_equal(gw_stream_role(st), WIRE_ROLE_PLAIN);
	assert_ptr_equal(gw_session_ctx(s), &sink_fd);
	gw_stream_attach(st, -1, sink_fd, NULL, NULL);
	assert_int_equal(gw_stream_wfd(st), sink_fd);
	assert_int_equal(gw_stream_rfd(st), -1);
	assert_null(gw_stream_ctx(st));
	return 0;
}

static int payload_fd(void)
{
	FILE *f = tmpfile();
	uint8_t *b = malloc(PAYLOAD);
	int fd;

	assert_non_null(f);
	assert_non_null(b);
	for (size_t i = 0; i < PAYLOAD; i++)
		b[i] = (uint8_t)(i * 2654435761u >> 13);
	fd = dup(fileno(f));
	assert_true(write(fd, b, PAYLOAD) == PAYLOAD);
	assert_true(lseek(fd, 0, SEEK_SET) == 0);
	fclose(f);
	free(b);
	return fd;
}

static void test_two_sessions_status(void **state)
{
	struct gw_session_cfg ccfg = {.reconnect_ms = -1, .nconns = NCONNS, .target = "vm", .id = 7};
	struct gw_session_cfg scfg = {.server = true, .reconnect_ms = -1, .nconns = NCONNS, .target = "vm",
				      .identity = "CN=client-a", .id = 7};
	struct gw_session_status *st = calloc(1, sizeof(*st));
	struct gw_session *c, *s;
	struct gw_stream_info si;
	struct gw_outcome o;
	struct wire_end end;
	int code, id, rfd, last_fd = -1;
	uint64_t wire_out = 0;
	(void)state;

	assert_non_null(st);
	sink_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_true(sink_fd >= 0);
	assert_int_equal(gw_session_new(&c, &ccfg), 0);
	assert_int_equal(gw_session_new(&s, &scfg), 0);
	gw_session_set_target_ops(s, open_to_null, &sink_fd, NULL);
	for (int i = 0; i < NCONNS; i++) {
		struct mr_conn *a, *b;
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		last_fd = sv[0];
		assert_int_equal(mr_conn_plain(&a, sv[0], true, NULL, 0), 0);
		assert_int_equal(mr_conn_plain(&b, sv[1], true, NULL, 0), 0);
		assert_int_equal(gw_session_add_conn(c, i, a), 0);
		assert_int_equal(gw_session_add_conn(s, i, b), 0);
	}
	rfd = payload_fd();
	id = gw_stream_open(c, WIRE_ROLE_PLAIN, rfd, -1, NULL, NULL);
	assert_int_equal(id, 0);
	assert_int_equal(gw_stream_wait(c, id, 20000), 0);
	assert_int_equal(gw_stream_wait(s, id, 20000), 0);

	assert_int_equal(gw_stream_result(c, id, &code, NULL, 0, &end), 1);
	assert_int_equal(code, 0);
	assert_true(end.bytes == PAYLOAD);

	gw_session_status(c, st);
	assert_string_equal(st->state, "running");
	assert_int_equal(st->connections_live, NCONNS);
	assert_int_equal(st->nconns, NCONNS);
	assert_int_equal(st->rejoins, 0);
	for (int i = 0; i < NCONNS; i++) {
		assert_true(st->conns[i].live);
		wire_out += st->conns[i].wire_out;
	}
	/* every raw byte went out once, in frames (the stripe may use one connection or both) */
	assert_true(wire_out == st->wire_out);
	assert_true(st->wire_out >= PAYLOAD);
	assert_true(st->bytes_out == PAYLOAD);
	assert_int_equal(st->streams_verified, 1);
	assert_int_equal(st->streams[0].state, GW_STREAM_VERIFIED);
	assert_true(st->streams[0].out_verified);
	assert_true(st->streams[0].in_verified);
	assert_int_equal(gw_stream_snapshot(c, id, &si), 0);
	assert_true(si.complete);
	assert_true(si.peer_seen);
	assert_true(si.out_bytes == PAYLOAD);
	assert_true(si.in_bytes == 0);
	assert_int_equal(si.fail_code, 0);
	assert_string_equal(si.fail_text, "");

	gw_session_status(s, st);
	assert_string_equal(st->identity, "CN=client-a");
	assert_true(st->id == 7);
	assert_true(st->bytes_in == PAYLOAD);
	assert_int_equal(gw_stream_snapshot(s, id, &si), 0);
	assert_true(si.complete);
	assert_true(si.in_bytes == PAYLOAD);
	assert_true(st->wire_in >= PAYLOAD);
	assert_int_equal(st->streams_verified, 1);

	/* connection 1 breaks; a new one takes its index on both sides: one rejoin, live again */
	assert_int_equal(shutdown(last_fd, SHUT_RDWR), 0);
	assert_true(gw_session_conn_gone(c, NCONNS - 1, 5000));
	assert_true(gw_session_conn_gone(s, NCONNS - 1, 5000));
	{
		struct mr_conn *a, *b;
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		assert_int_equal(mr_conn_plain(&a, sv[0], true, NULL, 0), 0);
		assert_int_equal(mr_conn_plain(&b, sv[1], true, NULL, 0), 0);
		assert_int_equal(gw_session_replace_conn(c, NCONNS - 1, a), 0);
		assert_int_equal(gw_session_replace_conn(s, NCONNS - 1, b), 0);
	}
	gw_session_status(s, st);
	assert_int_equal(st->rejoins, 1);
	assert_int_equal(st->conns[NCONNS - 1].rejoins, 1);
	assert_int_equal(st->conns[0].rejoins, 0);
	assert_true(st->conns[NCONNS - 1].live);
	assert_int_equal(st->connections_live, NCONNS);

	/* the client says BYE and goes: the server's supervisor wait ends, all well */
	gw_session_bye(c);
	gw_session_close(c);
	gw_session_wait_finished(s, &o);
	assert_true(o.ok);
	assert_true(o.bye);
	assert_int_equal(o.live_conns, 0);
	gw_session_close(s);
	close(rfd);
	close(sink_fd);
	free(st);
}

static void test_exit_map(void **state)
{
	(void)state;
	assert_int_equal(cmd_exit_for_wire_error(0), MR_EXIT_OK);
	assert_int_equal(cmd_exit_for_wire_error(WIRE_E_BAD_TOKEN), MR_EXIT_AUTH);
	assert_int_equal(cmd_exit_for_wire_error(WIRE_E_TARGET), MR_EXIT_TARGET);
	assert_int_equal(cmd_exit_for_wire_error(WIRE_E_DIGEST), MR_EXIT_DIGEST);
	assert_int_equal(cmd_exit_for_wire_error(WIRE_E_TRUNCATED), MR_EXIT_PEER_GONE);
	assert_int_equal(cmd_exit_for_wire_error(WIRE_E_PROTOCOL), MR_EXIT_PROTOCOL);
	assert_int_equal(cmd_exit_for_wire_error(WIRE_E_LIMIT), MR_EXIT_USAGE);
	assert_int_equal(cmd_exit_for_wire_error(WIRE_E_INTERNAL), MR_EXIT_FAIL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_failure),
	    cmocka_unit_test(test_session_failure_then_streams),
	    cmocka_unit_test(test_cfg_identity),
	    cmocka_unit_test(test_stream_result),
	    cmocka_unit_test(test_status_without_connections),
	    cmocka_unit_test(test_wait_finished),
	    cmocka_unit_test(test_two_sessions_status),
	    cmocka_unit_test(test_exit_map),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
