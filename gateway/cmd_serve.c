/* SPDX-License-Identifier: MIT */
/*
 * `migrelay serve`: the destination daemon, in phases: parse the command
 * line, preflight (credentials), open the listener, accept until a
 * signal, shut down. Each accepted connection is set up in its own thread
 * (gateway/setup.c) under the pre-authentication limits and the setup
 * deadline of gateway/preauth.c; sessions live in gateway/registry.c
 * (PROTOCOL.md §2, §4).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmds.h"
#include "crypto/authz.h"
#include "exitcodes.h"
#include "listen.h"
#include "log.h"
#include "net.h"
#include "preauth.h"
#include "registry.h"
#include "setup.h"
#include "target.h"

enum {
	SRV_MAX_TARGETS = 64,
	SRV_DEFAULT_MAX_SESSIONS = 16,
	SRV_DEFAULT_MAX_PENDING = 1024,
	SRV_DEFAULT_PER_ADDR = 64,
	SRV_DEFAULT_RATE = 200,
	SRV_CLIENTHELLO_MS = 3000, /* connect -> first byte of the TLS ClientHello */
	SRV_SWEEP_MS = 100,        /* how often setup deadlines are enforced */
	SRV_STOP_MS = 10000,       /* sessions and setups get this long to end at shutdown */
};

struct server {
	struct mr_tls_cfg *tls;
	struct gw_target targets[SRV_MAX_TARGETS];
	int ntargets;
	struct authz_list allow; /* applies to every target */
	struct gw_listen_set ls; /* --listen (TCP and unix:), --socket-mode, --socket-group */
	const char *tls_dir, *psk_file;
	int max_sessions, max_streams, window, max_conns;
	int reconnect_ms, keepalive_ms, idle_ms;
	struct gw_preauth_cfg pre;
	bool plaintext; /* --insecure-plaintext: the plaintext mode is offered */
	struct gw_setup_srv setup;
	struct gw_registry reg;
	struct gw_preauth preauth;
	pthread_attr_t hs_attr;
};

static struct server srv;

struct accepted {
	int fd;
	bool local; /* from a unix: listener: no TLS, identity from SO_PEERCRED */
	struct gw_pending *pe;
	char peer[INET6_ADDRSTRLEN + GW_PEER_ID_MAX + 16];
};

/* Waits for the first byte of the ClientHello: an idle connection leaves after SRV_CLIENTHELLO_MS. */
static bool first_bytes(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int r;

	do
		r = poll(&pfd, 1, ms);
	while (r < 0 && errno == EINTR);
	return r > 0 && (pfd.revents & POLLIN);
}

static int ms_left(uint64_t deadline_ns)
{
	uint64_t now = gw_now_ns();

	return now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
}

/*
 * Handshake thread of one accepted connection: TLS handshake, HELLO or
 * JOIN, WELCOME, all by the connection's setup deadline; then hands the
 * connection to its session. Owns <arg>, its fd and its pending entry.
 */
static void *handshake_main(void *arg)
{
	struct accepted *a = arg;
	uint64_t deadline = a->pe->deadline_ns;
	struct gw_admitted adm;
	struct gw_link l = { .fd = -1 };
	struct mr_tls *t = NULL;
	struct mr_conn *c = NULL;
	enum mr_tls_fail fail;
	char why[512] = "", uid[GW_PEER_ID_MAX];
	int left;

	left = ms_left(deadline);
	if (!first_bytes(a->fd, left < SRV_CLIENTHELLO_MS ? left : SRV_CLIENTHELLO_MS)) {
		gw_ratelimited(GW_LOG_WARN, "%s: no %s within %d ms", a->peer, a->local ? "HELLO or JOIN" : "TLS ClientHello",
			       SRV_CLIENTHELLO_MS);
		goto out;
	}
	net_set_timeouts(a->fd, ms_left(deadline), ms_left(deadline));
	if (a->local) {
		/* sshd authenticated the user; the socket's permissions and --allow authorize its uid (SECURITY.md) */
		if (mr_conn_plain(&c, a->fd, true, NULL, 0) < 0)
			goto out;
		l = gw_link_conn(c);
		c = NULL;
	} else {
		if ((left = ms_left(deadline)) <= 0 ||
		    mr_tls_handshake(&t, srv.tls, a->fd, NULL, left, &fail, why, sizeof(why)) < 0) {
			gw_ratelimited(GW_LOG_WARN, "%s: TLS handshake failed: %s", a->peer,
				       why[0] ? why : "setup deadline");
			goto out;
		}
		l = gw_link_tls(t, a->fd);
		t = NULL;
	}
	a->fd = -1; /* the link holds it */
	gw_preauth_authed(&srv.preauth, a->pe);
	if (gw_setup_serve(&srv.setup, &l, a->peer,
			   l.tls ? mr_tls_peer_identity(l.tls) : (gw_unix_peer_identity(l.fd, uid, sizeof(uid)) ? "" : uid),
			   deadline, &adm) < 0)
		goto out;
	/* Out of the pending list first: from here on nothing but the session touches the socket. */
	gw_preauth_done(&srv.preauth, a->pe);
	gw_setup_handover(&srv.setup, &adm, &l, a->peer);
	free(a);
	return NULL;
out:
	gw_preauth_done(&srv.preauth, a->pe);
	gw_link_free(&l);
	if (a->fd >= 0)
		close(a->fd);
	free(a);
	return NULL;
}

