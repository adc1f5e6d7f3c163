/* SPDX-License-Identifier: MIT */
/*
 * TLS sessions: real handshakes over socketpairs (and TCP loopback where
 * TCP matters), one side in a thread, with a CA and certificates made by
 * pki_init/pki_issue in a temporary directory. GnuTLS is used directly
 * only to play foreign peers (no ALPN, TLS 1.2) and to inspect what
 * pki_issue wrote.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "crypto/pki.h"
#include "crypto/tls.h"
#include "tests/unit/util.h"

#define K1 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define K2 "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define K3 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

enum { HS_TIMEOUT_MS = 10000 };

static char root[PATH_MAX];

/* Directories and files under root, made once by the group setup. */
static char d_ca1[PATH_MAX], d_ca2[PATH_MAX];
static char d_srv[PATH_MAX];       /* server1 from CA1, SAN localhost and 127.0.0.1 */
static char d_cli[PATH_MAX];       /* client1 from CA1 */
static char d_cli_other[PATH_MAX]; /* cert from CA2, trusts CA1 */
static char d_cli_ca2[PATH_MAX];   /* cert from CA2, trusts CA2 only */
static char d_cli_exp[PATH_MAX];   /* expired client from CA1 */
static char d_cli_srvcert[PATH_MAX]; /* a server certificate posing as a client one */
static char f_keys[PATH_MAX], f_wrong[PATH_MAX], f_unknown[PATH_MAX], f_bad[PATH_MAX];

static void join(char *out, const char *a, const char *b)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", a, b);

	assert_true(n > 0 && n < PATH_MAX);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void copy_file(const char *from, const char *to)
{
	char buf[8192];
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	size_t n;

	assert_non_null(in);
	assert_non_null(out);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

static void issue(const char *ca, const char *out, bool server, const char *cn, bool expired)
{
	struct pki_issue_opts o = { 0 };
	char err[512];
	int r;

	o.ca_dir = ca;
	o.out_dir = out;
	o.server = server;
	o.cn = cn;
	o.org = "Example";
	o.expired = expired;
	if (server) {
		o.dns[0] = "localhost";
		o.ip[0] = "127.0.0.1";
		o.ip[1] = "::1";
	}
	r = pki_issue(&o, err, sizeof(err));
	if (r < 0)
		fail_msg("pki_issue %s: %d %s", out, r, err);
}

static int group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char err[512], a[PATH_MAX], b[PATH_MAX];

	(void)state;
	snprintf(root, sizeof(root), "%s/mr-tls-test.XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
	if (!mkdtemp(root))
		return -1;
	join(d_ca1, root, "ca1");
	join(d_ca2, root, "ca2");
	join(d_srv, root, "srv");
	join(d_cli, root, "cli");
	join(d_cli_other, root, "cli-other");
	join(d_cli_ca2, root, "cli-ca2");
	join(d_cli_exp, root, "cli-exp");
	join(d_cli_srvcert, root, "cli-srvcert");
	join(f_keys, root, "keys.psk");
	join(f_wrong, root, "wrong.psk");
	join(f_unknown, root, "unknown.psk");
	join(f_bad, root, "bad.psk");
	if (pki_init(d_ca1, "Test CA 1", 0, err, sizeof(err)) < 0 || pki_init(d_ca2, "Test CA 2", 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "pki_init: %s\n", err);
		return -1;
	}
	issue(d_ca1, d_srv, true, "server1", false);
	issue(d_ca1, d_cli, false, "client1", false);
	issue(d_ca2, d_cli_other, false, "intruder", false);
	join(a, d_ca1, "ca-cert.pem");
	join(b, d_cli_other, "ca-cert.pem");
	copy_file(a, b);
	issue(d_ca2, d_cli_ca2, false, "stranger", false);
	issue(d_ca1, d_cli_exp, false, "old", true);
	/* a valid certificate of our CA, but for the wrong purpose */
	assert_int_equal(mkdir(d_cli_srvcert, 0755), 0);
	copy_file(a, (join(b, d_cli_srvcert, "ca-cert.pem"), b));
	join(a, d_srv, "server-cert.pem");
	copy_file(a, (join(b, d_cli_srvcert, "client-cert.pem"), b));
	join(a, d_srv, "server-key.pem");
	copy_file(a, (join(b, d_cli_srvcert, "client-key.pem"), b));

	write_text(f_keys, "# test keys\nalice:" K1 "\nbob:" K2 "\n");
	write_text(f_wrong, "alice:" K3 "\n");
	write_text(f_unknown, "mallory:" K1 "\n");
	write_text(f_bad, "alice:" K1 "\nbob:nothex\n");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	test_rm_tree(root);
	return 0;
}

/* ---- running both ends ---- */

struct side {
	struct mr_tls_cfg *cfg;
	int fd;
	const char *peer_name;
	int timeout_ms;
	bool close_on_fail; /* close (TCP: RST with unread data) rather than shutdown */
	int r;
	enum mr_tls_fail fail;
	char err[512];
	struct mr_tls *t;
	double secs;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *hs_run(void *arg)
{
	struct side *s = arg;
	double t0 = now_s();

	s->r = mr_tls_handshake(&s->t, s->cfg, s->fd, s->peer_name, s->timeout_ms ? s->timeout_ms : HS_TIMEOUT_MS,
				&s->fail, s->err, sizeof(s->err));
	s->secs = now_s() - t0;
	if (s->r < 0) {
		/* what a gateway does with a refused connection */
		if (s->close_on_fail) {
			close(s->fd);
			s->fd = -1;
		} else {
			shutdown(s->fd, SHUT_RDWR);
		}
	}
	return NULL;
}

/* Server in a thread, client here. */
static void run_pair(struct side *srv, struct side *cli, bool tcp)
{
	pthread_t th;
	int fds[2];

	test_sock_pair(fds, tcp);
	srv->fd = fds[0];
	cli->fd = fds[1];
	assert_int_equal(pthread_create(&th, NULL, hs_run, srv), 0);
	hs_run(cli);
	assert_int_equal(pthread_join(th, NULL), 0);
}

static void side_done(struct side *s)
{
	mr_tls_free(s->t);
	s->t = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	mr_tls_cfg_free(s->cfg);
	s->cfg = NULL;
}

static struct mr_tls_cfg *cfg_x509(const char *dir, bool server)
{
	struct mr_tls_cfg *c = NULL;
	char err[512];
	int r = mr_tls_cfg_x509(&c, dir, server, err, sizeof(err));

	if (r < 0)
		fail_msg("mr_tls_cfg_x509(%s): %d %s", dir, r, err);
	return c;
}

static struct mr_tls_cfg *cfg_psk(const char *file, bool server, const char *id)
{
	struct mr_tls_cfg *c = NULL;
	char err[512];
	int r = mr_tls_cfg_psk(&c, file, server, id, err, sizeof(err));

	if (r < 0)
		fail_msg("mr_tls_cfg_psk(%s): %d %s", file, r, err);
	return c;
}

#define assert_contains(hay, needle)                                                     \
	do {                                                                             \
		if (!strstr((hay), (needle)))                                            \
			fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle));     \
	} while (0)

