/* SPDX-License-Identifier: MIT */
#include "cmd_common.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>

#include "cli.h"
#include "crypto/ssh.h"
#include "exitcodes.h"
#include "stream/frame.h"

const char cmd_exit_help[] =
	"\n"
	"Exit codes:\n"
	"   0  success: every stream direction ended with a verified END\n"
	"   1  other failure\n"
	"   2  bad command line or configuration (or the server does not offer what was asked)\n"
	"   3  cannot connect to the peer gateway\n"
	"   4  TLS handshake or authorization failed\n"
	"   5  unknown target, or the target failed\n"
	"   6  byte count or digest mismatch\n"
	"   7  the peer went away before the END was verified\n"
	"   8  the peer broke the protocol\n"
	"   9  QEMU refused or failed the migration\n"
	"  10  cancelled by Ctrl-C, SIGTERM or --timeout\n"
	"  11  ssh://: the server's host key is unknown or changed\n";

static void print_usage(const struct cmd_def *d, FILE *f)
{
	fprintf(f, "%s%s%s", d->usage, gw_client_usage, cmd_exit_help);
}

int cmd_check_transport(const char *name, const struct gw_client_opts *o)
{
	int r;

	if (gw_client_opts_check(o) < 0)
		return MR_EXIT_USAGE;
	if (gw_client_is_ssh(o->to)) {
		struct mr_ssh_url u;
		char err[256];

		if (mr_ssh_url_parse(o->to, &u, err, sizeof(err)) < 0) {
			fprintf(stderr, "migrelay %s: --to: %s\n", name, err);
			return MR_EXIT_USAGE;
		}
		return 0;
	}
	r = cli_parse_hostport(o->to, false, NULL, 0, NULL);
	if (r == -ERANGE) {
		fprintf(stderr, "migrelay %s: --to \"%.80s\": the port must be a number from 1 to 65535\n", name, o->to);
		return MR_EXIT_USAGE;
	}
	if (r < 0) {
		fprintf(stderr, "migrelay %s: --to takes HOST:PORT or [IPV6]:PORT with a port from 1 to 65535, not \"%.80s\"\n",
			name, o->to);
		return MR_EXIT_USAGE;
	}
	return 0;
}

int cmd_parse(const struct cmd_def *d, struct gw_client_opts *o, int argc, char **argv)
{
	struct option lo[GW_LONGOPTS_MAX];
	char shortopts[64];
	int c, r;

	gw_client_opts_init(o);
	gw_client_longopts_with(lo, d->extra);
	snprintf(shortopts, sizeof(shortopts), "%s%sh", GW_CLIENT_OPTSTRING, d->shortopts ? d->shortopts : "");
	while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
		if (c == 'h') {
			print_usage(d, stdout);
			return MR_EXIT_OK;
		}
		r = d->opt ? d->opt(d->arg, c, optarg) : 0;
		if (r == 0)
			r = gw_client_opt(o, c, optarg);
		if (r < 0)
			return MR_EXIT_USAGE;
		if (r == 0) { /* getopt said why ("unrecognized option") */
			fprintf(stderr, "Try `migrelay %s --help'.\n", d->name);
			return MR_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "migrelay %s: unexpected argument \"%.80s\"\n", d->name, argv[optind]);
		return MR_EXIT_USAGE;
	}
	if (d->no_transport_check)
		return CMD_GO;
	return cmd_check_transport(d->name, o) ? MR_EXIT_USAGE : CMD_GO;
}

/* The exit code for a failure of gw_client_connect returning <r> with <f>. */
static int cmd_connect_exit(int r, const struct gw_connect_fail *f)
{
	switch (f->stage) {
	case GW_CS_CONFIG:
		return MR_EXIT_USAGE;
	case GW_CS_CONNECT:
		return MR_EXIT_CONNECT;
	case GW_CS_HANDSHAKE:
		return r == -EACCES ? MR_EXIT_AUTH : MR_EXIT_PEER_GONE;
	case GW_CS_SETUP:
		if (r == -EREMOTEIO)
			return cmd_exit_for_wire_error(f->wire_code);
		return r == -EACCES ? MR_EXIT_AUTH : r == -EPROTO ? MR_EXIT_PROTOCOL : MR_EXIT_PEER_GONE;
	case GW_CS_SSH:
		switch (r) {
		case -ENOKEY:
		case -EKEYREJECTED:
			return MR_EXIT_HOSTKEY;
		case -EACCES:
			return MR_EXIT_AUTH;
		case -ENOMEM:
			return MR_EXIT_FAIL;
		default: /* no TCP connection, no SSH, or no channel to serve's socket */
			return MR_EXIT_CONNECT;
		}
	case GW_CS_SESSION:
	default:
		return MR_EXIT_FAIL;
	}
}

int cmd_connect(const struct gw_client_opts *o, struct gw_session **s)
{
	struct gw_connect_fail f;
	int r;

	signal(SIGPIPE, SIG_IGN);
	r = gw_client_connect(o, s, &f);
	if (r == 0)
		return MR_EXIT_OK;
	fprintf(stderr, "migrelay: %s\n", f.text);
	return cmd_connect_exit(r, &f);
}

int cmd_first_failure(struct gw_session *s, int id, uint16_t *wire_code, char *text, size_t len)
{
	int code = 0;

	text[0] = '\0';
	/* stream <id> first: its failure is the one the command was waiting for */
	if (id < 0 || gw_stream_result(s, id, &code, text, len, NULL) < 0 || !code)
		gw_session_first_failure(s, &code, text, len);
	if (!code)
		return 0;
	*wire_code = (uint16_t)code;
	return -EPROTO;
}

int cmd_exit_for_wire_error(int code)
{
	switch (code) {
	case WIRE_E_NONE:
		return MR_EXIT_OK;
	case WIRE_E_NOT_ALLOWED:
	case WIRE_E_BAD_TOKEN:
	case WIRE_E_IDENTITY:
		return MR_EXIT_AUTH;
	case WIRE_E_NO_TARGET:
	case WIRE_E_TARGET:
		return MR_EXIT_TARGET;
	case WIRE_E_DIGEST:
		return MR_EXIT_DIGEST;
	case WIRE_E_TRUNCATED:
		return MR_EXIT_PEER_GONE;
	case WIRE_E_PROTOCOL:
		return MR_EXIT_PROTOCOL;
	case WIRE_E_LIMIT:
	case WIRE_E_UNSUPPORTED:
		return MR_EXIT_USAGE;
	default:
		return MR_EXIT_FAIL;
	}
}

int cmd_failed(const char *name, bool json, int rc, int wire_code, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (wire_code)
		fprintf(stderr, "migrelay %s: FAILED (%s): %s\n", name, wire_error_name((uint16_t)wire_code), text);
	else
		fprintf(stderr, "migrelay %s: FAILED: %s\n", name, text);
	if (json) {
		struct json_object *ev = gw_json_event("report");

		json_object_object_add(ev, "status", json_object_new_string("failed"));
		json_object_object_add(ev, "exit", json_object_new_int(rc));
		if (wire_code)
			json_object_object_add(ev, "error",
					       json_object_new_string(wire_error_name((uint16_t)wire_code)));
		json_object_object_add(ev, "message", json_object_new_string(text));
		gw_json_emit(stdout, ev);
	}
	return rc;
}