static const char serve_usage[] =
	"Usage: migrelay serve --listen HOST:PORT|unix:PATH --target NAME=SPEC [options]\n"
	"\n"
	"The destination gateway: accepts sessions on TCP ports (TLS) or unix\n"
	"sockets (through sshd) and connects their streams to the named targets.\n"
	"\n"
	"  -l, --listen HOST:PORT    address to listen on (for example 0.0.0.0:4433); the last one\n"
	"                            given counts\n"
	"  -l, --listen unix:PATH    a unix socket for clients that come through sshd; repeatable,\n"
	"                            with or without a HOST:PORT listener\n"
	"                            (`--to ssh://HOST/PATH`; sshd_config needs\n"
	"                            AllowStreamLocalForwarding yes). No TLS inside: sshd\n"
	"                            authenticates; the socket's mode and group and --allow\n"
	"                            authorize. The peer's identity is UID=user (SO_PEERCRED)\n"
	"      --socket-mode MODE    mode of the unix sockets (octal, default 0660)\n"
	"      --socket-group GROUP  group of the unix sockets (default: ours)\n"
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
	"                            \"CN=host1,O=Example\", PSK identity, or UID=user on a\n"
	"                            unix: listener) matches PATTERN\n"
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
	"      --handshake-timeout S one deadline for the whole setup of a connection: TLS\n"
	"                            handshake and HELLO/JOIN up to the WELCOME (default 10);\n"
	"                            the TLS ClientHello must come within 3 s of the connect\n"
	"      --max-pending N       connections in their setup at once (default 1024); a new\n"
	"                            one beyond that evicts the oldest pending one\n"
	"      --max-pending-per-address N  the same per source address (IPv6: per /64;\n"
	"                            default 64)\n"
	"      --connect-rate N      new connections per second per source address (bursts of\n"
	"                            2 x N; default 200); more are closed at once\n"
	"      --insecure-plaintext  INSECURE: offer the plaintext mode. A client that asks for it\n"
	"                            (its --insecure-plaintext) still authenticates by TLS, but\n"
	"                            its data then travels unencrypted and without TLS integrity.\n"
	"                            Clients that do not ask get TLS. Isolated networks only.\n"
	"  -v, --verbose             debug logging\n"
	"  -h, --help                this text\n";


enum { O_TLS = 0x1000, O_PSK, O_ALLOW, O_ALLOW_FOR, O_MAXS, O_MAXST, O_WINDOW, O_RECONNECT, O_KEEPALIVE,
       O_HS_TIMEOUT, O_MAX_PENDING, O_PER_ADDR, O_RATE, O_IDLE, O_MAXC, O_PLAIN, O_SOCK_MODE, O_SOCK_GROUP };

/* The numeric options: range and unit of each, and where it goes. */
static const struct numopt {
	int opt;
	const char *name;
	long lo, hi;
	int scale; /* 1000 for seconds given, milliseconds kept */
	int *dst;
} numopts[] = {
	{ O_MAXS, "max-sessions", 1, 256, 1, &srv.max_sessions },
	{ O_MAXST, "max-streams", 1, WIRE_MAX_STREAMS, 1, &srv.max_streams },
	{ O_WINDOW, "window", WIRE_MIN_WINDOW, WIRE_MAX_WINDOW, 1, &srv.window },
	{ O_MAXC, "max-connections", 1, WIRE_MAX_CONNS, 1, &srv.max_conns },
	{ O_IDLE, "idle-timeout", 0, 86400, 1000, &srv.idle_ms },
	{ O_RECONNECT, "reconnect-timeout", 0, 3600, 1000, &srv.reconnect_ms },
	{ O_KEEPALIVE, "keepalive", 1, 600, 1000, &srv.keepalive_ms },
	{ O_HS_TIMEOUT, "handshake-timeout", 1, 600, 1000, &srv.pre.setup_ms },
	{ O_MAX_PENDING, "max-pending", 1, 65536, 1, &srv.pre.max_pending },
	{ O_PER_ADDR, "max-pending-per-address", 1, 65536, 1, &srv.pre.max_per_addr },
	{ O_RATE, "connect-rate", 1, 1000000, 1, &srv.pre.rate },
};

