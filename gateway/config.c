/* SPDX-License-Identifier: MIT */
/*
 * Configuration files as argv (config.h, migrelay-serve.conf(5)). One line
 * is read with a cursor and its end pointer; nothing is allocated before
 * the line is known to be well formed, and every length is checked against
 * its cap before the bytes are copied.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* The parser's state: the file's name for messages, the line being read, and the argv built so far. */
struct cfg_parser {
	const char *name;
	const struct config_spec *spec;
	int line;
	struct config_args args;
	int cap;
	char *why;
	size_t whylen;
};

static int cfg_fail(struct cfg_parser *p, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes "NAME:LINE: message" into the caller's buffer and returns <r>. */
static int cfg_fail(struct cfg_parser *p, int r, const char *fmt, ...)
{
	char msg[CONFIG_MAX_WHY];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->why && p->whylen)
		snprintf(p->why, p->whylen, "%.256s:%d: %s", p->name, p->line, msg);
	return r;
}

/* Appends a copy of the <n> bytes at <s> (after <prefix>) to the argv; returns 0 or -ENOMEM. */
static int cfg_push(struct cfg_parser *p, const char *prefix, const char *s, size_t n)
{
	size_t pl = strlen(prefix);
	char *copy;

	if (p->args.argc + 2 > p->cap) {
		int cap = p->cap ? 2 * p->cap : 16;
		char **a = realloc(p->args.argv, (size_t)cap * sizeof(*a));

		if (!a)
			return -ENOMEM;
		p->args.argv = a;
		p->cap = cap;
	}
	copy = malloc(pl + n + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, prefix, pl);
	memcpy(copy + pl, s, n);
	copy[pl + n] = '\0';
	p->args.argv[p->args.argc++] = copy;
	p->args.argv[p->args.argc] = NULL;
	return 0;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* The option of <spec> named by the <n> bytes at <k> (case-insensitive, as sshd_config), or NULL. */
static const struct option *cfg_find(const struct config_spec *spec, const char *k, size_t n)
{
	for (const struct option *o = spec->keys; o && o->name; o++)
		if (strlen(o->name) == n && !strncasecmp(o->name, k, n))
			return o;
	return NULL;
}

static bool cfg_refused(const struct config_spec *spec, const char *name)
{
	for (const char *const *r = spec->refuse; r && *r; r++)
		if (!strcmp(*r, name))
			return true;
	return false;
}

/*
 * Reads the value at [*pp, end): a quoted string or a run of non-blank
 * bytes, unquoted into <val> (CONFIG_MAX_VALUE + 1 bytes). Returns its
 * length, or a negative errno after cfg_fail.
 */
static int cfg_value(struct cfg_parser *p, const char **pp, const char *end, char *val)
{
	const char *s = *pp;
	size_t n = 0;

	if (*s == '"') {
		for (s++;; s++) {
			char c;

			if (s == end)
				return cfg_fail(p, -EINVAL, "no closing quote");
			c = *s;
			if (c == '"')
				break;
			if (c == '\\') {
				if (s + 1 == end || (s[1] != '"' && s[1] != '\\'))
					return cfg_fail(p, -EINVAL, "in quotes, a backslash may only precede \" or \\");
				c = *++s;
			}
			if (n == CONFIG_MAX_VALUE)
				return cfg_fail(p, -EMSGSIZE, "value longer than %d bytes", CONFIG_MAX_VALUE);
			val[n++] = c;
		}
		s++; /* the closing quote */
		if (n == 0)
			return cfg_fail(p, -EINVAL, "empty value");
	} else {
		for (; s < end && !is_blank(*s); s++) {
			if (*s == '"')
				return cfg_fail(p, -EINVAL, "a quote inside a value: quote the whole value");
			if (n == CONFIG_MAX_VALUE)
				return cfg_fail(p, -EMSGSIZE, "value longer than %d bytes", CONFIG_MAX_VALUE);
			val[n++] = *s;
		}
	}
	val[n] = '\0';
	*pp = s;
	return (int)n;
}

/* Parses one line [s, end) (no newline); returns 0 or a negative errno after cfg_fail. */
static int cfg_line(struct cfg_parser *p, const char *s, const char *end)
{
	char val[CONFIG_MAX_VALUE + 1], kv[CONFIG_MAX_KEY + 4];
	const struct option *o;
	const char *k;
	size_t kn;
	int n, r;

	for (const char *c = s; c < end; c++) {
		unsigned char u = (unsigned char)*c;

		if (u == 0)
			return cfg_fail(p, -EBADMSG, "NUL byte at column %zu", (size_t)(c - s) + 1);
		if (u == '\r')
			return cfg_fail(p, -EBADMSG, "carriage return at column %zu (DOS line ends?)",
					(size_t)(c - s) + 1);
		if ((u < 0x20 && u != '\t') || u == 0x7f)
			return cfg_fail(p, -EBADMSG, "control character 0x%02x at column %zu", u, (size_t)(c - s) + 1);
	}
	while (s < end && is_blank(*s))
		s++;
	if (s == end || *s == '#')
		return 0;
	if (end - s >= 2 && s[0] == '-' && s[1] == '-')
		return cfg_fail(p, -EINVAL, "write keys without the leading \"--\"");
	for (k = s; s < end && is_key_char(*s); s++)
		;
	kn = (size_t)(s - k);
	if (kn == 0)
		return cfg_fail(p, -EINVAL, "a line must start with a key");
	if (kn > CONFIG_MAX_KEY)
		return cfg_fail(p, -EMSGSIZE, "key longer than %d bytes", CONFIG_MAX_KEY);
	if (s < end && !is_blank(*s) && *s != '=')
		return cfg_fail(p, -EINVAL, "character '%c' in key \"%.*s\"", *s, (int)kn, k);
	o = cfg_find(p->spec, k, kn);
	if (!o)
		return cfg_fail(p, -EINVAL, "unknown key \"%.*s\"", (int)kn, k);
	if (cfg_refused(p->spec, o->name))
		return cfg_fail(p, -EINVAL, "\"%s\" cannot be set in a configuration file", o->name);

	while (s < end && is_blank(*s))
		s++;
	if (s < end && *s == '=')
		for (s++; s < end && is_blank(*s); s++)
			;
	if (s == end || *s == '#') {
		n = 0;
		val[0] = '\0';
	} else if ((n = cfg_value(p, &s, end, val)) < 0) {
		return n;
	}
	while (s < end && is_blank(*s))
		s++;
	if (s < end && *s != '#')
		return cfg_fail(p, -EINVAL, "\"%s\" takes one value; quote a value that contains blanks", o->name);

	switch (o->has_arg) {
	case required_argument:
		if (n == 0)
			return cfg_fail(p, -EINVAL, "\"%s\" needs a value", o->name);
		if ((r = cfg_push(p, "--", o->name, strlen(o->name))) < 0 || (r = cfg_push(p, "", val, (size_t)n)) < 0)
			return cfg_fail(p, r, "out of memory");
		return 0;
	case optional_argument:
		/* getopt_long takes an optional argument only as --key=value */
		snprintf(kv, sizeof(kv), "--%s%s", o->name, n ? "=" : "");
		if ((r = cfg_push(p, kv, val, (size_t)n)) < 0)
			return cfg_fail(p, r, "out of memory");
		return 0;
	default:
		if (!strcasecmp(val, "no"))
			return 0;
		if (strcasecmp(val, "yes"))
			return cfg_fail(p, -EINVAL, "\"%s\" takes yes or no", o->name);
		if ((r = cfg_push(p, "--", o->name, strlen(o->name))) < 0)
			return cfg_fail(p, r, "out of memory");
		return 0;
	}
}

void config_args_free(struct config_args *a)
{
	if (!a)
		return;
	for (int i = 0; i < a->argc; i++)
		free(a->argv[i]);
	free(a->argv);
	a->argc = 0;
	a->argv = NULL;
}

int config_parse(const char *name, const char *text, size_t len, const struct config_spec *spec,
		 struct config_args *out, char *why, size_t whylen)
{
	struct cfg_parser p = {.name = name ? name : "(config)", .spec = spec, .why = why, .whylen = whylen};
	const char *s = text, *end = text + len;
	int r = 0;

	out->argc = 0;
	out->argv = NULL;
	if (why && whylen)
		why[0] = '\0';
	if (len > CONFIG_MAX_FILE)
		return cfg_fail(&p, -E2BIG, "file larger than %d bytes", CONFIG_MAX_FILE);
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *le = nl ? nl : end;

		p.line++;
		if (p.line > CONFIG_MAX_LINES) {
			r = cfg_fail(&p, -E2BIG, "more than %d lines", CONFIG_MAX_LINES);
			goto out;
		}
		if ((size_t)(le - s) >= CONFIG_MAX_LINE) {
			r = cfg_fail(&p, -EMSGSIZE, "line longer than %d bytes", CONFIG_MAX_LINE - 1);
			goto out;
		}
		if ((r = cfg_line(&p, s, le)) < 0)
			goto out;
		s = nl ? nl + 1 : end;
	}
	/* a file without options is still an argv: { NULL } */
	if (!p.args.argv && !(p.args.argv = calloc(1, sizeof(*p.args.argv)))) {
		r = cfg_fail(&p, -ENOMEM, "out of memory");
		goto out;
	}
	*out = p.args;
	p.args.argv = NULL;
	p.args.argc = 0;
	r = 0;
out:
	config_args_free(&p.args);
	return r;
}

