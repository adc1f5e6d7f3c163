/* SPDX-License-Identifier: MIT */
/*
 * The control socket (control.h). One thread accepts one client at a time:
 * a local admin tool asks rarely, and serializing the requests means the
 * status and reload callbacks never run concurrently with each other.
 * Every client gets GW_CONTROL_DEADLINE_MS for its request and response,
 * so a client that stalls delays the next one by that much at most and
 * never the daemon itself. Between clients the thread samples the
 * daemon's status every GW_CONTROL_SAMPLE_MS to know each session's
 * current rate.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "reqio.h"
#include "status.h"

/* ---- requests ---- */

int gw_control_parse_request(const char *buf, size_t len, struct gw_control_req *req, char *why, size_t whylen)
{
	static const struct {
		const char *name;
		enum gw_control_cmd cmd;
		bool arg; /* takes "arg" */
	} cmds[] = {{"status", GW_CTL_STATUS, false},	  {"reload", GW_CTL_RELOAD, false}, {"info", GW_CTL_JOB, false},
		    {"set-speed", GW_CTL_JOB, true},	  {"set-downtime", GW_CTL_JOB, true},
		    {"postcopy", GW_CTL_JOB, false},	  {"cancel", GW_CTL_JOB, false}};
	struct json_tokener *tok = NULL;
	struct json_object *o = NULL, *v = NULL, *a = NULL;
	const char *name;
	int r = -EBADMSG;

	req->cmd = GW_CTL_NONE;
	req->name[0] = req->arg[0] = '\0';
	if (len >= GW_CONTROL_MAX_REQUEST) {
		snprintf(why, whylen, "request longer than %d bytes", GW_CONTROL_MAX_REQUEST - 1);
		return -EMSGSIZE;
	}
	/* json-c would stop at a NUL and leave the rest unread */
	if (memchr(buf, '\0', len)) {
		snprintf(why, whylen, "request contains a NUL byte");
		return -EBADMSG;
	}
	/* Depth 2 is all a request needs: an object of strings. */
	if (!(tok = json_tokener_new_ex(2))) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, buf, (int)len);
	if (!o) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		/* the whole line is here: "continue" means it ended inside the value */
		snprintf(why, whylen, "request is not JSON: %s",
			 json_tokener_error_desc(e == json_tokener_continue ? json_tokener_error_parse_eof : e));
		goto out;
	}
	/* only white space may follow the value */
	for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
		if (!strchr(" \t\r\n", buf[i])) {
			snprintf(why, whylen, "unexpected bytes after the request object");
			goto out;
		}
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(why, whylen, "request is not a JSON object");
		goto out;
	}
	json_object_object_foreach(o, key, val)
	{
		(void)val;
		if (strcmp(key, "cmd") && strcmp(key, "arg")) {
			snprintf(why, whylen, "unknown key \"%.40s\" in request", key);
			goto out;
		}
	}
	if (!json_object_object_get_ex(o, "cmd", &v) || !json_object_is_type(v, json_type_string)) {
		snprintf(why, whylen, "request needs \"cmd\": a string");
		goto out;
	}
	if (json_object_object_get_ex(o, "arg", &a)) {
		const char *t = json_object_is_type(a, json_type_string) ? json_object_get_string(a) : NULL;
		size_t tl = t ? (size_t)json_object_get_string_len(a) : 0;

		if (!t || !tl || tl > GW_CONTROL_MAX_ARG || strlen(t) != tl) {
			snprintf(why, whylen, "\"arg\" must be a string of 1 to %d bytes", GW_CONTROL_MAX_ARG);
			goto out;
		}
		for (size_t i = 0; i < tl; i++)
			if ((unsigned char)t[i] < 0x20 || t[i] == 0x7f) {
				snprintf(why, whylen, "\"arg\" contains a control character");
				goto out;
			}
	}
	name = json_object_get_string(v);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(name, cmds[i].name) && (size_t)json_object_get_string_len(v) == strlen(cmds[i].name)) {
			if (cmds[i].arg != (a != NULL)) {
				snprintf(why, whylen, "%s %s \"arg\"", cmds[i].name, cmds[i].arg ? "needs" : "takes no");
				goto out;
			}
			req->cmd = cmds[i].cmd;
			snprintf(req->name, sizeof(req->name), "%s", cmds[i].name);
			if (a)
				snprintf(req->arg, sizeof(req->arg), "%s", json_object_get_string(a));
			r = 0;
			goto out;
		}
	snprintf(why, whylen,
		 "unknown command \"%.40s\" (known: status, reload; info, set-speed, set-downtime, postcopy, cancel)",
		 name);
	r = -EOPNOTSUPP;
