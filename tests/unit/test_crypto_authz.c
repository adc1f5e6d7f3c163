/* SPDX-License-Identifier: MIT */
/* --allow lists: pattern matching and list semantics, table-driven. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/authz.h"

static const struct {
	const char *pattern;
	const char *identity;
	bool match;
} cases[] = {
	{ "CN=client1,O=Example", "CN=client1,O=Example", true },
	{ "CN=client1,O=Example", "CN=client1,O=Example2", false }, /* whole string */
	{ "CN=client1,O=Example", "xCN=client1,O=Example", false },
	{ "CN=client1", "CN=client1,O=Example", false },
	{ "cn=client1,O=Example", "CN=client1,O=Example", false },  /* case matters */
	{ "CN=*,O=Example", "CN=client1,O=Example", true },
	{ "CN=*,O=Example", "CN=,O=Example", true },                /* '*' may be empty */
	{ "CN=*,O=Example", "CN=a,O=Other", false },
	{ "CN=*,O=Example", "CN=a,O=Example,O=Example", true },     /* '*' crosses commas */
	{ "CN=client?,O=Example", "CN=client7,O=Example", true },
	{ "CN=client?,O=Example", "CN=client,O=Example", false },   /* '?' is exactly one */
	{ "CN=client?,O=Example", "CN=client10,O=Example", false },
	{ "*", "anything at all", true },
	{ "*", "", true },
	{ "?", "", false },
	{ "**", "ab", true },
	{ "*a*b*c*", "xxaxxbxxcxx", true },
	{ "*a*b*c*", "xxaxxcxxbxx", false },
	{ "a*b", "ab", true },
	{ "a*b", "acb", true },
	{ "a*b", "acbx", false },
	{ "a*b*", "aXbYb", true },
	{ "*aab", "aaaab", true },                                  /* needs backtracking */
	{ "*ab*ab", "abxabyab", true },
	{ "[ab]", "a", false },                                     /* brackets are literal */
	{ "[ab]", "[ab]", true },
	{ "a\\*", "a\\xyz", true },                                 /* backslash is literal */
	{ "a\\*", "a*", false },
	{ "alice", "alice", true },                                 /* PSK identities */
	{ "ali*", "alice", true },
	{ "alice", "alic", false },
	{ "alic", "alice", false },
};

static void test_match_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (authz_match(cases[i].pattern, cases[i].identity) != cases[i].match)
			fail_msg("pattern \"%s\" vs \"%s\": want %s", cases[i].pattern, cases[i].identity,
				 cases[i].match ? "match" : "no match");
	assert_false(authz_match(NULL, "a"));
	assert_false(authz_match("a", NULL));
}

/* A pattern of many stars against a long near-miss must stay fast (no exponential backtracking). */
static void test_match_cost(void **state)
{
	char pat[1025], id[4097];

	(void)state;
	for (size_t i = 0; i < sizeof(pat) - 1; i++)
		pat[i] = i % 2 ? '*' : 'a';
	pat[sizeof(pat) - 1] = '\0';
	pat[sizeof(pat) - 2] = 'b';
	memset(id, 'a', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	assert_false(authz_match(pat, id));
}

static const struct {
	const char *pattern;
	int want;
} adds[] = {
	{ "CN=*,O=Example", 0 },
	{ "x", 0 },
	{ "", -EINVAL },
	{ "CN=a\nCN=b", -EINVAL },
	{ "tab\there", -EINVAL },
	{ "del\x7f", -EINVAL },
};

static void test_add_table(void **state)
{
	struct authz_list l = { 0 };
	char big[1026];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(adds) / sizeof(adds[0]); i++)
		if (authz_add(&l, adds[i].pattern) != adds[i].want)
			fail_msg("authz_add(\"%s\") != %d", adds[i].pattern, adds[i].want);
	assert_int_equal(l.n, 2);
	assert_int_equal(authz_add(&l, NULL), -EINVAL);
	assert_int_equal(authz_add(NULL, "x"), -EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[1024] = '\0'; /* 1024 bytes: the longest allowed */
	assert_int_equal(authz_add(&l, big), 0);
	big[1024] = 'a';
	big[1025] = '\0';
	assert_int_equal(authz_add(&l, big), -EINVAL);
	assert_int_equal(l.n, 3);
	authz_free(&l);
	assert_int_equal(l.n, 0);
	assert_null(l.patterns);
	authz_free(&l); /* twice is fine */
	authz_free(NULL);
}

static void test_allowed(void **state)
{
	struct authz_list l = { 0 };

	(void)state;
	/* empty list: every authenticated identity */
	assert_true(authz_allowed(&l, "CN=anyone"));
	assert_true(authz_allowed(NULL, "CN=anyone"));
	assert_false(authz_allowed(&l, NULL));

	assert_int_equal(authz_add(&l, "CN=client?,O=Example"), 0);
	assert_int_equal(authz_add(&l, "alice"), 0);
	assert_true(authz_allowed(&l, "CN=client1,O=Example"));
	assert_true(authz_allowed(&l, "alice"));
	assert_false(authz_allowed(&l, "bob"));
	assert_false(authz_allowed(&l, "CN=client1,O=Example,OU=x"));
	assert_false(authz_allowed(&l, ""));
	assert_false(authz_allowed(&l, NULL));
	authz_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match_table),
		cmocka_unit_test(test_match_cost),
		cmocka_unit_test(test_add_table),
		cmocka_unit_test(test_allowed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