static int parse_num(const struct numopt *n, const char *arg)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < n->lo || v > n->hi) {
		fprintf(stderr, "migrelay serve: --%s takes %ld to %ld%s, not \"%.40s\"\n", n->name, n->lo, n->hi,
			n->scale == 1000 ? " seconds" : "", arg);
		return -EINVAL;
	}
	*n->dst = (int)v * n->scale;
	/* --reconnect-timeout 0: fail at once, which the session spells < 0 */
	if (n->opt == O_RECONNECT && v == 0)
		*n->dst = -1;
	return 0;
}

static int add_target(const char *arg)
{
	char why[512] = "";
	struct gw_target *t = &srv.targets[srv.ntargets];

	if (srv.ntargets >= SRV_MAX_TARGETS) {
		fprintf(stderr, "migrelay serve: at most %d targets\n", SRV_MAX_TARGETS);
		return -EINVAL;
	}
	if (gw_target_parse(t, arg, why, sizeof(why)) < 0) {
		fprintf(stderr, "migrelay serve: %s\n", why);
		return -EINVAL;
	}
	for (int i = 0; i < srv.ntargets; i++)
		if (!strcmp(srv.targets[i].name, t->name)) {
			fprintf(stderr, "migrelay serve: target %s given twice\n", t->name);
			return -EINVAL;
		}
	srv.ntargets++;
	return 0;
}

static int add_allow_for(const char *arg)
{
	const char *eq = strchr(arg, '=');
	struct gw_target *t = NULL;

	for (int i = 0; eq && i < srv.ntargets; i++)
		if (strlen(srv.targets[i].name) == (size_t)(eq - arg) &&
		    !strncmp(srv.targets[i].name, arg, (size_t)(eq - arg)))
			t = &srv.targets[i];
	if (!t || authz_add(&t->allow, eq + 1) < 0) {
		fprintf(stderr, "migrelay serve: --allow-for \"%.80s\": needs NAME=PATTERN with NAME a --target given before it\n",
			arg);
		return -EINVAL;
	}
	return 0;
}

/* --listen, --socket-mode, --socket-group. 0 or -EINVAL after printing why. */
static int listen_opt(int c, const char *arg)
{
	char why[256] = "";
	int r = c == 'l'	   ? gw_listen_add(&srv.ls, arg, why, sizeof(why))
		: c == O_SOCK_MODE ? gw_listen_set_mode(&srv.ls, arg, why, sizeof(why))
				   : gw_listen_set_group(&srv.ls, arg, why, sizeof(why));

	if (r < 0)
		fprintf(stderr, "migrelay serve: %s\n", why);
	return r < 0 ? -EINVAL : 0;
}

/* One option. Returns 0, 1 for --help (printed), or -EINVAL after printing why. */
static int parse_opt(int c, const char *arg)
{
	for (size_t i = 0; i < sizeof(numopts) / sizeof(numopts[0]); i++)
		if (numopts[i].opt == c)
			return parse_num(&numopts[i], arg);
	switch (c) {
	case 'l':
	case O_SOCK_MODE:
	case O_SOCK_GROUP:
		return listen_opt(c, arg);
	case 'T':
		return add_target(arg);
	case O_TLS:
		srv.tls_dir = arg;
		return 0;
	case O_PSK:
		srv.psk_file = arg;
		return 0;
	case O_ALLOW:
		if (authz_add(&srv.allow, arg) < 0) {
			fprintf(stderr, "migrelay serve: --allow \"%.80s\" is not a valid pattern\n", arg);
			return -EINVAL;
		}
		return 0;
	case O_ALLOW_FOR:
		return add_allow_for(arg);
	case O_PLAIN:
		srv.plaintext = true;
		return 0;
	case 'v':
		gw_log_level = GW_LOG_DEBUG;
		return 0;
	case 'h':
		fputs(serve_usage, stdout);
		return 1;
	default:
		fputs(serve_usage, stderr);
		return -EINVAL;
	}
}

