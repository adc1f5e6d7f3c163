/* SPDX-License-Identifier: MIT */
/*
 * Destination target qmp:PATH — a QEMU started with -incoming defer.
 * The peer asks only for things from a fixed list (HELLO: multifd channel
 * count, devices to export); everything said to QEMU is built here.
 *
 *   fd mode   stream 0 (MIGRATION): socketpair, getfd, migrate-incoming fd:
 *   the end   the "events" capability; when QEMU closes the main stream,
 *             one query-migrate, then its MIGRATION event if still loading
 *   multifd   multifd capability + channels, migrate-incoming unix:PRIVATE;
 *             MIGRATION streams connect there in OPEN order, main first
 *   postcopy  postcopy-ram capability (HELLO flag), before migrate-incoming
 *   resume    `cont` when the session ends with the client's BYE (HELLO flag);
 *             with post-copy as soon as QEMU is in post-copy (the source's
 *             vCPUs are stopped for good then), as libvirt does
 *   disks     nbd-server-start unix:PRIVATE + block-export-add per device;
 *             NBD streams connect to that socket
 *
 * The QMP socket is opened per operation and closed again, so that other
 * clients of the monitor (libvirt, an operator) are not locked out.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "preflight.h"
#include "qemu.h"
#include "target.h"

enum { TQ_LOAD_WAIT_MS = 30000 }; /* for QEMU to finish loading once it closed its end */

struct qmp_tsess {
	struct gw_target *t;
	pthread_mutex_t lock; /* one QMP conversation at a time */
	char dir[96];         /* private directory for the sockets */
	char mig_sock[128], nbd_sock[128];
	bool multifd, nbd, nbd_started;
	int mig_streams;
	bool loaded;          /* the destination QEMU reported the migration completed */
	bool resumed;         /* cont was sent (under lock) */
	pthread_t pc_thr;     /* post-copy + resume: waits for post-copy to start */
	bool pc_started;
	atomic_bool pc_stop;
	off_t log_off;        /* QEMU's log size at HELLO: its reason is written after it */
};

static int tq_open(struct qmp_tsess *ts, struct qmp **q, char *why, size_t whylen)
{
	char err[QMP_ERR_MAX];
	int r = qmp_open(q, ts->t->path, 10000, err, sizeof(err));

	if (r < 0)
		snprintf(why, whylen, "destination QEMU: %s", err);
	return r;
}

/* Appends the last error lines QEMU wrote to its log since the session started. */
static void log_reason(struct qmp_tsess *ts, char *why, size_t whylen)
{
	char buf[4096], *lines[4] = { 0 };
	int fd, nl = 0;
	ssize_t n;
	size_t len;

	if (!ts->t->log[0])
		return;
	fd = open(ts->t->log, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	{
		off_t end = lseek(fd, 0, SEEK_END), from = ts->log_off;

		if (end - from > (off_t)sizeof(buf) - 1)
			from = end - (off_t)sizeof(buf) + 1;
		n = pread(fd, buf, sizeof(buf) - 1, from);
	}
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (!*l)
			continue;
		if (nl == 4) {
			memmove(lines, lines + 1, sizeof(lines[0]) * 3);
			nl = 3;
		}
		lines[nl++] = l;
	}
	if (!nl)
		return;
	len = strlen(why);
	snprintf(why + len, whylen - len, "; QEMU says:");
	for (int i = 0; i < nl; i++) {
		len = strlen(why);
		snprintf(why + len, whylen - len, " %s", lines[i]);
	}
}

/*
 * How the destination QEMU's load ended, seen on <q>: one query-migrate,
 * then (the load still running after QEMU closed its end) its MIGRATION
 * events (the "events" capability is on since tq_init) until it completed
 * or failed, 30 s at most. Returns 0 when it completed, else -errno with <why>.
 */
