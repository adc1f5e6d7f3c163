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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "cmd_connect.h"
#include "cmds.h"
#include "exitcodes.h"
#include "log.h"
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
	"      --bandwidth RATE      cap QEMU's migration bandwidth (bytes/s; K, M, G suffixes);\n"
	"                            default: no cap (QEMU's own default of ~128 MiB/s is lifted)\n"
	"      --downtime MS         the most downtime QEMU may take to finish (default QEMU's, 300)\n"
	"      --multifd N           N multifd channels (1-16), each a stream of the session\n"
	"      --copy-storage DEV    mirror disk DEV (drive or node name) to the destination's\n"
	"                            disk of the same name first; repeatable. The destination\n"
	"                            image must exist with the right size, and the destination\n"
	"                            QEMU should be started with -S (resume it afterwards).\n"
	"      --timeout SECONDS     give up (and cancel) after this long (default: none)\n"
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

struct mig {
	struct gw_client_opts o;
	const char *qmp_path;
	uint64_t bandwidth;
	int downtime_ms;
	int timeout_s;
	struct qmp *q;
	struct gw_session *s;
	char dir[96];
	struct listener mf, nbd[WIRE_MAX_DEVICES];
	int main_id;
	int nbd_nodes; /* NBD client nodes added so far */
	char err[QMP_ERR_MAX];
};

