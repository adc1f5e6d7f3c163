/* SPDX-License-Identifier: MIT */
/*
 * Own TLS 1.3 records (crypto/record.c and the "in-place" record layer of
 * crypto/tls.c) against GnuTLS's record layer, as a known-answer test:
 * two GnuTLS sessions do a real handshake over a socketpair, then records
 * sealed by mr_rec_seal with one session's write keys must be read by the
 * other session's gnutls_record_recv, and records written by
 * gnutls_record_send must open with mr_rec_open/mr_rec_open_to, for each
 * TLS 1.3 suite (forced by priority strings). Then mr_tls sessions in
 * "in-place" mode against a plain GnuTLS peer (data, alerts, KeyUpdate,
 * close_notify, timeouts, partial records), and the plaintext switch.
 * The plain GnuTLS peers use certificates made by pki_init/pki_issue
 * (GnuTLS 3.7 ties external PSKs to SHA-256, which excludes AES-256-GCM);
 * mr_tls against mr_tls uses a PSK file.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <sys/stat.h>
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
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>

#include "crypto/pki.h"
#include "crypto/record.h"
#include "crypto/tls.h"
#include "tests/unit/util.h"

#define PSK_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define PRIO_BASE "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:"

static const struct suite {
	const char *name;
	const char *prio;
	gnutls_cipher_algorithm_t alg;
	enum mr_rec_cipher c;
} suites[] = {
	{ "AES-128-GCM", PRIO_BASE "+AES-128-GCM", GNUTLS_CIPHER_AES_128_GCM, MR_REC_AES_128_GCM },
	{ "AES-256-GCM", PRIO_BASE "+AES-256-GCM", GNUTLS_CIPHER_AES_256_GCM, MR_REC_AES_256_GCM },
	{ "CHACHA20-POLY1305", PRIO_BASE "+CHACHA20-POLY1305", GNUTLS_CIPHER_CHACHA20_POLY1305,
	  MR_REC_CHACHA20_POLY1305 },
};

static char dir[PATH_MAX], keys_file[PATH_MAX], d_ca[PATH_MAX], d_srv[PATH_MAX], d_cli[PATH_MAX];
static char srv_cert[PATH_MAX], srv_key[PATH_MAX], ca_cert[PATH_MAX];

static int issue(const char *out, bool server, const char *cn)
{
	struct pki_issue_opts o = { 0 };
	char err[512];

	o.ca_dir = d_ca;
	o.out_dir = out;
	o.server = server;
	o.cn = cn;
	o.dns[0] = "localhost";
	if (pki_issue(&o, err, sizeof(err)) < 0) {
		fprintf(stderr, "pki_issue: %s\n", err);
		return -1;
	}
	return 0;
}

static int group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	FILE *f;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/mr-rec-test.XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
	if (!mkdtemp(dir))
		return -1;
	snprintf(keys_file, sizeof(keys_file), "%s/keys.psk", dir);
	f = fopen(keys_file, "w");
	if (!f)
		return -1;
	fprintf(f, "alice:%s\n", PSK_HEX);
	if (fclose(f))
		return -1;
	snprintf(d_ca, sizeof(d_ca), "%s/ca", dir);
	snprintf(d_srv, sizeof(d_srv), "%s/srv", dir);
	snprintf(d_cli, sizeof(d_cli), "%s/cli", dir);
	snprintf(srv_cert, sizeof(srv_cert), "%s/server-cert.pem", d_srv);
	snprintf(srv_key, sizeof(srv_key), "%s/server-key.pem", d_srv);
	snprintf(ca_cert, sizeof(ca_cert), "%s/ca-cert.pem", d_ca);
	{
		char err[512];

		if (pki_init(d_ca, "Record Test CA", 0, err, sizeof(err)) < 0) {
			fprintf(stderr, "pki_init: %s\n", err);
			return -1;
		}
	}
	return issue(d_srv, true, "server") < 0 || issue(d_cli, false, "client") < 0 ? -1 : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	test_rm_tree(dir);
	return 0;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 131 + seed * 7 + (i >> 8));
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	assert_non_null(p);
	return p;
}

/* ---- plain GnuTLS peers ---- */

struct raw {
	gnutls_session_t s;
	gnutls_certificate_credentials_t x;
	int fd;
	int r;
};

static void raw_init(struct raw *w, bool server, int fd, const char *prio, bool alpn)
{
	static const gnutls_datum_t proto = { (unsigned char *)WIRE_ALPN, sizeof(WIRE_ALPN) - 1 };

	memset(w, 0, sizeof(*w));
	w->fd = fd;
	assert_int_equal(gnutls_init(&w->s, server ? GNUTLS_SERVER : GNUTLS_CLIENT), 0);
	assert_int_equal(gnutls_priority_set_direct(w->s, prio, NULL), 0);
	assert_int_equal(gnutls_certificate_allocate_credentials(&w->x), 0);
	if (server)
		assert_int_equal(gnutls_certificate_set_x509_key_file(w->x, srv_cert, srv_key, GNUTLS_X509_FMT_PEM), 0);
	else
		assert_true(gnutls_certificate_set_x509_trust_file(w->x, ca_cert, GNUTLS_X509_FMT_PEM) > 0);
	assert_int_equal(gnutls_credentials_set(w->s, GNUTLS_CRD_CERTIFICATE, w->x), 0);
	if (alpn)
		assert_int_equal(gnutls_alpn_set_protocols(w->s, &proto, 1, 0), 0);
	gnutls_transport_set_int(w->s, fd);
	gnutls_handshake_set_timeout(w->s, 10000);
}

