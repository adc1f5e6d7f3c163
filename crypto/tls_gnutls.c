/* SPDX-License-Identifier: MIT */
/*
 * GnuTLS's own transport and record engine ("gnutls").
 *
 * The transport (pull, vec_push) carries the handshake of every session:
 * our pull keeps the peer's first bytes, so a peer that does not speak
 * TLS is named at once. After the handshake, with this engine, it reads
 * the socket through rbuf and collects the records of one send in sbuf.
 *
 * The engine is gnutls_record_send/recv: the fallback when the suite is
 * not one crypto/record.c seals, or GnuTLS does not give its keys, and
 * the yardstick for comparisons (MIGRELAY_TLS_RECORDS=gnutls).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <gnutls/gnutls.h>

#include "tls_int.h"

/* True while this thread is inside gnutls_send: only then are records collected in sbuf. */
static __thread bool tls_in_send;

/* Sending thread. Writes out sbuf. Returns 0, or -1 with errno set. */
static int tls_flush(struct mr_tls *t)
{
	size_t off = 0;

	while (off < t->slen) {
		ssize_t n = send(t->fd, t->sbuf + off, t->slen - off, MSG_NOSIGNAL);

		if (n < 0) {
			/* EAGAIN: SO_SNDTIMEO expired; keep trying, as GnuTLS would (shutdown() ends it) */
			if (errno == EINTR || errno == EAGAIN)
				continue;
			t->push_errno = errno;
			t->slen = 0;
			return -1;
		}
		off += (size_t)n;
	}
	t->slen = 0;
	return 0;
}

static ssize_t tls_vec_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
	struct mr_tls *t = ptr;
	size_t total = 0;

	if (!t->buffered || !tls_in_send) {
		struct msghdr m = { .msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)iovcnt };

		return sendmsg(t->fd, &m, MSG_NOSIGNAL);
	}
	for (int i = 0; i < iovcnt; i++) {
		if (t->slen + iov[i].iov_len > TLS_SBUF && tls_flush(t) < 0)
			return -1;
		if (iov[i].iov_len > TLS_SBUF) {
			errno = EMSGSIZE;
			return -1;
		}
		memcpy(t->sbuf + t->slen, iov[i].iov_base, iov[i].iov_len);
		t->slen += iov[i].iov_len;
		total += iov[i].iov_len;
	}
	return (ssize_t)total;
}

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
	struct mr_tls *t = ptr;
	ssize_t n;

	if (t->buffered) {
		if (t->rpos == t->rlen && len < TLS_RBUF) {
			n = recv(t->fd, t->rbuf, TLS_RBUF, 0);
			if (n <= 0) {
				if (n < 0)
					t->pull_errno = errno;
				return n;
			}
			t->rpos = 0;
			t->rlen = (size_t)n;
		}
		if (t->rpos < t->rlen) {
			size_t k = t->rlen - t->rpos < len ? t->rlen - t->rpos : len;

			memcpy(buf, t->rbuf + t->rpos, k);
			t->rpos += k;
			return (ssize_t)k;
		}
	}
	n = recv(t->fd, buf, len, 0);

	if (n < 0) {
		t->pull_errno = errno;
		return n; /* errno still set: GnuTLS reads it */
	}
	if (n > 0 && t->capturing && t->head_len < sizeof(t->head)) {
		size_t k = sizeof(t->head) - t->head_len;

		if (k > (size_t)n)
			k = (size_t)n;
		memcpy(t->head + t->head_len, buf, k);
		t->head_len += k;
		/* fail at once instead of waiting for a record header that never comes */
		if (!tls_head_is_tls(t)) {
			t->pull_errno = EPROTO;
			errno = EPROTO;
			return -1;
		}
	}
	return n;
}

static int tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned int ms)
{
	struct mr_tls *t = ptr;
	struct pollfd p = { .fd = t->fd, .events = POLLIN };
	int timeout = ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : ms > INT_MAX ? INT_MAX : (int)ms;

	if (t->buffered && t->rpos < t->rlen)
		return 1;

	return poll(&p, 1, timeout);
}

static struct mr_tls *gnutls_tls(const struct mr_conn *c)
{
	return ((const struct tls_conn *)c)->tls;
}