/*
 * The client of a refused TLS 1.3 handshake may already have finished;
 * then its first receive must fail and name the alert.
 */
static void expect_client_rejected(struct side *cli, const char *text)
{
	char buf[16];
	ssize_t n;

	if (cli->r < 0) {
		assert_int_equal(cli->fail, MR_TLS_F_PEER_REJECTED);
		assert_contains(cli->err, text);
		return;
	}
	assert_int_equal(cli->fail, MR_TLS_OK);
	n = mr_tls_recv(cli->t, buf, sizeof(buf));
	assert_int_equal(n, -EIO);
	assert_contains(mr_tls_last_error(cli->t), text);
}

/* ---- data ---- */

static uint8_t pat(uint64_t i, uint32_t seed)
{
	return (uint8_t)(i * 131 + seed + (i >> 11));
}

struct xfer {
	struct mr_tls *t;
	size_t total;
	uint32_t seed;
	ssize_t r;
};

static void *sender(void *arg)
{
	struct xfer *x = arg;
	size_t chunk = 100003, off = 0, n, i; /* odd size: records do not line up with calls */
	uint8_t *buf = malloc(chunk);

	x->r = -ENOMEM;
	if (!buf)
		return NULL;
	while (off < x->total) {
		n = x->total - off < chunk ? x->total - off : chunk;
		for (i = 0; i < n; i++)
			buf[i] = pat(off + i, x->seed);
		x->r = mr_tls_send(x->t, buf, n);
		if (x->r != (ssize_t)n)
			break;
		off += n;
	}
	if (off == x->total)
		x->r = (ssize_t)off;
	free(buf);
	return NULL;
}

static void *receiver(void *arg)
{
	struct xfer *x = arg;
	size_t off = 0, i;
	uint8_t buf[65536];
	ssize_t n;

	x->r = 0;
	while (off < x->total) {
		n = mr_tls_recv(x->t, buf, sizeof(buf));
		if (n <= 0) {
			x->r = n < 0 ? n : -EPIPE;
			return NULL;
		}
		for (i = 0; i < (size_t)n; i++) {
			if (buf[i] != pat(off + i, x->seed)) {
				x->r = -EBADMSG;
				return NULL;
			}
		}
		off += (size_t)n;
	}
	x->r = (ssize_t)off;
	return NULL;
}