/* Phase 1: the command line into <srv>. Returns 0, 1 after --help, or -EINVAL after printing why. */
static int parse_args(int argc, char **argv)
{
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
		{ "max-pending-per-address", required_argument, NULL, O_PER_ADDR },
		{ "connect-rate", required_argument, NULL, O_RATE },
		{ "idle-timeout", required_argument, NULL, O_IDLE },
		{ "max-connections", required_argument, NULL, O_MAXC },
		{ "insecure-plaintext", no_argument, NULL, O_PLAIN },
		{ "socket-mode", required_argument, NULL, O_SOCK_MODE },
		{ "socket-group", required_argument, NULL, O_SOCK_GROUP },
		{ "help", no_argument, NULL, 'h' },           { NULL, 0, NULL, 0 },
	};
	int c, r;

	gw_listen_init(&srv.ls);
	srv.max_sessions = SRV_DEFAULT_MAX_SESSIONS;
	srv.window = GW_DEFAULT_WINDOW;
	srv.max_streams = GW_DEFAULT_MAX_STREAMS;
	srv.idle_ms = 600 * 1000;
	srv.max_conns = 16;
	srv.pre = (struct gw_preauth_cfg){ .max_pending = SRV_DEFAULT_MAX_PENDING, .max_per_addr = SRV_DEFAULT_PER_ADDR,
					   .rate = SRV_DEFAULT_RATE, .setup_ms = GW_SETUP_TIMEOUT_MS };
	while ((c = getopt_long(argc, argv, "l:T:vh", lo, NULL)) != -1)
		if ((r = parse_opt(c, optarg)) != 0)
			return r;
	if (optind < argc) {
		fprintf(stderr, "migrelay serve: unexpected argument \"%.80s\" (see --help)\n", argv[optind]);
		return -EINVAL;
	}
	if (!srv.ls.n || !srv.ntargets) {
		fprintf(stderr, "migrelay serve: --listen HOST:PORT (or unix:PATH) and at least one --target NAME=SPEC are required (see --help)\n");
		return -EINVAL;
	}
	if (srv.tls_dir && srv.psk_file) {
		fprintf(stderr, "migrelay serve: use either --tls-dir or --psk-file, not both\n");
		return -EINVAL;
	}
	return 0;
}

/* Phase 2: credentials, limits and tables. Returns 0 or -errno after printing why. */
static int preflight(void)
{
	char why[512] = "";
	int r = 0;

	if (!gw_listen_count(&srv.ls, false))
		r = 0; /* unix: listeners alone: no TLS, no credentials */
	else if (srv.psk_file)
		r = mr_tls_cfg_psk(&srv.tls, srv.psk_file, true, NULL, why, sizeof(why));
	else
		r = mr_tls_cfg_x509(&srv.tls, srv.tls_dir ? srv.tls_dir : "/etc/pki/qemu", true, why, sizeof(why));
	if (r < 0) {
		fprintf(stderr, "migrelay serve: %s\n", why);
		return r;
	}
	if ((r = gw_preauth_init(&srv.preauth, &srv.pre)) < 0) {
		fprintf(stderr, "migrelay serve: out of memory\n");
		return r;
	}
	gw_registry_init(&srv.reg, srv.max_sessions);
	srv.setup = (struct gw_setup_srv){ .targets = srv.targets, .ntargets = srv.ntargets, .allow = &srv.allow,
					   .max_conns = srv.max_conns, .max_streams = (uint16_t)srv.max_streams,
					   .window = (uint32_t)srv.window, .reconnect_ms = srv.reconnect_ms,
					   .keepalive_ms = srv.keepalive_ms, .idle_ms = srv.idle_ms,
					   .plaintext = srv.plaintext, .reg = &srv.reg };
	return 0;
}

/* Phase 3: the listening sockets, non-blocking so the accept loop can enforce deadlines. 0 or -errno. */
static int open_listener(void)
{
	char why[512] = "";
	int r = gw_listen_open(&srv.ls, why, sizeof(why));

	if (r < 0) {
		fprintf(stderr, "migrelay serve: %s\n", why);
		return r;
	}
	/* Handshake threads are many and shallow: a small stack bounds their memory. */
	pthread_attr_init(&srv.hs_attr);
	pthread_attr_setstacksize(&srv.hs_attr, 256 << 10);
	for (int i = 0; i < srv.ls.n; i++)
		if (srv.ls.l[i].local)
			gw_info("listening on %s (mode %04o%s, identity UID=user, no TLS inside), %d target(s)%s",
				srv.ls.l[i].spec, (unsigned)srv.ls.mode, srv.ls.has_gid ? ", --socket-group" : "",
				srv.ntargets, srv.allow.n ? "" : ", every peer the socket lets in allowed");
		else
			gw_info("listening on %s (%s), %d target(s)%s", srv.ls.l[i].spec,
				srv.psk_file ? "TLS 1.3 PSK" : "TLS 1.3 x509", srv.ntargets,
				srv.allow.n ? "" : ", every authenticated peer allowed");
	if (srv.plaintext)
		gw_warn("INSECURE PLAINTEXT offered (--insecure-plaintext): sessions whose client asks for it move their data unencrypted and unauthenticated after the TLS handshake; use only on an isolated migration network");
	return 0;
}

