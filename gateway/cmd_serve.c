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
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmds.h"
#include "config.h"
#include "control.h"
#include "crypto/authz.h"
#include "exitcodes.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "preauth.h"
#include "registry.h"
#include "reload.h"
#include "setup.h"
#include "snapshot.h"
#include "status.h"
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
	SRV_METRICS_TICK_MS = 1000, /* how often running sessions' bytes are fed to the metrics */
};

#define SRV_DEFAULT_CONFIG "/etc/migrelay/serve.conf"
#define SRV_DEFAULT_TLS_DIR "/etc/pki/qemu"

/*
 * What a reload replaces (docs/OPERATIONS.md "Reload"): credentials (CRL
 * included), targets, allow lists and the per-session settings. Immutable
 * once installed in srv.conf; a handshake holds a reference from its start,
 * and a session holds the references of its connections until it is closed.
 */
struct srvconf {
	struct mr_tls_cfg *tls;
	struct gw_target targets[SRV_MAX_TARGETS];
	int ntargets;
	struct authz_list allow; /* applies to every target */
	struct gw_setup_srv setup;
};

/* The options of one reading of the configuration file and command line. */
struct srvopts {
	struct gw_listen_set ls; /* --listen (TCP and unix:), --socket-mode, --socket-group */
	const char *tls_dir, *psk_file, *ca, *cert, *key, *crl, *control, *metrics;
	int max_sessions, max_streams, window, max_conns;
	int reconnect_ms, keepalive_ms, idle_ms;
	struct gw_preauth_cfg pre;
	bool plaintext; /* --insecure-plaintext: the plaintext mode is offered */
	struct srvconf *conf; /* targets and allow lists go here as they are parsed */
	char why[512];	      /* why parsing failed */
};

struct server {
	struct srvopts o; /* as read at start: what a reload does not change */
	int argc;
	char **argv;		 /* the command line, read again by every reload */
	struct config_args file; /* the configuration file read at start (o's strings point into it) */
	char **nargv;
	/* as open_listener logs them */
	const char *psk_file;
	int ntargets;
	bool plaintext, allow_all;
	struct gw_snapshot conf; /* struct srvconf */
	struct gw_registry reg;
	struct gw_preauth preauth;
	pthread_attr_t hs_attr;
	struct gw_control *ctl;
	struct gw_metrics_http *mh;
	/* written before the control thread starts, read by it: */
	char control_path[108], metrics_addr[80];
	uint64_t start_ns, last_tick_ns;
	sigset_t hup;
};

static struct server srv = { .conf = GW_SNAPSHOT_INITIALIZER };

static int do_reload(void *ctx, char *msg, size_t msglen);
static struct gw_reloader reloader = GW_RELOADER_INITIALIZER(do_reload, NULL);

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
	struct gw_snap_hold *hold = calloc(1, sizeof(*hold));
	const struct srvconf *conf;
	struct gw_admitted adm;
	struct gw_link l = { .fd = -1 };
	struct mr_tls *t = NULL;
	struct mr_conn *c = NULL;
	enum mr_tls_fail fail;
	char why[512] = "", uid[GW_PEER_ID_MAX];
	int left;

	/* The configuration in force now serves this connection to its end, whatever reloads come. */
	if (!hold || !(hold->snap = gw_snapshot_get(&srv.conf)))
		goto out;
	conf = gw_snap_obj(hold->snap);
	left = ms_left(deadline);
	if (!first_bytes(a->fd, left < SRV_CLIENTHELLO_MS ? left : SRV_CLIENTHELLO_MS)) {
		gw_metrics_handshake_failed(GW_HS_TIMEOUT);
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
		    mr_tls_handshake(&t, conf->tls, a->fd, NULL, left, &fail, why, sizeof(why)) < 0) {
			gw_metrics_handshake_failed(left <= 0 || ms_left(deadline) <= 0 ? GW_HS_TIMEOUT : GW_HS_TLS);
			gw_ratelimited(GW_LOG_WARN, "%s: TLS handshake failed: %s", a->peer,
				       why[0] ? why : "setup deadline");
			goto out;
		}
		l = gw_link_tls(t, a->fd);
		t = NULL;
	}
	a->fd = -1; /* the link holds it */
	gw_preauth_authed(&srv.preauth, a->pe);
	if (gw_setup_serve(&conf->setup, &l, a->peer,
			   l.tls ? mr_tls_peer_identity(l.tls) : (gw_unix_peer_identity(l.fd, uid, sizeof(uid)) ? "" : uid),
			   deadline, &adm) < 0)
		goto out;
	/* Out of the pending list first: from here on nothing but the session touches the socket. */
	gw_preauth_done(&srv.preauth, a->pe);
	gw_registry_hold(&srv.reg, adm.e, hold);
	gw_setup_handover(&conf->setup, &adm, &l, a->peer);
	free(a);
	return NULL;
