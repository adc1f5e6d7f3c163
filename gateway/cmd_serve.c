/* SPDX-License-Identifier: MIT */
/*
 * `migrelay serve`: the destination daemon. One listening port; each
 * accepted connection is handshaken in its own thread and then either
 * starts a session (HELLO) or joins one (JOIN) (PROTOCOL.md §2, §4).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "cmds.h"
#include "crypto/authz.h"
#include "exitcodes.h"
#include "log.h"
#include "net.h"
#include "session.h"
#include "target.h"

enum { SRV_MAX_TARGETS = 64, SRV_DEFAULT_MAX_SESSIONS = 16, SRV_DEFAULT_MAX_PENDING = 1024 };

struct server {
	struct mr_tls_cfg *tls;
	struct gw_target targets[SRV_MAX_TARGETS];
	int ntargets;
	struct authz_list allow; /* applies to every target */
	int max_sessions;
	uint32_t window;
	uint16_t max_streams;
	int reconnect_ms, keepalive_ms, handshake_ms, max_pending, idle_ms, max_conns;
	bool plaintext; /* --insecure-plaintext: the plaintext mode is offered */
	pthread_mutex_t lock; /* registry and counters */
	struct gw_session *sessions[256];
	int nsessions;
	int pending;
	int closing; /* sessions unregistered, still being closed */
};

static struct server srv = { .lock = PTHREAD_MUTEX_INITIALIZER };

struct accepted {
	int fd;
	char peer[INET6_ADDRSTRLEN + 8];
};

static struct gw_target *find_target(const char *name)
{
	for (int i = 0; i < srv.ntargets; i++)
		if (!strcmp(srv.targets[i].name, name))
			return &srv.targets[i];
	return NULL;
}

static bool identity_allowed(const struct gw_target *t, const char *id)
{
	if (!srv.allow.n && !t->allow.n)
		return true; /* default: every peer our CA or PSK file authenticates */
	return (srv.allow.n && authz_allowed(&srv.allow, id)) || (t->allow.n && authz_allowed(&t->allow, id));
}

static int send_frame(struct mr_tls *t, uint8_t type, uint8_t flags, uint16_t stream, const uint8_t *p,
		      uint32_t len)
{
	uint8_t buf[WIRE_HDR_LEN + WIRE_MAX_CONTROL];

	wire_hdr_encode(buf, &(struct wire_hdr){ .type = type, .flags = flags, .stream = stream, .len = len });
	memcpy(buf + WIRE_HDR_LEN, p, len);
	return mr_tls_send(t, buf, WIRE_HDR_LEN + len) < 0 ? -EPIPE : 0;
}

