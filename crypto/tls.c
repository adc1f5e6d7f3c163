/* SPDX-License-Identifier: MIT */
/*
 * The TLS control plane: TLS 1.3 sessions over GnuTLS for the handshake of
 * every connection, with our own verify callback, and the choice of the
 * record engine that carries the data after it. Credentials are in
 * tls_cred.c; failures in the user's words in tls_alert.c.
 *
 * Certificates are checked by our own verify callback during the
 * handshake, so that a failure can be named precisely and answered with
 * the matching alert; GnuTLS itself sends no alert when a handshake fails,
 * so we send one after it returns.
 *
 * After the handshake the data path leaves GnuTLS's record layer: the
 * traffic keys go to kernel TLS (tls_ktls.c) or to the in-place engine
 * (tls_inplace.c, with crypto/record.c). GnuTLS's record layer
 * (tls_gnutls.c) remains the fallback. tls_records_start chooses, once;
 * from then on the session's data goes through t->conn (stream/conn.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "msg.h"
#include "tls_int.h"


/*
 * Copies at most TLS_SHOW bytes of peer-supplied <p> into <dst> with
 * anything outside printable ASCII (and '"' and '\\') shown as \xNN, so a
 * peer cannot forge log lines or hide text in messages.
 */
void tls_printable(char *dst, size_t dstlen, const void *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = p;
	size_t o = 0, i;

	if (dstlen == 0)
		return;
	for (i = 0; i < n && i < TLS_SHOW; i++) {
		unsigned char c = s[i];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			if (o + 1 >= dstlen)
				break;
			dst[o++] = (char)c;
		} else {
			if (o + 4 >= dstlen)
				break;
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	if (i < n && o + 3 < dstlen) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
}

const char *tls_peer_role(const struct mr_tls *t)
{
	return t->cfg->server ? "client" : "server";
}

static int tls_records_start(struct mr_tls *t);

/* ---- handshake callbacks ---- */

static void tls_cb_fail(struct mr_tls *t, enum mr_tls_fail f, int alert, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void tls_cb_fail(struct mr_tls *t, enum mr_tls_fail f, int alert, const char *fmt, ...)
{
	va_list ap;

	if (t->cb_fail != MR_TLS_OK)
		return; /* keep the first, most specific reason */
	t->cb_fail = f;
	t->cb_alert = alert;
	va_start(ap, fmt);
	vsnprintf(t->cb_msg, sizeof(t->cb_msg), fmt, ap);
	va_end(ap);
}

/* Subject DN of <crt> as RFC 4514 text, malloc'd; NULL on failure or if absurd. */
static char *tls_crt_dn(gnutls_x509_crt_t crt)
{
	gnutls_datum_t dn = { NULL, 0 };
	char *s = NULL;

	if (gnutls_x509_crt_get_dn3(crt, &dn, 0) < 0)
		return NULL;
	if (dn.size > 0 && dn.size <= TLS_MAX_DN && !memchr(dn.data, '\0', dn.size)) {
		s = malloc(dn.size + 1);
		if (s) {
			memcpy(s, dn.data, dn.size);
			s[dn.size] = '\0';
		}
	}
	gnutls_free(dn.data);
	return s;
}

static void tls_fmt_time(char *buf, size_t len, time_t when)
{
	struct tm tm;

	if (when == (time_t)-1 || !gmtime_r(&when, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M UTC", &tm))
		snprintf(buf, len, "an unknown date");
}

/*
 * Verifies the peer's chain against our CA, its key purpose and, on a
 * client with a peer name, the DNS/IP SAN. Returns 0 to go on, -1 to stop
 * the handshake with t->cb_fail set. Handshake thread.
 */
static int tls_verify_cb(gnutls_session_t s)
{
	struct mr_tls *t = gnutls_session_get_ptr(s);
	const char *peer = tls_peer_role(t);
	const char *purpose_name = t->cfg->server ? "client" : "server";
	gnutls_typed_vdata_st data[2];
	const gnutls_datum_t *certs;
	gnutls_x509_crt_t crt = NULL;
	unsigned int ncerts = 0, status = 0, n = 0;
	char shown[TLS_SHOW + 8] = "?", when[40];
	gnutls_datum_t why = { NULL, 0 };
	char *dn = NULL;
	int r, ret = -1;

	certs = gnutls_certificate_get_peers(s, &ncerts);
	if (!certs || ncerts == 0) {
		tls_cb_fail(t, MR_TLS_F_NO_CERT, GNUTLS_A_CERTIFICATE_REQUIRED,
			    "the %s sent no certificate (give it %s-cert.pem and %s-key.pem from `migrelay pki issue %s`)",
			    peer, purpose_name, purpose_name, purpose_name);
		return -1;
	}
	if (gnutls_x509_crt_init(&crt) < 0) {
		tls_cb_fail(t, MR_TLS_F_INTERNAL, GNUTLS_A_INTERNAL_ERROR, "out of memory");
		return -1;
	}
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) < 0) {
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE, "the %s sent a certificate we cannot parse",
			    peer);
		goto out;
	}
	dn = tls_crt_dn(crt);
	if (dn)
		tls_printable(shown, sizeof(shown), dn, strlen(dn));

	data[n].type = GNUTLS_DT_KEY_PURPOSE_OID;
	data[n].data = (unsigned char *)(t->cfg->server ? GNUTLS_KP_TLS_WWW_CLIENT : GNUTLS_KP_TLS_WWW_SERVER);
	data[n].size = 0;
	n++;
	if (!t->cfg->server && t->peer_name) {
		data[n].type = GNUTLS_DT_DNS_HOSTNAME;
		data[n].data = (unsigned char *)t->peer_name;
		data[n].size = 0;
		n++;
	}
	r = gnutls_certificate_verify_peers(s, data, n, &status);
	if (r < 0) {
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE,
			    "cannot verify the %s's certificate \"%s\": %s", peer, shown, gnutls_strerror(r));
		goto out;
	}
	if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA)) {
		tls_cb_fail(t, MR_TLS_F_UNKNOWN_CA, GNUTLS_A_UNKNOWN_CA,
			    "the %s's certificate \"%s\" is not signed by the CA in %s (unknown CA: issue the %s's certificate with that CA, or give this side the CA that issued it)",
			    peer, shown, t->cfg->ca_path, peer);
		goto out;
	}
	if (status & GNUTLS_CERT_REVOKED) {
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_CERTIFICATE_REVOKED,
			    "the %s's certificate \"%s\" is revoked by the CRL in %s (issue the %s a new certificate, or take it off the CRL)",
			    peer, shown, t->cfg->crl_path ? t->cfg->crl_path : "(none)", peer);
		goto out;
	}
	if (status & GNUTLS_CERT_EXPIRED) {
		tls_fmt_time(when, sizeof(when), gnutls_x509_crt_get_expiration_time(crt));
		tls_cb_fail(t, MR_TLS_F_EXPIRED, GNUTLS_A_CERTIFICATE_EXPIRED,
			    "the %s's certificate \"%s\" expired on %s (issue a new one with `migrelay pki issue %s`, and check both hosts' clocks)",
			    peer, shown, when, purpose_name);
		goto out;
	}
	if (status & GNUTLS_CERT_NOT_ACTIVATED) {
		tls_fmt_time(when, sizeof(when), gnutls_x509_crt_get_activation_time(crt));
		tls_cb_fail(t, MR_TLS_F_EXPIRED, GNUTLS_A_CERTIFICATE_EXPIRED,
			    "the %s's certificate \"%s\" is not valid before %s (check both hosts' clocks)", peer, shown,
			    when);
		goto out;
	}
	if (status & GNUTLS_CERT_UNEXPECTED_OWNER) {
		unsigned char addr[16];
		bool ip = inet_pton(AF_INET, t->peer_name, addr) == 1 || inet_pton(AF_INET6, t->peer_name, addr) == 1;
		char name[TLS_SHOW + 8];

		tls_printable(name, sizeof(name), t->peer_name, strlen(t->peer_name));
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE,
			    "the server's certificate \"%s\" is not valid for \"%s\" (connect to a name or address among its subject alternative names, or issue it again with %s %s)",
			    shown, name, ip ? "--ip" : "--dns", name);
		goto out;
	}
	if (status & GNUTLS_CERT_PURPOSE_MISMATCH) {
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE,
			    "the %s's certificate \"%s\" is not meant for a TLS %s (issue one with `migrelay pki issue %s`)",
			    peer, shown, purpose_name, purpose_name);
		goto out;
	}
	if (status) {
		if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) < 0)
			why.data = NULL;
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE, "the %s's certificate \"%s\" is not acceptable: %s",
			    peer, shown, why.data ? (const char *)why.data : "verification failed");
		gnutls_free(why.data);
		goto out;
	}
	if (!dn) {
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE,
			    "the %s's certificate has no usable subject name", peer);
		goto out;
	}
	free(t->identity);
	t->identity = dn;
	dn = NULL;
	ret = 0;