out:
	gw_preauth_done(&srv.preauth, a->pe);
	gw_link_free(&l);
	if (a->fd >= 0)
		close(a->fd);
	free(a);
	if (hold)
		gw_snap_put(hold->snap);
	free(hold);
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
	"                            and ca-crl.pem when present (revoked clients are refused)\n"
	"                            (QEMU's tls-creds-x509 layout; default /etc/pki/qemu)\n"
	"      --ca FILE             x509 files named one by one instead of --tls-dir (libvirt's\n"
	"      --cert FILE             layout: /etc/pki/CA/cacert.pem, /etc/pki/libvirt/...): the\n"
	"      --key FILE              CA(s), this server's certificate and its key; all three\n"
	"      --crl FILE            optional with --ca: a PEM CRL whose certificates are refused\n"
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
	"      --config FILE         read options from FILE first (migrelay-serve.conf(5); default\n"
	"                            " SRV_DEFAULT_CONFIG " when present; \"none\": no file);\n"
	"                            the command line overrides it\n"
	"      --control unix:PATH   control socket for `migrelay status` (status and reload;\n"
	"                            mode 0600, this user and root only). Default\n"
	"                            " GW_CONTROL_DEFAULT_PATH " when /run/migrelay exists, else\n"
	"                            none; \"none\": no control socket\n"
	"      --metrics HOST:PORT   serve Prometheus metrics at http://HOST:PORT/metrics (default:\n"
	"                            off); anyone who can reach it sees the counters\n"
	"  -v, --verbose             debug logging\n"
	"  -h, --help                this text\n"
	"\n"
	"SIGHUP (or `migrelay status reload`) re-reads the configuration file, the\n"
	"certificates, CRL, PSK file, allow lists and targets: sessions in flight keep\n"
	"their settings and finish, new connections use the new ones; a reload that\n"
	"does not validate changes nothing and says why. --listen, --control, --metrics,\n"
	"--max-sessions and the pre-authentication limits need a restart.\n"
	"\n"
	"Exit codes: 0 stopped by SIGINT or SIGTERM; 2 usage or configuration error.\n";


enum { O_TLS = 0x1000, O_PSK, O_ALLOW, O_ALLOW_FOR, O_MAXS, O_MAXST, O_WINDOW, O_RECONNECT, O_KEEPALIVE,
       O_HS_TIMEOUT, O_MAX_PENDING, O_PER_ADDR, O_RATE, O_IDLE, O_MAXC, O_PLAIN, O_CA, O_CERT, O_KEY, O_CRL,
       O_CONFIG, O_CONTROL, O_METRICS, O_SOCK_MODE, O_SOCK_GROUP };

static const struct option serve_opts[] = {
	{ "listen", required_argument, NULL, 'l' },   { "target", required_argument, NULL, 'T' },
	{ "tls-dir", required_argument, NULL, O_TLS }, { "psk-file", required_argument, NULL, O_PSK },
	{ "ca", required_argument, NULL, O_CA },       { "cert", required_argument, NULL, O_CERT },
	{ "key", required_argument, NULL, O_KEY },     { "crl", required_argument, NULL, O_CRL },
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
	{ "config", required_argument, NULL, O_CONFIG }, { "control", required_argument, NULL, O_CONTROL },
	{ "metrics", required_argument, NULL, O_METRICS },
	{ "socket-mode", required_argument, NULL, O_SOCK_MODE },
	{ "socket-group", required_argument, NULL, O_SOCK_GROUP },
	{ "help", no_argument, NULL, 'h' },           { NULL, 0, NULL, 0 },
};

/* Keys a configuration file may not use. */
static const char *const file_refuses[] = { "help", "config", NULL };

