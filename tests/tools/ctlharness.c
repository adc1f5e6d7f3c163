/* SPDX-License-Identifier: MIT */
/*
 * A stand-in daemon for the integration test of the control socket, the
 * metrics server and reload (tests/integ/test_status_metrics.sh). It wires
 * gateway/control.c, metrics.c and snapshot.c exactly as serve does, over
 * simulated sessions instead of real ones:
 *
 *   mr_ctlharness --control PATH --metrics HOST:PORT --config FILE --ready FILE
 *
 * FILE holds "target NAME" and "allow PATTERN" lines ('#' comments); any
 * other line fails validation with its line number, and a file without a
 * target does too. The configuration is a refcounted snapshot: each
 * simulated session holds the version it started with. SIGHUP and the
 * control socket's reload re-read FILE; SIGUSR1 starts one more session on
 * the first target of the current configuration; SIGUSR2 ends the oldest
 * session as verified; SIGTERM/SIGINT stop. Every session moves about
 * 10 MiB/s "in" and 1 MiB/s "out". Once both servers listen, --ready gets
 * "control=PATH" and "metrics=ADDRESS" lines.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/control.h"
#include "gateway/log.h"
#include "gateway/metrics.h"
#include "gateway/reload.h"
#include "gateway/snapshot.h"

enum { H_MAX_TARGETS = 8, H_MAX_SESSIONS = 16, H_MAX_CONNS = 4 };

struct hconf {
	char targets[H_MAX_TARGETS][WIRE_MAX_NAME + 1];
	int ntargets, nallow;
};

struct hsession {
	uint64_t id;
	struct gw_snap *conf; /* the version it started with */
	char target[WIRE_MAX_NAME + 1];
	uint64_t started_ms, in, out;
	uint32_t rejoins[H_MAX_CONNS];
};

static struct {
	const char *config;
	struct gw_snapshot conf;
	pthread_mutex_t lock; /* sessions */
	struct hsession s[H_MAX_SESSIONS];
	int ns;
	uint64_t next_id, start_ms;
	char control_path[128], metrics_addr[64];
	atomic_int stop; /* main thread sets it, the traffic thread reads it */
} h = { .conf = GW_SNAPSHOT_INITIALIZER,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.next_id = 0x1000 };

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads and validates the configuration. Returns 0 with *out, or -errno with a sentence in <msg>. */
static int conf_load(struct hconf **out, char *msg, size_t msglen)
{
	struct hconf *c = calloc(1, sizeof(*c));
	char line[256];
	FILE *f = NULL;
	int n = 0, r = -EINVAL;

	if (!c)
		return -ENOMEM;
	if (!(f = fopen(h.config, "re"))) {
		r = -errno;
		snprintf(msg, msglen, "cannot read %s: %s", h.config, strerror(errno));
		goto fail;
	}
	while (fgets(line, sizeof(line), f)) {
		char *nl = strchr(line, '\n');

		n++;
		if (nl)
			*nl = '\0';
		if (!line[0] || line[0] == '#')
			continue;
		if (!strncmp(line, "target ", 7) && c->ntargets < H_MAX_TARGETS && strlen(line + 7) &&
		    strlen(line + 7) <= WIRE_MAX_NAME) {
			snprintf(c->targets[c->ntargets++], sizeof(c->targets[0]), "%s", line + 7);
		} else if (!strncmp(line, "allow ", 6)) {
			c->nallow++;
		} else {
			snprintf(msg, msglen, "%s:%d: not \"target NAME\" or \"allow PATTERN\"", h.config, n);
			goto fail;
		}
	}
	if (!c->ntargets) {
		snprintf(msg, msglen, "%s: no target", h.config);
		goto fail;
	}
	fclose(f);
	*out = c;
	return 0;
fail:
	if (f)
		fclose(f);
	free(c);
	return r;
}

static void conf_free(void *p)
{
	free(p);
}

/* The reload function: control thread or main thread (SIGHUP), one at a time (gw_reload_run). */
static int do_reload(void *ctx, char *msg, size_t msglen)
{
	struct hconf *c = NULL;
	uint64_t gen = 0;
	int r;

	(void)ctx;
	r = conf_load(&c, msg, msglen);
	if (r == 0) {
		for (int i = 0; i < c->ntargets; i++)
			(void)!gw_metrics_target_add(c->targets[i]);
		if ((r = gw_snapshot_swap(&h.conf, c, conf_free, &gen)) < 0) {
			conf_free(c);
			snprintf(msg, msglen, "out of memory");
		} else {
			snprintf(msg, msglen, "reloaded %s: configuration generation %" PRIu64 ", %d target(s)", h.config,
				 gen, c->ntargets);
		}
	}
	return r;
}

