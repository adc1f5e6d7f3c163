/* SPDX-License-Identifier: MIT */
#include "target.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "log.h"
#include "net.h"

/*
 * file:PATH: the file is written beside PATH (a temporary name, renamed when
 * verified), so its directory must exist and be writable now, not only at
 * the first stream. Returns 0 or -errno with <why> set.
 */
static int file_dir_check(const struct gw_target *t, char *why, size_t whylen)
{
	char buf[sizeof(t->path)];
	const char *dir;
	struct stat sb;
	int e;

	snprintf(buf, sizeof(buf), "%s", t->path);
	dir = dirname(buf); /* points into buf, or at a static "." */
	if (stat(dir, &sb) < 0)
		e = errno;
	else if (!S_ISDIR(sb.st_mode))
		e = ENOTDIR;
	else if (access(dir, W_OK | X_OK) < 0)
		e = errno;
	else
		return 0;
	snprintf(why, whylen, "--target %s: cannot write files in %.200s: %s", t->name, dir, strerror(e));
	return -e;
}

int gw_target_parse(struct gw_target *t, const char *arg, char *why, size_t whylen)
{
	const char *eq = strchr(arg, '='), *spec;
	size_t nl;

	memset(t, 0, sizeof(*t));
	if (!eq) {
		snprintf(why, whylen, "--target \"%.100s\" must be NAME=SPEC (SPEC: discard, file:PATH, unix:PATH, qmp:PATH)",
			 arg);
		return -EINVAL;
	}
	nl = (size_t)(eq - arg);
	if (!wire_name_ok(arg, nl)) {
		snprintf(why, whylen, "--target name \"%.*s\" must be 1-64 characters of A-Z a-z 0-9 . _ -", (int)(nl > 64 ? 64 : nl),
			 arg);
		return -EINVAL;
	}
	memcpy(t->name, arg, nl);
	spec = eq + 1;
	if (!strcmp(spec, "discard")) {
		t->kind = GW_TGT_DISCARD;
		return 0;
	}
	if (!strncmp(spec, "file:", 5))
		t->kind = GW_TGT_FILE;
	else if (!strncmp(spec, "unix:", 5))
		t->kind = GW_TGT_UNIX;
	else if (!strncmp(spec, "qmp:", 4))
		t->kind = GW_TGT_QMP;
	else {
		snprintf(why, whylen, "--target %s: unknown SPEC \"%.100s\" (use discard, file:PATH, unix:PATH or qmp:PATH)",
			 t->name, spec);
		return -EINVAL;
	}
	spec = strchr(spec, ':') + 1;
	if (!*spec || strlen(spec) >= sizeof(t->path)) {
		snprintf(why, whylen, "--target %s: the path is empty or too long", t->name);
		return -EINVAL;
	}
	strcpy(t->path, spec);
	if (t->kind == GW_TGT_FILE)
		return file_dir_check(t, why, whylen);
	if (t->kind == GW_TGT_QMP) {
		char *opt = strstr(t->path, ",log=");

		if (opt) {
			snprintf(t->log, sizeof(t->log), "%s", opt + 5);
			*opt = '\0';
		}
		if (!t->path[0] || (opt && !t->log[0])) {
			snprintf(why, whylen, "--target %s: qmp: needs a QMP socket path (and ,log=FILE a file)", t->name);
			return -EINVAL;
		}
	}
	return 0;
}

int gw_target_remove_stale(const struct gw_target *t)
{
	char dirbuf[sizeof(t->path)], basebuf[sizeof(t->path)], path[sizeof(t->path) + 300];
	const char *dir, *base;
	struct dirent *d;
	size_t blen;
	int n = 0;
	DIR *dp;

	if (t->kind != GW_TGT_FILE)
		return 0;
	snprintf(dirbuf, sizeof(dirbuf), "%s", t->path);
	snprintf(basebuf, sizeof(basebuf), "%s", t->path);
	dir = dirname(dirbuf);
	base = basename(basebuf);
	blen = strlen(base);
	if (!(dp = opendir(dir)))
		return -errno;
	while ((d = readdir(dp))) {
		/* "<base>.migrelay-" and mkstemp's six characters, nothing else */
		if (strncmp(d->d_name, base, blen) || strncmp(d->d_name + blen, ".migrelay-", 10) ||
		    strlen(d->d_name + blen + 10) != 6)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if (unlink(path) == 0) {
			gw_warn("target %s: removed %s, left by a serve that was stopped mid-stream", t->name, path);
			n++;
		}
	}
	closedir(dp);
	return n;
}

/* ---- per-stream outcome ------------------------------------------------ */

/*
 * Serving end, from a sink's finish: the inbound direction (what the client
 * sent) is verified. Called unlocked from the stream's inbound pump.
 */
static void log_in_verified(const struct gw_stream *st)
{
	struct gw_session *s = gw_stream_session(st);
	struct gw_stream_info i;
	char a[32];

	if (!gw_session_cfg_get(s)->server || gw_stream_snapshot(s, gw_stream_id(st), &i) < 0)
		return;
	gw_info("session %016llx stream %u (target %s): received %s, verified", (unsigned long long)gw_session_id(s),
		i.id, gw_session_target(s), gw_fmt_bytes(i.in_bytes, a, sizeof(a)));
}