/* Both ends send and receive at once, each with one sending and one receiving thread. */
static void full_duplex(struct mr_tls *a, struct mr_tls *b, size_t total)
{
	struct xfer xs[4] = {
		{ a, total, 1, 0 }, /* a sends, b receives seed 1 */
		{ b, total, 1, 0 },
		{ b, total, 2, 0 }, /* b sends, a receives seed 2 */
		{ a, total, 2, 0 },
	};
	pthread_t th[4];
	int i;

	assert_int_equal(pthread_create(&th[0], NULL, sender, &xs[0]), 0);
	assert_int_equal(pthread_create(&th[1], NULL, receiver, &xs[1]), 0);
	assert_int_equal(pthread_create(&th[2], NULL, sender, &xs[2]), 0);
	assert_int_equal(pthread_create(&th[3], NULL, receiver, &xs[3]), 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(xs[i].r, (ssize_t)total);
}

static void exchange_small(struct mr_tls *cli, struct mr_tls *srv)
{
	char buf[8];

	assert_int_equal(mr_tls_send(cli, "ping", 4), 4);
	assert_int_equal(mr_tls_recv_all(srv, buf, 4), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(mr_tls_send(srv, "pong!", 5), 5);
	assert_int_equal(mr_tls_recv_all(cli, buf, 5), 5);
	assert_memory_equal(buf, "pong!", 5);
}

/* ---- x509 ---- */

static void test_x509_ok(void **state)
{
	struct side srv = { .cfg = cfg_x509(d_srv, true) };
	struct side cli = { .cfg = cfg_x509(d_cli, false), .peer_name = "localhost" };
	size_t big = (1u << 20) + 16, i;
	uint8_t *out = malloc(big), *in = malloc(big);
	char buf[4];

	(void)state;
	assert_non_null(out);
	assert_non_null(in);
	run_pair(&srv, &cli, false);
	if (srv.r || cli.r)
		fail_msg("server %d %s / client %d %s", srv.r, srv.err, cli.r, cli.err);
	assert_int_equal(srv.fail, MR_TLS_OK);
	assert_int_equal(cli.fail, MR_TLS_OK);
	assert_string_equal(mr_tls_peer_identity(srv.t), "CN=client1,O=Example");
	assert_string_equal(mr_tls_peer_identity(cli.t), "CN=server1,O=Example");
	assert_string_equal(mr_tls_last_error(cli.t), "");

	exchange_small(cli.t, srv.t);

	/* 1 MiB + 16 in one call each way */
	for (i = 0; i < big; i++)
		out[i] = pat(i, 7);
	{
		struct xfer x = { srv.t, big, 7, 0 };
		pthread_t th;

		assert_int_equal(pthread_create(&th, NULL, receiver, &x), 0);
		assert_int_equal(mr_tls_send(cli.t, out, big), (ssize_t)big);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(x.r, (ssize_t)big);
	}
	{
		struct xfer x = { srv.t, big, 9, 0 };
		pthread_t th;

		assert_int_equal(pthread_create(&th, NULL, sender, &x), 0);
		assert_int_equal(mr_tls_recv_all(cli.t, in, big), (ssize_t)big);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(x.r, (ssize_t)big);
		for (i = 0; i < big; i++)
			if (in[i] != pat(i, 9))
				fail_msg("byte %zu differs", i);
	}

	full_duplex(cli.t, srv.t, 8u << 20);

	/* close_notify: a clean end */
	mr_tls_bye(cli.t);
	assert_int_equal(mr_tls_recv(srv.t, buf, sizeof(buf)), 0);
	free(out);
	free(in);
	side_done(&srv);
	side_done(&cli);
}

/* The SAN holds localhost, 127.0.0.1 and ::1; no name means CA and purpose only. */
static void test_x509_names_ok(void **state)
{
	static const char *const names[] = { "localhost", "127.0.0.1", "::1", NULL };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct side srv = { .cfg = cfg_x509(d_srv, true) };
		struct side cli = { .cfg = cfg_x509(d_cli, false), .peer_name = names[i] };

		run_pair(&srv, &cli, false);
		if (srv.r || cli.r)
			fail_msg("%s: server %d %s / client %d %s", names[i] ? names[i] : "(none)", srv.r, srv.err,
				 cli.r, cli.err);
		exchange_small(cli.t, srv.t);
		side_done(&srv);
		side_done(&cli);
	}
}

static void test_x509_name_mismatch(void **state)
{
	static const char *const names[] = { "wrong.example", "10.0.0.1", "localhost.evil" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct side srv = { .cfg = cfg_x509(d_srv, true) };
		struct side cli = { .cfg = cfg_x509(d_cli, false), .peer_name = names[i] };

		run_pair(&srv, &cli, false);
		assert_int_equal(cli.r, -EACCES);
		assert_int_equal(cli.fail, MR_TLS_F_BAD_CERT);
		assert_contains(cli.err, names[i]);
		assert_contains(cli.err, "is not valid for");
		assert_true(srv.r < 0);
		assert_int_equal(srv.fail, MR_TLS_F_PEER_REJECTED);
		assert_contains(srv.err, "the client rejected our certificate: bad certificate");
		side_done(&srv);
		side_done(&cli);
	}
}

static void unknown_ca_server(bool tcp)
{
	struct side srv = { .cfg = cfg_x509(d_srv, true), .close_on_fail = tcp };
	struct side cli = { .cfg = cfg_x509(d_cli_other, false), .peer_name = "localhost" };

	run_pair(&srv, &cli, tcp);
	assert_int_equal(srv.r, -EACCES);
	assert_int_equal(srv.fail, MR_TLS_F_UNKNOWN_CA);
	assert_contains(srv.err, "CN=intruder,O=Example");
	assert_contains(srv.err, "is not signed by the CA");
	if (tcp && cli.r == 0) {
		/* the client talks first, as a gateway sends HELLO, before it reads */
		char hello[4096] = { 0 };
		ssize_t n = mr_tls_send(cli.t, hello, sizeof(hello));

		if (n != (ssize_t)sizeof(hello) && n != -EPIPE && n != -ECONNRESET)
			fail_msg("send: %zd %s", n, mr_tls_last_error(cli.t));
	}
	expect_client_rejected(&cli, "server rejected our certificate: unknown CA");
	side_done(&srv);
	side_done(&cli);
}

static void test_x509_unknown_ca_server(void **state)
{
	(void)state;
	unknown_ca_server(false);
}

/* Over TCP the refusing server's close may send a RST; the alert must still arrive first. */
static void test_x509_unknown_ca_server_tcp(void **state)
{
	(void)state;
	unknown_ca_server(true);
}

static void test_x509_unknown_ca_client(void **state)
{
	struct side srv = { .cfg = cfg_x509(d_srv, true) };
	struct side cli = { .cfg = cfg_x509(d_cli_ca2, false), .peer_name = "localhost" };

	(void)state;
	run_pair(&srv, &cli, false);
	assert_int_equal(cli.r, -EACCES);
	assert_int_equal(cli.fail, MR_TLS_F_UNKNOWN_CA);
	assert_contains(cli.err, "the server's certificate \"CN=server1,O=Example\" is not signed by the CA");
	assert_int_equal(srv.r, -EACCES);
	assert_int_equal(srv.fail, MR_TLS_F_PEER_REJECTED);
	assert_contains(srv.err, "client rejected our certificate: unknown CA");
	side_done(&srv);
	side_done(&cli);
}

static void test_x509_expired(void **state)
{
	struct side srv = { .cfg = cfg_x509(d_srv, true) };
	struct side cli = { .cfg = cfg_x509(d_cli_exp, false), .peer_name = "localhost" };

	(void)state;
	run_pair(&srv, &cli, false);
	assert_int_equal(srv.r, -EACCES);
	assert_int_equal(srv.fail, MR_TLS_F_EXPIRED);
	assert_contains(srv.err, "CN=old,O=Example");
	assert_contains(srv.err, "expired on");
	expect_client_rejected(&cli, "server rejected our certificate: certificate expired");
	side_done(&srv);
	side_done(&cli);
}


/*
 * A CRL in the server's directory (ca-crl.pem, as QEMU reads it) refuses the
 * certificates it lists and only those; per-file credentials (--ca, --cert,
 * --key, --crl) behave the same; revocations accumulate in one CRL.
 */
static void test_x509_revoked(void **state)
{
	struct mr_tls_cfg *sink_cfg = NULL;
	char dir[PATH_MAX], other[PATH_MAX], crl[PATH_MAX], ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], err[512];
	char victim[PATH_MAX], intruder[PATH_MAX];
	struct mr_tls_files f;
	int pass;

	(void)state;
	join(dir, root, "srv-crl");
	join(other, root, "cli-revoked");
	issue(d_ca1, dir, true, "server-with-crl", false);
	issue(d_ca1, other, false, "revoked", false);
	join(crl, dir, "ca-crl.pem");
	join(victim, other, "client-cert.pem");
	join(intruder, d_cli_other, "client-cert.pem");
	/* a certificate of another CA cannot be revoked by this one */
	assert_int_equal(pki_revoke(d_ca1, intruder, crl, err, sizeof(err)), -EINVAL);
	assert_contains(err, "was not issued by the CA");
	assert_int_equal(pki_revoke(d_ca1, victim, crl, err, sizeof(err)), 0);
	/* a second revocation keeps the first */
	join(cert, d_cli_exp, "client-cert.pem");
	assert_int_equal(pki_revoke(d_ca1, cert, crl, err, sizeof(err)), 0);

	join(ca, dir, "ca-cert.pem");
	join(cert, dir, "server-cert.pem");
	join(key, dir, "server-key.pem");
	f = (struct mr_tls_files){ ca, cert, key, crl };
	for (pass = 0; pass < 2; pass++) {
		struct side srv = { 0 }, ok_srv = { 0 };
		struct side cli = { .cfg = cfg_x509(other, false), .peer_name = "localhost" };
		struct side ok_cli = { .cfg = cfg_x509(d_cli, false), .peer_name = "localhost" };

		if (pass == 0) {
			srv.cfg = cfg_x509(dir, true);
			ok_srv.cfg = cfg_x509(dir, true);
		} else {
			assert_int_equal(mr_tls_cfg_x509_files(&srv.cfg, &f, true, err, sizeof(err)), 0);
			assert_int_equal(mr_tls_cfg_x509_files(&ok_srv.cfg, &f, true, err, sizeof(err)), 0);
		}
		run_pair(&srv, &cli, false);
		assert_int_equal(srv.r, -EACCES);
		assert_int_equal(srv.fail, MR_TLS_F_BAD_CERT);
		assert_contains(srv.err, "CN=revoked,O=Example");
		assert_contains(srv.err, "is revoked by the CRL in");
		assert_contains(srv.err, "ca-crl.pem");
		expect_client_rejected(&cli, "server rejected our certificate: certificate revoked");
		side_done(&srv);
		side_done(&cli);
		/* a certificate the CRL does not list still gets in */
		run_pair(&ok_srv, &ok_cli, true);
		assert_int_equal(ok_srv.r, 0);
		assert_int_equal(ok_cli.r, 0);
		side_done(&ok_srv);
		side_done(&ok_cli);
	}
	/* per-file options: every file is needed but the CRL; a CRL that is not one is refused */
	f.key = NULL;
	assert_int_equal(mr_tls_cfg_x509_files(&sink_cfg, &f, true, err, sizeof(err)), -EINVAL);
	assert_contains(err, "--ca, --cert, --key");
	f = (struct mr_tls_files){ ca, cert, key, cert };
	assert_int_equal(mr_tls_cfg_x509_files(&sink_cfg, &f, true, err, sizeof(err)), -EINVAL);
	assert_contains(err, "holds no usable CRL");
	assert_null(sink_cfg);
}

