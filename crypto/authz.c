/* SPDX-License-Identifier: MIT */
/*
 * --allow lists. Pure: no I/O. Matching is our own rather than fnmatch(3)
 * so that only '*' and '?' are special (a DN may hold '[' or '\\') and the
 * cost stays O(len(pattern) * len(identity)) whatever a peer sends.
 */
#include "authz.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { AUTHZ_MAX_PATTERN = 1024 /* bytes; a DN pattern longer than this is a mistake */ };

int authz_add(struct authz_list *l, const char *pattern)
{
	char **np, *copy;
	size_t len, i;

	if (!l || !pattern)
		return -EINVAL;
	len = strnlen(pattern, AUTHZ_MAX_PATTERN + 1);
	if (len == 0 || len > AUTHZ_MAX_PATTERN)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)pattern[i];

		if (c < 0x20 || c == 0x7f)
			return -EINVAL;
	}
	copy = strdup(pattern);
	if (!copy)
		return -ENOMEM;
	np = realloc(l->patterns, (l->n + 1) * sizeof(*np));
	if (!np) {
		free(copy);
		return -ENOMEM;
	}
	np[l->n++] = copy;
	l->patterns = np;
	return 0;
}

/*
 * '*' matches any run of bytes (also none), '?' exactly one byte, any other
 * byte itself; the whole identity must match. Greedy with one backtrack
 * point: on a mismatch only the last '*' needs to swallow one more byte,
 * because earlier stars can never help a later literal match.
 */
bool authz_match(const char *pattern, const char *identity)
{
	const char *p = pattern, *s = identity;
	const char *star = NULL, *resume = NULL;

	if (!pattern || !identity)
		return false;
	while (*s) {
		if (*p == '*') {
			star = p++;
			resume = s;
		} else if (*p && (*p == '?' || *p == *s)) {
			p++;
			s++;
		} else if (star) {
			p = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

bool authz_allowed(const struct authz_list *l, const char *identity)
{
	size_t i;

	if (!identity)
		return false;
	if (!l || l->n == 0)
		return true;
	for (i = 0; i < l->n; i++)
		if (authz_match(l->patterns[i], identity))
			return true;
	return false;
}

void authz_free(struct authz_list *l)
{
	size_t i;

	if (!l)
		return;
	for (i = 0; i < l->n; i++)
		free(l->patterns[i]);
	free(l->patterns);
	l->patterns = NULL;
	l->n = 0;
}
