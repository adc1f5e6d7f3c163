/* SPDX-License-Identifier: MIT */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "exitcodes.h"
#include "log.h"

static const char usage[] =
	"Usage: migrelay COMMAND [options]   (migrelay COMMAND --help for details)\n"
	"\n"
	"A tunnelled transport gateway for QEMU live migration: one TCP port,\n"
	"TLS 1.3 with mutual authentication, parallel connections, verified bytes.\n"
	"\n"
	"Commands:\n"
	"  serve     the destination gateway (daemon)\n"
	"  migrate   migrate a running QEMU through a gateway\n"
	"  forward   relay a local unix socket to a target (multifd, NBD, libvirt)\n"
	"  send      relay standard input to a target\n"
	"  pki       create a CA and certificates\n"
	"  bench     measure what a path carries (synthetic migration stream)\n"
	"  status    what a running serve is doing; reload its configuration\n"
	"  ctl       inspect or steer a running migrate (info, set-speed, postcopy, ...)\n"
	"  version   print the version\n"
	"\n"
	"Exit codes: 0 success, 1 other failure, 2 bad command line or configuration,\n"
	"3 cannot connect, 4 TLS or authorization, 5 target, 6 digest mismatch,\n"
	"7 peer gone, 8 protocol, 9 QEMU, 10 cancelled (each command's --help says\n"
	"which it uses).\n";

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{ "serve", cmd_serve }, { "send", cmd_send },       { "forward", cmd_forward },
		{ "pki", cmd_pki },     { "migrate", cmd_migrate }, { "bench", cmd_bench },
		{ "status", cmd_status }, { "ctl", cmd_ctl },
	};

	/*
	 * Chunks are 256 KiB: above glibc's default mmap threshold, each one
	 * would be a fresh mmap whose pages fault in on the hot path. Keep them
	 * on the heap and let freed ones be reused; the flow-control windows
	 * bound how much is live.
	 */
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	if (getenv("MIGRELAY_DEBUG") && strcmp(getenv("MIGRELAY_DEBUG"), "0"))
		gw_log_level = GW_LOG_DEBUG;
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? MR_EXIT_USAGE : MR_EXIT_OK;
	}
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("migrelay %s (protocol %s)\n", MR_VERSION, "migrelay/1");
		return MR_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "migrelay: unknown command \"%.40s\"\n\n%s", argv[1], usage);
	return MR_EXIT_USAGE;
}
