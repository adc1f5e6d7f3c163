/* SPDX-License-Identifier: MIT */
/* `migrelay pki init|issue`: the CLI over crypto/pki.c. */
#include "cmd_pki.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "crypto/pki.h"
#include "exitcodes.h"
#include "log.h"

enum { PKI_MAX_SANS = 7 /* pki_issue_opts holds 8 slots, one for the NULL */ };

static const char pki_usage[] =
	"Usage: migrelay pki init --dir DIR [--cn NAME] [--days N]\n"
	"       migrelay pki issue server|client --ca DIR --out DIR --cn NAME [options]\n"
	"\n"
	"A small certificate authority for tests and small sites. The files follow\n"
	"QEMU's tls-creds-x509 layout, so one directory serves both QEMU and\n"
	"migrelay (--tls-dir). See `migrelay pki init --help` and\n"
	"`migrelay pki issue --help`.\n"
	"\n"
	"Exit codes: 0 done, 1 failure (the reason is printed), 2 bad command line.\n";

static const char init_usage[] =
	"Usage: migrelay pki init --dir DIR [--cn NAME] [--days N]\n"
	"\n"
	"Creates a CA: DIR/ca-cert.pem and DIR/ca-key.pem (mode 0600), an ECDSA\n"
	"P-256 key. Refuses to overwrite an existing CA. Keep ca-key.pem away from\n"
	"the hosts; they only need ca-cert.pem.\n"
	"\n"
	"      --dir DIR    directory for the CA (created if missing)\n"
	"      --cn NAME    the CA's common name (default \"migrelay CA\")\n"
	"      --days N     validity in days (default 3650)\n"
	"  -h, --help       show this help\n"
	"\n"
	"Exit codes: 0 done, 1 failure (the reason is printed), 2 bad command line.\n";

static const char issue_usage[] =
	"Usage: migrelay pki issue server|client --ca DIR --out DIR --cn NAME [options]\n"
	"\n"
	"Issues a server or client certificate signed by the CA in --ca, and\n"
	"writes OUT/server-cert.pem and OUT/server-key.pem (or client-*.pem; keys\n"
	"mode 0600) plus a copy of ca-cert.pem. Existing certificates of the same\n"
	"kind in OUT are replaced.\n"
	"\n"
	"      --ca DIR       directory of `migrelay pki init`\n"
	"      --out DIR      output directory (created if missing)\n"
	"      --cn NAME      subject common name\n"
	"      --org O        subject organization\n"
	"      --dns NAME     DNS subject alternative name (repeatable, up to 7);\n"
	"                     a server without --dns or --ip gets its CN as DNS name\n"
	"      --ip ADDR      IPv4 or IPv6 subject alternative name (repeatable, up to 7)\n"
	"      --days N       validity in days (default 365)\n"
	"      --expired      for tests: valid from 30 days ago until yesterday\n"
	"  -h, --help         show this help\n"
	"\n"
	"The peer identity that --allow matches is the subject as RFC 4514 text,\n"
	"e.g. \"CN=host1,O=Example\" for --cn host1 --org Example.\n"
	"\n"
	"Exit codes: 0 done, 1 failure (the reason is printed), 2 bad command line.\n";

/* Reports a bad option the way getopt_long would, plus where to look. */
static int pki_bad_option(const char *cmd, int c, int opt, char **argv)
{
	const char *arg = argv[optind - 1];

	if (c == ':')
		fprintf(stderr, "migrelay pki %s: option \"%.80s\" needs a value (see `migrelay pki %s --help`)\n", cmd,
			arg, cmd);
	else if (opt)
		fprintf(stderr, "migrelay pki %s: unknown option \"-%c\" (see `migrelay pki %s --help`)\n", cmd, opt, cmd);
	else
		fprintf(stderr, "migrelay pki %s: unknown option \"%.80s\" (see `migrelay pki %s --help`)\n", cmd, arg,
			cmd);
	return MR_EXIT_USAGE;
}

static int pki_parse_days(const char *cmd, const char *s, int *out)
{
	if (cli_parse_int(s, 1, 36500, out) < 0) {
		fprintf(stderr, "migrelay pki %s: --days \"%.40s\" must be a whole number of days from 1 to 36500\n", cmd,
			s);
		return -EINVAL;
	}
	return 0;
}

enum { OPT_DIR = 256, OPT_CN, OPT_DAYS, OPT_CA, OPT_OUT, OPT_ORG, OPT_DNS, OPT_IP, OPT_EXPIRED };

