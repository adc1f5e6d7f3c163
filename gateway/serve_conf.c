/* SPDX-License-Identifier: MIT */
/*
 * `migrelay serve`'s configuration: the options (command line and
 * migrelay-serve.conf(5)), the configuration a reload replaces (struct
 * srvconf: credentials, targets, allow lists, session settings) and the
 * reload itself (docs/OPERATIONS.md "Reload").
 */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "serve.h"

static int do_reload(void *ctx, char *msg, size_t msglen);
struct gw_reloader serve_reloader = GW_RELOADER_INITIALIZER(do_reload, NULL);

const char serve_usage[] =
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
	"      --allow-for NAME=PATTERN  for target NAME only, and INSTEAD of --allow: a\n"
	"                            target with --allow-for admits only its own patterns\n"
	"                            (a global --allow never opens it); a target without\n"
	"                            takes --allow; with neither, every authenticated peer\n"
	"                            is allowed.\n"
	"      --max-sessions N      sessions at once (default 16)\n"
	"      --max-sessions-per-identity N  sessions one peer identity may hold at once\n"
	"                            (default 0: only --max-sessions), so that one peer\n"
	"                            cannot take every slot from the others\n"
	"      --max-streams N       streams open at once per session (default 8)\n"
	"      --window BYTES        bytes in flight per stream direction, 1M to 64M (K, M\n"
	"                            suffixes; default 4M);\n"
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
       O_CONFIG, O_CONTROL, O_METRICS, O_SOCK_MODE, O_SOCK_GROUP, O_PER_ID };

static const struct option serve_opts[] = {
	{ "listen", required_argument, NULL, 'l' },   { "target", required_argument, NULL, 'T' },
	{ "tls-dir", required_argument, NULL, O_TLS }, { "psk-file", required_argument, NULL, O_PSK },
	{ "ca", required_argument, NULL, O_CA },       { "cert", required_argument, NULL, O_CERT },
	{ "key", required_argument, NULL, O_KEY },     { "crl", required_argument, NULL, O_CRL },
	{ "allow", required_argument, NULL, O_ALLOW }, { "allow-for", required_argument, NULL, O_ALLOW_FOR },
	{ "max-sessions", required_argument, NULL, O_MAXS },
	{ "max-sessions-per-identity", required_argument, NULL, O_PER_ID },
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
	int scale; /* 1000 for seconds given, milliseconds kept; 0 for a size in bytes (K and M suffixes) */
	size_t off; /* of the int in struct srvopts */
} numopts[] = {
	{ O_MAXS, "max-sessions", 1, 256, 1, offsetof(struct srvopts, max_sessions) },
	{ O_PER_ID, "max-sessions-per-identity", 0, 256, 1, offsetof(struct srvopts, max_per_identity) },
	{ O_MAXST, "max-streams", 1, WIRE_MAX_STREAMS, 1, offsetof(struct srvopts, max_streams) },
	{ O_WINDOW, "window", WIRE_MIN_WINDOW, WIRE_MAX_WINDOW, 0, offsetof(struct srvopts, window) },
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

	if (n->scale == 0) { /* a size: 4194304, 4096K or 4M */
		uint64_t b;

		if (cli_parse_bytes(arg, (uint64_t)n->lo, (uint64_t)n->hi, &b) < 0) {
			snprintf(o->why, sizeof(o->why), "--%s takes %ld to %ld bytes (or %ldM to %ldM), not \"%.40s\"",
				 n->name, n->lo, n->hi, n->lo >> 20, n->hi >> 20, arg);
			return -EINVAL;
		}
		*dst = (int)b;
		return 0;
	}
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

void serve_conf_free(void *p)
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
 * o->conf (the caller frees it with serve_conf_free). The file comes first, so
 * the command line overrides it. *nargv (freed by the caller) holds the
 * merged argv that o's strings point into, with <file>.
 * Returns 0, 1 after --help, or -EINVAL with o->why set.
 */
int serve_parse_all(struct srvopts *o, int argc, char **argv, struct config_args *file, char ***nargv)
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
int serve_conf_build(struct srvopts *o)
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
					  .max_conns = o->max_conns, .max_per_identity = o->max_per_identity,
					  .max_streams = (uint16_t)o->max_streams,
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
	r = serve_parse_all(o, srv.argc, srv.argv, &file, &nargv);
	if (r == 0)
		r = serve_conf_build(o);
	if (r == 0 && (r = gw_snapshot_swap(&srv.conf, o->conf, serve_conf_free, &gen)) < 0)
		snprintf(o->why, sizeof(o->why), "out of memory");
	if (r != 0) {
		snprintf(msg, msglen, "%s", o->why[0] ? o->why : "invalid options");
		serve_conf_free(o->conf);
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
