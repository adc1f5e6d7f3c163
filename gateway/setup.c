/* SPDX-License-Identifier: MIT */
#include "setup.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "log.h"
#include "net.h"
#include "session.h"

const char *gw_link_error(const struct gw_link *l)
{
	return l->tls ? mr_tls_last_error(l->tls) : mr_conn_last_error(l->conn);
}

void gw_link_free(struct gw_link *l)
{
	if (l->tls) {
		mr_tls_free(l->tls);
		if (l->fd >= 0)
			close(l->fd);
	}
	mr_conn_free(l->conn); /* closes its own socket */
	*l = (struct gw_link){.fd = -1};
}

static ssize_t link_send(const struct gw_link *l, const void *p, size_t len)
{
	return l->tls ? mr_tls_send(l->tls, p, len) : mr_conn_send(l->conn, p, len);
}

static ssize_t link_recv_all(const struct gw_link *l, void *p, size_t len)
{
	return l->tls ? mr_tls_recv_all(l->tls, p, len) : mr_conn_recv_all(l->conn, p, len);
}

static void link_bye(const struct gw_link *l)
{
	if (l->tls)
		mr_tls_bye(l->tls);
	else
		mr_conn_bye(l->conn);
}

int gw_setup_send(const struct gw_link *l, uint8_t type, uint8_t flags, const uint8_t *p, uint32_t len)
{
	uint8_t buf[WIRE_HDR_LEN + WIRE_MAX_CONTROL];

	if (len > WIRE_MAX_CONTROL)
		return -EMSGSIZE;
	/* HELLO, JOIN and WELCOME travel on stream 0; a session-wide ERROR names no stream (PROTOCOL.md §3). */
	wire_hdr_encode(buf, &(struct wire_hdr){.type = type,
						.flags = flags,
						.stream = type == WIRE_T_ERROR ? WIRE_STREAM_SESSION : 0,
						.len = len});
	if (len)
		memcpy(buf + WIRE_HDR_LEN, p, len);
	return link_send(l, buf, WIRE_HDR_LEN + len) < 0 ? -EPIPE : 0;
}

/* Bounds the next receive wait by the time left; false when none is. */
static bool wait_bound(int fd, uint64_t deadline_ns)
{
	uint64_t now = gw_now_ns();
	int ms;

	if (now >= deadline_ns)
		return false;
	ms = (int)((deadline_ns - now + 999999) / 1000000);
	net_set_timeouts(fd, ms, ms);
	return true;
}

/*
 * Maps a receive result of <n> of <want> bytes. TLS 1.3: a server that
 * refuses our certificate says so with an alert (or a reset) on the first
 * read after the handshake, so a failure there other than silence is
 * -EACCES; later in the frame it is a lost connection.
 */
static int recv_result(ssize_t n, size_t want, bool first)
{
	if (n == (ssize_t)want)
		return 0;
	if (n == 0)
		return -ECONNRESET;
	if (n == -EAGAIN || n == -ETIMEDOUT)
		return -ETIMEDOUT;
	return first ? -EACCES : -ECONNRESET;
}

int gw_setup_recv(const struct gw_link *l, uint64_t deadline_ns, struct wire_hdr *h, uint8_t *p)
{
	uint8_t hb[WIRE_HDR_LEN];
	int r;

	if (!wait_bound(l->fd, deadline_ns))
		return -ETIMEDOUT;
	if ((r = recv_result(link_recv_all(l, hb, sizeof(hb)), sizeof(hb), true)) < 0)
		return r;
	/* The cap is checked before anything more is awaited (PROTOCOL.md §3). */
	if (wire_hdr_parse(h, hb, hb + sizeof(hb)) < 0 || h->len > WIRE_MAX_CONTROL)
		return -EPROTO;
	if (!h->len)
		return 0;
	if (!wait_bound(l->fd, deadline_ns))
		return -ETIMEDOUT;
	return recv_result(link_recv_all(l, p, h->len), h->len, false);
}