static void test_x509_wrong_purpose(void **state)
{
	struct side srv = { .cfg = cfg_x509(d_srv, true) };
	struct side cli = { .cfg = cfg_x509(d_cli_srvcert, false), .peer_name = "localhost" };

	(void)state;
	run_pair(&srv, &cli, false);
	assert_int_equal(srv.r, -EACCES);
	assert_int_equal(srv.fail, MR_TLS_F_BAD_CERT);
	assert_contains(srv.err, "is not meant for a TLS client");
	expect_client_rejected(&cli, "server rejected our certificate: bad certificate");
	side_done(&srv);
	side_done(&cli);
}

static void test_x509_no_client_cert(void **state)
{
	struct side srv = { .cfg = cfg_x509(d_srv, true) };
	struct side cli = { 0 };
	char err[512];

	(void)state;
	assert_int_equal(mr_tls_cfg_x509_nocert(&cli.cfg, d_cli, err, sizeof(err)), 0);
	cli.peer_name = "localhost";
	run_pair(&srv, &cli, false);
	assert_int_equal(srv.r, -EACCES);
	assert_int_equal(srv.fail, MR_TLS_F_NO_CERT);
	assert_contains(srv.err, "the client sent no certificate");
	expect_client_rejected(&cli, "server rejected us: certificate required");
	side_done(&srv);
	side_done(&cli);
}

static void test_x509_cfg_errors(void **state)
{
	char err[512], dir[PATH_MAX], a[PATH_MAX], b[PATH_MAX];
	struct mr_tls_cfg *c = NULL;

	(void)state;
	/* a server directory has no client-cert.pem */
	assert_int_equal(mr_tls_cfg_x509(&c, d_srv, false, err, sizeof(err)), -ENOENT);
	assert_null(c);
	assert_contains(err, "/client-cert.pem: No such file or directory");
	assert_contains(err, "migrelay pki issue client");
	/* and a client directory no server-cert.pem */
	assert_int_equal(mr_tls_cfg_x509(&c, d_cli, true, err, sizeof(err)), -ENOENT);
	assert_contains(err, "/server-cert.pem: No such file or directory");
	/* no directory at all: the CA is named first */
	join(dir, root, "nowhere");
	assert_int_equal(mr_tls_cfg_x509(&c, dir, false, err, sizeof(err)), -ENOENT);
	assert_contains(err, "nowhere/ca-cert.pem");
	assert_int_equal(mr_tls_cfg_x509_nocert(&c, dir, err, sizeof(err)), -ENOENT);
	assert_int_equal(mr_tls_cfg_x509(&c, "", false, err, sizeof(err)), -EINVAL);

	/* a key of another certificate */
	join(dir, root, "mismatch");
	assert_int_equal(mkdir(dir, 0755), 0);
	join(a, d_cli, "ca-cert.pem");
	copy_file(a, (join(b, dir, "ca-cert.pem"), b));
	join(a, d_cli, "client-cert.pem");
	copy_file(a, (join(b, dir, "client-cert.pem"), b));
	join(a, d_cli_exp, "client-key.pem");
	copy_file(a, (join(b, dir, "client-key.pem"), b));
	assert_int_equal(mr_tls_cfg_x509(&c, dir, false, err, sizeof(err)), -EINVAL);
	assert_contains(err, "client-key.pem is not the key of");

	/* a CA file that is not PEM */
	join(b, dir, "ca-cert.pem");
	write_text(b, "not a certificate\n");
	assert_int_equal(mr_tls_cfg_x509(&c, dir, false, err, sizeof(err)), -EINVAL);
	assert_contains(err, "ca-cert.pem holds no usable CA certificate");
	assert_null(c);
}

/* ---- PSK ---- */

static void test_psk_ok(void **state)
{
	static const char *const ids[] = { NULL, "alice", "bob" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		struct side srv = { .cfg = cfg_psk(f_keys, true, NULL) };
		struct side cli = { .cfg = cfg_psk(f_keys, false, ids[i]) };
		const char *want = ids[i] ? ids[i] : "alice";

		run_pair(&srv, &cli, false);
		if (srv.r || cli.r)
			fail_msg("server %d %s / client %d %s", srv.r, srv.err, cli.r, cli.err);
		assert_string_equal(mr_tls_peer_identity(srv.t), want);
		assert_string_equal(mr_tls_peer_identity(cli.t), want);
		exchange_small(cli.t, srv.t);
		if (i == 0)
			full_duplex(cli.t, srv.t, 1u << 20);
		side_done(&srv);
		side_done(&cli);
	}
}