static int tq_await_load(struct qmp *q, bool eof, int ioerr, char *why, size_t whylen)
{
	uint64_t until = gw_now_ns() + (uint64_t)TQ_LOAD_WAIT_MS * 1000000;
	struct qemu_mig_info mi;
	char err[QMP_ERR_MAX], status[32];
	int r;

	if (qemu_query_migrate(q, &mi, err, sizeof(err)) < 0) {
		snprintf(why, whylen, "destination QEMU went away during the migration");
		return -EIO;
	}
	snprintf(status, sizeof(status), "%s", mi.status);
	for (;;) {
		uint64_t now = gw_now_ns();

		if (!strcmp(status, "completed"))
			return 0;
		if (!strcmp(status, "failed")) {
			/* the event has no reason; the query does */
			if (strcmp(mi.status, "failed") && qemu_query_migrate(q, &mi, err, sizeof(err)) < 0)
				mi.error[0] = '\0';
			snprintf(why, whylen, "destination QEMU failed to load the migration%s%s", mi.error[0] ? ": " : "",
				 mi.error);
			return -EIO;
		}
		if (!eof) {
			snprintf(why, whylen, "destination QEMU stopped taking the migration stream (%s, status %s)",
				 strerror(-ioerr), status);
			return -EIO;
		}
		if (now >= until) {
			snprintf(why, whylen, "destination QEMU closed the migration stream but did not complete the "
					      "migration within %d s (status %s)", TQ_LOAD_WAIT_MS / 1000, status);
			return -ETIMEDOUT;
		}
		r = qemu_wait_migration_event(q, (int)((until - now) / 1000000) + 1, status, sizeof(status));
		if (r == -ETIMEDOUT)
			continue;
		if (r < 0) {
			snprintf(why, whylen, "destination QEMU went away during the migration");
			return -EIO;
		}
		gw_dbg("destination QEMU: migration %s", status);
	}
}

/*
 * check op for the main migration stream: the destination QEMU closed its
 * end (eof) or took no more bytes. Asks QEMU how the load went; QEMU 7.2
 * reports completed before it closes, so one query usually settles it.
 */
static int tq_check(struct gw_stream *st, bool eof, int ioerr, char *why, size_t whylen)
{
	struct qmp_tsess *ts = gw_session_ctx(gw_stream_session(st));
	struct qmp *q = NULL;
	char err[QMP_ERR_MAX];
	int r;

	gw_dbg("destination QEMU %s the migration stream", eof ? "closed" : "stopped taking");
	pthread_mutex_lock(&ts->lock);
	if ((r = qmp_open(&q, ts->t->path, 2000, err, sizeof(err))) < 0)
		snprintf(why, whylen, "destination QEMU went away during the migration (%s)", err);
	else
		r = tq_await_load(q, eof, ioerr, why, whylen);
	qmp_close(q);
	if (r == 0)
		ts->loaded = true;
	pthread_mutex_unlock(&ts->lock);
	if (r == 0) {
		gw_info("destination QEMU loaded the migration");
		return 0;
	}
	log_reason(ts, why, whylen);
	gw_err("%s", why);
	return r;
}

static void tq_sock_close(struct gw_stream *st)
{
	gw_sock_ops.close(st);
}

static int tq_sock_finish(struct gw_stream *st)
{
	return gw_sock_ops.finish(st);
}

static const struct gw_sink_ops tq_main_ops = { .finish = tq_sock_finish, .close = tq_sock_close, .check = tq_check };