static int pki_cmd_init(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dir", required_argument, NULL, OPT_DIR },   { "cn", required_argument, NULL, OPT_CN },
		{ "days", required_argument, NULL, OPT_DAYS }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *cn = NULL;
	char err[512];
	int c, r, days = 0;

	optind = 0; /* full reset: cmd_pki may run more than once in a process */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(init_usage, stdout);
			return MR_EXIT_OK;
		case OPT_DIR:
			dir = optarg;
			break;
		case OPT_CN:
			cn = optarg;
			break;
		case OPT_DAYS:
			if (pki_parse_days("init", optarg, &days) < 0)
				return MR_EXIT_USAGE;
			break;
		default:
			return pki_bad_option("init", c, optopt, argv);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "migrelay pki init: unexpected argument \"%.80s\" (see `migrelay pki init --help`)\n",
			argv[optind]);
		return MR_EXIT_USAGE;
	}
	if (!dir) {
		fprintf(stderr, "migrelay pki init: --dir DIR is required (where ca-cert.pem and ca-key.pem go)\n");
		return MR_EXIT_USAGE;
	}
	r = pki_init(dir, cn, days, err, sizeof(err));
	if (r < 0) {
		gw_err("%s", err);
		return r == -EINVAL ? MR_EXIT_USAGE : MR_EXIT_FAIL;
	}
	printf("created the CA \"%s\": %s/ca-cert.pem and %s/ca-key.pem (keep ca-key.pem secret)\n",
	       cn ? cn : "migrelay CA", dir, dir);
	return MR_EXIT_OK;
}

static int pki_cmd_issue(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "ca", required_argument, NULL, OPT_CA },    { "out", required_argument, NULL, OPT_OUT },
		{ "cn", required_argument, NULL, OPT_CN },    { "org", required_argument, NULL, OPT_ORG },
		{ "dns", required_argument, NULL, OPT_DNS },  { "ip", required_argument, NULL, OPT_IP },
		{ "days", required_argument, NULL, OPT_DAYS }, { "expired", no_argument, NULL, OPT_EXPIRED },
		{ "help", no_argument, NULL, 'h' },           { NULL, 0, NULL, 0 },
	};
	struct pki_issue_opts o = { 0 };
	const char *kind = NULL;
	size_t ndns = 0, nip = 0;
	char err[512];
	int c, r;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(issue_usage, stdout);
			return MR_EXIT_OK;
		case OPT_CA:
			o.ca_dir = optarg;
			break;
		case OPT_OUT:
			o.out_dir = optarg;
			break;
		case OPT_CN:
			o.cn = optarg;
			break;
		case OPT_ORG:
			o.org = optarg;
			break;
		case OPT_DNS:
			if (ndns == PKI_MAX_SANS) {
				fprintf(stderr, "migrelay pki issue: at most %d --dns names\n", PKI_MAX_SANS);
				return MR_EXIT_USAGE;
			}
			o.dns[ndns++] = optarg;
			break;
		case OPT_IP:
			if (nip == PKI_MAX_SANS) {
				fprintf(stderr, "migrelay pki issue: at most %d --ip addresses\n", PKI_MAX_SANS);
				return MR_EXIT_USAGE;
			}
			o.ip[nip++] = optarg;
			break;
		case OPT_DAYS:
			if (pki_parse_days("issue", optarg, &o.days) < 0)
				return MR_EXIT_USAGE;
			break;
		case OPT_EXPIRED:
			o.expired = true;
			break;
		default:
			return pki_bad_option("issue", c, optopt, argv);
		}
	}
	if (optind < argc)
		kind = argv[optind++];
	if (!kind || (strcmp(kind, "server") && strcmp(kind, "client"))) {
		fprintf(stderr, "migrelay pki issue: say which certificate: `migrelay pki issue server ...` or `migrelay pki issue client ...`%s%.40s%s\n",
			kind ? " (not \"" : "", kind ? kind : "", kind ? "\")" : "");
		return MR_EXIT_USAGE;
	}
	if (optind < argc) {
		fprintf(stderr, "migrelay pki issue: unexpected argument \"%.80s\" (see `migrelay pki issue --help`)\n",
			argv[optind]);
		return MR_EXIT_USAGE;
	}
	o.server = !strcmp(kind, "server");
	if (!o.ca_dir || !o.out_dir || !o.cn) {
		fprintf(stderr, "migrelay pki issue: --ca DIR, --out DIR and --cn NAME are required (see `migrelay pki issue --help`)\n");
		return MR_EXIT_USAGE;
	}
	if (o.expired && o.days) {
		fprintf(stderr, "migrelay pki issue: --expired and --days exclude each other\n");
		return MR_EXIT_USAGE;
	}
	r = pki_issue(&o, err, sizeof(err));
	if (r < 0) {
		gw_err("%s", err);
		return r == -EINVAL ? MR_EXIT_USAGE : MR_EXIT_FAIL;
	}
	printf("issued the %s certificate \"%s\": %s/%s-cert.pem and %s/%s-key.pem (with %s/ca-cert.pem)%s\n", kind,
	       o.cn, o.out_dir, kind, o.out_dir, kind, o.out_dir, o.expired ? ", already expired" : "");
	return MR_EXIT_OK;
}

int cmd_pki(int argc, char **argv)
{
	gw_log_set_prefix("migrelay pki");
	if (argc < 2) {
		fputs(pki_usage, stderr);
		return MR_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(pki_usage, stdout);
		return MR_EXIT_OK;
	}
	if (!strcmp(argv[1], "init"))
		return pki_cmd_init(argc - 1, argv + 1);
	if (!strcmp(argv[1], "issue"))
		return pki_cmd_issue(argc - 1, argv + 1);
	fprintf(stderr, "migrelay pki: unknown subcommand \"%.40s\" (use init or issue)\n\n%s", argv[1], pki_usage);
	return MR_EXIT_USAGE;
}
