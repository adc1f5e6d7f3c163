/* SPDX-License-Identifier: MIT */
/* Target functions: config_parse, config_merge_argv, config_args_free. */
/*
 * The whole input is a configuration file for a table shaped like serve's
 * (keys with a value, flags, one optional argument, refused keys). What
 * config_parse accepts must be a well-formed argv: every option one of the
 * table's, a value after each that takes one, values bounded and free of
 * control characters. Written back out with every value quoted, it must
 * parse to the same argv (the quoting rules are each other's inverse).
 * What it refuses must leave nothing behind and say "NAME:LINE: why".
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/config.h"
#include "check.h"

static const struct option keys[] = {
    {"listen", required_argument, NULL, 'l'},
    {"target", required_argument, NULL, 'T'},
    {"allow", required_argument, NULL, 1},
    {"allow-for", required_argument, NULL, 2},
    {"max-sessions", required_argument, NULL, 3},
    {"insecure-plaintext", no_argument, NULL, 4},
    {"verbose", no_argument, NULL, 'v'},
    {"color", optional_argument, NULL, 5},
    {"config", required_argument, NULL, 6},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};
static const char *const refuse[] = {"config", "help", NULL};
static const struct config_spec spec = {keys, refuse};

/* The option "--name" or "--name=value" names, or NULL. */
static const struct option *find(const char *arg)
{
	size_t n;

	if (strncmp(arg, "--", 2))
		return NULL;
	arg += 2;
	n = strcspn(arg, "=");
	for (const struct option *o = keys; o->name; o++)
		if (strlen(o->name) == n && !strncmp(o->name, arg, n))
			return o;
	return NULL;
}

static void check_value(const char *v)
{
	size_t n = strlen(v);

	CHECK(n >= 1 && n <= CONFIG_MAX_VALUE);
	for (size_t i = 0; i < n; i++)
		CHECK(((unsigned char)v[i] >= 0x20 || v[i] == '\t') && v[i] != 0x7f);
}

/* Writes <a> back as a file whose every value is quoted; returns its length. */
static size_t serialize(const struct config_args *a, char *buf, size_t cap)
{
	size_t o = 0;

	for (int i = 0; i < a->argc; i++) {
		const struct option *o2 = find(a->argv[i]);
		const char *eq = strchr(a->argv[i], '=');
		const char *v = NULL;

		o += (size_t)snprintf(buf + o, cap - o, "%s", o2->name);
		if (o2->has_arg == required_argument)
			v = a->argv[++i];
		else if (o2->has_arg == optional_argument && eq)
			v = eq + 1;
		else if (o2->has_arg == no_argument)
			o += (size_t)snprintf(buf + o, cap - o, " yes");
		if (v) {
			buf[o++] = ' ';
			buf[o++] = '"';
			for (; *v; v++) {
				if (*v == '"' || *v == '\\')
					buf[o++] = '\\';
				buf[o++] = *v;
			}
			buf[o++] = '"';
		}
		buf[o++] = '\n';
		CHECK(o < cap);
	}
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct config_args a = {0}, b = {0};
	char why[CONFIG_MAX_WHY], *out = NULL, **av = NULL;
	char *argv0[] = {"x", "--verbose", NULL};
	int r, ac = 0;

	r = config_parse("fuzz", (const char *)d, n, &spec, &a, why, sizeof(why));
	if (r < 0) {
		CHECK(r == -EINVAL || r == -EMSGSIZE || r == -EBADMSG || r == -E2BIG || r == -ENOMEM);
		CHECK(a.argc == 0 && a.argv == NULL);
		CHECK(!strncmp(why, "fuzz:", 5) && atoi(why + 5) >= 0);
		CHECK(atoi(why + 5) <= CONFIG_MAX_LINES + 1);
		return 0;
	}
	CHECK(r == 0 && a.argv && !a.argv[a.argc]);
	for (int i = 0; i < a.argc; i++) {
		const struct option *o = find(a.argv[i]);

		CHECK(o);
		CHECK(strcmp(o->name, "config") && strcmp(o->name, "help"));
		if (o->has_arg == required_argument) {
			CHECK(i + 1 < a.argc);
			check_value(a.argv[++i]);
		} else if (o->has_arg == optional_argument && strchr(a.argv[i], '=')) {
			check_value(strchr(a.argv[i], '=') + 1);
		} else {
			CHECK(!strchr(a.argv[i], '='));
		}
	}

	/* quoted back out (at most 2 x + 4 bytes per value), it parses to the same argv */
	size_t cap = 2 * n + 64 * ((size_t)a.argc + 1);
	out = malloc(cap);
	if (out) {
		size_t len = serialize(&a, out, cap);

		if (len <= CONFIG_MAX_FILE) {
			r = config_parse("again", out, len, &spec, &b, why, sizeof(why));
			/* a quoted line may grow past the line limit; nothing else may differ */
			CHECK(r == 0 || r == -EMSGSIZE);
			if (r == 0) {
				CHECK(b.argc == a.argc);
				for (int i = 0; i < a.argc; i++)
					CHECK(!strcmp(a.argv[i], b.argv[i]));
			}
		}
	}

	CHECK(config_merge_argv(&a, 2, argv0, &ac, &av) == 0 || av == NULL);
	if (av) {
		CHECK(ac == a.argc + 2 && !strcmp(av[ac - 1], "--verbose") && !av[ac]);
		free(av);
	}
	free(out);
	config_args_free(&b);
	config_args_free(&a);
	return 0;
}
