/* SPDX-License-Identifier: MIT */
/* Configuration file parser (gateway/config.c): table-driven good and bad files, limits, loading, merging. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/config.h"
#include "util.h"

/* A table like serve's: required, flag and optional keys. */
static const struct option keys[] = {
    {"listen", required_argument, NULL, 'l'},
    {"target", required_argument, NULL, 'T'},
    {"allow", required_argument, NULL, 1},
    {"max-sessions", required_argument, NULL, 2},
    {"insecure-plaintext", no_argument, NULL, 3},
    {"verbose", no_argument, NULL, 'v'},
    {"color", optional_argument, NULL, 4},
    {"config", required_argument, NULL, 5},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};
static const char *const refuse[] = {"config", "help", NULL};
static const struct config_spec spec = {keys, refuse};

static const struct {
	const char *name;
	const char *text;
	const char *want; /* the argv, one word per line */
} good[] = {
    {"empty file", "", ""},
    {"only comments and blanks", "# serve\n\n   \n\t# indented\n", ""},
    {"one option", "listen 0.0.0.0:4433\n", "--listen\n0.0.0.0:4433\n"},
    {"no newline at the end", "listen 0.0.0.0:4433", "--listen\n0.0.0.0:4433\n"},
    {"equals sign", "listen=[::1]:4433\n", "--listen\n[::1]:4433\n"},
    {"equals with blanks", "listen \t=  1.2.3.4:5\n", "--listen\n1.2.3.4:5\n"},
    {"value with '=' in it", "target vm1=qmp:/run/vm1.qmp,log=/var/log/vm1.log\n",
     "--target\nvm1=qmp:/run/vm1.qmp,log=/var/log/vm1.log\n"},
    {"leading and trailing blanks", "  \tlisten   a:1 \t \n", "--listen\na:1\n"},
    {"trailing comment", "max-sessions 16   # the default\n", "--max-sessions\n16\n"},
    {"'#' inside an unquoted value", "allow CN=a#b\n", "--allow\nCN=a#b\n"},
    {"quoted value with blanks", "allow \"CN=src,O=Example Corp\"\n", "--allow\nCN=src,O=Example Corp\n"},
    {"quoted value with escapes", "allow \"a\\\"b\\\\c # d\"  # comment\n", "--allow\na\"b\\c # d\n"},
    {"value starting with a dash", "allow -x\n", "--allow\n-x\n"},
    {"repeated key keeps both", "target a=discard\ntarget b=discard\n", "--target\na=discard\n--target\nb=discard\n"},
    {"flag yes", "insecure-plaintext yes\n", "--insecure-plaintext\n"},
    {"flag YES, case-insensitive key", "Insecure-Plaintext YES\n", "--insecure-plaintext\n"},
    {"flag no", "verbose no\n", ""},
    {"optional argument, none", "color\n", "--color\n"},
    {"optional argument, given", "color always\n", "--color=always\n"},
    {"utf-8 value", "allow \"CN=h\xc3\xa9te\"\n", "--allow\nCN=h\xc3\xa9te\n"},
    {"several options", "listen 0.0.0.0:4433\ntarget vm1=qmp:/run/vm1.qmp\nallow CN=src.example\n",
     "--listen\n0.0.0.0:4433\n--target\nvm1=qmp:/run/vm1.qmp\n--allow\nCN=src.example\n"},
};

static const struct {
	const char *name;
	const char *text;
	size_t len; /* 0: strlen(text) */
	int err;
	int line;
} bad[] = {
    {"unknown key", "listen a:1\nlisten-on a:1\n", 0, -EINVAL, 2},
    {"key with dashes", "--listen a:1\n", 0, -EINVAL, 1},
    {"refused key", "config /etc/x\n", 0, -EINVAL, 1},
    {"refused flag", "help yes\n", 0, -EINVAL, 1},
    {"missing value", "# x\nlisten\n", 0, -EINVAL, 2},
    {"missing value before a comment", "listen # here\n", 0, -EINVAL, 1},
    {"empty quoted value", "listen \"\"\n", 0, -EINVAL, 1},
    {"two values", "allow CN=src,O=Example Corp\n", 0, -EINVAL, 1},
    {"text after a quoted value", "allow \"a b\" c\n", 0, -EINVAL, 1},
    {"no closing quote", "allow \"a b\n", 0, -EINVAL, 1},
    {"quote inside an unquoted value", "allow a\"b\"\n", 0, -EINVAL, 1},
    {"unknown escape", "allow \"a\\nb\"\n", 0, -EINVAL, 1},
    {"backslash at the end of a quote", "allow \"ab\\", 0, -EINVAL, 1},
    {"flag without yes or no", "verbose\n", 0, -EINVAL, 1},
    {"flag with another word", "verbose true\n", 0, -EINVAL, 1},
    {"bad character in key", "listen:a:1\n", 0, -EINVAL, 1},
    {"line starting with '='", "= a\n", 0, -EINVAL, 1},
    {"NUL byte", "listen a:1\nallow a\0b\n", 21, -EBADMSG, 2},
    {"NUL byte in a comment", "# a\0b\n", 6, -EBADMSG, 1},
    {"carriage return", "listen a:1\r\n", 0, -EBADMSG, 1},
    {"control character",
     "allow a\x01"
     "b\n",
     0, -EBADMSG, 1},
    {"DEL",
     "allow a\x7f"
     "b\n",
     0, -EBADMSG, 1},
    {"escape sequence", "allow \x1b[31m\n", 0, -EBADMSG, 1},
};

