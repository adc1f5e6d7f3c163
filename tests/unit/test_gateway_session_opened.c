/* SPDX-License-Identifier: MIT */
/*
 * OPEN acknowledgements (PROTOCOL.md §5.1, revision 1.2) between two real
 * sessions over socketpairs: the client's gw_stream_snapshot says
 * target_connected once the server's on_open connected the stream, for a
 * stream that sends nothing (peer_seen never comes for it); a stream the
 * server cannot connect fails instead; a re-sent OPENED after a lost
 * connection changes nothing; a client that did not ask gets none, and one
 * that gets an OPENED anyway fails the session with a protocol error.
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/session.h"
#include "stream/conn.h"

enum { NCONNS = 2, WAIT_MS = 10000 };

enum { MAX_IDS = 4 };

/*
 * The server's on_open reads one byte from this pipe before it answers:
 * 'y' connects the stream to a socket of its own that stays silent until
 * the test closes its other end (tgt_peer[id]), any other byte refuses it.
 * So the test decides when a stream is connected.
 */
static int gate[2] = {-1, -1};
static int tgt_fd[MAX_IDS], tgt_peer[MAX_IDS];

static int on_open_gated(struct gw_session *s, struct gw_stream *st, char *why, size_t whylen)
{
	unsigned id = gw_stream_id(st);
	int sv[2];
	char c = 0;

	(void)s;
	if (read(gate[0], &c, 1) != 1 || c != 'y' || id >= MAX_IDS) {
		snprintf(why, whylen, "the test refused stream %u", id);
		return -ECONNREFUSED;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(why, whylen, "socketpair failed");
		return -errno;
	}
	tgt_fd[id] = sv[0];
	tgt_peer[id] = sv[1];
	gw_stream_attach(st, sv[0], sv[0], NULL, NULL);
	return 0;
}

/*
 * Ends the target side of stream <id>: its outbound direction sees EOF.
 * Only after the server's snapshot said target_connected (which orders
 * on_open's writes before this read).
 */
static void target_close(unsigned id)
{
	close(tgt_peer[id]);
	tgt_peer[id] = -1;
}

static void let(char c)
{
	assert_int_equal(write(gate[1], &c, 1), 1);
}

struct pair {
	struct gw_session *c, *s;
	int cfd[NCONNS]; /* the client's end of each connection */
};

static void add_conn(struct pair *p, int i, bool replace)
{
	struct mr_conn *a, *b;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	p->cfd[i] = sv[0];
	assert_int_equal(mr_conn_plain(&a, sv[0], true, NULL, 0), 0);
	assert_int_equal(mr_conn_plain(&b, sv[1], true, NULL, 0), 0);
	if (replace) {
		assert_int_equal(gw_session_replace_conn(p->c, i, a), 0);
		assert_int_equal(gw_session_replace_conn(p->s, i, b), 0);
	} else {
		assert_int_equal(gw_session_add_conn(p->c, i, a), 0);
		assert_int_equal(gw_session_add_conn(p->s, i, b), 0);
	}
}

/* A client asking for OPENED (<client_ack>) and a server granting it (<server_ack>), joined by NCONNS connections. */
static void pair_new(struct pair *p, bool client_ack, bool server_ack)
{
	struct gw_session_cfg ccfg = {.reconnect_ms = -1, .nconns = NCONNS, .target = "t", .id = 9,
				      .open_ack = client_ack};
	struct gw_session_cfg scfg = {.server = true, .reconnect_ms = -1, .nconns = NCONNS, .target = "t", .id = 9,
				      .open_ack = server_ack};

	assert_int_equal(pipe2(gate, O_CLOEXEC), 0);
	for (int i = 0; i < MAX_IDS; i++)
		tgt_fd[i] = tgt_peer[i] = -1;
	assert_int_equal(gw_session_new(&p->c, &ccfg), 0);
	assert_int_equal(gw_session_new(&p->s, &scfg), 0);
	gw_session_set_target_ops(p->s, on_open_gated, NULL, NULL);
	for (int i = 0; i < NCONNS; i++)
		add_conn(p, i, false);
}

static void pair_free(struct pair *p)
{
	gw_session_bye(p->c);
	gw_session_close(p->c);
	gw_session_wait_finished(p->s, NULL);
	gw_session_close(p->s);
	close(gate[0]);
	close(gate[1]);
	for (int i = 0; i < MAX_IDS; i++) {
		if (tgt_fd[i] >= 0)
			close(tgt_fd[i]);
		if (tgt_peer[i] >= 0)
			close(tgt_peer[i]);
	}
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* Waits (WAIT_MS at most) until stream <id> of <s> is connected or ended; returns its snapshot. */
static struct gw_stream_info wait_connected_or_done(struct gw_session *s, int id)
{
	struct gw_stream_info i;

	for (int t = 0; t < WAIT_MS; t += 5) {
		int r = gw_stream_snapshot(s, id, &i);

		/* a server knows the stream once its OPEN (or data) arrived */
		assert_true(r == 0 || (r == -ENOENT && gw_session_cfg_get(s)->server));
		if (r == 0 && (i.target_connected || i.complete || i.fail_code))
			return i;
		sleep_ms(5);
	}
	fail_msg("stream %d: neither connected nor ended after %d ms", id, WAIT_MS);
	return i;
}

/* A local socket that stays silent until the test closes <peer>. */
static int silent_fd(int *peer)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	*peer = sv[1];
	return sv[0];
}

