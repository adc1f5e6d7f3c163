/* SPDX-License-Identifier: MIT */
/*
 * `migrelay forward`: listens on a unix socket; every accepted connection
 * becomes one full-duplex stream to the target, opened at the destination
 * in accept order (PROTOCOL.md §5.1). This is what QEMU multifd, NBD and
 * libvirt's --migrateuri/--disks-uri unix:// connect to.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmd_common.h"
#include "cmds.h"
#include "exitcodes.h"
#include "log.h"
#include "net.h"
#include "target.h"

static const char forward_usage[] =
	"Usage: migrelay forward --listen unix:PATH --to HOST:PORT --target NAME [options]\n"
	"\n"
	"Listens on the unix socket PATH. Each connection accepted there becomes one\n"
	"full-duplex stream to target NAME of the gateway at HOST:PORT; the\n"
	"destination connects its streams in the order they were accepted here.\n"
	"Runs until SIGINT or SIGTERM, then lets open streams finish (30 s at most).\n"
	"\n"
	"  -l, --listen unix:PATH    the socket to create\n"
	"  -h, --help                this text\n"
	"\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void *closer_main(void *arg)
{
	struct gw_session *s = arg;

	(void)gw_session_wait_idle(s, 30000);
	gw_session_bye(s);
	gw_session_close(s);
	return NULL;
}

/* Hands a session that takes no more streams to a thread that closes it when its streams are done. */
static void retire(struct gw_session *s)
{
	pthread_t thr;

	if (pthread_create(&thr, NULL, closer_main, s) == 0)
		pthread_detach(thr);
	else
		closer_main(s);
}

static int forward_opt(void *arg, int c, const char *val)
{
	if (c != 'l')
		return 0;
	*(const char **)arg = val;
	return 1;
}

int cmd_forward(int argc, char **argv)
{
	static const struct option extra[] = { { "listen", required_argument, NULL, 'l' }, { NULL, 0, NULL, 0 } };
	const char *listen_spec = NULL;
	const struct cmd_def def = { .name = "forward", .usage = forward_usage, .extra = extra, .shortopts = "l:",
				     .opt = forward_opt, .arg = &listen_spec };
	struct gw_client_opts o;
	struct gw_session *s = NULL;
	struct sigaction sa = { .sa_handler = on_signal };
	int r, lfd, nstreams = 0;

	gw_log_set_prefix("migrelay forward");
	if ((r = cmd_parse(&def, &o, argc, argv)) != CMD_GO)
		return r;
	if (!listen_spec || strncmp(listen_spec, "unix:", 5) || !listen_spec[5]) {
		fprintf(stderr, "migrelay forward: --listen unix:PATH is required\n");
		return MR_EXIT_USAGE;
	}
	/* Connect first: a wrong certificate or target is reported now, not at the first migration. */
	if ((r = cmd_connect(&o, &s)) != MR_EXIT_OK)
		return r;
	lfd = net_unix_listen(listen_spec + 5, 64);
	if (lfd < 0) {
		fprintf(stderr, "migrelay forward: cannot listen on %s: %s\n", listen_spec + 5, strerror(-lfd));
		gw_session_close(s);
		return MR_EXIT_USAGE;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	gw_info("listening on %s, forwarding to %s target %s over %d connection(s)", listen_spec + 5, o.to, o.target,
		o.connections);
	while (!stop_flag) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };
		int fd, id;

		if (poll(&pfd, 1, 500) <= 0)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		for (int attempt = 0; attempt < 2; attempt++) {
			if (!s) {
				struct gw_connect_fail f;

				if (gw_client_connect(&o, &s, &f) < 0) {
					gw_err("cannot reach %s: %s; dropping the local connection", o.to, f.text);
					s = NULL;
					break;
				}
			}
			id = gw_stream_open(s, WIRE_ROLE_PLAIN, fd, fd, &gw_sock_ops, NULL);
			if (id >= 0) {
				gw_info("stream %d opened", id);
				nstreams++;
				fd = -1;
				break;
			}
			if (id == -EMFILE) {
				gw_warn("%u streams already open in this session; refusing the local connection",
					s->cfg.max_streams);
				break;
			}
			/* Ids used up, or the session failed: retire it and start a new one. */
			retire(s);
			s = NULL;
		}
		if (fd >= 0)
			close(fd);
	}
	close(lfd);
	unlink(listen_spec + 5);
	gw_info("stopping after %d stream(s)", nstreams);
	if (s) {
		r = gw_session_wait_idle(s, 30000);
		gw_session_bye(s);
		gw_session_close(s);
	}
	return MR_EXIT_OK;
}
