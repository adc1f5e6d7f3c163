/* SPDX-License-Identifier: MIT */
/*
 * `migrelay forward`: listens on one or more unix sockets, each mapped to a
 * target; every accepted connection becomes one full-duplex stream to that
 * target, opened at the destination in accept order (PROTOCOL.md §5.1).
 * This is what QEMU multifd, NBD and libvirt's --migrateuri/--disks-uri
 * unix:// connect to.
 *
 * A forward is a long-lived service. A session has WIRE_MAX_STREAMS stream
 * ids and the server's --max-streams open at once; when one is used up
 * (or the session fails), the path rolls over: a new session takes the new
 * connections and the old one retires, closed only once every stream it
 * carries has ended. No open stream is ever cut by a rollover. Before the
 * first stream goes to the new session, the destination must have connected
 * the path's previous stream to its target (its OPENED, PROTOCOL.md §5.1:
 * gw_fwd_stream_get's "opened"), or that stream must have ended, so
 * destination connections are in accept order across sessions (QEMU needs
 * the main channel first). Meanwhile the path holds the connection that
 * waits and accepts no other, which wait in the socket's backlog in order;
 * the other paths go on. With a server that does not acknowledge OPENs
 * (revision 1.1), the wait is for some sign of the previous stream, 5 s
 * at most, and the order is best effort.
 *
 * Everything here runs in the main thread; the sessions' own threads are
 * reached only through session.h and forward.h.
 */
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "cmd_common.h"
#include "cmds.h"
#include "exitcodes.h"
#include "forward.h"
#include "log.h"
#include "net.h"
#include "target.h"

enum {
	FWD_MAX_PATHS = 32,  /* --listen options per forward */
	FWD_TICK_MS = 250,   /* outcome and retirement sweep period */
	FWD_GATE_MS = 5,     /* poll period while a path waits for its previous stream's OPENED */
	FWD_ORDER_MS = 5000, /* without OPENED: wait for a sign of the previous stream's OPEN, at most this long */
	FWD_STOP_MS = 30000, /* open streams may finish this long after SIGINT/SIGTERM */
	O_SOCK_MODE = 0x2000,
	O_SOCK_GROUP = 0x2001,
};
_Static_assert(WIRE_MAX_STREAMS <= 64, "fwd_sess.logged holds one bit per stream id");

static const char forward_usage[] =
    "Usage: migrelay forward --listen unix:PATH[=TARGET] ... --to HOST:PORT [--target NAME] [options]\n"
    "\n"
    "Listens on each unix socket PATH. Each connection accepted there becomes one\n"
    "full-duplex stream to TARGET (or --target NAME) of the gateway at HOST:PORT;\n"
    "the destination connects the streams of one PATH in the order they were\n"
    "accepted here. Runs until SIGINT or SIGTERM, then lets open streams finish\n"
    "(30 s at most). A session whose stream ids or --max-streams are used up is\n"
    "closed only once its streams have ended; a new session takes new connections.\n"
    "\n"
    "  -l, --listen unix:PATH[=TARGET]  a socket to create; repeat for more paths\n"
    "                            (up to 32), each to its own target\n"
    "      --socket-mode MODE    permissions of the sockets, octal (default 0600,\n"
    "                            whatever the umask)\n"
    "      --socket-group GROUP  group of the sockets (e.g. QEMU's, with 0660)\n"
    "  -h, --help                this text\n"
    "\n";

struct fwd_sess;

struct fwd_path {
	char path[108];
	const char *target;
	int lfd;
	struct fwd_sess *cur;  /* takes new connections; NULL until one comes */
	struct fwd_sess *last; /* holds the path's last stream opened, id last_id */
	int last_id;
	unsigned long accepted;
	/*
	 * The connection that waits to be the first stream of session cur
	 * until last_id is connected at the destination (-1: none); while it
	 * waits the path accepts nothing more. <held_no> its number, <gate_t0>
	 * when cur was set up.
	 */
	int held_fd;
	unsigned long held_no;
	uint64_t gate_t0;
	/* the migration in progress: streams of this path open at the same time */
	unsigned mig_no;
	int mig_streams, mig_open, mig_failed;
	uint64_t mig_out, mig_in, mig_t0;
	char mig_why[WIRE_MAX_ERROR_TEXT + 32];
};