out:
	free(dn);
	gnutls_x509_crt_deinit(crt);
	return ret;
}

/*
 * PSK server: looks up the identity the client offered. An unknown one
 * gets a random key from GnuTLS (return 1), so that the client cannot
 * tell it from a wrong key; we remember which it was for our own message.
 */
int tls_psk_server_cb(gnutls_session_t s, const gnutls_datum_t *user, gnutls_datum_t *key)
{
	struct mr_tls *t = gnutls_session_get_ptr(s);
	const struct psk_entry *e = NULL;
	char id[PSK_MAX_IDENTITY + 1];

	t->psk_seen = true;
	t->psk_known = false;
	tls_printable(t->psk_id, sizeof(t->psk_id), user->data, user->size);
	if (user->size > 0 && user->size <= PSK_MAX_IDENTITY && !memchr(user->data, '\0', user->size)) {
		memcpy(id, user->data, user->size);
		id[user->size] = '\0';
		e = psk_find(t->cfg->keys, id);
	}
	if (!e)
		return 1;
	key->data = gnutls_malloc(e->key_len);
	if (!key->data)
		return -1;
	memcpy(key->data, e->key, e->key_len);
	key->size = (unsigned int)e->key_len;
	t->psk_known = true;
	free(t->identity);
	t->identity = strdup(id);
	return t->identity ? 0 : -1;
}

