// SPDX-License-Identifier: MIT
/*
 * The metrics registry and its Prometheus text rendering: label escaping,
 * HELP/TYPE before every family, counters per target and reason, the
 * "(other)" bucket, the HTTP request-head parser (table of negative cases)
 * and one real scrape of the HTTP server over loopback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/metrics.h"

static char *render(void)
{
	char *txt = NULL;
	size_t len = 0;

	assert_int_equal(gw_metrics_render_alloc(&txt, &len), 0);
	assert_non_null(txt);
	assert_int_equal(strlen(txt), len);
	return txt;
}

/* The value of the sample line that starts with <series> followed by a space; -1 if absent. */
static long long sample(const char *txt, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = txt; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
	return -1;
}

static void test_escape_table(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "", "" },
		{ "vm1", "vm1" },
		{ "a\"b", "a\\\"b" },
		{ "back\\slash", "back\\\\slash" },
		{ "two\nlines", "two\\nlines" },
		{ "\\\"\n", "\\\\\\\"\\n" },
		{ "tab\tstays", "tab\tstays" }, /* only \\, \" and \n are escaped (exposition format 0.0.4) */
	};
	char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = gw_prom_escape_label(buf, sizeof(buf), cases[i].in);

		assert_string_equal(buf, cases[i].out);
		assert_int_equal(n, strlen(cases[i].out));
	}
	/* cut to the buffer, still terminated, full length reported */
	assert_int_equal(gw_prom_escape_label(buf, 4, "a\"bcdef"), 8);
	assert_string_equal(buf, "a\\\"");
	assert_int_equal(gw_prom_escape_label(buf, 3, "a\"b"), 4);
	assert_string_equal(buf, "a\\");
	assert_int_equal(gw_prom_escape_label(NULL, 0, "abc"), 3);
}

static void test_help_type_before_samples(void **state)
{
	char *txt, *line, *save = NULL;
	char fam[128] = "";
	int families = 0;

	(void)state;
	gw_metrics_reset();
	assert_int_equal(gw_metrics_target_add("vm"), 0);
	txt = render();
	/* every sample's family was introduced by HELP then TYPE just before */
	for (line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[128];

		if (!strncmp(line, "# HELP ", 7)) {
			assert_int_equal(sscanf(line + 7, "%127s", fam), 1);
			line = strtok_r(NULL, "\n", &save);
			assert_non_null(line);
			assert_int_equal(sscanf(line, "# TYPE %127s", name), 1);
			assert_string_equal(name, fam);
			assert_true(strstr(line, " counter") || strstr(line, " gauge"));
			if (strstr(line, " counter"))
				assert_non_null(strstr(fam, "_total"));
			families++;
			continue;
		}
		assert_true(line[0] != '#');
		assert_int_equal(sscanf(line, "%127[^{ ]", name), 1);
		assert_string_equal(name, fam);
	}
	assert_int_equal(families, 10);
	free(txt);
}