/* One client session of a path, current or retiring. */
struct fwd_sess {
	struct fwd_sess *next;
	struct gw_session *s;
	struct fwd_path *p;
	int nids;	 /* stream ids opened */
	int open;	 /* streams whose outcome is not logged yet */
	uint64_t logged; /* one bit per stream id whose outcome was logged */
	bool retiring;
};

struct fwd {
	struct gw_client_opts o;
	struct fwd_path paths[FWD_MAX_PATHS];
	int npaths;
	struct fwd_sess *sessions;
	const char *mode_arg, *group_arg;
	const char *auto_target; /* a mapping's TARGET standing in for --target, which cmd_parse requires */
	mode_t mode;
	gid_t gid;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* --listen unix:PATH[=TARGET]: TARGET is what follows the last '=' when it is a valid target name. */
static int add_path(struct fwd *f, const char *val)
{
	const char *spec = val + 5, *eq;
	struct fwd_path *p;
	size_t plen;

	if (strncmp(val, "unix:", 5) || !*spec) {
		fprintf(stderr, "migrelay forward: --listen takes unix:PATH[=TARGET], not \"%.100s\"\n", val);
		return -EINVAL;
	}
	if (f->npaths == FWD_MAX_PATHS) {
		fprintf(stderr, "migrelay forward: at most %d --listen options\n", FWD_MAX_PATHS);
		return -EINVAL;
	}
	p = &f->paths[f->npaths];
	eq = strrchr(spec, '=');
	if (eq && wire_name_ok(eq + 1, strlen(eq + 1))) {
		p->target = eq + 1;
		plen = (size_t)(eq - spec);
	} else {
		plen = strlen(spec);
	}
	if (!plen || plen >= sizeof(p->path)) {
		fprintf(stderr, "migrelay forward: --listen %.100s: the socket path is empty or too long\n", val);
		return -EINVAL;
	}
	for (int i = 0; i < f->npaths; i++)
		if (strlen(f->paths[i].path) == plen && !strncmp(f->paths[i].path, spec, plen)) {
			fprintf(stderr, "migrelay forward: socket path %.*s given twice\n", (int)plen, spec);
			return -EINVAL;
		}
	memcpy(p->path, spec, plen);
	p->lfd = -1;
	p->held_fd = -1;
	p->last_id = -1;
	/* cmd_parse requires --target: one from a mapping stands in for it */
	if (p->target && !f->o.target)
		f->o.target = f->auto_target = p->target;
	f->npaths++;
	return 1;
}

static int forward_opt(void *arg, int c, const char *val)
{
	struct fwd *f = arg;

	switch (c) {
	case 'l':
		return add_path(f, val);
	case O_SOCK_MODE:
		f->mode_arg = val;
		return 1;
	case O_SOCK_GROUP:
		f->group_arg = val;
		return 1;
	default:
		return 0;
	}
}

/* --socket-mode and --socket-group. Returns 0 or MR_EXIT_USAGE after a message. */
static int parse_socket_opts(struct fwd *f)
{
	f->mode = 0600;
	f->gid = (gid_t)-1;
	if (f->mode_arg) {
		char *end;
		unsigned long m = strtoul(f->mode_arg, &end, 8);

		if (!*f->mode_arg || *end || m > 0777 || (m & 0600) != 0600 || (m & 0111)) {
			fprintf(stderr,
				"migrelay forward: --socket-mode \"%.20s\": an octal mode with read and write for the "
				"owner and no execute bits (0600, 0660, 0666)\n",
				f->mode_arg);
			return MR_EXIT_USAGE;
		}
		f->mode = (mode_t)m;
	}
	if (f->group_arg) {
		const struct group *g = getgrnam(f->group_arg);
		char *end;
		unsigned long n = strtoul(f->group_arg, &end, 10);

		if (g)
			f->gid = g->gr_gid;
		else if (*f->group_arg && !*end && n < (gid_t)-1)
			f->gid = (gid_t)n;
		else {
			fprintf(stderr, "migrelay forward: --socket-group \"%.64s\": no such group\n", f->group_arg);
			return MR_EXIT_USAGE;
		}
	}
	return 0;
}

/*
 * Creates path <p>'s socket with f->mode (0600 by default) whatever the
 * umask: bound under umask 0177 (no window where others may connect), then
 * given its group and mode. Returns 0 or -errno.
 */
static int fwd_listen(const struct fwd *f, struct fwd_path *p)
{
	mode_t old = umask(0177);
	int fd = net_unix_listen(p->path, 64), r = 0;

	umask(old);
	if (fd < 0)
		return fd;
	if ((f->gid != (gid_t)-1 && chown(p->path, (uid_t)-1, f->gid) < 0) ||
	    (f->mode != 0600 && chmod(p->path, f->mode) < 0)) {
		r = -errno;
		close(fd);
		unlink(p->path);
		return r;
	}
	p->lfd = fd;
	return 0;
}

static struct gw_client_opts path_opts(const struct fwd *f, const struct fwd_path *p)
{
	struct gw_client_opts o = f->o;