static struct gw_reloader reloader = GW_RELOADER_INITIALIZER(do_reload, NULL);

/* Main thread. */
static void session_start(void)
{
	struct gw_snap *snap = gw_snapshot_get(&h.conf);
	const struct hconf *c = gw_snap_obj(snap);
	struct hsession *s;

	pthread_mutex_lock(&h.lock);
	if (h.ns >= H_MAX_SESSIONS) {
		pthread_mutex_unlock(&h.lock);
		gw_metrics_refused(GW_LIMIT_SESSIONS);
		gw_snap_put(snap);
		return;
	}
	s = &h.s[h.ns++];
	memset(s, 0, sizeof(*s));
	s->id = h.next_id++;
	s->conf = snap;
	snprintf(s->target, sizeof(s->target), "%s", c->targets[0]);
	s->started_ms = now_ms();
	pthread_mutex_unlock(&h.lock);
	gw_metrics_session_started(s->target);
}

/* Main thread: the oldest session ends verified, and drops its configuration version. */
static void session_end(void)
{
	struct gw_snap *snap;
	char target[WIRE_MAX_NAME + 1];

	pthread_mutex_lock(&h.lock);
	if (!h.ns) {
		pthread_mutex_unlock(&h.lock);
		return;
	}
	snap = h.s[0].conf;
	memcpy(target, h.s[0].target, sizeof(target));
	memmove(&h.s[0], &h.s[1], (size_t)(h.ns - 1) * sizeof(h.s[0]));
	h.ns--;
	pthread_mutex_unlock(&h.lock);
	gw_metrics_session_done(target);
	gw_snap_put(snap);
}

/* Control thread: the status callback. */
static int status_cb(void *ctx, struct json_object *st)
{
	struct gw_status_daemon d = { .version = "harness" };
	char rmsg[GW_CONTROL_MAX_MESSAGE];
	uint64_t now = now_ms();
	int r = 0;

	(void)ctx;
	pthread_mutex_lock(&h.lock);
	d.uptime_s = (double)(now - h.start_ms) / 1000.0;
	d.config_generation = gw_snapshot_generation(&h.conf);
	gw_reload_describe(&reloader, &d, rmsg, sizeof(rmsg));
	r |= gw_status_set_daemon(st, &d);
	r |= gw_status_add_listener(st, "control", h.control_path);
	r |= gw_status_add_listener(st, "metrics", h.metrics_addr);
	r |= gw_status_add_limit(st, "sessions", h.ns, H_MAX_SESSIONS);
	r |= gw_status_add_limit(st, "pending", 0, 1024);
	for (int i = 0; i < h.ns && !r; i++) {
		struct hsession *s = &h.s[i];
		struct gw_status_conn conns[H_MAX_CONNS];
		char ident[64];

		for (int k = 0; k < H_MAX_CONNS; k++)
			conns[k] = (struct gw_status_conn){ .index = k, .live = true, .rejoins = s->rejoins[k],
							    .wire_in = s->in / 2 / H_MAX_CONNS,
							    .wire_out = s->out / H_MAX_CONNS };
		/* the configuration version it holds, so a test sees sessions keep theirs across a reload */
		snprintf(ident, sizeof(ident), "CN=sim,config=%" PRIu64, s->conf->gen);
		r |= gw_status_add_session(st, &(struct gw_status_session){
			.id = s->id, .identity = ident, .target = s->target, .state = "running",
			.age_s = (double)(now - s->started_ms) / 1000.0, .bytes_in = s->in, .bytes_out = s->out,
			.wire_in = s->in / 2, .wire_out = s->out, .connections_expected = H_MAX_CONNS, .conns = conns,
			.nconns = H_MAX_CONNS, .streams_open = 1, .streams_verified = 0, .streams_failed = 0 });
	}
	pthread_mutex_unlock(&h.lock);
	return r ? -ENOMEM : 0;
}