static void test_psk_wrong_key(void **state)
{
	struct side srv = { .cfg = cfg_psk(f_keys, true, NULL) };
	struct side cli = { .cfg = cfg_psk(f_wrong, false, NULL) };

	(void)state;
	run_pair(&srv, &cli, false);
	assert_int_equal(srv.r, -EACCES);
	assert_int_equal(srv.fail, MR_TLS_F_PSK);
	assert_contains(srv.err, "key for PSK identity \"alice\" differs");
	assert_int_equal(cli.r, -EACCES);
	assert_int_equal(cli.fail, MR_TLS_F_PEER_REJECTED);
	assert_contains(cli.err, "the server rejected our PSK identity \"alice\"");
	side_done(&srv);
	side_done(&cli);
}

static void test_psk_unknown_identity(void **state)
{
	struct side srv = { .cfg = cfg_psk(f_keys, true, NULL) };
	struct side cli = { .cfg = cfg_psk(f_unknown, false, NULL) };

	(void)state;
	run_pair(&srv, &cli, false);
	assert_int_equal(srv.r, -EACCES);
	assert_int_equal(srv.fail, MR_TLS_F_PSK);
	assert_contains(srv.err, "PSK identity \"mallory\" is not in");
	/* the client is told the same as for a wrong key */
	assert_int_equal(cli.fail, MR_TLS_F_PEER_REJECTED);
	assert_contains(cli.err, "the server rejected our PSK identity \"mallory\"");
	side_done(&srv);
	side_done(&cli);
}

static void test_psk_cfg_errors(void **state)
{
	struct mr_tls_cfg *c = NULL;
	char err[512], path[PATH_MAX];

	(void)state;
	assert_int_equal(mr_tls_cfg_psk(&c, f_bad, true, NULL, err, sizeof(err)), -EINVAL);
	assert_contains(err, "bad.psk line 2 is not \"identity:hexkey\"");
	assert_int_equal(mr_tls_cfg_psk(&c, f_keys, false, "carol", err, sizeof(err)), -ENOENT);
	assert_contains(err, "has no line for identity \"carol\"");
	join(path, root, "none.psk");
	assert_int_equal(mr_tls_cfg_psk(&c, path, false, NULL, err, sizeof(err)), -ENOENT);
	assert_contains(err, "none.psk: No such file or directory");
	join(path, root, "empty.psk");
	write_text(path, "# no keys yet\n");
	assert_int_equal(mr_tls_cfg_psk(&c, path, true, NULL, err, sizeof(err)), -EINVAL);
	assert_contains(err, "holds no \"identity:hexkey\" line");
	assert_null(c);
}

/* An x509 client at a PSK server and the other way round fail on both ends. */
static void test_mixed_credentials(void **state)
{
	int k;

	(void)state;
	for (k = 0; k < 2; k++) {
		struct side srv = { .cfg = k ? cfg_psk(f_keys, true, NULL) : cfg_x509(d_srv, true) };
		struct side cli = { .cfg = k ? cfg_x509(d_cli, false) : cfg_psk(f_keys, false, NULL) };

		run_pair(&srv, &cli, false);
		assert_true(srv.r < 0);
		assert_true(srv.fail != MR_TLS_OK);
		assert_true(srv.err[0]);
		if (cli.r == 0) {
			char buf[4];

			assert_true(mr_tls_recv(cli.t, buf, sizeof(buf)) < 0);
		} else {
			assert_true(cli.err[0]);
		}
		side_done(&srv);
		side_done(&cli);
	}
}

/* ---- not TLS, silence ---- */

static void test_not_tls(void **state)
{
	static const char *const junk[] = {
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"SSH-2.0-OpenSSH_9.2\r\n",
		"\x01\x02\x03",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		struct side srv = { .cfg = cfg_x509(d_srv, true) };
		pthread_t th;
		int fds[2];

		test_sock_pair(fds, false);
		srv.fd = fds[0];
		assert_int_equal(pthread_create(&th, NULL, hs_run, &srv), 0);
		assert_int_equal(write(fds[1], junk[i], strlen(junk[i])), (ssize_t)strlen(junk[i]));
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(srv.r, -EPROTO);
		assert_int_equal(srv.fail, MR_TLS_F_NOT_TLS);
		assert_contains(srv.err, "does not speak TLS");
		assert_true(srv.secs < HS_TIMEOUT_MS / 2000.0); /* at once, not at the timeout */
		close(fds[1]);
		side_done(&srv);
	}
	/* the peer's bytes are shown, escaped and bounded */
	{
		struct side srv = { .cfg = cfg_x509(d_srv, true) };
		pthread_t th;
		int fds[2];

		test_sock_pair(fds, false);
		srv.fd = fds[0];
		assert_int_equal(pthread_create(&th, NULL, hs_run, &srv), 0);
		assert_int_equal(write(fds[1], "GE\n\"x", 5), 5);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(srv.fail, MR_TLS_F_NOT_TLS);
		assert_contains(srv.err, "it sent \"GE\\x0a\\x22x\"");
		close(fds[1]);
		side_done(&srv);
	}
}

static void test_timeout(void **state)
{
	int k;

	(void)state;
	for (k = 0; k < 2; k++) { /* a silent client, then a silent server */
		struct side s = { .cfg = k ? cfg_x509(d_cli, false) : cfg_x509(d_srv, true), .timeout_ms = 300 };
		int fds[2];

		test_sock_pair(fds, false);
		s.fd = fds[0];
		hs_run(&s);
		assert_int_equal(s.r, -ETIMEDOUT);
		assert_int_equal(s.fail, MR_TLS_F_TIMEOUT);
		assert_contains(s.err, "within 300 ms");
		assert_true(s.secs >= 0.25 && s.secs < 5.0);
		close(fds[1]);
		side_done(&s);
	}
}

/* The peer hangs up in the middle of the handshake. */
static void test_peer_closes(void **state)
{
	struct side s = { .cfg = cfg_x509(d_cli, false) };
	int fds[2];

	(void)state;
	test_sock_pair(fds, false);
	s.fd = fds[0];
	close(fds[1]);
	hs_run(&s);
	assert_int_equal(s.r, -ECONNRESET);
	assert_int_equal(s.fail, MR_TLS_F_IO);
	side_done(&s);
}