static int tq_open_stream(struct gw_session *s, struct gw_stream *st, char *why, size_t whylen)
{
	const struct wire_hello *hello = gw_session_hello(s);
	struct qmp_tsess *ts = gw_session_ctx(s);
	struct qmp *q = NULL;
	char err[QMP_ERR_MAX];
	int fd, r, sv[2];

	if (gw_stream_role(st) == WIRE_ROLE_NBD) {
		if (!ts->nbd) {
			snprintf(why, whylen, "no disks were asked for in this session");
			return -EINVAL;
		}
		fd = net_unix_connect(ts->nbd_sock);
		if (fd < 0) {
			snprintf(why, whylen, "cannot reach the destination QEMU's NBD server: %s", strerror(-fd));
			return fd;
		}
		gw_stream_attach(st, fd, fd, &gw_sock_ops, NULL);
		return 0;
	}
	if (gw_stream_role(st) != WIRE_ROLE_MIGRATION) {
		snprintf(why, whylen, "target %s takes QEMU migration and NBD streams only", ts->t->name);
		return -EINVAL;
	}
	if (ts->multifd) {
		/* QEMU listens since migrate-incoming; channels connect in the source's accept order. */
		if (ts->mig_streams >= (int)hello->multifd + 1) {
			snprintf(why, whylen, "more migration channels than the %u multifd channels + 1 announced",
				 hello->multifd);
			return -EINVAL;
		}
		fd = net_unix_connect(ts->mig_sock);
		if (fd < 0) {
			snprintf(why, whylen, "cannot reach the destination QEMU's migration socket: %s", strerror(-fd));
			return fd;
		}
		net_local_sndbuf(fd);
		gw_stream_attach(st, fd, fd, ts->mig_streams == 0 ? &tq_main_ops : &gw_sock_ops, NULL);
		ts->mig_streams++;
		return 0;
	}
	if (ts->mig_streams) {
		snprintf(why, whylen, "one migration stream only without multifd");
		return -EINVAL;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		snprintf(why, whylen, "socketpair: %s", strerror(errno));
		return r;
	}
	net_local_sndbuf(sv[1]); /* ours: we write the stream */
	pthread_mutex_lock(&ts->lock);
	r = tq_open(ts, &q, why, whylen);
	if (r == 0 && (r = qmp_getfd(q, sv[0], "migrelay-in", err, sizeof(err))) == 0)
		r = qmp_cmdf(q, "migrate-incoming", NULL, err, sizeof(err), "{\"uri\": \"fd:migrelay-in\"}");
	if (r < 0 && q)
		snprintf(why, whylen, "destination QEMU refused the incoming migration: %s", err);
	qmp_close(q);
	pthread_mutex_unlock(&ts->lock);
	close(sv[0]);
	if (r < 0) {
		close(sv[1]);
		return r;
	}
	ts->mig_streams++;
	gw_stream_attach(st, sv[1], sv[1], &tq_main_ops, NULL);
	gw_info("session %016llx: destination QEMU is receiving (fd migration)", (unsigned long long)gw_session_id(s));
	return 0;
}

/*
 * The guest runs here only once the client has verified every stream and
 * said BYE: a session that fails on the way must never leave the guest
 * running on both hosts (PROTOCOL.md §4.1, WIRE_HELLO_F_RESUME). Called
 * when the session is freed, all its threads gone.
 */
static void tq_resume(struct gw_session *s, struct qmp_tsess *ts)
{
	const struct wire_hello *hello = gw_session_hello(s);
	struct gw_outcome o;
	struct qmp *q = NULL;
	char why[256], err[QMP_ERR_MAX];

	if (!(hello->flags & WIRE_HELLO_F_RESUME) || !ts->loaded || ts->resumed)
		return;
	gw_session_outcome(s, &o);
	if (!o.ok || !o.bye) {
		gw_warn("session %016llx: the guest stays paused on the destination QEMU: the migration was loaded but "
			"the client did not confirm it (%s); resume it with QMP cont once the source is known to be stopped",
			(unsigned long long)gw_session_id(s), o.ok ? "no BYE" : "the session failed");
		return;
	}
	if (tq_open(ts, &q, why, sizeof(why)) < 0 || qmp_cmd(q, "cont", NULL, NULL, err, sizeof(err)) < 0)
		gw_err("session %016llx: could not resume the guest on the destination QEMU: %s; it is paused there",
		       (unsigned long long)gw_session_id(s), q ? err : why);
	else
		gw_info("session %016llx: resumed the guest on the destination QEMU", (unsigned long long)gw_session_id(s));
	qmp_close(q);
}

/*
 * Post-copy with resume: the guest must run here as soon as QEMU switches
 * (it stays paused on the source from then on), not when the session ends.
 * Looks at QEMU every 200 ms, one short QMP conversation at a time, until
 * post-copy starts (then cont), the migration ends, or the session goes.
 */
static void *tq_postcopy_main(void *arg)
{
	struct gw_session *s = arg;
	struct qmp_tsess *ts = gw_session_ctx(s);

	while (!atomic_load(&ts->pc_stop)) {
		struct qemu_mig_info mi;
		struct qmp *q = NULL;
		char err[QMP_ERR_MAX];
		bool done = false;

		usleep(200000);
		pthread_mutex_lock(&ts->lock);
		if (qmp_open(&q, ts->t->path, 2000, err, sizeof(err)) == 0 &&
		    qemu_query_migrate(q, &mi, err, sizeof(err)) == 0) {
			if (!strcmp(mi.status, "postcopy-active")) {
				done = true;
				if (qmp_cmd(q, "cont", NULL, NULL, err, sizeof(err)) < 0) {
					gw_err("session %016llx: could not resume the guest at the switch to post-copy: %s",
					       (unsigned long long)gw_session_id(s), err);
				} else {
					ts->resumed = true;
					gw_info("session %016llx: resumed the guest on the destination QEMU at the switch to "
						"post-copy",
						(unsigned long long)gw_session_id(s));
				}
			} else if (qemu_mig_terminal(mi.status)) {
				done = true;
			}
		}
		qmp_close(q);
		pthread_mutex_unlock(&ts->lock);
		if (done)
			break;
	}
	return NULL;
}