out:
	json_object_put(o);
	json_tokener_free(tok);
	return r;
}

int gw_control_parse_path(const char *spec, char *path, size_t pathlen)
{
	struct sockaddr_un sa;
	const char *p = spec;

	if (!strncmp(spec, "unix:", 5))
		p = spec + 5;
	else if (strchr(spec, ':') && !strchr(spec, '/'))
		return -EINVAL; /* "tcp:..." or HOST:PORT: not a unix socket */
	if (!*p)
		return -EINVAL;
	if (strlen(p) >= sizeof(sa.sun_path) || strlen(p) >= pathlen)
		return -ENAMETOOLONG;
	memcpy(path, p, strlen(p) + 1);
	return 0;
}

/* ---- rates ---- */

struct rate {
	uint64_t id, in, out;
	int64_t ms;
	double rate_in, rate_out;
};

struct gw_control {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd, stop[2];
	dev_t dev;
	ino_t ino;
	struct gw_control_ops ops;
	pthread_t thr;
	struct rate *rates; /* GW_CONTROL_MAX_TRACKED */
	int nrates;
};

static uint64_t get_u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : 0;
}

/*
 * Control thread. Updates the tracked rates from a fresh status and, when
 * <apply>, writes rate_in/rate_out into its sessions. A session seen for
 * the first time gets its average since it began; later ones the rate over
 * the interval since the previous sample (at least 200 ms, so two quick
 * requests do not divide by nearly nothing). Sessions gone are forgotten.
 */
static void rates_update(struct gw_control *c, struct json_object *status, bool apply)
{
	struct json_object *sessions, *v;
	struct rate *next;
	int64_t now = gw_reqio_now_ms();
	int n = 0;
	size_t len;

	if (!json_object_object_get_ex(status, "sessions", &sessions) ||
	    !json_object_is_type(sessions, json_type_array)) {
		c->nrates = 0;
		return;
	}
	len = json_object_array_length(sessions);
	next = calloc(len < GW_CONTROL_MAX_TRACKED ? len + 1 : GW_CONTROL_MAX_TRACKED, sizeof(*next));
	if (!next)
		return;
	for (size_t i = 0; i < len; i++) {
		struct json_object *s = json_object_array_get_idx(sessions, i);
		struct rate *old = NULL, *e;
		uint64_t id;
		double age;

		if (!json_object_object_get_ex(s, "id", &v))
			continue;
		id = strtoull(json_object_get_string(v), NULL, 16);
		for (int k = 0; k < c->nrates; k++)
			if (c->rates[k].id == id)
				old = &c->rates[k];
		if (n >= GW_CONTROL_MAX_TRACKED)
			e = NULL;
		else
			e = &next[n++];
		if (e && old && now - old->ms < 200) {
			*e = *old;
		} else if (e) {
			e->id = id;
			e->in = get_u64(s, "bytes_in");
			e->out = get_u64(s, "bytes_out");
			e->ms = now;
			if (old) {
				double dt = (double)(now - old->ms) / 1000.0;

				e->rate_in = e->in >= old->in ? (double)(e->in - old->in) / dt : 0;
				e->rate_out = e->out >= old->out ? (double)(e->out - old->out) / dt : 0;
			} else {
				age = json_object_object_get_ex(s, "age_s", &v) ? json_object_get_double(v) : 0;
				e->rate_in = age > 0.2 ? (double)e->in / age : 0;
				e->rate_out = age > 0.2 ? (double)e->out / age : 0;
			}
		}
		if (apply) {
			/* out of memory: the session goes without its rate, the rest stays right */
			(void)!gw_json_put(s, "rate_in", gw_json_num(e ? e->rate_in : 0));
			(void)!gw_json_put(s, "rate_out", gw_json_num(e ? e->rate_out : 0));
		}
	}
	free(c->rates);
	c->rates = next;
	c->nrates = n;
}

static void sample(struct gw_control *c)
{
	struct json_object *st = json_object_new_object();

	if (st && c->ops.status && c->ops.status(c->ops.ctx, st) == 0)
		rates_update(c, st, false);
	json_object_put(st);
}

