/* SPDX-License-Identifier: MIT */
#include "client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	{ NULL, 0, NULL, 0 },
};

const char gw_client_usage[] =
	"Transport options:\n"
	"  -t, --to HOST:PORT        the destination gateway (`migrelay serve`)\n"
	"  -n, --target NAME         the target to reach there\n"
	"  -c, --connections N       parallel TLS connections, 1 to 64 (default 2: on loopback, a\n"
	"                            1 GiB stream took 18% less time over 2 than over 1 and 4 did\n"
	"                            no better than 2; more can help on long or lossy paths)\n"
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
		fprintf(stderr, "migrelay: --to HOST:PORT is required (the address of `migrelay serve`)\n");
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

/*
 * Connects and handshakes one connection. Returns 0 with
 * *fd_out and *tls_out set, or -errno with <f> saying why (stage CONNECT:
 * no TCP connection; HANDSHAKE: -EACCES when a side refused the other,
 * -ETIMEDOUT or -ECONNRESET when the connection failed).
 */
static int open_conn(const char *to, struct mr_tls_cfg *cfg, const char *peer_name, int *fd_out, struct mr_tls **tls_out, struct gw_connect_fail *f)
{
	char why[512] = "";
	enum mr_tls_fail fail = MR_TLS_OK;
	int fd, r;

	fd = net_tcp_connect(to, GW_SETUP_TIMEOUT_MS, why, sizeof(why));
	if (fd < 0)
		return cfail(f, GW_CS_CONNECT, fd, "%s", why);
	net_set_timeouts(fd, GW_SETUP_TIMEOUT_MS, GW_SETUP_TIMEOUT_MS);
	r = mr_tls_handshake(tls_out, cfg, fd, peer_name, GW_SETUP_TIMEOUT_MS, &fail, why, sizeof(why));
	if (r < 0) {
		close(fd);
		return cfail(f, GW_CS_HANDSHAKE,
			     fail == MR_TLS_F_TIMEOUT ? -ETIMEDOUT : fail == MR_TLS_F_IO ? -ECONNRESET : -EACCES,
			     "TLS handshake with %s failed: %s", to, why);
	}
	*fd_out = fd;
	return 0;
}

/*
 * Opens one connection and runs its setup request (HELLO or JOIN <p>) up to
 * WELCOME <w> for index <idx>. Returns 0 with *fd_out and *tls_out set
 * (receive and send timeouts cleared), or -errno with <f> filled.
 */
static int setup_conn(const char *to, struct mr_tls_cfg *cfg, const char *peer_name, uint8_t type, const uint8_t *p,
		      uint32_t len, uint16_t idx, bool plaintext, const char *what, struct wire_welcome *w,
		      int *fd_out, struct mr_tls **tls_out, struct gw_connect_fail *f)
{
	uint64_t deadline = gw_now_ns() + (uint64_t)GW_SETUP_TIMEOUT_MS * 1000000ull;
	struct gw_setup_fail sf;
	struct mr_tls *t = NULL;
	int fd = -1, r;

	if ((r = open_conn(to, cfg, peer_name, &fd, &t, f)) < 0)
		return r;
	r = gw_setup_request(t, fd, type, p, len, idx, plaintext, what, deadline, w, &sf);
	if (r < 0) {
		mr_tls_free(t);
		close(fd);
		f->wire_code = sf.wire_code;
		return cfail(f, GW_CS_SETUP, r, "%s", sf.text);
	}
	net_set_timeouts(fd, 0, 0);
	*fd_out = fd;
	*tls_out = t;
	return 0;
}

struct rejoin_ctx {
	char to[300];
	char peer_name[256];
	bool has_peer_name;
};

