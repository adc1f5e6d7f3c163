/* SPDX-License-Identifier: MIT */
/* Target functions: psk_parse, psk_find, authz_match, authz_add, authz_allowed, authz_free. */
/*
 * The whole input is a keys.psk file for psk_parse; whatever it accepts
 * must be self-consistent (bounds, unique identities that psk_find finds).
 * The same bytes also give an --allow pattern (up to the first '\n') and
 * a peer identity (the rest, up to a NUL): authz_match must agree with a
 * plain dynamic-programming matcher, and authz_add/authz_allowed with
 * authz_match.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/authz.h"
#include "crypto/psk.h"
#include "check.h"

enum { REF_MAX = 512 /* bytes of pattern and identity the reference matcher takes */ };

static struct psk_file keys; /* 50 KiB: static, so nothing to free */

static void check_psk(const uint8_t *d, size_t n)
{
	int line = -1, r;
	size_t i, j;

	r = psk_parse(&keys, (const char *)d, n, &line);
	if (r < 0) {
		CHECK(r == -EBADMSG);
		CHECK(line >= 0);
		CHECK(keys.n == 0);
		return;
	}
	CHECK(r == 0 && line == 0);
	CHECK(keys.n >= 1 && keys.n <= PSK_MAX_ENTRIES);
	for (i = 0; i < keys.n; i++) {
		const struct psk_entry *e = &keys.e[i];
		size_t idlen = strnlen(e->identity, sizeof(e->identity));

		CHECK(idlen >= 1 && idlen <= PSK_MAX_IDENTITY);
		CHECK(!strchr(e->identity, ':'));
		for (j = 0; j < idlen; j++)
			CHECK((unsigned char)e->identity[j] >= 0x20 && e->identity[j] != 0x7f);
		CHECK(e->key_len >= PSK_MIN_KEY && e->key_len <= PSK_MAX_KEY);
		CHECK(psk_find(&keys, e->identity) == e); /* also: identities are unique */
	}
}

/* Reference: classic DP over (pattern prefix, identity prefix). */
static bool ref_match(const char *p, size_t pl, const char *s, size_t sl)
{
	static bool row[REF_MAX + 1], prev[REF_MAX + 1];
	size_t i, j;

	prev[0] = true;
	for (j = 1; j <= sl; j++)
		prev[j] = false;
	for (i = 1; i <= pl; i++) {
		row[0] = prev[0] && p[i - 1] == '*';
		for (j = 1; j <= sl; j++) {
			if (p[i - 1] == '*')
				row[j] = prev[j] || row[j - 1];
			else
				row[j] = prev[j - 1] && (p[i - 1] == '?' || p[i - 1] == s[j - 1]);
		}
		memcpy(prev, row, (sl + 1) * sizeof(row[0]));
	}
	return prev[sl];
}

static void check_authz(const uint8_t *d, size_t n)
{
	const uint8_t *nl = memchr(d, '\n', n);
	size_t pl = nl ? (size_t)(nl - d) : n;
	size_t rest = nl ? n - pl - 1 : 0;
	char *pat = malloc(pl + 1), *id = malloc(rest + 1);
	struct authz_list l = { 0 };
	bool m;
	int r;

	if (!pat || !id)
		goto out;
	memcpy(pat, d, pl);
	pat[pl] = '\0';
	if (rest)
		memcpy(id, nl + 1, rest);
	id[rest] = '\0';
	/* C strings end at the first NUL */
	pl = strlen(pat);
	rest = strlen(id);

	m = authz_match(pat, id);
	if (pl <= REF_MAX && rest <= REF_MAX)
		CHECK(m == ref_match(pat, pl, id, rest));

	CHECK(authz_allowed(&l, id)); /* empty list */
	r = authz_add(&l, pat);
	if (r == 0) {
		CHECK(l.n == 1);
		CHECK(authz_allowed(&l, id) == m);
		CHECK(authz_add(&l, "*") == 0);
		CHECK(authz_allowed(&l, id));
	} else {
		CHECK(r == -EINVAL);
		CHECK(l.n == 0);
	}
out:
	authz_free(&l);
	free(pat);
	free(id);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	check_psk(d, n);
	check_authz(d, n);
	return 0;
}
