/* SPDX-License-Identifier: MIT */
/*
 * `migrelay migrate`: migrates a running QEMU to the destination gateway's
 * qmp: target. fd mode passes one end of a socketpair to QEMU (getfd +
 * migrate fd:); multifd listens on a private unix socket that QEMU connects
 * to N+1 times; disks are mirrored into NBD streams first (as libvirt's
 * copy-storage-all). Everything travels in one session over one port.
 * The phases are here; the listeners and mirrors are in migrate_disks.c,
 * post-copy, the timeout's actions and the control socket in
 * migrate_steer.c (migrate.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
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
#include "migrate.h"
#include "net.h"
#include "preflight.h"
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
	"      --copy-storage-inc DEV  as --copy-storage, but copy only DEV's top image (the\n"
	"                            clusters it allocates); repeatable. The destination's disk\n"
	"                            of that name must be an overlay over an identical copy of\n"
	"                            DEV's backing chain: what is not copied is read from there\n"
	"      --copy-storage-synchronous-writes  while the disks are mirrored, a guest write\n"
	"                            completes only once it is on the destination too (QEMU's\n"
	"                            write-blocking copy mode), so that the mirrors converge\n"
	"                            under heavy writes; needs --copy-storage or --copy-storage-inc\n"
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
	"      --no-preflight        skip the pre-flight check: by default the destination gateway\n"
	"                            compares its QEMU with this one (RAM size and blocks, machine\n"
	"                            type, CPU model and features) and refuses, naming the\n"
	"                            difference, before anything is migrated\n"
	"  -h, --help                this text\n"
	"\n";

volatile sig_atomic_t mig_cancel_flag;

static void on_signal(int sig)
{
	(void)sig;
	mig_cancel_flag = 1;
}

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
void mig_end_line(const struct mig *m)
{
	if (m->tty && !m->o.json && !m->o.quiet)
		fputc('\n', stderr);
}

/* Records why a phase failed (for the report) and returns <rc>. */
int mig_fail(struct mig *m, int rc, const char *fmt, ...)
{
	char buf[QMP_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	memcpy(m->err, buf, sizeof(buf));
	return rc;
}

enum { O_BW = 0x2000, O_DT, O_MF, O_CS, O_TO, O_PC, O_PCA, O_PCBW, O_AC, O_ACI, O_ACN, O_XB, O_TA, O_CTL, O_SUSP, O_CSI, O_CSW, O_NOPF };

/* --copy-storage DEV (<inc> false) or --copy-storage-inc DEV: each disk once. 1, or -EINVAL after saying why. */
static int add_disk(struct mig *m, const char *val, bool inc)
{
	const char *opt = inc ? "--copy-storage-inc" : "--copy-storage";

	if (m->o.ndevices >= WIRE_MAX_DEVICES || !wire_name_ok(val, strlen(val))) {
		fprintf(stderr, "migrelay migrate: %s \"%.40s\": at most %d devices, names of A-Z a-z 0-9 . _ -\n", opt,
			val, WIRE_MAX_DEVICES);
		return -EINVAL;
	}
	for (int i = 0; i < m->o.ndevices; i++) {
		if (strcmp(m->o.devices[i], val))
			continue;
		if (m->inc[i] != inc)
			fprintf(stderr, "migrelay migrate: disk %s is given to both --copy-storage and --copy-storage-inc; "
					"give it to one (the whole disk, or only its top image)\n", val);
		else
			fprintf(stderr, "migrelay migrate: %s %s is given twice; name each disk once\n", opt, val);
		return -EINVAL;
	}
	m->inc[m->o.ndevices] = inc;
	m->o.devices[m->o.ndevices++] = val;
	return 1;
}

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
	case O_NOPF:
		m->no_preflight = true;
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
	case O_CSI:
		return add_disk(m, val, c == O_CSI);
	case O_CSW:
		m->sync_writes = true;
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
		{ "copy-storage-inc", required_argument, NULL, O_CSI },
		{ "copy-storage-synchronous-writes", no_argument, NULL, O_CSW },
		{ "no-preflight", no_argument, NULL, O_NOPF },
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
	if (m->sync_writes && !m->o.ndevices) {
		fprintf(stderr, "migrelay migrate: --copy-storage-synchronous-writes needs a disk to mirror "
				"(--copy-storage DEV or --copy-storage-inc DEV)\n");
		return MR_EXIT_USAGE;
	}
	return CMD_GO;
}