int config_load(const char *path, const struct config_spec *spec, struct config_args *out, char *why, size_t whylen)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd, r;

	out->argc = 0;
	out->argv = NULL;
	if (!why)
		whylen = 0; /* snprintf(NULL, 0, ...) writes nothing */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		snprintf(why, whylen, "%.256s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(why, whylen, "%.256s: %s", path, strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		snprintf(why, whylen, "%.256s: not a regular file", path);
		goto out;
	}
	if (st.st_mode & S_IWOTH) {
		r = -EPERM;
		snprintf(why, whylen, "%.256s: others may write it (chmod o-w)", path);
		goto out;
	}
	if (st.st_size > CONFIG_MAX_FILE) {
		r = -E2BIG;
		snprintf(why, whylen, "%.256s: larger than %d bytes", path, CONFIG_MAX_FILE);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		r = -ENOMEM;
		snprintf(why, whylen, "%.256s: out of memory", path);
		goto out;
	}
	/* read one byte more than fstat said, so a file that grows meanwhile is noticed */
	while (got < (size_t)st.st_size + 1) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			snprintf(why, whylen, "%.256s: %s", path, strerror(-r));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got > (size_t)st.st_size) {
		r = -EAGAIN;
		snprintf(why, whylen, "%.256s: changed while being read", path);
		goto out;
	}
	r = config_parse(path, buf, got, spec, out, why, whylen);
out:
	free(buf);
	close(fd);
	return r;
}

int config_merge_argv(const struct config_args *cfg, int argc, char **argv, int *nargc, char ***nargv)
{
	int n = cfg ? cfg->argc : 0;
	char **a;

	if (argc < 1)
		return -EINVAL;
	a = calloc((size_t)argc + (size_t)n + 1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a[0] = argv[0];
	for (int i = 0; i < n; i++)
		a[1 + i] = cfg->argv[i];
	for (int i = 1; i < argc; i++)
		a[n + i] = argv[i];
	a[n + argc] = NULL;
	*nargc = n + argc;
	*nargv = a;
	return 0;
}
