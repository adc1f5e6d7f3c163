/* SPDX-License-Identifier: MIT */
/*
 * Kernel TLS: two mr_tls sessions over TCP loopback hand their keys to the
 * kernel after the handshake and exchange data and close_notify through
 * it. Skipped (exit 77) when the kernel has no TLS (no "tls" TCP ULP);
 * test_crypto_record checks the fallback to in-place records there.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <unistd.h>

#include <cmocka.h>

#include "crypto/pki.h"
#include "crypto/tls.h"
#include "tests/unit/util.h"

static char dir[PATH_MAX], d_ca[PATH_MAX], d_srv[PATH_MAX], d_cli[PATH_MAX];

/* Whether this kernel accepts the TLS ULP on a connected TCP socket; <why> says why not. */
static bool kernel_has_tls(char *why, size_t len)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int l, c, s, r = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &alen) < 0) {
		snprintf(why, len, "no TCP loopback socket: %s", strerror(errno));
		goto out;
	}
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
		snprintf(why, len, "no TCP loopback connection: %s", strerror(errno));
		goto out;
	}
	s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	r = setsockopt(c, SOL_TCP, TCP_ULP, "tls", sizeof("tls"));
	if (r < 0)
		snprintf(why, len, "setsockopt(TCP_ULP, \"tls\"): %s", strerror(errno));
	if (s >= 0)
		close(s);
	close(c);
out:
	if (l >= 0)
		close(l);
	return r == 0;
}

static int group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	struct pki_issue_opts o = { 0 };
	char err[512];

	(void)state;
	snprintf(dir, sizeof(dir), "%s/mr-ktls-test.XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
	if (!mkdtemp(dir))
		return -1;
	snprintf(d_ca, sizeof(d_ca), "%s/ca", dir);
	snprintf(d_srv, sizeof(d_srv), "%s/srv", dir);
	snprintf(d_cli, sizeof(d_cli), "%s/cli", dir);
	if (pki_init(d_ca, "kTLS Test CA", 0, err, sizeof(err)) < 0)
		goto fail;
	o.ca_dir = d_ca;
	o.out_dir = d_srv;
	o.server = true;
	o.cn = "server";
	o.ip[0] = "127.0.0.1";
	if (pki_issue(&o, err, sizeof(err)) < 0)
		goto fail;
	o.out_dir = d_cli;
	o.server = false;
	o.cn = "client";
	if (pki_issue(&o, err, sizeof(err)) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "pki: %s\n", err);
	return -1;
}

static int group_teardown(void **state)
{
	(void)state;
	test_rm_tree(dir);
	return 0;
}

struct hs {
	struct mr_tls_cfg *cfg;
	struct mr_tls *t;
	int fd, r;
	enum mr_tls_fail fail;
	char err[512];
	const unsigned char *p;
	size_t len;
	ssize_t sent;
};

static void *hs_run(void *arg)
{
	struct hs *h = arg;

	h->r = mr_tls_handshake(&h->t, h->cfg, h->fd, NULL, 10000, &h->fail, h->err, sizeof(h->err));
	return NULL;
}

static void *send_run(void *arg)
{
	struct hs *h = arg;

	h->sent = mr_tls_send(h->t, h->p, h->len);
	return NULL;
}

static void test_ktls_both_ways(void **state)
{
	enum { N = 3 << 20 };
	unsigned char *out = malloc(N), *in = malloc(N);
	struct hs c = { 0 }, s = { 0 };
	char err[512];
	pthread_t th;
	int fds[2];

	(void)state;
	assert_non_null(out);
	assert_non_null(in);
	unsetenv("MIGRELAY_KTLS");
	unsetenv("MIGRELAY_TLS_RECORDS");
	test_tcp_pair(fds, 0, 0);
	s.fd = fds[0];
	c.fd = fds[1];
	assert_int_equal(mr_tls_cfg_x509(&s.cfg, d_srv, true, err, sizeof(err)), 0);
	assert_int_equal(mr_tls_cfg_x509(&c.cfg, d_cli, false, err, sizeof(err)), 0);
	assert_int_equal(pthread_create(&th, NULL, hs_run, &s), 0);
	hs_run(&c);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (c.r || s.r)
		fail_msg("handshake: %s / %s", c.err, s.err);
	if (strcmp(mr_tls_engine(c.t), "ktls"))
		fail_msg("the kernel has the TLS ULP, but the session is \"%s\": %s", mr_tls_engine(c.t),
			 mr_tls_ktls_error(c.t));
	assert_string_equal(mr_tls_engine(s.t), "ktls");
	assert_int_equal(mr_tls_set_plaintext(c.t), -EINVAL);

	for (size_t i = 0; i < N; i++)
		out[i] = (unsigned char)(i * 7 + (i >> 10));
	c.p = out;
	c.len = N;
	assert_int_equal(pthread_create(&th, NULL, send_run, &c), 0);
	assert_int_equal(mr_tls_recv_all(s.t, in, N), N);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(c.sent, N);
	assert_memory_equal(in, out, N);
	assert_int_equal(mr_tls_send(s.t, "pong", 4), 4);
	assert_int_equal(mr_tls_recv_all(c.t, in, 4), 4);
	assert_memory_equal(in, "pong", 4);
	mr_tls_bye(s.t);
	assert_int_equal(mr_tls_recv(c.t, in, 16), 0);

	mr_tls_free(c.t);
	mr_tls_free(s.t);
	mr_tls_cfg_free(c.cfg);
	mr_tls_cfg_free(s.cfg);
	close(fds[0]);
	close(fds[1]);
	free(out);
	free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ktls_both_ways),
	};
	char why[256];

	if (!kernel_has_tls(why, sizeof(why))) {
		printf("SKIP: this kernel has no TLS (%s); load the tls module to run this test\n", why);
		return 77;
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