/* ---- serving ---- */

static struct json_object *error_reply(int err, const char *msg)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	if (gw_json_put(o, "ok", json_object_new_boolean(false)) | gw_json_put_str(o, "error", msg) |
	    gw_json_put(o, "errno", json_object_new_int(err < 0 ? -err : err))) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* Control thread: the response object for one request line. */
static struct json_object *handle(struct gw_control *c, const char *line, size_t len)
{
	struct gw_control_req req;
	struct json_object *o = NULL, *st = NULL;
	char why[GW_CONTROL_MAX_MESSAGE] = "";
	int r;

	if ((r = gw_control_parse_request(line, len, &req, why, sizeof(why))) < 0)
		return error_reply(r, why);
	if (req.cmd == GW_CTL_STATUS) {
		if (!c->ops.status)
			return error_reply(-EOPNOTSUPP, "this daemon gives no status");
		if (!(st = json_object_new_object()))
			return error_reply(-ENOMEM, "out of memory");
		if ((r = c->ops.status(c->ops.ctx, st)) < 0) {
			json_object_put(st);
			snprintf(why, sizeof(why), "status failed: %s", strerror(-r));
			return error_reply(r, why);
		}
		rates_update(c, st, true);
		if (!(o = json_object_new_object()) || gw_json_put(o, "ok", json_object_new_boolean(true)) < 0 ||
		    gw_json_put(o, "status", st) < 0) {
			if (!o)
				json_object_put(st);
			json_object_put(o);
			return error_reply(-ENOMEM, "out of memory");
		}
		return o;
	}
	if (req.cmd == GW_CTL_JOB) {
		if (!c->ops.job)
			return error_reply(-EOPNOTSUPP, "this socket runs no migration job (it is a daemon's)");
		if (!(o = json_object_new_object()) || gw_json_put(o, "ok", json_object_new_boolean(true)) < 0) {
			json_object_put(o);
			return error_reply(-ENOMEM, "out of memory");
		}
		if ((r = c->ops.job(c->ops.ctx, &req, o, why, sizeof(why))) < 0) {
			json_object_put(o);
			return error_reply(r, why[0] ? why : strerror(-r));
		}
		if (why[0] && gw_json_put_str(o, "message", why) < 0) {
			json_object_put(o);
			return error_reply(-ENOMEM, "out of memory");
		}
		return o;
	}
	if (!c->ops.reload)
		return error_reply(-EOPNOTSUPP, "this daemon cannot reload");
	r = c->ops.reload(c->ops.ctx, why, sizeof(why));
	if (r < 0)
		return error_reply(r, why[0] ? why : strerror(-r));
	if (!(o = json_object_new_object()) || gw_json_put(o, "ok", json_object_new_boolean(true)) < 0 ||
	    gw_json_put_str(o, "message", why[0] ? why : "reloaded") < 0) {
		json_object_put(o);
		return error_reply(-ENOMEM, "out of memory");
	}
	return o;
}

/* True when the peer of <fd> runs as our user or as root. */
static bool peer_trusted(int fd)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0)
		return false;
	return cr.uid == 0 || cr.uid == geteuid();
}

/* Control thread: one client, start to end, within GW_CONTROL_DEADLINE_MS. Closes <fd>. */
static void serve_client(struct gw_control *c, int fd)
{
	int64_t deadline = gw_reqio_now_ms() + GW_CONTROL_DEADLINE_MS;
	char req[GW_CONTROL_MAX_REQUEST];
	struct json_object *reply = NULL;
	const char *txt, *nl = NULL;
	size_t got = 0, tlen;
	char *out = NULL;

	/* Read the request even from a client that will be refused: closing on unread bytes would reset the connection
	 * before it reads why. */
	while (!nl && got < sizeof(req)) {
		ssize_t n = gw_reqio_recv(fd, req + got, sizeof(req) - got, deadline);

		if (n == 0 || n == -ETIMEDOUT)
			break; /* a request without its newline still counts */
		if (n < 0)
			goto out;
		nl = memchr(req + got, '\n', (size_t)n);
		got += (size_t)n;
	}
	if (!peer_trusted(fd)) {
		gw_ratelimited(GW_LOG_WARN, "control: refused a client of another user");
		reply = error_reply(-EACCES,
				    "permission denied: the control socket answers only its daemon's user and root");
	} else if (nl)
		reply = handle(c, req, (size_t)(nl - req));
	else if (got == sizeof(req))
		reply = error_reply(-EMSGSIZE, "request line too long");
	else if (got && gw_reqio_now_ms() < deadline)
		reply = handle(c, req, got);
	else
		goto out; /* nothing, or too slow: no answer */
	if (!reply)
		goto out;
	txt = json_object_to_json_string_length(reply, JSON_C_TO_STRING_PLAIN, &tlen);
	if (!txt || !(out = malloc(tlen + 1)))
		goto out;
	memcpy(out, txt, tlen);
	out[tlen] = '\n';
	(void)!gw_reqio_send(fd, out, tlen + 1, deadline);
	shutdown(fd, SHUT_WR);
out:
	free(out);
	json_object_put(reply);
	close(fd);
}