/* Refuses a setup frame with ERROR, then frees <t> and closes <fd>: the caller must not use them again. */
static void refuse(struct mr_tls *t, int fd, const char *peer, int code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void refuse(struct mr_tls *t, int fd, const char *peer, int code, const char *fmt, ...)
{
	uint8_t p[2 + WIRE_MAX_ERROR_TEXT];
	char text[WIRE_MAX_ERROR_TEXT + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	gw_ratelimited(GW_LOG_WARN, "%s: refused: %s", peer, text);
	n = wire_error_encode(p, (uint16_t)code, text);
	(void)!send_frame(t, WIRE_T_ERROR, 0, WIRE_STREAM_SESSION, p, (uint32_t)n);
	mr_tls_bye(t);
	mr_tls_free(t);
	close(fd);
}

static void *session_supervisor(void *arg)
{
	struct gw_session *s = arg;
	struct gw_stats st;
	char a[32], b[32], line[GW_IDENTITY_MAX + 128], what[WIRE_MAX_ERROR_TEXT + 64];
	char sfail[WIRE_MAX_ERROR_TEXT + 32] = "";
	int ok, nfailed = 0;

	pthread_mutex_lock(&s->lock);
	/*
	 * With every connection gone while streams are open, or after streams
	 * but before the client's BYE, the session waits for a rejoin (its timer enforces the
	 * timeout): the last VERIFIED may have gone down with a connection.
	 */
	while (!s->err_code &&
	       (s->nlive > 0 || (s->cfg.reconnect_ms > 0 && (s->open_streams > 0 || gw_session_awaits_bye_locked(s)))))
		pthread_cond_wait(&s->cond, &s->lock);
	/* A stream can fail on its own (its target would not open) while the session stays sound. */
	for (int i = 0; i < s->nstreams; i++)
		if (s->streams[i] && s->streams[i]->fail_code && nfailed++ == 0)
			snprintf(sfail, sizeof(sfail), "stream %d: %s", i, s->streams[i]->fail_text);
	ok = !s->err_code && s->open_streams == 0 && nfailed == 0;
	pthread_mutex_unlock(&s->lock);

	pthread_mutex_lock(&srv.lock);
	for (int i = 0; i < srv.nsessions; i++)
		if (srv.sessions[i] == s) {
			srv.sessions[i] = srv.sessions[--srv.nsessions];
			break;
		}
	srv.closing++;
	pthread_mutex_unlock(&srv.lock);

	gw_session_stats(s, &st);
	snprintf(line, sizeof(line), "session %016llx (%s, target %s) ", (unsigned long long)s->id, s->identity,
		 s->target);
	if (ok)
		snprintf(what, sizeof(what), "done: %d stream(s), received %s, sent %s, all verified", s->nstreams,
			 gw_fmt_bytes(st.raw_in, a, sizeof(a)), gw_fmt_bytes(st.raw_out, b, sizeof(b)));
	else if (s->err_code)
		snprintf(what, sizeof(what), "failed: %s", s->err_text);
	else if (nfailed)
		snprintf(what, sizeof(what), "failed: %d of %d stream(s) failed; %s", nfailed, s->nstreams, sfail);
	else
		snprintf(what, sizeof(what), "failed: connections closed before every stream ended");
	/* Close first (a failed file target removes its temporary file), then say how it ended. */
	gw_session_close(s);
	pthread_mutex_lock(&srv.lock);
	srv.closing--;
	pthread_mutex_unlock(&srv.lock);
	if (ok)
		gw_info("%s%s", line, what);
	else
		gw_err("%s%s", line, what);
	return NULL;
}

static void handle_hello(struct mr_tls *t, int fd, const char *peer, const char *identity, const uint8_t *p,
			 uint32_t len)
{
	struct wire_hello hello;
	struct wire_welcome w = { 0 };
	struct gw_target *tgt;
	struct gw_session *s = NULL;
	struct mr_conn *conn;
	uint8_t wp[WIRE_WELCOME_LEN];
	pthread_t thr;

	if (wire_hello_decode(&hello, p, len) < 0)
		return refuse(t, fd, peer, WIRE_E_PROTOCOL, "malformed HELLO");
	if (hello.version != WIRE_VERSION)
		return refuse(t, fd, peer, WIRE_E_UNSUPPORTED, "protocol version %u not supported (this server speaks %d)",
			      hello.version, WIRE_VERSION);
	if ((hello.flags & WIRE_HELLO_F_PLAINTEXT) && !srv.plaintext)
		return refuse(t, fd, peer, WIRE_E_UNSUPPORTED,
			      "this server does not offer the plaintext mode (start `migrelay serve` with --insecure-plaintext to offer it, or leave --insecure-plaintext out on the client to use TLS)");
	if (!(tgt = find_target(hello.target)))
		return refuse(t, fd, peer, WIRE_E_NO_TARGET, "no target named \"%s\" on this server", hello.target);
	if (!identity_allowed(tgt, identity))
		return refuse(t, fd, peer, WIRE_E_NOT_ALLOWED, "identity \"%.120s\" is not allowed to use target %s",
			      identity, tgt->name);
	if (hello.nconns > srv.max_conns)
		return refuse(t, fd, peer, WIRE_E_LIMIT, "%u connections asked for; this server allows %d per session (--max-connections)",
			      hello.nconns, srv.max_conns);
	if ((hello.multifd || hello.ndevices) && tgt->kind != GW_TGT_QMP)
		return refuse(t, fd, peer, WIRE_E_UNSUPPORTED, "target %s is not a QEMU target: no multifd or disks",
			      tgt->name);
	{
		struct gw_session_cfg sc = { .server = true, .window = srv.window, .chunk_size = GW_DEFAULT_CHUNK,
					     .max_streams = srv.max_streams,
					     .compress = (hello.flags & WIRE_HELLO_F_ZSTD) != 0, .zlevel = 3,
					     .reconnect_ms = srv.reconnect_ms, .keepalive_ms = srv.keepalive_ms,
					     .idle_ms = srv.idle_ms,
					     .plaintext = (hello.flags & WIRE_HELLO_F_PLAINTEXT) != 0 };

		if (gw_session_new(&s, &sc) < 0)
			return refuse(t, fd, peer, WIRE_E_INTERNAL, "out of memory");
	}
	if (mr_random(&s->id, sizeof(s->id)) < 0 || mr_random(s->token, sizeof(s->token)) < 0) {
		gw_session_close(s);
		return refuse(t, fd, peer, WIRE_E_INTERNAL, "no random numbers");
	}
	s->nconns = hello.nconns;
	s->hello = hello;
	snprintf(s->identity, sizeof(s->identity), "%s", identity);
	snprintf(s->target, sizeof(s->target), "%s", tgt->name);
	{
		char why[WIRE_MAX_ERROR_TEXT + 1] = "";

		if (gw_target_session_init(s, tgt, why, sizeof(why)) < 0) {
			gw_session_close(s);
			return refuse(t, fd, peer, WIRE_E_TARGET, "%s", why);
		}
	}

	pthread_mutex_lock(&srv.lock);
	if (srv.nsessions >= srv.max_sessions) {
		pthread_mutex_unlock(&srv.lock);
		gw_session_close(s);
		return refuse(t, fd, peer, WIRE_E_LIMIT, "server busy: %d sessions running (--max-sessions)",
			      srv.max_sessions);
	}
	w.session_id = s->id;
	memcpy(w.token, s->token, WIRE_TOKEN_LEN);
	w.conn_index = 0;
	w.max_streams = s->cfg.max_streams;
	w.window = s->cfg.window;
	w.chunk_size = s->cfg.chunk_size;
	wire_welcome_encode(wp, &w);
	/* Plaintext: the switch comes right after the WELCOME, before anything more is read or sent (§4.4). */
	if (send_frame(t, WIRE_T_WELCOME, s->cfg.plaintext ? WIRE_WELCOME_F_PLAINTEXT : 0, 0, wp, sizeof(wp)) < 0 ||
	    (s->cfg.plaintext && mr_tls_set_plaintext(t) < 0)) {
		pthread_mutex_unlock(&srv.lock);
		gw_ratelimited(GW_LOG_WARN, "%s: session setup failed after WELCOME: %s", peer, mr_tls_last_error(t));
		gw_session_close(s);
		mr_tls_free(t);
		close(fd);
		return;
	}
	srv.sessions[srv.nsessions++] = s;
	/* Log now: once the connection is handed over, <identity> (inside the TLS session) and <s> may go at any time. */
	gw_info("session %016llx: %s (%s) for target %s, %u connection(s)%s%s", (unsigned long long)s->id, peer,
		identity, tgt->name, hello.nconns, (hello.flags & WIRE_HELLO_F_ZSTD) ? ", zstd" : "",
		s->cfg.plaintext ? ", INSECURE PLAINTEXT" : "");
	if (s->cfg.plaintext)
		gw_warn("session %016llx: " GW_PLAINTEXT_WARNING, (unsigned long long)s->id);
	net_set_timeouts(fd, 0, 0);
	if (mr_conn_from_tls(&conn, t, fd) < 0 || gw_session_add_conn(s, 0, conn) < 0 ||
	    pthread_create(&thr, NULL, session_supervisor, s) != 0) {
		srv.sessions[--srv.nsessions] = NULL;
		pthread_mutex_unlock(&srv.lock);
		gw_err("%s: cannot start session", peer);
		gw_session_close(s);
		return;
	}
	pthread_detach(thr);
	pthread_mutex_unlock(&srv.lock);
}

static int ct_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

static void handle_join(struct mr_tls *t, int fd, const char *peer, const char *identity, const uint8_t *p,
			uint32_t len)
{
	struct wire_join j;
	struct wire_welcome w = { 0 };
	struct gw_session *s = NULL;
	struct mr_conn *conn;
	uint8_t wp[WIRE_WELCOME_LEN];

	if (wire_join_decode(&j, p, len) < 0)
		return refuse(t, fd, peer, WIRE_E_PROTOCOL, "malformed JOIN");
	pthread_mutex_lock(&srv.lock);
	for (int i = 0; i < srv.nsessions; i++)
		if (srv.sessions[i]->id == j.session_id) {
			s = srv.sessions[i];
			break;
		}
	/* Unknown session and wrong token read the same to the peer. */
	if (!s || !ct_equal(s->token, j.token, WIRE_TOKEN_LEN)) {
		pthread_mutex_unlock(&srv.lock);
		return refuse(t, fd, peer, WIRE_E_BAD_TOKEN, "JOIN refused: no such session or wrong token");
	}
	if (strcmp(s->identity, identity)) {
		pthread_mutex_unlock(&srv.lock);
		return refuse(t, fd, peer, WIRE_E_IDENTITY,
			      "JOIN refused: identity \"%.100s\" is not the session's identity", identity);
	}
	if (j.conn_index >= s->nconns) {
		pthread_mutex_unlock(&srv.lock);
		return refuse(t, fd, peer, WIRE_E_PROTOCOL, "JOIN refused: connection index %u outside 0..%d", j.conn_index,
			      s->nconns - 1);
	}
	w.session_id = s->id;
	memcpy(w.token, s->token, WIRE_TOKEN_LEN);
	w.conn_index = j.conn_index;
	w.max_streams = s->cfg.max_streams;
	w.window = s->cfg.window;
	w.chunk_size = s->cfg.chunk_size;
	wire_welcome_encode(wp, &w);
	pthread_mutex_lock(&s->lock);
	if (!gw_session_conn_gone_locked(s, j.conn_index, 1000)) {
		pthread_mutex_unlock(&s->lock);
		pthread_mutex_unlock(&srv.lock);
		return refuse(t, fd, peer, WIRE_E_PROTOCOL, "JOIN refused: connection %u is already there, or the session failed",
			      j.conn_index);
	}
	pthread_mutex_unlock(&s->lock);
	/* A JOINed connection follows its session's mode, switching right after its WELCOME (§4.4). */
	if (send_frame(t, WIRE_T_WELCOME, s->cfg.plaintext ? WIRE_WELCOME_F_PLAINTEXT : 0, 0, wp, sizeof(wp)) < 0 ||
	    (s->cfg.plaintext && mr_tls_set_plaintext(t) < 0)) {
		pthread_mutex_unlock(&srv.lock);
		gw_ratelimited(GW_LOG_WARN, "%s: JOIN failed after WELCOME: %s", peer, mr_tls_last_error(t));
		mr_tls_free(t);
		close(fd);
		return;
	}
	if (s->cfg.plaintext)
		gw_dbg("session %016llx: connection %u joined in plaintext", (unsigned long long)s->id, j.conn_index);
	net_set_timeouts(fd, 0, 0);
	/* A first JOIN fills an empty slot; a rejoin replaces a dead connection and re-sends what it carried. */
	if (mr_conn_from_tls(&conn, t, fd) < 0 || gw_session_replace_conn(s, j.conn_index, conn) < 0)
		gw_warn("%s: JOIN of connection %u failed", peer, j.conn_index);
	pthread_mutex_unlock(&srv.lock);
}

static void *handshake_main(void *arg)
{
	struct accepted *a = arg;
	struct mr_tls *t = NULL;
	enum mr_tls_fail fail;
	char why[512] = "";
	uint8_t hb[WIRE_HDR_LEN], p[WIRE_MAX_CONTROL];
	struct wire_hdr h;
	ssize_t n;
	int fd = a->fd;

	net_set_timeouts(fd, srv.handshake_ms, srv.handshake_ms);
	if (mr_tls_handshake(&t, srv.tls, fd, NULL, srv.handshake_ms, &fail, why, sizeof(why)) < 0) {
		gw_ratelimited(GW_LOG_WARN, "%s: TLS handshake failed: %s", a->peer, why);
		goto out;
	}
	n = mr_tls_recv_all(t, hb, sizeof(hb));
	if (n != (ssize_t)sizeof(hb)) {
		gw_ratelimited(GW_LOG_WARN, "%s: no HELLO or JOIN after the handshake: %s", a->peer,
			       n == 0 ? "closed" : mr_tls_last_error(t));
		goto out;
	}
	if (wire_hdr_parse(&h, hb, hb + sizeof(hb)) < 0 || (h.type != WIRE_T_HELLO && h.type != WIRE_T_JOIN) ||
	    h.len > WIRE_MAX_CONTROL) {
		refuse(t, fd, a->peer, WIRE_E_PROTOCOL, "expected HELLO or JOIN, got a frame of type %u", hb[0]);
		t = NULL;
		fd = -1;
		goto out;
	}
	if (h.len && mr_tls_recv_all(t, p, h.len) != (ssize_t)h.len) {
		gw_ratelimited(GW_LOG_WARN, "%s: connection lost during setup", a->peer);
		goto out;
	}
	if (h.type == WIRE_T_HELLO)
		handle_hello(t, fd, a->peer, mr_tls_peer_identity(t), p, h.len);
	else
		handle_join(t, fd, a->peer, mr_tls_peer_identity(t), p, h.len);
	/* handle_* either took t and fd over or freed them */
	t = NULL;
	fd = -1;
out:
	if (t)
		mr_tls_free(t);
	if (fd >= 0)
		close(fd);
	pthread_mutex_lock(&srv.lock);
	srv.pending--;
	pthread_mutex_unlock(&srv.lock);
	free(a);
	return NULL;
}

static const char serve_usage[] =
	"Usage: migrelay serve --listen HOST:PORT --target NAME=SPEC [options]\n"
	"\n"
	"The destination gateway: accepts sessions on one TCP port and connects\n"
	"their streams to the named targets.\n"
	"\n"
	"  -l, --listen HOST:PORT    address to listen on (for example 0.0.0.0:4433)\n"
	"  -T, --target NAME=SPEC    a target peers may name; repeatable. SPEC is one of\n"
	"                              discard      verify and drop (benchmarks)\n"
	"                              file:PATH    write to PATH (renamed into place after the\n"
	"                                           verified end; never a partial file)\n"
	"                              unix:PATH    connect to a listening unix socket per stream\n"
	"                              qmp:PATH     a QEMU started with -incoming defer\n"
	"      --tls-dir DIR         x509 directory: ca-cert.pem, server-cert.pem, server-key.pem\n"
	"                            (QEMU's tls-creds-x509 layout; default /etc/pki/qemu)\n"
	"      --psk-file FILE       use pre-shared keys from FILE (QEMU keys.psk) instead of x509\n"
	"      --allow PATTERN       allow peers whose identity (certificate DN such as\n"
	"                            \"CN=host1,O=Example\", or PSK identity) matches PATTERN\n"
	"                            ('*' and '?' wildcards) for every target; repeatable\n"
	"      --allow-for NAME=PATTERN  the same for target NAME only\n"
	"                            Without any --allow, every authenticated peer is allowed.\n"
	"      --max-sessions N      sessions at once (default 16)\n"
	"      --max-streams N       streams open at once per session (default 8)\n"
	"      --window BYTES        bytes in flight per stream direction (default 4194304);\n"
	"                            memory per session is at most 2 x max-streams x window\n"
	"      --max-connections N   connections per session (default 16, at most 64)\n"
	"      --idle-timeout S      close a session that has no open stream for S seconds\n"
	"                            (default 600; 0: never)\n"
	"      --reconnect-timeout S how long a session whose connections are all gone waits\n"
	"                            for them to rejoin (default 30; 0: fail at once)\n"
	"      --keepalive S         PING after S seconds of silence; a connection silent for\n"
	"                            3 x S is dropped (default 5)\n"
	"      --handshake-timeout S TLS handshake and HELLO/JOIN must finish within S (default 10)\n"
	"      --max-pending N       connections still in their handshake at once (default 1024);\n"
	"                            more are closed at once\n"
	"      --insecure-plaintext  INSECURE: offer the plaintext mode. A client that asks for it\n"
	"                            (its --insecure-plaintext) still authenticates by TLS, but\n"
	"                            its data then travels unencrypted and without TLS integrity.\n"
	"                            Clients that do not ask get TLS. Isolated networks only.\n"
	"  -v, --verbose             debug logging\n"
	"  -h, --help                this text\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

int cmd_serve(int argc, char **argv)
{
	enum { O_TLS = 0x1000, O_PSK, O_ALLOW, O_ALLOW_FOR, O_MAXS, O_MAXST, O_WINDOW, O_RECONNECT, O_KEEPALIVE,
	       O_HS_TIMEOUT, O_MAX_PENDING, O_IDLE, O_MAXC, O_PLAIN };
	static const struct option lo[] = {
		{ "listen", required_argument, NULL, 'l' },   { "target", required_argument, NULL, 'T' },
		{ "tls-dir", required_argument, NULL, O_TLS }, { "psk-file", required_argument, NULL, O_PSK },
		{ "allow", required_argument, NULL, O_ALLOW }, { "allow-for", required_argument, NULL, O_ALLOW_FOR },
		{ "max-sessions", required_argument, NULL, O_MAXS },
		{ "max-streams", required_argument, NULL, O_MAXST },
		{ "window", required_argument, NULL, O_WINDOW }, { "verbose", no_argument, NULL, 'v' },
		{ "reconnect-timeout", required_argument, NULL, O_RECONNECT },
		{ "keepalive", required_argument, NULL, O_KEEPALIVE },
		{ "handshake-timeout", required_argument, NULL, O_HS_TIMEOUT },
		{ "max-pending", required_argument, NULL, O_MAX_PENDING },
		{ "idle-timeout", required_argument, NULL, O_IDLE },
		{ "max-connections", required_argument, NULL, O_MAXC },
		{ "insecure-plaintext", no_argument, NULL, O_PLAIN },
		{ "help", no_argument, NULL, 'h' },           { NULL, 0, NULL, 0 },
	};
	const char *listen_spec = NULL, *tls_dir = NULL, *psk_file = NULL;
	char why[512] = "";
	struct sigaction sa = { .sa_handler = on_signal };
	pthread_attr_t hs_attr;
	int c, lfd, r;
	long v;

	gw_log_set_prefix("migrelay serve");
	srv.max_sessions = SRV_DEFAULT_MAX_SESSIONS;
	srv.window = GW_DEFAULT_WINDOW;
	srv.max_streams = GW_DEFAULT_MAX_STREAMS;
	srv.handshake_ms = GW_SETUP_TIMEOUT_MS;
	srv.max_pending = SRV_DEFAULT_MAX_PENDING;
	srv.idle_ms = 600 * 1000;
	srv.max_conns = 16;
	while ((c = getopt_long(argc, argv, "l:T:vh", lo, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen_spec = optarg;
			break;
		case 'T':
			if (srv.ntargets >= SRV_MAX_TARGETS) {
				fprintf(stderr, "migrelay serve: at most %d targets\n", SRV_MAX_TARGETS);
				return MR_EXIT_USAGE;
			}
			if (gw_target_parse(&srv.targets[srv.ntargets], optarg, why, sizeof(why)) < 0) {
				fprintf(stderr, "migrelay serve: %s\n", why);
				return MR_EXIT_USAGE;
			}
			if (find_target(srv.targets[srv.ntargets].name)) {
				fprintf(stderr, "migrelay serve: target %s given twice\n", srv.targets[srv.ntargets].name);
				return MR_EXIT_USAGE;
			}
			srv.ntargets++;
			break;
		case O_TLS:
			tls_dir = optarg;
			break;
		case O_PSK:
			psk_file = optarg;
			break;
		case O_ALLOW:
			if (authz_add(&srv.allow, optarg) < 0) {
				fprintf(stderr, "migrelay serve: --allow \"%.80s\" is not a valid pattern\n", optarg);
				return MR_EXIT_USAGE;
			}
			break;
		case O_ALLOW_FOR: {
			const char *eq = strchr(optarg, '=');
			struct gw_target *t = NULL;

			for (int i = 0; eq && i < srv.ntargets; i++)
				if (strlen(srv.targets[i].name) == (size_t)(eq - optarg) &&
				    !strncmp(srv.targets[i].name, optarg, (size_t)(eq - optarg)))
					t = &srv.targets[i];
			if (!t || authz_add(&t->allow, eq + 1) < 0) {
				fprintf(stderr,
					"migrelay serve: --allow-for \"%.80s\": needs NAME=PATTERN with NAME a --target given before it\n",
					optarg);
				return MR_EXIT_USAGE;
			}
			break;
		}
		case O_IDLE:
		case O_MAXC:
			v = strtol(optarg, NULL, 10);
			if (c == O_IDLE && v >= 0 && v <= 86400)
				srv.idle_ms = (int)v * 1000;
			else if (c == O_MAXC && v >= 1 && v <= WIRE_MAX_CONNS)
				srv.max_conns = (int)v;
			else {
				fprintf(stderr, "migrelay serve: bad value \"%.40s\" (--idle-timeout 0-86400 s, --max-connections 1-%d)\n",
					optarg, WIRE_MAX_CONNS);
				return MR_EXIT_USAGE;
			}
			break;
		case O_RECONNECT:
		case O_KEEPALIVE:
		case O_HS_TIMEOUT:
		case O_MAX_PENDING:
			v = strtol(optarg, NULL, 10);
			if (c == O_RECONNECT && v >= 0 && v <= 3600)
				srv.reconnect_ms = v ? (int)v * 1000 : -1;
			else if (c == O_KEEPALIVE && v >= 1 && v <= 600)
				srv.keepalive_ms = (int)v * 1000;
			else if (c == O_HS_TIMEOUT && v >= 1 && v <= 600)
				srv.handshake_ms = (int)v * 1000;
			else if (c == O_MAX_PENDING && v >= 1 && v <= 65536)
				srv.max_pending = (int)v;
			else {
				fprintf(stderr, "migrelay serve: bad value \"%.40s\" (--reconnect-timeout 0-3600 s, --keepalive 1-600 s, --handshake-timeout 1-600 s, --max-pending 1-65536)\n",
					optarg);
				return MR_EXIT_USAGE;
			}
			break;
		case O_MAXS:
		case O_MAXST:
		case O_WINDOW:
			v = strtol(optarg, NULL, 10);
			if (c == O_MAXS && v >= 1 && v <= 256)
				srv.max_sessions = (int)v;
			else if (c == O_MAXST && v >= 1 && v <= WIRE_MAX_STREAMS)
				srv.max_streams = (uint16_t)v;
			else if (c == O_WINDOW && v >= WIRE_MIN_WINDOW && v <= WIRE_MAX_WINDOW)
				srv.window = (uint32_t)v;
			else {
				fprintf(stderr, "migrelay serve: bad value \"%.40s\" for --%s (sessions 1-256, streams 1-%d, window %d-%d)\n",
					optarg, c == O_MAXS ? "max-sessions" : c == O_MAXST ? "max-streams" : "window",
					WIRE_MAX_STREAMS, WIRE_MIN_WINDOW, WIRE_MAX_WINDOW);
				return MR_EXIT_USAGE;
			}
			break;
		case O_PLAIN:
			srv.plaintext = true;
			break;
		case 'v':
			gw_log_level = GW_LOG_DEBUG;
			break;
		case 'h':
			fputs(serve_usage, stdout);
			return MR_EXIT_OK;
		default:
			fputs(serve_usage, stderr);
			return MR_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "migrelay serve: unexpected argument \"%.80s\" (see --help)\n", argv[optind]);
		return MR_EXIT_USAGE;
	}
	if (!listen_spec || !srv.ntargets) {
		fprintf(stderr, "migrelay serve: --listen HOST:PORT and at least one --target NAME=SPEC are required (see --help)\n");
		return MR_EXIT_USAGE;
	}
	if (tls_dir && psk_file) {
		fprintf(stderr, "migrelay serve: use either --tls-dir or --psk-file, not both\n");
		return MR_EXIT_USAGE;
	}
	if (psk_file)
		r = mr_tls_cfg_psk(&srv.tls, psk_file, true, NULL, why, sizeof(why));
	else
		r = mr_tls_cfg_x509(&srv.tls, tls_dir ? tls_dir : "/etc/pki/qemu", true, why, sizeof(why));
	if (r < 0) {
		fprintf(stderr, "migrelay serve: %s\n", why);
		return MR_EXIT_USAGE;
	}
	lfd = net_tcp_listen(listen_spec, why, sizeof(why));
	if (lfd < 0) {
		fprintf(stderr, "migrelay serve: %s\n", why);
		return MR_EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* Handshake threads are many and shallow: a small stack bounds their memory. */
	pthread_attr_init(&hs_attr);
	pthread_attr_setstacksize(&hs_attr, 256 << 10);
	gw_info("listening on %s (%s), %d target(s)%s", listen_spec, psk_file ? "TLS 1.3 PSK" : "TLS 1.3 x509",
		srv.ntargets, srv.allow.n ? "" : ", every authenticated peer allowed");
	if (srv.plaintext)
		gw_warn("INSECURE PLAINTEXT offered (--insecure-plaintext): sessions whose client asks for it move their data unencrypted and unauthenticated after the TLS handshake; use only on an isolated migration network");
	while (!stop_flag) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct accepted *a;
		pthread_t thr;
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				gw_ratelimited(GW_LOG_WARN, "accept: %s", strerror(errno));
			if (errno == EMFILE || errno == ENFILE)
				usleep(100000);
			continue;
		}
		pthread_mutex_lock(&srv.lock);
		if (srv.pending >= srv.max_pending) {
			pthread_mutex_unlock(&srv.lock);
			gw_ratelimited(GW_LOG_WARN, "too many handshakes in progress; dropping a connection");
			close(fd);
			continue;
		}
		srv.pending++;
		pthread_mutex_unlock(&srv.lock);
		a = calloc(1, sizeof(*a));
		if (!a) {
			close(fd);
			continue;
		}
		a->fd = fd;
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			char ip[INET6_ADDRSTRLEN];

			inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
			snprintf(a->peer, sizeof(a->peer), "[%s]:%u", ip, ntohs(s6->sin6_port));
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			char ip[INET_ADDRSTRLEN];

			inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
			snprintf(a->peer, sizeof(a->peer), "%s:%u", ip, ntohs(s4->sin_port));
		}
		net_tune_tcp(fd);
		if (pthread_create(&thr, &hs_attr, handshake_main, a) != 0) {
			close(fd);
			free(a);
			pthread_mutex_lock(&srv.lock);
			srv.pending--;
			pthread_mutex_unlock(&srv.lock);
			continue;
		}
		pthread_detach(thr);
	}
	gw_info("stopping");
	close(lfd);
	/* End the sessions (their peers get an ERROR) and let handshakes finish: 10 s at most. */
	pthread_mutex_lock(&srv.lock);
	for (int i = 0; i < srv.nsessions; i++)
		gw_session_fail(srv.sessions[i], WIRE_E_LIMIT, true, "the server is stopping");
	pthread_mutex_unlock(&srv.lock);
	for (int i = 0; i < 200; i++) {
		int busy;

		pthread_mutex_lock(&srv.lock);
		busy = srv.nsessions + srv.pending + srv.closing;
		pthread_mutex_unlock(&srv.lock);
		if (!busy)
			break;
		usleep(50000);
	}
	pthread_attr_destroy(&hs_attr);
	for (int i = 0; i < srv.ntargets; i++)
		authz_free(&srv.targets[i].allow);
	authz_free(&srv.allow);
	pthread_mutex_lock(&srv.lock);
	if (!srv.nsessions && !srv.pending && !srv.closing)
		mr_tls_cfg_free(srv.tls); /* nothing uses the credentials any more */
	pthread_mutex_unlock(&srv.lock);
	return MR_EXIT_OK;
}
