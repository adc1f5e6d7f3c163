/* SPDX-License-Identifier: MIT */
/* `migrelay send`: standard input to a target; what the target answers comes back on standard output. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd_common.h"
#include "cmds.h"
#include "exitcodes.h"
#include "log.h"
#include "progress.h"

static const char send_usage[] =
	"Usage: migrelay send --to HOST:PORT --target NAME [options] < input > answer\n"
	"\n"
	"Sends standard input to the target NAME of the gateway at HOST:PORT as one\n"
	"stream, striped over --connections TLS connections, and writes what the\n"
	"target sends back to standard output. Exits 0 only when the peer verified\n"
	"the byte count and XXH3-128 digest of everything sent, and everything\n"
	"received was verified the same way.\n"
	"\n"
	"With --json the progress events and the report are JSON lines on standard\n"
	"output; the report follows whatever the target answered. With a target\n"
	"that answers, add --quiet: no progress event is mixed into the answer.\n"
	"\n";

static int stdio_finish(struct gw_stream *st)
{
	(void)st;
	return 0;
}

static const struct gw_sink_ops stdio_ops = { .finish = stdio_finish };

/* Prints the verified report: JSON on stdout with --json, else a line on stderr (stdout carries the answer). */
static void report_ok(const struct gw_client_opts *o, struct gw_session *s, int id, double secs)
{
	struct gw_stats st;
	struct wire_end e;
	char a[32], b[32], hex[33] = "?";

	gw_session_stats(s, &st);
	if (gw_stream_result(s, id, NULL, NULL, 0, &e) == 1)
		digest_hex(e.digest, hex);
	if (o->json) {
		struct json_object *ev = gw_json_event("report");

		json_object_object_add(ev, "status", json_object_new_string("verified"));
		gw_json_add_u64(ev, "sent", st.raw_out);
		gw_json_add_u64(ev, "received", st.raw_in);
		gw_json_add_u64(ev, "wire_sent", st.wire_out);
		gw_json_add_u64(ev, "wire_received", st.wire_in);
		gw_json_add_double(ev, "seconds", secs, 3);
		json_object_object_add(ev, "connections", json_object_new_int(o->connections));
		json_object_object_add(ev, "digest", json_object_new_string(hex));
		json_object_object_add(ev, "insecure_plaintext", json_object_new_boolean(o->plaintext));
		gw_json_emit(stdout, ev);
	} else if (!o->quiet) {
		fprintf(stderr,
			"migrelay send: verified: sent %s (%llu bytes, xxh3-128 %s), received %s, %.2f s, %.1f MiB/s over %d connection(s)%s\n",
			gw_fmt_bytes(st.raw_out, a, sizeof(a)), (unsigned long long)st.raw_out, hex,
			gw_fmt_bytes(st.raw_in, b, sizeof(b)), secs,
			secs > 0 ? (double)st.raw_out / secs / 1048576.0 : 0.0, o->connections,
			o->plaintext ? ", INSECURE PLAINTEXT" : "");
	}
}

int cmd_send(int argc, char **argv)
{
	static const struct cmd_def def = { .name = "send", .usage = send_usage };
	struct gw_client_opts o;
	struct gw_session *s = NULL;
	struct gw_progress pr;
	char why[WIRE_MAX_ERROR_TEXT + 1];
	uint16_t code = 0;
	int r, id;
	uint64_t t0;

	gw_log_set_prefix("migrelay send");
	if ((r = cmd_parse(&def, &o, argc, argv)) != CMD_GO)
		return r;
	t0 = gw_now_ns();
	if ((r = cmd_connect(&o, &s)) != MR_EXIT_OK)
		return o.json ? cmd_failed("send", true, r, 0, "no session with %s", o.to) : r;
	id = gw_stream_open(s, WIRE_ROLE_PLAIN, STDIN_FILENO, STDOUT_FILENO, &stdio_ops, NULL);
	if (id < 0) {
		gw_session_close(s);
		return cmd_failed("send", o.json, MR_EXIT_FAIL, 0, "cannot open the stream: %s", strerror(-id));
	}
	gw_progress_start(&pr, s, o.json ? stdout : stderr, o.json, o.progress, o.quiet);
	r = gw_stream_wait(s, id, -1);
	gw_progress_stop(&pr);
	if (r == 0) {
		report_ok(&o, s, id, (double)(gw_now_ns() - t0) / 1e9);
		gw_session_bye(s);
		gw_session_close(s);
		return MR_EXIT_OK;
	}
	if (cmd_first_failure(s, id, &code, why, sizeof(why)) == 0)
		snprintf(why, sizeof(why), "the stream did not complete");
	gw_session_close(s);
	return cmd_failed("send", o.json, code ? cmd_exit_for_wire_error(code) : MR_EXIT_FAIL, code, "%s", why);
}
