/* SPDX-License-Identifier: MIT */
/*
 * Why a handshake or a record failed, in the user's words: GnuTLS error
 * codes and TLS alerts become enum mr_tls_fail, an errno and one sentence
 * here and nowhere else.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>

#include "msg.h"
#include "tls_int.h"

/* RFC 8446 names, which people search for; GnuTLS's own texts differ. */
static const char *tls_alert_name(int alert)
{
	switch (alert) {
	case GNUTLS_A_CLOSE_NOTIFY:
		return "close notify";
	case GNUTLS_A_UNEXPECTED_MESSAGE:
		return "unexpected message";
	case GNUTLS_A_BAD_RECORD_MAC:
		return "bad record MAC";
	case GNUTLS_A_RECORD_OVERFLOW:
		return "record overflow";
	case GNUTLS_A_HANDSHAKE_FAILURE:
		return "handshake failure";
	case GNUTLS_A_BAD_CERTIFICATE:
		return "bad certificate";
	case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
		return "unsupported certificate";
	case GNUTLS_A_CERTIFICATE_REVOKED:
		return "certificate revoked";
	case GNUTLS_A_CERTIFICATE_EXPIRED:
		return "certificate expired";
	case GNUTLS_A_CERTIFICATE_UNKNOWN:
		return "certificate unknown";
	case GNUTLS_A_ILLEGAL_PARAMETER:
		return "illegal parameter";
	case GNUTLS_A_UNKNOWN_CA:
		return "unknown CA";
	case GNUTLS_A_ACCESS_DENIED:
		return "access denied";
	case GNUTLS_A_DECODE_ERROR:
		return "decode error";
	case GNUTLS_A_DECRYPT_ERROR:
		return "decrypt error";
	case GNUTLS_A_PROTOCOL_VERSION:
		return "protocol version";
	case GNUTLS_A_INSUFFICIENT_SECURITY:
		return "insufficient security";
	case GNUTLS_A_INTERNAL_ERROR:
		return "internal error";
	case GNUTLS_A_USER_CANCELED:
		return "user canceled";
	case GNUTLS_A_MISSING_EXTENSION:
		return "missing extension";
	case GNUTLS_A_UNSUPPORTED_EXTENSION:
		return "unsupported extension";
	case GNUTLS_A_UNKNOWN_PSK_IDENTITY:
		return "unknown PSK identity";
	case GNUTLS_A_CERTIFICATE_REQUIRED:
		return "certificate required";
	case GNUTLS_A_NO_APPLICATION_PROTOCOL:
		return "no application protocol";
	default:
		return NULL;
	}
}

/* Text for a fatal alert the peer sent us, in its words and with a fix. */
void tls_alert_text(const struct mr_tls *t, int alert, char *buf, size_t len)
{
	const char *peer = tls_peer_role(t);
	const char *name = tls_alert_name(alert);
	char other[32];

	if (!name) {
		snprintf(other, sizeof(other), "alert %d", alert);
		name = other;
	}
	switch (alert) {
	case GNUTLS_A_UNKNOWN_CA:
		crypto_msg(buf, len,
			"the %s rejected our certificate: unknown CA (it does not trust the CA that issued our certificate; issue ours with the CA whose ca-cert.pem the %s uses)",
			peer, peer);
		break;
	case GNUTLS_A_CERTIFICATE_EXPIRED:
		crypto_msg(buf, len,
			"the %s rejected our certificate: certificate expired (issue a new one with `migrelay pki issue`, and check both hosts' clocks)",
			peer);
		break;
	case GNUTLS_A_CERTIFICATE_REQUIRED:
		crypto_msg(buf, len,
			"the %s rejected us: certificate required (we sent none; give this side a certificate from `migrelay pki issue`)",
			peer);
		break;
	case GNUTLS_A_BAD_CERTIFICATE:
	case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
	case GNUTLS_A_CERTIFICATE_REVOKED:
	case GNUTLS_A_CERTIFICATE_UNKNOWN:
		crypto_msg(buf, len, "the %s rejected our certificate: %s (see the %s's log for the reason)", peer, name,
			peer);
		break;
	case GNUTLS_A_NO_APPLICATION_PROTOCOL:
		crypto_msg(buf, len,
			"the %s rejected us: no application protocol (it does not speak \"%s\"; is it a migrelay of another version?)",
			peer, WIRE_ALPN);
		break;
	case GNUTLS_A_PROTOCOL_VERSION:
		crypto_msg(buf, len, "the %s rejected us: protocol version (migrelay speaks only TLS 1.3)", peer);
		break;
	case GNUTLS_A_DECRYPT_ERROR:
	case GNUTLS_A_UNKNOWN_PSK_IDENTITY:
	case GNUTLS_A_ILLEGAL_PARAMETER:
		if (t->cfg->psk && !t->cfg->server) {
			crypto_msg(buf, len,
				"the %s rejected our PSK identity \"%s\": %s (the identity must be in the %s's keys.psk with the same key)",
				peer, t->cfg->psk_identity, name, peer);
			break;
		}
		crypto_msg(buf, len, "the %s ended the handshake with TLS alert \"%s\"", peer, name);
		break;
	case GNUTLS_A_HANDSHAKE_FAILURE:
	case GNUTLS_A_INSUFFICIENT_SECURITY:
		crypto_msg(buf, len,
			"the %s rejected us: %s (no common TLS 1.3 parameters; do both sides use the same kind of credentials, x509 or PSK?)",
			peer, name);
		break;
	default:
		crypto_msg(buf, len, "the %s ended the connection with TLS alert \"%s\"", peer, name);
		break;
	}
}