static bool tls_alpn_ok(gnutls_session_t s)
{
	gnutls_datum_t p = { NULL, 0 };

	return gnutls_alpn_get_selected_protocol(s, &p) == 0 && p.size == strlen(WIRE_ALPN) &&
	       !memcmp(p.data, WIRE_ALPN, p.size);
}

/*
 * Server: after the ClientHello is parsed, refuse a client that did not
 * offer our ALPN (GnuTLS only refuses one that offered others).
 */
static int tls_hello_hook(gnutls_session_t s, unsigned int htype, unsigned int when, unsigned int incoming,
			  const gnutls_datum_t *msg)
{
	struct mr_tls *t = gnutls_session_get_ptr(s);

	if (htype != GNUTLS_HANDSHAKE_CLIENT_HELLO || when != GNUTLS_HOOK_POST || !incoming)
		return 0;
	if (tls_alpn_ok(s))
		return 0;
	tls_cb_fail(t, MR_TLS_F_PROTOCOL, GNUTLS_A_NO_APPLICATION_PROTOCOL,
		    "the client did not offer the ALPN protocol \"%s\" (it is not a migrelay, or a migrelay of another version)",
		    WIRE_ALPN);
	return GNUTLS_E_NO_APPLICATION_PROTOCOL;
}


/* Best effort: a fatal alert must not hang us on a peer that stopped reading. */
static void tls_send_alert(struct mr_tls *t, int alert)
{
	int r, tries = 3;

	if (alert < 0)
		return;
	do
		r = gnutls_alert_send(t->s, GNUTLS_AL_FATAL, (gnutls_alert_description_t)alert);
	while ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && --tries > 0);
}

