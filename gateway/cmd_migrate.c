/* SPDX-License-Identifier: MIT */
/*
 * `migrelay migrate`: migrates a running QEMU to the destination gateway's
 * qmp: target. fd mode passes one end of a socketpair to QEMU (getfd +
 * migrate fd:); multifd listens on a private unix socket that QEMU connects
 * to N+1 times; disks are mirrored into NBD streams first (as libvirt's
 * copy-storage-all). Everything travels in one session over one port.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_common.h"
#include "cmds.h"
#include "control.h"
#include "exitcodes.h"
#include "log.h"
#include "migctl.h"
#include "net.h"
#include "progress.h"
#include "qemu.h"
#include "target.h"

static const char migrate_usage[] =
	"Usage: migrelay migrate --qmp SRC_QMP_SOCKET --to HOST:PORT --target NAME [options]\n"
	"\n"
	"Migrates the running QEMU whose QMP socket is SRC_QMP_SOCKET to the\n"
	"destination gateway's target NAME (a qmp: target: a QEMU started with\n"
	"-incoming defer). RAM, device state, multifd channels and disks all travel\n"
	"over the one port. Ctrl-C or SIGTERM cancels; the guest keeps running here.\n"
	"\n"
	"  -q, --qmp PATH            the source QEMU's QMP socket\n"
	"      --bandwidth RATE      cap QEMU's migration bandwidth (bytes/s; K, M, G, T suffixes);\n"
	"                            default: no cap (QEMU's own default of ~128 MiB/s is lifted)\n"
	"      --downtime MS         the most downtime QEMU may take to finish: 300, 300ms or 2s\n"
	"                            (default QEMU's, 300 ms)\n"
	"      --multifd N           N multifd channels (1-16), each a stream of the session\n"
	"      --copy-storage DEV    mirror disk DEV (drive or node name) to the destination's\n"
	"                            disk of the same name first; repeatable. The destination\n"
	"                            image must exist with the right size.\n"
	"      --postcopy            enable post-copy on both QEMUs (postcopy-ram); switch with\n"
	"                            --postcopy-after-precopy, --timeout-action postcopy or\n"
	"                            `migrelay ctl PATH postcopy`. After the switch the guest runs\n"
	"                            from the destination and the migration cannot be cancelled\n"
	"      --postcopy-after-precopy  switch to post-copy after the first full pass (implies\n"
	"                            --postcopy)\n"
	"      --postcopy-bandwidth RATE  QEMU's bandwidth cap once in post-copy (bytes/s)\n"
	"      --auto-converge       throttle the guest's vCPUs while it dirties faster than the\n"
	"                            migration sends\n"
	"      --auto-converge-initial PCT    first throttle, 1-99 % (QEMU's default 20)\n"
	"      --auto-converge-increment PCT  throttle step, 1-100 % (QEMU's default 10)\n"
	"      --xbzrle-cache SIZE   send changed pages as XBZRLE deltas with a cache of SIZE bytes\n"
	"                            (K, M, G suffixes)\n"
	"      --timeout DURATION    act after this long: 90, 90s, 5m or 1h (a bare number is\n"
	"                            seconds; default: none)\n"
	"      --timeout-action A    what --timeout does: cancel (default), suspend (pause the\n"
	"                            guest here so the migration converges) or postcopy\n"
	"      --suspend             leave the guest paused on the destination (by default the\n"
	"                            destination gateway resumes it once the migration is verified,\n"
	"                            if it was running here; start the destination QEMU with -S)\n"
	"      --control PATH        the control socket for `migrelay ctl PATH ...` (info, set-speed,\n"
	"                            set-downtime, postcopy, cancel); default: control.sock in\n"
	"                            migrate's private directory, printed at the start\n"
	"  -h, --help                this text\n"
	"\n";

static volatile sig_atomic_t cancel_flag;

static void on_signal(int sig)
{
	(void)sig;
	cancel_flag = 1;
}

struct listener {
	struct gw_session *s;
	int lfd;
	uint8_t role;
	int max;         /* connections to accept */
	int accepted;
	pthread_t thr;
	bool started;
	atomic_int stop;
	int ids[WIRE_MAX_STREAMS];
	int err;
};

