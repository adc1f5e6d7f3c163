/* SPDX-License-Identifier: MIT */
/* keys.psk parser: table-driven good and bad files. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/psk.h"

#define K16 "00112233445566778899aabbccddeeff"  /* 16 bytes: the minimum */
#define K32 K16 K16
#define K64 K32 K32                              /* 64 bytes: the maximum */

static const struct {
	const char *name;
	const char *text;
	size_t n;          /* entries expected */
	const char *first; /* identity of the first entry */
	size_t first_len;  /* its key length */
} good[] = {
	{ "one line", "alice:" K16, 1, "alice", 16 },
	{ "newline at end", "alice:" K16 "\n", 1, "alice", 16 },
	{ "crlf and trailing blanks", "alice:" K16 " \t\r\nbob:" K32 "\r\n", 2, "alice", 16 },
	{ "comments and blanks", "# keys\n\n   \n  # indented comment\nalice:" K32 "\n", 1, "alice", 32 },
	{ "upper-case hex", "alice:00112233445566778899AABBCCDDEEFF", 1, "alice", 16 },
	{ "longest key", "a:" K64, 1, "a", 64 },
	{ "identity with spaces and utf-8", "host one \xc3\xa9:" K16, 1, "host one \xc3\xa9", 16 },
	{ "identity like a DN", "CN=client1,O=Example:" K16, 1, "CN=client1,O=Example", 16 },
	{ "three entries", "a:" K16 "\nb:" K16 "\nc:" K16 "\n", 3, "a", 16 },
};

static const struct {
	const char *name;
	const char *text;
	size_t len;   /* 0: strlen(text) */
	int bad_line; /* 0: no entry at all */
} bad[] = {
	{ "empty file", "", 0, 0 },
	{ "only comments", "# nothing\n\n", 0, 0 },
	{ "no colon", "alice " K16, 0, 1 },
	{ "empty identity", ":" K16, 0, 1 },
	{ "empty key", "alice:", 0, 1 },
	{ "odd hex length", "alice:" K16 "0", 0, 1 },
	{ "not hex", "alice:" "0011223344556677889gaabbccddeeff", 0, 1 },
	{ "key too short", "alice:" "00112233445566778899aabbccddee", 0, 1 },
	{ "key too long", "alice:" K64 "00", 0, 1 },
	{ "colon in key", "alice:bob:" K16, 0, 1 },
	{ "blank inside key", "alice:" "0011223344556677 8899aabbccddeeff00", 0, 1 },
	{ "leading blank", " alice:" K16, 0, 1 },
	{ "control character", "al\x01ice:" K16, 0, 1 },
	{ "DEL character", "al\x7fice:" K16, 0, 1 },
	{ "NUL in identity", "al\0ice:" K16, 6 + 32 + 1, 1 },
	{ "duplicate identity", "alice:" K16 "\n# x\nalice:" K32 "\n", 0, 3 },
	{ "bad second line", "alice:" K16 "\nbob:zz\n", 0, 2 },
};

static void test_good(void **state)
{
	struct psk_file *f = malloc(sizeof(*f));
	size_t i;

	(void)state;
	assert_non_null(f);
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int line = -1;
		int r = psk_parse(f, good[i].text, strlen(good[i].text), &line);

		if (r != 0)
			fail_msg("%s: psk_parse = %d, line %d", good[i].name, r, line);
		assert_int_equal(line, 0);
		assert_int_equal(f->n, good[i].n);
		assert_string_equal(f->e[0].identity, good[i].first);
		assert_int_equal(f->e[0].key_len, good[i].first_len);
		assert_int_equal(f->e[0].key[0], 0x00);
		assert_int_equal(f->e[0].key[1], 0x11);
		assert_int_equal(f->e[0].key[15], 0xff);
		assert_ptr_equal(psk_find(f, good[i].first), &f->e[0]);
	}
	free(f);
}

static void test_bad(void **state)
{
	struct psk_file *f = malloc(sizeof(*f));
	size_t i, j;

	(void)state;
	assert_non_null(f);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
		int line = -1;
		int r = psk_parse(f, bad[i].text, len, &line);

		if (r != -EBADMSG || line != bad[i].bad_line)
			fail_msg("%s: psk_parse = %d, line %d (want -EBADMSG, line %d)", bad[i].name, r, line,
				 bad[i].bad_line);
		/* a failed parse leaves no entry and no key bytes behind */
		assert_int_equal(f->n, 0);
		for (j = 0; j < sizeof(f->e[0].key); j++)
			assert_int_equal(f->e[0].key[j], 0);
	}
	free(f);
}

static void test_limits(void **state)
{
	struct psk_file *f = malloc(sizeof(*f));
	size_t cap = (PSK_MAX_ENTRIES + 1) * 64, n = 0;
	char *buf = malloc(cap);
	char id[PSK_MAX_IDENTITY + 2];
	int i, line = -1;

	(void)state;
	assert_non_null(f);
	assert_non_null(buf);
	/* exactly PSK_MAX_ENTRIES entries pass, one more fails on its line */
	for (i = 0; i < PSK_MAX_ENTRIES; i++)
		n += (size_t)snprintf(buf + n, cap - n, "id%d:%s\n", i, K16);
	assert_int_equal(psk_parse(f, buf, n, &line), 0);
	assert_int_equal(f->n, PSK_MAX_ENTRIES);
	assert_non_null(psk_find(f, "id255"));
	assert_null(psk_find(f, "id256"));
	n += (size_t)snprintf(buf + n, cap - n, "id%d:%s\n", i, K16);
	assert_int_equal(psk_parse(f, buf, n, &line), -EBADMSG);
	assert_int_equal(line, PSK_MAX_ENTRIES + 1);

	/* the longest identity passes */
	memset(id, 'x', PSK_MAX_IDENTITY);
	id[PSK_MAX_IDENTITY] = '\0';
	n = (size_t)snprintf(buf, cap, "%s:%s", id, K16);
	assert_int_equal(psk_parse(f, buf, n, &line), 0);
	assert_string_equal(f->e[0].identity, id);

	/* one byte more is too long */
	n = (size_t)snprintf(buf, cap, "%sx:%s", id, K16);
	assert_int_equal(psk_parse(f, buf, n, &line), -EBADMSG);
	assert_int_equal(line, 1);

	/* length is honoured: bytes after <len> are not read */
	assert_int_equal(psk_parse(f, "alice:" K16 "zz", 6 + 32, &line), 0);
	assert_int_equal(f->e[0].key_len, 16);

	assert_null(psk_find(f, NULL));
	assert_null(psk_find(NULL, "alice"));
	assert_null(psk_find(f, "ALICE"));
	free(buf);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
