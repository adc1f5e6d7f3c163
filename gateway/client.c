/* SPDX-License-Identifier: MIT */
#include "client.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/ssh_conn.h"
#include "log.h"
#include "net.h"
#include "setup.h"

enum {
	OPT_TO = 't',
	OPT_TARGET = 'n',
	OPT_CONNS = 'c',
	OPT_TLS_DIR = 0x1000,
	OPT_PSK_FILE,
	OPT_PSK_ID,
	OPT_SERVER_NAME,
	OPT_COMPRESS,
	OPT_JSON,
	OPT_PROGRESS,
	OPT_QUIET,
	OPT_RECONNECT,
	OPT_KEEPALIVE,
	OPT_PLAINTEXT,
	OPT_SSH_KEY,
	OPT_SSH_ACCEPT_NEW,
	OPT_SSH_KNOWN_HOSTS,
	OPT_SSH_NO_AGENT,
};

const struct option gw_client_longopts[] = {
	{ "to", required_argument, NULL, OPT_TO },
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "connections", required_argument, NULL, OPT_CONNS },
	{ "tls-dir", required_argument, NULL, OPT_TLS_DIR },
	{ "psk-file", required_argument, NULL, OPT_PSK_FILE },
	{ "psk-identity", required_argument, NULL, OPT_PSK_ID },
	{ "server-name", required_argument, NULL, OPT_SERVER_NAME },
	{ "compress", required_argument, NULL, OPT_COMPRESS },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "progress", no_argument, NULL, OPT_PROGRESS },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "reconnect-timeout", required_argument, NULL, OPT_RECONNECT },
	{ "keepalive", required_argument, NULL, OPT_KEEPALIVE },
	{ "insecure-plaintext", no_argument, NULL, OPT_PLAINTEXT },
	{ "ssh-key", required_argument, NULL, OPT_SSH_KEY },
	{ "ssh-accept-new", no_argument, NULL, OPT_SSH_ACCEPT_NEW },
	{ "ssh-known-hosts", required_argument, NULL, OPT_SSH_KNOWN_HOSTS },
	{ "ssh-no-agent", no_argument, NULL, OPT_SSH_NO_AGENT },
	{ NULL, 0, NULL, 0 },
};

const char gw_client_usage[] =
	"Transport options:\n"
	"  -t, --to HOST:PORT        the destination gateway (`migrelay serve`)\n"
	"  -t, --to ssh://[USER@]HOST[:PORT][/PATH]\n"
	"                            the same through sshd (port 22 alone): each connection is\n"
	"                            its own SSH connection with a channel to serve's unix\n"
	"                            socket PATH (default " MR_SSH_DEFAULT_SOCKET ");\n"
	"                            no TLS inside, so no --tls-dir or --psk-file\n"
	"  -n, --target NAME         the target to reach there\n"
	"  -c, --connections N       parallel connections, TLS or SSH, 1 to 64 (default 2: on loopback,\n"
	"                            a 1 GiB stream took 18% less time over 2 than over 1 and 4 did\n"
	"                            no better than 2; more can help on long or lossy paths, and\n"
	"                            over SSH on hosts with cores to spare)\n"
	"      --tls-dir DIR         x509 directory: ca-cert.pem, client-cert.pem, client-key.pem\n"
	"                            (QEMU's tls-creds-x509 layout; default /etc/pki/qemu)\n"
	"      --psk-file FILE       use a pre-shared key from FILE (QEMU keys.psk: identity:hexkey)\n"
	"      --psk-identity NAME   which identity of the PSK file to use (default: the first)\n"
	"      --server-name NAME    name the server certificate must carry (default: HOST of --to)\n"
	"      --compress MODE       none, zstd, zstd:LEVEL (1-19), or auto: zstd only while the\n"
	"                            network, not the CPU, is the bottleneck (default none)\n"
	"      --reconnect-timeout S lost connections are rejoined for up to S seconds while the\n"
	"                            session has no connection left (default 30; 0: fail at once)\n"
	"      --keepalive S         PING after S seconds of silence; a connection silent for\n"
	"                            3 x S is dropped and rejoined (default 5)\n"
	"      --insecure-plaintext  INSECURE: after the TLS handshake and HELLO/JOIN, move the\n"
	"                            data unencrypted and without TLS integrity (the ceiling for\n"
	"                            benchmarks, or isolated migration networks only). The server\n"
	"                            must offer it (`migrelay serve --insecure-plaintext`)\n"
	"      --ssh-key FILE        ssh://: private key to offer after ssh-agent's keys (default:\n"
	"                            ~/.ssh/id_ed25519, id_ecdsa, id_rsa, those present)\n"
	"      --ssh-accept-new      ssh://: add an unknown host key to known_hosts (as OpenSSH's\n"
	"                            StrictHostKeyChecking=accept-new; a changed key is refused)\n"
	"      --ssh-known-hosts FILE  ssh://: the user known_hosts file (default ~/.ssh/known_hosts;\n"
	"                            /etc/ssh/ssh_known_hosts is read as well)\n"
	"      --ssh-no-agent        ssh://: do not ask ssh-agent ($SSH_AUTH_SOCK) for keys\n"
	"      --json                machine-readable progress and report on stdout\n"
	"      --progress            progress line on stderr even when it is not a terminal\n"
	"      --quiet               no progress line\n";