int gw_setup_welcome(const struct gw_link *l, const struct gw_session *s, uint16_t idx)
{
	const struct gw_session_cfg *cfg = gw_session_cfg_get(s);
	struct wire_welcome w = {.session_id = gw_session_id(s),
				 .conn_index = idx,
				 .max_streams = cfg->max_streams,
				 .window = cfg->window,
				 .chunk_size = cfg->chunk_size};
	uint8_t wp[WIRE_WELCOME_LEN];
	/* Every WELCOME of a session carries the flags of what its HELLO asked for and got (§4.2). */
	uint8_t flags =
	    (uint8_t)((cfg->plaintext ? WIRE_WELCOME_F_PLAINTEXT : 0) | (cfg->open_ack ? WIRE_WELCOME_F_OPENED : 0));

	memcpy(w.token, gw_session_token(s), WIRE_TOKEN_LEN);
	wire_welcome_encode(wp, &w);
	/* Plaintext: the switch comes right after the WELCOME, before anything more is read or sent (§4.4). */
	if (gw_setup_send(l, WIRE_T_WELCOME, flags, wp, sizeof(wp)) < 0 ||
	    (cfg->plaintext && (!l->tls || mr_tls_set_plaintext(l->tls) < 0)))
		return -EPIPE;
	return 0;
}

void gw_setup_refuse(const struct gw_link *l, uint16_t code, const char *text)
{
	uint8_t p[2 + WIRE_MAX_ERROR_TEXT];
	int n = wire_error_encode(p, code, text);

	(void)!gw_setup_send(l, WIRE_T_ERROR, 0, p, (uint32_t)n);
	link_bye(l);
}

bool gw_wire_open_ack(void)
{
	const char *e = getenv("MIGRELAY_WIRE_REVISION");

	return !e || strcmp(e, "1.1") != 0;
}

/* --- client --- */

static int fail(struct gw_setup_fail *f, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct gw_setup_fail *f, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->text, sizeof(f->text), fmt, ap);
	va_end(ap);
	return r;
}

int gw_setup_request(const struct gw_link *l, uint8_t type, const uint8_t *p, uint32_t len, uint16_t idx, uint8_t want,
		     const char *what, uint64_t deadline_ns, struct wire_welcome *w, struct gw_setup_fail *f)
{
	bool plaintext = (want & WIRE_WELCOME_F_PLAINTEXT) != 0;
	uint8_t buf[WIRE_MAX_CONTROL];
	struct wire_errmsg em;
	struct wire_hdr h;
	bool got;
	int r;

	f->wire_code = 0;
	f->text[0] = '\0';
	/* If the send fails, the server may have refused us already: the reply read says why. */
	if (plaintext && !l->tls)
		return fail(f, -EINVAL, "the plaintext mode is for TLS connections only");
	(void)!gw_setup_send(l, type, 0, p, len);
	r = gw_setup_recv(l, deadline_ns, &h, buf);
	if (r == -ECONNRESET)
		return fail(f, r, "the server closed the connection after our %s without an answer", what);
	if (r == -ETIMEDOUT)
		return fail(f, r, "no answer to %s: %s", what, gw_link_error(l)[0] ? gw_link_error(l) : "timed out");
	if (r == -EACCES)
		return fail(f, r, "no answer to %s: %s", what, gw_link_error(l));
	if (r < 0 || (h.type != WIRE_T_WELCOME && h.type != WIRE_T_ERROR))
		return fail(f, -EPROTO,
			    "the server answered %s with a malformed frame (is it a migrelay server of this version?)",
			    what);
	if (h.type == WIRE_T_ERROR) {
		if (wire_error_decode(&em, buf, h.len) < 0)
			return fail(f, -EPROTO, "the server sent a malformed ERROR frame");
		f->wire_code = em.code;
		return fail(f, -EREMOTEIO, "the server refused %s: %s: %s", what, wire_error_name(em.code), em.text);
	}
	if (wire_welcome_decode(w, buf, h.len) < 0 || w->conn_index != idx)
		return fail(f, -EPROTO, "the server sent a malformed WELCOME for %s", what);
	got = (h.flags & WIRE_WELCOME_F_PLAINTEXT) != 0;
	if (got != plaintext)
		return fail(f, -EPROTO,
			    "the server answered %s for the %s mode, but this session uses %s (protocol error)", what,
			    got ? "plaintext" : "TLS", plaintext ? "plaintext" : "TLS");
	if ((h.flags & WIRE_WELCOME_F_OPENED) != (want & WIRE_WELCOME_F_OPENED))
		return fail(
		    f, -EPROTO,
		    "the server answered %s %s OPEN acknowledgements, but this session %s them (protocol error)", what,
		    (h.flags & WIRE_WELCOME_F_OPENED) ? "with" : "without",
		    (want & WIRE_WELCOME_F_OPENED) ? "asked for" : "did not ask for");
	if (plaintext && mr_tls_set_plaintext(l->tls) < 0)
		return fail(f, -EPROTO, "cannot switch to plaintext after the answer to %s: %s", what,
			    gw_link_error(l));
	return 0;
}

