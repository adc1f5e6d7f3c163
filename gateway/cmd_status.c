/* SPDX-License-Identifier: MIT */
/*
 * `migrelay status`: asks a running `migrelay serve` over its control
 * socket (control.h) for its status (a table, or the raw JSON with
 * --json) or to reload its configuration. Phases: parse, call, report.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cmds.h"
#include "control.h"
#include "exitcodes.h"
#include "log.h"

enum { STATUS_TIMEOUT_MS = 10000 /* the server's own deadline is shorter: this only guards against a hang */ };

static const char status_usage[] = "Usage: migrelay status [--control PATH] [--json]\n"
				   "       migrelay status [--control PATH] reload\n"
				   "\n"
				   "Shows what a running `migrelay serve` is doing: its sessions (identity,\n"
				   "target, state, age, bytes and current rate each way, connections and\n"
				   "their rejoins, compression ratio, streams verified), its listeners and\n"
				   "its limits with how close each is. `reload` makes it re-read its\n"
				   "certificates, CRL, PSK file, allow lists and targets, as SIGHUP does:\n"
				   "sessions in flight keep their settings, new sessions get the new ones,\n"
				   "and a configuration that does not validate is refused (the old one stays).\n"
				   "\n"
				   "  -c, --control PATH  the daemon's control socket, \"unix:PATH\" or PATH\n"
				   "                      (default " GW_CONTROL_DEFAULT_PATH "; serve --control)\n"
				   "      --json          print the daemon's status object as JSON on stdout\n"
				   "  -h, --help          this text\n"
				   "\n"
				   "Exit codes: 0 done; 1 the daemon refused the reload (the reason is printed)\n"
				   "or failed to give its status; 2 usage; 3 the control socket cannot be reached.\n";

struct status_opts {
	char path[128];
	bool json, reload;
};