/* What the destination gateway compares with its QEMU before it takes the session (HELLO's pre-flight TLVs). */
static int gather_facts(struct mig *m)
{
	struct gw_qemu_facts *f = malloc(sizeof(*f));
	int r;

	if (!f)
		return mig_fail(m, MR_EXIT_FAIL, "out of memory");
	if ((r = gw_qemu_facts(m->q, f, m->err, sizeof(m->err))) == 0) {
		m->pf = f->pf;
		m->o.preflight = &m->pf;
		gw_dbg("pre-flight: machine %s, CPU %s with %u features, %u RAM blocks (%d left out)",
		       (f->pf.have & WIRE_PF_MACHINE) ? f->pf.machine : "?",
		       (f->pf.have & WIRE_PF_CPU_MODEL) ? f->pf.cpu_model : "?", f->pf.nfeatures, f->pf.nblocks,
		       f->skipped);
	}
	free(f);
	return r < 0 ? mig_fail(m, MR_EXIT_QEMU, "source QEMU: %s", m->err) : 0;
}

/*
 * A source QEMU whose own dirty tracking can leave pages stale (TCG before
 * 9.0) gets a warning: the digests prove that every byte QEMU sent arrived,
 * but nothing on the wire can restore a write QEMU never sent. Only a
 * warning, as tests and demos run TCG on purpose.
 */
static void warn_tcg(struct mig *m)
{
	char err[QMP_ERR_MAX];

	if (qemu_tcg_stale_risk(m->q, m->tcg_risk, sizeof(m->tcg_risk), err, sizeof(err)) != 1) {
		m->tcg_risk[0] = '\0';
		return;
	}
	gw_warn("the source QEMU %s runs its guest under TCG, without KVM: QEMU before 9.0 can miss guest writes in "
		"its dirty tracking and leave pages stale on the destination, whatever carries the stream (fixed "
		"in QEMU 9.0, commit 03bfc2188f06); for guests that matter, use KVM or QEMU 9.0 or later",
		m->tcg_risk);
}

