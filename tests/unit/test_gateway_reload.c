// SPDX-License-Identifier: MIT
/*
 * The reloader: outcomes recorded for the status and counted in the
 * metrics, a default message, a request from a "signal handler" run by the
 * poll, and reloads from several threads never overlapping.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/log.h"
#include "gateway/metrics.h"
#include "gateway/reload.h"

struct fake {
	int result;
	const char *say;
	atomic_int calls, inside, overlap;
};

static int fake_reload(void *ctx, char *msg, size_t len)
{
	struct fake *f = ctx;

	if (atomic_fetch_add(&f->inside, 1) != 0)
		atomic_fetch_add(&f->overlap, 1);
	atomic_fetch_add(&f->calls, 1);
	if (f->say)
		snprintf(msg, len, "%s", f->say);
	usleep(100);
	atomic_fetch_sub(&f->inside, 1);
	return f->result;
}

static long long sample(const char *series)
{
	char *txt = NULL, *p;
	long long v = -1;

	assert_int_equal(gw_metrics_render_alloc(&txt, NULL), 0);
	p = strstr(txt, series);
	if (p)
		v = strtoll(p + strlen(series) + 1, NULL, 10);
	free(txt);
	return v;
}

static void test_outcomes(void **state)
{
	struct fake f = { .result = 0, .say = "generation 2" };
	struct gw_reloader r = GW_RELOADER_INITIALIZER(fake_reload, &f);
	struct gw_status_daemon d = { 0 };
	char msg[128], buf[128];

	(void)state;
	gw_metrics_reset();
	gw_reload_describe(&r, &d, buf, sizeof(buf));
	assert_false(d.reloaded);
	assert_null(d.last_reload_msg);

	assert_int_equal(gw_reload_run(&r, msg, sizeof(msg)), 0);
	assert_string_equal(msg, "generation 2");
	gw_reload_describe(&r, &d, buf, sizeof(buf));
	assert_true(d.reloaded && d.last_reload_ok);
	assert_string_equal(d.last_reload_msg, "generation 2");
	assert_true(d.last_reload_age_s >= 0 && d.last_reload_age_s < 5);

	f.result = -EINVAL;
	f.say = "serve.conf:3: unknown key";
	assert_int_equal(gw_reload_run(&r, msg, sizeof(msg)), -EINVAL);
	gw_reload_describe(&r, &d, buf, sizeof(buf));
	assert_true(d.reloaded);
	assert_false(d.last_reload_ok);
	assert_string_equal(d.last_reload_msg, "serve.conf:3: unknown key");

	f.say = NULL; /* the function gave no reason: one is made up from the error */
	assert_int_equal(gw_reload_run(&r, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, strerror(EINVAL)));

	f.result = 7; /* a positive result counts as success */
	assert_int_equal(gw_reload_run(&r, msg, sizeof(msg)), 0);
	assert_string_equal(msg, "reloaded");

	assert_int_equal(sample("migrelay_reloads_total{result=\"ok\"}"), 2);
	assert_int_equal(sample("migrelay_reloads_total{result=\"failed\"}"), 2);
	gw_metrics_reset();
}

static void test_request_poll(void **state)
{
	struct fake f = { .say = "ok" };
	struct gw_reloader r = GW_RELOADER_INITIALIZER(fake_reload, &f);

	(void)state;
	assert_false(gw_reload_poll(&r));
	gw_reload_request(&r);
	gw_reload_request(&r); /* two signals before the loop looks: one reload */
	assert_true(gw_reload_poll(&r));
	assert_false(gw_reload_poll(&r));
	assert_int_equal(atomic_load(&f.calls), 1);
}

enum { THREADS = 4, RUNS = 50 };

static void *runner(void *arg)
{
	char msg[64];

	for (int i = 0; i < RUNS; i++)
		(void)gw_reload_run(arg, msg, sizeof(msg));
	return NULL;
}

static void test_serialized(void **state)
{
	struct fake f = { .say = "ok" };
	struct gw_reloader r = GW_RELOADER_INITIALIZER(fake_reload, &f);
	pthread_t t[THREADS];

	(void)state;
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, runner, &r), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	assert_int_equal(atomic_load(&f.calls), THREADS * RUNS);
	assert_int_equal(atomic_load(&f.overlap), 0);
	gw_metrics_reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcomes),
		cmocka_unit_test(test_request_poll),
		cmocka_unit_test(test_serialized),
	};

	gw_log_level = -1; /* the reloader logs every outcome; keep the test output readable */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
