// SPDX-License-Identifier: MIT
/*
 * The strict command-line parsers (gateway/cli.c): tables of accepted and
 * refused values, each refusal with the error it must give, and a check
 * that a refused value leaves the output untouched.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/cli.h"

enum { UNTOUCHED = 777 };

static void test_uint(void **state)
{
	static const struct {
		const char *s;
		uint64_t lo, hi;
		int want;
		uint64_t v;
	} cases[] = {
		{ "0", 0, 10, 0, 0 },
		{ "10", 0, 10, 0, 10 },
		{ "18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX },
		{ "007", 0, 10, 0, 7 },
		{ "11", 0, 10, -ERANGE, 0 },
		{ "0", 1, 10, -ERANGE, 0 },
		{ "18446744073709551616", 0, UINT64_MAX, -ERANGE, 0 }, /* wraps in 64 bits */
		{ "99999999999999999999999", 0, UINT64_MAX, -ERANGE, 0 },
		{ "", 0, 10, -EINVAL, 0 },
		{ " 5", 0, 10, -EINVAL, 0 },   /* strtoul takes blanks */
		{ "5 ", 0, 10, -EINVAL, 0 },
		{ "+5", 0, 10, -EINVAL, 0 },   /* ... and a sign */
		{ "-1", 0, UINT64_MAX, -EINVAL, 0 }, /* strtoul wraps it to UINT64_MAX */
		{ "0x10", 0, 100, -EINVAL, 0 },
		{ "1e3", 0, 10000, -EINVAL, 0 },
		{ "5s", 0, 10, -EINVAL, 0 },   /* no unit where none is documented */
		{ "4.0", 0, 10, -EINVAL, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = UNTOUCHED;
		int r = cli_parse_uint(cases[i].s, cases[i].lo, cases[i].hi, &v);

		if (r != cases[i].want)
			fail_msg("\"%s\": %d, want %d", cases[i].s, r, cases[i].want);
		assert_int_equal(v, r == 0 ? cases[i].v : UNTOUCHED);
	}
}

static void test_int(void **state)
{
	int v = UNTOUCHED;

	(void)state;
	assert_int_equal(cli_parse_int("64", 1, 64, &v), 0);
	assert_int_equal(v, 64);
	assert_int_equal(cli_parse_int("65", 1, 64, &v), -ERANGE);
	assert_int_equal(cli_parse_int("4294967297", 1, 64, &v), -ERANGE); /* 2^32 + 1: no truncation to 1 */
	assert_int_equal(cli_parse_int("-3", 1, 64, &v), -EINVAL);
	assert_int_equal(v, 64);
}

static void test_bytes(void **state)
{
	static const struct {
		const char *s;
		int want;
		uint64_t v;
	} cases[] = {
		{ "4096", 0, 4096 },
		{ "512M", 0, 512ull << 20 },
		{ "512m", 0, 512ull << 20 },
		{ "1G", 0, 1ull << 30 },
		{ "1GB", 0, 1ull << 30 },
		{ "1GiB", 0, 1ull << 30 },
		{ "1.5G", 0, 3ull << 29 },
		{ "100k", 0, 102400 },
		{ "2T", 0, 2ull << 40 },
		{ "0.5K", 0, 512 },
		{ "10B", 0, 10 },
		{ "", -EINVAL, 0 },
		{ "G", -EINVAL, 0 },
		{ "1.G", -EINVAL, 0 },
		{ ".5G", -EINVAL, 0 },
		{ "1Q", -EINVAL, 0 },
		{ "1GG", -EINVAL, 0 },
		{ "1 G", -EINVAL, 0 },
		{ "-1G", -EINVAL, 0 },
		{ "1e9", -EINVAL, 0 },
		{ "inf", -EINVAL, 0 },
		{ "nan", -EINVAL, 0 },
		{ "1iB", -EINVAL, 0 },
		{ "1.0000000001G", -EINVAL, 0 }, /* more fraction digits than are read */
		{ "99999999999999999999", -ERANGE, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = UNTOUCHED;
		int r = cli_parse_bytes(cases[i].s, 0, UINT64_MAX, &v);
		if (r != cases[i].want)
			fail_msg("\"%s\": %d, want %d", cases[i].s, r, cases[i].want);
		assert_int_equal(v, r == 0 ? cases[i].v : UNTOUCHED);
	}
	{
		uint64_t v = UNTOUCHED;

		assert_int_equal(cli_parse_bytes("16777216T", 0, UINT64_MAX, &v), -ERANGE); /* 2^24 TiB = 2^64 does not fit */
		assert_int_equal(cli_parse_bytes("16777215T", 0, UINT64_MAX, &v), 0);
		assert_int_equal(v, 16777215ull << 40);
		assert_int_equal(cli_parse_bytes("0", 1, UINT64_MAX, &v), -ERANGE);
		assert_int_equal(cli_parse_bytes("2G", 1, 1ull << 30, &v), -ERANGE);
	}
}

static void test_durations(void **state)
{
	static const struct {
		const char *s;
		int want;
		uint64_t v;
	} secs[] = {
		{ "5", 0, 5 },	    { "5s", 0, 5 },	   { "5m", 0, 300 },	  { "2h", 0, 7200 },
		{ "5S", -EINVAL, 0 }, { "5 s", -EINVAL, 0 }, { "5sec", -EINVAL, 0 }, { "5ms", -EINVAL, 0 },
		{ "1.5s", -EINVAL, 0 }, { "s", -EINVAL, 0 }, { "0", -ERANGE, 0 },     { "200h", -ERANGE, 0 },
	}, millis[] = {
		{ "300", 0, 300 },    { "300ms", 0, 300 },  { "2s", 0, 2000 },	  { "2m", -EINVAL, 0 },
		{ "300 ms", -EINVAL, 0 }, { "0", -ERANGE, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]); i++) {
		uint64_t v = UNTOUCHED;
		int r = cli_parse_seconds(secs[i].s, 1, 7 * 24 * 3600, &v);

		if (r != secs[i].want)
			fail_msg("seconds \"%s\": %d, want %d", secs[i].s, r, secs[i].want);
		assert_int_equal(v, r == 0 ? secs[i].v : UNTOUCHED);
	}
	for (size_t i = 0; i < sizeof(millis) / sizeof(millis[0]); i++) {
		uint64_t v = UNTOUCHED;
		int r = cli_parse_millis(millis[i].s, 1, 2000000, &v);

		if (r != millis[i].want)
			fail_msg("millis \"%s\": %d, want %d", millis[i].s, r, millis[i].want);
		assert_int_equal(v, r == 0 ? millis[i].v : UNTOUCHED);
	}
}