static void tq_free(struct gw_session *s)
{
	struct qmp_tsess *ts = gw_session_ctx(s);
	struct qmp *q = NULL;
	char why[256], err[QMP_ERR_MAX];

	if (!ts)
		return;
	if (ts->pc_started) {
		atomic_store(&ts->pc_stop, true);
		pthread_join(ts->pc_thr, NULL);
	}
	if (ts->nbd_started) {
		pthread_mutex_lock(&ts->lock);
		if (tq_open(ts, &q, why, sizeof(why)) == 0 &&
		    qmp_cmd(q, "nbd-server-stop", NULL, NULL, err, sizeof(err)) < 0)
			gw_warn("nbd-server-stop: %s", err);
		qmp_close(q);
		pthread_mutex_unlock(&ts->lock);
	}
	/* after the NBD server is gone, as libvirt does: nothing but the guest writes to its disks then */
	tq_resume(s, ts);
	if (ts->mig_sock[0])
		unlink(ts->mig_sock);
	if (ts->nbd_sock[0])
		unlink(ts->nbd_sock);
	if (ts->dir[0])
		rmdir(ts->dir);
	pthread_mutex_destroy(&ts->lock);
	free(ts);
}

/*
 * Pre-flight (PROTOCOL.md §4.1, revision 1.2): this QEMU's facts against
 * the source's. Returns 0, or -EMEDIUMTYPE (a difference) or -errno with
 * <why> naming it.
 */
static int tq_preflight(struct gw_session *s, struct qmp *q, char *why, size_t whylen)
{
	const struct wire_preflight *src = &gw_session_hello(s)->pf;
	struct gw_qemu_facts *f = malloc(sizeof(*f));
	char err[QMP_ERR_MAX];
	int r;

	if (!f)
		return -ENOMEM;
	if ((r = gw_qemu_facts(q, f, err, sizeof(err))) < 0)
		snprintf(why, whylen, "destination QEMU: %s", err);
	else if ((r = gw_preflight_compare(src, f, why, whylen)) == 0)
		gw_info("session %016llx: pre-flight: the destination QEMU matches the source's (%s%s%s%s, %u CPU "
			"features, %u RAM blocks)",
			(unsigned long long)gw_session_id(s), (f->pf.have & WIRE_PF_MACHINE) ? f->pf.machine : "",
			(f->pf.have & WIRE_PF_MACHINE) ? ", " : "", (f->pf.have & WIRE_PF_CPU_MODEL) ? f->pf.cpu_model : "",
			(f->pf.have & WIRE_PF_CPU_MODEL) ? " CPU" : "", src->nfeatures, src->nblocks);
	free(f);
	return r;
}