static void progress_line(struct mig *m, const struct qemu_mig_info *mi, double secs, bool tty)
{
	struct gw_stats st;
	char a[32], b[32], c[32];
	double rate;

	gw_session_stats(m->s, &st);
	rate = secs > 0 ? (double)st.raw_out / secs : 0;
	if (m->o.json) {
		printf("{\"event\":\"progress\",\"seconds\":%.1f,\"status\":\"%s\",\"transferred\":%" PRIu64
		       ",\"remaining\":%" PRIu64 ",\"total\":%" PRIu64 ",\"dirty_pages_rate\":%" PRIu64
		       ",\"pass\":%" PRIu64 ",\"stream_bytes\":%" PRIu64 ",\"wire_bytes\":%" PRIu64
		       ",\"rate_bps\":%.0f,\"connections\":%d}\n",
		       secs, mi->status, mi->transferred, mi->remaining, mi->total, mi->dirty_rate, mi->passes, st.raw_out,
		       st.wire_out, rate, st.live_conns);
		fflush(stdout);
		return;
	}
	fprintf(stderr, "%s%6.1fs %-9s sent %s  %s/s  remaining %s  dirty %" PRIu64 " pages/s  pass %" PRIu64 "%s",
		tty ? "\r" : "", secs, mi->status, gw_fmt_bytes(mi->transferred, a, sizeof(a)),
		gw_fmt_bytes((uint64_t)rate, b, sizeof(b)), gw_fmt_bytes(mi->remaining, c, sizeof(c)), mi->dirty_rate,
		mi->passes, tty ? "   " : "\n");
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

int cmd_migrate(int argc, char **argv)
{
	struct mig m;
	struct qemu_mig_info mi = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };
	char status[32];
	int c, r, rc = MR_EXIT_FAIL, sv[2] = { -1, -1 };
	uint64_t t0;
	long rss0 = 0, rss = 0, peak = 0;
	bool tty = isatty(STDERR_FILENO), completed = false, mirrors = false;

	gw_log_set_prefix("migrelay migrate");
	memset(&m, 0, sizeof(m));
	gw_client_opts_init(&m.o);
	m.downtime_ms = -1;
	m.main_id = -1;
	{
		enum { O_BW = 0x2000, O_DT, O_MF, O_CS, O_TO };
		static const struct option extra[] = {
			{ "qmp", required_argument, NULL, 'q' },	    { "bandwidth", required_argument, NULL, O_BW },
			{ "downtime", required_argument, NULL, O_DT },	    { "multifd", required_argument, NULL, O_MF },
			{ "copy-storage", required_argument, NULL, O_CS }, { "timeout", required_argument, NULL, O_TO },
			{ NULL, 0, NULL, 0 },
		};
		struct option lo[GW_LONGOPTS_MAX];

		gw_client_longopts_with(lo, extra);
		while ((c = getopt_long(argc, argv, GW_CLIENT_OPTSTRING "q:h", lo, NULL)) != -1) {
			long v;

			switch (c) {
			case 'h':
				printf("%s%s", migrate_usage, gw_client_usage);
				return MR_EXIT_OK;
			case 'q':
				m.qmp_path = optarg;
				continue;
			case O_BW:
				if (gw_parse_bytes(optarg, &m.bandwidth) < 0) {
					fprintf(stderr, "migrelay migrate: --bandwidth takes bytes/s such as 500M, not \"%.40s\"\n",
						optarg);
					return MR_EXIT_USAGE;
				}
				continue;
			case O_DT:
			case O_MF:
			case O_TO:
				v = strtol(optarg, NULL, 10);
				if (c == O_DT && v >= 1 && v <= 2000000)
					m.downtime_ms = (int)v;
				else if (c == O_MF && v >= 1 && v <= 16)
					m.o.multifd = (uint8_t)v;
				else if (c == O_TO && v >= 1)
					m.timeout_s = (int)v;
				else {
					fprintf(stderr, "migrelay migrate: bad value \"%.40s\" (--downtime 1-2000000 ms, --multifd 1-16, --timeout >= 1 s)\n",
						optarg);
					return MR_EXIT_USAGE;
				}
				continue;
			case O_CS:
				if (m.o.ndevices >= WIRE_MAX_DEVICES || !wire_name_ok(optarg, strlen(optarg))) {
					fprintf(stderr, "migrelay migrate: --copy-storage \"%.40s\": at most %d devices, names of A-Z a-z 0-9 . _ -\n",
						optarg, WIRE_MAX_DEVICES);
					return MR_EXIT_USAGE;
				}
				m.o.devices[m.o.ndevices++] = optarg;
				continue;
			}
			r = gw_client_opt(&m.o, c, optarg);
			if (r < 0)
				return MR_EXIT_USAGE;
			if (r == 0) {
				fprintf(stderr, "%s%s", migrate_usage, gw_client_usage);
				return MR_EXIT_USAGE;
			}
		}
	}
	if (optind < argc) {
		fprintf(stderr, "migrelay migrate: unexpected argument \"%.80s\"\n", argv[optind]);
		return MR_EXIT_USAGE;
	}
	if (!m.qmp_path) {
		fprintf(stderr, "migrelay migrate: --qmp SRC_QMP_SOCKET is required (the source QEMU's -qmp unix: socket)\n");
		return MR_EXIT_USAGE;
	}
	if (gw_client_opts_check(&m.o) < 0)
		return MR_EXIT_USAGE;
	signal(SIGPIPE, SIG_IGN);
	t0 = gw_now_ns();

	if ((r = qmp_open(&m.q, m.qmp_path, 10000, m.err, sizeof(m.err))) < 0) {
		fprintf(stderr, "migrelay migrate: source QEMU: %s\n", m.err);
		return MR_EXIT_QEMU;
	}
	if (qemu_query_status(m.q, status, sizeof(status), m.err, sizeof(m.err)) < 0 ||
	    qemu_query_migrate(m.q, &mi, m.err, sizeof(m.err)) < 0) {
		fprintf(stderr, "migrelay migrate: source QEMU: %s\n", m.err);
		rc = MR_EXIT_QEMU;
		goto out;
	}
	if (!strcmp(mi.status, "active") || !strcmp(mi.status, "setup")) {
		fprintf(stderr, "migrelay migrate: the source QEMU is already migrating (status %s)\n", mi.status);
		rc = MR_EXIT_QEMU;
		goto out;
	}
	if (!strcmp(status, "inmigrate") || !strcmp(status, "postmigrate")) {
		fprintf(stderr, "migrelay migrate: the source QEMU is %s; it has no guest to send\n", status);
		rc = MR_EXIT_QEMU;
		goto out;
	}

	if ((rc = cmd_connect(&m.o, &m.s)) != 0)
		goto out;
	gw_proc_mem(0, &rss0, &peak);
	rc = MR_EXIT_FAIL;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if ((r = net_private_dir(m.dir, sizeof(m.dir), "migrelay-src")) < 0) {
		fprintf(stderr, "migrelay migrate: cannot create a private directory for sockets: %s (see MIGRELAY_SOCKET_DIR)\n",
			strerror(-r));
		m.dir[0] = '\0';
		goto out;
	}

	if (m.o.ndevices) {
		if (!m.o.quiet && !m.o.json)
			fprintf(stderr, "migrelay migrate: mirroring %d disk(s) first\n", m.o.ndevices);
		mirrors = true;
		if ((r = start_mirrors(&m)) < 0) {
			fprintf(stderr, "migrelay migrate: disk mirror failed: %s\n",
				r == -ECANCELED ? "cancelled" : m.err);
			rc = r == -ECANCELED ? MR_EXIT_CANCELLED : MR_EXIT_QEMU;
			goto out;
		}
	}

	/* Parameters: lift QEMU's ~128 MiB/s default unless the user capped it. */
	r = qmp_cmdf(m.q, "migrate-set-parameters", NULL, m.err, sizeof(m.err), "{\"max-bandwidth\": %" PRIu64 "}",
		     m.bandwidth ? m.bandwidth : (uint64_t)1 << 40);
	if (r == 0 && m.downtime_ms > 0)
		r = qmp_cmdf(m.q, "migrate-set-parameters", NULL, m.err, sizeof(m.err), "{\"downtime-limit\": %d}",
			     m.downtime_ms);
	if (r == 0)
		r = qmp_cmdf(m.q, "migrate-set-capabilities", NULL, m.err, sizeof(m.err),
			     "{\"capabilities\": [{\"capability\": \"multifd\", \"state\": %s}]}",
			     m.o.multifd ? "true" : "false");
	if (r == 0 && m.o.multifd)
		r = qmp_cmdf(m.q, "migrate-set-parameters", NULL, m.err, sizeof(m.err), "{\"multifd-channels\": %u}",
			     m.o.multifd);
	if (r < 0) {
		fprintf(stderr, "migrelay migrate: source QEMU refused the migration parameters: %s\n", m.err);
		rc = MR_EXIT_QEMU;
		goto out;
	}

	if (m.o.multifd) {
		char path[128];

		snprintf(path, sizeof(path), "%s/migrate.sock", m.dir);
		if ((r = listener_start(&m.mf, m.s, path, WIRE_ROLE_MIGRATION, m.o.multifd + 1)) < 0) {
			fprintf(stderr, "migrelay migrate: cannot listen on %s: %s\n", path, strerror(-r));
			goto out;
		}
		r = qmp_cmdf(m.q, "migrate", NULL, m.err, sizeof(m.err), "{\"uri\": \"unix:%s\"}", path);
	} else {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			fprintf(stderr, "migrelay migrate: socketpair: %s\n", strerror(errno));
			goto out;
		}
		r = qmp_getfd(m.q, sv[0], "migrelay-out", m.err, sizeof(m.err));
		close(sv[0]);
		sv[0] = -1;
		if (r == 0) {
			m.main_id = gw_stream_open(m.s, WIRE_ROLE_MIGRATION, sv[1], sv[1], &gw_sock_ops, NULL);
			if (m.main_id < 0) {
				fprintf(stderr, "migrelay migrate: cannot open the stream: %s\n", strerror(-m.main_id));
				close(sv[1]);
				sv[1] = -1;
				goto out;
			}
			sv[1] = -1; /* the stream owns it */
			r = qmp_cmdf(m.q, "migrate", NULL, m.err, sizeof(m.err), "{\"uri\": \"fd:migrelay-out\"}");
		}
	}
	if (r < 0) {
		fprintf(stderr, "migrelay migrate: source QEMU refused to migrate: %s\n", m.err);
		rc = MR_EXIT_QEMU;
		goto out;
	}

	/* Follow QEMU until it is done, and the session until every stream is verified. */
	for (int tick = 0;; tick++) {
		static double last_print;

		double secs = (double)(gw_now_ns() - t0) / 1e9;
		int serr;

		if (cancel_flag || (m.timeout_s && secs > m.timeout_s)) {
			char err[QMP_ERR_MAX];

			if (qmp_cmd(m.q, "migrate_cancel", NULL, NULL, err, sizeof(err)) < 0)
				gw_warn("migrate_cancel: %s", err);
			if (tty && !m.o.json && !m.o.quiet)
				fputc('\n', stderr);
			fprintf(stderr, "migrelay migrate: %s; migration cancelled, the guest keeps running here\n",
				cancel_flag ? "interrupted" : "timeout");
			rc = MR_EXIT_CANCELLED;
			goto out;
		}
		if (qemu_query_migrate(m.q, &mi, m.err, sizeof(m.err)) < 0) {
			fprintf(stderr, "\nmigrelay migrate: source QEMU: %s\n", m.err);
			rc = MR_EXIT_QEMU;
			goto out;
		}
		pthread_mutex_lock(&m.s->lock);
		serr = m.s->err_code;
		if (!serr)
			for (int i = 0; i < m.s->nstreams; i++)
				if (m.s->streams[i] && m.s->streams[i]->fail_code) {
					serr = m.s->streams[i]->fail_code;
					snprintf(m.err, sizeof(m.err), "%s", m.s->streams[i]->fail_text);
					break;
				}
		if (serr && !m.err[0])
			snprintf(m.err, sizeof(m.err), "%s", m.s->err_text);
		pthread_mutex_unlock(&m.s->lock);
		if (!m.o.quiet && (secs - last_print >= 1.0 || qemu_mig_terminal(mi.status) || tick == 0)) {
			progress_line(&m, &mi, secs, tty);
			last_print = secs;
		}
		if (serr) {
			char err[QMP_ERR_MAX];

			if (tty && !m.o.json && !m.o.quiet)
				fputc('\n', stderr);
			fprintf(stderr, "migrelay migrate: FAILED: %s\n", m.err);
			if (!qemu_mig_terminal(mi.status) && qmp_cmd(m.q, "migrate_cancel", NULL, NULL, err, sizeof(err)) < 0)
				gw_warn("migrate_cancel: %s", err);
			rc = serr == WIRE_E_TARGET ? MR_EXIT_QEMU : gw_exit_for_wire_error(serr);
			goto out;
		}
		if (!strcmp(mi.status, "failed") || !strcmp(mi.status, "cancelled")) {
			if (tty && !m.o.json && !m.o.quiet)
				fputc('\n', stderr);
			fprintf(stderr, "migrelay migrate: source QEMU: migration %s%s%s; the guest keeps running here\n",
				mi.status, mi.error[0] ? ": " : "", mi.error);
			rc = MR_EXIT_QEMU;
			goto out;
		}
		if (!strcmp(mi.status, "pre-switchover")) {
			/* The vCPUs are stopped: the mirrors are final; end them before the switch-over, as libvirt does. */
			cancel_mirrors(&m);
			if (qmp_cmdf(m.q, "migrate-continue", NULL, m.err, sizeof(m.err),
				     "{\"state\": \"pre-switchover\"}") < 0) {
				fprintf(stderr, "migrelay migrate: source QEMU refused to continue: %s\n", m.err);
				rc = MR_EXIT_QEMU;
				goto out;
			}
			continue;
		}
		if (!strcmp(mi.status, "completed"))
			break;
		usleep(mirrors ? 50000 : 250000);
	}
	completed = true;
	if (tty && !m.o.json && !m.o.quiet)
		fputc('\n', stderr);

	if (mirrors) {
		drop_nbd_nodes(&m);
		for (int i = 0; i < m.o.ndevices; i++)
			listener_stop(&m.nbd[i]);
	}
	listener_stop(&m.mf);
	/* Every stream must now end verified: the main one also says the destination QEMU loaded everything. */
	r = gw_session_wait_idle(m.s, 120000);
	if (r != 0) {
		pthread_mutex_lock(&m.s->lock);
		for (int i = 0; i < m.s->nstreams; i++)
			if (m.s->streams[i] && m.s->streams[i]->fail_code) {
				snprintf(m.err, sizeof(m.err), "%s", m.s->streams[i]->fail_text);
				r = m.s->streams[i]->fail_code;
				break;
			}
		if (!m.err[0])
			snprintf(m.err, sizeof(m.err), "%s", r == -ETIMEDOUT ? "streams did not end within 120 s" : m.s->err_text);
		pthread_mutex_unlock(&m.s->lock);
		fprintf(stderr, "migrelay migrate: FAILED after QEMU completed: %s\n", m.err);
		rc = r == WIRE_E_TARGET ? MR_EXIT_QEMU : r > 0 ? gw_exit_for_wire_error(r) : MR_EXIT_PEER_GONE;
		goto out;
	}
	{
		struct gw_stats st;
		double secs = (double)(gw_now_ns() - t0) / 1e9;
		double ratio;

		gw_session_stats(m.s, &st);
		gw_proc_mem(0, &rss, &peak);
		ratio = st.wire_out ? (double)st.raw_out / (double)st.wire_out : 1.0;
		if (m.o.json)
			printf("{\"event\":\"report\",\"status\":\"completed\",\"seconds\":%.3f,\"qemu_total_time_ms\":%" PRIu64
			       ",\"downtime_ms\":%" PRIu64 ",\"stream_bytes\":%" PRIu64 ",\"wire_bytes\":%" PRIu64
			       ",\"compression_ratio\":%.3f,\"connections\":%d,\"multifd\":%u,\"disks\":%d,"
			       "\"rss_start_kib\":%ld,\"rss_peak_kib\":%ld,\"verified\":true,\"insecure_plaintext\":%s}\n",
			       secs, mi.total_time, mi.downtime, st.raw_out, st.wire_out, ratio, m.o.connections,
			       m.o.multifd, m.o.ndevices, rss0, peak, m.o.plaintext ? "true" : "false");
		else {
			char a[32], b[32];

			fprintf(stderr,
				"migrelay migrate: completed and verified in %.2f s (QEMU total %" PRIu64 " ms, downtime %" PRIu64
				" ms)\n  QEMU produced %s, %s on the wire (ratio %.2f), %.1f MiB/s, %d connection(s)%s%s\n",
				secs, mi.total_time, mi.downtime, gw_fmt_bytes(st.raw_out, a, sizeof(a)),
				gw_fmt_bytes(st.wire_out, b, sizeof(b)), ratio,
				secs > 0 ? (double)st.raw_out / secs / 1048576.0 : 0.0, m.o.connections,
				m.o.multifd ? ", multifd" : "", m.o.ndevices ? ", disks mirrored" : "");
			fprintf(stderr, "  gateway memory: %.1f MiB at the start, peak %.1f MiB\n", (double)rss0 / 1024.0,
				(double)peak / 1024.0);
			if (m.o.plaintext)
				fprintf(stderr,
					"  INSECURE PLAINTEXT: the migration travelled unencrypted and unauthenticated after the TLS handshake (--insecure-plaintext)\n");
		}
	}
	rc = MR_EXIT_OK;