static void *control_main(void *arg)
{
	struct gw_control *c = arg;
	int64_t next_sample = gw_reqio_now_ms();

	for (;;) {
		struct pollfd pfd[2] = {{.fd = c->lfd, .events = POLLIN}, {.fd = c->stop[0], .events = POLLIN}};
		int64_t wait = next_sample - gw_reqio_now_ms();
		int n, fd;

		n = poll(pfd, 2, wait > 0 ? (int)wait : 0);
		if (n < 0 && errno != EINTR) {
			gw_err_r(-errno, "control: poll");
			break;
		}
		if (n > 0 && pfd[1].revents)
			break;
		if (gw_reqio_now_ms() >= next_sample) {
			sample(c);
			next_sample = gw_reqio_now_ms() + GW_CONTROL_SAMPLE_MS;
		}
		if (n <= 0 || !pfd[0].revents)
			continue;
		if ((fd = gw_reqio_accept(c->lfd)) >= 0)
			serve_client(c, fd);
	}
	return NULL;
}

/* 0 when nothing listens at <sa> (stale socket), -EADDRINUSE when something answers. */
static int probe_live(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), r = 0;

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		r = -EADDRINUSE;
	close(fd);
	return r;
}

/* Creates the parent directory of <path> (0700) if it does not exist. */
static int make_parent(const char *path, char *why, size_t whylen)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return 0;
	snprintf(why, whylen, "cannot create the directory %s for the control socket: %s", dir, strerror(errno));
	return -errno;
}

static int listen_socket(struct gw_control *c, char *why, size_t whylen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, r;

	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	if ((r = make_parent(c->path, why, whylen)) < 0)
		return r;
	if (lstat(c->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(why, whylen, "%s exists and is not a socket; not replacing it", c->path);
			return -EEXIST;
		}
		if ((r = probe_live(&sa)) < 0) {
			snprintf(why, whylen, "%s: another daemon answers on this control socket", c->path);
			return r;
		}
		unlink(c->path); /* stale: its daemon is gone */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		snprintf(why, whylen, "control socket: %s", strerror(errno));
		return r;
	}
	/*
	 * Linux creates the socket file with the socket inode's mode minus the
	 * umask: with 0600 here the file is never more open than that, not
	 * even for a moment; the chmod then makes it exactly 0600 under a
	 * umask that also took the owner's bits.
	 */
	if (fchmod(fd, 0600) < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(c->path, 0600) < 0 ||
	    lstat(c->path, &st) < 0 || listen(fd, 16) < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot listen on the control socket %s: %s", c->path, strerror(errno));
		close(fd);
		return r;
	}
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	return fd;
}