static int tq_init(struct gw_session *s, struct gw_target *t, char *why, size_t whylen)
{
	const struct wire_hello *hello = gw_session_hello(s);
	struct qmp_tsess *ts = calloc(1, sizeof(*ts));
	struct qmp *q = NULL;
	char st[32], err[QMP_ERR_MAX];
	struct stat sb;
	int r;

	if (!ts)
		return -ENOMEM;
	ts->t = t;
	pthread_mutex_init(&ts->lock, NULL);
	gw_session_set_target_ops(s, tq_open_stream, ts, tq_free);
	if (t->log[0] && stat(t->log, &sb) == 0)
		ts->log_off = sb.st_size;
	if ((r = tq_open(ts, &q, why, whylen)) < 0)
		return r;
	if ((r = qemu_query_status(q, st, sizeof(st), err, sizeof(err))) < 0) {
		snprintf(why, whylen, "destination QEMU: %s", err);
		goto out;
	}
	if (strcmp(st, "inmigrate")) {
		snprintf(why, whylen, "destination QEMU is %s, not waiting for a migration (start it with -incoming defer)",
			 st);
		r = -EBUSY;
		goto out;
	}
	/* Only queries: a refusal leaves the QEMU as it was (PROTOCOL.md §2.2). */
	if (hello->pf.have && (r = tq_preflight(s, q, why, whylen)) < 0)
		goto out;
	/* A MIGRATION event at each status change: the end of the load is learnt from it (tq_await_load). */
	if ((r = qemu_enable_migration_events(q, err, sizeof(err))) < 0) {
		snprintf(why, whylen, "destination QEMU refused the migration events capability: %s", err);
		goto out;
	}
	if ((r = net_private_dir(ts->dir, sizeof(ts->dir), "migrelay-dst")) < 0) {
		ts->dir[0] = '\0';
		snprintf(why, whylen, "cannot create a private directory: %s", strerror(-r));
		goto out;
	}
	if (hello->ndevices) {
		snprintf(ts->nbd_sock, sizeof(ts->nbd_sock), "%s/nbd.sock", ts->dir);
		r = qmp_cmdf(q, "nbd-server-start", NULL, err, sizeof(err),
			     "{\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"%s\"}}}", ts->nbd_sock);
		if (r < 0) {
			snprintf(why, whylen, "destination QEMU refused to start its NBD server: %s", err);
			goto out;
		}
		ts->nbd_started = true;
		ts->nbd = true;
		for (int i = 0; i < hello->ndevices; i++) {
			/* Device names passed wire_name_ok: no quotes or backslashes to escape. */
			r = qmp_cmdf(q, "block-export-add", NULL, err, sizeof(err),
				     "{\"type\": \"nbd\", \"id\": \"migrelay-%s\", \"node-name\": \"%s\", "
				     "\"name\": \"%s\", \"writable\": true}",
				     hello->devices[i], hello->devices[i], hello->devices[i]);
			if (r < 0) {
				snprintf(why, whylen, "destination QEMU cannot export disk %s: %s", hello->devices[i],
					 err);
				goto out;
			}
		}
	}
	if (hello->flags & WIRE_HELLO_F_POSTCOPY) {
		/* Both QEMUs must agree before the stream starts; page requests use its return path. */
		r = qmp_cmdf(q, "migrate-set-capabilities", NULL, err, sizeof(err),
			     "{\"capabilities\": [{\"capability\": \"postcopy-ram\", \"state\": true}]}");
		if (r < 0) {
			snprintf(why, whylen, "destination QEMU refused post-copy (postcopy-ram): %s", err);
			goto out;
		}
		gw_info("session %016llx: destination QEMU has postcopy-ram enabled", (unsigned long long)gw_session_id(s));
	}
	if (hello->multifd) {
		snprintf(ts->mig_sock, sizeof(ts->mig_sock), "%s/migrate.sock", ts->dir);
		r = qmp_cmdf(q, "migrate-set-capabilities", NULL, err, sizeof(err),
			     "{\"capabilities\": [{\"capability\": \"multifd\", \"state\": true}]}");
		if (r == 0)
			r = qmp_cmdf(q, "migrate-set-parameters", NULL, err, sizeof(err), "{\"multifd-channels\": %u}",
				     hello->multifd);
		if (r == 0)
			r = qmp_cmdf(q, "migrate-incoming", NULL, err, sizeof(err), "{\"uri\": \"unix:%s\"}",
				     ts->mig_sock);
		if (r < 0) {
			snprintf(why, whylen, "destination QEMU refused multifd: %s", err);
			goto out;
		}
		ts->multifd = true;
	}
	r = 0;
out:
	qmp_close(q); /* first: QEMU's monitor takes one client at a time, and the thread below is one */
	if (r == 0 && (hello->flags & (WIRE_HELLO_F_POSTCOPY | WIRE_HELLO_F_RESUME)) ==
			  (WIRE_HELLO_F_POSTCOPY | WIRE_HELLO_F_RESUME)) {
		if (pthread_create(&ts->pc_thr, NULL, tq_postcopy_main, s) != 0) {
			snprintf(why, whylen, "cannot start a thread to resume the guest at the switch to post-copy");
			return -EAGAIN;
		}
		ts->pc_started = true;
	}
	return r;
}

int gw_target_session_init(struct gw_session *s, struct gw_target *t, char *why, size_t whylen)
{
	if (t->kind == GW_TGT_QMP)
		return tq_init(s, t, why, whylen);
	gw_session_set_target_ops(s, gw_target_open, t, NULL);
	return 0;
}
