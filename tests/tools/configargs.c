/* SPDX-License-Identifier: MIT */
/*
 * mr_configargs FILE KEY[=] ...: reads FILE with gateway/config.c for the
 * keys named (KEY= takes a value, KEY is a yes/no flag; "config" and "help"
 * are refused, as a command would) and prints the argv it stands for, each
 * word followed by a NUL. On a bad file prints the parser's reason and
 * exits 2. For tests/integ/test_config_file.sh, until a command reads
 * configuration files itself.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/config.h"

int main(int argc, char **argv)
{
	static const char *const refuse[] = {"config", "help", NULL};
	struct option *keys;
	struct config_args a = {0};
	struct config_spec spec;
	char why[CONFIG_MAX_WHY];
	int r;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE KEY[=] ...\n", argv[0]);
		return 2;
	}
	keys = calloc((size_t)argc, sizeof(*keys));
	if (!keys)
		return 1;
	for (int i = 2; i < argc; i++) {
		size_t n = strlen(argv[i]);

		if (n && argv[i][n - 1] == '=') {
			argv[i][n - 1] = '\0';
			keys[i - 2].has_arg = required_argument;
		}
		keys[i - 2].name = argv[i];
	}
	spec.keys = keys;
	spec.refuse = refuse;
	r = config_load(argv[1], &spec, &a, why, sizeof(why));
	if (r < 0) {
		fprintf(stderr, "%s\n", why);
		free(keys);
		return 2;
	}
	for (int i = 0; i < a.argc; i++)
		fwrite(a.argv[i], 1, strlen(a.argv[i]) + 1, stdout);
	config_args_free(&a);
	free(keys);
	return fflush(stdout) == 0 ? 0 : 1;
}