/* ---- foreign peers: no ALPN, TLS 1.2 ---- */

struct raw {
	int fd;
	bool server;
	bool alpn;
	const char *prio;
	int hs;       /* gnutls_handshake result */
	int rec;      /* first gnutls_record_recv result after it */
	int alert;    /* alert received, if any */
	int setup;    /* 0 once the session was set up */
	bool no_recv; /* skip the receive after a good handshake */
};

static void *raw_run(void *arg)
{
	struct raw *p = arg;
	gnutls_certificate_credentials_t cred;
	gnutls_session_t s;
	gnutls_datum_t proto = { (unsigned char *)"migrelay/1", 10 };
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], buf[16];
	const char *dir = p->server ? d_srv : d_cli;

	/* may run in a thread: no cmocka assertions here, p->setup reports */
	p->setup = -1;
	if (snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir) >= (int)sizeof(ca) ||
	    snprintf(cert, sizeof(cert), "%s/%s-cert.pem", dir, p->server ? "server" : "client") >= (int)sizeof(cert) ||
	    snprintf(key, sizeof(key), "%s/%s-key.pem", dir, p->server ? "server" : "client") >= (int)sizeof(key) ||
	    gnutls_certificate_allocate_credentials(&cred) < 0)
		return NULL;
	if (gnutls_certificate_set_x509_trust_file(cred, ca, GNUTLS_X509_FMT_PEM) <= 0 ||
	    gnutls_certificate_set_x509_key_file(cred, cert, key, GNUTLS_X509_FMT_PEM) < 0 ||
	    gnutls_init(&s, (p->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_SIGNAL) < 0) {
		gnutls_certificate_free_credentials(cred);
		return NULL;
	}
	if (gnutls_priority_set_direct(s, p->prio, NULL) < 0 ||
	    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) < 0 ||
	    (p->alpn && gnutls_alpn_set_protocols(s, &proto, 1, 0) < 0))
		goto out;
	p->setup = 0;
	if (p->server)
		gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUEST);
	gnutls_transport_set_int(s, p->fd);
	gnutls_handshake_set_timeout(s, HS_TIMEOUT_MS);
	do
		p->hs = gnutls_handshake(s);
	while (p->hs < 0 && !gnutls_error_is_fatal(p->hs));
	if (p->hs == 0 && !p->no_recv) {
		do
			p->rec = gnutls_record_recv(s, buf, sizeof(buf));
		while (p->rec == GNUTLS_E_AGAIN || p->rec == GNUTLS_E_INTERRUPTED);
	}
	if (p->hs == GNUTLS_E_FATAL_ALERT_RECEIVED || p->rec == GNUTLS_E_FATAL_ALERT_RECEIVED)
		p->alert = (int)gnutls_alert_get(s);
out:
	shutdown(p->fd, SHUT_RDWR);
	gnutls_deinit(s);
	gnutls_certificate_free_credentials(cred);
	return NULL;
}

static void test_alpn_required(void **state)
{
	int fds[2];
	pthread_t th;

	(void)state;
	/* a client that offers no ALPN: the server refuses it at its ClientHello */
	{
		struct side srv = { .cfg = cfg_x509(d_srv, true) };
		struct raw cli = { .prio = "NORMAL:-VERS-ALL:+VERS-TLS1.3", .alpn = false };

		test_sock_pair(fds, false);
		srv.fd = fds[0];
		cli.fd = fds[1];
		assert_int_equal(pthread_create(&th, NULL, hs_run, &srv), 0);
		raw_run(&cli);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(cli.setup, 0);
		assert_int_equal(srv.r, -EPROTO);
		assert_int_equal(srv.fail, MR_TLS_F_PROTOCOL);
		assert_contains(srv.err, "did not offer the ALPN protocol \"migrelay/1\"");
		assert_int_equal(cli.alert, GNUTLS_A_NO_APPLICATION_PROTOCOL);
		close(fds[1]);
		side_done(&srv);
	}
	/* a server that does not answer with ALPN: our client refuses it */
	{
		struct side cli = { .cfg = cfg_x509(d_cli, false), .peer_name = "localhost" };
		struct raw srv = { .prio = "NORMAL:-VERS-ALL:+VERS-TLS1.3", .alpn = false, .server = true };

		test_sock_pair(fds, false);
		srv.fd = fds[0];
		cli.fd = fds[1];
		assert_int_equal(pthread_create(&th, NULL, raw_run, &srv), 0);
		hs_run(&cli);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(srv.setup, 0);
		assert_int_equal(cli.r, -EPROTO);
		assert_int_equal(cli.fail, MR_TLS_F_PROTOCOL);
		assert_contains(cli.err, "did not agree on the ALPN protocol");
		assert_int_equal(srv.alert, GNUTLS_A_NO_APPLICATION_PROTOCOL);
		close(fds[0]);
		side_done(&cli);
	}
	/* a foreign client with our ALPN and TLS 1.3 is fine */
	{
		struct side srv = { .cfg = cfg_x509(d_srv, true) };
		struct raw cli = { .prio = "NORMAL:-VERS-ALL:+VERS-TLS1.3", .alpn = true, .no_recv = true };

		test_sock_pair(fds, false);
		srv.fd = fds[0];
		cli.fd = fds[1];
		assert_int_equal(pthread_create(&th, NULL, hs_run, &srv), 0);
		raw_run(&cli); /* shuts its end down after the handshake */
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(srv.r, 0);
		assert_int_equal(cli.hs, 0);
		assert_string_equal(mr_tls_peer_identity(srv.t), "CN=client1,O=Example");
		close(fds[1]);
		side_done(&srv);
	}
}

static void test_tls12_refused(void **state)
{
	struct side srv = { .cfg = cfg_x509(d_srv, true) };
	struct raw cli = { .prio = "NORMAL:-VERS-ALL:+VERS-TLS1.2", .alpn = true };
	pthread_t th;
	int fds[2];

	(void)state;
	test_sock_pair(fds, false);
	srv.fd = fds[0];
	cli.fd = fds[1];
	assert_int_equal(pthread_create(&th, NULL, hs_run, &srv), 0);
	raw_run(&cli);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(srv.r, -EPROTO);
	assert_int_equal(srv.fail, MR_TLS_F_PROTOCOL);
	assert_contains(srv.err, "TLS 1.3");
	assert_true(cli.hs < 0);
	close(fds[1]);
	side_done(&srv);
}

