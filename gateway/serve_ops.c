/* SPDX-License-Identifier: MIT */
/*
 * `migrelay serve`'s operations side: the main loop's chores (reload after
 * SIGHUP, metrics tick), the control socket's status and the --control and
 * --metrics servers.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "net.h"
#include "serve.h"
#include "status.h"

/*
 * The main loop's chores, every SRV_SWEEP_MS: a reload after SIGHUP (kept
 * blocked in every thread and collected here, so no other thread's system
 * call is interrupted) and the running sessions' bytes into the metrics.
 */
void serve_tick(void)
{
	const struct timespec zero = { 0 };
	uint64_t now = gw_now_ns();

	while (sigtimedwait(&srv.hup, NULL, &zero) == SIGHUP)
		gw_reload_request(&serve_reloader);
	(void)gw_reload_poll(&serve_reloader);
	if (now - srv.last_tick_ns >= (uint64_t)SRV_METRICS_TICK_MS * 1000000u) {
		srv.last_tick_ns = now;
		gw_registry_metrics_tick(&srv.reg);
	}
}

/* The control socket's status callback (control thread): numbers copied under locks, no I/O. */
static int status_cb(void *ctx, struct json_object *st)
{
	struct gw_status_daemon d = { .version = MR_VERSION };
	struct gw_snap *snap = gw_snapshot_get(&srv.conf);
	const struct srvconf *c = snap ? gw_snap_obj(snap) : NULL;
	char rmsg[GW_CONTROL_MAX_MESSAGE];
	int listed = 0, closing = 0, conns = 0, r = 0;

	(void)ctx;
	d.uptime_s = (double)(gw_now_ns() - srv.start_ns) / 1e9;
	d.config_generation = snap ? snap->gen : 0;
	gw_reload_describe(&serve_reloader, &d, rmsg, sizeof(rmsg));
	gw_registry_counts(&srv.reg, &listed, &closing, &conns);
	r |= gw_status_set_daemon(st, &d);
	for (int i = 0; i < srv.o.ls.n; i++)
		r |= gw_status_add_listener(st, srv.o.ls.l[i].local ? "unix" : "tcp", srv.o.ls.l[i].spec);
	if (srv.control_path[0])
		r |= gw_status_add_listener(st, "control", srv.control_path);
	if (srv.metrics_addr[0])
		r |= gw_status_add_listener(st, "metrics", srv.metrics_addr);
	r |= gw_status_add_limit(st, "sessions", listed, srv.o.max_sessions);
	r |= gw_status_add_limit(st, "sessions_closing", closing, srv.o.max_sessions);
	r |= gw_status_add_limit(st, "pending", gw_preauth_count(&srv.preauth), srv.o.pre.max_pending);
	r |= gw_status_add_limit(st, "connections", conns, c ? c->setup.max_conns : srv.o.max_conns);
	gw_snap_put(snap);
	if (!r)
		r = gw_registry_status(&srv.reg, st);
	return r ? -ENOMEM : 0;
}

/* --control and --metrics: started before any other thread, stopped at the end. 0 or -errno after printing why. */
int serve_start_servers(void)
{
	const struct gw_control_ops ops = { .status = status_cb, .reload = gw_reload_run, .ctx = &serve_reloader };
	const char *ctl = srv.o.control;
	char why[512] = "", dir[sizeof(srv.control_path)];
	struct stat sb;
	int r;

	if (!ctl) {
		/* The default only where a service manager made the directory (the unit's RuntimeDirectory). */
		snprintf(dir, sizeof(dir), "%s", GW_CONTROL_DEFAULT_PATH);
		*strrchr(dir, '/') = '\0';
		if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode))
			ctl = GW_CONTROL_DEFAULT_PATH;
	}
	/* Metrics first: the control thread reports their address. */
	if (srv.o.metrics) {
		if ((r = gw_metrics_http_start(&srv.mh, srv.o.metrics, why, sizeof(why))) < 0) {
			fprintf(stderr, "migrelay serve: --metrics: %s\n", why);
			return r;
		}
		snprintf(srv.metrics_addr, sizeof(srv.metrics_addr), "%s", gw_metrics_http_address(srv.mh));
		gw_info("metrics at http://%s/metrics", srv.metrics_addr);
	}
	if (ctl && strcmp(ctl, "none")) {
		if (gw_control_parse_path(ctl, srv.control_path, sizeof(srv.control_path)) < 0) {
			fprintf(stderr, "migrelay serve: --control takes unix:PATH (a short enough path) or none, not \"%.80s\"\n",
				ctl);
			return -EINVAL;
		}
		if ((r = gw_control_start(&srv.ctl, srv.control_path, &ops, why, sizeof(why))) < 0) {
			fprintf(stderr, "migrelay serve: control socket: %s\n", why);
			return r;
		}
		gw_info("control socket %s (migrelay status --control %s)", srv.control_path, srv.control_path);
	}
	return 0;
}
