/* SPDX-License-Identifier: MIT */
/* Target functions: gw_target_parse, wire_name_ok, authz_add, authz_allowed, authz_match, authz_free. */
/*
 * The destination's target and allow-list syntax (README.md "Targets",
 * "Authentication and authorization"). The input is lines:
 *   line 1        a --target argument, NAME=SPEC, for gw_target_parse
 *   "A" + rest    an --allow-for pattern of that target (its authz_list)
 *   "G" + rest    an --allow pattern for every target
 *   other lines   a peer identity (subject DN or PSK identity)
 * A C string ends at its first NUL, as an argv string would.
 *
 * gw_target_parse must accept exactly NAME=discard, NAME=file:PATH,
 * NAME=unix:PATH and NAME=qmp:PATH[,log=FILE] with a valid NAME and a
 * non-empty PATH, give back what it was given, and on a refusal write a
 * terminated reason into any buffer size. authz_add must refuse exactly
 * the empty, over-long and control-character patterns, and authz_allowed
 * must agree with an independent matcher over the patterns it holds.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/authz.h"
#include "gateway/log.h"
#include "gateway/target.h"
#include "stream/frame.h"
#include "check.h"

enum {
	PATTERN_MAX = 1024, /* bytes; authz.h: longer patterns are refused */
	LIST_MAX = 32,      /* patterns per list: enough for coverage, bounded cost per input */
	IDENT_MAX = 64,     /* identities checked per input */
	REF_MAX = 2048,     /* longest pattern or identity the reference matcher takes */
};

/* Reference matcher: which identity prefixes the pattern prefix read so far can match ('*' any run, '?' one byte). */
static bool ref_match(const char *pat, const char *id)
{
	static bool can[REF_MAX + 1];
	size_t il = strlen(id), j;

	if (strlen(pat) > REF_MAX || il > REF_MAX)
		return authz_match(pat, id); /* not checked: too long for the table */
	memset(can, 0, (il + 1) * sizeof(can[0]));
	can[0] = true;
	for (const char *p = pat; *p; p++) {
		if (*p == '*') {
			for (j = 1; j <= il; j++)
				can[j] = can[j] || can[j - 1];
			continue;
		}
		for (j = il; j >= 1; j--)
			can[j] = can[j - 1] && (*p == '?' || *p == id[j - 1]);
		can[0] = false;
	}
	return can[il];
}