/* Accepts QEMU's connections in order and opens one stream for each, in that order. */
static void *listener_main(void *arg)
{
	struct listener *l = arg;

	while (!atomic_load(&l->stop) && l->accepted < l->max) {
		struct pollfd pfd = { .fd = l->lfd, .events = POLLIN };
		int fd, id;

		if (poll(&pfd, 1, 200) <= 0)
			continue;
		fd = accept4(l->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		id = gw_stream_open(l->s, l->role, fd, fd, &gw_sock_ops, NULL);
		if (id < 0) {
			gw_err("cannot open a stream for QEMU's connection: %s", strerror(-id));
			close(fd);
			l->err = id;
			break;
		}
		l->ids[l->accepted++] = id;
	}
	return NULL;
}

static int listener_start(struct listener *l, struct gw_session *s, const char *path, uint8_t role, int max)
{
	memset(l, 0, sizeof(*l));
	l->s = s;
	l->role = role;
	l->max = max;
	l->lfd = net_unix_listen(path, 16);
	if (l->lfd < 0)
		return l->lfd;
	if (pthread_create(&l->thr, NULL, listener_main, l) != 0) {
		close(l->lfd);
		return -EAGAIN;
	}
	l->started = true;
	return 0;
}

static void listener_stop(struct listener *l)
{
	if (!l->started)
		return;
	atomic_store(&l->stop, 1);
	pthread_join(l->thr, NULL);
	close(l->lfd);
	l->started = false;
}

enum timeout_action { TA_CANCEL = 0, TA_SUSPEND = 1, TA_POSTCOPY = 2 };

struct mig {
	struct gw_client_opts o;
	const char *qmp_path;
	uint64_t bandwidth;
	int downtime_ms;
	int timeout_s;
	enum timeout_action timeout_action;
	bool timed_out;       /* the timeout action was taken */
	bool pc_after;        /* --postcopy-after-precopy */
	uint64_t pc_bandwidth;
	bool auto_converge;
	int ac_initial, ac_increment; /* 0: QEMU's */
	uint64_t xbzrle_cache;
	bool pc_started;      /* migrate-start-postcopy was sent */
	bool switched;        /* QEMU reported postcopy-active: the destination holds the guest */
	bool we_stopped;      /* --timeout-action suspend stopped the guest here */
	const char *control;  /* --control PATH */
	bool suspend;         /* --suspend */
	bool src_running;     /* the guest ran here when migrate started */
	struct migctl *ctl;
	uint64_t last_raw, last_ns; /* for the stream rate `ctl info` shows */
	double last_rate;
	struct qmp *q;
	struct gw_session *s;
	char dir[96];
	struct listener mf, nbd[WIRE_MAX_DEVICES];
	int main_id;
	int nbd_nodes; /* NBD client nodes added so far */
	bool tty;      /* stderr is a terminal: the progress line is redrawn */
	bool mirrors;  /* disk mirrors were started */
	bool completed; /* QEMU said "completed": the guest may be stopped here */
	uint64_t t0;
	const struct sigaction *sa; /* installed once the session is open */
	long rss0, peak;
	struct qemu_mig_info mi;
	int wire_code; /* the session's failure, WIRE_E_*, for the report */
	char err[QMP_ERR_MAX];
};

/* One progress report: a JSON event on stdout with --json, else a line on stderr. */
static void progress_line(struct mig *m, double secs)
{
	const struct qemu_mig_info *mi = &m->mi;
	struct gw_stats st;
	char a[32], b[32], c[32];
	double rate;

	gw_session_stats(m->s, &st);
	rate = secs > 0 ? (double)st.raw_out / secs : 0;
	if (m->o.json) {
		struct json_object *ev = gw_json_event("progress");

		gw_json_add_double(ev, "seconds", secs, 1);
		json_object_object_add(ev, "status", json_object_new_string(mi->status));
		gw_json_add_u64(ev, "transferred", mi->transferred);
		gw_json_add_u64(ev, "remaining", mi->remaining);
		gw_json_add_u64(ev, "total", mi->total);
		gw_json_add_u64(ev, "dirty_pages_rate", mi->dirty_rate);
		gw_json_add_u64(ev, "pass", mi->passes);
		gw_json_add_u64(ev, "stream_bytes", st.raw_out);
		gw_json_add_u64(ev, "wire_bytes", st.wire_out);
		gw_json_add_double(ev, "rate_bps", rate, 0);
		json_object_object_add(ev, "connections", json_object_new_int(st.live_conns));
		gw_json_emit(stdout, ev);
		return;
	}
	fprintf(stderr, "%s%6.1fs %-9s sent %s  %s/s  remaining %s  dirty %" PRIu64 " pages/s  pass %" PRIu64 "%s",
		m->tty ? "\r" : "", secs, mi->status, gw_fmt_bytes(mi->transferred, a, sizeof(a)),
		gw_fmt_bytes((uint64_t)rate, b, sizeof(b)), gw_fmt_bytes(mi->remaining, c, sizeof(c)), mi->dirty_rate,
		mi->passes, m->tty ? "   " : "\n");
}

/* Ends a redrawn progress line before another message. */
static void end_line(const struct mig *m)
{
	if (m->tty && !m->o.json && !m->o.quiet)
		fputc('\n', stderr);
}

/* Records why a phase failed (for the report) and returns <rc>. */
static int fail(struct mig *m, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct mig *m, int rc, const char *fmt, ...)
{
	char buf[QMP_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	memcpy(m->err, buf, sizeof(buf));
	return rc;
}

/* Waits until every block job of ours is gone (after cancel) or ready (before migrating). */
static int wait_jobs(struct mig *m, bool want_ready)
{
	for (int i = 0; !cancel_flag; i++) {
		struct json_object *ret = NULL;
		int n, ready = 0, ours = 0;

		if (qmp_cmd(m->q, "query-block-jobs", NULL, &ret, m->err, sizeof(m->err)) < 0)
			return -EIO;
		n = (int)json_object_array_length(ret);
		for (int k = 0; k < n; k++) {
			struct json_object *j = json_object_array_get_idx(ret, k), *v;

			if (!json_object_object_get_ex(j, "device", &v) ||
			    strncmp(json_object_get_string(v), "migrelay-", 9))
				continue;
			ours++;
			if (json_object_object_get_ex(j, "ready", &v) && json_object_get_boolean(v))
				ready++;
			if (json_object_object_get_ex(j, "status", &v) &&
			    !strcmp(json_object_get_string(v), "concluded") && !want_ready) {
				/* fine: it is on its way out */
			}
		}
		json_object_put(ret);
		if (want_ready && ours < m->o.ndevices) {
			snprintf(m->err, sizeof(m->err), "a disk mirror ended before it was ready");
			return -EIO;
		}
		if ((want_ready && ready == ours) || (!want_ready && ours == 0))
			return 0;
		if (want_ready && i % 10 == 0 && !m->o.json && !m->o.quiet)
			fprintf(stderr, "migrelay migrate: waiting for %d of %d disk mirror(s) to be ready\n",
				ours - ready, ours);
		usleep(200000);
	}
	return -ECANCELED;
}

/*
 * Mirrors every --copy-storage node into an NBD client whose socket is a
 * stream of the session, and waits until all are in sync. The NBD export
 * on the destination carries the node's own name.
 */
static int start_mirrors(struct mig *m)
{
	int r = qmp_cmdf(m->q, "migrate-set-capabilities", NULL, m->err, sizeof(m->err),
			 "{\"capabilities\": [{\"capability\": \"pause-before-switchover\", \"state\": true}]}");

	if (r < 0)
		return r;
	for (int i = 0; i < m->o.ndevices; i++) {
		char path[128];
		const char *d = m->o.devices[i]; /* passed wire_name_ok: nothing to escape */

		snprintf(path, sizeof(path), "%s/nbd-%d.sock", m->dir, i);
		if ((r = listener_start(&m->nbd[i], m->s, path, WIRE_ROLE_NBD, 64)) < 0) {
			snprintf(m->err, sizeof(m->err), "cannot listen for the disk mirror: %s", strerror(-r));
			return r;
		}
		r = qmp_cmdf(m->q, "blockdev-add", NULL, m->err, sizeof(m->err),
			     "{\"driver\": \"nbd\", \"node-name\": \"migrelay-nbd-%s\", "
			     "\"server\": {\"type\": \"unix\", \"path\": \"%s\"}, \"export\": \"%s\"}",
			     d, path, d);
		if (r < 0)
			return r;
		m->nbd_nodes = i + 1;
		r = qmp_cmdf(m->q, "blockdev-mirror", NULL, m->err, sizeof(m->err),
			     "{\"job-id\": \"migrelay-%s\", \"device\": \"%s\", \"target\": \"migrelay-nbd-%s\", "
			     "\"sync\": \"full\"}",
			     d, d, d);
		if (r < 0)
			return r;
	}
	return wait_jobs(m, true);
}

/* Ends the mirrors (a cancelled mirror that was ready leaves a consistent copy) and waits until they are gone. */
static void cancel_mirrors(struct mig *m)
{
	char err[QMP_ERR_MAX];

	for (int i = 0; i < m->o.ndevices; i++)
		if (qmp_cmdf(m->q, "block-job-cancel", NULL, err, sizeof(err), "{\"device\": \"migrelay-%s\"}",
			     m->o.devices[i]) < 0)
			gw_dbg("block-job-cancel %s: %s", m->o.devices[i], err);
	if (wait_jobs(m, false) < 0)
		gw_warn("disk mirrors did not end: %s", m->err);
}

/* Removes the NBD client nodes: their connections, and so the NBD streams, end. */
static void drop_nbd_nodes(struct mig *m)
{
	char err[QMP_ERR_MAX];

	for (int i = 0; i < m->nbd_nodes; i++)
		if (qmp_cmdf(m->q, "blockdev-del", NULL, err, sizeof(err), "{\"node-name\": \"migrelay-nbd-%s\"}",
			     m->o.devices[i]) < 0)
			gw_warn("blockdev-del migrelay-nbd-%s: %s", m->o.devices[i], err);
	m->nbd_nodes = 0;
}

enum { O_BW = 0x2000, O_DT, O_MF, O_CS, O_TO, O_PC, O_PCA, O_PCBW, O_AC, O_ACI, O_ACN, O_XB, O_TA, O_CTL, O_SUSP };

/* Takes one of migrate's own options (cmd_def.opt). */
static int migrate_opt(void *arg, int c, const char *val)
{
	struct mig *m = arg;
	uint64_t v;

	switch (c) {
	case 'q':
		m->qmp_path = val;
		return 1;
	case O_BW:
		if (cli_parse_bytes(val, 1, UINT64_MAX, &m->bandwidth) == 0)
			return 1;
		fprintf(stderr, "migrelay migrate: --bandwidth takes bytes/s such as 500M or 1G, not \"%.40s\"\n", val);
		return -EINVAL;
	case O_DT:
		if (cli_parse_millis(val, 1, 2000000, &v) == 0) {
			m->downtime_ms = (int)v;
			return 1;
		}
		fprintf(stderr, "migrelay migrate: --downtime takes 1 to 2000000 ms (300, 300ms, 2s), not \"%.40s\"\n", val);
		return -EINVAL;
	case O_MF:
		if (cli_parse_uint(val, 1, 16, &v) == 0) {
			m->o.multifd = (uint8_t)v;
			return 1;
		}
		fprintf(stderr, "migrelay migrate: --multifd takes 1 to 16 channels, not \"%.40s\"\n", val);
		return -EINVAL;
	case O_TO:
		if (cli_parse_seconds(val, 1, 7 * 24 * 3600, &v) == 0) {
			m->timeout_s = (int)v;
			return 1;
		}
		fprintf(stderr, "migrelay migrate: --timeout takes a duration such as 90, 90s, 5m or 1h, not \"%.40s\"\n",
			val);
		return -EINVAL;
	case O_PC:
		m->o.postcopy = true;
		return 1;
	case O_CTL:
		m->control = val;
		return 1;
	case O_SUSP:
		m->suspend = true;
		return 1;
	case O_PCA:
		m->o.postcopy = m->pc_after = true;
		return 1;
	case O_PCBW:
		if (cli_parse_bytes(val, 1, UINT64_MAX, &m->pc_bandwidth) == 0)
			return 1;
		fprintf(stderr, "migrelay migrate: --postcopy-bandwidth takes bytes/s such as 500M, not \"%.40s\"\n",
			val);
		return -EINVAL;
	case O_AC:
		m->auto_converge = true;
		return 1;
	case O_ACI:
	case O_ACN:
		if (cli_parse_uint(val, 1, c == O_ACI ? 99 : 100, &v) == 0) {
			*(c == O_ACI ? &m->ac_initial : &m->ac_increment) = (int)v;
			m->auto_converge = true;
			return 1;
		}
		fprintf(stderr, "migrelay migrate: --auto-converge-%s takes a percentage, 1 to %d, not \"%.40s\"\n",
			c == O_ACI ? "initial" : "increment", c == O_ACI ? 99 : 100, val);
		return -EINVAL;
	case O_XB:
		if (cli_parse_bytes(val, 4096, (uint64_t)1 << 40, &m->xbzrle_cache) == 0)
			return 1;
		fprintf(stderr, "migrelay migrate: --xbzrle-cache takes a size such as 64M, not \"%.40s\"\n", val);
		return -EINVAL;
	case O_TA:
		if (!strcmp(val, "cancel"))
			m->timeout_action = TA_CANCEL;
		else if (!strcmp(val, "suspend"))
			m->timeout_action = TA_SUSPEND;
		else if (!strcmp(val, "postcopy"))
			m->timeout_action = TA_POSTCOPY;
		else {
			fprintf(stderr, "migrelay migrate: --timeout-action takes cancel, suspend or postcopy, not \"%.40s\"\n",
				val);
			return -EINVAL;
		}
		return 1;
	case O_CS:
		if (m->o.ndevices >= WIRE_MAX_DEVICES || !wire_name_ok(val, strlen(val))) {
			fprintf(stderr, "migrelay migrate: --copy-storage \"%.40s\": at most %d devices, names of A-Z a-z 0-9 . _ -\n",
				val, WIRE_MAX_DEVICES);
			return -EINVAL;
		}
		m->o.devices[m->o.ndevices++] = val;
		return 1;
	}
	return 0;
}

/* Phase 1: the command line. Returns CMD_GO or an exit code. */
static int migrate_parse(struct mig *m, int argc, char **argv)
{
	static const struct option extra[] = {
		{ "qmp", required_argument, NULL, 'q' },	   { "bandwidth", required_argument, NULL, O_BW },
		{ "downtime", required_argument, NULL, O_DT },	   { "multifd", required_argument, NULL, O_MF },
		{ "copy-storage", required_argument, NULL, O_CS }, { "timeout", required_argument, NULL, O_TO },
		{ "postcopy", no_argument, NULL, O_PC },
		{ "postcopy-after-precopy", no_argument, NULL, O_PCA },
		{ "postcopy-bandwidth", required_argument, NULL, O_PCBW },
		{ "auto-converge", no_argument, NULL, O_AC },
		{ "auto-converge-initial", required_argument, NULL, O_ACI },
		{ "auto-converge-increment", required_argument, NULL, O_ACN },
		{ "xbzrle-cache", required_argument, NULL, O_XB },
		{ "timeout-action", required_argument, NULL, O_TA },
		{ "control", required_argument, NULL, O_CTL },
		{ "suspend", no_argument, NULL, O_SUSP },
		{ NULL, 0, NULL, 0 },
	};
	const struct cmd_def def = { .name = "migrate", .usage = migrate_usage, .extra = extra, .shortopts = "q:",
				     .opt = migrate_opt, .arg = m };
	int r;

	m->downtime_ms = -1;
	m->main_id = -1;
	if ((r = cmd_parse(&def, &m->o, argc, argv)) != CMD_GO)
		return r;
	if (!m->qmp_path) {
		fprintf(stderr, "migrelay migrate: --qmp SRC_QMP_SOCKET is required (the source QEMU's -qmp unix: socket)\n");
		return MR_EXIT_USAGE;
	}
	if (m->timeout_action == TA_POSTCOPY && !m->o.postcopy) {
		fprintf(stderr, "migrelay migrate: --timeout-action postcopy needs --postcopy\n");
		return MR_EXIT_USAGE;
	}
	if (m->pc_bandwidth && !m->o.postcopy) {
		fprintf(stderr, "migrelay migrate: --postcopy-bandwidth needs --postcopy\n");
		return MR_EXIT_USAGE;
	}
	return CMD_GO;
}

/* Phase 2: the source QEMU answers and has a guest that is not migrating yet. Returns 0 or an exit code. */
static int migrate_preflight(struct mig *m)
{
	char status[32];

	if (qmp_open(&m->q, m->qmp_path, 10000, m->err, sizeof(m->err)) < 0 ||
	    qemu_query_status(m->q, status, sizeof(status), m->err, sizeof(m->err)) < 0 ||
	    qemu_query_migrate(m->q, &m->mi, m->err, sizeof(m->err)) < 0)
		return fail(m, MR_EXIT_QEMU, "source QEMU: %s", m->err);
	if (!strcmp(m->mi.status, "active") || !strcmp(m->mi.status, "setup"))
		return fail(m, MR_EXIT_QEMU, "the source QEMU is already migrating (status %s)", m->mi.status);
	if (!strcmp(status, "inmigrate") || !strcmp(status, "postmigrate"))
		return fail(m, MR_EXIT_QEMU, "the source QEMU is %s; it has no guest to send", status);
	/* As libvirt: the destination runs the guest afterwards only if it ran here (HELLO flag RESUME). */
	m->src_running = !strcmp(status, "running");
	m->o.resume = m->src_running && !m->suspend;
	return 0;
}

/* QEMU's migration parameters: lift its ~128 MiB/s default unless the user capped it. Returns 0 or -errno. */
static int set_parameters(struct mig *m)
{
	int r = qmp_cmdf(m->q, "migrate-set-parameters", NULL, m->err, sizeof(m->err),
			 "{\"max-bandwidth\": %" PRIu64 "}", m->bandwidth ? m->bandwidth : (uint64_t)1 << 40);

	if (r == 0 && m->downtime_ms > 0)
		r = qmp_cmdf(m->q, "migrate-set-parameters", NULL, m->err, sizeof(m->err), "{\"downtime-limit\": %d}",
			     m->downtime_ms);
	if (r == 0)
		r = qmp_cmdf(m->q, "migrate-set-capabilities", NULL, m->err, sizeof(m->err),
			     "{\"capabilities\": [{\"capability\": \"multifd\", \"state\": %s}]}",
			     m->o.multifd ? "true" : "false");
	if (r == 0 && m->o.multifd)
		r = qmp_cmdf(m->q, "migrate-set-parameters", NULL, m->err, sizeof(m->err), "{\"multifd-channels\": %u}",
			     m->o.multifd);
	/* Set every time, also to false: a capability left on by an earlier run must not leak into this one. */
	if (r == 0)
		r = qmp_cmdf(m->q, "migrate-set-capabilities", NULL, m->err, sizeof(m->err),
			     "{\"capabilities\": [{\"capability\": \"postcopy-ram\", \"state\": %s}, "
			     "{\"capability\": \"auto-converge\", \"state\": %s}, "
			     "{\"capability\": \"xbzrle\", \"state\": %s}]}",
			     m->o.postcopy ? "true" : "false", m->auto_converge ? "true" : "false",
			     m->xbzrle_cache ? "true" : "false");
	if (r == 0 && m->pc_bandwidth)
		r = qmp_cmdf(m->q, "migrate-set-parameters", NULL, m->err, sizeof(m->err),
			     "{\"max-postcopy-bandwidth\": %" PRIu64 "}", m->pc_bandwidth);
	if (r == 0 && m->ac_initial)
		r = qmp_cmdf(m->q, "migrate-set-parameters", NULL, m->err, sizeof(m->err),
			     "{\"cpu-throttle-initial\": %d}", m->ac_initial);
	if (r == 0 && m->ac_increment)
		r = qmp_cmdf(m->q, "migrate-set-parameters", NULL, m->err, sizeof(m->err),
			     "{\"cpu-throttle-increment\": %d}", m->ac_increment);
	if (r == 0 && m->xbzrle_cache)
		r = qmp_cmdf(m->q, "migrate-set-parameters", NULL, m->err, sizeof(m->err),
			     "{\"xbzrle-cache-size\": %" PRIu64 "}", m->xbzrle_cache);
	return r;
}

/* Starts QEMU's migration into the session: multifd through a unix socket, else fd: over a socketpair. Returns 0 or an exit code. */
static int start_migration(struct mig *m)
{
	char path[128];
	int sv[2], r;

	if (m->o.multifd) {
		snprintf(path, sizeof(path), "%s/migrate.sock", m->dir);
		if ((r = listener_start(&m->mf, m->s, path, WIRE_ROLE_MIGRATION, m->o.multifd + 1)) < 0)
			return fail(m, MR_EXIT_FAIL, "cannot listen on %s: %s", path, strerror(-r));
		r = qmp_cmdf(m->q, "migrate", NULL, m->err, sizeof(m->err), "{\"uri\": \"unix:%s\"}", path);
	} else {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			return fail(m, MR_EXIT_FAIL, "socketpair: %s", strerror(errno));
		r = qmp_getfd(m->q, sv[0], "migrelay-out", m->err, sizeof(m->err));
		close(sv[0]);
		if (r < 0) {
			close(sv[1]);
			return fail(m, MR_EXIT_QEMU, "source QEMU refused to migrate: %s", m->err);
		}
		m->main_id = gw_stream_open(m->s, WIRE_ROLE_MIGRATION, sv[1], sv[1], &gw_sock_ops, NULL);
		if (m->main_id < 0) {
			close(sv[1]);
			return fail(m, MR_EXIT_FAIL, "cannot open the stream: %s", strerror(-m->main_id));
		}
		/* the stream owns sv[1] now */
		r = qmp_cmdf(m->q, "migrate", NULL, m->err, sizeof(m->err), "{\"uri\": \"fd:migrelay-out\"}");
	}
	if (r < 0)
		return fail(m, MR_EXIT_QEMU, "source QEMU refused to migrate: %s", m->err);
	return 0;
}

/* The control socket for `migrelay ctl`, and where it is. Returns 0 or an exit code. */
static int control_start(struct mig *m)
{
	char path[160], why[GW_CONTROL_MAX_MESSAGE];
	int r;

	if (m->control) {
		if (gw_control_parse_path(m->control, path, sizeof(path)) < 0)
			return fail(m, MR_EXIT_USAGE, "--control %.80s: not a unix socket path", m->control);
	} else {
		snprintf(path, sizeof(path), "%s/control.sock", m->dir);
	}
	if ((r = migctl_start(&m->ctl, path, why, sizeof(why))) < 0)
		return fail(m, MR_EXIT_FAIL, "control socket: %s", why);
	if (m->o.json) {
		struct json_object *ev = gw_json_event("control");

		json_object_object_add(ev, "path", json_object_new_string(migctl_path(m->ctl)));
		gw_json_emit(stdout, ev);
	} else if (!m->o.quiet) {
		fprintf(stderr, "migrelay migrate: control socket %s (migrelay ctl %s info)\n", migctl_path(m->ctl),
			migctl_path(m->ctl));
	}
	return 0;
}

/* Publishes what `ctl info` shows; <phase> is a static string. */
static void control_publish(struct mig *m, const char *phase, double secs, bool accepting)
{
	struct migctl_info in;
	struct gw_stats st;
	uint64_t now = gw_now_ns();

	if (!m->ctl)
		return;
	gw_session_stats(m->s, &st);
	if (m->last_ns && now - m->last_ns >= 500000000ull) {
		m->last_rate = (double)(st.raw_out - m->last_raw) / ((double)(now - m->last_ns) / 1e9);
		m->last_raw = st.raw_out;
		m->last_ns = now;
	} else if (!m->last_ns) {
		m->last_raw = st.raw_out;
		m->last_ns = now;
	}
	memset(&in, 0, sizeof(in));
	in.phase = phase;
	in.elapsed_s = secs;
	in.mi = m->mi;
	in.stream_bytes = st.raw_out;
	in.wire_bytes = st.wire_out;
	in.rate_bps = m->last_rate;
	in.conns_expected = m->o.connections;
	in.conns_live = st.live_conns;
	in.zstd = m->o.compress;
	in.postcopy = m->o.postcopy;
	in.switched = m->switched;
	in.auto_converge = m->auto_converge;
	in.bandwidth = m->bandwidth;
	in.downtime_ms = m->downtime_ms;
	in.xbzrle_cache = m->xbzrle_cache;
	migctl_publish(m->ctl, &in, accepting);
}

/* Phase 3: the session, the disk mirrors, QEMU's parameters, and the migration started. Returns 0 or an exit code. */
static int migrate_open(struct mig *m)
{
	int r;

	if ((r = cmd_connect(&m->o, &m->s)) != MR_EXIT_OK)
		return fail(m, r, "no session with %s", m->o.to);
	gw_proc_mem(0, &m->rss0, &m->peak);
	/* From here on Ctrl-C cancels the migration instead of killing us: the guest must keep running. */
	sigaction(SIGINT, m->sa, NULL);
	sigaction(SIGTERM, m->sa, NULL);
	if ((r = net_private_dir(m->dir, sizeof(m->dir), "migrelay-src")) < 0) {
		m->dir[0] = '\0';
		return fail(m, MR_EXIT_FAIL,
			    "cannot create a private directory for sockets: %s (see MIGRELAY_SOCKET_DIR)", strerror(-r));
	}
	if ((r = control_start(m)) != 0)
		return r;
	if (m->o.ndevices) {
		if (!m->o.quiet && !m->o.json)
			fprintf(stderr, "migrelay migrate: mirroring %d disk(s) first\n", m->o.ndevices);
		m->mirrors = true;
		if ((r = start_mirrors(m)) == -ECANCELED)
			return fail(m, MR_EXIT_CANCELLED, "disk mirror cancelled");
		if (r < 0)
			return fail(m, MR_EXIT_QEMU, "disk mirror failed: %s", m->err);
	}
	if (set_parameters(m) < 0)
		return fail(m, MR_EXIT_QEMU, "source QEMU refused the migration parameters: %s", m->err);
	return start_migration(m);
}

/* Cancels QEMU's migration; the guest keeps running here. */
static void qemu_cancel(struct mig *m)
{
	char err[QMP_ERR_MAX];

	if (qmp_cmd(m->q, "migrate_cancel", NULL, NULL, err, sizeof(err)) < 0)
		gw_warn("migrate_cancel: %s", err);
}

enum tick { TICK_WAIT, TICK_NOW, TICK_DONE, TICK_FAIL };

/* Asks QEMU to switch to post-copy (once). Returns 0 or -errno with m->err set. */
static int start_postcopy(struct mig *m, const char *why)
{
	int r;

	if (m->pc_started)
		return 0;
	if ((r = qmp_cmd(m->q, "migrate-start-postcopy", NULL, NULL, m->err, sizeof(m->err))) < 0)
		return r;
	m->pc_started = true;
	end_line(m);
	if (!m->o.quiet && !m->o.json)
		fprintf(stderr, "migrelay migrate: switching to post-copy (%s)\n", why);
	return 0;
}

/*
 * After the switch to post-copy the destination holds the guest's running
 * state and the source the rest of its memory: neither may run. Says so,
 * and what QEMU offers to recover. Returns the exit code.
 */
static int postcopy_lost(struct mig *m, int rc, const char *what)
{
	end_line(m);
	return fail(m, rc,
		    "%s after the switch to post-copy: the guest is paused on the destination, which holds its "
		    "running state, and its remaining memory is still on the source (status %s). Do not resume or "
		    "stop either QEMU. QEMU's post-copy recovery: on the destination QEMU, migrate-recover with a new "
		    "URI; then on the source QEMU, migrate with that URI and \"resume\": true (QEMU 3.0 and later)",
		    what, m->mi.status);
}

/* --timeout has passed: cancel, pause the guest here, or switch to post-copy. */
static enum tick on_timeout(struct mig *m, int *rc)
{
	char err[QMP_ERR_MAX];

	m->timed_out = true;
	switch (m->timeout_action) {
	case TA_SUSPEND:
		if (qmp_cmd(m->q, "stop", NULL, NULL, err, sizeof(err)) < 0) {
			*rc = fail(m, MR_EXIT_QEMU, "timeout: source QEMU refused to pause the guest: %s", err);
			return TICK_FAIL;
		}
		m->we_stopped = true;
		end_line(m);
		if (!m->o.quiet && !m->o.json)
			fprintf(stderr, "migrelay migrate: timeout: paused the guest here so that the migration completes\n");
		return TICK_NOW;
	case TA_POSTCOPY:
		if (start_postcopy(m, "timeout") < 0) {
			*rc = fail(m, MR_EXIT_QEMU, "timeout: source QEMU refused to switch to post-copy: %s", m->err);
			return TICK_FAIL;
		}
		return TICK_NOW;
	case TA_CANCEL:
		break;
	}
	qemu_cancel(m);
	end_line(m);
	*rc = fail(m, MR_EXIT_CANCELLED, "timeout; migration cancelled, the guest keeps running here");
	return TICK_FAIL;
}

/* Acts on a `migrelay ctl` request, if one is waiting, and answers it. Main thread (it owns the QMP socket). */
static void control_apply(struct mig *m)
{
	struct migctl_req req;
	char a[32];
	int r;

	if (!migctl_take(m->ctl, &req))
		return;
	switch (req.op) {
	case MIGCTL_SPEED:
		/* After the switch QEMU throttles by max-postcopy-bandwidth when one is set: set both. */
		r = qmp_cmdf(m->q, "migrate-set-parameters", NULL, m->err, sizeof(m->err),
			     m->switched ? "{\"max-bandwidth\": %" PRIu64 ", \"max-postcopy-bandwidth\": %" PRIu64 "}"
					 : "{\"max-bandwidth\": %" PRIu64 "}",
			     req.value, req.value);
		if (r == 0)
			m->bandwidth = req.value;
		end_line(m);
		if (r == 0 && !m->o.quiet && !m->o.json)
			fprintf(stderr, "migrelay migrate: ctl: bandwidth set to %s/s\n", gw_fmt_bytes(req.value, a, sizeof(a)));
		if (r < 0)
			migctl_answer(m->ctl, r, "QEMU refused: %s", m->err);
		else
			migctl_answer(m->ctl, 0, "bandwidth set to %s/s", gw_fmt_bytes(req.value, a, sizeof(a)));
		return;
	case MIGCTL_DOWNTIME:
		r = qmp_cmdf(m->q, "migrate-set-parameters", NULL, m->err, sizeof(m->err), "{\"downtime-limit\": %" PRIu64 "}",
			     req.value);
		if (r == 0)
			m->downtime_ms = (int)req.value;
		if (r < 0)
			migctl_answer(m->ctl, r, "QEMU refused: %s", m->err);
		else
			migctl_answer(m->ctl, 0, "downtime limit set to %" PRIu64 " ms", req.value);
		return;
	case MIGCTL_POSTCOPY:
		if (!m->o.postcopy)
			migctl_answer(m->ctl, -EINVAL, "post-copy was not enabled: start migrate with --postcopy");
		else if (m->pc_started)
			migctl_answer(m->ctl, 0, "already switching to post-copy (status %s)", m->mi.status);
		else if ((r = start_postcopy(m, "migrelay ctl")) < 0)
			migctl_answer(m->ctl, r, "QEMU refused: %s", m->err);
		else
			migctl_answer(m->ctl, 0, "switching to post-copy");
		return;
	case MIGCTL_CANCEL:
		if (m->switched) {
			migctl_answer(m->ctl, -EBUSY, "in post-copy the migration cannot be cancelled: the destination "
						      "holds the guest");
			return;
		}
		cancel_flag = 1;
		migctl_answer(m->ctl, 0, "cancelling; the guest keeps running on the source");
		return;
	case MIGCTL_NONE:
		break;
	}
	migctl_answer(m->ctl, -EINVAL, "unknown request");
}

/*
 * One look at QEMU and the session. Returns TICK_DONE when QEMU completed,
 * TICK_WAIT to look again after a pause, TICK_NOW to look again at once,
 * or TICK_FAIL with the exit code in *rc after recording why.
 */
static enum tick follow_tick(struct mig *m, double secs, bool first, int *rc)
{
	static double last_print;
	static bool warned;
	char why[QMP_ERR_MAX];
	uint16_t code = 0;
	bool failed;

	control_apply(m);
	if (cancel_flag && m->switched) {
		/* Cancelling now would strand the guest between the two QEMUs. */
		if (!warned) {
			end_line(m);
			fprintf(stderr, "migrelay migrate: in post-copy the migration cannot be cancelled; waiting for it "
					"to complete\n");
			warned = true;
		}
	} else if (cancel_flag) {
		qemu_cancel(m);
		end_line(m);
		*rc = fail(m, MR_EXIT_CANCELLED, "interrupted; migration cancelled, the guest keeps running here");
		return TICK_FAIL;
	}
	if (m->timeout_s && secs > m->timeout_s && !m->timed_out && !m->switched)
		return on_timeout(m, rc);
	if (qemu_query_migrate(m->q, &m->mi, m->err, sizeof(m->err)) < 0) {
		end_line(m);
		*rc = m->switched ? postcopy_lost(m, MR_EXIT_QEMU, "the source QEMU's monitor failed")
				  : fail(m, MR_EXIT_QEMU, "source QEMU: %s", m->err);
		return TICK_FAIL;
	}
	if (!strncmp(m->mi.status, "postcopy", 8))
		m->switched = true;
	control_publish(m, "migrating", secs, true);
	failed = cmd_first_failure(m->s, -1, &code, why, sizeof(why)) < 0;
	if (!m->o.quiet && (secs - last_print >= 1.0 || qemu_mig_terminal(m->mi.status) || first)) {
		progress_line(m, secs);
		last_print = secs;
	}
	if (failed) {
		end_line(m);
		m->wire_code = code;
		if (m->switched) {
			*rc = postcopy_lost(m, MR_EXIT_PEER_GONE, why);
			return TICK_FAIL;
		}
		if (!qemu_mig_terminal(m->mi.status))
			qemu_cancel(m);
		*rc = fail(m, code == WIRE_E_TARGET ? MR_EXIT_QEMU : cmd_exit_for_wire_error(code), "%s", why);
		return TICK_FAIL;
	}
	if (m->switched && (!strcmp(m->mi.status, "postcopy-paused") || !strcmp(m->mi.status, "failed"))) {
		*rc = postcopy_lost(m, MR_EXIT_QEMU, "the migration stream failed");
		return TICK_FAIL;
	}
	if (!strcmp(m->mi.status, "failed") || !strcmp(m->mi.status, "cancelled")) {
		end_line(m);
		*rc = fail(m, MR_EXIT_QEMU, "source QEMU: migration %s%s%s; the guest keeps running here", m->mi.status,
			   m->mi.error[0] ? ": " : "", m->mi.error);
		return TICK_FAIL;
	}
	if (!strcmp(m->mi.status, "pre-switchover")) {
		/* The vCPUs are stopped: the mirrors are final; end them before the switch-over, as libvirt does. */
		cancel_mirrors(m);
		if (qmp_cmdf(m->q, "migrate-continue", NULL, m->err, sizeof(m->err), "{\"state\": \"pre-switchover\"}") <
		    0) {
			*rc = fail(m, MR_EXIT_QEMU, "source QEMU refused to continue: %s", m->err);
			return TICK_FAIL;
		}
		return TICK_NOW; /* the guest is paused: no sleep before the next look */
	}
	/* As virsh --postcopy-after-precopy: the second pass has begun, so every page was sent once. */
	if (m->pc_after && !m->pc_started && !strcmp(m->mi.status, "active") && m->mi.passes >= 2 &&
	    start_postcopy(m, "the first pass is complete") < 0) {
		*rc = fail(m, MR_EXIT_QEMU, "source QEMU refused to switch to post-copy: %s", m->err);
		return TICK_FAIL;
	}
	return !strcmp(m->mi.status, "completed") ? TICK_DONE : TICK_WAIT;
}

/* Phase 4: follows QEMU until it completed, then the session until every stream is verified. Returns 0 or an exit code. */
static int migrate_follow(struct mig *m)
{
	char why[QMP_ERR_MAX];
	uint16_t code = 0;
	int r;

	for (int tick = 0;; tick++) {
		enum tick t = follow_tick(m, (double)(gw_now_ns() - m->t0) / 1e9, tick == 0, &r);

		if (t == TICK_DONE)
			break;
		if (t == TICK_FAIL)
			return r;
		if (t == TICK_WAIT)
			usleep(m->mirrors ? 50000 : 250000);
	}
	m->completed = true;
	control_publish(m, "verifying", (double)(gw_now_ns() - m->t0) / 1e9, false);
	end_line(m);
	if (m->mirrors) {
		drop_nbd_nodes(m);
		for (int i = 0; i < m->o.ndevices; i++)
			listener_stop(&m->nbd[i]);
	}
	listener_stop(&m->mf);
	/* Every stream must now end verified: the main one also says the destination QEMU loaded everything. */
	if ((r = gw_session_wait_idle(m->s, 120000)) == 0)
		return 0;
	if (cmd_first_failure(m->s, -1, &code, why, sizeof(why)) == 0)
		return fail(m, MR_EXIT_PEER_GONE, "after QEMU completed: %s",
			    r == -ETIMEDOUT ? "streams did not end within 120 s" : "the session failed");
	m->wire_code = code;
	return fail(m, code == WIRE_E_TARGET ? MR_EXIT_QEMU : cmd_exit_for_wire_error(code), "after QEMU completed: %s",
		    why);
}

/* Phase 5: the report of a verified migration: a JSON event on stdout with --json, else lines on stderr. */
static void migrate_report(struct mig *m)
{
	struct gw_stats st;
	double secs = (double)(gw_now_ns() - m->t0) / 1e9, ratio;
	long rss;
	char a[32], b[32];

	gw_session_stats(m->s, &st);
	gw_proc_mem(0, &rss, &m->peak);
	ratio = st.wire_out ? (double)st.raw_out / (double)st.wire_out : 1.0;
	if (m->o.json) {
		struct json_object *ev = gw_json_event("report");

		json_object_object_add(ev, "status", json_object_new_string("completed"));
		gw_json_add_double(ev, "seconds", secs, 3);
		gw_json_add_u64(ev, "qemu_total_time_ms", m->mi.total_time);
		gw_json_add_u64(ev, "downtime_ms", m->mi.downtime);
		gw_json_add_u64(ev, "stream_bytes", st.raw_out);
		gw_json_add_u64(ev, "wire_bytes", st.wire_out);
		gw_json_add_double(ev, "compression_ratio", ratio, 3);
		json_object_object_add(ev, "connections", json_object_new_int(m->o.connections));
		json_object_object_add(ev, "multifd", json_object_new_int(m->o.multifd));
		json_object_object_add(ev, "disks", json_object_new_int(m->o.ndevices));
		json_object_object_add(ev, "rss_start_kib", json_object_new_int64(m->rss0));
		json_object_object_add(ev, "rss_peak_kib", json_object_new_int64(m->peak));
		json_object_object_add(ev, "verified", json_object_new_boolean(1));
		json_object_object_add(ev, "destination_resume", json_object_new_boolean(m->o.resume));
		json_object_object_add(ev, "insecure_plaintext", json_object_new_boolean(m->o.plaintext));
		gw_json_emit(stdout, ev);
		return;
	}
	fprintf(stderr,
		"migrelay migrate: completed and verified in %.2f s (QEMU total %" PRIu64 " ms, downtime %" PRIu64
		" ms)\n  QEMU produced %s, %s on the wire (ratio %.2f), %.1f MiB/s, %d connection(s)%s%s\n",
		secs, m->mi.total_time, m->mi.downtime, gw_fmt_bytes(st.raw_out, a, sizeof(a)),
		gw_fmt_bytes(st.wire_out, b, sizeof(b)), ratio, secs > 0 ? (double)st.raw_out / secs / 1048576.0 : 0.0,
		m->o.connections, m->o.multifd ? ", multifd" : "", m->o.ndevices ? ", disks mirrored" : "");
	fprintf(stderr, "  gateway memory: %.1f MiB at the start, peak %.1f MiB\n", (double)m->rss0 / 1024.0,
		(double)m->peak / 1024.0);
	fprintf(stderr, "  %s\n",
		m->o.resume && m->switched ? "the destination gateway resumed the guest at the switch to post-copy"
		: m->o.resume  ? "the destination gateway resumes the guest now (--suspend leaves it paused)"
		: m->suspend   ? "the guest stays paused on the destination (--suspend)"
			       : "the guest was not running here, so it stays paused on the destination");
	if (m->o.plaintext)
		fprintf(stderr,
			"  INSECURE PLAINTEXT: the migration travelled unencrypted and unauthenticated after the TLS handshake (--insecure-plaintext)\n");
}

/* Phase 6, after a failure: ends the mirrors, and takes the guest back if QEMU had handed it over. */
static void migrate_rollback(struct mig *m)
{
	char err[QMP_ERR_MAX], status[32];

	if (!m->q)
		return;
	if (m->mirrors) {
		cancel_mirrors(m);
		drop_nbd_nodes(m);
		if (qmp_cmdf(m->q, "migrate-set-capabilities", NULL, err, sizeof(err),
			     "{\"capabilities\": [{\"capability\": \"pause-before-switchover\", \"state\": false}]}") < 0)
			gw_dbg("pause-before-switchover off: %s", err);
	}
	/*
	 * The destination did not make it: a guest QEMU had already stopped here
	 * (or we paused) must run again. Never after the switch to post-copy:
	 * the destination holds the guest's newest state.
	 */
	if ((m->completed || m->we_stopped) && !m->switched && qemu_query_status(m->q, status, sizeof(status), err, sizeof(err)) == 0 &&
	    strcmp(status, "running")) {
		if (qmp_cmd(m->q, "cont", NULL, NULL, err, sizeof(err)) == 0)
			fprintf(stderr, "migrelay migrate: resumed the guest on the source\n");
		else
			fprintf(stderr, "migrelay migrate: could not resume the guest on the source: %s\n", err);
	}
}

/* Releases everything: listeners, session (BYE after a success), QMP, the socket directory. */
static void migrate_cleanup(struct mig *m, bool ok)
{
	migctl_stop(m->ctl);
	m->ctl = NULL;
	for (int i = 0; i < m->o.ndevices; i++)
		listener_stop(&m->nbd[i]);
	listener_stop(&m->mf);
	if (m->s) {
		if (ok)
			gw_session_bye(m->s);
		gw_session_close(m->s);
	}
	qmp_close(m->q);
	if (m->dir[0]) {
		char path[160];

		snprintf(path, sizeof(path), "%s/migrate.sock", m->dir);
		unlink(path);
		for (int i = 0; i < m->o.ndevices; i++) {
			snprintf(path, sizeof(path), "%s/nbd-%d.sock", m->dir, i);
			unlink(path);
		}
		rmdir(m->dir);
	}
}

int cmd_migrate(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct mig m;
	int rc;

	gw_log_set_prefix("migrelay migrate");
	memset(&m, 0, sizeof(m));
	m.tty = isatty(STDERR_FILENO);
	if ((rc = migrate_parse(&m, argc, argv)) != CMD_GO)
		return rc;
	m.t0 = gw_now_ns();
	m.sa = &sa;
	if ((rc = migrate_preflight(&m)) == 0 && (rc = migrate_open(&m)) == 0 && (rc = migrate_follow(&m)) == 0)
		migrate_report(&m);
	else
		migrate_rollback(&m);
	migrate_cleanup(&m, rc == MR_EXIT_OK);
	if (rc != MR_EXIT_OK)
		cmd_failed("migrate", m.o.json, rc, m.wire_code, "%s", m.err);
	return rc;
}