/* The numeric options: range and unit of each, and where it goes. */
static const struct numopt {
	int opt;
	const char *name;
	long lo, hi;
	int scale; /* 1000 for seconds given, milliseconds kept */
	size_t off; /* of the int in struct srvopts */
} numopts[] = {
	{ O_MAXS, "max-sessions", 1, 256, 1, offsetof(struct srvopts, max_sessions) },
	{ O_MAXST, "max-streams", 1, WIRE_MAX_STREAMS, 1, offsetof(struct srvopts, max_streams) },
	{ O_WINDOW, "window", WIRE_MIN_WINDOW, WIRE_MAX_WINDOW, 1, offsetof(struct srvopts, window) },
	{ O_MAXC, "max-connections", 1, WIRE_MAX_CONNS, 1, offsetof(struct srvopts, max_conns) },
	{ O_IDLE, "idle-timeout", 0, 86400, 1000, offsetof(struct srvopts, idle_ms) },
	{ O_RECONNECT, "reconnect-timeout", 0, 3600, 1000, offsetof(struct srvopts, reconnect_ms) },
	{ O_KEEPALIVE, "keepalive", 1, 600, 1000, offsetof(struct srvopts, keepalive_ms) },
	{ O_HS_TIMEOUT, "handshake-timeout", 1, 600, 1000, offsetof(struct srvopts, pre.setup_ms) },
	{ O_MAX_PENDING, "max-pending", 1, 65536, 1, offsetof(struct srvopts, pre.max_pending) },
	{ O_PER_ADDR, "max-pending-per-address", 1, 65536, 1, offsetof(struct srvopts, pre.max_per_addr) },
	{ O_RATE, "connect-rate", 1, 1000000, 1, offsetof(struct srvopts, pre.rate) },
};

static int parse_num(struct srvopts *o, const struct numopt *n, const char *arg)
{
	int *dst = (int *)((char *)o + n->off);
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < n->lo || v > n->hi) {
		snprintf(o->why, sizeof(o->why), "--%s takes %ld to %ld%s, not \"%.40s\"", n->name, n->lo, n->hi,
			 n->scale == 1000 ? " seconds" : "", arg);
		return -EINVAL;
	}
	*dst = (int)v * n->scale;
	/* --reconnect-timeout 0: fail at once, which the session spells < 0 */
	if (n->opt == O_RECONNECT && v == 0)
		*dst = -1;
	return 0;
}

static int add_target(struct srvopts *o, const char *arg)
{
	struct srvconf *c = o->conf;
	char why[512] = "";
	struct gw_target *t;

	if (c->ntargets >= SRV_MAX_TARGETS) {
		snprintf(o->why, sizeof(o->why), "at most %d targets", SRV_MAX_TARGETS);
		return -EINVAL;
	}
	t = &c->targets[c->ntargets];
	if (gw_target_parse(t, arg, why, sizeof(why)) < 0) {
		snprintf(o->why, sizeof(o->why), "%s", why);
		return -EINVAL;
	}
	for (int i = 0; i < c->ntargets; i++)
		if (!strcmp(c->targets[i].name, t->name)) {
			snprintf(o->why, sizeof(o->why), "target %s given twice", t->name);
			return -EINVAL;
		}
	c->ntargets++;
	return 0;
}

static int add_allow_for(struct srvopts *o, const char *arg)
{
	struct srvconf *c = o->conf;
	const char *eq = strchr(arg, '=');
	struct gw_target *t = NULL;

	for (int i = 0; eq && i < c->ntargets; i++)
		if (strlen(c->targets[i].name) == (size_t)(eq - arg) &&
		    !strncmp(c->targets[i].name, arg, (size_t)(eq - arg)))
			t = &c->targets[i];
	if (!t || authz_add(&t->allow, eq + 1) < 0) {
		snprintf(o->why, sizeof(o->why),
			 "--allow-for \"%.80s\": needs NAME=PATTERN with NAME a --target given before it", arg);
		return -EINVAL;
	}
	return 0;
}

/* --listen, --socket-mode, --socket-group into <o>. 0 or -EINVAL with o->why set. */
static int listen_opt(struct srvopts *o, int c, const char *arg)
{
	int r = c == 'l'	   ? gw_listen_add(&o->ls, arg, o->why, sizeof(o->why))
		: c == O_SOCK_MODE ? gw_listen_set_mode(&o->ls, arg, o->why, sizeof(o->why))
				   : gw_listen_set_group(&o->ls, arg, o->why, sizeof(o->why));

	return r < 0 ? -EINVAL : 0;
}