static void *raw_hs(void *arg)
{
	struct raw *w = arg;

	do
		w->r = gnutls_handshake(w->s);
	while (w->r < 0 && !gnutls_error_is_fatal(w->r));
	return NULL;
}

static void raw_free(struct raw *w)
{
	if (w->s)
		gnutls_deinit(w->s);
	if (w->x)
		gnutls_certificate_free_credentials(w->x);
	if (w->fd >= 0)
		close(w->fd);
	memset(w, 0, sizeof(*w));
	w->fd = -1;
}

/* A GnuTLS client and server over a socketpair, handshake done. */
static void raw_pair(struct raw *cli, struct raw *srv, const char *prio)
{
	pthread_t th;
	int fds[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
	raw_init(cli, false, fds[0], prio, false);
	raw_init(srv, true, fds[1], prio, false);
	assert_int_equal(pthread_create(&th, NULL, raw_hs, srv), 0);
	raw_hs(cli);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(cli->r, 0);
	assert_int_equal(srv->r, 0);
}

/* Our record state from one direction of GnuTLS session <s> (read: 1 = its receiving side). */
static void rec_from(struct mr_rec *r, gnutls_session_t s, unsigned read, enum mr_rec_cipher c)
{
	gnutls_datum_t mac, iv, key;
	unsigned char seq[8];
	uint64_t q = 0;

	assert_int_equal(gnutls_record_get_state(s, read, &mac, &iv, &key, seq), 0);
	for (int i = 0; i < 8; i++)
		q = q << 8 | seq[i];
	assert_int_equal(mr_rec_init(r, c, key.data, key.size, iv.data, iv.size, q), 0);
}

static void write_all(int fd, const void *p, size_t n)
{
	const unsigned char *c = p;

	while (n) {
		ssize_t k = send(fd, c, n, MSG_NOSIGNAL);

		assert_true(k > 0);
		c += k;
		n -= (size_t)k;
	}
}

static void read_all(int fd, void *p, size_t n)
{
	unsigned char *c = p;

	while (n) {
		ssize_t k = recv(fd, c, n, 0);

		assert_true(k > 0);
		c += k;
		n -= (size_t)k;
	}
}

/* Reads exactly one record from <fd> into <buf>; returns its length. */
static size_t read_record(int fd, unsigned char *buf)
{
	ssize_t k;

	read_all(fd, buf, MR_REC_HDR);
	k = mr_rec_peek(buf, MR_REC_HDR);
	assert_true(k > MR_REC_HDR);
	read_all(fd, buf + MR_REC_HDR, (size_t)k - MR_REC_HDR);
	return (size_t)k;
}

/* gnutls_record_recv until <n> bytes arrived. */
static void gnutls_read_all(gnutls_session_t s, unsigned char *p, size_t n)
{
	while (n) {
		ssize_t k = gnutls_record_recv(s, p, n);

		if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
			continue;
		if (k <= 0)
			fail_msg("gnutls_record_recv: %zd %s", k, k < 0 ? gnutls_strerror((int)k) : "eof");
		p += k;
		n -= (size_t)k;
	}
}

static void gnutls_write_all(gnutls_session_t s, const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t k = gnutls_record_send(s, p, n);

		if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
			continue;
		assert_true(k > 0);
		p += k;
		n -= (size_t)k;
	}
}

/* ---- known answers: our records read by GnuTLS, GnuTLS's records opened by us ---- */