/* Sending thread: all <len> bytes through gnutls_record_send. */
static ssize_t gnutls_send(struct mr_conn *conn, const void *p, size_t len)
{
	struct mr_tls *t = gnutls_tls(conn);
	const unsigned char *c = p;
	size_t off = 0;
	ssize_t n;

	tls_in_send = true;
	while (off < len) {
		/* GnuTLS sends at most one record per call and returns its size */
		n = gnutls_record_send(t->s, c + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		/* GnuTLS keeps the pending record: call again with the same arguments */
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		tls_in_send = false;
		t->slen = 0;
		if (n == GNUTLS_E_PUSH_ERROR || n == GNUTLS_E_INVALID_SESSION || n == GNUTLS_E_PREMATURE_TERMINATION) {
			/* GnuTLS reports EPIPE and ECONNRESET from send() as premature termination */
			mr_conn_tx_error(conn,
					 "cannot send to the %s: the connection is closed or reset (a receive on this connection may tell why)",
					 conn->peer);
			return n == GNUTLS_E_PREMATURE_TERMINATION ? -ECONNRESET : -EPIPE;
		}
		mr_conn_tx_error(conn, "cannot send to the %s: %s", conn->peer,
				 n == 0 ? "no progress" : gnutls_strerror((int)n));
		return -EIO;
	}
	tls_in_send = false;
	if (t->slen && tls_flush(t) < 0) {
		int e = t->push_errno;

		mr_conn_tx_error(conn, "cannot send to the %s: %s", conn->peer, strerror(e));
		return e == ECONNRESET ? -ECONNRESET : -EPIPE;
	}
	return (ssize_t)len;
}

/* Receiving thread: up to <len> bytes through gnutls_record_recv. */
static ssize_t gnutls_recv(struct mr_conn *c, void *p, size_t len)
{
	struct mr_tls *t = gnutls_tls(c);
	ssize_t n;
	int alert;

	for (;;) {
		t->pull_errno = 0;
		n = gnutls_record_recv(t->s, p, len);
		if (n >= 0)
			return n;
		switch (n) {
		case GNUTLS_E_INTERRUPTED:
		case GNUTLS_E_WARNING_ALERT_RECEIVED:
			continue;
		case GNUTLS_E_AGAIN:
			mr_conn_rx_error(c, "nothing from the %s within the receive timeout", c->peer);
			return -EAGAIN;
		case GNUTLS_E_PREMATURE_TERMINATION:
			mr_conn_rx_error(c, "the %s closed the connection without a TLS close_notify", c->peer);
			return -ECONNRESET;
		case GNUTLS_E_PULL_ERROR:
			mr_conn_rx_error(c, "cannot receive from the %s: %s", c->peer,
					 strerror(t->pull_errno ? t->pull_errno : EIO));
			return t->pull_errno == ECONNRESET || t->pull_errno == EPIPE ? -ECONNRESET : -EIO;
		case GNUTLS_E_FATAL_ALERT_RECEIVED: {
			char text[TLS_MSG_LEN];

			alert = (int)gnutls_alert_get(t->s);
			tls_alert_text(t, alert, text, sizeof(text));
			mr_conn_rx_error(c, "%s", text);
			return -EIO;
		}
		default:
			mr_conn_rx_error(c, "cannot receive from the %s: %s", c->peer, gnutls_strerror((int)n));
			return -EIO;
		}
	}
}

/* Sending thread. close_notify through GnuTLS, best effort: three SO_SNDTIMEO expiries at most. */
static void gnutls_conn_bye(struct mr_conn *c)
{
	struct mr_tls *t = gnutls_tls(c);
	int r, tries = 3;

	do
		r = gnutls_bye(t->s, GNUTLS_SHUT_WR);
	while ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && --tries > 0);
}

/*
 * Receiving thread, leaving the records: what GnuTLS opened and we did not
 * return yet, then the raw bytes our pull read ahead into rbuf.
 */
static int gnutls_unread(struct tls_conn *tc, unsigned char **buf, size_t *len)
{
	struct mr_tls *t = tc->tls;
	size_t pend = gnutls_record_check_pending(t->s), raw = t->rlen - t->rpos, n = 0;
	unsigned char *b;

	*buf = NULL;
	*len = 0;
	if (pend + raw == 0)
		return 0;
	if (!(b = malloc(pend + raw)))
		return -ENOMEM;
	while (n < pend) {
		ssize_t k = gnutls_record_recv(t->s, b + n, pend - n);

		if (k <= 0) {
			free(b);
			return -EIO;
		}
		n += (size_t)k;
	}
	if (raw)
		memcpy(b + n, t->rbuf + t->rpos, raw);
	t->rpos = t->rlen = 0;
	*buf = b;
	*len = n + raw;
	return 0;
}

static void gnutls_conn_free(struct mr_conn *c)
{
	struct tls_conn *tc = (struct tls_conn *)c;

	tls_conn_release(tc);
	free(tc);
}

static const struct mr_conn_ops gnutls_ops = {
	.name = "gnutls",
	.send = gnutls_send,
	.recv = gnutls_recv,
	.bye = gnutls_conn_bye,
	.note = tls_conn_note,
	.free = gnutls_conn_free,
};

int tls_gnutls_conn(struct mr_tls *t, struct mr_conn **out)
{
	struct tls_conn *tc = calloc(1, sizeof(*tc));

	if (!tc)
		return -ENOMEM;
	/* without the buffers, plain unbuffered I/O still works */
	if (!t->rbuf)
		t->rbuf = malloc(TLS_RBUF);
	if (!t->sbuf)
		t->sbuf = malloc(TLS_SBUF);
	t->buffered = t->rbuf && t->sbuf;
	mr_conn_init(&tc->conn, &gnutls_ops, t->fd, false);
	tc->conn.peer = tls_peer_role(t);
	tc->tls = t;
	tc->unread = gnutls_unread;
	*out = &tc->conn;
	return 0;
}

void tls_gnutls_transport(struct mr_tls *t)
{
	/* both directions through us: the first bytes are inspected, and records are batched (tls_pull, tls_vec_push) */
	gnutls_transport_set_ptr2(t->s, t, t);
	gnutls_transport_set_pull_function(t->s, tls_pull);
	gnutls_transport_set_vec_push_function(t->s, tls_vec_push);
	gnutls_transport_set_pull_timeout_function(t->s, tls_pull_timeout);
}