/* One option. Returns 0, 1 for --help, or -EINVAL with o->why set (empty: print the usage). */
static int parse_opt(struct srvopts *o, int c, const char *arg)
{
	for (size_t i = 0; i < sizeof(numopts) / sizeof(numopts[0]); i++)
		if (numopts[i].opt == c)
			return parse_num(o, &numopts[i], arg);
	switch (c) {
	case 'l':
	case O_SOCK_MODE:
	case O_SOCK_GROUP:
		return listen_opt(o, c, arg);
	case 'T':
		return add_target(o, arg);
	case O_TLS:
		o->tls_dir = arg;
		return 0;
	case O_PSK:
		o->psk_file = arg;
		return 0;
	case O_CA:
		o->ca = arg;
		return 0;
	case O_CERT:
		o->cert = arg;
		return 0;
	case O_KEY:
		o->key = arg;
		return 0;
	case O_CRL:
		o->crl = arg;
		return 0;
	case O_CONFIG: /* read before the options (config_argv) */
		return 0;
	case O_CONTROL:
		o->control = arg;
		return 0;
	case O_METRICS:
		o->metrics = arg;
		return 0;
	case O_ALLOW:
		if (authz_add(&o->conf->allow, arg) < 0) {
			snprintf(o->why, sizeof(o->why), "--allow \"%.80s\" is not a valid pattern", arg);
			return -EINVAL;
		}
		return 0;
	case O_ALLOW_FOR:
		return add_allow_for(o, arg);
	case O_PLAIN:
		o->plaintext = true;
		return 0;
	case 'v':
		gw_log_level = GW_LOG_DEBUG;
		return 0;
	case 'h':
		return 1;
	default:
		o->why[0] = '\0';
		return -EINVAL;
	}
}

static void conf_free(void *p)
{
	struct srvconf *c = p;

	if (!c)
		return;
	for (int i = 0; i < c->ntargets; i++)
		authz_free(&c->targets[i].allow);
	authz_free(&c->allow);
	mr_tls_cfg_free(c->tls);
	free(c);
}

/*
 * The configuration file: --config FILE from <argv> (the last one wins), or
 * SRV_DEFAULT_CONFIG when it exists; "none" reads none. Fills <file>.
 * Returns 0 or -errno with o->why set.
 */
static int config_read(int argc, char **argv, struct config_args *file, char *why, size_t whylen)
{
	const struct config_spec spec = { .keys = serve_opts, .refuse = file_refuses };
	const char *path = NULL;
	bool dflt = false;
	int r;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			path = argv[++i];
		else if (!strncmp(argv[i], "--config=", 9))
			path = argv[i] + 9;
	}
	if (!path) {
		path = SRV_DEFAULT_CONFIG;
		dflt = true;
	}
	if (!strcmp(path, "none"))
		return 0;
	r = config_load(path, &spec, file, why, whylen);
	if (r == -ENOENT && dflt)
		return 0;
	return r;
}

/*
 * Reads the configuration file and the command line into <o> and a new
 * o->conf (the caller frees it with conf_free). The file comes first, so
 * the command line overrides it. *nargv (freed by the caller) holds the
 * merged argv that o's strings point into, with <file>.
 * Returns 0, 1 after --help, or -EINVAL with o->why set.
 */