static void kat_suite(const struct suite *su)
{
	static const size_t sizes[] = { 1, 2, 100, 16383, 16384 };
	unsigned char *plain = xmalloc(3 * MR_REC_MAX_PLAIN), *got = xmalloc(3 * MR_REC_MAX_PLAIN);
	unsigned char *rec = xmalloc(MR_REC_MAX + 64), *dst = xmalloc(MR_REC_MAX);
	struct raw cli, srv;
	struct mr_rec tx, rx;
	size_t i;

	raw_pair(&cli, &srv, su->prio);
	assert_int_equal(gnutls_cipher_get(cli.s), su->alg);
	rec_from(&tx, cli.s, 0, su->c);
	rec_from(&rx, cli.s, 1, su->c);

	/* ours -> gnutls_record_recv */
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct iovec v = { plain, sizes[i] };
		uint64_t seq = tx.seq;
		ssize_t n;

		fill(plain, sizes[i], (unsigned)i);
		n = mr_rec_seal(&tx, MR_REC_T_DATA, &v, 1, rec, MR_REC_MAX + 64);
		assert_int_equal(n, (ssize_t)(sizes[i] + MR_REC_OVERHEAD));
		assert_int_equal(tx.seq, seq + 1);
		assert_int_equal(rec[0], 0x17);
		assert_int_equal(rec[1], 0x03);
		assert_int_equal(rec[2], 0x03);
		assert_int_equal((size_t)(rec[3] << 8 | rec[4]), sizes[i] + 1 + MR_REC_TAG);
		write_all(cli.fd, rec, (size_t)n);
		memset(got, 0, sizes[i]);
		gnutls_read_all(srv.s, got, sizes[i]);
		assert_memory_equal(got, plain, sizes[i]);
	}
	/* an empty record (allowed for application data, §5.4), then three iovecs in one record */
	{
		struct iovec e = { plain, 0 };
		struct iovec v[3] = { { plain, 7 }, { plain + 7, 0 }, { plain + 7, 9000 } };
		ssize_t n = mr_rec_seal(&tx, MR_REC_T_DATA, &e, 1, rec, MR_REC_MAX);

		assert_int_equal(n, MR_REC_OVERHEAD);
		write_all(cli.fd, rec, (size_t)n);
		fill(plain, 9007, 42);
		n = mr_rec_seal(&tx, MR_REC_T_DATA, v, 3, rec, MR_REC_MAX);
		assert_int_equal(n, 9007 + MR_REC_OVERHEAD);
		write_all(cli.fd, rec, (size_t)n);
		gnutls_read_all(srv.s, got, 9007);
		assert_memory_equal(got, plain, 9007);
	}
	/* multi-record: 40000 bytes in three records, all written before GnuTLS reads */
	{
		size_t off = 0, total = 40000, w = 0;
		unsigned char *big = xmalloc(total + 3 * MR_REC_OVERHEAD);

		fill(plain, total, 9);
		while (off < total) {
			struct iovec v = { plain + off, total - off > MR_REC_MAX_PLAIN ? MR_REC_MAX_PLAIN : total - off };
			ssize_t n = mr_rec_seal(&tx, MR_REC_T_DATA, &v, 1, big + w, total + 3 * MR_REC_OVERHEAD - w);

			assert_true(n > 0);
			w += (size_t)n;
			off += v.iov_len;
		}
		assert_int_equal(w, total + 3 * MR_REC_OVERHEAD);
		write_all(cli.fd, big, w);
		gnutls_read_all(srv.s, got, total);
		assert_memory_equal(got, plain, total);
		free(big);
	}

	/* gnutls_record_send -> ours, in place and out of place */
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned char *content, type;
		size_t len, pl;
		uint64_t seq = rx.seq;

		fill(plain, sizes[i], (unsigned)i + 100);
		gnutls_write_all(srv.s, plain, sizes[i]);
		len = read_record(cli.fd, rec);
		if (i % 2) {
			assert_int_equal(mr_rec_open(&rx, rec, len, &content, &pl, &type), 0);
		} else {
			assert_int_equal(mr_rec_open_to(&rx, rec, len, dst, len - MR_REC_HDR - MR_REC_TAG, &pl, &type),
					 0);
			content = dst;
		}
		assert_int_equal(rx.seq, seq + 1);
		assert_int_equal(type, MR_REC_T_DATA);
		assert_int_equal(pl, sizes[i]);
		assert_memory_equal(content, plain, sizes[i]);
	}
	/* 40000 bytes: GnuTLS cuts them into records of at most 16 KiB */
	{
		size_t off = 0;

		fill(plain, 40000, 77);
		gnutls_write_all(srv.s, plain, 40000);
		while (off < 40000) {
			unsigned char *content, type;
			size_t len = read_record(cli.fd, rec), pl;

			assert_int_equal(mr_rec_open(&rx, rec, len, &content, &pl, &type), 0);
			assert_int_equal(type, MR_REC_T_DATA);
			assert_true(pl <= MR_REC_MAX_PLAIN && off + pl <= 40000);
			assert_memory_equal(content, plain + off, pl);
			off += pl;
		}
	}
	/* GnuTLS's close_notify is an alert record for us */
	{
		unsigned char *content, type;
		size_t len, pl;

		assert_int_equal(gnutls_bye(srv.s, GNUTLS_SHUT_WR), 0);
		len = read_record(cli.fd, rec);
		assert_int_equal(mr_rec_open(&rx, rec, len, &content, &pl, &type), 0);
		assert_int_equal(type, MR_REC_T_ALERT);
		assert_int_equal(pl, 2);
		assert_int_equal(content[1], GNUTLS_A_CLOSE_NOTIFY);
	}
	/* and ours ends GnuTLS's reading cleanly */
	{
		static const unsigned char alert[2] = { 1, 0 };
		struct iovec v = { (void *)(uintptr_t)alert, 2 };
		ssize_t n = mr_rec_seal(&tx, MR_REC_T_ALERT, &v, 1, rec, MR_REC_MAX);

		assert_true(n > 0);
		write_all(cli.fd, rec, (size_t)n);
		assert_int_equal(gnutls_record_recv(srv.s, got, 10), 0);
	}
	mr_rec_free(&tx);
	mr_rec_free(&rx);
	raw_free(&cli);
	raw_free(&srv);
	free(plain);
	free(got);
	free(rec);
	free(dst);
}

static void test_kat_aes128(void **state)
{
	(void)state;
	kat_suite(&suites[0]);
}

static void test_kat_aes256(void **state)
{
	(void)state;
	kat_suite(&suites[1]);
}

