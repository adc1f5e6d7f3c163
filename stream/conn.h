/* SPDX-License-Identifier: MIT */
/*
 * The connection interface: how a session moves bytes over one connection,
 * whatever carries them. An implementation (an "engine") fills one
 * struct mr_conn_ops; the connection's ops are chosen once, when the
 * connection is set up (crypto/tls.c picks a TLS record engine at the end
 * of the handshake; stream/plain.c is the raw socket), and nothing above
 * ever asks which engine it holds.
 *
 * Engines today: "plaintext" (stream/plain.c: send()/recv() and
 * vmsplice/splice, with or without a TLS handshake before it), and the TLS
 * record engines of crypto/: "in-place" (crypto/tls_inplace.c, over
 * send()/recv() or the io_uring engine of stream/uring.h), "ktls"
 * (crypto/tls_ktls.c) and "gnutls" (crypto/tls_gnutls.c). A channel of
 * another secure transport (an SSH channel) is one more set of ops.
 *
 * Threads: one sending thread (send, send_stable, start_tx, stop_tx, bye)
 * and one receiving thread (recv, recv_all, start_rx, stop_rx) may work on
 * a connection at the same time. Any thread may call shutdown(c->fd, ...)
 * to end a blocked call in either of them. mr_conn_free runs once neither
 * thread uses the connection.
 *
 * Results follow the house rule: a byte count or 0 on success, -errno on
 * failure; a failure of send or recv leaves one sentence for the user in
 * mr_conn_last_error.
 */
#ifndef MR_STREAM_CONN_H
#define MR_STREAM_CONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "wire.h"

enum mr_conn_limits {
	MR_CONN_ERR_LEN = 512, /* bytes of one error text (send side and receive side each) */
};

struct mr_conn;

/*
 * What the session offers an engine for a transport of its own on the
 * connection's threads (the in-place TLS records use it for io_uring; the
 * others ignore it).
 */
struct mr_conn_io {
	unsigned tx_bufs;  /* registered send buffers ... */
	size_t tx_bufsize; /* ... of this size, each holding a sealed chunk frame */
	unsigned rx_bufs;  /* provided receive buffers (a power of two) ... */
	size_t rx_bufsize; /* ... of this size */
	bool loopback;     /* the peer is on this host: the kernel copies zero-copy sends anyway */
};

struct mr_conn_ops {
	const char *name; /* for the log: "plaintext", "in-place", "ktls", "gnutls", ... */
	/* Sending thread. Sends all <len> bytes (len > 0). Returns len or -errno (-EPIPE, -ECONNRESET, -EKEYEXPIRED, -EIO). */
	ssize_t (*send)(struct mr_conn *c, const void *p, size_t len);
	/*
	 * Optional (NULL: send). Like send, for bytes the caller keeps
	 * unchanged and allocated until the peer acknowledged them, which an
	 * engine may lend to the kernel instead of copying (vmsplice). An
	 * engine that lends also has <unsent>: the caller must keep lent
	 * bytes until the socket no longer holds them, since the peer can
	 * acknowledge a chunk through another copy (a re-send on another
	 * connection) before this one left the socket.
	 */
	ssize_t (*send_stable)(struct mr_conn *c, const void *p, size_t len);
	/*
	 * Optional (NULL: the engine never lends, send_stable copies).
	 * Sending thread. Bytes written to the socket that its peer has not
	 * yet acknowledged (SIOCOUTQ): the lent bytes among them are still
	 * read by the kernel. Returns >= 0 or -errno.
	 */
	ssize_t (*unsent)(struct mr_conn *c);
	/*
	 * Receiving thread. Up to <len> bytes (len > 0). Returns > 0, 0 at a
	 * clean end of the peer's stream, -EAGAIN when the socket's receive
	 * timeout (SO_RCVTIMEO) expired with nothing lost, -ECONNRESET for an
	 * unclean end, -EKEYEXPIRED, -EIO.
	 */
	ssize_t (*recv)(struct mr_conn *c, void *p, size_t len);
	/*
	 * Optional. Called by the sending (receiving) thread before its first
	 * send (recv) and after its last: an engine may set up a transport of
	 * its own bound to that thread (an io_uring). Never fails: an engine
	 * that cannot keeps the socket calls, with the reason in <why> ("" if
	 * there is nothing to say).
	 */
	void (*start_tx)(struct mr_conn *c, const struct mr_conn_io *io, char *why, size_t whylen);
	void (*stop_tx)(struct mr_conn *c);
	void (*start_rx)(struct mr_conn *c, const struct mr_conn_io *io, char *why, size_t whylen);
	void (*stop_rx)(struct mr_conn *c);
	/*
	 * Sending thread. Ends our direction inside the protocol, best effort
	 * and bounded in time (TLS: close_notify; plaintext: shutdown SHUT_WR).
	 */
	void (*bye)(struct mr_conn *c);
	/* Optional: one line on why a faster path is not used (e.g. kernel TLS), "" if none. */
	const char *(*note)(const struct mr_conn *c);
	/* Frees the engine's state, not c->fd (mr_conn_free closes it when owned). */
	void (*free)(struct mr_conn *c);
};