static int parse_all(struct srvopts *o, int argc, char **argv, struct config_args *file, char ***nargv)
{
	int c, r, nargc;

	*o = (struct srvopts){
		.max_sessions = SRV_DEFAULT_MAX_SESSIONS,
		.window = GW_DEFAULT_WINDOW,
		.max_streams = GW_DEFAULT_MAX_STREAMS,
		.idle_ms = 600 * 1000,
		.max_conns = 16,
		.pre = { .max_pending = SRV_DEFAULT_MAX_PENDING, .max_per_addr = SRV_DEFAULT_PER_ADDR,
			 .rate = SRV_DEFAULT_RATE, .setup_ms = GW_SETUP_TIMEOUT_MS },
	};
	gw_listen_init(&o->ls);
	*nargv = NULL;
	if (!(o->conf = calloc(1, sizeof(*o->conf)))) {
		snprintf(o->why, sizeof(o->why), "out of memory");
		return -ENOMEM;
	}
	if ((r = config_read(argc, argv, file, o->why, sizeof(o->why))) < 0)
		return -EINVAL;
	if (config_merge_argv(file, argc, argv, &nargc, nargv) < 0) {
		snprintf(o->why, sizeof(o->why), "out of memory");
		return -ENOMEM;
	}
	optind = 0; /* glibc: start afresh (a reload parses again) */
	opterr = 0;
	while ((c = getopt_long(nargc, *nargv, ":l:T:vh", serve_opts, NULL)) != -1) {
		if (c == '?' || c == ':') {
			snprintf(o->why, sizeof(o->why), "%s \"%.80s\" (see --help)",
				 c == ':' ? "missing value for" : "unknown option", (*nargv)[optind - 1]);
			return -EINVAL;
		}
		if ((r = parse_opt(o, c, optarg)) != 0)
			return r;
	}
	if (optind < nargc) {
		snprintf(o->why, sizeof(o->why), "unexpected argument \"%.80s\" (see --help)", (*nargv)[optind]);
		return -EINVAL;
	}
	if (!o->ls.n || !o->conf->ntargets) {
		snprintf(o->why, sizeof(o->why),
			 "--listen HOST:PORT (or unix:PATH) and at least one --target NAME=SPEC are required (see --help)");
		return -EINVAL;
	}
	if ((o->ca || o->cert || o->key || o->crl) && (o->tls_dir || o->psk_file)) {
		snprintf(o->why, sizeof(o->why), "use --ca/--cert/--key/--crl or --tls-dir or --psk-file, one of them");
		return -EINVAL;
	}
	if ((o->ca || o->cert || o->key || o->crl) && !(o->ca && o->cert && o->key)) {
		snprintf(o->why, sizeof(o->why), "--ca, --cert and --key go together (--crl is optional)");
		return -EINVAL;
	}
	if (o->tls_dir && o->psk_file) {
		snprintf(o->why, sizeof(o->why), "use either --tls-dir or --psk-file, not both");
		return -EINVAL;
	}
	return 0;
}

/* Whether two --listen sets name the same listeners with the same socket mode and group. */
static bool listen_same(const struct gw_listen_set *a, const struct gw_listen_set *b)
{
	if (a->n != b->n || a->mode != b->mode || a->has_gid != b->has_gid || (a->has_gid && a->gid != b->gid))
		return false;
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->l[i].spec, b->l[i].spec))
			return false;
	return true;
}

/* The credentials and session settings of o->conf. Returns 0 or -errno with o->why set. */
static int conf_build(struct srvopts *o)
{
	struct srvconf *c = o->conf;
	char why[512] = "";
	int r;

	if (!gw_listen_count(&o->ls, false)) {
		r = 0; /* unix: listeners alone: no TLS, no credentials */
	} else if (o->psk_file) {
		r = mr_tls_cfg_psk(&c->tls, o->psk_file, true, NULL, why, sizeof(why));
	} else if (o->ca) {
		const struct mr_tls_files f = { .ca = o->ca, .cert = o->cert, .key = o->key, .crl = o->crl };

		r = mr_tls_cfg_x509_files(&c->tls, &f, true, why, sizeof(why));
	} else {
		r = mr_tls_cfg_x509(&c->tls, o->tls_dir ? o->tls_dir : SRV_DEFAULT_TLS_DIR, true, why, sizeof(why));
	}
	if (r < 0) {
		snprintf(o->why, sizeof(o->why), "%s", why);
		return r;
	}
	c->setup = (struct gw_setup_srv){ .targets = c->targets, .ntargets = c->ntargets, .allow = &c->allow,
					  .max_conns = o->max_conns, .max_streams = (uint16_t)o->max_streams,
					  .window = (uint32_t)o->window, .reconnect_ms = o->reconnect_ms,
					  .keepalive_ms = o->keepalive_ms, .idle_ms = o->idle_ms,
					  .plaintext = o->plaintext, .reg = &srv.reg };
	for (int i = 0; i < c->ntargets; i++)
		if (gw_metrics_target_add(c->targets[i].name) == -ENOSPC)
			gw_warn("metrics: more than %d target names, target %s is counted as \"(other)\"",
				GW_METRICS_MAX_TARGETS, c->targets[i].name);
	return 0;
}