static void test_kat_chacha(void **state)
{
	(void)state;
	kat_suite(&suites[2]);
}

/* ---- rejections ---- */

static const unsigned char key32[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
					 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
static const unsigned char iv12[12] = { 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab };

/*
 * A record made without record.c: GnuTLS's AEAD with the nonce and AAD of
 * RFC 8446 §5.2-5.3 spelled out here, around any inner plaintext.
 */
static size_t hand_record(const struct suite *su, uint64_t seq, const unsigned char *inner, size_t n,
			  unsigned char *out)
{
	gnutls_datum_t k = { (unsigned char *)(uintptr_t)key32, (unsigned int)mr_rec_key_len(su->c) };
	gnutls_aead_cipher_hd_t h;
	unsigned char nonce[12];
	size_t clen = n + 16;

	memcpy(nonce, iv12, 12);
	for (int i = 0; i < 8; i++)
		nonce[11 - i] ^= (unsigned char)(seq >> (8 * i));
	out[0] = 0x17;
	out[1] = 0x03;
	out[2] = 0x03;
	out[3] = (unsigned char)(clen >> 8);
	out[4] = (unsigned char)clen;
	assert_int_equal(gnutls_aead_cipher_init(&h, su->alg, &k), 0);
	assert_int_equal(gnutls_aead_cipher_encrypt(h, nonce, 12, out, 5, 16, inner, n, out + 5, &clen), 0);
	gnutls_aead_cipher_deinit(h);
	return 5 + clen;
}

static void test_reject(void **state)
{
	unsigned char *rec = xmalloc(MR_REC_MAX + 600), *copy = xmalloc(MR_REC_MAX + 600);
	unsigned char *dst = xmalloc(MR_REC_MAX + 600), *inner = xmalloc(MR_REC_MAX + 600);
	unsigned char *content, type;
	size_t pl;

	(void)state;
	for (size_t si = 0; si < 3; si++) {
		const struct suite *su = &suites[si];
		size_t kl = mr_rec_key_len(su->c);
		struct mr_rec tx, rx;
		struct iovec v = { inner, 300 };
		ssize_t n;
		size_t len;

		assert_int_equal(mr_rec_init(&tx, su->c, key32, kl, iv12, 12, 5), 0);
		assert_int_equal(mr_rec_init(&rx, su->c, key32, kl, iv12, 12, 5), 0);
		fill(inner, 300, 3);
		/* the hand-made record and ours are the same bytes */
		inner[300] = MR_REC_T_DATA;
		len = hand_record(su, 5, inner, 301, copy);
		n = mr_rec_seal(&tx, MR_REC_T_DATA, &v, 1, rec, MR_REC_MAX);
		assert_int_equal(n, (ssize_t)len);
		assert_memory_equal(rec, copy, len);

		/* a flipped bit anywhere: header, ciphertext, tag */
		{
			static const struct { size_t at; int want; } flips[] = {
				{ 0, -EPROTO }, { 1, -EPROTO }, { 2, -EPROTO }, { 3, -EMSGSIZE }, { 4, -EPROTO },
				{ 5, -EBADMSG }, { 150, -EBADMSG }, { 305, -EBADMSG }, { 321, -EBADMSG },
			};

			for (size_t f = 0; f < sizeof(flips) / sizeof(flips[0]); f++) {
				memcpy(copy, rec, len);
				copy[flips[f].at] ^= flips[f].at == 3 ? 0x80 : 0x01;
				memset(dst, 0xee, len);
				assert_int_equal(mr_rec_open_to(&rx, copy, len, dst, len, &pl, &type), flips[f].want);
				if (flips[f].want == -EBADMSG)
					for (size_t i = 0; i < len - 21; i++)
						assert_int_equal(dst[i], 0); /* no unauthenticated output */
				memcpy(copy, rec, len);
				copy[flips[f].at] ^= flips[f].at == 3 ? 0x80 : 0x01;
				assert_int_equal(mr_rec_open(&rx, copy, len, &content, &pl, &type), flips[f].want);
				assert_int_equal(rx.seq, 5);
			}
		}
		/* truncated, and extended */
		assert_int_equal(mr_rec_open(&rx, memcpy(copy, rec, len), len - 1, &content, &pl, &type), -EPROTO);
		assert_int_equal(mr_rec_open(&rx, memcpy(copy, rec, len), len + 1, &content, &pl, &type), -EPROTO);
		/* no room for content + type out of place */
		assert_int_equal(mr_rec_open_to(&rx, rec, len, dst, 300, &pl, &type), -ENOSPC);
		/* the right one opens, once: a replay or a reordered record fails */
		assert_int_equal(mr_rec_open(&rx, memcpy(copy, rec, len), len, &content, &pl, &type), 0);
		assert_int_equal(pl, 300);
		assert_int_equal(type, MR_REC_T_DATA);
		assert_int_equal(rx.seq, 6);
		assert_int_equal(mr_rec_open(&rx, memcpy(copy, rec, len), len, &content, &pl, &type), -EBADMSG);

		/* padding is stripped; all zeros (no type) is refused */
		memset(inner + 300, 0, 200);
		inner[300] = MR_REC_T_HANDSHAKE;
		len = hand_record(su, 6, inner, 500, rec);
		assert_int_equal(mr_rec_open(&rx, rec, len, &content, &pl, &type), 0);
		assert_int_equal(pl, 300);
		assert_int_equal(type, MR_REC_T_HANDSHAKE);
		memset(inner, 0, 64);
		len = hand_record(su, 7, inner, 64, rec);
		assert_int_equal(mr_rec_open(&rx, rec, len, &content, &pl, &type), -ENODATA);
		/* content of 16385 bytes (legal ciphertext size, illegal content) */
		fill(inner, MR_REC_MAX_PLAIN + 1, 5);
		inner[MR_REC_MAX_PLAIN + 1] = MR_REC_T_DATA;
		len = hand_record(su, 7, inner, MR_REC_MAX_PLAIN + 2, rec);
		assert_int_equal(mr_rec_open(&rx, rec, len, &content, &pl, &type), -EMSGSIZE);
		/* 16384 + padding up to the ciphertext limit is fine */
		memset(inner + MR_REC_MAX_PLAIN + 1, 0, 239);
		inner[MR_REC_MAX_PLAIN] = MR_REC_T_DATA;
		len = hand_record(su, 7, inner, MR_REC_MAX_PLAIN + 240, rec);
		assert_int_equal(len, MR_REC_MAX);
		assert_int_equal(mr_rec_open_to(&rx, rec, len, dst, MR_REC_MAX, &pl, &type), 0);
		assert_int_equal(pl, MR_REC_MAX_PLAIN);

		/* seal limits */
		v.iov_len = MR_REC_MAX_PLAIN + 1;
		assert_int_equal(mr_rec_seal(&tx, MR_REC_T_DATA, &v, 1, rec, MR_REC_MAX + 600), -EMSGSIZE);
		v.iov_len = 100;
		assert_int_equal(mr_rec_seal(&tx, MR_REC_T_DATA, &v, 1, rec, 100 + MR_REC_OVERHEAD - 1), -EMSGSIZE);
		v.iov_len = 0;
		assert_int_equal(mr_rec_seal(&tx, MR_REC_T_ALERT, &v, 1, rec, MR_REC_MAX), -EINVAL);
		assert_int_equal(mr_rec_seal(&tx, (enum mr_rec_type)20, &v, 1, rec, MR_REC_MAX), -EINVAL);
		mr_rec_free(&tx);
		mr_rec_free(&rx);
	}
	/* headers alone */
	{
		static const struct { unsigned char h[5]; ssize_t want; } hdrs[] = {
			{ { 0x17, 3, 3, 0x00, 0x11 }, 5 + 17 },
			{ { 0x17, 3, 3, 0x00, 0x10 }, -EPROTO },          /* no room for type + tag */
			{ { 0x17, 3, 3, 0x41, 0x00 }, 5 + 16640 },        /* 2^14 + 256 */
			{ { 0x17, 3, 3, 0x41, 0x01 }, -EMSGSIZE },
			{ { 0x17, 3, 3, 0xff, 0xff }, -EMSGSIZE },
			{ { 0x16, 3, 3, 0x00, 0x20 }, -EPROTO },          /* plaintext handshake */
			{ { 0x15, 3, 3, 0x00, 0x02 }, -EPROTO },          /* plaintext alert */
			{ { 0x17, 3, 1, 0x00, 0x20 }, -EPROTO },
		};

		for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++)
			assert_int_equal(mr_rec_peek(hdrs[i].h, 5), hdrs[i].want);
		assert_int_equal(mr_rec_peek(hdrs[0].h, 4), 0);
	}
	/* init */
	{
		struct mr_rec r;

		assert_int_equal(mr_rec_init(&r, MR_REC_AES_128_GCM, key32, 32, iv12, 12, 0), -EINVAL);
		assert_int_equal(mr_rec_init(&r, MR_REC_AES_128_GCM, key32, 16, iv12, 8, 0), -EINVAL);
		assert_int_equal(mr_rec_init(&r, (enum mr_rec_cipher)9, key32, 16, iv12, 12, 0), -ENOTSUP);
		mr_rec_free(&r);
	}
	free(rec);
	free(copy);
	free(dst);
	free(inner);
}