/* Checks what a successful handshake agreed on. Returns 0 or sets t->cb_fail. */
static int tls_check_result(struct mr_tls *t)
{
	const char *peer = tls_peer_role(t);
	gnutls_kx_algorithm_t kx;

	if (gnutls_protocol_get_version(t->s) != GNUTLS_TLS1_3) {
		tls_cb_fail(t, MR_TLS_F_PROTOCOL, GNUTLS_A_PROTOCOL_VERSION,
			    "the %s negotiated a TLS version other than 1.3", peer);
		return -1;
	}
	if (!tls_alpn_ok(t->s)) {
		tls_cb_fail(t, MR_TLS_F_PROTOCOL, GNUTLS_A_NO_APPLICATION_PROTOCOL,
			    "the %s did not agree on the ALPN protocol \"%s\" (it is not a migrelay, or a migrelay of another version)",
			    peer, WIRE_ALPN);
		return -1;
	}
	if (t->cfg->psk) {
		kx = gnutls_kx_get(t->s);
		if (kx != GNUTLS_KX_ECDHE_PSK && kx != GNUTLS_KX_DHE_PSK) {
			tls_cb_fail(t, MR_TLS_F_PROTOCOL, GNUTLS_A_INSUFFICIENT_SECURITY,
				    "the %s negotiated a PSK key exchange without (EC)DHE (no forward secrecy)", peer);
			return -1;
		}
		if (!t->identity && !t->cfg->server)
			t->identity = strdup(t->cfg->psk_identity);
	} else if (gnutls_certificate_type_get(t->s) != GNUTLS_CRT_X509) {
		tls_cb_fail(t, MR_TLS_F_PROTOCOL, GNUTLS_A_UNSUPPORTED_CERTIFICATE,
			    "the %s did not authenticate with an X.509 certificate", peer);
		return -1;
	}
	if (!t->identity) {
		/* the verify callback or the PSK lookup sets it; no identity means neither ran */
		tls_cb_fail(t, t->cfg->psk ? MR_TLS_F_PSK : MR_TLS_F_NO_CERT, GNUTLS_A_HANDSHAKE_FAILURE,
			    "the %s did not authenticate itself", peer);
		return -1;
	}
	return 0;
}

void mr_tls_free(struct mr_tls *t)
{
	if (!t)
		return;
	mr_conn_free(t->conn); /* the engine, while the session it reads through is still there */
	if (t->s)
		gnutls_deinit(t->s);
	free(t->identity);
	free(t->peer_name);
	free(t->rbuf);
	free(t->sbuf);
	free(t);
}

int mr_tls_handshake(struct mr_tls **out, struct mr_tls_cfg *cfg, int fd, const char *peer_name, int timeout_ms,
		     enum mr_tls_fail *fail, char *err, size_t errlen)
{
	static const gnutls_datum_t alpn = { (unsigned char *)WIRE_ALPN, sizeof(WIRE_ALPN) - 1 };
	enum mr_tls_fail f = MR_TLS_F_INTERNAL;
	struct mr_tls *t = NULL;
	unsigned int flags;
	int r, gr, alert;

	if (err && errlen)
		err[0] = '\0';
	if (fail)
		*fail = MR_TLS_F_INTERNAL;
	if (!out || !cfg || fd < 0 || !fail) {
		crypto_msg(err, errlen, "invalid TLS handshake arguments");
		return -EINVAL;
	}
	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t || (peer_name && !cfg->server && !(t->peer_name = strdup(peer_name)))) {
		crypto_msg(err, errlen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	t->cfg = cfg;
	t->fd = fd;
	t->cb_alert = -1;
	t->capturing = true;
	t->timeout_ms = timeout_ms > 0 ? timeout_ms : TLS_DEFAULT_TIMEOUT_MS;

	flags = (cfg->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS;
	gr = gnutls_init(&t->s, flags);
	if (gr < 0) {
		t->s = NULL;
		crypto_msg(err, errlen, "cannot start a TLS session: %s", gnutls_strerror(gr));
		r = -ENOMEM;
		goto out;
	}
	gnutls_session_set_ptr(t->s, t);
	if ((gr = gnutls_priority_set(t->s, cfg->prio)) < 0 ||
	    (gr = gnutls_alpn_set_protocols(t->s, &alpn, 1, GNUTLS_ALPN_MANDATORY)) < 0)
		goto setup_failed;
	if (cfg->psk)
		gr = cfg->server ? gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, cfg->psk_srv)
				 : gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, cfg->psk_cli);
	else
		gr = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, cfg->x509);
	if (gr < 0)
		goto setup_failed;
	if (!cfg->psk) {
		gnutls_session_set_verify_function(t->s, tls_verify_cb);
		if (cfg->server) {
			gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
			/*
			 * Do not name our CA in the certificate request: a client
			 * then sends the certificate it has even from another CA,
			 * and we can say "unknown CA" instead of "no certificate".
			 */
			gnutls_certificate_send_x509_rdn_sequence(t->s, 1);
		}
	}
	if (cfg->server)
		gnutls_handshake_set_hook_function(t->s, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_POST,
						   tls_hello_hook);
	tls_gnutls_transport(t);
	gnutls_handshake_set_timeout(t->s, (unsigned int)t->timeout_ms);

	do
		gr = gnutls_handshake(t->s);
	while (gr < 0 && !gnutls_error_is_fatal(gr));
	t->capturing = false;
	if (gr == 0 && tls_check_result(t) < 0)
		gr = GNUTLS_E_CERTIFICATE_ERROR; /* t->cb_fail says why */
	if (gr < 0) {
		f = tls_classify(t, gr, &alert, err, errlen);
		tls_send_alert(t, alert);
		r = tls_fail_errno(f);
		goto out;
	}
	free(t->peer_name);
	t->peer_name = NULL;
	if ((r = tls_records_start(t)) < 0) {
		crypto_msg(err, errlen, "cannot set up the TLS record layer: %s", strerror(-r));
		goto out;
	}
	*fail = MR_TLS_OK;
	*out = t;
	t = NULL;
	return 0;

