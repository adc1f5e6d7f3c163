/* SPDX-License-Identifier: MIT */
/*
 * crypto/ internal: what the TLS control plane (tls.c, tls_cred.c,
 * tls_alert.c) and the TLS record engines (tls_gnutls.c, tls_inplace.c,
 * tls_ktls.c) share. Nothing outside crypto/ includes this.
 *
 * A session (struct mr_tls) runs the handshake; at its end tls.c picks one
 * record engine, once, and keeps it as t->conn: a struct mr_conn
 * (stream/conn.h) whose ops are that engine's. mr_tls_send and friends go
 * to t->conn until mr_conn_from_tls hands the connection over, after which
 * the connection owns the session.
 */
#ifndef MR_CRYPTO_TLS_INT_H
#define MR_CRYPTO_TLS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

#include "../stream/conn.h"
#include "psk.h"
#include "record.h"
#include "tls.h"

/*
 * TLS 1.3 only. For PSK only the key exchanges that add (EC)DHE, so a
 * leaked keys.psk does not open recorded traffic (forward secrecy).
 *
 * AES-128-GCM first: TLS 1.3's mandatory suite, the cheapest per byte with
 * AES instructions (10 rounds against AES-256's 14), and with PSK the only
 * AES suite GnuTLS can use (its external PSKs are tied to SHA-256), where
 * NORMAL's order would otherwise pick ChaCha20-Poly1305 at several times
 * the CPU cost. The other two stay allowed.
 */
#define TLS_CIPHERS "-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"
#define TLS_PRIO_X509 "NORMAL:-VERS-ALL:+VERS-TLS1.3:" TLS_CIPHERS
#define TLS_PRIO_PSK "NORMAL:-VERS-ALL:+VERS-TLS1.3:" TLS_CIPHERS ":-KX-ALL:+ECDHE-PSK:+DHE-PSK"

enum {
	TLS_MSG_LEN = 512,             /* bytes of a session's error text */
	TLS_DEFAULT_TIMEOUT_MS = 30000, /* handshake limit when the caller gives none */
	TLS_HEAD_LEN = 16,             /* first peer bytes kept to recognise non-TLS peers */
	TLS_MAX_DN = 4096,             /* longest subject DN we accept as an identity */
	TLS_MAX_PSK_FILE = 1 << 20,    /* a keys.psk larger than this is a mistake */
	TLS_SHOW = 96,                 /* peer-supplied text shown in messages, bytes */
	TLS_RBUF = 256 << 10,          /* receive buffer of the gnutls and in-place engines */
	TLS_SBUF = (1 << 20) + (64 << 10), /* send buffer: a 1 MiB frame sealed, with room */
};

struct mr_tls_cfg {
	bool server;
	bool psk;
	char *src;                             /* directory or keys.psk path, for messages */
	char *ca_path, *crl_path;              /* x509: the CA file and the CRL file (NULL: none), for messages */
	gnutls_priority_t prio;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_server_credentials_t psk_srv;
	gnutls_psk_client_credentials_t psk_cli;
	struct psk_file *keys;                 /* PSK server: accepted identities */
	char *psk_identity;                    /* PSK client: our identity */
};

struct mr_tls {
	gnutls_session_t s;
	const struct mr_tls_cfg *cfg;
	int fd;
	char *identity;

	/* Handshake only (one thread): callbacks leave their verdict here. */
	char *peer_name;
	int timeout_ms;
	enum mr_tls_fail cb_fail;
	int cb_alert; /* alert to send for cb_fail, or -1 */
	char cb_msg[TLS_MSG_LEN];
	bool psk_seen, psk_known;
	char psk_id[TLS_SHOW + 8];
	bool capturing;
	unsigned char head[TLS_HEAD_LEN];
	size_t head_len;

	/*
	 * GnuTLS's transport (tls_gnutls.c). With the gnutls engine the socket
	 * is read through rbuf and written through sbuf: GnuTLS reads each
	 * record in two recv() calls and writes each 16 KiB record with its
	 * own send(), and system calls are what a migration stream pays for
	 * most on a virtual machine.
	 */
	bool buffered;
	unsigned char *rbuf; /* receiving thread */
	size_t rpos, rlen;
	int pull_errno;
	unsigned char *sbuf; /* sending thread */
	size_t slen;
	int push_errno;

	/*
	 * The record engine, chosen once at the end of the handshake (or the
	 * plaintext engine after mr_tls_set_plaintext); owned here until
	 * mr_conn_from_tls hands it over.
	 */
	struct mr_conn *conn;
	bool plain;
	char ktls_why[TLS_MSG_LEN]; /* why kernel TLS is not used, "" if it is */
};