static void test_counters(void **state)
{
	char *txt;

	(void)state;
	gw_metrics_reset();
	assert_int_equal(gw_metrics_target_add("vm"), 0);
	assert_int_equal(gw_metrics_target_add("vm"), 0); /* again: no-op */
	assert_int_equal(gw_metrics_target_add("disk\"1"), 0);
	assert_int_equal(gw_metrics_target_add(""), -EINVAL);
	gw_metrics_session_started("vm");
	gw_metrics_session_started("vm");
	gw_metrics_session_started("vm");
	gw_metrics_session_done("vm");
	gw_metrics_session_failed("vm", WIRE_E_DIGEST);
	gw_metrics_session_failed("vm", 999);      /* unknown code: "other" */
	gw_metrics_bytes("vm", 1000, 10);
	gw_metrics_bytes("vm", 24, 0);
	{
		struct gw_metrics_flow fl = { 0 };

		gw_metrics_flow_update(&fl, "disk\"1", 100, 7);
		gw_metrics_flow_update(&fl, "disk\"1", 100, 7); /* nothing new */
		gw_metrics_flow_update(&fl, "disk\"1", 150, 5); /* out went back: ignored */
		gw_metrics_flow_update(&fl, "disk\"1", 160, 9);
	}
	gw_metrics_rejoin("disk\"1");
	gw_metrics_handshake_failed(GW_HS_TLS);
	gw_metrics_handshake_failed(gw_metrics_hs_reason_for_wire(WIRE_E_BAD_TOKEN));
	gw_metrics_handshake_failed((enum gw_hs_reason)77); /* out of range: "other" */
	gw_metrics_refused(GW_LIMIT_SESSIONS);
	gw_metrics_refused(GW_LIMIT_SESSIONS);
	gw_metrics_reload(true);
	gw_metrics_reload(false);
	gw_metrics_reload(false);
	txt = render();
	assert_int_equal(sample(txt, "migrelay_sessions_started_total{target=\"vm\"}"), 3);
	assert_int_equal(sample(txt, "migrelay_sessions_verified_total{target=\"vm\"}"), 1);
	assert_int_equal(sample(txt, "migrelay_sessions_failed_total{target=\"vm\",reason=\"digest\"}"), 1);
	assert_int_equal(sample(txt, "migrelay_sessions_failed_total{target=\"vm\",reason=\"other\"}"), 1);
	assert_int_equal(sample(txt, "migrelay_sessions_failed_total{target=\"vm\",reason=\"closed\"}"), 0);
	/* 3 started, 1 verified, 2 failed: none active, and a gauge never goes below 0 */
	assert_int_equal(sample(txt, "migrelay_sessions_active{target=\"vm\"}"), 0);
	assert_int_equal(sample(txt, "migrelay_stream_bytes_received_total{target=\"vm\"}"), 1024);
	assert_int_equal(sample(txt, "migrelay_stream_bytes_sent_total{target=\"vm\"}"), 10);
	assert_int_equal(sample(txt, "migrelay_rejoins_total{target=\"disk\\\"1\"}"), 1);
	assert_int_equal(sample(txt, "migrelay_stream_bytes_received_total{target=\"disk\\\"1\"}"), 160);
	assert_int_equal(sample(txt, "migrelay_stream_bytes_sent_total{target=\"disk\\\"1\"}"), 9);
	assert_int_equal(sample(txt, "migrelay_handshake_failures_total{reason=\"tls\"}"), 1);
	assert_int_equal(sample(txt, "migrelay_handshake_failures_total{reason=\"bad_token\"}"), 1);
	assert_int_equal(sample(txt, "migrelay_handshake_failures_total{reason=\"other\"}"), 1);
	assert_int_equal(sample(txt, "migrelay_refused_total{limit=\"max_sessions\"}"), 2);
	assert_int_equal(sample(txt, "migrelay_refused_total{limit=\"max_pending\"}"), 0);
	assert_int_equal(sample(txt, "migrelay_reloads_total{result=\"ok\"}"), 1);
	assert_int_equal(sample(txt, "migrelay_reloads_total{result=\"failed\"}"), 2);
	/* nothing went to an unknown target yet: no "(other)" series */
	assert_null(strstr(txt, "(other)"));
	free(txt);

	gw_metrics_session_started("never-added");
	gw_metrics_session_started(NULL);
	txt = render();
	assert_int_equal(sample(txt, "migrelay_sessions_started_total{target=\"(other)\"}"), 2);
	assert_int_equal(sample(txt, "migrelay_sessions_active{target=\"(other)\"}"), 2);
	free(txt);
}

static void test_target_cap(void **state)
{
	char name[16];

	(void)state;
	gw_metrics_reset();
	for (int i = 0; i < GW_METRICS_MAX_TARGETS; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		assert_int_equal(gw_metrics_target_add(name), 0);
	}
	assert_int_equal(gw_metrics_target_add("one-more"), -ENOSPC);
	assert_int_equal(gw_metrics_target_add("t5"), 0); /* known: still fine */
	{
		char big[WIRE_MAX_NAME + 2];

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		assert_int_equal(gw_metrics_target_add(big), -EINVAL);
	}
	gw_metrics_reset();
}