	o.target = p->target;
	return o;
}

/* Once per process: a server without OPEN acknowledgements keeps the order across sessions only at best. */
static void fwd_note_ack(const struct fwd *f, const struct fwd_sess *fs)
{
	static bool said;

	if (gw_session_cfg_get(fs->s)->open_ack || said)
		return;
	said = true;
	gw_warn("%s: the server at %s does not acknowledge stream opens (a migrelay before protocol revision 1.2); "
		"the destination's connection order across sessions is best effort: upgrade it",
		fs->p->path, f->o.to);
}

/* A new session for <p>, in f->sessions. Returns it, or NULL after logging why. */
static struct fwd_sess *fwd_connect(struct fwd *f, struct fwd_path *p)
{
	struct gw_client_opts o = path_opts(f, p);
	struct gw_connect_fail cf;
	struct fwd_sess *fs = calloc(1, sizeof(*fs));

	if (!fs) {
		gw_err("%s: out of memory", p->path);
		return NULL;
	}
	if (gw_client_connect(&o, &fs->s, &cf) < 0) {
		gw_err("%s: cannot reach %s target %s: %s", p->path, o.to, o.target, cf.text);
		free(fs);
		return NULL;
	}
	fs->p = p;
	fs->next = f->sessions;
	f->sessions = fs;
	fwd_note_ack(f, fs);
	return fs;
}

/* BYE, close and free <fs> (its streams have all ended). */
static void fwd_close(struct fwd *f, struct fwd_sess *fs)
{
	for (struct fwd_sess **pp = &f->sessions; *pp; pp = &(*pp)->next)
		if (*pp == fs) {
			*pp = fs->next;
			break;
		}
	if (fs->p->cur == fs)
		fs->p->cur = NULL;
	if (fs->p->last == fs)
		fs->p->last = NULL;
	gw_session_bye(fs->s);
	gw_session_close(fs->s);
	free(fs);
}

/*
 * May the next connection of <p> be opened in p->cur? Yes within one
 * session (the destination connects its OPENs in order). For the first
 * stream of a new session, once the destination connected the path's
 * previous stream (OPENED) or that stream ended; with a server that does
 * not acknowledge OPENs, once it showed a sign of the previous OPEN or
 * FWD_ORDER_MS passed (best effort, with a warning). Logs why it goes on.
 */
static bool fwd_order_ok(struct fwd_path *p, unsigned long no)
{
	struct gw_fwd_stream i;
	unsigned long long prev, next;

	if (!p->last || p->last == p->cur || p->last_id < 0 || gw_fwd_stream_get(p->last->s, p->last_id, &i) < 0)
		return true;
	prev = (unsigned long long)gw_session_id(p->last->s);
	next = (unsigned long long)gw_session_id(p->cur->s);
	if (gw_session_cfg_get(p->last->s)->open_ack) {
		if (i.opened)
			gw_info("%s: connection %lu opens session %016llx after the destination connected stream %d of "
				"session %016llx",
				p->path, no, next, p->last_id, prev);
		else if (i.done)
			gw_warn("%s: stream %d of session %016llx ended before the destination connected it (%s); "
				"connection %lu opens session %016llx after it",
				p->path, p->last_id, prev, i.why[0] ? i.why : "no reason given", no, next);
		return i.opened || i.done;
	}
	if (i.seen)
		return true;
	if (gw_now_ns() - p->gate_t0 <= (uint64_t)FWD_ORDER_MS * 1000000ull)
		return false;
	gw_warn("%s: the destination shows no sign of stream %d of session %016llx after %d s; opening the next "
		"stream in a new session anyway",
		p->path, p->last_id, prev, FWD_ORDER_MS / 1000);
	return true;
}

/* Retires <p>'s current session: it takes no new streams and closes once its streams have ended. */
static void fwd_rollover(struct fwd_path *p, int why, int max_streams)
{
	struct fwd_sess *fs = p->cur;

	fs->retiring = true;
	p->cur = NULL;
	if (why == -ENOSPC)
		gw_info("%s: session %016llx used all its %d stream ids; new connections go to a new session, this one "
			"closes when its %d open stream(s) end",
			p->path, (unsigned long long)gw_session_id(fs->s), WIRE_MAX_STREAMS, fs->open);
	else if (why == -EMFILE)
		gw_info(
		    "%s: session %016llx has %d streams open, the server's --max-streams; new connections go to a new "
		    "session, this one closes when its streams end",
		    p->path, (unsigned long long)gw_session_id(fs->s), max_streams);
	else if (why == -EPIPE) {
		struct gw_outcome oc;

		gw_session_outcome(fs->s, &oc);
		gw_info("%s: session %016llx has ended (%s); new connections go to a new session", p->path,
			(unsigned long long)gw_session_id(fs->s), oc.session_text);
	} else
		gw_warn("%s: session %016llx cannot take streams (%s); new connections go to a new session", p->path,
			(unsigned long long)gw_session_id(fs->s), strerror(-why));
}

/* Stream <id> of p->cur now carries connection <no>: the path's and the migration's counts. */
static void fwd_opened(struct fwd_path *p, int id, unsigned long no)
{
	if (p->mig_open == 0) {
		p->mig_no++;
		p->mig_streams = p->mig_failed = 0;
		p->mig_out = p->mig_in = 0;
		p->mig_why[0] = '\0';
		p->mig_t0 = gw_now_ns();
	}
	p->mig_open++;
	p->mig_streams++;
	p->cur->nids = id + 1;
	p->cur->open++;
	p->last = p->cur;
	p->last_id = id;
	gw_dbg("%s: connection %lu is stream %d of session %016llx", p->path, no, id,
	       (unsigned long long)gw_session_id(p->cur->s));
}

/*
 * Connection <no> of <p> (socket <fd>, ours): one stream, on the current
 * session or, after a rollover, on a new one. When it would be the first
 * stream of a new session and the destination has not connected the
 * path's previous stream yet, it is held (p->held_fd) and fwd_release
 * brings it back here once fwd_order_ok says so.
 */
static void fwd_take(struct fwd *f, struct fwd_path *p, int fd, unsigned long no)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		int id;