/* --- server --- */

/* Logs and refuses with ERROR; returns -EACCES for the caller to pass on. */
static int refuse(const struct gw_link *l, const char *peer, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(const struct gw_link *l, const char *peer, int code, const char *fmt, ...)
{
	char text[WIRE_MAX_ERROR_TEXT + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	gw_ratelimited(GW_LOG_WARN, "%s: refused: %s", peer, text);
	/* A refusal by a limit is counted where the limit is known (gw_metrics_refused). */
	if (code != WIRE_E_LIMIT)
		gw_metrics_handshake_failed(gw_metrics_hs_reason_for_wire(code));
	gw_setup_refuse(l, (uint16_t)code, text);
	return -EACCES;
}

static struct gw_target *find_target(const struct gw_setup_srv *c, const char *name)
{
	for (int i = 0; i < c->ntargets; i++)
		if (!strcmp(c->targets[i].name, name))
			return &c->targets[i];
	return NULL;
}

/*
 * The rule (serve --help, SECURITY.md): a target with --allow-for patterns
 * admits exactly those, whatever --allow says, so that restricting one
 * target cannot be undone by a pattern meant for the others; a target
 * without takes --allow; with neither, every peer our CA, PSK file or unix
 * socket authenticates.
 */
static bool identity_allowed(const struct gw_setup_srv *c, const struct gw_target *t, const char *id)
{
	if (t->allow.n)
		return authz_allowed(&t->allow, id);
	if (c->allow->n)
		return authz_allowed(c->allow, id);
	return true;
}

/*
 * The HELLO checks that need nothing but the HELLO and the configuration
 * (PROTOCOL.md §2.2). Returns 0 with *tgt set, or refuses and returns -EACCES.
 */
static int hello_check(const struct gw_setup_srv *c, const struct gw_link *l, const char *peer, const char *identity,
		       const struct wire_hello *hello, struct gw_target **tgt)
{
	if (hello->version != WIRE_VERSION)
		return refuse(l, peer, WIRE_E_UNSUPPORTED, "protocol version %u not supported (this server speaks %d)",
			      hello->version, WIRE_VERSION);
	if ((hello->flags & WIRE_HELLO_F_PLAINTEXT) && !l->tls)
		return refuse(l, peer, WIRE_E_UNSUPPORTED,
			      "the plaintext mode is for TLS connections; this one has no TLS inside (leave "
			      "--insecure-plaintext out)");
	if ((hello->flags & WIRE_HELLO_F_PLAINTEXT) && !c->plaintext)
		return refuse(
		    l, peer, WIRE_E_UNSUPPORTED,
		    "this server does not offer the plaintext mode (start `migrelay serve` with --insecure-plaintext "
		    "to offer it, or leave --insecure-plaintext out on the client to use TLS)");
	if (!(*tgt = find_target(c, hello->target)))
		return refuse(l, peer, WIRE_E_NO_TARGET, "no target named \"%s\" on this server", hello->target);
	if (!identity_allowed(c, *tgt, identity))
		return refuse(l, peer, WIRE_E_NOT_ALLOWED, "identity \"%.120s\" is not allowed to use target %s",
			      identity, (*tgt)->name);
	if (hello->nconns > c->max_conns) {
		gw_metrics_refused(GW_LIMIT_CONNECTIONS);
		return refuse(l, peer, WIRE_E_LIMIT,
			      "%u connections asked for; this server allows %d per session (--max-connections)",
			      hello->nconns, c->max_conns);
	}
	if ((hello->multifd || hello->ndevices) && (*tgt)->kind != GW_TGT_QMP)
		return refuse(l, peer, WIRE_E_UNSUPPORTED, "target %s is not a QEMU target: no multifd or disks",
			      (*tgt)->name);
	/* Post-copy and resume (PROTOCOL.md §4.1, revision 1.1): only a QEMU target has a guest. */
	if ((hello->flags & (WIRE_HELLO_F_POSTCOPY | WIRE_HELLO_F_RESUME)) && (*tgt)->kind != GW_TGT_QMP)
		return refuse(l, peer, WIRE_E_UNSUPPORTED, "target %s is not a QEMU target: no post-copy or resume",
			      (*tgt)->name);
	/* The main stream, every multifd channel and one NBD stream per disk are open at once. */
	if (1 + hello->multifd + hello->ndevices > c->max_streams) {
		gw_metrics_refused(GW_LIMIT_STREAMS);
		return refuse(l, peer, WIRE_E_LIMIT,
			      "%u multifd channel(s) and %u disk(s) need %u streams open at once; this server allows "
			      "%u (--max-streams)",
			      hello->multifd, hello->ndevices, 1 + hello->multifd + hello->ndevices, c->max_streams);
	}
	return 0;
}

/* A session for <hello>; gw_session_new draws its id and token. 0 or -errno. */
static int hello_session(const struct gw_setup_srv *c, const struct wire_hello *hello, const char *identity,
			 const struct gw_target *tgt, struct gw_session **out)
{
	struct gw_session_cfg sc = {.server = true,
				    .window = c->window,
				    .chunk_size = GW_DEFAULT_CHUNK,
				    .max_streams = c->max_streams,
				    .compress = (hello->flags & WIRE_HELLO_F_ZSTD) != 0,
				    .zlevel = 3,
				    .reconnect_ms = c->reconnect_ms,
				    .keepalive_ms = c->keepalive_ms,
				    .idle_ms = c->idle_ms,
				    .plaintext = (hello->flags & WIRE_HELLO_F_PLAINTEXT) != 0,
				    .open_ack = (hello->flags & WIRE_HELLO_F_OPENED) != 0,
				    .hello = *hello,
				    .nconns = hello->nconns};

	/* For logs only: JOIN compares the registry's whole copy of the identity. */
	snprintf(sc.identity, sizeof(sc.identity), "%s", identity);
	snprintf(sc.target, sizeof(sc.target), "%s", tgt->name);
	return gw_session_new(out, &sc);
}

static int serve_hello(const struct gw_setup_srv *c, const struct gw_link *l, const char *peer, const char *identity,
		       const uint8_t *p, uint32_t len, struct gw_admitted *a)
{
	char why[WIRE_MAX_ERROR_TEXT + 1] = "";
	struct wire_hello hello;
	struct gw_target *tgt = NULL;
	struct gw_session *s = NULL;
	int r;

	/* As a server of revision 1.1 would: it knows neither the OPENED flag nor the pre-flight TLVs (§8). */
	if (wire_hello_decode(&hello, p, len) < 0 ||
	    (((hello.flags & WIRE_HELLO_F_OPENED) || hello.pf.have) && !gw_wire_open_ack()))
		return refuse(l, peer, WIRE_E_PROTOCOL, "malformed HELLO");
	if ((r = hello_check(c, l, peer, identity, &hello, &tgt)) < 0)
		return r;
	/* Admission is complete before the target is touched: a refused HELLO leaves QEMU as it was. */
	if ((r = gw_registry_reserve(c->reg, identity, c->max_per_identity)) == -EDQUOT) {
		gw_metrics_refused(GW_LIMIT_SESSIONS);
		return refuse(l, peer, WIRE_E_LIMIT,
			      "identity \"%.120s\" already holds %d session(s) (--max-sessions-per-identity)", identity,
			      c->max_per_identity);
	}
	if (r < 0) {
		gw_metrics_refused(GW_LIMIT_SESSIONS);
		return refuse(l, peer, WIRE_E_LIMIT, "server busy: %d sessions running (--max-sessions)",
			      c->reg->max_sessions);
	}
	if (hello_session(c, &hello, identity, tgt, &s) < 0) {
		gw_registry_unreserve(c->reg, identity);
		return refuse(l, peer, WIRE_E_INTERNAL, "out of memory or no random numbers");
	}
	if (gw_target_session_init(s, tgt, why, sizeof(why)) < 0) {
		gw_session_close(s);
		gw_registry_unreserve(c->reg, identity);
		return refuse(l, peer, WIRE_E_TARGET, "%s", why);
	}
	if (gw_registry_add(c->reg, s, identity, &a->e) < 0) {
		gw_session_close(s);
		return refuse(l, peer, WIRE_E_INTERNAL, "out of memory");
	}
	if (gw_setup_welcome(l, s, 0) < 0) {
		gw_ratelimited(GW_LOG_WARN, "%s: session setup failed after WELCOME: %s", peer, gw_link_error(l));
		gw_registry_drop(c->reg, a->e);
		return -EPIPE;
	}
	gw_info("session %016llx: %s (%.200s) for target %s, %u connection(s)%s%s",
		(unsigned long long)gw_session_id(s), peer, identity, tgt->name, hello.nconns,
		(hello.flags & WIRE_HELLO_F_ZSTD) ? ", zstd" : "",
		gw_session_cfg_get(s)->plaintext ? ", INSECURE PLAINTEXT" : "");
	if (gw_session_cfg_get(s)->plaintext)
		gw_warn("session %016llx: " GW_PLAINTEXT_WARNING, (unsigned long long)gw_session_id(s));
	a->idx = 0;
	a->join = false;
	return 0;
}

static int serve_join(const struct gw_setup_srv *c, const struct gw_link *l, const char *peer, const char *identity,
		      const uint8_t *p, uint32_t len, uint64_t deadline_ns, struct gw_admitted *a)
{
	struct gw_reg_entry *e;
	struct gw_session *s;
	struct wire_join j;
	uint16_t code;
	uint64_t now, wait_ms;
	bool gone;
	int r;

	if (wire_join_decode(&j, p, len) < 0)
		return refuse(l, peer, WIRE_E_PROTOCOL, "malformed JOIN");
	if ((r = gw_registry_find(c->reg, j.session_id, j.token, identity, deadline_ns, &e, &code)) < 0)
		return code == WIRE_E_IDENTITY
			   ? refuse(l, peer, code, "JOIN refused: identity \"%.100s\" is not the session's identity",
				    identity)
			   : refuse(l, peer, code, "JOIN refused: no such session or wrong token");
	s = e->s;
	if (j.conn_index >= gw_session_nconns(s)) {
		gw_registry_put(c->reg, e);
		return refuse(l, peer, WIRE_E_PROTOCOL, "JOIN refused: connection index %u outside 0..%d", j.conn_index,
			      gw_session_nconns(s) - 1);
	}
	if (gw_registry_join_lock(e, deadline_ns) < 0) {
		gw_registry_put(c->reg, e);
		gw_metrics_refused(GW_LIMIT_OTHER);
		return refuse(l, peer, WIRE_E_LIMIT,
			      "JOIN refused: other JOINs of this session did not finish in time");
	}
	/* A client rejoins as soon as it sees its end close, maybe a moment before this end has read the close. */
	now = gw_now_ns();
	wait_ms = now < deadline_ns ? (deadline_ns - now) / 1000000 : 0;
	gone = gw_session_conn_gone(s, j.conn_index, wait_ms < 1000 ? (int)wait_ms : 1000);
	if (!gone || gw_setup_welcome(l, s, j.conn_index) < 0) {
		gw_registry_join_unlock(e);
		gw_registry_put(c->reg, e);
		if (!gone)
			return refuse(l, peer, WIRE_E_PROTOCOL,
				      "JOIN refused: connection %u is already there, or the session failed",
				      j.conn_index);
		gw_ratelimited(GW_LOG_WARN, "%s: JOIN failed after WELCOME: %s", peer, gw_link_error(l));
		return -EPIPE;
	}
	if (gw_session_cfg_get(s)->plaintext)
		gw_dbg("session %016llx: connection %u joined in plaintext", (unsigned long long)e->id, j.conn_index);
	a->e = e;
	a->idx = j.conn_index;
	a->join = true;
	return 0;
}

int gw_setup_serve(const struct gw_setup_srv *c, const struct gw_link *l, const char *peer, const char *identity,
		   uint64_t deadline_ns, struct gw_admitted *a)
{
	uint8_t p[WIRE_MAX_CONTROL];
	struct wire_hdr h;
	int r = gw_setup_recv(l, deadline_ns, &h, p);

	if (r == -EPROTO || (r == 0 && h.type != WIRE_T_HELLO && h.type != WIRE_T_JOIN))
		return refuse(l, peer, WIRE_E_PROTOCOL, "expected HELLO or JOIN, got a frame of type %u",
			      r == 0 ? h.type : 0);
	if (r < 0) {
		gw_metrics_handshake_failed(r == -ETIMEDOUT    ? GW_HS_TIMEOUT
					    : r == -ECONNRESET ? GW_HS_NO_SETUP
							       : GW_HS_OTHER);
		gw_ratelimited(GW_LOG_WARN, "%s: no HELLO or JOIN after the handshake: %s", peer,
			       r == -ETIMEDOUT	  ? "setup deadline passed (--handshake-timeout)"
			       : r == -ECONNRESET ? "closed"
						  : gw_link_error(l));
		return r;
	}
	if (h.type == WIRE_T_HELLO)
		return serve_hello(c, l, peer, identity, p, h.len, a);
	return serve_join(c, l, peer, identity, p, h.len, deadline_ns, a);
}

void gw_setup_handover(const struct gw_setup_srv *c, struct gw_admitted *a, struct gw_link *l, const char *peer)
{
	struct gw_reg_entry *e = a->e;
	struct mr_conn *conn = NULL;
	int r = 0;

	net_set_timeouts(l->fd, 0, 0);
	if (l->tls)
		r = mr_conn_from_tls(&conn, l->tls, l->fd); /* owns the session and its socket, whatever the result */
	else
		conn = l->conn;
	*l = (struct gw_link){.fd = -1};
	if (a->join) {
		/* A first JOIN fills an empty slot; a rejoin replaces a dead connection and re-sends what it carried.
		 */
		if (r < 0 || gw_session_replace_conn(e->s, a->idx, conn) < 0)
			gw_warn("%s: JOIN of connection %u failed", peer, a->idx);
		else
			gw_registry_joined(c->reg, e, a->idx);
		gw_registry_join_unlock(e);
		gw_registry_put(c->reg, e);
		return;
	}
	if (r < 0 || gw_session_add_conn(e->s, 0, conn) < 0) {
		gw_err("%s: cannot start session", peer);
		gw_registry_ready(c->reg, e);
		gw_registry_drop(c->reg, e);
		return;
	}
	gw_registry_ready(c->reg, e);
	gw_registry_supervise(c->reg, e);
}