static void peer_name(const struct sockaddr_storage *ss, int fd, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?", id[GW_PEER_ID_MAX];

	if (ss->ss_family == AF_UNIX) {
		if (gw_unix_peer_identity(fd, id, sizeof(id)) < 0)
			snprintf(id, sizeof(id), "UID=?");
		snprintf(buf, len, "local %s", id);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

/* Takes accepted <fd> into the pending list and starts its handshake thread; closes it if it may not stay. */
static void start_setup(int fd, const struct sockaddr_storage *ss, bool local)
{
	struct accepted *a = calloc(1, sizeof(*a));
	pthread_t thr;
	int r;

	if (!a) {
		close(fd);
		return;
	}
	if ((r = gw_preauth_admit(&srv.preauth, fd, (const struct sockaddr *)ss, &a->pe)) < 0) {
		peer_name(ss, fd, a->peer, sizeof(a->peer));
		gw_ratelimited(GW_LOG_WARN, "%s: connection closed at once: %s", a->peer,
			       r == -EAGAIN ? "its address is over --connect-rate"
					    : "too many connections in their setup (--max-pending)");
		close(fd);
		free(a);
		return;
	}
	a->fd = fd;
	a->local = local;
	peer_name(ss, fd, a->peer, sizeof(a->peer));
	if (!local)
		net_tune_tcp(fd);
	if (pthread_create(&thr, &srv.hs_attr, handshake_main, a) != 0) {
		gw_preauth_done(&srv.preauth, a->pe);
		close(fd);
		free(a);
		return;
	}
	pthread_detach(thr);
}

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* Accepts one connection from listener <l> if one is waiting. */
static void accept_one(const struct gw_listener *l)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN)
			gw_ratelimited(GW_LOG_WARN, "accept on %s: %s", l->spec, strerror(errno));
		if (errno == EMFILE || errno == ENFILE)
			usleep(100000);
		return;
	}
	if (l->local)
		ss.ss_family = AF_UNIX; /* an unnamed client socket may leave the address empty */
	start_setup(fd, &ss, l->local);
}

/* Phase 4: accepts until SIGINT or SIGTERM, enforcing setup deadlines every SRV_SWEEP_MS. */
static void accept_loop(void)
{
	struct pollfd pfd[GW_LISTEN_MAX];

	for (int i = 0; i < srv.ls.n; i++)
		pfd[i] = (struct pollfd){ .fd = srv.ls.l[i].fd, .events = POLLIN };
	while (!stop_flag) {
		gw_preauth_sweep(&srv.preauth);
		if (poll(pfd, (nfds_t)srv.ls.n, SRV_SWEEP_MS) <= 0)
			continue;
		for (int i = 0; i < srv.ls.n; i++)
			if (pfd[i].revents & POLLIN)
				accept_one(&srv.ls.l[i]);
	}
}

/* Phase 5: ends the sessions (their peers get an ERROR) and lets setups finish, SRV_STOP_MS at most. */
static void shut_down(void)
{
	bool idle = false;

	gw_info("stopping");
	gw_listen_close(&srv.ls);
	gw_registry_fail_all(&srv.reg, WIRE_E_LIMIT, "the server is stopping");
	for (int i = 0; i < SRV_STOP_MS / 50 && !idle; i++) {
		gw_preauth_sweep(&srv.preauth);
		idle = !gw_registry_busy(&srv.reg) && !gw_preauth_count(&srv.preauth);
		if (!idle)
			usleep(50000);
	}
	pthread_attr_destroy(&srv.hs_attr);
	/* What threads still run may use the credentials and tables: only an idle server frees them. */
	if (idle) {
		for (int i = 0; i < srv.ntargets; i++)
			authz_free(&srv.targets[i].allow);
		authz_free(&srv.allow);
		mr_tls_cfg_free(srv.tls);
		gw_preauth_free(&srv.preauth);
	}
}

int cmd_serve(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	int r;

	gw_log_set_prefix("migrelay serve");
	if ((r = parse_args(argc, argv)) != 0)
		return r > 0 ? MR_EXIT_OK : MR_EXIT_USAGE;
	if (preflight() < 0 || open_listener() < 0)
		return MR_EXIT_USAGE;
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	accept_loop();
	shut_down();
	return MR_EXIT_OK;
}