/* The common part of the TLS record engines. */
struct tls_conn {
	struct mr_conn conn; /* first: what the session holds */
	struct mr_tls *tls;  /* the control plane: alert texts, and GnuTLS's records */
	bool owns_tls;       /* set by mr_conn_from_tls: mr_conn_free frees tls too */
	/*
	 * Leaving the records for plaintext (PROTOCOL.md §4.4): the bytes
	 * received and not yet returned, in stream order, in a malloc'd *buf
	 * (NULL when none). Returns 0, -EINVAL when the kernel holds the
	 * socket's records, -ENOMEM.
	 */
	int (*unread)(struct tls_conn *tc, unsigned char **buf, size_t *len);
};

/* The traffic keys of both directions, from gnutls_record_get_state (0: ours to send, 1: to receive). */
struct tls_keys {
	enum mr_rec_cipher cipher;
	gnutls_datum_t key[2], iv[2];
	unsigned char seq[2][8];
};

/*
 * State of the in-place engine, and of kernel TLS, which opens records
 * in place when the kernel takes only the send keys.
 */
struct tls_rec_conn {
	struct tls_conn base;
	struct mr_rec tx; /* sending thread */
	struct mr_rec rx; /* receiving thread */
	/* Sending thread: records sealed into sbuf, or into the io_uring buffer tbuf. */
	unsigned char *sbuf;
	size_t slen;
	struct mr_uring_tx *utx;
	unsigned char *tbuf;
	size_t tcap;
	/*
	 * Receiving thread: records arrive in rbuf [rpos, rlen), or in an
	 * io_uring provided buffer uwin [uoff, ulen); rbuf then holds only
	 * bytes received before, and a record that straddles two provided
	 * buffers, assembled (the only bytes copied).
	 */
	unsigned char *rbuf;
	size_t rpos, rlen;
	size_t plen;       /* opened content not yet returned ... */
	unsigned char *pp; /* ... at pp (in rbuf or in uwin) */
	struct mr_uring_rx *urx;
	int rx_timeout_ms; /* SO_RCVTIMEO when the ring was set up; -1: none */
	unsigned char *uwin;
	size_t uoff, ulen;
	unsigned ubid;
	bool rx_closed; /* close_notify seen */
};

/* tls.c */
const char *tls_peer_role(const struct mr_tls *t);
void tls_printable(char *dst, size_t dstlen, const void *p, size_t n);
int tls_psk_server_cb(gnutls_session_t s, const gnutls_datum_t *user, gnutls_datum_t *key);
/* Every TLS engine's note: why kernel TLS is not used, "" if it is. */
const char *tls_conn_note(const struct mr_conn *c);
/* Every TLS engine's last step of free: the session too, once the connection owns it. */
void tls_conn_release(struct tls_conn *tc);

/* The first bytes of a TLS stream: a record type (20..23) and major version 3. */
static inline bool tls_head_is_tls(const struct mr_tls *t)
{
	if (t->head_len == 0)
		return true; /* nothing seen: not evidence either way */
	if (t->head[0] < 0x14 || t->head[0] > 0x17)
		return false;
	return t->head_len < 2 || t->head[1] == 0x03;
}

/* tls_alert.c: GnuTLS errors and alerts in the user's words, and as errnos. */
void tls_alert_text(const struct mr_tls *t, int alert, char *buf, size_t len);
enum mr_tls_fail tls_classify(struct mr_tls *t, int gr, int *alert, char *err, size_t errlen);
int tls_fail_errno(enum mr_tls_fail f);

/* tls_gnutls.c: GnuTLS's transport (also the handshake's) and its record engine. */
void tls_gnutls_transport(struct mr_tls *t);
MR_MUST_CHECK int tls_gnutls_conn(struct mr_tls *t, struct mr_conn **out);

/* tls_inplace.c */
extern const struct mr_conn_ops tls_inplace_ops;
/*
 * A record engine with <ops> (tls_inplace_ops, tls_ktls_ops or
 * tls_ktls_tx_ops) on t's socket: in-place record states for the
 * directions the kernel does not take (<ktls_tx>, <ktls_rx>).
 * Returns 0 with *out set, or -ENOMEM/-EIO.
 */
MR_MUST_CHECK int tls_rec_conn(struct mr_tls *t, const struct mr_conn_ops *ops, const struct tls_keys *k,
			       bool ktls_tx, bool ktls_rx, struct mr_conn **out);
ssize_t tls_inplace_recv(struct mr_conn *c, void *p, size_t len);
ssize_t tls_rec_rx_failed(struct tls_rec_conn *e, ssize_t r);
int tls_rec_control(struct tls_rec_conn *e, const unsigned char *c, size_t n, unsigned char type);
const char *tls_rec_strerror(int e);
void tls_rec_free(struct mr_conn *c);

/* tls_ktls.c */
extern const struct mr_conn_ops tls_ktls_ops;    /* the kernel seals and opens */
extern const struct mr_conn_ops tls_ktls_tx_ops; /* the kernel seals; records are opened in place */
/*
 * Hands the keys to kernel TLS on t's socket: *tx and *rx say which
 * direction it took, t->ktls_why why not (both).
 */
void tls_ktls_start(struct mr_tls *t, const struct tls_keys *k, bool *tx, bool *rx);

#endif