/* The argv as one word per line, for comparison. */
static void joined(const struct config_args *a, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < a->argc; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s\n", a->argv[i]);
	assert_true(o < len);
}

static void test_good(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct config_args a = {0};
		char why[CONFIG_MAX_WHY] = "x", got[1024];
		int r = config_parse("t.conf", good[i].text, strlen(good[i].text), &spec, &a, why, sizeof(why));

		if (r != 0)
			fail_msg("%s: config_parse = %d (%s)", good[i].name, r, why);
		assert_string_equal(why, "");
		assert_non_null(a.argv);
		assert_null(a.argv[a.argc]);
		joined(&a, got, sizeof(got));
		if (strcmp(got, good[i].want))
			fail_msg("%s: got\n%s\nwant\n%s", good[i].name, got, good[i].want);
		config_args_free(&a);
		assert_int_equal(a.argc, 0);
		assert_null(a.argv);
	}
}

static void test_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config_args a = {0};
		char why[CONFIG_MAX_WHY] = "", prefix[64];
		size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
		int r = config_parse("t.conf", bad[i].text, len, &spec, &a, why, sizeof(why));

		if (r != bad[i].err)
			fail_msg("%s: config_parse = %d, want %d (%s)", bad[i].name, r, bad[i].err, why);
		snprintf(prefix, sizeof(prefix), "t.conf:%d: ", bad[i].line);
		if (strncmp(why, prefix, strlen(prefix)) || strlen(why) <= strlen(prefix))
			fail_msg("%s: message \"%s\" does not start with \"%s\"", bad[i].name, why, prefix);
		assert_int_equal(a.argc, 0);
		assert_null(a.argv);
	}
}