		if (!p->cur) {
			if (!(p->cur = fwd_connect(f, p)))
				break;
			p->gate_t0 = gw_now_ns();
		}
		if (!fwd_order_ok(p, no)) {
			p->held_fd = fd;
			p->held_no = no;
			return;
		}
		id = gw_stream_open(p->cur->s, WIRE_ROLE_PLAIN, fd, fd, &gw_sock_ops, NULL);
		if (id >= 0) {
			fwd_opened(p, id, no);
			return;
		}
		if (id != -ENOSPC && id != -EMFILE && id != -EPIPE) {
			/* -ENOMEM left <fd> to us; anything else attached it to a stream that failed at once */
			gw_err("%s: connection %lu: cannot open a stream: %s", p->path, no, strerror(-id));
			fwd_rollover(p, id, 0);
			if (id == -ENOMEM)
				close(fd);
			return;
		}
		fwd_rollover(p, id, gw_session_cfg_get(p->cur->s)->max_streams);
	}
	gw_err("%s: dropping connection %lu: no session could take it", p->path, no);
	close(fd);
}

/* Tries the held connection of every path again: opened once its path's previous stream is connected. */
static bool fwd_release(struct fwd *f)
{
	bool held = false;

	for (int i = 0; i < f->npaths; i++) {
		struct fwd_path *p = &f->paths[i];
		int fd = p->held_fd;

		if (fd < 0)
			continue;
		p->held_fd = -1;
		fwd_take(f, p, fd, p->held_no);
		held |= p->held_fd >= 0;
	}
	return held;
}

