/* SPDX-License-Identifier: MIT */
/*
 * Configuration files in the style of sshd_config (migrelay-serve.conf(5)):
 * one option per line, "key value", "key=value" or "key = value"; '#'
 * starts a comment at the start of a line or after blanks; a value with
 * blanks, '#' or '"' is written in double quotes (\" and \\ inside).
 *
 *	listen 0.0.0.0:4433
 *	target vm1=qmp:/run/vm1.qmp      # a comment
 *	allow "CN=src.example,O=Example Corp"
 *	insecure-plaintext no
 *
 * The file becomes the argv a command line would have been ("--listen",
 * "0.0.0.0:4433", ...), to be parsed by the command's own getopt_long
 * table placed before the real command line, so that its options override
 * the file's. The keys are the long options of that table, which the caller
 * passes in: this module knows nothing of any command. Options without an
 * argument take "yes" (the option is given) or "no" (it is not).
 *
 * Strict by design, since the file decides what the daemon exposes: NUL
 * bytes and control characters (other than tab and the newline) are
 * refused, a line is at most CONFIG_MAX_LINE bytes, a file at most
 * CONFIG_MAX_LINES lines and CONFIG_MAX_FILE bytes, a value at most
 * CONFIG_MAX_VALUE bytes, and the first error stops with the file name and
 * line number.
 */
#ifndef MR_GATEWAY_CONFIG_H
#define MR_GATEWAY_CONFIG_H

#include <getopt.h>
#include <stddef.h>

enum config_limits {
	CONFIG_MAX_LINE = 4096,	   /* bytes of one line, its newline included */
	CONFIG_MAX_LINES = 4096,   /* lines of one file, comments and blanks included */
	CONFIG_MAX_FILE = 1 << 20, /* 1 MiB: the file is read whole into memory */
	CONFIG_MAX_VALUE = 2048,   /* bytes of one value once unquoted: paths, DN patterns */
	CONFIG_MAX_KEY = 64,	   /* bytes of one key */
	CONFIG_MAX_WHY = 512,	   /* a useful size for the caller's <why> buffer */
};

/* What a file may say: the caller's getopt_long table, minus the keys it names in <refuse>. */
struct config_spec {
	const struct option *keys; /* ends with a NULL name; has_arg tells how a key is written */
	const char *const *refuse; /* NULL-terminated names that may not appear in a file ("help", "config"), or NULL */
};

/* The argv a file stands for: "--key" and, for keys with an argument, the value. */
struct config_args {
	int argc;
	char **argv; /* argc strings, then NULL; owned (config_args_free) */
};

/*
 * Parses the <len> bytes at <text> (need not end in NUL or in a newline);
 * <name> names the file in messages. On success returns 0 and fills <out>
 * (which the caller frees with config_args_free). On failure returns
 * -EINVAL (unknown key, missing or empty value, bad quoting, a second
 * value, a flag whose value is not yes or no), -EMSGSIZE (a line, key or
 * value too long), -EBADMSG (a NUL byte or control character), -E2BIG (too
 * many lines or bytes) or -ENOMEM, writes "NAME:LINE: reason" into <why>
 * (<whylen> bytes, CONFIG_MAX_WHY is plenty) and leaves <out> empty.
 * Pure (no syscalls but malloc); any thread.
 */
int config_parse(const char *name, const char *text, size_t len, const struct config_spec *spec,
		 struct config_args *out, char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * Reads the file <path> and parses it as config_parse does. It must be a
 * regular file of at most CONFIG_MAX_FILE bytes that others may not write
 * (-EPERM otherwise, since it names what the daemon exposes). Returns 0 or
 * -errno, with "PATH: reason" or "PATH:LINE: reason" in <why>; -ENOENT
 * when the file does not exist (a caller with a default path may ignore
 * that). Any thread.
 */
int config_load(const char *path, const struct config_spec *spec, struct config_args *out, char *why, size_t whylen)
    __attribute__((warn_unused_result));

/*
 * Builds the argv getopt_long should see: argv[0], the file's options,
 * then argv[1..argc-1], so that the command line comes last and wins.
 * *<nargv> is a new array of *<nargc> + 1 pointers (NULL last) that the
 * caller frees with free(); the strings stay owned by <cfg> and <argv>.
 * Returns 0 or -ENOMEM (-EINVAL if argc < 1). Any thread.
 */
int config_merge_argv(const struct config_args *cfg, int argc, char **argv, int *nargc, char ***nargv)
    __attribute__((warn_unused_result));

/* Frees what <a> owns and empties it; NULL and empty are fine. */
void config_args_free(struct config_args *a);

#endif