/* The session takes connection <idx> past its WELCOME; it owns <fd> and <t> from now on, even on failure. */
static int add_conn(struct gw_session *s, int idx, int fd, struct mr_tls *t)
{
	struct mr_conn *conn;
	int r = mr_conn_from_tls(&conn, t, fd);

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
	struct rejoin_ctx *rc = s->rejoin_ctx;
	struct wire_join j = { .session_id = s->id, .conn_index = (uint16_t)idx };
	struct gw_connect_fail f = { 0 };
	struct wire_welcome w;
	uint8_t jp[WIRE_JOIN_LEN];
	struct mr_tls *t;
	int fd, r;

	memcpy(j.token, s->token, WIRE_TOKEN_LEN);
	wire_join_encode(jp, &j);
	r = setup_conn(rc->to, s->own_cfg, rc->has_peer_name ? rc->peer_name : NULL, WIRE_T_JOIN, jp, sizeof(jp),
		       (uint16_t)idx, s->cfg.plaintext, "JOIN", &w, &fd, &t, &f);
	if (r == 0)
		return mr_conn_from_tls(conn_out, t, fd);
	gw_dbg("migrelay: rejoin of connection %d: %s", idx, f.text);
	/* No connection or no handshake: the server may be back in a moment. */
	if (f.stage != GW_CS_SETUP)
		return -ECONNREFUSED;
	/* Our certificate, the token or the identity refused: this session is over for that server. */
	if (r == -EACCES || (r == -EREMOTEIO && (f.wire_code == WIRE_E_BAD_TOKEN || f.wire_code == WIRE_E_IDENTITY ||
						  f.wire_code == WIRE_E_NOT_ALLOWED)))
		return -ENOENT;
	return -ECONNRESET;
}

static void client_ctx_free(struct gw_session *s)
{
	free(s->rejoin_ctx);
	s->rejoin_ctx = NULL;
}

/* HELLO for <o> into <buf> (WIRE_MAX_CONTROL). Length, or -EINVAL. */
static int encode_hello(const struct gw_client_opts *o, uint8_t *buf)
{
	struct wire_hello hello;
	int n;

	memset(&hello, 0, sizeof(hello));
	hello.version = WIRE_VERSION;
	hello.nconns = (uint16_t)o->connections;
	hello.flags = (o->compress ? WIRE_HELLO_F_ZSTD : 0) | (o->plaintext ? WIRE_HELLO_F_PLAINTEXT : 0) |
		      (o->postcopy ? WIRE_HELLO_F_POSTCOPY : 0) | (o->resume ? WIRE_HELLO_F_RESUME : 0);
	snprintf(hello.target, sizeof(hello.target), "%s", o->target);
	hello.multifd = o->multifd;
	hello.ndevices = (uint8_t)o->ndevices;
	for (int i = 0; i < o->ndevices; i++)
		snprintf(hello.devices[i], sizeof(hello.devices[i]), "%s", o->devices[i]);
	n = wire_hello_encode(buf, WIRE_MAX_CONTROL, &hello);
	return n < 0 ? -EINVAL : n;
}

/* A client session for <o> after WELCOME <w>; takes over <*cfg> (set to NULL). 0 or -ENOMEM. */
static int client_session(const struct gw_client_opts *o, const struct wire_welcome *w, struct mr_tls_cfg **cfg,
			  const char *peer_name, struct gw_session **out)
{
	struct gw_session_cfg sc = { .server = false, .window = w->window, .chunk_size = w->chunk_size,
				     .max_streams = w->max_streams, .compress = o->compress,
				     .compress_auto = o->compress_auto, .zlevel = o->zlevel,
				     .reconnect_ms = o->reconnect_ms, .keepalive_ms = o->keepalive_ms,
				     .plaintext = o->plaintext };
	struct rejoin_ctx *rc = calloc(1, sizeof(*rc));
	struct gw_session *s = NULL;

	if (!rc || gw_session_new(&s, &sc) < 0) {
		free(rc);
		return -ENOMEM;
	}
	s->own_cfg = *cfg;
	*cfg = NULL;
	snprintf(rc->to, sizeof(rc->to), "%s", o->to);
	if (peer_name) {
		snprintf(rc->peer_name, sizeof(rc->peer_name), "%s", peer_name);
		rc->has_peer_name = true;
	}
	s->rejoin_ctx = rc;
	s->rejoin = client_rejoin;
	s->ctx_free = client_ctx_free;
	s->id = w->session_id;
	memcpy(s->token, w->token, WIRE_TOKEN_LEN);
	s->nconns = o->connections;
	snprintf(s->target, sizeof(s->target), "%s", o->target);
	*out = s;
	return 0;
}