/* The usage limit: refused before the key protects one record too many. */
static void test_limit(void **state)
{
	unsigned char in[10] = "0123456789", rec[64], *content, type;
	struct iovec v = { in, sizeof(in) };
	struct mr_rec tx, rx;
	size_t pl;
	ssize_t n;

	(void)state;
	assert_int_equal(mr_rec_init(&tx, MR_REC_AES_128_GCM, key32, 16, iv12, 12, 0), 0);
	assert_int_equal(mr_rec_init(&rx, MR_REC_AES_128_GCM, key32, 16, iv12, 12, 0), 0);
	assert_int_equal(tx.limit, MR_REC_LIMIT_DEFAULT);
	assert_true(MR_REC_LIMIT_DEFAULT < UINT64_C(23726566)); /* 2^24.5 full records, RFC 8446 §5.5 */
	mr_rec_set_limit(&tx, 2);
	mr_rec_set_limit(&rx, 2);
	for (int i = 0; i < 2; i++) {
		n = mr_rec_seal(&tx, MR_REC_T_DATA, &v, 1, rec, sizeof(rec));
		assert_true(n > 0);
		assert_int_equal(mr_rec_open(&rx, rec, (size_t)n, &content, &pl, &type), 0);
	}
	assert_int_equal(mr_rec_seal(&tx, MR_REC_T_DATA, &v, 1, rec, sizeof(rec)), -EKEYEXPIRED);
	assert_int_equal(tx.seq, 2);
	/* a receiver refuses the third record too (made with a fresh sealer at seq 2) */
	mr_rec_free(&tx);
	assert_int_equal(mr_rec_init(&tx, MR_REC_AES_128_GCM, key32, 16, iv12, 12, 2), 0);
	n = mr_rec_seal(&tx, MR_REC_T_DATA, &v, 1, rec, sizeof(rec));
	assert_true(n > 0);
	assert_int_equal(mr_rec_open(&rx, rec, (size_t)n, &content, &pl, &type), -EKEYEXPIRED);
	mr_rec_free(&tx);
	mr_rec_free(&rx);
}