int gw_control_start(struct gw_control **out, const char *path, const struct gw_control_ops *ops, char *why,
		     size_t whylen)
{
	struct gw_control *c = calloc(1, sizeof(*c));
	int r;

	why[0] = '\0';
	if (!c) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	c->lfd = c->stop[0] = c->stop[1] = -1;
	c->ops = *ops;
	if (strlen(path) >= sizeof(c->path) || !path[0]) {
		snprintf(why, whylen, "control socket path \"%.80s\" is empty or longer than %zu bytes", path,
			 sizeof(c->path) - 1);
		free(c);
		return -ENAMETOOLONG;
	}
	memcpy(c->path, path, strlen(path) + 1);
	if ((r = c->lfd = listen_socket(c, why, whylen)) < 0)
		goto fail;
	if (pipe2(c->stop, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	if ((r = pthread_create(&c->thr, NULL, control_main, c)) != 0) {
		r = -r;
		goto fail;
	}
	*out = c;
	return 0;
fail:
	if (!why[0])
		snprintf(why, whylen, "control socket %s: %s", path, strerror(-r));
	if (c->stop[0] >= 0) {
		close(c->stop[0]);
		close(c->stop[1]);
	}
	if (c->lfd >= 0) {
		close(c->lfd);
		unlink(c->path);
	}
	free(c);
	return r;
}

const char *gw_control_path(const struct gw_control *c)
{
	return c->path;
}

void gw_control_stop(struct gw_control *c)
{
	struct stat st;

	if (!c)
		return;
	(void)!write(c->stop[1], "x", 1);
	pthread_join(c->thr, NULL);
	/* Another daemon may have taken the path over since: remove only our own socket. */
	if (lstat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
		unlink(c->path);
	close(c->lfd);
	close(c->stop[0]);
	close(c->stop[1]);
	free(c->rates);
	free(c);
}

/* ---- client ---- */

int gw_control_call(const char *path, const char *cmd, int timeout_ms, struct json_object **reply, char *why,
		    size_t whylen)
{
	return gw_control_call_arg(path, cmd, NULL, timeout_ms, reply, why, whylen);
}

int gw_control_call_arg(const char *path, const char *cmd, const char *arg, int timeout_ms,
			struct json_object **reply, char *why, size_t whylen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int64_t deadline = gw_reqio_now_ms() + timeout_ms;
	struct json_tokener *tok = NULL;
	struct json_object *o = NULL, *req = NULL;
	const char *txt;
	char *buf = NULL;
	size_t got = 0, cap = 0, tlen;
	char line[128];
	int fd = -1, r;

	*reply = NULL;
	why[0] = '\0';
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(why, whylen, "control socket path %.80s... is too long", path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot reach the control socket %s: %s", path, strerror(errno));
		goto out;
	}
	if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
		r = -errno;
		goto out;
	}
	/* json-c writes the command name with its escaping, whatever it holds */
	if (!(req = json_object_new_object()) || gw_json_put_str(req, "cmd", cmd) < 0 ||
	    (arg && gw_json_put_str(req, "arg", arg) < 0) ||
	    !(txt = json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &tlen)) || tlen + 2 > sizeof(line)) {
		r = -ENOMEM;
		snprintf(why, whylen, "cannot build the request");
		goto out;
	}
	memcpy(line, txt, tlen);
	line[tlen] = '\n';
	if ((r = gw_reqio_send(fd, line, tlen + 1, deadline)) < 0) {
		snprintf(why, whylen, "cannot send to the control socket %s: %s", path, strerror(-r));
		goto out;
	}
	for (;;) {
		ssize_t n;

		if (got == cap) {
			char *nb;

			if (cap >= (64u << 20)) {
				r = -EMSGSIZE;
				snprintf(why, whylen, "the control socket's answer exceeds 64 MiB");
				goto out;
			}
			if (!(nb = realloc(buf, cap ? 2 * cap : 65536))) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = cap ? 2 * cap : 65536;
		}
		n = gw_reqio_recv(fd, buf + got, cap - got, deadline);
		if (n == -ETIMEDOUT) {
			r = -ETIMEDOUT;
			snprintf(why, whylen, "no answer from the control socket %s within %d ms", path, timeout_ms);
			goto out;
		}
		if (n < 0) {
			r = (int)n;
			snprintf(why, whylen, "reading from the control socket %s: %s", path, strerror(-r));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (!(tok = json_tokener_new())) {
		r = -ENOMEM;
		goto out;
	}
	o = got ? json_tokener_parse_ex(tok, buf, (int)got) : NULL;
	if (!o || !json_object_is_type(o, json_type_object)) {
		r = -EBADMSG;
		snprintf(why, whylen, "the control socket %s gave %s", path,
			 got ? "an answer that is not a JSON object" : "no answer");
		goto out;
	}
	*reply = o;
	o = NULL;
	r = 0;
out:
	if (r < 0 && !why[0])
		snprintf(why, whylen, "control socket %s: %s", path, strerror(-r));
	json_object_put(o);
	json_object_put(req);
	if (tok) /* json_tokener_free is not NULL-safe */
		json_tokener_free(tok);
	free(buf);
	if (fd >= 0)
		close(fd);
	return r;
}