/* A PSK client that offers only psk_ke (no (EC)DHE, no forward secrecy) is refused. */
static void test_psk_needs_dhe(void **state)
{
	struct side srv = { .cfg = cfg_psk(f_keys, true, NULL) };
	gnutls_psk_client_credentials_t cred;
	gnutls_datum_t proto = { (unsigned char *)"migrelay/1", 10 };
	gnutls_datum_t key = { (unsigned char *)K1, 64 };
	gnutls_session_t s;
	pthread_t th;
	int fds[2], r;

	(void)state;
	test_sock_pair(fds, false);
	srv.fd = fds[0];
	assert_int_equal(gnutls_psk_allocate_client_credentials(&cred), 0);
	assert_int_equal(gnutls_psk_set_client_credentials(cred, "alice", &key, GNUTLS_PSK_KEY_HEX), 0);
	assert_int_equal(gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL), 0);
	assert_int_equal(gnutls_priority_set_direct(s, "NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+PSK", NULL), 0);
	assert_int_equal(gnutls_credentials_set(s, GNUTLS_CRD_PSK, cred), 0);
	assert_int_equal(gnutls_alpn_set_protocols(s, &proto, 1, 0), 0);
	gnutls_transport_set_int(s, fds[1]);
	gnutls_handshake_set_timeout(s, HS_TIMEOUT_MS);
	assert_int_equal(pthread_create(&th, NULL, hs_run, &srv), 0);
	do
		r = gnutls_handshake(s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_true(r < 0);
	assert_true(srv.r < 0);
	assert_true(srv.fail == MR_TLS_F_PSK || srv.fail == MR_TLS_F_PROTOCOL);
	gnutls_deinit(s);
	gnutls_psk_free_client_credentials(cred);
	close(fds[1]);
	side_done(&srv);
}

/* ---- receive semantics ---- */