/* The part every engine embeds first. Fields below ops are for engines and mr_conn_*. */
struct mr_conn {
	const struct mr_conn_ops *ops;
	int fd;      /* the socket; the session may shutdown() it from any thread */
	bool own_fd; /* mr_conn_free closes fd */
	const char *peer; /* the other end in messages: "peer", or "server"/"client" (static text) */
	char tx_err[MR_CONN_ERR_LEN]; /* sending thread */
	char rx_err[MR_CONN_ERR_LEN]; /* receiving thread */
	atomic_int last;              /* which of the two texts is newer */
};

/* For engines: sets up the common part (no text yet). */
void mr_conn_init(struct mr_conn *c, const struct mr_conn_ops *ops, int fd, bool own_fd);

/* For engines: sets the sending (receiving) thread's error text, newest from now on. */
void mr_conn_tx_error(struct mr_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mr_conn_rx_error(struct mr_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* See struct mr_conn_ops. Also -EINVAL for a NULL connection or buffer, -EMSGSIZE over SSIZE_MAX. */
MR_MUST_CHECK ssize_t mr_conn_send(struct mr_conn *c, const void *p, size_t len);
MR_MUST_CHECK ssize_t mr_conn_send_stable(struct mr_conn *c, const void *p, size_t len);
/* Does <c>'s engine lend what send_stable gets (conn_ops.unsent)? */
bool mr_conn_lends(const struct mr_conn *c);
/* Sending thread, or after both threads ended: conn_ops.unsent, or -EOPNOTSUPP. */
ssize_t mr_conn_unsent(struct mr_conn *c);
MR_MUST_CHECK ssize_t mr_conn_recv(struct mr_conn *c, void *p, size_t len);

/*
 * Receiving thread. Exactly <len> bytes: returns len, 0 on a clean end
 * before the first byte, -EAGAIN only if nothing was received, -ETIMEDOUT
 * if the receive timeout expired part way (the bytes so far are lost:
 * treat the connection as broken), -ECONNRESET on an end part way, or
 * another -errno of recv.
 */
MR_MUST_CHECK ssize_t mr_conn_recv_all(struct mr_conn *c, void *p, size_t len);

void mr_conn_start_tx(struct mr_conn *c, const struct mr_conn_io *io, char *why, size_t whylen);
void mr_conn_stop_tx(struct mr_conn *c);
void mr_conn_start_rx(struct mr_conn *c, const struct mr_conn_io *io, char *why, size_t whylen);
void mr_conn_stop_rx(struct mr_conn *c);

/* Sending thread: ends our direction inside the protocol (ops->bye). NULL-safe. */
void mr_conn_bye(struct mr_conn *c);

/*
 * Sending thread: bye, then shutdown(SHUT_WR): the peer reads the end of
 * our stream while we go on reading its. NULL-safe.
 */
void mr_conn_half_close(struct mr_conn *c);

/* Text of the newest send or receive failure, "" if none. Any thread. NULL-safe. */
const char *mr_conn_last_error(const struct mr_conn *c);

/* The engine's name and its note (see struct mr_conn_ops). NULL-safe. */
const char *mr_conn_name(const struct mr_conn *c);
const char *mr_conn_note(const struct mr_conn *c);

/* Frees the engine and closes the socket if the connection owns it. NULL-safe. */
void mr_conn_free(struct mr_conn *c);

/*
 * The plaintext engine (stream/plain.c): bytes raw over connected socket
 * <fd> (no encryption, no integrity: an authenticated unix socket, or
 * --insecure-plaintext after a TLS handshake). <unread>/<unread_len>: bytes
 * already read from the socket that come first (copied). <own_fd>: close
 * fd in mr_conn_free. Returns 0 with *out set, or -EINVAL/-ENOMEM (fd
 * untouched then).
 */
MR_MUST_CHECK int mr_conn_plain(struct mr_conn **out, int fd, bool own_fd, const void *unread, size_t unread_len);

#endif