/* Phase 2: the source QEMU answers and has a guest that is not migrating yet. Returns 0 or an exit code. */
static int migrate_preflight(struct mig *m)
{
	char status[32];

	if (qmp_open(&m->q, m->qmp_path, 10000, m->err, sizeof(m->err)) < 0 ||
	    qemu_query_status(m->q, status, sizeof(status), m->err, sizeof(m->err)) < 0 ||
	    qemu_query_migrate(m->q, &m->mi, m->err, sizeof(m->err)) < 0)
		return mig_fail(m, MR_EXIT_QEMU, "source QEMU: %s", m->err);
	if (!strcmp(m->mi.status, "active") || !strcmp(m->mi.status, "setup"))
		return mig_fail(m, MR_EXIT_QEMU, "the source QEMU is already migrating (status %s)", m->mi.status);
	if (!strcmp(status, "inmigrate") || !strcmp(status, "postmigrate"))
		return mig_fail(m, MR_EXIT_QEMU, "the source QEMU is %s; it has no guest to send", status);
	warn_tcg(m);
	/* As libvirt: the destination runs the guest afterwards only if it ran here (HELLO flag RESUME). */
	m->src_running = !strcmp(status, "running");
	m->o.resume = m->src_running && !m->suspend;
	return m->no_preflight ? 0 : gather_facts(m);
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
	/* A MIGRATION event at each status change: migrate_follow learns of the completion from it. */
	if (r == 0)
		r = qemu_enable_migration_events(m->q, m->err, sizeof(m->err));
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
		if ((r = mig_listener_start(&m->mf, m->s, path, WIRE_ROLE_MIGRATION, m->o.multifd + 1)) < 0)
			return mig_fail(m, MR_EXIT_FAIL, "cannot listen on %s: %s", path, strerror(-r));
		r = qmp_cmdf(m->q, "migrate", NULL, m->err, sizeof(m->err), "{\"uri\": \"unix:%s\"}", path);
	} else {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			return mig_fail(m, MR_EXIT_FAIL, "socketpair: %s", strerror(errno));
		r = qmp_getfd(m->q, sv[0], "migrelay-out", m->err, sizeof(m->err));
		close(sv[0]);
		if (r < 0) {
			close(sv[1]);
			return mig_fail(m, MR_EXIT_QEMU, "source QEMU refused to migrate: %s", m->err);
		}
		m->main_id = gw_stream_open(m->s, WIRE_ROLE_MIGRATION, sv[1], sv[1], &gw_sock_ops, NULL);
		if (m->main_id < 0) {
			close(sv[1]);
			return mig_fail(m, MR_EXIT_FAIL, "cannot open the stream: %s", strerror(-m->main_id));
		}
		/* the stream owns sv[1] now */
		r = qmp_cmdf(m->q, "migrate", NULL, m->err, sizeof(m->err), "{\"uri\": \"fd:migrelay-out\"}");
	}
	if (r < 0)
		return mig_fail(m, MR_EXIT_QEMU, "source QEMU refused to migrate: %s", m->err);
	gw_dbg("QEMU migrating after %.1f ms", (double)(gw_now_ns() - m->t0) / 1e6);
	return 0;
}

/* Phase 3: the session, the disk mirrors, QEMU's parameters, and the migration started. Returns 0 or an exit code. */
static int migrate_open(struct mig *m)
{
	int r;

	if ((r = cmd_connect(&m->o, &m->s)) != MR_EXIT_OK)
		return mig_fail(m, r, "no session with %s", m->o.to);
	gw_dbg("session with %d connection(s) up after %.1f ms", m->o.connections, (double)(gw_now_ns() - m->t0) / 1e6);
	gw_proc_mem(0, &m->rss0, &m->peak);
	/* From here on Ctrl-C cancels the migration instead of killing us: the guest must keep running. */
	sigaction(SIGINT, m->sa, NULL);
	sigaction(SIGTERM, m->sa, NULL);
	if ((r = net_private_dir(m->dir, sizeof(m->dir), "migrelay-src")) < 0) {
		m->dir[0] = '\0';
		return mig_fail(m, MR_EXIT_FAIL,
			    "cannot create a private directory for sockets: %s (see MIGRELAY_SOCKET_DIR)", strerror(-r));
	}
	if ((r = mig_control_start(m)) != 0)
		return r;
	if (m->o.ndevices) {
		int ninc = 0;

		for (int i = 0; i < m->o.ndevices; i++)
			ninc += m->inc[i];
		if (!m->o.quiet && !m->o.json)
			fprintf(stderr, "migrelay migrate: mirroring %d disk(s) first (%d whole, %d top image only)%s\n",
				m->o.ndevices, m->o.ndevices - ninc, ninc,
				m->sync_writes ? ", guest writes synchronous" : "");
		m->mirrors = true;
		if ((r = mig_start_mirrors(m)) == -ECANCELED)
			return mig_fail(m, MR_EXIT_CANCELLED, "disk mirror cancelled");
		if (r < 0)
			return mig_fail(m, MR_EXIT_QEMU, "disk mirror failed: %s", m->err);
	}
	if (set_parameters(m) < 0)
		return mig_fail(m, MR_EXIT_QEMU, "source QEMU refused the migration parameters: %s", m->err);
	return start_migration(m);
}

