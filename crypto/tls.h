/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 sessions with mutual authentication (x509 or PSK). Only crypto/
 * sees GnuTLS. Blocking sockets; one thread may send while another
 * receives on the same session. After the handshake a session carries its
 * data through a connection of stream/conn.h (mr_conn_from_tls).
 */
#ifndef MR_CRYPTO_TLS_H
#define MR_CRYPTO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../stream/conn.h"
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
 * (client), and ca-crl.pem when it exists (revoked peers are refused). Returns 0 or -errno; on failure <err> names the file and the
 * problem.
 */
MR_MUST_CHECK int mr_tls_cfg_x509(struct mr_tls_cfg **out, const char *dir, bool server, char *err, size_t errlen);

/*
 * Client credentials that verify the server against <dir>/ca-cert.pem but
 * present no certificate of their own. Every migrelay server refuses such
 * a client (MR_TLS_F_NO_CERT there, MR_TLS_F_PEER_REJECTED "certificate
 * required" here); this exists to test that refusal and to probe a
 * server's certificate. Returns 0 or -errno with <err> set.
 */
MR_MUST_CHECK int mr_tls_cfg_x509_nocert(struct mr_tls_cfg **out, const char *dir, char *err, size_t errlen);

/*
 * x509 credentials from files named one by one, for PKI layouts other than
 * QEMU's (libvirt's /etc/pki/CA/cacert.pem, /etc/pki/libvirt/..., private
 * keys elsewhere): <ca> the trusted CA(s), <cert>/<key> this side's PEM pair,
 * <crl> an optional PEM CRL whose certificates are refused. In a directory
 * (mr_tls_cfg_x509) the CRL is ca-crl.pem, used when present, as QEMU does.
 * Returns 0 or -errno with <err> set.
 */
struct mr_tls_files {
	const char *ca, *cert, *key, *crl;
};
MR_MUST_CHECK int mr_tls_cfg_x509_files(struct mr_tls_cfg **out, const struct mr_tls_files *f, bool server,
					char *err, size_t errlen);

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
 * the host the user asked for (a DNS name, or an IP address without
 * brackets); the server certificate must match it (DNS or IP SAN) unless
 * NULL. <timeout_ms> bounds the whole handshake (<= 0: 30 s). <cfg> must
 * outlive the session; one cfg serves any number of sessions and threads.
 * Returns 0 with *out set, or a negative errno (-ETIMEDOUT, -ECONNRESET,
 * -EPROTO, -EACCES for any refusal, -ENOMEM, -EIO) with *fail set and
 * <err> holding a sentence for the user. When this side refuses the peer,
 * it first sends the peer the matching fatal alert (unknown CA,
 * certificate expired, certificate required, bad certificate, decrypt
 * error for PSK, no application protocol).
 *
 * In TLS 1.3 a client finishes its handshake before the server has looked
 * at the client's certificate, so a client the server refuses usually
 * gets 0 here, and learns of the refusal on its first mr_tls_recv: that
 * returns -EIO and mr_tls_last_error names the alert, e.g. "the server
 * rejected our certificate: unknown CA (...)". A mr_tls_send before that
 * may succeed, or fail with -EPIPE once the server has closed. Clients
 * should therefore wait for the server's first message (WELCOME) before
 * reporting success.
 */
MR_MUST_CHECK int mr_tls_handshake(struct mr_tls **out, struct mr_tls_cfg *cfg, int fd, const char *peer_name,
				   int timeout_ms, enum mr_tls_fail *fail, char *err, size_t errlen);

/* Peer identity: the certificate's subject DN (RFC 4514 string) or the PSK username. */
const char *mr_tls_peer_identity(const struct mr_tls *t);