static bool pattern_valid(const char *p)
{
	size_t len = strlen(p);

	if (len == 0 || len > PATTERN_MAX)
		return false;
	for (; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* Adds <pat> to <l> (or checks why not) and keeps the list within LIST_MAX. */
static void add_pattern(struct authz_list *l, const char *pat)
{
	size_t n = l->n;
	int r;

	if (n >= LIST_MAX)
		return;
	r = authz_add(l, pat);
	if (r == 0) {
		CHECK(pattern_valid(pat));
		CHECK(l->n == n + 1);
		CHECK(!strcmp(l->patterns[n], pat) && l->patterns[n] != pat);
	} else {
		CHECK(r == -EINVAL);
		CHECK(!pattern_valid(pat));
		CHECK(l->n == n);
	}
}

static void check_identity(const struct authz_list *l, const char *id)
{
	bool any = false;

	for (size_t i = 0; i < l->n; i++) {
		bool m = authz_match(l->patterns[i], id);

		CHECK(m == ref_match(l->patterns[i], id));
		any = any || m;
	}
	CHECK(authz_allowed(l, id) == (l->n == 0 || any));
}

/* What gw_target_parse must make of <arg>, checked against what it did. */
static void check_target(const char *arg)
{
	static struct gw_target t, t2; /* 8 KiB each: static, nothing to free but the lists */
	char why[512], small[8];
	const char *eq = strchr(arg, '='), *spec, *rest = NULL, *logp;
	int r, r2;

	memset(why, 'x', sizeof(why));
	r = gw_target_parse(&t, arg, why, sizeof(why));
	/* The reason is always terminated, whatever room it is given. */
	memset(small, 'x', sizeof(small));
	r2 = gw_target_parse(&t2, arg, small, sizeof(small));
	CHECK(r == r2);
	CHECK(t.allow.n == 0 && !t.allow.patterns);
	if (r < 0) {
		CHECK(r == -EINVAL);
		CHECK(memchr(why, '\0', sizeof(why)) && why[0]);
		CHECK(memchr(small, '\0', sizeof(small)));
	} else {
		CHECK(r == 0);
		CHECK(!memcmp(&t, &t2, sizeof(t)));
	}

	/* The same decision, made independently. */
	if (!eq || !wire_name_ok(arg, (size_t)(eq - arg))) {
		CHECK(r < 0);
		return;
	}
	spec = eq + 1;
	if (!strcmp(spec, "discard")) {
		CHECK(r == 0 && t.kind == GW_TGT_DISCARD && !t.path[0] && !t.log[0]);
	} else if (!strncmp(spec, "file:", 5) || !strncmp(spec, "unix:", 5) || !strncmp(spec, "qmp:", 4)) {
		rest = strchr(spec, ':') + 1;
		if (!*rest || strlen(rest) >= sizeof(t.path)) {
			CHECK(r < 0);
			return;
		}
		if (spec[0] == 'q' && (logp = strstr(rest, ",log=")) && logp == rest) {
			/* "qmp:,log=FILE" names no QEMU */
			CHECK(r < 0);
			return;
		}
		if (spec[0] == 'q' && (logp = strstr(rest, ",log=")) && !logp[5]) {
			/* "qmp:PATH,log=" names no log file */
			CHECK(r < 0);
			return;
		}
		CHECK(r == 0);
		CHECK(t.kind == (spec[0] == 'f' ? GW_TGT_FILE : spec[0] == 'u' ? GW_TGT_UNIX : GW_TGT_QMP));
		CHECK(t.path[0]);
		if (t.kind == GW_TGT_QMP && (logp = strstr(rest, ",log="))) {
			CHECK(strlen(t.path) == (size_t)(logp - rest) && !strncmp(t.path, rest, strlen(t.path)));
			CHECK(!strcmp(t.log, logp + 5));
		} else {
			CHECK(!strcmp(t.path, rest) && !t.log[0]);
		}
	} else {
		CHECK(r < 0);
		return;
	}
	/* A peer names a target only by this name: never a path. */
	CHECK(strlen(t.name) == (size_t)(eq - arg) && !strncmp(t.name, arg, strlen(t.name)));
	CHECK(wire_name_ok(t.name, strlen(t.name)) && !strchr(t.name, '/'));
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static struct gw_target t;
	struct authz_list global = { 0 };
	const uint8_t *end = d + n;
	char *line = malloc(n + 1), why[256];
	int lineno = 0, idents = 0;

	gw_log_level = -1; /* silent */
	if (!line)
		return 0;
	memset(&t, 0, sizeof(t));
	while (d < end || lineno == 0) {
		const uint8_t *nl = memchr(d, '\n', (size_t)(end - d));
		size_t len = nl ? (size_t)(nl - d) : (size_t)(end - d);

		memcpy(line, d, len);
		line[len] = '\0';
		d += len + (nl ? 1 : 0);
		if (lineno++ == 0) {
			check_target(line);
			/* the target whose --allow-for list the "A" lines fill */
			if (gw_target_parse(&t, line, why, sizeof(why)) < 0)
				memset(&t, 0, sizeof(t));
			continue;
		}
		if (line[0] == 'A') {
			add_pattern(&t.allow, line + 1);
		} else if (line[0] == 'G') {
			add_pattern(&global, line + 1);
		} else if (idents++ < IDENT_MAX) {
			check_identity(&t.allow, line);
			check_identity(&global, line);
		}
	}
	authz_free(&t.allow);
	CHECK(t.allow.n == 0 && !t.allow.patterns);
	authz_free(&global);
	authz_free(NULL);
	free(line);
	return 0;
}