static void test_opened_for_a_silent_stream(void **state)
{
	struct gw_stream_info i;
	struct gw_outcome o;
	struct pair p;
	int peer0, peer1, fd0, fd1, id;
	(void)state;

	pair_new(&p, true, true);
	assert_true(gw_session_cfg_get(p.c)->open_ack);
	fd0 = silent_fd(&peer0);
	assert_int_equal(gw_stream_open(p.c, WIRE_ROLE_PLAIN, fd0, -1, NULL, NULL), 0);
	/* The server's on_open waits for the gate: nothing says the stream is connected. */
	sleep_ms(100);
	assert_int_equal(gw_stream_snapshot(p.c, 0, &i), 0);
	assert_false(i.target_connected);
	let('y');
	i = wait_connected_or_done(p.c, 0);
	assert_true(i.target_connected);
	assert_false(i.complete);
	assert_int_equal(i.fail_code, 0);
	/* Nothing flowed either way: without OPENED the client would know nothing. */
	assert_false(i.peer_seen);
	i = wait_connected_or_done(p.s, 0); /* also orders on_open's tgt_peer[0] before target_close */
	assert_true(i.target_connected);

	/* A stream the server cannot connect: ERROR TARGET, never OPENED. */
	fd1 = silent_fd(&peer1);
	id = gw_stream_open(p.c, WIRE_ROLE_PLAIN, fd1, -1, NULL, NULL);
	assert_int_equal(id, 1);
	let('n');
	i = wait_connected_or_done(p.c, id);
	assert_false(i.target_connected);
	assert_int_equal(i.fail_code, WIRE_E_TARGET);
	assert_non_null(strstr(i.fail_text, "the test refused stream 1"));

	/*
	 * Connection 0 is lost and comes back: the server repeats OPENED for
	 * stream 0 (§2.3), which the client ignores; the session goes on.
	 */
	assert_int_equal(shutdown(p.cfd[0], SHUT_RDWR), 0);
	assert_true(gw_session_conn_gone(p.c, 0, 5000));
	assert_true(gw_session_conn_gone(p.s, 0, 5000));
	add_conn(&p, 0, true);
	sleep_ms(100);
	gw_session_outcome(p.c, &o);
	assert_int_equal(o.session_code, 0);
	assert_int_equal(gw_stream_snapshot(p.c, 0, &i), 0);
	assert_true(i.target_connected);

	/* The silent stream ends well once both its ends close. */
	close(peer0);
	target_close(0);
	assert_int_equal(gw_stream_wait(p.c, 0, WAIT_MS), 0);
	assert_int_equal(gw_stream_wait(p.s, 0, WAIT_MS), 0);
	pair_free(&p);
	close(fd0);
	close(fd1);
	close(peer1);
}

static void test_no_opened_unasked(void **state)
{
	struct gw_stream_info i;
	struct pair p;
	int peer, fd;
	(void)state;

	/* Neither side speaks of OPENED: the stream works, the client never hears it was connected. */
	pair_new(&p, false, false);
	fd = silent_fd(&peer);
	assert_int_equal(gw_stream_open(p.c, WIRE_ROLE_PLAIN, fd, -1, NULL, NULL), 0);
	let('y');
	close(peer);
	i = wait_connected_or_done(p.s, 0); /* on_open has run (and set tgt_peer[0], under the session's lock) */
	assert_true(i.target_connected);
	target_close(0);
	assert_int_equal(gw_stream_wait(p.c, 0, WAIT_MS), 0);
	assert_int_equal(gw_stream_snapshot(p.c, 0, &i), 0);
	assert_true(i.complete);
	assert_false(i.target_connected);
	assert_int_equal(gw_stream_snapshot(p.s, 0, &i), 0);
	assert_true(i.target_connected);
	pair_free(&p);
	close(fd);
}

static void test_opened_not_asked_for(void **state)
{
	struct gw_outcome o;
	struct pair p;
	int peer, fd;
	(void)state;

	/* A server that sends OPENED to a client that did not ask: the client fails the session (§7). */
	pair_new(&p, false, true);
	fd = silent_fd(&peer);
	assert_int_equal(gw_stream_open(p.c, WIRE_ROLE_PLAIN, fd, -1, NULL, NULL), 0);
	let('y');
	assert_int_equal(gw_session_wait_idle(p.c, WAIT_MS), -EPROTO);
	gw_session_outcome(p.c, &o);
	assert_int_equal(o.session_code, WIRE_E_PROTOCOL);
	assert_non_null(strstr(o.session_text, "did not ask for OPENED"));
	pair_free(&p);
	close(fd);
	close(peer);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_opened_for_a_silent_stream),
	    cmocka_unit_test(test_no_opened_unasked),
	    cmocka_unit_test(test_opened_not_asked_for),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