/* The messages name the key or the fix, not only the line. */
static void test_messages(void **state)
{
	struct config_args a = {0};
	char why[CONFIG_MAX_WHY];

	(void)state;
	assert_int_equal(config_parse("/etc/x.conf", "\n\nlistne a:1\n", 12, &spec, &a, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "/etc/x.conf:3: unknown key \"listne\"");
	assert_int_equal(config_parse("f", "config /x\n", 10, &spec, &a, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "f:1: \"config\" cannot be set in a configuration file");
	/* a tiny buffer is cut, not overrun */
	char tiny[8];
	assert_int_equal(config_parse("f", "nokey 1\n", 8, &spec, &a, tiny, sizeof(tiny)), -EINVAL);
	assert_string_equal(tiny, "f:1: un");
	/* no buffer at all */
	assert_int_equal(config_parse("f", "nokey 1\n", 8, &spec, &a, NULL, 0), -EINVAL);
}

/* Limits: the longest line, value and line count pass; one more fails. */
static void test_limits(void **state)
{
	size_t big = (size_t)CONFIG_MAX_LINES * 2 + CONFIG_MAX_FILE;
	char *t = malloc(big), why[CONFIG_MAX_WHY];
	struct config_args a = {0};
	size_t n;

	(void)state;
	assert_non_null(t);
	/* a value of CONFIG_MAX_VALUE bytes, and one more */
	n = (size_t)sprintf(t, "allow ");
	memset(t + n, 'x', CONFIG_MAX_VALUE);
	assert_int_equal(config_parse("f", t, n + CONFIG_MAX_VALUE, &spec, &a, why, sizeof(why)), 0);
	assert_int_equal(strlen(a.argv[1]), CONFIG_MAX_VALUE);
	config_args_free(&a);
	t[n + CONFIG_MAX_VALUE] = 'x';
	assert_int_equal(config_parse("f", t, n + CONFIG_MAX_VALUE + 1, &spec, &a, why, sizeof(why)), -EMSGSIZE);
	/* the same in quotes */
	n = (size_t)sprintf(t, "allow \"");
	memset(t + n, 'y', CONFIG_MAX_VALUE + 1);
	t[n + CONFIG_MAX_VALUE + 1] = '"';
	assert_int_equal(config_parse("f", t, n + CONFIG_MAX_VALUE + 2, &spec, &a, why, sizeof(why)), -EMSGSIZE);
	t[n + CONFIG_MAX_VALUE] = '"';
	assert_int_equal(config_parse("f", t, n + CONFIG_MAX_VALUE + 1, &spec, &a, why, sizeof(why)), 0);
	config_args_free(&a);

	/* a comment line of CONFIG_MAX_LINE - 1 bytes plus its newline; one byte more */
	t[0] = '#';
	memset(t + 1, 'c', CONFIG_MAX_LINE - 2);
	t[CONFIG_MAX_LINE - 1] = '\n';
	assert_int_equal(config_parse("f", t, CONFIG_MAX_LINE, &spec, &a, why, sizeof(why)), 0);
	config_args_free(&a);
	t[CONFIG_MAX_LINE - 1] = 'c';
	t[CONFIG_MAX_LINE] = '\n';
	assert_int_equal(config_parse("f", t, CONFIG_MAX_LINE + 1, &spec, &a, why, sizeof(why)), -EMSGSIZE);
	assert_string_equal(why, "f:1: line longer than 4095 bytes");

	/* a key longer than CONFIG_MAX_KEY */
	memset(t, 'k', CONFIG_MAX_KEY + 1);
	memcpy(t + CONFIG_MAX_KEY + 1, " 1\n", 3);
	assert_int_equal(config_parse("f", t, CONFIG_MAX_KEY + 4, &spec, &a, why, sizeof(why)), -EMSGSIZE);

	/* CONFIG_MAX_LINES blank lines, then one more */
	memset(t, '\n', CONFIG_MAX_LINES + 1);
	assert_int_equal(config_parse("f", t, CONFIG_MAX_LINES, &spec, &a, why, sizeof(why)), 0);
	config_args_free(&a);
	assert_int_equal(config_parse("f", t, CONFIG_MAX_LINES + 1, &spec, &a, why, sizeof(why)), -E2BIG);
	assert_string_equal(why, "f:4097: more than 4096 lines");

	/* more than CONFIG_MAX_FILE bytes, refused before reading a line */
	memset(t, '#', big);
	assert_int_equal(config_parse("f", t, (size_t)CONFIG_MAX_FILE + 1, &spec, &a, why, sizeof(why)), -E2BIG);
	assert_null(a.argv);
	free(t);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_load(void **state)
{
	char dir[] = "/tmp/mr-config-XXXXXX", path[128], why[CONFIG_MAX_WHY];
	struct config_args a = {0};

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/serve.conf", dir);

	assert_int_equal(config_load(path, &spec, &a, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "serve.conf: No such file"));

	write_file(path, "# test\nlisten 127.0.0.1:1\ntarget t=discard\n", 0644);
	assert_int_equal(config_load(path, &spec, &a, why, sizeof(why)), 0);
	assert_int_equal(a.argc, 4);
	assert_string_equal(a.argv[3], "t=discard");
	config_args_free(&a);

	write_file(path, "listen 127.0.0.1:1\nbogus x\n", 0640);
	assert_int_equal(config_load(path, &spec, &a, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "/serve.conf:2: unknown key \"bogus\""));

	write_file(path, "listen 127.0.0.1:1\n", 0666);
	assert_int_equal(config_load(path, &spec, &a, why, sizeof(why)), -EPERM);
	assert_null(a.argv);

	assert_int_equal(config_load(dir, &spec, &a, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "not a regular file"));
	assert_int_equal(config_load("/dev/null", &spec, &a, why, sizeof(why)), -EINVAL);

	test_rm_tree(dir);
}

/* The merged argv parses with getopt_long, and the command line wins. */
static void test_merge(void **state)
{
	const char *text = "listen 0.0.0.0:1\nmax-sessions 4\ninsecure-plaintext yes\ntarget a=discard\n";
	char *cmdline[] = {"migrelay-serve", "--listen", "127.0.0.1:2", "--target", "b=discard", NULL};
	struct config_args a = {0};
	char why[CONFIG_MAX_WHY], **av = NULL;
	const char *listen = NULL;
	int ac = 0, c, ntargets = 0, plain = 0;

	(void)state;
	assert_int_equal(config_parse("f", text, strlen(text), &spec, &a, why, sizeof(why)), 0);
	assert_int_equal(config_merge_argv(&a, 5, cmdline, &ac, &av), 0);
	assert_int_equal(ac, 12);
	assert_string_equal(av[0], "migrelay-serve");
	assert_string_equal(av[1], "--listen");
	assert_string_equal(av[11], "b=discard");
	assert_null(av[12]);
	optind = 0;
	while ((c = getopt_long(ac, av, "l:T:vh", keys, NULL)) != -1) {
		if (c == 'l')
			listen = optarg;
		else if (c == 'T')
			ntargets++;
		else if (c == 3)
			plain = 1;
		else
			assert_true(c == 2);
	}
	assert_string_equal(listen, "127.0.0.1:2");
	assert_int_equal(ntargets, 2);
	assert_int_equal(plain, 1);
	free(av);

	/* without a file */
	assert_int_equal(config_merge_argv(NULL, 1, cmdline, &ac, &av), 0);
	assert_int_equal(ac, 1);
	assert_null(av[1]);
	free(av);
	assert_int_equal(config_merge_argv(&a, 0, cmdline, &ac, &av), -EINVAL);
	config_args_free(&a);
	config_args_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),   cmocka_unit_test(test_bad),	cmocka_unit_test(test_messages),
	    cmocka_unit_test(test_limits), cmocka_unit_test(test_load), cmocka_unit_test(test_merge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