/* The credentials' origin, for messages. */
static const char *creds_name(const struct srvopts *o, char *buf, size_t len)
{
	if (o->psk_file)
		snprintf(buf, len, "PSK file %s", o->psk_file);
	else if (o->ca)
		snprintf(buf, len, "certificate %s%s%s", o->cert, o->crl ? ", CRL " : "", o->crl ? o->crl : "");
	else
		snprintf(buf, len, "TLS directory %s", o->tls_dir ? o->tls_dir : SRV_DEFAULT_TLS_DIR);
	return buf;
}

/*
 * The reload function (gw_reload_run serializes the callers: the main loop
 * after SIGHUP, the control thread): reads the configuration file and the
 * command line again and validates them as at start; installs the result,
 * or leaves the configuration in force alone and says why.
 */
static int do_reload(void *ctx, char *msg, size_t msglen)
{
	struct config_args file = { 0 };
	struct srvopts *o = calloc(1, sizeof(*o));
	char **nargv = NULL, creds[600], fixed[160] = "";
	uint64_t gen = 0;
	int r;

	(void)ctx;
	if (!o) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	r = parse_all(o, srv.argc, srv.argv, &file, &nargv);
	if (r == 0)
		r = conf_build(o);
	if (r == 0 && (r = gw_snapshot_swap(&srv.conf, o->conf, conf_free, &gen)) < 0)
		snprintf(o->why, sizeof(o->why), "out of memory");
	if (r != 0) {
		snprintf(msg, msglen, "%s", o->why[0] ? o->why : "invalid options");
		conf_free(o->conf);
		r = r < 0 ? r : -EINVAL;
		goto out;
	}
	/* What only a restart changes: say so rather than pretend. */
	if (!listen_same(&o->ls, &srv.o.ls) || o->max_sessions != srv.o.max_sessions ||
	    memcmp(&o->pre, &srv.o.pre, sizeof(o->pre)) || (o->metrics && !srv.o.metrics) ||
	    (o->metrics && strcmp(o->metrics, srv.o.metrics)) || (o->control && !srv.o.control) ||
	    (o->control && strcmp(o->control, srv.o.control)))
		snprintf(fixed, sizeof(fixed),
			 "; --listen, --control, --metrics, --max-sessions and the pre-authentication limits changed "
			 "but need a restart");
	snprintf(msg, msglen, "reloaded: configuration generation %llu, %d target(s), %s%s", (unsigned long long)gen,
		 o->conf->ntargets, creds_name(o, creds, sizeof(creds)), fixed);
	r = 0;
out:
	free(nargv);
	config_args_free(&file);
	free(o);
	return r;
}

/* Phase 1: the configuration file and the command line into srv.o. Returns 0, 1 after --help, or -EINVAL after printing why. */
static int parse_args(int argc, char **argv)
{
	int r;

	srv.argc = argc;
	srv.argv = argv;
	r = parse_all(&srv.o, argc, argv, &srv.file, &srv.nargv);
	if (r == 1) {
		fputs(serve_usage, stdout);
		return 1;
	}
	if (r < 0) {
		if (srv.o.why[0])
			fprintf(stderr, "migrelay serve: %s\n", srv.o.why);
		else
			fputs(serve_usage, stderr);
		conf_free(srv.o.conf);
		srv.o.conf = NULL;
		return -EINVAL;
	}
	srv.psk_file = srv.o.psk_file;
	srv.ntargets = srv.o.conf->ntargets;
	srv.plaintext = srv.o.plaintext;
	srv.allow_all = !srv.o.conf->allow.n;
	return 0;
}

/* Phase 2: credentials, limits and tables. Returns 0 or -errno after printing why. */
static int preflight(void)
{
	int r;

	gw_registry_init(&srv.reg, srv.o.max_sessions);
	if ((r = conf_build(&srv.o)) < 0) {
		fprintf(stderr, "migrelay serve: %s\n", srv.o.why);
		conf_free(srv.o.conf);
		return r;
	}
	if ((r = gw_snapshot_init(&srv.conf, srv.o.conf, conf_free)) < 0) {
		conf_free(srv.o.conf);
		fprintf(stderr, "migrelay serve: out of memory\n");
		return r;
	}
	srv.o.conf = NULL; /* the snapshot's now */
	if ((r = gw_preauth_init(&srv.preauth, &srv.o.pre)) < 0) {
		fprintf(stderr, "migrelay serve: out of memory\n");
		return r;
	}
	return 0;
}