static void test_hostport(void **state)
{
	static const struct {
		const char *s;
		bool zero;
		int want;
		const char *host;
		uint16_t port;
	} cases[] = {
		{ "127.0.0.1:4433", false, 0, "127.0.0.1", 4433 },
		{ "dst.example:1", false, 0, "dst.example", 1 },
		{ "h:65535", false, 0, "h", 65535 },
		{ "[::1]:4433", false, 0, "::1", 4433 },
		{ "127.0.0.1:0", true, 0, "127.0.0.1", 0 }, /* a listener may let the kernel pick */
		{ "127.0.0.1:0", false, -ERANGE, NULL, 0 },
		{ "127.0.0.1:99999", false, -ERANGE, NULL, 0 }, /* used to wrap to 34463 */
		{ "127.0.0.1:65536", true, -ERANGE, NULL, 0 },
		{ "localhost", false, -EINVAL, NULL, 0 },	 /* no port */
		{ "localhost:", false, -EINVAL, NULL, 0 },
		{ ":4433", false, -EINVAL, NULL, 0 },
		{ "h:https", false, -EINVAL, NULL, 0 },	 /* service names are not ports here */
		{ "h:+80", false, -EINVAL, NULL, 0 },
		{ "h:80 ", false, -EINVAL, NULL, 0 },
		{ "::1:4433", false, -EINVAL, NULL, 0 },	 /* bare IPv6: ambiguous */
		{ "[::1]4433", false, -EINVAL, NULL, 0 },
		{ "[::1", false, -EINVAL, NULL, 0 },
		{ "[]:4433", false, -EINVAL, NULL, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char host[64] = "untouched";
		uint16_t port = UNTOUCHED;
		int r = cli_parse_hostport(cases[i].s, cases[i].zero, host, sizeof(host), &port);

		if (r != cases[i].want)
			fail_msg("\"%s\": %d, want %d", cases[i].s, r, cases[i].want);
		if (r == 0) {
			assert_string_equal(host, cases[i].host);
			assert_int_equal(port, cases[i].port);
		} else {
			assert_string_equal(host, "untouched");
			assert_int_equal(port, UNTOUCHED);
		}
	}
	{
		char small[4];

		assert_int_equal(cli_parse_hostport("longhost:1", false, small, sizeof(small), NULL), -EINVAL);
		assert_int_equal(cli_parse_hostport("abc:1", false, small, sizeof(small), NULL), 0);
		assert_int_equal(cli_parse_hostport("abc:1", false, NULL, 0, NULL), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uint),	  cmocka_unit_test(test_int),	  cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_durations), cmocka_unit_test(test_hostport),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