setup_failed:
	crypto_msg(err, errlen, "cannot set up the TLS session: %s", gnutls_strerror(gr));
	r = -EIO;
out:
	*fail = f;
	mr_tls_free(t);
	return r;
}

const char *mr_tls_peer_identity(const struct mr_tls *t)
{
	return t && t->identity ? t->identity : "";
}

static enum mr_rec_cipher tls_rec_cipher(gnutls_cipher_algorithm_t c)
{
	switch (c) {
	case GNUTLS_CIPHER_AES_128_GCM:
		return MR_REC_AES_128_GCM;
	case GNUTLS_CIPHER_AES_256_GCM:
		return MR_REC_AES_256_GCM;
	case GNUTLS_CIPHER_CHACHA20_POLY1305:
		return MR_REC_CHACHA20_POLY1305;
	default:
		return 0;
	}
}

/*
 * Handshake thread, once, right after a successful handshake: picks the
 * record engine and makes it t->conn. GnuTLS reads a record's header and
 * then exactly its body through our pull, so after the handshake no byte
 * of the peer's first records is inside GnuTLS, and rbuf is still empty.
 * Anything unusual (a record GnuTLS already holds, a suite we do not know,
 * keys we cannot get, no memory for our buffers) keeps GnuTLS's record
 * layer. Returns 0, or -ENOMEM/-EIO when no engine can be made.
 */
static int tls_records_start(struct mr_tls *t)
{
	const char *e = getenv("MIGRELAY_TLS_RECORDS");
	const char *kt = getenv("MIGRELAY_KTLS");
	struct tls_keys k;
	gnutls_datum_t mac;
	bool tx = false, rx = false;
	int r;

	if (e && !strcmp(e, "gnutls")) {
		snprintf(t->ktls_why, sizeof(t->ktls_why), "kernel TLS not tried: MIGRELAY_TLS_RECORDS=gnutls");
		return tls_gnutls_conn(t, &t->conn);
	}
	k.cipher = tls_rec_cipher(gnutls_cipher_get(t->s));
	if (!k.cipher || gnutls_record_check_pending(t->s) > 0 || t->rlen != 0) {
		snprintf(t->ktls_why, sizeof(t->ktls_why), "kernel TLS not tried: %s",
			 !k.cipher ? "cipher suite not supported" : "records already buffered");
		return tls_gnutls_conn(t, &t->conn);
	}
	/* 0: our sending (write) state, 1: our receiving (read) state */
	for (int d = 0; d < 2; d++) {
		if (gnutls_record_get_state(t->s, d, &mac, &k.iv[d], &k.key[d], k.seq[d]) < 0 ||
		    k.iv[d].size != MR_REC_IV || k.key[d].size != mr_rec_key_len(k.cipher)) {
			snprintf(t->ktls_why, sizeof(t->ktls_why),
				 "kernel TLS not tried: GnuTLS does not give the record keys");
			return tls_gnutls_conn(t, &t->conn);
		}
	}
	if (kt && !strcmp(kt, "0"))
		snprintf(t->ktls_why, sizeof(t->ktls_why), "kernel TLS disabled by MIGRELAY_KTLS=0");
	else
		tls_ktls_start(t, &k, &tx, &rx);
	if (tx && rx)
		return tls_rec_conn(t, &tls_ktls_ops, &k, true, true, &t->conn);
	if (tx) /* the kernel seals our records already: no other engine may; ours opens the peer's */
		return tls_rec_conn(t, &tls_ktls_tx_ops, &k, true, false, &t->conn);
	r = tls_rec_conn(t, &tls_inplace_ops, &k, false, false, &t->conn);
	if (r < 0) {
		snprintf(t->ktls_why, sizeof(t->ktls_why), "kernel TLS not tried: no memory for the record buffers");
		return tls_gnutls_conn(t, &t->conn);
	}
	return 0;
}