/* Moves the simulated bytes: 1 MiB in and 100 KiB out per session every 100 ms. */
static void *traffic_main(void *arg)
{
	(void)arg;
	while (!h.stop) {
		usleep(100000);
		pthread_mutex_lock(&h.lock);
		for (int i = 0; i < h.ns; i++) {
			h.s[i].in += 1 << 20;
			h.s[i].out += 100 << 10;
			gw_metrics_bytes(h.s[i].target, 1 << 20, 100 << 10);
		}
		pthread_mutex_unlock(&h.lock);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "control", required_argument, NULL, 'c' }, { "metrics", required_argument, NULL, 'm' },
		{ "config", required_argument, NULL, 'f' },  { "ready", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *metrics = NULL, *ready = NULL;
	struct gw_control_ops ops = { .status = status_cb, .reload = gw_reload_run, .ctx = &reloader };
	struct gw_control *ctl = NULL;
	struct gw_metrics_http *mh = NULL;
	struct hconf *c = NULL;
	char why[512] = "", tmp[300];
	sigset_t set;
	pthread_t traffic;
	FILE *f;
	int opt, sig, rc = 1;

	gw_log_set_prefix("mr_ctlharness");
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (opt == 'c' && gw_control_parse_path(optarg, h.control_path, sizeof(h.control_path)) == 0)
			continue;
		if (opt == 'm')
			metrics = optarg;
		else if (opt == 'f')
			h.config = optarg;
		else if (opt == 'r')
			ready = optarg;
		else
			return 2;
	}
	if (!h.control_path[0] || !metrics || !h.config || !ready) {
		fprintf(stderr, "usage: mr_ctlharness --control PATH --metrics HOST:PORT --config FILE --ready FILE\n");
		return 2;
	}
	h.start_ms = now_ms();
	if (conf_load(&c, why, sizeof(why)) < 0) {
		fprintf(stderr, "mr_ctlharness: %s\n", why);
		return 2;
	}
	for (int i = 0; i < c->ntargets; i++)
		(void)!gw_metrics_target_add(c->targets[i]);
	if (gw_snapshot_init(&h.conf, c, conf_free) < 0) {
		conf_free(c);
		return 1;
	}
	/* Signals go to the main thread only: the servers' threads inherit this mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (gw_metrics_http_start(&mh, metrics, why, sizeof(why)) < 0 ||
	    (snprintf(h.metrics_addr, sizeof(h.metrics_addr), "%s", gw_metrics_http_address(mh)),
	     gw_control_start(&ctl, h.control_path, &ops, why, sizeof(why)) < 0)) {
		fprintf(stderr, "mr_ctlharness: %s\n", why);
		gw_metrics_http_stop(mh);
		gw_snapshot_fini(&h.conf);
		return 1;
	}
	/* Two sessions and a few events, so every metric family has something to show. */
	session_start();
	session_start();
	pthread_mutex_lock(&h.lock);
	h.s[0].rejoins[1] = 1;
	gw_metrics_rejoin(h.s[0].target);
	pthread_mutex_unlock(&h.lock);
	gw_metrics_handshake_failed(GW_HS_TLS);
	gw_metrics_handshake_failed(gw_metrics_hs_reason_for_wire(WIRE_E_NOT_ALLOWED));
	gw_metrics_refused(GW_LIMIT_PENDING);
	gw_metrics_session_started("no-such-target");
	gw_metrics_session_failed("no-such-target", WIRE_E_DIGEST);
	if (pthread_create(&traffic, NULL, traffic_main, NULL) != 0)
		goto out;
	snprintf(tmp, sizeof(tmp), "%s.tmp", ready);
	if (!(f = fopen(tmp, "we")))
		goto stop;
	fprintf(f, "control=%s\nmetrics=%s\n", gw_control_path(ctl), gw_metrics_http_address(mh));
	if (fclose(f) != 0 || rename(tmp, ready) < 0)
		goto stop;
	while (!h.stop && sigwait(&set, &sig) == 0) {
		if (sig == SIGHUP) {
			gw_reload_request(&reloader); /* as a handler would */
			(void)gw_reload_poll(&reloader);
		} else if (sig == SIGUSR1) {
			session_start();
		} else if (sig == SIGUSR2) {
			session_end();
		} else {
			h.stop = 1;
		}
	}
	rc = 0;
stop:
	h.stop = 1;
	pthread_join(traffic, NULL);
out:
	gw_control_stop(ctl);
	gw_metrics_http_stop(mh);
	while (h.ns)
		session_end();
	gw_snapshot_fini(&h.conf);
	return rc;
}