/* Connections 1.. of session <s>: each JOINs with the session's token. 0 or -errno with <f> filled. */
static int join_all(const struct gw_client_opts *o, struct gw_session *s, const char *peer_name,
		    struct gw_connect_fail *f)
{
	struct wire_join j = { .session_id = s->id };
	struct wire_welcome w;
	struct mr_tls *t;
	uint8_t jp[WIRE_JOIN_LEN];
	char what[32];
	int fd, r;

	memcpy(j.token, s->token, WIRE_TOKEN_LEN);
	for (int i = 1; i < o->connections; i++) {
		j.conn_index = (uint16_t)i;
		wire_join_encode(jp, &j);
		snprintf(what, sizeof(what), "JOIN of connection %d", i);
		if ((r = setup_conn(o->to, s->own_cfg, peer_name, WIRE_T_JOIN, jp, sizeof(jp), (uint16_t)i, o->plaintext,
				    what, &w, &fd, &t, f)) < 0)
			return r;
		if ((r = add_conn(s, i, fd, t)) < 0)
			return cfail(f, GW_CS_SESSION, r, "cannot add connection %d: %s", i, strerror(-r));
	}
	return 0;
}

int gw_client_connect(const struct gw_client_opts *o, struct gw_session **out, struct gw_connect_fail *f)
{
	struct mr_tls_cfg *cfg = NULL;
	struct gw_session *s = NULL;
	struct wire_welcome w;
	struct mr_tls *t = NULL;
	uint8_t buf[WIRE_MAX_CONTROL];
	char err[512] = "", host[256], port[32];
	const char *peer_name = o->server_name;
	int r, fd = -1, n;

	memset(f, 0, sizeof(*f));
	if (o->psk_file)
		r = mr_tls_cfg_psk(&cfg, o->psk_file, false, o->psk_identity, err, sizeof(err));
	else
		r = mr_tls_cfg_x509(&cfg, o->tls_dir ? o->tls_dir : "/etc/pki/qemu", false, err, sizeof(err));
	if (r < 0)
		return cfail(f, GW_CS_CONFIG, r, "%s", err);
	if (!peer_name && !o->psk_file && net_split_hostport(o->to, host, sizeof(host), port, sizeof(port)) == 0)
		peer_name = host;
	if ((n = encode_hello(o, buf)) < 0) {
		r = cfail(f, GW_CS_CONFIG, n, "cannot encode HELLO (names too long?)");
		goto out;
	}
	r = setup_conn(o->to, cfg, peer_name, WIRE_T_HELLO, buf, (uint32_t)n, 0, o->plaintext, "HELLO", &w, &fd, &t, f);
	if (r < 0) {
		if (o->plaintext && f->wire_code == WIRE_E_UNSUPPORTED)
			snprintf(f->text + strlen(f->text), sizeof(f->text) - strlen(f->text), "%s",
				 "\nmigrelay: --insecure-plaintext needs a server that offers it: start `migrelay serve` with --insecure-plaintext, or leave the option out here to use TLS");
		goto out;
	}
	if ((r = client_session(o, &w, &cfg, peer_name, &s)) < 0) {
		r = cfail(f, GW_CS_SESSION, r, "out of memory");
		goto out;
	}
	if (o->plaintext)
		gw_warn("session %016llx: " GW_PLAINTEXT_WARNING, (unsigned long long)s->id);
	r = add_conn(s, 0, fd, t);
	fd = -1;
	t = NULL;
	if (r < 0) {
		r = cfail(f, GW_CS_SESSION, r, "cannot start the session: %s", strerror(-r));
		goto out;
	}
	if ((r = join_all(o, s, peer_name, f)) < 0)
		goto out;
	*out = s;
	s = NULL;
	r = 0;
out:
	if (t)
		mr_tls_free(t);
	if (fd >= 0)
		close(fd);
	gw_session_close(s); /* frees the credentials it took over */
	mr_tls_cfg_free(cfg);
	return r;
}