static void test_http_parse_table(void **state)
{
	static const struct {
		const char *in;
		int want;
	} cases[] = {
		{ "GET /metrics HTTP/1.0\r\n\r\n", 200 },
		{ "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", 200 },
		{ "GET /metrics?x=1 HTTP/1.1\r\n\r\n", 200 },
		{ "GET /metrics HTTP/1.0\n\n", 200 },
		{ "GET /metrics HTTP/1.0\r\n", 0 },   /* head not finished: need more */
		{ "GET /metr", 0 },
		{ "", 0 },
		{ "GET / HTTP/1.0\r\n\r\n", 404 },
		{ "GET /metricsx HTTP/1.0\r\n\r\n", 404 },
		{ "GET /metrics/ HTTP/1.0\r\n\r\n", 404 },
		{ "POST /metrics HTTP/1.0\r\n\r\n", 405 },
		{ "HEAD /metrics HTTP/1.0\r\n\r\n", 405 },
		{ "get /metrics HTTP/1.0\r\n\r\n", 405 }, /* methods are case-sensitive */
		{ "GET /metrics HTTP/2.0\r\n\r\n", 505 },
		{ "GET /metrics\r\n\r\n", 400 },           /* HTTP/0.9 */
		{ "GET  /metrics HTTP/1.0\r\n\r\n", 400 }, /* two spaces */
		{ "GET /metrics HTTP/1.0 \r\n\r\n", 400 },
		{ "GET /metrics HTTP/1\r\n\r\n", 400 },
		{ "GET /metrics FTP/1.0\r\n\r\n", 400 },
		{ " GET /metrics HTTP/1.0\r\n\r\n", 400 },
		{ "\r\n\r\n", 400 },
		{ "G(T /metrics HTTP/1.0\r\n\r\n", 400 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = gw_http_parse_request(cases[i].in, strlen(cases[i].in));

		if (got != cases[i].want)
			fail_msg("case %zu \"%s\": got %d, want %d", i, cases[i].in, got, cases[i].want);
	}
	{
		/* a NUL inside the head */
		static const char nul[] = "GET /met\0rics HTTP/1.0\r\n\r\n";

		assert_int_equal(gw_http_parse_request(nul, sizeof(nul) - 1), 400);
	}
	{
		/* a head that never ends within the cap, and one that ends only past it */
		char *big = malloc(GW_METRICS_MAX_REQUEST + 8);

		memset(big, 'a', GW_METRICS_MAX_REQUEST + 8);
		memcpy(big, "GET /metrics HTTP/1.0\r\nX: ", 26);
		assert_int_equal(gw_http_parse_request(big, GW_METRICS_MAX_REQUEST - 1), 0);
		assert_int_equal(gw_http_parse_request(big, GW_METRICS_MAX_REQUEST), 431);
		memcpy(big + GW_METRICS_MAX_REQUEST + 2, "\r\n\r\n", 4);
		assert_int_equal(gw_http_parse_request(big, GW_METRICS_MAX_REQUEST + 6), 431);
		free(big);
	}
}

/* Sends <req> to the server and returns what came back (malloc'ed). */
static char *exchange(const char *addr, const char *req)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char *buf = calloc(1, 1 << 20);
	size_t got = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_non_null(buf);
	assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr), 1);
	sa.sin_port = htons((uint16_t)atoi(strrchr(addr, ':') + 1));
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while ((n = read(fd, buf + got, (1 << 20) - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	return buf;
}

static void test_http_server(void **state)
{
	struct gw_metrics_http *m = NULL;
	char why[256], *r;

	(void)state;
	gw_metrics_reset();
	assert_int_equal(gw_metrics_target_add("vm"), 0);
	gw_metrics_session_started("vm");
	if (gw_metrics_http_start(&m, "127.0.0.1:0", why, sizeof(why)) < 0)
		skip();
	r = exchange(gw_metrics_http_address(m), "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
	assert_true(!strncmp(r, "HTTP/1.0 200 OK\r\n", 17));
	assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(r, "\r\n\r\n# HELP migrelay_sessions_active "));
	assert_non_null(strstr(r, "migrelay_sessions_active{target=\"vm\"} 1\n"));
	free(r);
	r = exchange(gw_metrics_http_address(m), "PUT /metrics HTTP/1.0\r\n\r\n");
	assert_true(!strncmp(r, "HTTP/1.0 405 ", 13));
	assert_non_null(strstr(r, "Allow: GET\r\n"));
	free(r);
	r = exchange(gw_metrics_http_address(m), "GET /secret HTTP/1.0\r\n\r\n");
	assert_true(!strncmp(r, "HTTP/1.0 404 ", 13));
	free(r);
	gw_metrics_http_stop(m);
	assert_int_equal(gw_metrics_http_start(&m, "no-port", why, sizeof(why)), -EINVAL);
	assert_true(why[0]);
	gw_metrics_reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_table),   cmocka_unit_test(test_help_type_before_samples),
		cmocka_unit_test(test_counters),       cmocka_unit_test(test_target_cap),
		cmocka_unit_test(test_http_parse_table), cmocka_unit_test(test_http_server),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
