/* SPDX-License-Identifier: MIT */
/*
 * QMP client. The wire is a stream of JSON objects in both directions; we
 * send commands with increasing integer ids, one at a time or a window of
 * them (qmp_cmd_many), and skip replies that carry an id not in flight (left
 * over from a command that timed out). Events
 * may arrive at any time and are queued until qmp_next_event().
 */
#include "qmp.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

enum {
	QMP_RBUF = 64 << 10,	/* bytes read from the socket at once */
	QMP_ERR_TEXT_MAX = 400, /* bytes of QEMU's error description we keep */
	QMP_CONNECT_RETRY_MS = 50,
	QMP_MAX_SKIP = 1000, /* stale replies skipped per call; QEMU sends one per timed-out command */
	QMP_PIPELINE = 32,   /* commands in flight in qmp_cmd_many */
};

struct qmp_event {
	struct qmp_event *next;
	struct json_object *ev;
};

struct qmp {
	int fd;
	int timeout_ms;
	int64_t next_id;
	struct qmp_parser parser;
	struct qmp_event *ev_head, *ev_tail;
	unsigned int ev_count;
	bool ev_dropped_logged;
	size_t rpos, rlen; /* unparsed bytes in rbuf */
	char rbuf[QMP_RBUF];
};

/* ---- pure part: no I/O, fuzzed by tests/fuzz/fuzz_qmp.c ---- */