/*
 * Serving end, from a sink's close at teardown (every thread of the session
 * joined, the lock free): one line with the stream's outcome, at info level
 * when both directions verified, as an error otherwise.
 */
static void log_outcome(const struct gw_stream *st)
{
	struct gw_session *s = gw_stream_session(st);
	struct gw_stream_info i;
	char a[32], b[32];

	if (!gw_session_cfg_get(s)->server || gw_stream_snapshot(s, gw_stream_id(st), &i) < 0)
		return;
	gw_fmt_bytes(i.in_bytes, a, sizeof(a));
	gw_fmt_bytes(i.out_bytes, b, sizeof(b));
	if (i.complete)
		gw_info("session %016llx stream %u (target %s): done: received %s, sent %s, both directions verified",
			(unsigned long long)gw_session_id(s), i.id, gw_session_target(s), a, b);
	else
		gw_err("session %016llx stream %u (target %s): failed after receiving %s and sending %s: %s",
		       (unsigned long long)gw_session_id(s), i.id, gw_session_target(s), a, b,
		       i.fail_code ? i.fail_text : i.session_code ? i.session_text : "the session ended first");
}

/* ---- unix socket ------------------------------------------------------ */

static int sock_finish(struct gw_stream *st)
{
	/* The peer's direction is complete and verified: tell the local side with a half-close. */
	if (shutdown(gw_stream_wfd(st), SHUT_WR) < 0 && errno != ENOTCONN)
		return -errno;
	log_in_verified(st);
	return 0;
}

/* At teardown: the stream is freed right after, so its fds need no resetting. */
static void sock_close(struct gw_stream *st)
{
	int rfd = gw_stream_rfd(st), wfd = gw_stream_wfd(st);

	log_outcome(st);
	if (rfd >= 0)
		close(rfd);
	if (wfd >= 0 && wfd != rfd)
		close(wfd);
}

const struct gw_sink_ops gw_sock_ops = { .finish = sock_finish, .close = sock_close };

/* ---- file: written under a temporary name, renamed after the verified END --- */

struct file_sink {
	char tmp[4200];
	const char *final;
	bool renamed;
};

static int file_finish(struct gw_stream *st)
{
	struct file_sink *f = gw_stream_ctx(st);

	if (fsync(gw_stream_wfd(st)) < 0)
		return -errno;
	if (rename(f->tmp, f->final) < 0)
		return -errno;
	f->renamed = true;
	gw_info("stream %u: verified, wrote %s", gw_stream_id(st), f->final);
	log_in_verified(st);
	return 0;
}

static void file_abort(struct gw_stream *st)
{
	struct file_sink *f = gw_stream_ctx(st);

	if (f && !f->renamed && unlink(f->tmp) == 0)
		gw_warn("stream %u: failed, removed the partial file %s", gw_stream_id(st), f->tmp);
}

/* At teardown, after file_abort: the stream is freed right after. */
static void file_close(struct gw_stream *st)
{
	log_outcome(st);
	if (gw_stream_wfd(st) >= 0)
		close(gw_stream_wfd(st));
	free(gw_stream_ctx(st));
}

static const struct gw_sink_ops file_ops = { .finish = file_finish, .abort = file_abort, .close = file_close };

static int discard_finish(struct gw_stream *st)
{
	log_in_verified(st);
	return 0;
}

static void discard_close(struct gw_stream *st)
{
	log_outcome(st);
}

static const struct gw_sink_ops discard_ops = { .finish = discard_finish, .close = discard_close };

int gw_target_open(struct gw_session *s, struct gw_stream *st, char *why, size_t whylen)
{
	const struct gw_target *t = gw_session_ctx(s);
	int fd;

	if (gw_stream_role(st) != WIRE_ROLE_PLAIN) {
		snprintf(why, whylen, "target %s takes plain streams only", t->name);
		return -EINVAL;
	}
	switch (t->kind) {
	case GW_TGT_DISCARD:
		gw_stream_attach(st, -1, -1, &discard_ops, NULL);
		return 0;
	case GW_TGT_UNIX:
		fd = net_unix_connect(t->path);
		if (fd < 0) {
			snprintf(why, whylen, "target %s: cannot connect to its socket: %s", t->name,
				 fd == -ETIMEDOUT ? "it accepted no connection within 10 s" : strerror(-fd));
			return fd;
		}
		gw_stream_attach(st, fd, fd, &gw_sock_ops, NULL);
		return 0;
	case GW_TGT_FILE: {
		struct file_sink *f = calloc(1, sizeof(*f));

		if (!f)
			return -ENOMEM;
		snprintf(f->tmp, sizeof(f->tmp), "%s.migrelay-XXXXXX", t->path);
		fd = mkstemp(f->tmp);
		if (fd < 0) {
			int e = errno;

			snprintf(why, whylen, "target %s: cannot create a file beside %s: %s", t->name, t->path,
				 strerror(e));
			free(f);
			return -e;
		}
		fchmod(fd, 0640);
		f->final = t->path;
		gw_stream_attach(st, -1, fd, &file_ops, f);
		return 0;
	}
	default:
		snprintf(why, whylen, "target %s: this kind of target cannot take plain streams", t->name);
		return -EINVAL;
	}
}