/* Stream <id> of <fs> ended: its line, and the migration's line when it was the last one open on the path. */
static void fwd_stream_done(struct fwd_sess *fs, int id, const struct gw_fwd_stream *i)
{
	struct fwd_path *p = fs->p;
	char a[32], b[32];

	gw_fmt_bytes(i->out_bytes, a, sizeof(a));
	gw_fmt_bytes(i->in_bytes, b, sizeof(b));
	if (i->ok)
		gw_info(
		    "%s: session %016llx stream %d (target %s): done: sent %s, received %s, both directions verified",
		    p->path, (unsigned long long)gw_session_id(fs->s), id, p->target, a, b);
	else
		gw_err("%s: session %016llx stream %d (target %s): failed after sending %s and receiving %s: %s",
		       p->path, (unsigned long long)gw_session_id(fs->s), id, p->target, a, b,
		       i->why[0] ? i->why : "unknown reason");
	fs->logged |= 1ull << id;
	fs->open--;
	p->mig_out += i->out_bytes;
	p->mig_in += i->in_bytes;
	if (!i->ok && p->mig_failed++ == 0)
		snprintf(p->mig_why, sizeof(p->mig_why), "stream %d: %s", id, i->why);
	if (--p->mig_open > 0)
		return;
	gw_fmt_bytes(p->mig_out, a, sizeof(a));
	gw_fmt_bytes(p->mig_in, b, sizeof(b));
	if (!p->mig_failed)
		gw_info(
		    "%s: migration %u (target %s): done: %d stream(s) in %.1f s, sent %s, received %s, all verified",
		    p->path, p->mig_no, p->target, p->mig_streams, (double)(gw_now_ns() - p->mig_t0) / 1e9, a, b);
	else
		gw_err(
		    "%s: migration %u (target %s): FAILED: %d of %d stream(s) failed (first: %s); sent %s, received %s",
		    p->path, p->mig_no, p->target, p->mig_failed, p->mig_streams, p->mig_why, a, b);
}

/*
 * Logs the outcome of every stream that ended since the last sweep, closes
 * retiring sessions whose streams have all ended, and drops a current
 * session that failed (a server's idle timeout) with none open.
 */
static void fwd_sweep(struct fwd *f)
{
	struct fwd_sess *fs = f->sessions, *next;

	for (; fs; fs = next) {
		struct gw_outcome oc;

		next = fs->next;
		for (int id = 0; id < fs->nids && fs->open > 0; id++) {
			struct gw_fwd_stream i;

			if (!(fs->logged & (1ull << id)) && gw_fwd_stream_get(fs->s, id, &i) == 0 && i.done)
				fwd_stream_done(fs, id, &i);
		}
		if (fs->open > 0)
			continue;
		if (fs->retiring) {
			gw_info("%s: session %016llx retired after %d stream(s)", fs->p->path,
				(unsigned long long)gw_session_id(fs->s), fs->nids);
			fwd_close(f, fs);
			continue;
		}
		gw_session_outcome(fs->s, &oc);
		if (oc.session_code) {
			gw_info(
			    "%s: session %016llx ended with no stream open (%s); the next connection opens a new one",
			    fs->p->path, (unsigned long long)gw_session_id(fs->s), oc.session_text);
			fwd_close(f, fs);
		}
	}
}

static int fwd_open_streams(const struct fwd *f)
{
	int n = 0;

	for (const struct fwd_sess *fs = f->sessions; fs; fs = fs->next)
		n += fs->open;
	return n;
}

/*
 * Accepts until SIGINT or SIGTERM. A path that holds a connection (waiting
 * for its previous stream's OPENED) is not polled: the connections after it
 * wait in its socket's backlog, in order; it is looked at every FWD_GATE_MS.
 */
static void fwd_run(struct fwd *f)
{
	struct pollfd pfd[FWD_MAX_PATHS];
	uint64_t swept = 0;
	bool held = false;

	while (!stop_flag) {
		int n;

		for (int i = 0; i < f->npaths; i++)
			pfd[i] =
			    (struct pollfd){.fd = f->paths[i].held_fd >= 0 ? -1 : f->paths[i].lfd, .events = POLLIN};
		n = poll(pfd, (nfds_t)f->npaths, held ? FWD_GATE_MS : FWD_TICK_MS);
		for (int i = 0; n > 0 && i < f->npaths; i++) {
			struct fwd_path *p = &f->paths[i];
			int fd;

			if (!(pfd[i].revents & POLLIN))
				continue;
			fd = accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				fwd_take(f, p, fd, ++p->accepted);
		}
		held = fwd_release(f);
		if (gw_now_ns() - swept >= (uint64_t)FWD_TICK_MS * 1000000ull) {
			fwd_sweep(f);
			swept = gw_now_ns();
		}
	}
}