int qmp_parser_init(struct qmp_parser *p)
{
	p->msg_bytes = 0;
	p->max_msg = QMP_MAX_MSG;
	p->tok = json_tokener_new_ex(QMP_MAX_DEPTH);
	if (!p->tok)
		return -ENOMEM;
	/* QEMU writes strict JSON; one message follows another on the stream */
	json_tokener_set_flags(p->tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
	return 0;
}

void qmp_parser_fini(struct qmp_parser *p)
{
	if (!p || !p->tok)
		return;
	json_tokener_free(p->tok);
	p->tok = NULL;
}

int qmp_parser_feed(struct qmp_parser *p, const char *buf, size_t len, struct json_object **msg)
{
	struct json_object *o;
	enum json_tokener_error jerr;
	size_t room, n, used;

	*msg = NULL;
	if (len == 0)
		return 0;
	if (p->msg_bytes >= p->max_msg)
		goto bad;
	room = p->max_msg - p->msg_bytes;
	n = len < room ? len : room;
	if (n > INT_MAX)
		n = INT_MAX;
	/* json-c treats NUL as the end of input; QEMU never sends one */
	if (memchr(buf, '\0', n))
		goto bad;
	o = json_tokener_parse_ex(p->tok, buf, (int)n);
	jerr = json_tokener_get_error(p->tok);
	if (jerr == json_tokener_continue) {
		p->msg_bytes += n;
		if (p->msg_bytes >= p->max_msg) {
			json_tokener_reset(p->tok);
			p->msg_bytes = 0;
			return -EMSGSIZE;
		}
		return (int)n;
	}
	if (jerr != json_tokener_success || !o)
		goto bad;
	used = json_tokener_get_parse_end(p->tok);
	json_tokener_reset(p->tok);
	p->msg_bytes = 0;
	if (!json_object_is_type(o, json_type_object) || used == 0 || used > n) {
		json_object_put(o);
		return -EBADMSG;
	}
	*msg = o;
	return (int)used;
bad:
	json_tokener_reset(p->tok);
	p->msg_bytes = 0;
	return -EBADMSG;
}

/* Copies a peer string into dst, bounded, printable ASCII only (anything else becomes '?'). */
static void copy_clean(char *dst, size_t dstlen, const char *src, size_t max)
{
	size_t i;

	if (!dst || !dstlen)
		return;
	for (i = 0; i < dstlen - 1 && i < max && src[i]; i++)
		dst[i] = ((unsigned char)src[i] < 0x20 || (unsigned char)src[i] >= 0x7f) ? '?' : src[i];
	dst[i] = '\0';
}

int qmp_msg_classify(struct json_object *msg, int64_t *id, char *err, size_t errlen)
{
	struct json_object *v, *cls, *desc;
	char text[QMP_ERR_TEXT_MAX + 64];

	if (id)
		*id = -1;
	if (!msg || !json_object_is_type(msg, json_type_object))
		return -EBADMSG;
	if (json_object_object_get_ex(msg, "event", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return -EBADMSG;
		return QMP_MSG_EVENT;
	}
	if (json_object_object_get_ex(msg, "QMP", &v))
		return json_object_is_type(v, json_type_object) ? QMP_MSG_GREETING : -EBADMSG;
	if (json_object_object_get_ex(msg, "id", &v) && id) {
		if (json_object_is_type(v, json_type_int))
			*id = json_object_get_int64(v);
		else
			*id = -2; /* someone else's id: never ours */
	}
	if (json_object_object_get_ex(msg, "return", &v))
		return QMP_MSG_RETURN;
	if (!json_object_object_get_ex(msg, "error", &v) || !json_object_is_type(v, json_type_object))
		return -EBADMSG;
	if (!json_object_object_get_ex(v, "class", &cls) || !json_object_is_type(cls, json_type_string))
		cls = NULL;
	if (!json_object_object_get_ex(v, "desc", &desc) || !json_object_is_type(desc, json_type_string))
		desc = NULL;
	snprintf(text, sizeof(text), "%.40s: %.*s", cls ? json_object_get_string(cls) : "Error", QMP_ERR_TEXT_MAX,
		 desc ? json_object_get_string(desc) : "(no description)");
	copy_clean(err, errlen, text, sizeof(text));
	return QMP_MSG_ERROR;
}

const char *qmp_event_name(struct json_object *ev)
{
	struct json_object *v;

	if (!ev || !json_object_object_get_ex(ev, "event", &v) || !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

/* ---- I/O ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline)
{
	int64_t d = deadline - now_ms();

	if (d <= 0)
		return 0;
	return d > INT_MAX ? INT_MAX : (int)d;
}

/* Waits for <events> on q->fd until <deadline>. Returns 0, -ETIMEDOUT or -errno. */
static int wait_fd(struct qmp *q, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = q->fd, .events = events};
	int r;

	for (;;) {
		r = poll(&pfd, 1, left_ms(deadline));
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* Sends all of buf, the first byte carrying <pass_fd> when it is >= 0. */
static int send_all(struct qmp *q, const char *buf, size_t len, int pass_fd, int64_t deadline)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh;
	struct iovec iov;
	struct cmsghdr *c;
	ssize_t n;
	int r;

	while (len) {
		memset(&mh, 0, sizeof(mh));
		iov.iov_base = (void *)(uintptr_t)buf;
		iov.iov_len = len;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		if (pass_fd >= 0) {
			memset(&u, 0, sizeof(u));
			mh.msg_control = u.buf;
			mh.msg_controllen = sizeof(u.buf);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
		}
		n = sendmsg(q->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return errno == EPIPE ? -ECONNRESET : -errno;
			if ((r = wait_fd(q, POLLOUT, deadline)) < 0)
				return r;
			continue;
		}
		pass_fd = -1; /* the fd went with the first byte sent */
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Reads one message, from buffered bytes first, waiting until <deadline>.
 * Returns 0 and *msg (owned by the caller) or -errno.
 */
static int read_msg(struct qmp *q, int64_t deadline, struct json_object **msg)
{
	ssize_t n;
	int r;

	for (;;) {
		while (q->rpos < q->rlen) {
			r = qmp_parser_feed(&q->parser, q->rbuf + q->rpos, q->rlen - q->rpos, msg);
			if (r < 0)
				return r;
			q->rpos += (size_t)r;
			if (*msg)
				return 0;
		}
		q->rpos = q->rlen = 0;
		n = recv(q->fd, q->rbuf, sizeof(q->rbuf), MSG_DONTWAIT);
		if (n > 0) {
			q->rlen = (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if ((r = wait_fd(q, POLLIN, deadline)) < 0)
			return r;
	}
}

static void queue_event(struct qmp *q, struct json_object *ev)
{
	struct qmp_event *e, *old;

	if (q->ev_count >= QMP_MAX_EVENTS) {
		old = q->ev_head;
		q->ev_head = old->next;
		if (!q->ev_head)
			q->ev_tail = NULL;
		q->ev_count--;
		if (!q->ev_dropped_logged)
			gw_warn("qmp: more than %d events queued; dropping the oldest", QMP_MAX_EVENTS);
		q->ev_dropped_logged = true;
		json_object_put(old->ev);
		free(old);
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		json_object_put(ev);
		return;
	}
	e->ev = ev;
	if (q->ev_tail)
		q->ev_tail->next = e;
	else
		q->ev_head = e;
	q->ev_tail = e;
	q->ev_count++;
}

static struct json_object *pop_event(struct qmp *q)
{
	struct qmp_event *e = q->ev_head;
	struct json_object *ev;

	if (!e)
		return NULL;
	q->ev_head = e->next;
	if (!q->ev_head)
		q->ev_tail = NULL;
	q->ev_count--;
	ev = e->ev;
	free(e);
	return ev;
}

/* Writes command <cmd> with <args> and id <id>, the first byte carrying <pass_fd> when it is >= 0. */
static int send_cmd(struct qmp *q, const char *cmd, struct json_object *args, int64_t id, int pass_fd, int64_t deadline,
		    char *err, size_t errlen)
{
	struct json_object *o = json_object_new_object();
	const char *text;
	int r;

	if (!o || json_object_object_add(o, "execute", json_object_new_string(cmd)) < 0 ||
	    (args && json_object_object_add(o, "arguments", json_object_get(args)) < 0) ||
	    json_object_object_add(o, "id", json_object_new_int64(id)) < 0) {
		json_object_put(o);
		return -ENOMEM;
	}
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text) {
		json_object_put(o);
		return -ENOMEM;
	}
	gw_dbg("qmp: -> %.300s", text);
	r = send_all(q, text, strlen(text), pass_fd, deadline);
	if (r < 0)
		set_err(err, errlen, "qmp %s: sending: %s", cmd, strerror(-r));
	json_object_put(o);
	return r;
}

/*
 * Reads until a reply whose id lies in [lo, hi] (or has none, which answers
 * the oldest command in flight, lo). Events on the way are queued, replies
 * to other ids skipped. Returns 0 with *msg, *kind (RETURN or ERROR) and
 * *got (the reply's id), or -errno with a sentence in err.
 */
static int wait_reply(struct qmp *q, const char *cmd, int64_t lo, int64_t hi, int64_t deadline,
		      struct json_object **msg, int *kind, int64_t *got, char *qerr, size_t qerrlen, char *err,
		      size_t errlen)
{
	int r, skipped = 0;

	for (;;) {
		if ((r = read_msg(q, deadline, msg)) < 0) {
			set_err(err, errlen, "qmp %s: %s", cmd,
				r == -ETIMEDOUT	   ? "no reply in time"
				: r == -ECONNRESET ? "QEMU closed the monitor"
						   : strerror(-r));
			return r;
		}
		*kind = qmp_msg_classify(*msg, got, qerr, qerrlen);
		if (*kind == QMP_MSG_EVENT) {
			gw_dbg("qmp: event %.64s", qmp_event_name(*msg));
			queue_event(q, *msg);
			*msg = NULL;
			/* a stream of events must not hold the command past its deadline */
			if (left_ms(deadline) == 0) {
				set_err(err, errlen, "qmp %s: no reply in time", cmd);
				return -ETIMEDOUT;
			}
			continue;
		}
		if (*kind < 0 || *kind == QMP_MSG_GREETING) {
			json_object_put(*msg);
			*msg = NULL;
			set_err(err, errlen, "qmp %s: unexpected message from QEMU", cmd);
			return -EBADMSG;
		}
		if (*got == -1)
			*got = lo;
		if (*got >= lo && *got <= hi)
			return 0;
		gw_dbg("qmp: skipping a reply for id %lld", (long long)*got);
		json_object_put(*msg);
		*msg = NULL;
		if (++skipped > QMP_MAX_SKIP) {
			set_err(err, errlen, "qmp %s: too many replies to other commands", cmd);
			return -EBADMSG;
		}
	}
}

/* Sends one command and waits for its reply; events on the way are queued. */
static int run(struct qmp *q, const char *cmd, struct json_object *args, int pass_fd, struct json_object **ret,
	       char *err, size_t errlen)
{
	struct json_object *msg = NULL, *v;
	char qerr[QMP_ERR_TEXT_MAX + 64];
	int64_t id = q->next_id++, got, deadline = now_ms() + q->timeout_ms;
	int r, kind;

	if (ret)
		*ret = NULL;
	if (err && errlen)
		err[0] = '\0';
	if ((r = send_cmd(q, cmd, args, id, pass_fd, deadline, err, errlen)) < 0)
		return r;
	if ((r = wait_reply(q, cmd, id, id, deadline, &msg, &kind, &got, qerr, sizeof(qerr), err, errlen)) < 0)
		return r;
	if (kind == QMP_MSG_ERROR) {
		gw_dbg("qmp: %s refused: %s", cmd, qerr);
		set_err(err, errlen, "%s", qerr);
		r = -EREMOTEIO;
	} else if (ret && json_object_object_get_ex(msg, "return", &v)) {
		*ret = json_object_get(v);
	}
	json_object_put(msg);
	return r;
}

int qmp_cmd_many(struct qmp *q, const char *cmd, size_t n, struct json_object *const *args, struct json_object **rets,
		 int *rcs, char *err, size_t errlen)
{
	struct json_object *msg = NULL, *v;
	char qerr[QMP_ERR_TEXT_MAX + 64];
	int64_t base = q->next_id, got, deadline;
	size_t sent = 0, done = 0, i;
	int r = 0, kind;

	if (err && errlen)
		err[0] = '\0';
	for (i = 0; i < n; i++) {
		rets[i] = NULL;
		rcs[i] = -EINPROGRESS;
	}
	q->next_id += (int64_t)n;
	while (done < n) {
		/* the window: QEMU queues a few commands itself and stops reading the rest */
		deadline = now_ms() + q->timeout_ms;
		while (sent < n && sent - done < QMP_PIPELINE)
			if ((r = send_cmd(q, cmd, args[sent], base + (int64_t)sent, -1, deadline, err, errlen)) < 0)
				return r;
			else
				sent++;
		r = wait_reply(q, cmd, base + (int64_t)done, base + (int64_t)sent - 1, deadline, &msg, &kind, &got,
			       qerr, sizeof(qerr), err, errlen);
		if (r < 0)
			return r;
		i = (size_t)(got - base);
		if (rcs[i] != -EINPROGRESS) { /* a second reply to one command */
			json_object_put(msg);
			set_err(err, errlen, "qmp %s: two replies to one command", cmd);
			return -EBADMSG;
		}
		if (kind == QMP_MSG_ERROR) {
			gw_dbg("qmp: %s refused: %s", cmd, qerr);
			rcs[i] = -EREMOTEIO;
		} else {
			rcs[i] = 0;
			if (json_object_object_get_ex(msg, "return", &v))
				rets[i] = json_object_get(v);
		}
		json_object_put(msg);
		msg = NULL;
		while (done < n && rcs[done] != -EINPROGRESS)
			done++;
	}
	return 0;
}

int qmp_cmd(struct qmp *q, const char *cmd, struct json_object *args, struct json_object **ret, char *err,
	    size_t errlen)
{
	return run(q, cmd, args, -1, ret, err, errlen);
}

int qmp_cmdf(struct qmp *q, const char *cmd, struct json_object **ret, char *err, size_t errlen, const char *argfmt,
	     ...)
{
	struct json_object *args = NULL;
	enum json_tokener_error jerr;
	char *text = NULL;
	va_list ap;
	int r;

	va_start(ap, argfmt);
	r = vasprintf(&text, argfmt, ap);
	va_end(ap);
	if (r < 0) {
		text = NULL;
		r = -ENOMEM;
		goto out;
	}
	args = json_tokener_parse_verbose(text, &jerr);
	if (!args || !json_object_is_type(args, json_type_object)) {
		set_err(err, errlen, "qmp %s: bad arguments", cmd);
		r = -EINVAL;
		goto out;
	}
	r = run(q, cmd, args, -1, ret, err, errlen);
out:
	json_object_put(args);
	free(text);
	return r;
}

int qmp_getfd(struct qmp *q, int fd, const char *name, char *err, size_t errlen)
{
	struct json_object *args;
	int r;

	if (fd < 0) {
		set_err(err, errlen, "qmp getfd %s: no file descriptor", name);
		return -EBADF;
	}
	args = json_object_new_object();
	if (!args || json_object_object_add(args, "fdname", json_object_new_string(name)) < 0) {
		json_object_put(args);
		return -ENOMEM;
	}
	r = run(q, "getfd", args, fd, NULL, err, errlen);
	json_object_put(args);
	return r;
}

int qmp_next_event(struct qmp *q, int timeout_ms, struct json_object **ev)
{
	struct json_object *msg = NULL;
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	int r, kind, skipped;

	*ev = pop_event(q);
	if (*ev)
		return 0;
	for (skipped = 0; skipped <= QMP_MAX_SKIP; skipped++) {
		if ((r = read_msg(q, deadline, &msg)) < 0)
			return r;
		kind = qmp_msg_classify(msg, NULL, NULL, 0);
		if (kind == QMP_MSG_EVENT) {
			*ev = msg;
			return 0;
		}
		/* a late reply to a command that timed out */
		json_object_put(msg);
		msg = NULL;
		if (kind < 0)
			return -EBADMSG;
	}
	return -EBADMSG;
}

static int unix_connect(const char *path, int64_t deadline)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	for (;;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		r = -errno;
		close(fd);
		if ((r != -ENOENT && r != -ECONNREFUSED && r != -EAGAIN && r != -EINTR) || left_ms(deadline) == 0)
			return r;
		usleep(QMP_CONNECT_RETRY_MS * 1000);
	}
}

void qmp_set_timeout(struct qmp *q, int timeout_ms)
{
	q->timeout_ms = timeout_ms > 0 ? timeout_ms : QMP_DEFAULT_TIMEOUT_MS;
}

int qmp_fd(const struct qmp *q)
{
	return q->fd;
}

/* Allocates q around <fd> (owned from here on) and negotiates until <deadline>. */
static int handshake(struct qmp **out, int fd, int timeout_ms, int64_t deadline, const char *what, char *err,
		     size_t errlen)
{
	struct json_object *msg = NULL;
	struct qmp *q;
	int r;

	*out = NULL;
	q = calloc(1, sizeof(*q));
	if (!q) {
		close(fd);
		return -ENOMEM;
	}
	q->fd = fd;
	q->next_id = 1;
	qmp_set_timeout(q, timeout_ms);
	if ((r = qmp_parser_init(&q->parser)) < 0)
		goto out;
	if ((r = read_msg(q, deadline, &msg)) < 0) {
		set_err(err, errlen, "qmp: no greeting from %s: %s", what, strerror(-r));
		goto out;
	}
	if (qmp_msg_classify(msg, NULL, NULL, 0) != QMP_MSG_GREETING) {
		r = -EPROTO;
		set_err(err, errlen, "qmp: %s does not greet like QMP", what);
		goto out;
	}
	if ((r = qmp_cmd(q, "qmp_capabilities", NULL, NULL, err, errlen)) < 0)
		goto out;
	*out = q;
	q = NULL;
	r = 0;
out:
	json_object_put(msg);
	qmp_close(q);
	return r;
}

int qmp_open_fd(struct qmp **out, int fd, int timeout_ms, char *err, size_t errlen)
{
	int t = timeout_ms > 0 ? timeout_ms : QMP_DEFAULT_TIMEOUT_MS;

	*out = NULL;
	if (fd < 0)
		return -EBADF;
	return handshake(out, fd, timeout_ms, now_ms() + t, "the monitor", err, errlen);
}

int qmp_open(struct qmp **out, const char *path, int timeout_ms, char *err, size_t errlen)
{
	int t = timeout_ms > 0 ? timeout_ms : QMP_DEFAULT_TIMEOUT_MS;
	int64_t deadline = now_ms() + t;
	int fd;

	*out = NULL;
	fd = unix_connect(path, deadline);
	if (fd < 0) {
		set_err(err, errlen, "qmp: cannot connect to %s: %s", path, strerror(-fd));
		return fd;
	}
	return handshake(out, fd, timeout_ms, deadline, path, err, errlen);
}

void qmp_close(struct qmp *q)
{
	struct json_object *ev;

	if (!q)
		return;
	while ((ev = pop_event(q)))
		json_object_put(ev);
	if (q->fd >= 0)
		close(q->fd);
	qmp_parser_fini(&q->parser);
	free(q);
}