/* Cancels QEMU's migration; the guest keeps running here. */
void mig_qemu_cancel(struct mig *m)
{
	char err[QMP_ERR_MAX];

	if (qmp_cmd(m->q, "migrate_cancel", NULL, NULL, err, sizeof(err)) < 0)
		gw_warn("migrate_cancel: %s", err);
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

	mig_control_apply(m);
	if (mig_cancel_flag && m->switched) {
		/* Cancelling now would strand the guest between the two QEMUs. */
		if (!warned) {
			mig_end_line(m);
			fprintf(stderr, "migrelay migrate: in post-copy the migration cannot be cancelled; waiting for it "
					"to complete\n");
			warned = true;
		}
	} else if (mig_cancel_flag) {
		mig_qemu_cancel(m);
		mig_end_line(m);
		*rc = mig_fail(m, MR_EXIT_CANCELLED, "interrupted; migration cancelled, the guest keeps running here");
		return TICK_FAIL;
	}
	if (m->timeout_s && secs > m->timeout_s && !m->timed_out && !m->switched)
		return mig_on_timeout(m, rc);
	if (qemu_query_migrate(m->q, &m->mi, m->err, sizeof(m->err)) < 0) {
		mig_end_line(m);
		*rc = m->switched ? mig_postcopy_lost(m, MR_EXIT_QEMU, "the source QEMU's monitor failed")
				  : mig_fail(m, MR_EXIT_QEMU, "source QEMU: %s", m->err);
		return TICK_FAIL;
	}
	if (!strncmp(m->mi.status, "postcopy", 8))
		m->switched = true;
	mig_control_publish(m, "migrating", secs, true);
	failed = cmd_first_failure(m->s, -1, &code, why, sizeof(why)) < 0;
	if (!m->o.quiet && (secs - last_print >= 1.0 || qemu_mig_terminal(m->mi.status) || first)) {
		progress_line(m, secs);
		last_print = secs;
	}
	if (failed) {
		mig_end_line(m);
		m->wire_code = code;
		if (m->switched) {
			*rc = mig_postcopy_lost(m, MR_EXIT_PEER_GONE, why);
			return TICK_FAIL;
		}
		if (!qemu_mig_terminal(m->mi.status))
			mig_qemu_cancel(m);
		*rc = mig_fail(m, code == WIRE_E_TARGET ? MR_EXIT_QEMU : cmd_exit_for_wire_error(code), "%s", why);
		return TICK_FAIL;
	}
	if (m->switched && (!strcmp(m->mi.status, "postcopy-paused") || !strcmp(m->mi.status, "failed"))) {
		*rc = mig_postcopy_lost(m, MR_EXIT_QEMU, "the migration stream failed");
		return TICK_FAIL;
	}
	if (!strcmp(m->mi.status, "failed") || !strcmp(m->mi.status, "cancelled")) {
		mig_end_line(m);
		*rc = mig_fail(m, MR_EXIT_QEMU, "source QEMU: migration %s%s%s; the guest keeps running here", m->mi.status,
			   m->mi.error[0] ? ": " : "", m->mi.error);
		return TICK_FAIL;
	}
	if (!strcmp(m->mi.status, "pre-switchover")) {
		/* The vCPUs are stopped: the mirrors are final; end them before the switch-over, as libvirt does. */
		mig_cancel_mirrors(m);
		if (qmp_cmdf(m->q, "migrate-continue", NULL, m->err, sizeof(m->err), "{\"state\": \"pre-switchover\"}") <
		    0) {
			*rc = mig_fail(m, MR_EXIT_QEMU, "source QEMU refused to continue: %s", m->err);
			return TICK_FAIL;
		}
		return TICK_NOW; /* the guest is paused: no sleep before the next look */
	}
	/* As virsh --postcopy-after-precopy: the second pass has begun, so every page was sent once. */
	if (m->pc_after && !m->pc_started && !strcmp(m->mi.status, "active") && m->mi.passes >= 2 &&
	    mig_start_postcopy(m, "the first pass is complete") < 0) {
		*rc = mig_fail(m, MR_EXIT_QEMU, "source QEMU refused to switch to post-copy: %s", m->err);
		return TICK_FAIL;
	}
	return !strcmp(m->mi.status, "completed") ? TICK_DONE : TICK_WAIT;
}

