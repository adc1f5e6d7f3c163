/* SPDX-License-Identifier: MIT */
/*
 * `migrelay ctl PATH COMMAND`: acts on a running `migrelay migrate`
 * through its control socket (migctl.h, control.h), as virsh's
 * domjobinfo, migrate-setspeed, migrate-setmaxdowntime, migrate-postcopy
 * and domjobabort do. Phases: parse, call, report.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "client.h"
#include "cmds.h"
#include "control.h"
#include "exitcodes.h"

enum { CTL_TIMEOUT_MS = 10000 /* migrate answers within MIGCTL_WAIT_MS; this guards against a hang */ };

static const char ctl_usage[] = "Usage: migrelay ctl PATH info [--json]\n"
				"       migrelay ctl PATH set-speed RATE | set-downtime MS | postcopy | cancel\n"
				"\n"
				"Acts on a running `migrelay migrate` through its control socket PATH (which\n"
				"migrate prints at the start, or its --control PATH):\n"
				"  info           what the job is doing (as virsh domjobinfo): elapsed time, data\n"
				"                 processed, remaining and total, memory rate, dirty rate, iteration,\n"
				"                 expected downtime, compression, post-copy, connections and their\n"
				"                 health\n"
				"  set-speed RATE QEMU's bandwidth cap now, bytes/s (K, M, G suffixes)\n"
				"  set-downtime MS  the most downtime QEMU may take now (300, 300ms, 2s)\n"
				"  postcopy       switch to post-copy now (migrate must have --postcopy)\n"
				"  cancel         cancel the migration; the guest keeps running on the source\n"
				"                 (refused after the switch to post-copy)\n"
				"\n"
				"      --json     print the answer as JSON on stdout\n"
				"  -h, --help     this text\n"
				"\n"
				"Exit codes: 0 done; 1 migrate refused the request (the reason is printed);\n"
				"2 usage; 3 the control socket cannot be reached.\n";

struct ctl_opts {
	const char *path, *cmd, *arg;
	bool json;
};

/* Parse phase. Returns -1 to go on, or the exit code. */
static int ctl_parse(int argc, char **argv, struct ctl_opts *o)
{
	static const struct option lo[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const struct {
		const char *name;
		bool arg;
	} cmds[] = {
	    {"info", false}, {"set-speed", true}, {"set-downtime", true}, {"postcopy", false}, {"cancel", false}};
	int c, n;
	uint64_t v;

	while ((c = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		if (c == 'h') {
			fputs(ctl_usage, stdout);
			return MR_EXIT_OK;
		}
		if (c == 'j') {
			o->json = true;
			continue;
		}
		fputs(ctl_usage, stderr);
		return MR_EXIT_USAGE;
	}
	/* options may also follow the command ("info --json") */
	n = argc - optind;
	if (n >= 1 && !strcmp(argv[argc - 1], "--json")) {
		o->json = true;
		n--;
	}
	if (n < 2) {
		fprintf(stderr, "migrelay ctl: give the control socket and a command\n\n%s", ctl_usage);
		return MR_EXIT_USAGE;
	}
	o->path = argv[optind];
	o->cmd = argv[optind + 1];
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(o->cmd, cmds[i].name))
			continue;
		if (n != (cmds[i].arg ? 3 : 2)) {
			fprintf(stderr, "migrelay ctl: %s takes %s\n", o->cmd, cmds[i].arg ? "one value" : "no value");
			return MR_EXIT_USAGE;
		}
		o->arg = cmds[i].arg ? argv[optind + 2] : NULL;
		/* the same checks migrate makes, so that a typo is a usage error here */
		if (!strcmp(o->cmd, "set-speed") && cli_parse_bytes(o->arg, 1, UINT64_MAX, &v) < 0) {
			fprintf(stderr, "migrelay ctl: set-speed takes bytes/s such as 500M or 1G, not \"%.40s\"\n",
				o->arg);
			return MR_EXIT_USAGE;
		}
		if (!strcmp(o->cmd, "set-downtime") && cli_parse_millis(o->arg, 1, 2000000, &v) < 0) {
			fprintf(stderr,
				"migrelay ctl: set-downtime takes 1 to 2000000 ms (300, 300ms, 2s), not \"%.40s\"\n",
				o->arg);
			return MR_EXIT_USAGE;
		}
		return -1;
	}
	fprintf(stderr, "migrelay ctl: unknown command \"%.40s\"\n\n%s", o->cmd, ctl_usage);
	return MR_EXIT_USAGE;
}