void gw_client_opts_init(struct gw_client_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->connections = 2; /* measured: see --connections in gw_client_usage */
	o->zlevel = 3;
}

static int parse_int(const char *arg, int lo, int hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || *end || end == arg || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

void gw_client_longopts_with(struct option *lo, const struct option *extra)
{
	int n = 0;

	for (int i = 0; gw_client_longopts[i].name; i++)
		lo[n++] = gw_client_longopts[i];
	for (int i = 0; extra && extra[i].name && n < GW_LONGOPTS_MAX - 2; i++)
		lo[n++] = extra[i];
	lo[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[n] = (struct option){ NULL, 0, NULL, 0 };
}

int gw_parse_bytes(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	uint64_t mul = 1;

	if (end == s || !(v > 0) || v > 1e18)
		return -1;
	switch (*end) {
	case 'k':
	case 'K':
		mul = 1ull << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mul = 1ull << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1ull << 30;
		end++;
		break;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -1;
	*out = (uint64_t)(v * (double)mul);
	return 0;
}

int gw_client_opt(struct gw_client_opts *o, int c, const char *arg)
{
	switch (c) {
	case OPT_TO:
		o->to = arg;
		return 1;
	case OPT_TARGET:
		if (!wire_name_ok(arg, strlen(arg))) {
			fprintf(stderr, "migrelay: --target \"%.80s\" is not a valid name (1-64 of A-Z a-z 0-9 . _ -)\n", arg);
			return -1;
		}
		o->target = arg;
		return 1;
	case OPT_CONNS:
		if (parse_int(arg, 1, WIRE_MAX_CONNS, &o->connections) < 0) {
			fprintf(stderr, "migrelay: --connections must be a number from 1 to %d, not \"%.40s\"\n",
				WIRE_MAX_CONNS, arg);
			return -1;
		}
		return 1;
	case OPT_TLS_DIR:
		o->tls_dir = arg;
		return 1;
	case OPT_PSK_FILE:
		o->psk_file = arg;
		return 1;
	case OPT_PSK_ID:
		o->psk_identity = arg;
		return 1;
	case OPT_SERVER_NAME:
		o->server_name = arg;
		return 1;
	case OPT_COMPRESS:
		o->compress_auto = false;
		if (!strcmp(arg, "none")) {
			o->compress = false;
		} else if (!strcmp(arg, "auto")) {
			o->compress = o->compress_auto = true;
		} else if (!strcmp(arg, "zstd")) {
			o->compress = true;
		} else if (!strncmp(arg, "zstd:", 5) && parse_int(arg + 5, 1, 19, &o->zlevel) == 0) {
			o->compress = true;
		} else {
			fprintf(stderr, "migrelay: --compress takes none, auto, zstd or zstd:LEVEL (1-19), not \"%.40s\"\n",
				arg);
			return -1;
		}
		return 1;
	case OPT_JSON:
		o->json = true;
		return 1;
	case OPT_PLAINTEXT:
		o->plaintext = true;
		return 1;
	case OPT_PROGRESS:
		o->progress = true;
		return 1;
	case OPT_SSH_KEY:
		o->ssh_key = arg;
		return 1;
	case OPT_SSH_KNOWN_HOSTS:
		o->ssh_known_hosts = arg;
		return 1;
	case OPT_SSH_ACCEPT_NEW:
		o->ssh_accept_new = true;
		return 1;
	case OPT_SSH_NO_AGENT:
		o->ssh_no_agent = true;
		return 1;
	case OPT_QUIET:
		o->quiet = true;
		return 1;
	case OPT_RECONNECT:
	case OPT_KEEPALIVE: {
		int v;

		if (parse_int(arg, c == OPT_RECONNECT ? 0 : 1, c == OPT_RECONNECT ? 3600 : 600, &v) < 0) {
			fprintf(stderr, "migrelay: --%s takes seconds (%s), not \"%.40s\"\n",
				c == OPT_RECONNECT ? "reconnect-timeout" : "keepalive",
				c == OPT_RECONNECT ? "0-3600" : "1-600", arg);
			return -1;
		}
		if (c == OPT_RECONNECT)
			o->reconnect_ms = v ? v * 1000 : -1;
		else
			o->keepalive_ms = v * 1000;
		return 1;
	}
	}
	return 0;
}

int gw_client_opts_check(const struct gw_client_opts *o)
{
	if (!o->to) {
		fprintf(stderr, "migrelay: --to HOST:PORT or ssh://HOST is required (the address of `migrelay serve`)\n");
		return -1;
	}
	if (gw_client_is_ssh(o->to) && (o->tls_dir || o->psk_file || o->server_name || o->plaintext)) {
		fprintf(stderr, "migrelay: --to ssh://: SSH secures the connections, so --tls-dir, --psk-file, "
				"--server-name and --insecure-plaintext do not apply\n");
		return -1;
	}
	if (!gw_client_is_ssh(o->to) && (o->ssh_key || o->ssh_known_hosts || o->ssh_accept_new || o->ssh_no_agent)) {
		fprintf(stderr, "migrelay: the --ssh-* options need --to ssh://...\n");
		return -1;
	}
	if (!o->target) {
		fprintf(stderr, "migrelay: --target NAME is required (a name given to `migrelay serve --target`)\n");
		return -1;
	}
	if (o->tls_dir && o->psk_file) {
		fprintf(stderr, "migrelay: use either --tls-dir or --psk-file, not both\n");
		return -1;
	}
	return 0;
}

const char *gw_fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, u[i]);
	return buf;
}

static int cfail(struct gw_connect_fail *f, enum gw_connect_stage stage, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int cfail(struct gw_connect_fail *f, enum gw_connect_stage stage, int r, const char *fmt, ...)
{
	va_list ap;

	f->stage = stage;
	va_start(ap, fmt);
	vsnprintf(f->text, sizeof(f->text), fmt, ap);
	va_end(ap);
	return r;
}

bool gw_client_is_ssh(const char *to)
{
	return to && !strncmp(to, "ssh://", 6);
}

/* Where the connections of a session go, and how: kept for its rejoins. */
struct dest {
	char to[300];
	char peer_name[256];
	bool has_peer_name;
	bool ssh;
	struct mr_ssh_url url;
	struct mr_ssh_opts sopts; /* its strings point into this struct */
	char ssh_key[4096], ssh_known_hosts[4096];
};

/*
 * Connects one connection: TCP and the TLS handshake, or an SSH connection
 * and its channel to serve's socket. Returns 0 with *l set, or -errno with
 * <f> saying why (stage CONNECT: no TCP connection; HANDSHAKE: -EACCES
 * when a side refused the other, -ETIMEDOUT or -ECONNRESET when the
 * connection failed; SSH: crypto/ssh.h's codes).
 */
static int open_conn(const struct dest *d, struct mr_tls_cfg *cfg, struct gw_link *l, struct gw_connect_fail *f)
{
	char why[512] = "";
	enum mr_tls_fail fail = MR_TLS_OK;
	struct mr_tls *t = NULL;
	struct mr_conn *c = NULL;
	int fd, r;

	if (d->ssh) {
		r = mr_conn_ssh_connect(&c, &d->url, &d->sopts, why, sizeof(why));
		if (r < 0)
			return cfail(f, GW_CS_SSH, r, "%s", why);
		gw_dbg("SSH connection to %s:%u: %s", d->url.host, (unsigned)d->url.port, mr_conn_note(c));
		*l = gw_link_conn(c);
		return 0;
	}
	fd = net_tcp_connect(d->to, GW_SETUP_TIMEOUT_MS, why, sizeof(why));
	if (fd < 0)
		return cfail(f, GW_CS_CONNECT, fd, "%s", why);
	net_set_timeouts(fd, GW_SETUP_TIMEOUT_MS, GW_SETUP_TIMEOUT_MS);
	r = mr_tls_handshake(&t, cfg, fd, d->has_peer_name ? d->peer_name : NULL, GW_SETUP_TIMEOUT_MS, &fail, why,
			     sizeof(why));
	if (r < 0) {
		close(fd);
		return cfail(f, GW_CS_HANDSHAKE,
			     fail == MR_TLS_F_TIMEOUT ? -ETIMEDOUT : fail == MR_TLS_F_IO ? -ECONNRESET : -EACCES,
			     "TLS handshake with %s failed: %s", d->to, why);
	}
	*l = gw_link_tls(t, fd);
	return 0;
}

/*
 * Opens one connection and runs its setup request (HELLO or JOIN <p>) up to
 * WELCOME <w> for index <idx>, which must carry the WELCOME flags <want>
 * (welcome_flags). Returns 0 with *l set (receive and send timeouts
 * cleared), or -errno with <f> filled.
 */
static int setup_conn(const struct dest *d, struct mr_tls_cfg *cfg, uint8_t type, const uint8_t *p, uint32_t len,
		      uint16_t idx, uint8_t want, const char *what, struct wire_welcome *w, struct gw_link *l,
		      struct gw_connect_fail *f)
{
	uint64_t deadline = gw_now_ns() + (uint64_t)GW_SETUP_TIMEOUT_MS * 1000000ull;
	struct gw_setup_fail sf;
	struct gw_link k;
	int r;

	if ((r = open_conn(d, cfg, &k, f)) < 0)
		return r;
	r = gw_setup_request(&k, type, p, len, idx, want, what, deadline, w, &sf);
	if (r < 0) {
		gw_link_free(&k);
		f->wire_code = sf.wire_code;
		return cfail(f, GW_CS_SETUP, r, "%s", sf.text);
	}
	net_set_timeouts(k.fd, 0, 0);
	*l = k;
	return 0;
}

/* The WELCOME flags of a session in the plaintext mode or not, with OPEN acknowledgements or not (§4.2). */
static uint8_t welcome_flags(bool plaintext, bool open_ack)
{
	return (uint8_t)((plaintext ? WIRE_WELCOME_F_PLAINTEXT : 0) | (open_ack ? WIRE_WELCOME_F_OPENED : 0));
}

/* The connection of link <l> past its WELCOME; takes what <l> holds, even on failure. */
static int link_conn(struct gw_link *l, struct mr_conn **out)
{
	struct gw_link k = *l;

	*l = (struct gw_link){ .fd = -1 };
	if (k.tls)
		return mr_conn_from_tls(out, k.tls, k.fd);
	*out = k.conn;
	return 0;
}

/* The session takes connection <idx> past its WELCOME; it owns what <l> held from now on, even on failure. */
static int add_conn(struct gw_session *s, int idx, struct gw_link *l)
{
	struct mr_conn *conn;
	int r = link_conn(l, &conn);

	return r < 0 ? r : gw_session_add_conn(s, idx, conn);
}

/*
 * Session timer thread, unlocked: a new connection JOINs as <idx>
 * (PROTOCOL.md §2.3). Returns 0 with *conn_out set; -ENOENT
 * when the server refused the session for good (it no longer knows it, or
 * refused our identity); another -errno to try again later.
 */
static int client_rejoin(struct gw_session *s, int idx, struct mr_conn **conn_out)
{
	struct dest *d = gw_session_rejoin_ctx(s);
	struct wire_join j = { .session_id = gw_session_id(s), .conn_index = (uint16_t)idx };
	struct gw_connect_fail f = { 0 };
	struct wire_welcome w;
	uint8_t jp[WIRE_JOIN_LEN];
	struct gw_link l;
	int r;

	memcpy(j.token, gw_session_token(s), WIRE_TOKEN_LEN);
	wire_join_encode(jp, &j);
	r = setup_conn(d, gw_session_tls_cfg(s), WIRE_T_JOIN, jp, sizeof(jp), (uint16_t)idx,
		       welcome_flags(gw_session_cfg_get(s)->plaintext, gw_session_cfg_get(s)->open_ack), "JOIN", &w, &l,
		       &f);
	if (r == 0)
		return link_conn(&l, conn_out);
	gw_dbg("migrelay: rejoin of connection %d: %s", idx, f.text);
	/* SSH: a host key or an authentication refused now will be refused again. */
	if (f.stage == GW_CS_SSH && (r == -ENOKEY || r == -EKEYREJECTED || r == -EACCES))
		return -ENOENT;
	/* No connection or no handshake: the server may be back in a moment. */
	if (f.stage != GW_CS_SETUP)
		return -ECONNREFUSED;
	/* Our certificate, the token or the identity refused: this session is over for that server. */
	if (r == -EACCES || (r == -EREMOTEIO && (f.wire_code == WIRE_E_BAD_TOKEN || f.wire_code == WIRE_E_IDENTITY ||
						  f.wire_code == WIRE_E_NOT_ALLOWED)))
		return -ENOENT;
	return -ECONNRESET;
}

/*
 * HELLO for <o> into <buf> (WIRE_MAX_CONTROL), asking for OPEN acknowledgements when <open_ack>.
 * Length, or -EINVAL, or -EMSGSIZE (the pre-flight facts do not fit).
 */
static int encode_hello(const struct gw_client_opts *o, bool open_ack, uint8_t *buf)
{
	struct wire_hello hello;
	int n;

	memset(&hello, 0, sizeof(hello));
	hello.version = WIRE_VERSION;
	hello.nconns = (uint16_t)o->connections;
	hello.flags = (o->compress ? WIRE_HELLO_F_ZSTD : 0) | (o->plaintext ? WIRE_HELLO_F_PLAINTEXT : 0) |
		      (o->postcopy ? WIRE_HELLO_F_POSTCOPY : 0) | (o->resume ? WIRE_HELLO_F_RESUME : 0) |
		      (open_ack ? WIRE_HELLO_F_OPENED : 0);
	snprintf(hello.target, sizeof(hello.target), "%s", o->target);
	hello.multifd = o->multifd;
	hello.ndevices = (uint8_t)o->ndevices;
	for (int i = 0; i < o->ndevices; i++)
		snprintf(hello.devices[i], sizeof(hello.devices[i]), "%s", o->devices[i]);
	if (o->preflight)
		hello.pf = *o->preflight;
	n = wire_hello_encode(buf, WIRE_MAX_CONTROL, &hello);
	return n == -EMSGSIZE ? n : n < 0 ? -EINVAL : n;
}

/*
 * A client session for <o> after WELCOME <w>, named by the WELCOME, with
 * OPEN acknowledgements when <open_ack>; takes over <*cfg> and <*d> (set
 * to NULL), even on failure. 0 or -ENOMEM.
 */
static int client_session(const struct gw_client_opts *o, const struct wire_welcome *w, bool open_ack,
			  struct mr_tls_cfg **cfg, struct dest **d, struct gw_session **out)
{
	struct gw_session_cfg sc = { .server = false, .window = w->window, .chunk_size = w->chunk_size,
				     .max_streams = w->max_streams, .compress = o->compress,
				     .compress_auto = o->compress_auto, .zlevel = o->zlevel,
				     .reconnect_ms = o->reconnect_ms, .keepalive_ms = o->keepalive_ms,
				     .plaintext = o->plaintext, .open_ack = open_ack, .id = w->session_id,
				     .nconns = o->connections,
				     .rejoin = client_rejoin, .rejoin_ctx = *d, .rejoin_ctx_free = free,
				     .tls_cfg = *cfg };
	struct gw_session *s = NULL;

	memcpy(sc.token, w->token, WIRE_TOKEN_LEN);
	snprintf(sc.target, sizeof(sc.target), "%s", o->target);
	*cfg = NULL;
	*d = NULL;
	if (gw_session_new(&s, &sc) < 0)
		return -ENOMEM;
	*out = s;
	return 0;
}

/* Connections 1.. of session <s>: each JOINs with the session's token. 0 or -errno with <f> filled. */
/* One JOIN of join_all, on a thread of its own. */
struct join_job {
	const struct gw_client_opts *o;
	struct gw_session *s;
	int idx, r;
	bool started;
	pthread_t th;
	struct gw_link l;
	struct gw_connect_fail f;
};

static void *join_main(void *arg)
{
	struct join_job *jb = arg;
	struct wire_join j = { .session_id = gw_session_id(jb->s), .conn_index = (uint16_t)jb->idx };
	struct wire_welcome w;
	uint8_t jp[WIRE_JOIN_LEN];
	char what[32];

	memcpy(j.token, gw_session_token(jb->s), WIRE_TOKEN_LEN);
	wire_join_encode(jp, &j);
	snprintf(what, sizeof(what), "JOIN of connection %d", jb->idx);
	jb->r = setup_conn(gw_session_rejoin_ctx(jb->s), gw_session_tls_cfg(jb->s), WIRE_T_JOIN, jp, sizeof(jp),
			   (uint16_t)jb->idx, welcome_flags(jb->o->plaintext, gw_session_cfg_get(jb->s)->open_ack), what,
			   &w, &jb->l, &jb->f);
	return NULL;
}

/*
 * Connections 1.. JOIN the session of connection 0, all at once: each
 * costs a TCP and a TLS or SSH handshake (an SSH one is about 70 ms on
 * loopback), so in series they would delay the migration by their sum.
 * The session takes them in index order. Returns 0, or -errno with <f>
 * filled from the first that failed (the others are closed).
 */
static int join_all(const struct gw_client_opts *o, struct gw_session *s, struct gw_connect_fail *f)
{
	int n = o->connections - 1, r = 0;
	struct join_job *jobs;

	if (n <= 0)
		return 0;
	if (!(jobs = calloc((size_t)n, sizeof(*jobs))))
		return cfail(f, GW_CS_SESSION, -ENOMEM, "out of memory");
	for (int i = 0; i < n; i++) {
		jobs[i] = (struct join_job){ .o = o, .s = s, .idx = i + 1, .l = { .fd = -1 } };
		jobs[i].started = pthread_create(&jobs[i].th, NULL, join_main, &jobs[i]) == 0;
		if (!jobs[i].started)
			join_main(&jobs[i]); /* no thread to spare: this one in series */
	}
	for (int i = 0; i < n; i++)
		if (jobs[i].started)
			pthread_join(jobs[i].th, NULL);
	for (int i = 0; i < n; i++) {
		if (r == 0 && jobs[i].r < 0) {
			*f = jobs[i].f;
			r = jobs[i].r;
		}
		if (jobs[i].r < 0)
			continue;
		if (r < 0) {
			gw_link_free(&jobs[i].l);
			continue;
		}
		if ((r = add_conn(s, jobs[i].idx, &jobs[i].l)) < 0)
			r = cfail(f, GW_CS_SESSION, r, "cannot add connection %d: %s", jobs[i].idx, strerror(-r));
	}
	free(jobs);
	return r;
}

/* Where <o> sends its connections, into a new *out. 0, or -errno with <f> filled. */
static int dest_new(const struct gw_client_opts *o, struct dest **out, struct gw_connect_fail *f)
{
	struct dest *d = calloc(1, sizeof(*d));
	char err[512] = "", host[256], port[32];
	int r;

	if (!d)
		return cfail(f, GW_CS_SESSION, -ENOMEM, "out of memory");
	snprintf(d->to, sizeof(d->to), "%s", o->to);
	if (gw_client_is_ssh(o->to)) {
		d->ssh = true;
		if ((r = mr_ssh_url_parse(o->to, &d->url, err, sizeof(err))) < 0) {
			free(d);
			return cfail(f, GW_CS_CONFIG, r, "%s", err);
		}
		if (o->ssh_key) {
			snprintf(d->ssh_key, sizeof(d->ssh_key), "%s", o->ssh_key);
			d->sopts.key_file = d->ssh_key;
		}
		if (o->ssh_known_hosts) {
			snprintf(d->ssh_known_hosts, sizeof(d->ssh_known_hosts), "%s", o->ssh_known_hosts);
			d->sopts.known_hosts = d->ssh_known_hosts;
		}
		d->sopts.accept_new = o->ssh_accept_new;
		d->sopts.no_agent = o->ssh_no_agent;
		d->sopts.timeout_ms = GW_SETUP_TIMEOUT_MS;
	} else if (o->server_name) {
		snprintf(d->peer_name, sizeof(d->peer_name), "%s", o->server_name);
		d->has_peer_name = true;
	} else if (!o->psk_file && net_split_hostport(o->to, host, sizeof(host), port, sizeof(port)) == 0) {
		snprintf(d->peer_name, sizeof(d->peer_name), "%s", host);
		d->has_peer_name = true;
	}
	*out = d;
	return 0;
}

/*
 * Connection 0: HELLO for <o> up to its WELCOME <w>, on link *l. With
 * o->open_ack, asks for OPEN acknowledgements; a server of revision 1.1
 * refuses the flag it does not know with ERROR PROTOCOL (§8), and the
 * HELLO is sent again without it on a new connection. *open_ack says
 * whether the session has them. Returns 0, or -errno with <f> filled.
 */
static int hello_conn(const struct gw_client_opts *o, const struct dest *d, struct mr_tls_cfg *cfg, bool *open_ack,
		      struct wire_welcome *w, struct gw_link *l, struct gw_connect_fail *f)
{
	uint8_t buf[WIRE_MAX_CONTROL];
	int r = 0, n;

	*open_ack = o->open_ack && gw_wire_open_ack();
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((n = encode_hello(o, *open_ack, buf)) < 0)
			return cfail(f, GW_CS_CONFIG, n, "%s",
				     n == -EMSGSIZE ? "the source QEMU's pre-flight facts (CPU features, RAM blocks) do not "
						      "fit in a HELLO with these options; pass --no-preflight to migrate "
						      "without the check"
						    : "cannot encode HELLO (names too long?)");
		/* Connection 0 alone first: a host key accepted by --ssh-accept-new is written once, before the JOINs. */
		r = setup_conn(d, cfg, WIRE_T_HELLO, buf, (uint32_t)n, 0, welcome_flags(o->plaintext, *open_ack),
			       "HELLO", w, l, f);
		if (!(r == -EREMOTEIO && *open_ack && f->wire_code == WIRE_E_PROTOCOL))
			break;
		gw_dbg("the server refused HELLO with OPEN acknowledgements (%s); asking again without them", f->text);
		*open_ack = false;
		memset(f, 0, sizeof(*f));
	}
	return r;
}

int gw_client_connect(const struct gw_client_opts *o, struct gw_session **out, struct gw_connect_fail *f)
{
	struct mr_tls_cfg *cfg = NULL;
	struct gw_session *s = NULL;
	struct wire_welcome w;
	struct gw_link l = { .fd = -1 };
	struct dest *d = NULL;
	char err[512] = "";
	bool open_ack;
	int r;

	memset(f, 0, sizeof(*f));
	if ((r = dest_new(o, &d, f)) < 0)
		return r;
	if (d->ssh)
		r = 0; /* SSH secures the connections: no TLS credentials */
	else if (o->psk_file)
		r = mr_tls_cfg_psk(&cfg, o->psk_file, false, o->psk_identity, err, sizeof(err));
	else
		r = mr_tls_cfg_x509(&cfg, o->tls_dir ? o->tls_dir : "/etc/pki/qemu", false, err, sizeof(err));
	if (r < 0) {
		r = cfail(f, GW_CS_CONFIG, r, "%s", err);
		goto out;
	}
	if ((r = hello_conn(o, d, cfg, &open_ack, &w, &l, f)) < 0) {
		if (o->plaintext && f->wire_code == WIRE_E_UNSUPPORTED)
			snprintf(f->text + strlen(f->text), sizeof(f->text) - strlen(f->text), "%s",
				 "\nmigrelay: --insecure-plaintext needs a server that offers it: start `migrelay serve` with --insecure-plaintext, or leave the option out here to use TLS");
		/* A server before revision 1.2 knows no pre-flight TLV: it finds the HELLO malformed (PROTOCOL.md §8). */
		if (o->preflight && o->preflight->have && f->wire_code == WIRE_E_PROTOCOL)
			snprintf(f->text + strlen(f->text), sizeof(f->text) - strlen(f->text), "%s",
				 "\nmigrelay: a destination gateway older than protocol revision 1.2 does not know the "
				 "pre-flight check: upgrade it, or pass --no-preflight to migrate without the check");
		goto out;
	}
	if ((r = client_session(o, &w, open_ack, &cfg, &d, &s)) < 0) {
		r = cfail(f, GW_CS_SESSION, r, "out of memory");
		goto out;
	}
	if (o->plaintext)
		gw_warn("session %016llx: " GW_PLAINTEXT_WARNING, (unsigned long long)gw_session_id(s));
	r = add_conn(s, 0, &l);
	if (r < 0) {
		r = cfail(f, GW_CS_SESSION, r, "cannot start the session: %s", strerror(-r));
		goto out;
	}
	if ((r = join_all(o, s, f)) < 0)
		goto out;
	*out = s;
	s = NULL;
	r = 0;
out:
	gw_link_free(&l);
	gw_session_close(s); /* frees the credentials and the destination it took over */
	mr_tls_cfg_free(cfg);
	free(d);
	return r;
}