/*
 * Between two looks at QEMU: until its next MIGRATION event (a status
 * change, among them the completion), <ms> at most, so that the progress
 * line, `ctl` requests and the session's health are still looked at.
 */
static void follow_wait(struct mig *m, int ms)
{
	char status[32];
	int r = qemu_wait_migration_event(m->q, ms, status, sizeof(status));

	if (r == 0)
		gw_dbg("QEMU: migration %s", status);
	else if (r != -ETIMEDOUT)
		usleep((useconds_t)ms * 1000); /* the next look reports the monitor's failure */
}

/*
 * QEMU says "completed" (and sends the event) a moment before its migration
 * thread has computed total-time and downtime, which start at 0: a look that
 * fell in between asks again, 100 ms at most.
 */
static void follow_final_times(struct mig *m)
{
	struct qemu_mig_info mi;
	char err[QMP_ERR_MAX];

	for (int i = 0; i < 100 && m->mi.total_time == 0; i++) {
		usleep(1000);
		if (qemu_query_migrate(m->q, &mi, err, sizeof(err)) < 0)
			return;
		m->mi = mi;
	}
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
			follow_wait(m, m->mirrors ? 50 : 250);
	}
	follow_final_times(m);
	m->completed = true;
	gw_dbg("QEMU completed (total %" PRIu64 " ms), seen after %.1f ms", m->mi.total_time,
	       (double)(gw_now_ns() - m->t0) / 1e6);
	mig_control_publish(m, "verifying", (double)(gw_now_ns() - m->t0) / 1e9, false);
	mig_end_line(m);
	if (m->mirrors) {
		mig_drop_nbd_nodes(m);
		for (int i = 0; i < m->o.ndevices; i++)
			mig_listener_stop(&m->nbd[i]);
	}
	mig_listener_stop(&m->mf);
	/* Every stream must now end verified: the main one also says the destination QEMU loaded everything. */
	if ((r = gw_session_wait_idle(m->s, 120000)) == 0) {
		gw_dbg("every stream verified after %.1f ms", (double)(gw_now_ns() - m->t0) / 1e6);
		return 0;
	}
	if (cmd_first_failure(m->s, -1, &code, why, sizeof(why)) == 0)
		return mig_fail(m, MR_EXIT_PEER_GONE, "after QEMU completed: %s",
			    r == -ETIMEDOUT ? "streams did not end within 120 s" : "the session failed");
	m->wire_code = code;
	return mig_fail(m, code == WIRE_E_TARGET ? MR_EXIT_QEMU : cmd_exit_for_wire_error(code), "after QEMU completed: %s",
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
		json_object_object_add(ev, "source_tcg_stale_risk", json_object_new_boolean(m->tcg_risk[0] != '\0'));
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
	if (m->tcg_risk[0])
		fprintf(stderr,
			"  the source QEMU %s ran TCG: its dirty tracking may have left pages unsent (see above)\n",
			m->tcg_risk);
}

/* Phase 6, after a failure: ends the mirrors, and takes the guest back if QEMU had handed it over. */
static void migrate_rollback(struct mig *m)
{
	char err[QMP_ERR_MAX], status[32];

	if (!m->q)
		return;
	if (m->mirrors) {
		mig_cancel_mirrors(m);
		mig_drop_nbd_nodes(m);
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
		mig_listener_stop(&m->nbd[i]);
	mig_listener_stop(&m->mf);
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