static struct json_object *field(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static uint64_t u64_of(struct json_object *o, const char *key)
{
	struct json_object *v = field(o, key);

	return v ? (uint64_t)json_object_get_int64(v) : 0;
}

static const char *str_of(struct json_object *o, const char *key, const char *dflt)
{
	struct json_object *v = field(o, key);

	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : dflt;
}

/* `ctl info` as lines, in the order of virsh domjobinfo. */
static void print_info(struct json_object *in)
{
	struct json_object *mem = field(in, "memory"), *comp = field(in, "compression"), *cn = field(in, "connections"),
			   *xb = field(comp, "xbzrle"), *v;
	char a[32], b[32], c[32];
	int dt = (v = field(in, "downtime_limit_ms")) ? json_object_get_int(v) : -1;

	printf("Phase:              %s\n", str_of(in, "phase", "?"));
	printf("Status:             %s\n", str_of(in, "status", "?"));
	printf("Time elapsed:       %.1f s\n", (v = field(in, "elapsed_s")) ? json_object_get_double(v) : 0.0);
	printf("Data processed:     %s\n", gw_fmt_bytes(u64_of(in, "data_processed"), a, sizeof(a)));
	printf("Data remaining:     %s\n", gw_fmt_bytes(u64_of(in, "data_remaining"), a, sizeof(a)));
	printf("Data total:         %s\n", gw_fmt_bytes(u64_of(in, "data_total"), a, sizeof(a)));
	printf("Memory rate:        %s/s (stream %s/s)\n", gw_fmt_bytes(u64_of(mem, "rate_bps"), a, sizeof(a)),
	       gw_fmt_bytes(u64_of(in, "stream_rate_bps"), b, sizeof(b)));
	printf("Dirty rate:         %" PRIu64 " pages/s (%s/s)\n", u64_of(mem, "dirty_pages_rate"),
	       gw_fmt_bytes(u64_of(mem, "dirty_rate_bps"), a, sizeof(a)));
	printf("Iteration:          %" PRIu64 "\n", u64_of(mem, "iteration"));
	printf("Expected downtime:  %" PRIu64 " ms\n", u64_of(in, "expected_downtime_ms"));
	if (dt > 0)
		printf("Downtime limit:     %d ms\n", dt);
	else
		printf("Downtime limit:     QEMU's default\n");
	if (u64_of(in, "bandwidth_limit_bps"))
		printf("Bandwidth limit:    %s/s\n", gw_fmt_bytes(u64_of(in, "bandwidth_limit_bps"), a, sizeof(a)));
	else
		printf("Bandwidth limit:    none\n");
	printf("Post-copy:          %s (%" PRIu64 " page requests)\n", str_of(in, "postcopy", "off"),
	       u64_of(mem, "postcopy_requests"));
	printf("Auto-converge:      %s (throttle %" PRIu64 " %%)\n",
	       json_object_get_boolean(field(in, "auto_converge")) ? "on" : "off", u64_of(in, "cpu_throttle_pct"));
	printf("Compression:        zstd %s, %s produced, %s on the wire (ratio %.2f)\n",
	       json_object_get_boolean(field(comp, "zstd")) ? "on" : "off",
	       gw_fmt_bytes(u64_of(comp, "stream_bytes"), a, sizeof(a)),
	       gw_fmt_bytes(u64_of(comp, "wire_bytes"), b, sizeof(b)),
	       (v = field(comp, "ratio")) ? json_object_get_double(v) : 1.0);
	if (xb)
		printf("XBZRLE:             cache %s, %s in %" PRIu64 " pages, cache miss rate %.3f, %" PRIu64
		       " overflows\n",
		       gw_fmt_bytes(u64_of(xb, "cache_size"), a, sizeof(a)),
		       gw_fmt_bytes(u64_of(xb, "bytes"), c, sizeof(c)), u64_of(xb, "pages"),
		       (v = field(xb, "cache_miss_rate")) ? json_object_get_double(v) : 0.0, u64_of(xb, "overflow"));
	printf("Connections:        %" PRIu64 " of %" PRIu64 " live (%s)\n", u64_of(cn, "live"), u64_of(cn, "expected"),
	       str_of(cn, "health", "?"));
}

int cmd_ctl(int argc, char **argv)
{
	struct ctl_opts o = {0};
	struct json_object *reply = NULL;
	char why[512];
	int r, rc;

	if ((rc = ctl_parse(argc, argv, &o)) != -1)
		return rc;
	r = gw_control_call_arg(o.path, o.cmd, o.arg, CTL_TIMEOUT_MS, &reply, why, sizeof(why));
	if (r < 0) {
		fprintf(stderr, "migrelay ctl: %s\n", why);
		if (r == -ENOENT || r == -ECONNREFUSED)
			fprintf(stderr,
				"migrelay ctl: is the migration still running? migrate prints its control socket "
				"at the start.\n");
		return r == -EBADMSG ? MR_EXIT_FAIL : MR_EXIT_CONNECT;
	}
	if (!json_object_get_boolean(field(reply, "ok"))) {
		rc = json_object_get_int(field(reply, "errno")) == EACCES ? MR_EXIT_CONNECT : MR_EXIT_FAIL;
		if (o.json)
			printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN));
		fprintf(stderr, "migrelay ctl: %s refused: %s\n", o.cmd, str_of(reply, "error", "no reason given"));
		json_object_put(reply);
		return rc;
	}
	if (o.json)
		printf("%s\n", json_object_to_json_string_ext(field(reply, "info") ? field(reply, "info") : reply,
							      JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	else if (field(reply, "info"))
		print_info(field(reply, "info"));
	else
		printf("%s\n", str_of(reply, "message", "done"));
	json_object_put(reply);
	return MR_EXIT_OK;
}