/* ---- mr_tls "in-place" against a plain GnuTLS server ---- */

struct hs {
	struct mr_tls_cfg *cfg;
	struct mr_tls *t;
	int fd, r;
	enum mr_tls_fail fail;
	char err[512];
};

static void *hs_run(void *arg)
{
	struct hs *h = arg;

	h->r = mr_tls_handshake(&h->t, h->cfg, h->fd, NULL, 10000, &h->fail, h->err, sizeof(h->err));
	return NULL;
}

/* mr_tls client (ours, x509) against a GnuTLS server with ALPN; <prio> picks the suite. */
static void mixed_pair(struct hs *c, struct raw *srv, const char *prio)
{
	char err[512];
	pthread_t th;
	int fds[2];

	memset(c, 0, sizeof(*c));
	test_sock_pair(fds, false);
	assert_int_equal(mr_tls_cfg_x509(&c->cfg, d_cli, false, err, sizeof(err)), 0);
	c->fd = fds[0];
	raw_init(srv, true, fds[1], prio, true);
	assert_int_equal(pthread_create(&th, NULL, hs_run, c), 0);
	raw_hs(srv);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(srv->r, 0);
	if (c->r)
		fail_msg("handshake: %s", c->err);
}

static void hs_done(struct hs *h)
{
	mr_tls_free(h->t);
	mr_tls_cfg_free(h->cfg);
	if (h->fd >= 0)
		close(h->fd);
	memset(h, 0, sizeof(*h));
	h->fd = -1;
}

struct sender {
	struct mr_tls *t;
	const unsigned char *p;
	size_t len;
	ssize_t r;
};

static void *send_run(void *arg)
{
	struct sender *s = arg;

	s->r = mr_tls_send(s->t, s->p, s->len);
	return NULL;
}

