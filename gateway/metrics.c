/* SPDX-License-Identifier: MIT */
/*
 * The daemon's counters (metrics.h): a fixed table of relaxed atomics, so
 * that counting never takes a lock nor allocates, and the Prometheus text
 * rendering of them, served over a deliberately small HTTP/1.0 server: one
 * thread, one connection at a time, a short deadline, GET /metrics only.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "log.h"
#include "metrics.h"
#include "net.h"
#include "reqio.h"

typedef atomic_uint_fast64_t counter_t;

struct tgt_counters {
	counter_t started, done, failed[GW_METRICS_FAIL_REASONS];
	counter_t bytes_in, bytes_out, rejoins;
};

/* Slot GW_METRICS_MAX_TARGETS is "(other)": names never added. */
static struct {
	pthread_mutex_t add_lock;
	atomic_int ntargets; /* published with release after the slot's name is written; names never change after */
	char names[GW_METRICS_MAX_TARGETS][WIRE_MAX_NAME + 1];
	struct tgt_counters tgt[GW_METRICS_MAX_TARGETS + 1];
	counter_t hs_failed[GW_HS_NREASONS];
	counter_t refused[GW_LIMIT_NLIMITS];
	counter_t reloads_ok, reloads_failed;
} reg = {.add_lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const fail_names[GW_METRICS_FAIL_REASONS] = {
    [WIRE_E_NONE] = "closed",	      [WIRE_E_PROTOCOL] = "protocol",	[WIRE_E_NOT_ALLOWED] = "not_allowed",
    [WIRE_E_NO_TARGET] = "no_target", [WIRE_E_BAD_TOKEN] = "bad_token", [WIRE_E_IDENTITY] = "identity",
    [WIRE_E_DIGEST] = "digest",	      [WIRE_E_TARGET] = "target",	[WIRE_E_LIMIT] = "limit",
    [WIRE_E_TRUNCATED] = "truncated", [WIRE_E_INTERNAL] = "internal",	[WIRE_E_UNSUPPORTED] = "unsupported",
    [WIRE_E_MAX + 1] = "other",
};

static const char *const hs_names[GW_HS_NREASONS] = {
    [GW_HS_TLS] = "tls",
    [GW_HS_TIMEOUT] = "timeout",
    [GW_HS_NO_SETUP] = "no_setup",
    [GW_HS_PROTOCOL] = "protocol",
    [GW_HS_NOT_ALLOWED] = "not_allowed",
    [GW_HS_NO_TARGET] = "no_target",
    [GW_HS_BAD_TOKEN] = "bad_token",
    [GW_HS_IDENTITY] = "identity",
    [GW_HS_UNSUPPORTED] = "unsupported",
    [GW_HS_TARGET] = "target",
    [GW_HS_OTHER] = "other",
};

static const char *const limit_names[GW_LIMIT_NLIMITS] = {
    [GW_LIMIT_SESSIONS] = "max_sessions",
    [GW_LIMIT_PENDING] = "max_pending",
    [GW_LIMIT_CONNECTIONS] = "max_connections",
    [GW_LIMIT_STREAMS] = "max_streams",
    [GW_LIMIT_OTHER] = "other",
};

static inline void inc(counter_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t get(counter_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Lock-free: the published prefix of names is immutable. */
static struct tgt_counters *tgt_for(const char *name)
{
	int n = atomic_load_explicit(&reg.ntargets, memory_order_acquire);

	for (int i = 0; name && i < n; i++)
		if (!strcmp(reg.names[i], name))
			return &reg.tgt[i];
	return &reg.tgt[GW_METRICS_MAX_TARGETS];
}

int gw_metrics_target_add(const char *name)
{
	size_t len = name ? strnlen(name, WIRE_MAX_NAME + 1) : 0;
	int n, r = 0;

	if (len == 0 || len > WIRE_MAX_NAME)
		return -EINVAL;
	pthread_mutex_lock(&reg.add_lock);
	n = atomic_load_explicit(&reg.ntargets, memory_order_relaxed);
	for (int i = 0; i < n; i++)
		if (!strcmp(reg.names[i], name))
			goto out;
	if (n >= GW_METRICS_MAX_TARGETS) {
		r = -ENOSPC;
		goto out;
	}
	memcpy(reg.names[n], name, len + 1);
	atomic_store_explicit(&reg.ntargets, n + 1, memory_order_release);
out:
	pthread_mutex_unlock(&reg.add_lock);
	return r;
}

void gw_metrics_session_started(const char *target)
{
	inc(&tgt_for(target)->started, 1);
}

void gw_metrics_session_done(const char *target)
{
	inc(&tgt_for(target)->done, 1);
}

void gw_metrics_session_failed(const char *target, int wire_code)
{
	int i = wire_code >= 0 && wire_code <= WIRE_E_MAX ? wire_code : WIRE_E_MAX + 1;

	inc(&tgt_for(target)->failed[i], 1);
}

void gw_metrics_bytes(const char *target, uint64_t in, uint64_t out)
{
	struct tgt_counters *t = tgt_for(target);

	if (in)
		inc(&t->bytes_in, in);
	if (out)
		inc(&t->bytes_out, out);
}

void gw_metrics_flow_update(struct gw_metrics_flow *f, const char *target, uint64_t in_total, uint64_t out_total)
{
	/* totals only grow; a smaller one (never expected) counts nothing rather than wrapping */
	gw_metrics_bytes(target, in_total > f->in ? in_total - f->in : 0, out_total > f->out ? out_total - f->out : 0);
	if (in_total > f->in)
		f->in = in_total;
	if (out_total > f->out)
		f->out = out_total;
}

void gw_metrics_rejoin(const char *target)
{
	inc(&tgt_for(target)->rejoins, 1);
}

void gw_metrics_handshake_failed(enum gw_hs_reason reason)
{
	inc(&reg.hs_failed[(unsigned)reason < GW_HS_NREASONS ? reason : GW_HS_OTHER], 1);
}

enum gw_hs_reason gw_metrics_hs_reason_for_wire(int wire_code)
{
	switch (wire_code) {
	case WIRE_E_PROTOCOL:
		return GW_HS_PROTOCOL;
	case WIRE_E_NOT_ALLOWED:
		return GW_HS_NOT_ALLOWED;
	case WIRE_E_NO_TARGET:
		return GW_HS_NO_TARGET;
	case WIRE_E_BAD_TOKEN:
		return GW_HS_BAD_TOKEN;
	case WIRE_E_IDENTITY:
		return GW_HS_IDENTITY;
	case WIRE_E_UNSUPPORTED:
		return GW_HS_UNSUPPORTED;
	case WIRE_E_TARGET:
		return GW_HS_TARGET;
	default:
		return GW_HS_OTHER;
	}
}

void gw_metrics_refused(enum gw_limit limit)
{
	inc(&reg.refused[(unsigned)limit < GW_LIMIT_NLIMITS ? limit : GW_LIMIT_OTHER], 1);
}

void gw_metrics_reload(bool ok)
{
	inc(ok ? &reg.reloads_ok : &reg.reloads_failed, 1);
}

void gw_metrics_reset(void)
{
	pthread_mutex_lock(&reg.add_lock);
	atomic_store(&reg.ntargets, 0);
	memset(reg.names, 0, sizeof(reg.names));
	for (int i = 0; i <= GW_METRICS_MAX_TARGETS; i++) {
		struct tgt_counters *t = &reg.tgt[i];

		atomic_store(&t->started, 0);
		atomic_store(&t->done, 0);
		atomic_store(&t->bytes_in, 0);
		atomic_store(&t->bytes_out, 0);
		atomic_store(&t->rejoins, 0);
		for (int k = 0; k < GW_METRICS_FAIL_REASONS; k++)
			atomic_store(&t->failed[k], 0);
	}
	for (int k = 0; k < GW_HS_NREASONS; k++)
		atomic_store(&reg.hs_failed[k], 0);
	for (int k = 0; k < GW_LIMIT_NLIMITS; k++)
		atomic_store(&reg.refused[k], 0);
	atomic_store(&reg.reloads_ok, 0);
	atomic_store(&reg.reloads_failed, 0);
	pthread_mutex_unlock(&reg.add_lock);
}

size_t gw_prom_escape_label(char *dst, size_t cap, const char *src)
{
	size_t n = 0;

	for (; *src; src++) {
		char e = *src == '\\' ? '\\' : *src == '"' ? '"' : *src == '\n' ? 'n' : 0;

		if (e) {
			if (n + 1 < cap)
				dst[n] = '\\';
			n++;
		}
		if (n + 1 < cap)
			dst[n] = e ? e : *src;
		n++;
	}
	if (cap)
		dst[n < cap ? n : cap - 1] = '\0';
	return n;
}

/* The targets to render: every added one, and "(other)" once it counted something. */
static int render_targets(const char **names, struct tgt_counters **c)
{
	int n = atomic_load_explicit(&reg.ntargets, memory_order_acquire), k = 0;
	struct tgt_counters *o = &reg.tgt[GW_METRICS_MAX_TARGETS];
	uint64_t any;

	for (int i = 0; i < n; i++) {
		names[k] = reg.names[i];
		c[k++] = &reg.tgt[i];
	}
	any = get(&o->started) | get(&o->done) | get(&o->bytes_in) | get(&o->bytes_out) | get(&o->rejoins);
	for (int i = 0; i < GW_METRICS_FAIL_REASONS; i++)
		any |= get(&o->failed[i]);
	if (any) {
		names[k] = "(other)";
		c[k++] = o;
	}
	return k;
}

static void header(FILE *f, const char *name, const char *type, const char *help)
{
	/* HELP text escapes only backslash and newline; ours are constants without either. */
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One per-target counter family; <off> is the counter's offset in struct tgt_counters. */
static void per_target(FILE *f, const char *name, const char *help, const char **names, struct tgt_counters **c, int n,
		       size_t off)
{
	char esc[4 * WIRE_MAX_NAME + 16];

	header(f, name, "counter", help);
	for (int i = 0; i < n; i++) {
		gw_prom_escape_label(esc, sizeof(esc), names[i]);
		fprintf(f, "%s{target=\"%s\"} %llu\n", name, esc,
			(unsigned long long)get((counter_t *)((char *)c[i] + off)));
	}
}

int gw_metrics_render(FILE *f)
{
	const char *names[GW_METRICS_MAX_TARGETS + 1];
	struct tgt_counters *c[GW_METRICS_MAX_TARGETS + 1];
	char esc[4 * WIRE_MAX_NAME + 16];
	int n = render_targets(names, c);

	header(f, "migrelay_sessions_active", "gauge", "Sessions admitted and not yet ended.");
	for (int i = 0; i < n; i++) {
		uint64_t ended = get(&c[i]->done), started;

		for (int k = 0; k < GW_METRICS_FAIL_REASONS; k++)
			ended += get(&c[i]->failed[k]);
		started = get(&c[i]->started); /* read last: a session counted as ended was counted as started before */
		gw_prom_escape_label(esc, sizeof(esc), names[i]);
		fprintf(f, "migrelay_sessions_active{target=\"%s\"} %llu\n", esc,
			(unsigned long long)(started > ended ? started - ended : 0));
	}
	per_target(f, "migrelay_sessions_started_total", "Sessions admitted (WELCOME sent).", names, c, n,
		   offsetof(struct tgt_counters, started));
	per_target(f, "migrelay_sessions_verified_total", "Sessions that ended with every stream verified.", names, c,
		   n, offsetof(struct tgt_counters, done));
	header(f, "migrelay_sessions_failed_total", "counter",
	       "Sessions that ended without every stream verified, by the first failure's reason.");
	for (int i = 0; i < n; i++) {
		gw_prom_escape_label(esc, sizeof(esc), names[i]);
		for (int k = 0; k < GW_METRICS_FAIL_REASONS; k++)
			fprintf(f, "migrelay_sessions_failed_total{target=\"%s\",reason=\"%s\"} %llu\n", esc,
				fail_names[k], (unsigned long long)get(&c[i]->failed[k]));
	}
	per_target(f, "migrelay_stream_bytes_received_total", "Stream bytes received from peers (before compression).",
		   names, c, n, offsetof(struct tgt_counters, bytes_in));
	per_target(f, "migrelay_stream_bytes_sent_total", "Stream bytes sent to peers (before compression).", names, c,
		   n, offsetof(struct tgt_counters, bytes_out));
	per_target(f, "migrelay_rejoins_total", "Connections that rejoined their session.", names, c, n,
		   offsetof(struct tgt_counters, rejoins));
	header(f, "migrelay_handshake_failures_total", "counter",
	       "Connections that never became part of a session, by reason.");
	for (int k = 0; k < GW_HS_NREASONS; k++)
		fprintf(f, "migrelay_handshake_failures_total{reason=\"%s\"} %llu\n", hs_names[k],
			(unsigned long long)get(&reg.hs_failed[k]));
	header(f, "migrelay_refused_total", "counter", "Connections or sessions refused by a limit, by limit.");
	for (int k = 0; k < GW_LIMIT_NLIMITS; k++)
		fprintf(f, "migrelay_refused_total{limit=\"%s\"} %llu\n", limit_names[k],
			(unsigned long long)get(&reg.refused[k]));
	header(f, "migrelay_reloads_total", "counter", "Configuration reloads, by result.");
	fprintf(f, "migrelay_reloads_total{result=\"ok\"} %llu\nmigrelay_reloads_total{result=\"failed\"} %llu\n",
		(unsigned long long)get(&reg.reloads_ok), (unsigned long long)get(&reg.reloads_failed));
	return ferror(f) ? -EIO : 0;
}

int gw_metrics_render_alloc(char **out, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	int r;

	if (!f)
		return -ENOMEM;
	r = gw_metrics_render(f);
	if (fclose(f) != 0 && r == 0)
		r = -ENOMEM;
	if (r < 0) {
		free(buf);
		return -ENOMEM;
	}
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

/* ---- HTTP ---- */

static bool is_tchar(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       strchr("!#$%&'*+-.^_`|~", c);
}

int gw_http_parse_request(const char *buf, size_t len)
{
	const char *end = NULL, *p, *sp1, *sp2, *eol;
	size_t i;

	for (i = 0; i + 1 < len; i++) {
		if (buf[i] == '\n' && buf[i + 1] == '\n') {
			end = buf + i;
			break;
		}
		if (i + 3 < len && !memcmp(buf + i, "\r\n\r\n", 4)) {
			end = buf + i;
			break;
		}
	}
	if (!end)
		return len >= GW_METRICS_MAX_REQUEST ? 431 : 0;
	if ((size_t)(end - buf) >= GW_METRICS_MAX_REQUEST)
		return 431;
	if (memchr(buf, '\0', (size_t)(end - buf)))
		return 400;
	eol = memchr(buf, '\n', len); /* found: the head ends with one */
	if (eol > buf && eol[-1] == '\r')
		eol--;
	/* request-line = method SP request-target SP HTTP-version (RFC 9112 §3) */
	for (p = buf; p < eol && is_tchar(*p); p++)
		;
	sp1 = p;
	if (sp1 == buf || sp1 >= eol || *sp1 != ' ')
		return 400;
	for (p = sp1 + 1; p<eol && * p> ' ' && *p != 0x7f; p++)
		;
	sp2 = p;
	if (sp2 == sp1 + 1 || sp2 >= eol || *sp2 != ' ')
		return 400;
	p = sp2 + 1;
	if (eol - p != 8 || memcmp(p, "HTTP/", 5) || p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' ||
	    p[7] > '9')
		return 400;
	if (p[5] != '1')
		return 505;
	if (sp1 - buf != 3 || memcmp(buf, "GET", 3))
		return 405;
	if ((sp2 - sp1 - 1 == 8 && !memcmp(sp1 + 1, "/metrics", 8)) ||
	    (sp2 - sp1 - 1 > 8 && !memcmp(sp1 + 1, "/metrics?", 9)))
		return 200;
	return 404;
}

struct gw_metrics_http {
	int lfd;
	int stop[2]; /* a byte on stop[1] ends the thread */
	pthread_t thr;
	char addr[INET6_ADDRSTRLEN + 16];
};

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 431:
		return "Request Header Fields Too Large";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Internal Server Error";
	}
}

/* Metrics thread: one connection, start to end, within GW_METRICS_DEADLINE_MS. Closes <fd>. */
static void serve_one(int fd)
{
	int64_t deadline = gw_reqio_now_ms() + GW_METRICS_DEADLINE_MS;
	char req[GW_METRICS_MAX_REQUEST], head[256];
	char *body = NULL;
	size_t got = 0, blen = 0;
	int status = 0, hl;

	while (!status) {
		ssize_t n = gw_reqio_recv(fd, req + got, sizeof(req) - got, deadline);

		if (n <= 0)
			goto out; /* closed, failed or too slow: no answer at all */
		got += (size_t)n;
		status = gw_http_parse_request(req, got);
	}
	if (status == 200 && gw_metrics_render_alloc(&body, &blen) < 0)
		status = 500;
	if (status != 200) {
		free(body);
		body = NULL;
		blen = 0;
	}
	hl = snprintf(head, sizeof(head),
		      "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
		      status, reason_phrase(status),
		      status == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8", blen,
		      status == 405 ? "Allow: GET\r\n" : "");
	if (gw_reqio_send(fd, head, (size_t)hl, deadline) == 0 && blen)
		(void)!gw_reqio_send(fd, body, blen, deadline);
	shutdown(fd, SHUT_WR);
out:
	free(body);
	close(fd);
}

static void *http_main(void *arg)
{
	struct gw_metrics_http *m = arg;

	for (;;) {
		struct pollfd pfd[2] = {{.fd = m->lfd, .events = POLLIN}, {.fd = m->stop[0], .events = POLLIN}};
		int fd;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			gw_err_r(-errno, "metrics: poll");
			break;
		}
		if (pfd[1].revents)
			break;
		if ((fd = gw_reqio_accept(m->lfd)) >= 0)
			serve_one(fd);
	}
	return NULL;
}

static void fmt_sockname(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?";

	buf[0] = '\0';
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return;
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else if (ss.ss_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

int gw_metrics_http_start(struct gw_metrics_http **out, const char *hostport, char *why, size_t whylen)
{
	struct gw_metrics_http *m = calloc(1, sizeof(*m));
	int r;

	if (!m) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	m->stop[0] = m->stop[1] = -1;
	why[0] = '\0';
	m->lfd = net_tcp_listen(hostport, why, whylen);
	if (m->lfd < 0) {
		r = m->lfd;
		free(m);
		if (!why[0])
			snprintf(why, whylen, "--metrics %.100s: %s", hostport, strerror(-r));
		return r;
	}
	fmt_sockname(m->lfd, m->addr, sizeof(m->addr));
	if (pipe2(m->stop, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	if ((r = pthread_create(&m->thr, NULL, http_main, m)) != 0) {
		r = -r;
		goto fail;
	}
	*out = m;
	return 0;
fail:
	snprintf(why, whylen, "--metrics %.100s: %s", hostport, strerror(-r));
	if (m->stop[0] >= 0) {
		close(m->stop[0]);
		close(m->stop[1]);
	}
	close(m->lfd);
	free(m);
	return r;
}

const char *gw_metrics_http_address(const struct gw_metrics_http *m)
{
	return m->addr;
}

void gw_metrics_http_stop(struct gw_metrics_http *m)
{
	if (!m)
		return;
	(void)!write(m->stop[1], "x", 1);
	pthread_join(m->thr, NULL);
	close(m->stop[0]);
	close(m->stop[1]);
	close(m->lfd);
	free(m);
}