/*
 * After the handshake a session carries data in standard TLS 1.3 records
 * (RFC 8446 §5) through one of three record engines, chosen once at the
 * end of the handshake, each an implementation of stream/conn.h:
 *  - "ktls" (tls_ktls.c): the kernel seals and opens records (Linux kernel
 *    TLS), unless MIGRELAY_KTLS=0 or the kernel lacks it
 *    (mr_tls_ktls_error says why);
 *  - "in-place" (tls_inplace.c): migrelay seals each record from the
 *    caller's buffer into its send buffer and opens records in its receive
 *    buffer or straight into the caller's buffer (crypto/record.h), with
 *    the keys of the handshake, over send()/recv() or io_uring; one cipher
 *    pass and no other copy of the bulk data;
 *  - "gnutls" (tls_gnutls.c): gnutls_record_send/recv, when the suite is
 *    not one of AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305, or GnuTLS
 *    does not give its keys, or when MIGRELAY_TLS_RECORDS=gnutls (for
 *    comparisons).
 * All three are the same records on the wire; the peer cannot tell.
 *
 * The setup frames (HELLO, JOIN, WELCOME) travel through the functions
 * below, which are mr_conn_send, mr_conn_recv, mr_conn_recv_all,
 * mr_conn_last_error and mr_conn_bye (stream/conn.h) on the session's
 * engine; then mr_conn_from_tls hands the connection over. Sending: a
 * send returns -EKEYEXPIRED when the connection's key has protected as
 * many records as migrelay allows (record.h: MR_REC_LIMIT_DEFAULT):
 * replace the connection by a new handshake; for tests, the environment
 * variable MIGRELAY_TLS_RECORD_LIMIT=N lowers the limit of in-place
 * records to N records sent per connection. Receiving: 0 on a clean
 * close_notify, -ECONNRESET for an unclean close, -EIO for a TLS alert
 * from the peer (mr_tls_last_error names it) or a TLS KeyUpdate (migrelay
 * replaces connections instead), while a NewSessionTicket is ignored.
 */
MR_MUST_CHECK ssize_t mr_tls_send(struct mr_tls *t, const void *p, size_t len);
MR_MUST_CHECK ssize_t mr_tls_recv(struct mr_tls *t, void *p, size_t len);
MR_MUST_CHECK ssize_t mr_tls_recv_all(struct mr_tls *t, void *p, size_t len);
const char *mr_tls_last_error(const struct mr_tls *t);
void mr_tls_bye(struct mr_tls *t);

/*
 * Plaintext mode for --insecure-plaintext: from this call on the session
 * moves bytes raw over the socket with the plaintext engine
 * (stream/plain.c: no records, no encryption, no integrity); bytes
 * already received after the last TLS record are the first raw bytes;
 * a receive returns 0 when the peer closes the socket. Both ends must
 * call it at the same point of the byte stream (docs/PROTOCOL.md §4.4):
 * the server right after it sent the WELCOME that answers a HELLO or a
 * JOIN, the client right after it received that WELCOME; so the
 * authenticated handshake, HELLO or JOIN and WELCOME still travel inside
 * TLS. Call while no other thread uses the session. Returns 0, -ENOMEM,
 * or -EINVAL (NULL, or kernel TLS is active on the socket and cannot be
 * turned off).
 */
MR_MUST_CHECK int mr_tls_set_plaintext(struct mr_tls *t);

/*
 * Hands the session's connection over: *out is the record engine chosen
 * at the handshake (or the plaintext engine after mr_tls_set_plaintext),
 * and owns <t> and the socket <fd> (the one of the handshake) from now
 * on: mr_conn_free frees the session and closes fd. Takes <t> and <fd>
 * whatever the result. Returns 0, or -EINVAL (NULL, another fd).
 */
MR_MUST_CHECK int mr_conn_from_tls(struct mr_conn **out, struct mr_tls *t, int fd);

/*
 * The record engine in use, for the log: "in-place", "gnutls", "ktls", or
 * "plaintext" after mr_tls_set_plaintext. Stable after the handshake.
 */
const char *mr_tls_engine(const struct mr_tls *t);

/*
 * Why kernel TLS is not used on this session (e.g. "kernel TLS is not
 * available: setsockopt(TCP_ULP, "tls"): No such file or directory (...)"),
 * "" if it is used for both directions. For one log line per process.
 */
const char *mr_tls_ktls_error(const struct mr_tls *t);

/* Frees the session and its engine (not the fd). NULL-safe. Not after mr_conn_from_tls. */
void mr_tls_free(struct mr_tls *t);

/* Random bytes from GnuTLS's key-grade generator. Returns 0 or -EIO. */
MR_MUST_CHECK int mr_random(void *p, size_t len);

#endif
