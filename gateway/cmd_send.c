/* SPDX-License-Identifier: MIT */
/* `migrelay send`: standard input to a target; what the target answers comes back on standard output. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "cmd_connect.h"
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
	"\n";

static int stdio_finish(struct gw_stream *st)
{
	(void)st;
	return 0;
}

static const struct gw_sink_ops stdio_ops = { .finish = stdio_finish };

int cmd_send(int argc, char **argv)
{
	struct gw_client_opts o;
	struct gw_session *s = NULL;
	struct gw_progress pr;
	struct gw_stats st;
	char a[32], b[32], hex[33];
	int c, r, id;
	uint64_t t0;
	double secs;

	gw_log_set_prefix("migrelay send");
	gw_client_opts_init(&o);
	{
		struct option lo[GW_LONGOPTS_MAX];

		gw_client_longopts_with(lo, NULL);
		while ((c = getopt_long(argc, argv, GW_CLIENT_OPTSTRING "h", lo, NULL)) != -1) {
			if (c == 'h') {
				printf("%s%s", send_usage, gw_client_usage);
				return MR_EXIT_OK;
			}
			r = gw_client_opt(&o, c, optarg);
			if (r < 0)
				return MR_EXIT_USAGE;
			if (r == 0) {
				fprintf(stderr, "%s%s", send_usage, gw_client_usage);
				return MR_EXIT_USAGE;
			}
		}
	}
	if (optind < argc) {
		fprintf(stderr, "migrelay send: unexpected argument \"%.80s\" (input comes from standard input)\n",
			argv[optind]);
		return MR_EXIT_USAGE;
	}
	if (gw_client_opts_check(&o) < 0)
		return MR_EXIT_USAGE;
	signal(SIGPIPE, SIG_IGN);
	t0 = gw_now_ns();
	if ((r = cmd_connect(&o, &s)) != 0)
		return r;
	id = gw_stream_open(s, WIRE_ROLE_PLAIN, STDIN_FILENO, STDOUT_FILENO, &stdio_ops, NULL);
	if (id < 0) {
		fprintf(stderr, "migrelay send: cannot open the stream: %s\n", strerror(-id));
		gw_session_close(s);
		return MR_EXIT_FAIL;
	}
	gw_progress_start(&pr, s, stderr, o.json, o.progress, o.quiet);
	r = gw_stream_wait(s, id, -1);
	gw_progress_stop(&pr);
	gw_session_stats(s, &st);
	secs = (double)(gw_now_ns() - t0) / 1e9;
	if (r == 0) {
		struct wire_end e;

		if (wire_end_decode(&e, s->streams[id]->out_end, WIRE_END_LEN) == 0)
			digest_hex(e.digest, hex);
		else
			strcpy(hex, "?");
		if (o.json)
			fprintf(stderr,
				"{\"event\":\"report\",\"status\":\"verified\",\"sent\":%llu,\"received\":%llu,\"wire_sent\":%llu,\"wire_received\":%llu,\"seconds\":%.3f,\"connections\":%d,\"digest\":\"%s\",\"insecure_plaintext\":%s}\n",
				(unsigned long long)st.raw_out, (unsigned long long)st.raw_in,
				(unsigned long long)st.wire_out, (unsigned long long)st.wire_in, secs, o.connections,
				hex, o.plaintext ? "true" : "false");
		else if (!o.quiet)
			fprintf(stderr,
				"migrelay send: verified: sent %s (%llu bytes, xxh3-128 %s), received %s, %.2f s, %.1f MiB/s over %d connection(s)%s\n",
				gw_fmt_bytes(st.raw_out, a, sizeof(a)), (unsigned long long)st.raw_out, hex,
				gw_fmt_bytes(st.raw_in, b, sizeof(b)), secs,
				secs > 0 ? (double)st.raw_out / secs / 1048576.0 : 0.0, o.connections,
				o.plaintext ? ", INSECURE PLAINTEXT" : "");
		gw_session_bye(s);
		gw_session_close(s);
		return MR_EXIT_OK;
	}
	if (r > 0) {
		const char *txt = s->streams[id]->fail_text[0] ? s->streams[id]->fail_text : s->err_text;

		fprintf(stderr, "migrelay send: FAILED (%s): %s\n", wire_error_name((uint16_t)r), txt);
		if (o.json)
			fprintf(stderr, "{\"event\":\"report\",\"status\":\"failed\",\"error\":\"%s\"}\n",
				wire_error_name((uint16_t)r));
	}
	gw_session_close(s);
	return r > 0 ? gw_exit_for_wire_error(r) : MR_EXIT_FAIL;
}