/* Phase 3: the listening sockets, non-blocking so the accept loop can enforce deadlines. 0 or -errno. */
static int open_listener(void)
{
	char why[512] = "";
	int r = gw_listen_open(&srv.o.ls, why, sizeof(why));

	if (r < 0) {
		fprintf(stderr, "migrelay serve: %s\n", why);
		return r;
	}
	/* Handshake threads are many and shallow: a small stack bounds their memory. */
	pthread_attr_init(&srv.hs_attr);
	pthread_attr_setstacksize(&srv.hs_attr, 256 << 10);
	for (int i = 0; i < srv.o.ls.n; i++)
		if (srv.o.ls.l[i].local)
			gw_info("listening on %s (mode %04o%s, identity UID=user, no TLS inside), %d target(s)%s",
				srv.o.ls.l[i].spec, (unsigned)srv.o.ls.mode, srv.o.ls.has_gid ? ", --socket-group" : "",
				srv.ntargets, srv.allow_all ? ", every peer the socket lets in allowed" : "");
		else
			gw_info("listening on %s (%s), %d target(s)%s", srv.o.ls.l[i].spec,
				srv.psk_file ? "TLS 1.3 PSK" : "TLS 1.3 x509", srv.ntargets,
				srv.allow_all ? ", every authenticated peer allowed" : "");
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
		if (r != -EAGAIN)
			gw_metrics_refused(GW_LIMIT_PENDING);
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

/*
 * The main loop's chores, every SRV_SWEEP_MS: a reload after SIGHUP (kept
 * blocked in every thread and collected here, so no other thread's system
 * call is interrupted) and the running sessions' bytes into the metrics.
 */
static void serve_tick(void)
{
	const struct timespec zero = { 0 };
	uint64_t now = gw_now_ns();

	while (sigtimedwait(&srv.hup, NULL, &zero) == SIGHUP)
		gw_reload_request(&reloader);
	(void)gw_reload_poll(&reloader);
	if (now - srv.last_tick_ns >= (uint64_t)SRV_METRICS_TICK_MS * 1000000u) {
		srv.last_tick_ns = now;
		gw_registry_metrics_tick(&srv.reg);
	}
}

/* The control socket's status callback (control thread): numbers copied under locks, no I/O. */
static int status_cb(void *ctx, struct json_object *st)
{
	struct gw_status_daemon d = { .version = MR_VERSION };
	struct gw_snap *snap = gw_snapshot_get(&srv.conf);
	const struct srvconf *c = snap ? gw_snap_obj(snap) : NULL;
	char rmsg[GW_CONTROL_MAX_MESSAGE];
	int listed = 0, closing = 0, conns = 0, r = 0;

	(void)ctx;
	d.uptime_s = (double)(gw_now_ns() - srv.start_ns) / 1e9;
	d.config_generation = snap ? snap->gen : 0;
	gw_reload_describe(&reloader, &d, rmsg, sizeof(rmsg));
	gw_registry_counts(&srv.reg, &listed, &closing, &conns);
	r |= gw_status_set_daemon(st, &d);
	for (int i = 0; i < srv.o.ls.n; i++)
		r |= gw_status_add_listener(st, srv.o.ls.l[i].local ? "unix" : "tcp", srv.o.ls.l[i].spec);
	if (srv.control_path[0])
		r |= gw_status_add_listener(st, "control", srv.control_path);
	if (srv.metrics_addr[0])
		r |= gw_status_add_listener(st, "metrics", srv.metrics_addr);
	r |= gw_status_add_limit(st, "sessions", listed, srv.o.max_sessions);
	r |= gw_status_add_limit(st, "sessions_closing", closing, srv.o.max_sessions);
	r |= gw_status_add_limit(st, "pending", gw_preauth_count(&srv.preauth), srv.o.pre.max_pending);
	r |= gw_status_add_limit(st, "connections", conns, c ? c->setup.max_conns : srv.o.max_conns);
	gw_snap_put(snap);
	if (!r)
		r = gw_registry_status(&srv.reg, st);
	return r ? -ENOMEM : 0;
}

/* --control and --metrics: started before any other thread, stopped at the end. 0 or -errno after printing why. */
static int start_servers(void)
{
	const struct gw_control_ops ops = { .status = status_cb, .reload = gw_reload_run, .ctx = &reloader };
	const char *ctl = srv.o.control;
	char why[512] = "", dir[sizeof(srv.control_path)];
	struct stat sb;
	int r;

	if (!ctl) {
		/* The default only where a service manager made the directory (the unit's RuntimeDirectory). */
		snprintf(dir, sizeof(dir), "%s", GW_CONTROL_DEFAULT_PATH);
		*strrchr(dir, '/') = '\0';
		if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode))
			ctl = GW_CONTROL_DEFAULT_PATH;
	}
	/* Metrics first: the control thread reports their address. */
	if (srv.o.metrics) {
		if ((r = gw_metrics_http_start(&srv.mh, srv.o.metrics, why, sizeof(why))) < 0) {
			fprintf(stderr, "migrelay serve: --metrics: %s\n", why);
			return r;
		}
		snprintf(srv.metrics_addr, sizeof(srv.metrics_addr), "%s", gw_metrics_http_address(srv.mh));
		gw_info("metrics at http://%s/metrics", srv.metrics_addr);
	}
	if (ctl && strcmp(ctl, "none")) {
		if (gw_control_parse_path(ctl, srv.control_path, sizeof(srv.control_path)) < 0) {
			fprintf(stderr, "migrelay serve: --control takes unix:PATH (a short enough path) or none, not \"%.80s\"\n",
				ctl);
			return -EINVAL;
		}
		if ((r = gw_control_start(&srv.ctl, srv.control_path, &ops, why, sizeof(why))) < 0) {
			fprintf(stderr, "migrelay serve: control socket: %s\n", why);
			return r;
		}
		gw_info("control socket %s (migrelay status --control %s)", srv.control_path, srv.control_path);
	}
	return 0;
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

	for (int i = 0; i < srv.o.ls.n; i++)
		pfd[i] = (struct pollfd){ .fd = srv.o.ls.l[i].fd, .events = POLLIN };
	while (!stop_flag) {
		gw_preauth_sweep(&srv.preauth);
		serve_tick();
		if (poll(pfd, (nfds_t)srv.o.ls.n, SRV_SWEEP_MS) <= 0)
			continue;
		for (int i = 0; i < srv.o.ls.n; i++)
			if (pfd[i].revents & POLLIN)
				accept_one(&srv.o.ls.l[i]);
	}
}