/*
 * After a failed write or an early EOF in the handshake: the peer may have
 * refused us with a fatal alert that is still unread in the socket, sent
 * before its handshake keys existed and so in plaintext, possibly behind
 * a plaintext handshake record or a ChangeCipherSpec (after a
 * HelloRetryRequest). Walks the plaintext records we can peek at without
 * consuming them. Returns the alert, or -1.
 */
static int tls_peek_plain_alert(const struct mr_tls *t)
{
	unsigned char b[4096];
	ssize_t n = recv(t->fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
	size_t off = 0, len;

	while (n > 0 && (size_t)n - off >= 5 && b[off + 1] == 0x03) {
		len = (size_t)b[off + 3] << 8 | b[off + 4];
		if (b[off] == 0x15) {
			if (len != 2 || (size_t)n - off < 7 || b[off + 5] != GNUTLS_AL_FATAL)
				return -1;
			return b[off + 6];
		}
		if (b[off] != 0x14 && b[off] != 0x16)
			return -1; /* application data: encrypted, not ours to read */
		if ((size_t)n - off - 5 < len)
			return -1;
		off += 5 + len;
	}
	return -1;
}

enum mr_tls_fail tls_classify(struct mr_tls *t, int gr, int *alert, char *err, size_t errlen)
{
	const char *peer = tls_peer_role(t);
	char shown[TLS_SHOW + 8];
	int peer_alert;

	*alert = -1;
	if (t->cb_fail != MR_TLS_OK) {
		*alert = t->cb_alert;
		crypto_msg(err, errlen, "%s", t->cb_msg);
		return t->cb_fail;
	}
	if (!tls_head_is_tls(t)) {
		tls_printable(shown, sizeof(shown), t->head, t->head_len);
		crypto_msg(err, errlen,
			"the %s does not speak TLS: it sent \"%s\" (is that port a migrelay, and does the other side use TLS too?)",
			peer, shown);
		return MR_TLS_F_NOT_TLS;
	}
	switch (gr) {
	case GNUTLS_E_TIMEDOUT:
		crypto_msg(err, errlen,
			"no TLS handshake with the %s within %d ms (is the other side a migrelay speaking TLS, and is it reachable and not overloaded?)",
			peer, t->timeout_ms);
		return MR_TLS_F_TIMEOUT;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		tls_alert_text(t, (int)gnutls_alert_get(t->s), err, errlen);
		return MR_TLS_F_PEER_REJECTED;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
	case GNUTLS_E_SESSION_EOF:
		peer_alert = tls_peek_plain_alert(t);
		if (peer_alert >= 0) {
			tls_alert_text(t, peer_alert, err, errlen);
			return MR_TLS_F_PEER_REJECTED;
		}
		if (gr == GNUTLS_E_PULL_ERROR && t->pull_errno)
			crypto_msg(err, errlen, "the connection to the %s failed during the TLS handshake: %s", peer,
				strerror(t->pull_errno));
		else
			crypto_msg(err, errlen,
				"the %s closed the connection during the TLS handshake (it may have refused our credentials; see its log)",
				peer);
		return MR_TLS_F_IO;
	case GNUTLS_E_MEMORY_ERROR:
	case GNUTLS_E_INTERNAL_ERROR:
		crypto_msg(err, errlen, "TLS handshake with the %s failed: %s", peer, gnutls_strerror(gr));
		*alert = GNUTLS_A_INTERNAL_ERROR;
		return MR_TLS_F_INTERNAL;
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
		crypto_msg(err, errlen, "the %s does not offer TLS 1.3 (migrelay speaks only TLS 1.3)", peer);
		*alert = GNUTLS_A_PROTOCOL_VERSION;
		return MR_TLS_F_PROTOCOL;
	case GNUTLS_E_NO_CIPHER_SUITES:
		/* what a TLS 1.2-only ClientHello gets from a TLS 1.3-only server */
		crypto_msg(err, errlen,
			"the %s offers no TLS 1.3 cipher suite (migrelay speaks only TLS 1.3; is the peer an older TLS stack?)",
			peer);
		*alert = GNUTLS_A_HANDSHAKE_FAILURE;
		return MR_TLS_F_PROTOCOL;
	case GNUTLS_E_INSUFFICIENT_CREDENTIALS:
		if (!t->cfg->server && t->cfg->psk) {
			crypto_msg(err, errlen,
				"the server authenticates with a certificate, but this side has only a pre-shared key (use the same kind of credentials on both sides)");
			*alert = GNUTLS_A_HANDSHAKE_FAILURE;
			return MR_TLS_F_PROTOCOL;
		}
		break;
	default:
		break;
	}
	if (t->cfg->server && (gr == GNUTLS_E_CERTIFICATE_REQUIRED || gr == GNUTLS_E_NO_CERTIFICATE_FOUND)) {
		crypto_msg(err, errlen,
			"the client sent no certificate (give it client-cert.pem and client-key.pem from `migrelay pki issue client`)");
		*alert = GNUTLS_A_CERTIFICATE_REQUIRED;
		return MR_TLS_F_NO_CERT;
	}
	if (t->cfg->server && t->cfg->psk) {
		/* one alert for both cases: a client must not learn which identities exist */
		*alert = GNUTLS_A_DECRYPT_ERROR;
		if (t->psk_seen && !t->psk_known)
			crypto_msg(err, errlen,
				"the client's PSK identity \"%s\" is not in %s (add a line \"identity:hexkey\" with the client's key)",
				t->psk_id, t->cfg->src);
		else if (t->psk_seen)
			crypto_msg(err, errlen,
				"the client's key for PSK identity \"%s\" differs from the one in %s (both sides need the same line)",
				t->psk_id, t->cfg->src);
		else {
			crypto_msg(err, errlen,
				"the client offered no pre-shared key with an (EC)DHE key exchange (give it a PSK file like %s; migrelay does not use PSK without forward secrecy)",
				t->cfg->src);
			*alert = GNUTLS_A_HANDSHAKE_FAILURE;
		}
		return MR_TLS_F_PSK;
	}
	crypto_msg(err, errlen, "TLS handshake with the %s failed: %s (migrelay needs TLS 1.3 and ALPN \"%s\" on both sides)",
		peer, gnutls_strerror(gr), WIRE_ALPN);
	*alert = gnutls_error_to_alert(gr, NULL);
	return MR_TLS_F_PROTOCOL;
}

int tls_fail_errno(enum mr_tls_fail f)
{
	switch (f) {
	case MR_TLS_F_IO:
		return -ECONNRESET;
	case MR_TLS_F_TIMEOUT:
		return -ETIMEDOUT;
	case MR_TLS_F_NOT_TLS:
	case MR_TLS_F_PROTOCOL:
		return -EPROTO;
	case MR_TLS_F_INTERNAL:
		return -EIO;
	default:
		return -EACCES;
	}
}