/* Parse phase. Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, struct status_opts *o)
{
	static const struct option lo[] = {
	    {"control", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, r;

	snprintf(o->path, sizeof(o->path), "%s", GW_CONTROL_DEFAULT_PATH);
	while ((c = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			if ((r = gw_control_parse_path(optarg, o->path, sizeof(o->path))) < 0) {
				fprintf(stderr, "migrelay status: --control \"%.80s\": %s\n", optarg,
					r == -ENAMETOOLONG ? "path too long for a unix socket"
							   : "expected unix:PATH or PATH");
				return MR_EXIT_USAGE;
			}
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			fputs(status_usage, stdout);
			return MR_EXIT_OK;
		default:
			fputs(status_usage, stderr);
			return MR_EXIT_USAGE;
		}
	}
	if (optind < argc && !strcmp(argv[optind], "reload")) {
		o->reload = true;
		optind++;
	}
	if (optind < argc) {
		fprintf(stderr, "migrelay status: unexpected argument \"%.80s\" (see --help)\n", argv[optind]);
		return MR_EXIT_USAGE;
	}
	if (o->reload && o->json) {
		fprintf(stderr, "migrelay status: --json shows the status; reload prints one line (see --help)\n");
		return MR_EXIT_USAGE;
	}
	return -1;
}

static struct json_object *field(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static const char *str_of(struct json_object *o, const char *key, const char *dflt)
{
	struct json_object *v = field(o, key);

	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : dflt;
}

static const char *fmt_bytes(double n, char *buf, size_t len)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	int u = 0;

	while (n >= 1024 && u < 5) {
		n /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", n, unit[u]);
	return buf;
}

static const char *fmt_age(double s, char *buf, size_t len)
{
	uint64_t t = s > 0 ? (uint64_t)s : 0;

	if (t >= 86400)
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", t / 86400, t % 86400 / 3600);
	else if (t >= 3600)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", t / 3600, t % 3600 / 60);
	else if (t >= 60)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", t / 60, t % 60);
	else
		snprintf(buf, len, "%" PRIu64 "s", t);
	return buf;
}

static void print_daemon(struct json_object *st)
{
	struct json_object *d = field(st, "daemon"), *lr = field(d, "last_reload"), *a, *x;
	char age[32], rage[32];
	size_t n;

	printf("migrelay serve %s, pid %" PRId64 ", up %s, configuration generation %" PRIu64,
	       str_of(d, "version", "?"), json_object_get_int64(field(d, "pid")),
	       fmt_age(json_object_get_double(field(d, "uptime_s")), age, sizeof(age)),
	       json_object_get_uint64(field(d, "config_generation")));
	if (lr && json_object_is_type(lr, json_type_object))
		printf(" (last reload %s ago: %s%s%s)",
		       fmt_age(json_object_get_double(field(lr, "age_s")), rage, sizeof(rage)),
		       json_object_get_boolean(field(lr, "ok")) ? "ok" : "refused",
		       str_of(lr, "message", NULL) ? ": " : "", str_of(lr, "message", ""));
	printf("\n");
	if ((a = field(st, "listeners")) && (n = json_object_array_length(a))) {
		printf("listening:");
		for (size_t i = 0; i < n; i++) {
			x = json_object_array_get_idx(a, i);
			printf("%s %s %s", i ? "," : "", str_of(x, "kind", "?"), str_of(x, "address", "?"));
		}
		printf("\n");
	}
	if ((a = field(st, "limits")) && (n = json_object_array_length(a))) {
		printf("limits:");
		for (size_t i = 0; i < n; i++) {
			x = json_object_array_get_idx(a, i);
			printf("%s %s %" PRId64 "/%" PRId64, i ? "," : "", str_of(x, "name", "?"),
			       json_object_get_int64(field(x, "used")), json_object_get_int64(field(x, "max")));
			if (field(x, "ratio") && !json_object_is_type(field(x, "ratio"), json_type_null))
				printf(" (%.0f%%)", 100 * json_object_get_double(field(x, "ratio")));
		}
		printf("\n");
	}
}

static void print_sessions(struct json_object *st)
{
	struct json_object *a = field(st, "sessions");
	size_t n = a ? json_object_array_length(a) : 0;

	if (!n) {
		printf("\nno sessions\n");
		return;
	}
	printf("\n%-16s  %-24s  %-12s  %-9s  %6s  %10s  %10s  %12s  %12s  %5s  %7s  %5s  %s\n", "SESSION", "IDENTITY",
	       "TARGET", "STATE", "AGE", "IN", "OUT", "RATE IN", "RATE OUT", "CONNS", "REJOINS", "RATIO", "STREAMS");
	for (size_t i = 0; i < n; i++) {
		struct json_object *s = json_object_array_get_idx(a, i), *streams = field(s, "streams"),
				   *ratio = field(s, "compression_ratio");
		char age[32], in[32], out[32], rin[40], rout[40], conns[24], rt[16];

		fmt_bytes(json_object_get_double(field(s, "rate_in")), rin, sizeof(rin) - 2);
		strcat(rin, "/s");
		fmt_bytes(json_object_get_double(field(s, "rate_out")), rout, sizeof(rout) - 2);
		strcat(rout, "/s");
		snprintf(conns, sizeof(conns), "%d/%d", json_object_get_int(field(s, "connections_live")),
			 json_object_get_int(field(s, "connections_expected")));
		if (ratio && !json_object_is_type(ratio, json_type_null))
			snprintf(rt, sizeof(rt), "%.2f", json_object_get_double(ratio));
		else
			snprintf(rt, sizeof(rt), "-");
		printf("%-16s  %-24.24s  %-12.12s  %-9.9s  %6s  %10s  %10s  %12s  %12s  %5s  %7" PRIu64
		       "  %5s  %d open, %d verified, %d failed\n",
		       str_of(s, "id", "?"), str_of(s, "identity", "?"), str_of(s, "target", "?"),
		       str_of(s, "state", "?"), fmt_age(json_object_get_double(field(s, "age_s")), age, sizeof(age)),
		       fmt_bytes((double)json_object_get_uint64(field(s, "bytes_in")), in, sizeof(in)),
		       fmt_bytes((double)json_object_get_uint64(field(s, "bytes_out")), out, sizeof(out)), rin, rout,
		       conns, json_object_get_uint64(field(s, "rejoins")), rt,
		       json_object_get_int(field(streams, "open")), json_object_get_int(field(streams, "verified")),
		       json_object_get_int(field(streams, "failed")));
		if (str_of(s, "error", NULL))
			printf("%-16s  error: %.300s\n", "", str_of(s, "error", ""));
	}
}

int cmd_status(int argc, char **argv)
{
	struct status_opts o = {0};
	struct json_object *reply = NULL, *st;
	char why[512] = "";
	int r, rc;

	gw_log_set_prefix("migrelay status");
	if ((rc = parse_args(argc, argv, &o)) >= 0)
		return rc;
	r = gw_control_call(o.path, o.reload ? "reload" : "status", STATUS_TIMEOUT_MS, &reply, why, sizeof(why));
	if (r < 0) {
		fprintf(stderr, "migrelay status: %s\n", why);
		if (r == -ENOENT || r == -ECONNREFUSED)
			fprintf(stderr,
				"migrelay status: is `migrelay serve --control unix:%s` running? Give the socket of "
				"the daemon you mean with --control PATH.\n",
				o.path);
		else if (r == -EACCES || r == -EPERM)
			fprintf(stderr, "migrelay status: run this as the user that runs the daemon, or as root.\n");
		return r == -EBADMSG ? MR_EXIT_FAIL : MR_EXIT_CONNECT;
	}
	if (!json_object_get_boolean(field(reply, "ok"))) {
		/* the daemon refuses foreign users too: that is "cannot reach", not a refused reload */
		rc = json_object_get_int(field(reply, "errno")) == EACCES ? MR_EXIT_CONNECT : MR_EXIT_FAIL;
		fprintf(stderr, "migrelay status: %s refused: %s\n", o.reload ? "reload" : "status",
			str_of(reply, "error", "no reason given"));
		json_object_put(reply);
		return rc;
	}
	if (o.reload) {
		printf("%s\n", str_of(reply, "message", "reloaded"));
	} else if (!(st = field(reply, "status"))) {
		fprintf(stderr, "migrelay status: the daemon's answer holds no status\n");
		json_object_put(reply);
		return MR_EXIT_FAIL;
	} else if (o.json) {
		printf("%s\n",
		       json_object_to_json_string_ext(st, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		print_daemon(st);
		print_sessions(st);
	}
	json_object_put(reply);
	return fflush(stdout) == 0 ? MR_EXIT_OK : MR_EXIT_FAIL;
}