static void set_rcvtimeo(int fd, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

static void test_inplace_vs_gnutls(void **state)
{
	const size_t big = (1 << 20) + 16 + 5;
	unsigned char *out = xmalloc(big), *in = xmalloc(big);

	(void)state;
	unsetenv("MIGRELAY_TLS_RECORDS");
	for (size_t si = 0; si < 3; si++) {
		struct hs c;
		struct raw srv;
		struct sender snd;
		pthread_t th;
		ssize_t n;

		mixed_pair(&c, &srv, suites[si].prio);
		assert_string_equal(mr_tls_engine(c.t), "in-place");
		assert_true(strlen(mr_tls_ktls_error(c.t)) > 0); /* socketpair: never kernel TLS */

		/* ours -> GnuTLS: a frame header and a 1 MiB payload in one call, sent while GnuTLS reads */
		fill(out, big, (unsigned)si);
		snd = (struct sender){ c.t, out, big, 0 };
		assert_int_equal(pthread_create(&th, NULL, send_run, &snd), 0);
		gnutls_read_all(srv.s, in, big);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(snd.r, (ssize_t)big);
		assert_memory_equal(in, out, big);

		/* GnuTLS -> ours: a 16-byte header (opened in place), then the rest (opened into our buffer) */
		fill(out, 70000, 50 + (unsigned)si);
		gnutls_write_all(srv.s, out, 70000);
		assert_int_equal(mr_tls_recv_all(c.t, in, 16), 16);
		assert_int_equal(mr_tls_recv_all(c.t, in + 16, 70000 - 16), 70000 - 16);
		assert_memory_equal(in, out, 70000);

		/* a timeout with half a record buffered, then the rest */
		set_rcvtimeo(c.fd, 100);
		assert_int_equal(mr_tls_recv(c.t, in, 10), -EAGAIN);
		{
			/* take GnuTLS's record off the wire and feed it in two halves */
			int sv[2];
			unsigned char rec[200];
			size_t len;

			assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
			gnutls_transport_set_int(srv.s, sv[0]);
			gnutls_write_all(srv.s, (const unsigned char *)"split record", 12);
			len = read_record(sv[1], rec);
			write_all(srv.fd, rec, 9);
			assert_int_equal(mr_tls_recv(c.t, in, 100), -EAGAIN);
			write_all(srv.fd, rec + 9, len - 9);
			assert_int_equal(mr_tls_recv_all(c.t, in, 12), 12);
			assert_memory_equal(in, "split record", 12);
			gnutls_transport_set_int(srv.s, srv.fd);
			close(sv[0]);
			close(sv[1]);
		}
		set_rcvtimeo(c.fd, 0);

		/* close_notify both ways */
		assert_int_equal(gnutls_bye(srv.s, GNUTLS_SHUT_WR), 0);
		assert_int_equal(mr_tls_recv(c.t, in, 100), 0);
		assert_int_equal(mr_tls_recv(c.t, in, 100), 0);
		mr_tls_bye(c.t);
		n = gnutls_record_recv(srv.s, in, 100);
		assert_int_equal(n, 0);
		hs_done(&c);
		raw_free(&srv);
	}
	free(out);
	free(in);
}

static void test_inplace_alerts(void **state)
{
	unsigned char buf[64];
	struct hs c;
	struct raw srv;

	(void)state;
	/* a fatal alert names itself */
	mixed_pair(&c, &srv, suites[0].prio);
	assert_int_equal(gnutls_alert_send(srv.s, GNUTLS_AL_FATAL, GNUTLS_A_UNKNOWN_CA), 0);
	assert_int_equal(mr_tls_recv(c.t, buf, sizeof(buf)), -EIO);
	assert_non_null(strstr(mr_tls_last_error(c.t), "unknown CA"));
	hs_done(&c);
	raw_free(&srv);

	/* a KeyUpdate is refused with a clear reason */
	mixed_pair(&c, &srv, suites[1].prio);
	gnutls_write_all(srv.s, (const unsigned char *)"before", 6);
	assert_int_equal(gnutls_session_key_update(srv.s, 0), 0);
	assert_int_equal(mr_tls_recv_all(c.t, buf, 6), 6);
	assert_int_equal(mr_tls_recv(c.t, buf, sizeof(buf)), -EIO);
	assert_non_null(strstr(mr_tls_last_error(c.t), "KeyUpdate"));
	hs_done(&c);
	raw_free(&srv);

	/* an unclean close, also in the middle of a record */
	mixed_pair(&c, &srv, suites[2].prio);
	shutdown(srv.fd, SHUT_WR);
	assert_int_equal(mr_tls_recv(c.t, buf, sizeof(buf)), -ECONNRESET);
	hs_done(&c);
	raw_free(&srv);
	mixed_pair(&c, &srv, suites[2].prio);
	write_all(srv.fd, "\x17\x03\x03\x00\x40" "abc", 8);
	shutdown(srv.fd, SHUT_WR);
	assert_int_equal(mr_tls_recv_all(c.t, buf, 10), -ECONNRESET);
	assert_non_null(strstr(mr_tls_last_error(c.t), "middle of a TLS record"));
	hs_done(&c);
	raw_free(&srv);

	/* garbage instead of a record */
	mixed_pair(&c, &srv, suites[0].prio);
	write_all(srv.fd, "GET / HTTP/1.1\r\n", 16);
	assert_int_equal(mr_tls_recv(c.t, buf, sizeof(buf)), -EIO);
	assert_non_null(strstr(mr_tls_last_error(c.t), "bad header"));
	hs_done(&c);
	raw_free(&srv);
}

/* ---- both ends mr_tls; the plaintext switch ---- */

static void ours_pair(struct hs *c, struct hs *s, bool tcp)
{
	char err[512];
	pthread_t th;
	int fds[2];

	memset(c, 0, sizeof(*c));
	memset(s, 0, sizeof(*s));
	test_sock_pair(fds, tcp);
	assert_int_equal(mr_tls_cfg_psk(&c->cfg, keys_file, false, "alice", err, sizeof(err)), 0);
	assert_int_equal(mr_tls_cfg_psk(&s->cfg, keys_file, true, NULL, err, sizeof(err)), 0);
	s->fd = fds[0];
	c->fd = fds[1];
	assert_int_equal(pthread_create(&th, NULL, hs_run, s), 0);
	hs_run(c);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (c->r || s->r)
		fail_msg("handshake: %s / %s", c->err, s->err);
}

static void plaintext_switch(const char *engine)
{
	unsigned char buf[64];
	struct hs c, s;

	ours_pair(&c, &s, false);
	assert_string_equal(mr_tls_engine(c.t), engine);
	assert_string_equal(mr_tls_engine(s.t), engine);
	/* "HELLO" and "WELCOME" inside TLS */
	assert_int_equal(mr_tls_send(c.t, "HELLO", 5), 5);
	assert_int_equal(mr_tls_recv_all(s.t, buf, 5), 5);
	/* the server's last record and its first raw bytes arrive together */
	assert_int_equal(mr_tls_send(s.t, "WELCOME", 7), 7);
	assert_int_equal(mr_tls_set_plaintext(s.t), 0);
	assert_int_equal(mr_tls_send(s.t, "raw-from-server", 15), 15);
	usleep(20000);
	assert_int_equal(mr_tls_recv_all(c.t, buf, 7), 7);
	assert_memory_equal(buf, "WELCOME", 7);
	assert_int_equal(mr_tls_set_plaintext(c.t), 0);
	assert_string_equal(mr_tls_engine(c.t), "plaintext");
	assert_int_equal(mr_tls_recv_all(c.t, buf, 15), 15);
	assert_memory_equal(buf, "raw-from-server", 15);
	/* raw on the wire: the server reads the socket itself */
	assert_int_equal(mr_tls_send(c.t, "raw-from-client", 15), 15);
	assert_int_equal(recv(s.fd, buf, 15, MSG_WAITALL), 15);
	assert_memory_equal(buf, "raw-from-client", 15);
	assert_int_equal(mr_tls_send(c.t, "more", 4), 4);
	assert_int_equal(mr_tls_recv_all(s.t, buf, 4), 4);
	assert_memory_equal(buf, "more", 4);
	mr_tls_bye(c.t); /* plaintext: a FIN, no close_notify record */
	assert_int_equal(mr_tls_recv(s.t, buf, sizeof(buf)), 0);
	hs_done(&c);
	hs_done(&s);
}

static void test_plaintext_inplace(void **state)
{
	(void)state;
	unsetenv("MIGRELAY_TLS_RECORDS");
	plaintext_switch("in-place");
}

static void test_plaintext_gnutls(void **state)
{
	(void)state;
	setenv("MIGRELAY_TLS_RECORDS", "gnutls", 1);
	plaintext_switch("gnutls");
	unsetenv("MIGRELAY_TLS_RECORDS");
}

/* The record limit through mr_tls: the sender refuses, says why, and sent nothing more. */
static void test_tls_record_limit(void **state)
{
	unsigned char buf[64];
	struct hs c, s;

	(void)state;
	unsetenv("MIGRELAY_TLS_RECORDS");
	setenv("MIGRELAY_TLS_RECORD_LIMIT", "3", 1);
	ours_pair(&c, &s, false);
	unsetenv("MIGRELAY_TLS_RECORD_LIMIT");
	assert_string_equal(mr_tls_engine(c.t), "in-place");
	for (int i = 0; i < 3; i++) {
		assert_int_equal(mr_tls_send(c.t, "abc", 3), 3);
		assert_int_equal(mr_tls_recv_all(s.t, buf, 3), 3);
	}
	assert_int_equal(mr_tls_send(c.t, "abc", 3), -EKEYEXPIRED);
	assert_non_null(strstr(mr_tls_last_error(c.t), "new handshake"));
	/* the other direction counts its own records */
	assert_int_equal(mr_tls_send(s.t, "xyz", 3), 3);
	assert_int_equal(mr_tls_recv_all(c.t, buf, 3), 3);
	hs_done(&c);
	hs_done(&s);
}

/*
 * Over TCP, kernel TLS is tried: on a kernel without it the session falls
 * back to in-place records and says why; with it, the session is "ktls".
 * Either way data and close_notify work both ways.
 */
static void test_tcp_ktls_or_fallback(void **state)
{
	unsigned char *out = xmalloc(300000), *in = xmalloc(300000);
	struct sender snd;
	struct hs c, s;
	pthread_t th;

	(void)state;
	unsetenv("MIGRELAY_TLS_RECORDS");
	unsetenv("MIGRELAY_KTLS");
	ours_pair(&c, &s, true);
	if (!strcmp(mr_tls_engine(c.t), "in-place")) {
		print_message("kernel TLS not used: %s\n", mr_tls_ktls_error(c.t));
		assert_non_null(strstr(mr_tls_ktls_error(c.t), "kernel TLS"));
	} else {
		assert_string_equal(mr_tls_engine(c.t), "ktls");
	}
	fill(out, 300000, 1);
	snd = (struct sender){ c.t, out, 300000, 0 };
	assert_int_equal(pthread_create(&th, NULL, send_run, &snd), 0);
	assert_int_equal(mr_tls_recv_all(s.t, in, 300000), 300000);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_memory_equal(in, out, 300000);
	assert_int_equal(mr_tls_send(s.t, "pong", 4), 4);
	assert_int_equal(mr_tls_recv_all(c.t, in, 4), 4);
	mr_tls_bye(s.t);
	assert_int_equal(mr_tls_recv(c.t, in, 10), 0);
	hs_done(&c);
	hs_done(&s);

	setenv("MIGRELAY_KTLS", "0", 1);
	ours_pair(&c, &s, true);
	assert_string_equal(mr_tls_engine(c.t), "in-place");
	assert_non_null(strstr(mr_tls_ktls_error(c.t), "MIGRELAY_KTLS=0"));
	hs_done(&c);
	hs_done(&s);
	unsetenv("MIGRELAY_KTLS");
	free(out);
	free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kat_aes128),
		cmocka_unit_test(test_kat_aes256),
		cmocka_unit_test(test_kat_chacha),
		cmocka_unit_test(test_reject),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_inplace_vs_gnutls),
		cmocka_unit_test(test_inplace_alerts),
		cmocka_unit_test(test_plaintext_inplace),
		cmocka_unit_test(test_plaintext_gnutls),
		cmocka_unit_test(test_tls_record_limit),
		cmocka_unit_test(test_tcp_ktls_or_fallback),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