/* After SIGINT/SIGTERM: no new connections; open streams get FWD_STOP_MS to end; then every session closes. */
static void fwd_stop(struct fwd *f)
{
	uint64_t t0 = gw_now_ns();
	unsigned long total = 0;

	for (int i = 0; i < f->npaths; i++) {
		struct fwd_path *p = &f->paths[i];

		close(p->lfd);
		unlink(p->path);
		total += p->accepted;
		if (p->held_fd >= 0) {
			gw_warn("%s: dropping connection %lu: it waited for the destination to connect stream %d first",
				p->path, p->held_no, p->last_id);
			close(p->held_fd);
			p->held_fd = -1;
		}
	}
	gw_info("stopping after %lu connection(s); %d stream(s) open", total, fwd_open_streams(f));
	while (fwd_open_streams(f) > 0 && gw_now_ns() - t0 < (uint64_t)FWD_STOP_MS * 1000000ull) {
		usleep(FWD_TICK_MS * 1000);
		fwd_sweep(f);
	}
	if (fwd_open_streams(f) > 0)
		gw_warn("closing with %d stream(s) still open after %d s", fwd_open_streams(f), FWD_STOP_MS / 1000);
	while (f->sessions)
		fwd_close(f, f->sessions);
}

int cmd_forward(int argc, char **argv)
{
	static const struct option extra[] = {{"listen", required_argument, NULL, 'l'},
					      {"socket-mode", required_argument, NULL, O_SOCK_MODE},
					      {"socket-group", required_argument, NULL, O_SOCK_GROUP},
					      {NULL, 0, NULL, 0}};
	static struct fwd f; /* large (paths); one per process */
	const struct cmd_def def = {.name = "forward",
				    .usage = forward_usage,
				    .extra = extra,
				    .shortopts = "l:",
				    .opt = forward_opt,
				    .arg = &f};
	struct sigaction sa = {.sa_handler = on_signal};
	int r;

	gw_log_set_prefix("migrelay forward");
	if ((r = cmd_parse(&def, &f.o, argc, argv)) != CMD_GO)
		return r;
	if (!f.npaths) {
		fprintf(stderr, "migrelay forward: --listen unix:PATH is required\n");
		return MR_EXIT_USAGE;
	}
	if ((r = parse_socket_opts(&f)) != 0)
		return r;
	f.o.open_ack = true; /* the destination says when it connected a stream (PROTOCOL.md §5.1) */
	for (int i = 0; i < f.npaths; i++) {
		if (f.paths[i].target)
			continue;
		if (f.o.target == f.auto_target) {
			fprintf(stderr, "migrelay forward: --listen unix:%s needs =TARGET, or --target NAME\n",
				f.paths[i].path);
			return MR_EXIT_USAGE;
		}
		f.paths[i].target = f.o.target;
	}
	/* Connect first: a wrong certificate or target is reported now, not at the first migration. */
	for (int i = 0; i < f.npaths; i++) {
		struct fwd_path *p = &f.paths[i];
		struct gw_client_opts o = path_opts(&f, p);
		struct fwd_sess *fs = calloc(1, sizeof(*fs));

		if (!fs)
			return MR_EXIT_FAIL;
		if ((r = cmd_connect(&o, &fs->s)) != MR_EXIT_OK) {
			free(fs);
			goto fail;
		}
		fs->p = p;
		fs->next = f.sessions;
		f.sessions = p->cur = fs;
		fwd_note_ack(&f, fs);
	}
	for (int i = 0; i < f.npaths; i++) {
		if ((r = fwd_listen(&f, &f.paths[i])) < 0) {
			fprintf(stderr, "migrelay forward: cannot listen on %s: %s\n", f.paths[i].path, strerror(-r));
			for (int j = 0; j < i; j++) {
				close(f.paths[j].lfd);
				unlink(f.paths[j].path);
			}
			r = MR_EXIT_USAGE;
			goto fail;
		}
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	for (int i = 0; i < f.npaths; i++)
		gw_info("listening on %s (mode %04o), forwarding to %s target %s over %d connection(s)",
			f.paths[i].path, (unsigned)f.mode, f.o.to, f.paths[i].target, f.o.connections);
	fwd_run(&f);
	fwd_stop(&f);
	return MR_EXIT_OK;
fail:
	while (f.sessions)
		fwd_close(&f, f.sessions);
	return r;
}
