/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 sessions with mutual authentication (x509 or PSK), the only code
 * besides crypto/ssh.c that sees GnuTLS. Blocking sockets; one thread may
 * send while another receives on the same session.
 */
#ifndef MR_CRYPTO_TLS_H
#define MR_CRYPTO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "../stream/wire.h"

/* Why a handshake failed; the gateway turns these into messages and exit codes. */
enum mr_tls_fail {
	MR_TLS_OK = 0,
	MR_TLS_F_IO = 1,            /* connection closed or reset during the handshake */
	MR_TLS_F_TIMEOUT = 2,       /* handshake took longer than the timeout */
	MR_TLS_F_NOT_TLS = 3,       /* the peer did not speak TLS (garbage) */
	MR_TLS_F_PROTOCOL = 4,      /* no TLS 1.3, no common cipher or ALPN, other protocol error */
	MR_TLS_F_UNKNOWN_CA = 5,    /* peer's certificate not signed by our CA */
	MR_TLS_F_EXPIRED = 6,       /* peer's certificate expired (or not yet valid) */
	MR_TLS_F_NO_CERT = 7,       /* peer sent no certificate */
	MR_TLS_F_BAD_CERT = 8,      /* other verification failure (name mismatch, revoked, bad signature) */
	MR_TLS_F_PSK = 9,           /* PSK mismatch or unknown PSK identity */
	MR_TLS_F_PEER_REJECTED = 10, /* the peer refused us (alert); text says which alert */
	MR_TLS_F_INTERNAL = 11,
};

struct mr_tls_cfg;
struct mr_tls;

/*
 * x509 credentials from a QEMU tls-creds-x509 directory: ca-cert.pem plus
 * server-cert.pem/server-key.pem (server) or client-cert.pem/client-key.pem
 * (client). Returns 0 or -errno; on failure <err> names the file and the
 * problem.
 */
MR_MUST_CHECK int mr_tls_cfg_x509(struct mr_tls_cfg **out, const char *dir, bool server, char *err, size_t errlen);

/*
 * PSK credentials from a QEMU keys.psk file (lines "identity:hexkey").
 * Server: every identity in the file is accepted. Client: <identity> picks
 * the line (NULL: the first line). Returns 0 or -errno with <err> set.
 */
MR_MUST_CHECK int mr_tls_cfg_psk(struct mr_tls_cfg **out, const char *file, bool server, const char *identity,
				 char *err, size_t errlen);
void mr_tls_cfg_free(struct mr_tls_cfg *cfg); /* NULL-safe */

/*
 * Runs the handshake on connected socket <fd> (the session does not own
 * the fd; the caller closes it after mr_tls_free). Client: <peer_name> is
 * the host the user asked for; the server certificate must match it (DNS
 * or IP SAN) unless NULL. Returns 0 with *out set, or a negative errno
 * with *fail set and <err> holding a sentence for the user.
 */
MR_MUST_CHECK int mr_tls_handshake(struct mr_tls **out, struct mr_tls_cfg *cfg, int fd, const char *peer_name,
				   int timeout_ms, enum mr_tls_fail *fail, char *err, size_t errlen);

/* Peer identity: the certificate's subject DN (RFC 4514 string) or the PSK username. */
const char *mr_tls_peer_identity(const struct mr_tls *t);

/* Sends all <len> bytes. Returns len, or -EPIPE/-ECONNRESET/-EIO. */
MR_MUST_CHECK ssize_t mr_tls_send(struct mr_tls *t, const void *p, size_t len);

/*
 * Receives up to <len> bytes. Returns > 0, 0 on a clean close_notify,
 * -ECONNRESET for an unclean close, -EAGAIN when the socket's receive
 * timeout expired, -EIO otherwise. A TLS alert from the peer sets <err>
 * via mr_tls_last_error.
 */
MR_MUST_CHECK ssize_t mr_tls_recv(struct mr_tls *t, void *p, size_t len);

/* Receives exactly <len> bytes: returns len, 0 on clean close before the first byte, negative otherwise. */
MR_MUST_CHECK ssize_t mr_tls_recv_all(struct mr_tls *t, void *p, size_t len);

/* Text of the last failure on this session (alert name, GnuTLS reason). */
const char *mr_tls_last_error(const struct mr_tls *t);

/* Sends close_notify (best effort, does not wait for the peer's). */
void mr_tls_bye(struct mr_tls *t);
void mr_tls_free(struct mr_tls *t); /* NULL-safe */

/* Random bytes from GnuTLS's key-grade generator. Returns 0 or -EIO. */
MR_MUST_CHECK int mr_random(void *p, size_t len);

#endif
