/* SPDX-License-Identifier: MIT */
/* The session's query functions for commands: gw_session_first_failure and gw_session_outcome. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/session.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_failure),
	    cmocka_unit_test(test_session_failure_then_streams),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
