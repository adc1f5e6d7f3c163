/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 sessions with mutual authentication (x509 or PSK), the only code
 * besides crypto/ssh.c and crypto/record.c that sees GnuTLS. Blocking
 * sockets; one thread may send while another receives on the same session.
 */
#ifndef MR_CRYPTO_TLS_H
#define MR_CRYPTO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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
 * Client credentials that verify the server against <dir>/ca-cert.pem but
 * present no certificate of their own. Every migrelay server refuses such
 * a client (MR_TLS_F_NO_CERT there, MR_TLS_F_PEER_REJECTED "certificate
 * required" here); this exists to test that refusal and to probe a
 * server's certificate. Returns 0 or -errno with <err> set.
 */
MR_MUST_CHECK int mr_tls_cfg_x509_nocert(struct mr_tls_cfg **out, const char *dir, char *err, size_t errlen);

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
 * (RFC 8446 §5) through one of three record layers, chosen once:
 *  - "ktls": the kernel seals and opens records (Linux kernel TLS), unless
 *    MIGRELAY_KTLS=0 or the kernel lacks it (mr_tls_ktls_error says why);
 *  - "in-place": migrelay seals each record from the caller's buffer into
 *    its send buffer and opens records in its receive buffer or straight
 *    into the caller's buffer (crypto/record.h), with the keys of the
 *    handshake; one cipher pass and no other copy of the bulk data;
 *  - "gnutls": gnutls_record_send/recv, when the suite is not one of
 *    AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305, or GnuTLS does not give
 *    its keys, or when MIGRELAY_TLS_RECORDS=gnutls (for comparisons).
 * All three are the same records on the wire; the peer cannot tell.
 */

/*
 * Sends all <len> bytes (any size; cut into records of at most 16 KiB).
 * Returns len, or -EPIPE/-ECONNRESET/-EIO, or -EKEYEXPIRED when the
 * connection's key has protected as many records as migrelay allows
 * (record.h: MR_REC_LIMIT_DEFAULT): replace the connection by a new
 * handshake. Waits while the socket is full, also across SO_SNDTIMEO
 * expiries. One sending thread per session. For tests, the environment
 * variable MIGRELAY_TLS_RECORD_LIMIT=N lowers the limit of in-place
 * records to N records sent per connection.
 */
MR_MUST_CHECK ssize_t mr_tls_send(struct mr_tls *t, const void *p, size_t len);

/*
 * mr_tls_send for bytes the caller leaves unchanged, and allocated, until
 * the peer has acknowledged them (a DATA chunk kept for re-sending). In
 * plaintext mode they go to the socket with vmsplice and splice, without a
 * copy into the kernel; otherwise exactly as mr_tls_send.
 */
MR_MUST_CHECK ssize_t mr_tls_send_stable(struct mr_tls *t, const void *p, size_t len);

/*
 * Receives up to <len> bytes. Returns > 0, 0 on a clean close_notify,
 * -ECONNRESET for an unclean close, -EAGAIN when the socket's receive
 * timeout (SO_RCVTIMEO) expired (call again to go on), -EKEYEXPIRED when
 * the peer's key exceeded migrelay's record limit, -EIO otherwise. A
 * TLS alert from the peer (-EIO) sets the text of mr_tls_last_error, which
 * names the alert; so does a TLS KeyUpdate (migrelay replaces connections
 * instead), while a NewSessionTicket is ignored. One receiving thread per
 * session; it may run while another thread is in mr_tls_send.
 */
MR_MUST_CHECK ssize_t mr_tls_recv(struct mr_tls *t, void *p, size_t len);

/*
 * Receives exactly <len> bytes: returns len, 0 on clean close before the
 * first byte, negative otherwise: -EAGAIN only if nothing was received,
 * -ETIMEDOUT if the receive timeout expired part way (the bytes so far
 * are lost: treat the connection as broken), -ECONNRESET on a close part way.
 */
MR_MUST_CHECK ssize_t mr_tls_recv_all(struct mr_tls *t, void *p, size_t len);

/*
 * Text of the last failure of mr_tls_send/recv on this session (alert
 * name, GnuTLS reason), "" if none. The sender and the receiver write
 * separate buffers, so a text stays valid while the other thread fails.
 */
const char *mr_tls_last_error(const struct mr_tls *t);

/*
 * Sends close_notify (best effort, does not wait for the peer's). Sending
 * thread (or no other thread in mr_tls_send). In plaintext mode it shuts
 * the socket down for writing instead: the peer reads end of stream, a
 * clean close.
 */
void mr_tls_bye(struct mr_tls *t);

/*
 * Plaintext mode for --insecure-plaintext: from this call on mr_tls_send,
 * mr_tls_recv and mr_tls_recv_all move bytes raw over the socket (no
 * records, no encryption, no integrity); bytes already received after the
 * last TLS record are the first raw bytes; mr_tls_recv returns 0 when the
 * peer closes the socket. Both ends must call it at the same point of the
 * byte stream (docs/PROTOCOL.md §4.4): the server right after it sent the
 * WELCOME that answers a HELLO or a JOIN, the client right after it
 * received that WELCOME; so the authenticated handshake, HELLO or JOIN and
 * WELCOME still travel inside TLS. Call while no other thread is in
 * mr_tls_send/recv. Returns 0, or -EINVAL (NULL, kernel TLS is active on
 * the socket and cannot be turned off, or a receive transport is attached:
 * switch before mr_tls_set_rx).
 */
MR_MUST_CHECK int mr_tls_set_plaintext(struct mr_tls *t);

/*
 * Another transport under the in-place records (the gateway plugs in the
 * io_uring engine of stream/uring.h): <get> hands out a buffer the sender
 * seals records into, <send> sends it and owns it from then on (0 once the
 * kernel took every byte, or -errno), <put> takes back one not sent.
 * <recv> gives the next received bytes in a buffer of its own (> 0 bytes,
 * 0 at EOF, -EAGAIN on timeout with nothing lost, -errno), which is handed
 * back with <put> once parsed; records are opened where they arrived, and
 * only a record that straddles two buffers is copied (into one piece).
 */
struct mr_tls_tx_ops {
	int (*get)(void *ctx, uint8_t **buf, size_t *cap);
	int (*send)(void *ctx, uint8_t *buf, size_t len);
	void (*put)(void *ctx, uint8_t *buf);
};

struct mr_tls_rx_ops {
	ssize_t (*recv)(void *ctx, const uint8_t **data, unsigned *bid, int timeout_ms);
	void (*put)(void *ctx, unsigned bid);
};

/*
 * Sending thread: from now on records go through <ops> (NULL: back to
 * send(); nothing may be held then). Only for the in-place record layer
 * (mr_tls_engine() "in-place"): -ENOTSUP otherwise, and the session keeps
 * its own I/O.
 */
MR_MUST_CHECK int mr_tls_set_tx(struct mr_tls *t, const struct mr_tls_tx_ops *ops, void *ctx);

/*
 * Receiving thread: from now on bytes are received through <ops>; bytes
 * received before are parsed first. NULL detaches, giving back the buffer
 * held (its unread bytes are dropped: only when the connection is over).
 * Only for the in-place record layer (not in plaintext mode); -ENOTSUP
 * otherwise. The socket's SO_RCVTIMEO at this call is the receive timeout
 * from then on (set it first).
 */
MR_MUST_CHECK int mr_tls_set_rx(struct mr_tls *t, const struct mr_tls_rx_ops *ops, void *ctx);

/*
 * The record layer in use, for the log: "in-place", "gnutls", "ktls", or
 * "plaintext" after mr_tls_set_plaintext. Stable after the handshake.
 */
const char *mr_tls_engine(const struct mr_tls *t);

/*
 * Why kernel TLS is not used on this session (e.g. "kernel TLS is not
 * available: setsockopt(TCP_ULP, "tls"): No such file or directory (...)"),
 * "" if it is used for both directions. For one log line per process.
 */
const char *mr_tls_ktls_error(const struct mr_tls *t);
void mr_tls_free(struct mr_tls *t); /* NULL-safe */

/* Random bytes from GnuTLS's key-grade generator. Returns 0 or -EIO. */
MR_MUST_CHECK int mr_random(void *p, size_t len);

#endif