static void test_recv_semantics(void **state)
{
	struct side srv = { .cfg = cfg_psk(f_keys, true, NULL) };
	struct side cli = { .cfg = cfg_psk(f_keys, false, NULL) };
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
	char buf[8];

	(void)state;
	run_pair(&srv, &cli, false);
	assert_int_equal(srv.r, 0);
	assert_int_equal(cli.r, 0);

	/* SO_RCVTIMEO expiry is -EAGAIN, and the session goes on afterwards */
	assert_int_equal(setsockopt(srv.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(mr_tls_recv(srv.t, buf, sizeof(buf)), -EAGAIN);
	assert_int_equal(mr_tls_recv_all(srv.t, buf, 4), -EAGAIN);
	exchange_small(cli.t, srv.t);

	/* part of a message, then silence: the message is lost, says -ETIMEDOUT */
	assert_int_equal(mr_tls_send(cli.t, "ab", 2), 2);
	assert_int_equal(mr_tls_recv_all(srv.t, buf, 4), -ETIMEDOUT);
	assert_contains(mr_tls_last_error(srv.t), "in the middle of a message");

	/* close without close_notify */
	shutdown(cli.fd, SHUT_RDWR);
	assert_int_equal(mr_tls_recv(srv.t, buf, sizeof(buf)), -ECONNRESET);
	assert_contains(mr_tls_last_error(srv.t), "without a TLS close_notify");

	/* sending into a closed connection fails and says so */
	{
		char big[65536] = { 0 };
		ssize_t n = 0;
		int i;

		shutdown(srv.fd, SHUT_RDWR);
		for (i = 0; i < 64 && n >= 0; i++)
			n = mr_tls_send(srv.t, big, sizeof(big));
		assert_int_equal(n, -EPIPE);
		assert_contains(mr_tls_last_error(srv.t), "cannot send to the client");
	}
	assert_int_equal(mr_tls_send(srv.t, NULL, 1), -EINVAL);
	assert_int_equal(mr_tls_recv(srv.t, NULL, 1), -EINVAL);
	side_done(&srv);
	side_done(&cli);
}

static void test_random(void **state)
{
	uint8_t a[32] = { 0 }, b[32] = { 0 };

	(void)state;
	assert_int_equal(mr_random(a, sizeof(a)), 0);
	assert_int_equal(mr_random(b, sizeof(b)), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(mr_random(NULL, 0), 0);
	assert_string_equal(mr_tls_peer_identity(NULL), "");
	assert_string_equal(mr_tls_last_error(NULL), "");
	mr_tls_free(NULL);
	mr_tls_cfg_free(NULL);
	mr_tls_bye(NULL);
}

/* ---- pki ---- */

static gnutls_x509_crt_t load_crt(const char *dir, const char *name)
{
	gnutls_x509_crt_t crt;
	gnutls_datum_t d;
	char path[PATH_MAX];

	join(path, dir, name);
	assert_int_equal(gnutls_load_file(path, &d), 0);
	assert_int_equal(gnutls_x509_crt_init(&crt), 0);
	assert_int_equal(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
	gnutls_free(d.data);
	return crt;
}

static void test_pki_files(void **state)
{
	char path[PATH_MAX], err[512], buf[64];
	gnutls_x509_crt_t crt;
	unsigned int usage = 0, critical = 0, ca = 0;
	int pathlen = 0;
	size_t size;
	struct stat st;

	(void)state;
	/* keys are private, certificates public */
	join(path, d_ca1, "ca-key.pem");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	join(path, d_cli, "client-key.pem");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	join(path, d_cli, "client-cert.pem");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	join(path, d_srv, "ca-cert.pem"); /* copied next to the leaf */
	assert_int_equal(stat(path, &st), 0);

	/* CA: CA:TRUE, keyCertSign */
	crt = load_crt(d_ca1, "ca-cert.pem");
	assert_int_equal(gnutls_x509_crt_get_basic_constraints(crt, &critical, &ca, &pathlen) >= 0, 1);
	assert_int_equal(ca, 1);
	assert_int_equal(critical, 1);
	assert_true(gnutls_x509_crt_get_key_usage(crt, &usage, &critical) >= 0);
	assert_true(usage & GNUTLS_KEY_KEY_CERT_SIGN);
	assert_int_equal(gnutls_x509_crt_get_pk_algorithm(crt, NULL), GNUTLS_PK_ECDSA);
	gnutls_x509_crt_deinit(crt);

	/* server: not a CA, digitalSignature + keyEncipherment (QEMU), TLS WWW server, SANs */
	crt = load_crt(d_srv, "server-cert.pem");
	assert_int_equal(gnutls_x509_crt_get_basic_constraints(crt, &critical, &ca, &pathlen) >= 0, 1);
	assert_int_equal(ca, 0);
	assert_true(gnutls_x509_crt_get_key_usage(crt, &usage, &critical) >= 0);
	assert_int_equal(usage, GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_ENCIPHERMENT);
	size = sizeof(buf);
	assert_int_equal(gnutls_x509_crt_get_key_purpose_oid(crt, 0, buf, &size, NULL), 0);
	assert_string_equal(buf, GNUTLS_KP_TLS_WWW_SERVER);
	assert_true(gnutls_x509_crt_check_hostname(crt, "localhost"));
	assert_true(gnutls_x509_crt_check_ip(crt, (const unsigned char *)"\x7f\0\0\x01", 4, 0));
	assert_false(gnutls_x509_crt_check_hostname(crt, "server1"));
	gnutls_x509_crt_deinit(crt);

	crt = load_crt(d_cli, "client-cert.pem");
	size = sizeof(buf);
	assert_int_equal(gnutls_x509_crt_get_key_purpose_oid(crt, 0, buf, &size, NULL), 0);
	assert_string_equal(buf, GNUTLS_KP_TLS_WWW_CLIENT);
	assert_true(gnutls_x509_crt_get_expiration_time(crt) > time(NULL) + 300 * 86400);
	gnutls_x509_crt_deinit(crt);

	crt = load_crt(d_cli_exp, "client-cert.pem");
	assert_true(gnutls_x509_crt_get_expiration_time(crt) < time(NULL));
	gnutls_x509_crt_deinit(crt);

	/* init never overwrites */
	assert_int_equal(pki_init(d_ca1, NULL, 0, err, sizeof(err)), -EEXIST);
	assert_contains(err, "refusing to overwrite");
}

static void test_pki_issue_errors(void **state)
{
	static const struct {
		const char *name;
		struct pki_issue_opts o;
		int want;
		const char *text;
	} cases[] = {
		{ "no cn", { .ca_dir = "CA", .out_dir = "OUT" }, -EINVAL, "--cn" },
		{ "empty cn", { .ca_dir = "CA", .out_dir = "OUT", .cn = "" }, -EINVAL, "--cn" },
		{ "cn with newline", { .ca_dir = "CA", .out_dir = "OUT", .cn = "a\nb" }, -EINVAL, "--cn" },
		{ "cn too long",
		  { .ca_dir = "CA", .out_dir = "OUT",
		    .cn = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" },
		  -EINVAL, "--cn" },
		{ "bad dns", { .ca_dir = "CA", .out_dir = "OUT", .cn = "h", .dns = { "a b" } }, -EINVAL, "--dns" },
		{ "bad ip", { .ca_dir = "CA", .out_dir = "OUT", .cn = "h", .ip = { "1.2.3.4:80" } }, -EINVAL, "--ip" },
		{ "bracketed ip", { .ca_dir = "CA", .out_dir = "OUT", .cn = "h", .ip = { "[::1]" } }, -EINVAL, "--ip" },
		{ "days", { .ca_dir = "CA", .out_dir = "OUT", .cn = "h", .days = 100000 }, -EINVAL, "--days" },
		{ "server without host name", { .ca_dir = "CA", .out_dir = "OUT", .cn = "my server", .server = true },
		  -EINVAL, "--dns NAME or --ip ADDR" },
		{ "no ca", { .ca_dir = "NOCA", .out_dir = "OUT", .cn = "h" }, -ENOENT, "ca-cert.pem" },
		{ "leaf dir as ca", { .ca_dir = "SRV", .out_dir = "OUT", .cn = "h" }, -ENOENT, "ca-key.pem" },
		{ "out holds another CA", { .ca_dir = "CA2", .out_dir = "CLI", .cn = "h" }, -EEXIST, "another CA" },
	};
	char err[512], nowhere[PATH_MAX], out[PATH_MAX];
	size_t i;

	(void)state;
	join(nowhere, root, "no-ca");
	join(out, root, "issue-out");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pki_issue_opts o = cases[i].o;
		int r;

		o.ca_dir = !strcmp(o.ca_dir, "CA")     ? d_ca1
			   : !strcmp(o.ca_dir, "CA2")  ? d_ca2
			   : !strcmp(o.ca_dir, "SRV")  ? d_srv
						       : nowhere;
		o.out_dir = !strcmp(o.out_dir, "CLI") ? d_cli : out;
		r = pki_issue(&o, err, sizeof(err));
		if (r != cases[i].want || !strstr(err, cases[i].text))
			fail_msg("%s: %d \"%s\" (want %d and \"%s\")", cases[i].name, r, err, cases[i].want,
				 cases[i].text);
	}
	assert_int_equal(pki_init(nowhere, "a\tb", 0, err, sizeof(err)), -EINVAL);
	assert_int_equal(pki_init(nowhere, NULL, 100000, err, sizeof(err)), -EINVAL);
	assert_int_equal(pki_issue(NULL, err, sizeof(err)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pki_files),
		cmocka_unit_test(test_pki_issue_errors),
		cmocka_unit_test(test_x509_ok),
		cmocka_unit_test(test_x509_names_ok),
		cmocka_unit_test(test_x509_name_mismatch),
		cmocka_unit_test(test_x509_unknown_ca_server),
		cmocka_unit_test(test_x509_unknown_ca_server_tcp),
		cmocka_unit_test(test_x509_unknown_ca_client),
		cmocka_unit_test(test_x509_expired),
		cmocka_unit_test(test_x509_wrong_purpose),
		cmocka_unit_test(test_x509_revoked),
		cmocka_unit_test(test_x509_no_client_cert),
		cmocka_unit_test(test_x509_cfg_errors),
		cmocka_unit_test(test_psk_ok),
		cmocka_unit_test(test_psk_wrong_key),
		cmocka_unit_test(test_psk_unknown_identity),
		cmocka_unit_test(test_psk_cfg_errors),
		cmocka_unit_test(test_psk_needs_dhe),
		cmocka_unit_test(test_mixed_credentials),
		cmocka_unit_test(test_not_tls),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_peer_closes),
		cmocka_unit_test(test_alpn_required),
		cmocka_unit_test(test_tls12_refused),
		cmocka_unit_test(test_recv_semantics),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