out:
	if (rc != MR_EXIT_OK && m.q) {
		char err[QMP_ERR_MAX];

		if (mirrors) {
			cancel_mirrors(&m);
			drop_nbd_nodes(&m);
			if (qmp_cmdf(m.q, "migrate-set-capabilities", NULL, err, sizeof(err),
				     "{\"capabilities\": [{\"capability\": \"pause-before-switchover\", \"state\": false}]}") < 0)
				gw_dbg("pause-before-switchover off: %s", err);
		}
		/* If QEMU had already handed the guest over, take it back: the destination did not make it. */
		if (completed && qemu_query_status(m.q, status, sizeof(status), err, sizeof(err)) == 0 &&
		    strcmp(status, "running")) {
			if (qmp_cmd(m.q, "cont", NULL, NULL, err, sizeof(err)) == 0)
				fprintf(stderr, "migrelay migrate: resumed the guest on the source\n");
			else
				fprintf(stderr, "migrelay migrate: could not resume the guest on the source: %s\n", err);
		}
	}
	for (int i = 0; i < m.o.ndevices; i++)
		listener_stop(&m.nbd[i]);
	listener_stop(&m.mf);
	if (m.s) {
		if (rc == MR_EXIT_OK)
			gw_session_bye(m.s);
		gw_session_close(m.s);
	}
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	qmp_close(m.q);
	if (m.dir[0]) {
		char path[160];

		snprintf(path, sizeof(path), "%s/migrate.sock", m.dir);
		unlink(path);
		for (int i = 0; i < m.o.ndevices; i++) {
			snprintf(path, sizeof(path), "%s/nbd-%d.sock", m.dir, i);
			unlink(path);
		}
		rmdir(m.dir);
	}
	if (rc != MR_EXIT_OK && m.o.json)
		printf("{\"event\":\"report\",\"status\":\"failed\",\"exit\":%d}\n", rc);
	return rc;
}