/* Phase 5: ends the sessions (their peers get an ERROR) and lets setups finish, SRV_STOP_MS at most. */
static void shut_down(void)
{
	bool idle = false;

	gw_info("stopping");
	gw_listen_close(&srv.o.ls);
	gw_control_stop(srv.ctl);
	srv.ctl = NULL;
	gw_registry_fail_all(&srv.reg, WIRE_E_LIMIT, "the server is stopping");
	for (int i = 0; i < SRV_STOP_MS / 50 && !idle; i++) {
		gw_preauth_sweep(&srv.preauth);
		idle = !gw_registry_busy(&srv.reg) && !gw_preauth_count(&srv.preauth);
		if (!idle)
			usleep(50000);
	}
	gw_metrics_http_stop(srv.mh);
	srv.mh = NULL;
	pthread_attr_destroy(&srv.hs_attr);
	/* What threads still run may use the credentials and tables: only an idle server frees them. */
	if (idle) {
		gw_snapshot_fini(&srv.conf);
		gw_preauth_free(&srv.preauth);
		free(srv.nargv);
		config_args_free(&srv.file);
	}
}

int cmd_serve(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	int r;

	gw_log_set_prefix("migrelay serve");
	srv.start_ns = srv.last_tick_ns = gw_now_ns();
	/* SIGHUP stays blocked in every thread (they inherit this mask); serve_tick collects it. */
	sigemptyset(&srv.hup);
	sigaddset(&srv.hup, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &srv.hup, NULL);
	if ((r = parse_args(argc, argv)) != 0)
		return r > 0 ? MR_EXIT_OK : MR_EXIT_USAGE;
	if (preflight() < 0 || open_listener() < 0)
		return MR_EXIT_USAGE;
	if (start_servers() < 0) {
		gw_metrics_http_stop(srv.mh);
		gw_listen_close(&srv.o.ls);
		return MR_EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	accept_loop();
	shut_down();
	return MR_EXIT_OK;
}