const char *tls_conn_note(const struct mr_conn *c)
{
	return ((const struct tls_conn *)c)->tls->ktls_why;
}

void tls_conn_release(struct tls_conn *tc)
{
	struct mr_tls *t = tc->tls;

	if (tc->owns_tls) {
		t->conn = NULL; /* being freed by our caller */
		mr_tls_free(t);
	}
}

/* ---- the session's data before it becomes a connection (setup frames) ---- */

ssize_t mr_tls_send(struct mr_tls *t, const void *p, size_t len)
{
	return t ? mr_conn_send(t->conn, p, len) : -EINVAL;
}

ssize_t mr_tls_recv(struct mr_tls *t, void *p, size_t len)
{
	return t ? mr_conn_recv(t->conn, p, len) : -EINVAL;
}

ssize_t mr_tls_recv_all(struct mr_tls *t, void *p, size_t len)
{
	return t ? mr_conn_recv_all(t->conn, p, len) : -EINVAL;
}

const char *mr_tls_last_error(const struct mr_tls *t)
{
	return t ? mr_conn_last_error(t->conn) : "";
}

void mr_tls_bye(struct mr_tls *t)
{
	if (t)
		mr_conn_bye(t->conn);
}

const char *mr_tls_engine(const struct mr_tls *t)
{
	return t ? mr_conn_name(t->conn) : "";
}

const char *mr_tls_ktls_error(const struct mr_tls *t)
{
	return t ? t->ktls_why : "";
}

int mr_tls_set_plaintext(struct mr_tls *t)
{
	struct tls_conn *tc;
	struct mr_conn *plain = NULL;
	unsigned char *left = NULL;
	size_t n = 0;
	int r;

	if (!t || !t->conn)
		return -EINVAL;
	if (t->plain)
		return 0;
	tc = (struct tls_conn *)t->conn;
	if (!tc->unread)
		return -EINVAL; /* kernel TLS is on the socket and cannot be turned off */
	if ((r = tc->unread(tc, &left, &n)) < 0 || (r = mr_conn_plain(&plain, t->fd, false, left, n)) < 0) {
		free(left);
		return r == -ENOMEM ? -ENOMEM : -EINVAL;
	}
	free(left);
	mr_conn_free(t->conn);
	t->conn = plain;
	t->plain = true;
	return 0;
}

int mr_conn_from_tls(struct mr_conn **out, struct mr_tls *t, int fd)
{
	struct mr_conn *c;

	if (!out || !t || !t->conn || fd != t->fd) {
		mr_tls_free(t);
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	c = t->conn;
	c->own_fd = true;
	if (t->plain) {
		/* nothing of TLS is left on this connection: its session goes now */
		t->conn = NULL;
		mr_tls_free(t);
	} else {
		((struct tls_conn *)c)->owns_tls = true;
	}
	*out = c;
	return 0;
}

int mr_random(void *p, size_t len)
{
	if (len == 0)
		return 0;
	if (!p)
		return -EINVAL;
	return gnutls_rnd(GNUTLS_RND_KEY, p, len) < 0 ? -EIO : 0;
}
