/* SPDX-License-Identifier: MIT */
/*
 * The in-place TLS record engine ("in-place"), after a GnuTLS handshake:
 * crypto/record.c seals each record from the caller's buffer into our
 * send buffer and opens records where they arrived, or straight into the
 * caller's buffer, with the traffic keys of the handshake. One cipher pass
 * and no other copy of the bulk data.
 *
 * Under the records, either send()/recv() on the socket through sbuf and
 * rbuf, or the io_uring engine of stream/uring.h, set up by the sending
 * and the receiving thread themselves (start_tx, start_rx): records are
 * then sealed into its registered buffers and opened in its provided
 * buffers. Only tls_tx_flush, tls_tx_space, tls_rx_fill and
 * tls_rx_fill_ring touch the transport.
 *
 * Kernel TLS (tls_ktls.c) shares this state: when the kernel takes only
 * the send keys, records are opened here.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>

#include "../stream/uring.h"
#include "tls_int.h"

static struct tls_rec_conn *rec_of(struct mr_conn *c)
{
	return (struct tls_rec_conn *)c;
}

/*
 * Transport of the record path: tls_tx_flush, tls_tx_space, tls_rx_fill
 * and tls_rx_fill_ring (with tls_rx_next) are the only functions that touch
 * the socket or the rings for records; the record logic above them is the
 * same for both.
 */

/*
 * Sending thread. Writes out what was sealed: sbuf with send() (one call
 * unless the socket is full), or the ring's buffer. Returns 0 or -errno.
 */
static int tls_tx_flush(struct tls_rec_conn *e)
{
	size_t off = 0, n = e->slen;

	if (e->utx) {
		unsigned char *b = e->tbuf;

		if (!n)
			return 0;
		e->tbuf = NULL; /* the ring's from now on, whatever the result */
		e->slen = 0;
		return mr_uring_tx_send(e->utx, b, n);
	}
	e->slen = 0;
	while (off < n) {
		ssize_t k = send(e->base.conn.fd, e->sbuf + off, n - off, MSG_NOSIGNAL);

		if (k < 0) {
			/* EAGAIN: SO_SNDTIMEO expired; keep trying (shutdown() ends it) */
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		off += (size_t)k;
	}
	return 0;
}

/*
 * Sending thread. Makes room for at least <need> bytes at the end of sbuf
 * (writing out what is there if it must) and returns where they go and
 * how many bytes fit. Returns 0 or -errno.
 */
static int tls_tx_space(struct tls_rec_conn *e, size_t need, unsigned char **p, size_t *room)
{
	int r;

	if (e->utx) {
		if (e->tbuf && e->tcap - e->slen < need && (r = tls_tx_flush(e)) < 0)
			return r;
		if (!e->tbuf) {
			if ((r = mr_uring_tx_get(e->utx, &e->tbuf, &e->tcap)) < 0) {
				e->tbuf = NULL;
				return r;
			}
			e->slen = 0;
			if (e->tcap < need)
				return -EMSGSIZE;
		}
		*p = e->tbuf + e->slen;
		*room = e->tcap - e->slen;
		return 0;
	}
	if (TLS_SBUF - e->slen < need && (r = tls_tx_flush(e)) < 0)
		return r;
	*p = e->sbuf + e->slen;
	*room = TLS_SBUF - e->slen;
	return 0;
}

/* Sending thread. <n> bytes at the place tls_tx_space gave are ready to go. */
static void tls_tx_commit(struct tls_rec_conn *e, size_t n)
{
	e->slen += n;
}

/*
 * Receiving thread. Reads what the socket has into rbuf behind the
 * unopened bytes [rpos, rlen); first moves a partial record at the tail to
 * the front when a whole record might not fit behind it (the only bytes
 * ever moved). Returns the bytes read, 0 at EOF, or -errno (-EAGAIN when
 * SO_RCVTIMEO expired).
 */
static ssize_t tls_rx_fill(struct tls_rec_conn *e)
{
	ssize_t n;

	if (e->rpos == e->rlen) {
		e->rpos = e->rlen = 0;
	} else if (e->rpos > 0 && TLS_RBUF - e->rpos < MR_REC_MAX) {
		memmove(e->rbuf, e->rbuf + e->rpos, e->rlen - e->rpos);
		e->rlen -= e->rpos;
		e->rpos = 0;
	}
	for (;;) {
		n = recv(e->base.conn.fd, e->rbuf + e->rlen, TLS_RBUF - e->rlen, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
		e->rlen += (size_t)n;
		return n;
	}
}

/* Receiving thread: the unread bytes the parser looks at next, rbuf's before the provided buffer's. */
static unsigned char *tls_rx_cur(struct tls_rec_conn *e, size_t *avail)
{
	if (e->rpos < e->rlen) {
		*avail = e->rlen - e->rpos;
		return e->rbuf + e->rpos;
	}
	if (e->uwin && e->uoff < e->ulen) {
		*avail = e->ulen - e->uoff;
		return e->uwin + e->uoff;
	}
	*avail = 0;
	return e->rbuf + e->rpos;
}

/* Receiving thread: <n> bytes at tls_rx_cur are used up. */
static void tls_rx_consume(struct tls_rec_conn *e, size_t n)
{
	if (e->rpos < e->rlen) {
		e->rpos += n;
		if (e->rpos == e->rlen)
			e->rpos = e->rlen = 0;
		return;
	}
	e->uoff += n;
}

/* Receiving thread: gives the provided buffer back once nothing in it is unread or waiting to be returned. */
static void tls_rx_release(struct tls_rec_conn *e)
{
	if (e->uwin && e->uoff >= e->ulen && !(e->plen && e->pp >= e->uwin && e->pp < e->uwin + e->ulen)) {
		mr_uring_rx_put(e->urx, e->ubid);
		e->uwin = NULL;
		e->uoff = e->ulen = 0;
	}
}

/* Receiving thread: the next provided buffer from the transport. Returns > 0, 0 at EOF, -errno. */
static ssize_t tls_rx_next(struct tls_rec_conn *e)
{
	const uint8_t *d;
	unsigned bid;
	ssize_t n;

	tls_rx_release(e);
	if (e->uwin)
		return (ssize_t)(e->ulen - e->uoff);
	n = mr_uring_rx_recv(e->urx, &d, &bid, e->rx_timeout_ms);
	if (n <= 0)
		return n;
	e->uwin = (unsigned char *)(uintptr_t)d; /* our buffer, lent to the kernel and back: records open in place */
	e->ubid = bid;
	e->uoff = 0;
	e->ulen = (size_t)n;
	return n;
}

/*
 * Receiving thread, with the io_uring ring: the record at tls_rx_cur is
 * incomplete (or nothing is there). Moves its bytes into rbuf if they are
 * in a provided buffer and appends from the next provided buffers exactly
 * what the record still lacks, so the bytes after it stay where they are.
 * Returns > 0 when there is more to parse, 0 at EOF, -errno.
 */
static ssize_t tls_rx_fill_ring(struct tls_rec_conn *e)
{
	size_t want, k;
	ssize_t n, rl;

	if (e->rpos == e->rlen) {
		e->rpos = e->rlen = 0;
		if (!e->uwin || e->uoff == e->ulen)
			return tls_rx_next(e); /* nothing partial: a fresh buffer to parse in place */
		/* a record's start at the end of the provided buffer: assemble it in rbuf */
		memcpy(e->rbuf, e->uwin + e->uoff, e->ulen - e->uoff);
		e->rlen = e->ulen - e->uoff;
		e->uoff = e->ulen;
	} else if (e->rpos > 0) {
		memmove(e->rbuf, e->rbuf + e->rpos, e->rlen - e->rpos);
		e->rlen -= e->rpos;
		e->rpos = 0;
	}
	for (;;) {
		if (e->rlen >= MR_REC_HDR) {
			rl = mr_rec_peek(e->rbuf, e->rlen);
			if (rl <= 0 || e->rlen >= (size_t)rl)
				return 1; /* complete, or a bad header for the parser to report */
			want = (size_t)rl - e->rlen;
		} else {
			want = MR_REC_HDR - e->rlen;
		}
		if ((n = tls_rx_next(e)) <= 0)
			return n;
		k = e->ulen - e->uoff < want ? e->ulen - e->uoff : want;
		memcpy(e->rbuf + e->rlen, e->uwin + e->uoff, k);
		e->rlen += k;
		e->uoff += k;
	}
}

const char *tls_rec_strerror(int e)
{
	switch (e) {
	case -EPROTO:
		return "a record with a bad header (not TLS 1.3 application data)";
	case -EMSGSIZE:
		return "an oversized record";
	case -EBADMSG:
		return "a record that failed authentication (corrupted or forged on the way, or not sent by the peer)";
	case -ENODATA:
		return "a record without a content type";
	default:
		return "a record we cannot open";
	}
}

/* Sending thread. Drops what was sealed and not sent. */
static void tls_tx_drop(struct tls_rec_conn *e)
{
	if (e->utx && e->tbuf) {
		mr_uring_tx_put(e->utx, e->tbuf);
		e->tbuf = NULL;
	}
	e->slen = 0;
}

/* Sending thread. Maps a failed flush to mr_conn_send's errno with the text set. */
static ssize_t tls_tx_failed(struct tls_rec_conn *e, int r)
{
	tls_tx_drop(e);
	mr_conn_tx_error(&e->base.conn, "cannot send to the %s: %s", e->base.conn.peer, strerror(-r));
	return r == -ECONNRESET ? -ECONNRESET : -EPIPE;
}

/* Sending thread. Seals <len> bytes from <c> into sbuf, at most 16 KiB a record, and sends them. */
static ssize_t tls_rec_send(struct tls_rec_conn *e, const unsigned char *c, size_t len)
{
	size_t off = 0, room;
	unsigned char *o;
	ssize_t n;
	int r;

	while (off < len) {
		struct iovec v = { (void *)(uintptr_t)(c + off), len - off };

		if (v.iov_len > MR_REC_MAX_PLAIN)
			v.iov_len = MR_REC_MAX_PLAIN;
		if ((r = tls_tx_space(e, v.iov_len + MR_REC_OVERHEAD, &o, &room)) < 0)
			return tls_tx_failed(e, r);
		n = mr_rec_seal(&e->tx, MR_REC_T_DATA, &v, 1, o, room);
		if (n < 0) {
			tls_tx_drop(e);
			if (n == -EKEYEXPIRED) {
				mr_conn_tx_error(&e->base.conn,
					       "cannot send to the %s: this connection's key has protected %llu records, its limit (the connection must be replaced by a new handshake for fresh keys)",
					       e->base.conn.peer, (unsigned long long)e->tx.seq);
				return -EKEYEXPIRED;
			}
			mr_conn_tx_error(&e->base.conn, "cannot send to the %s: sealing a TLS record failed (%s)", e->base.conn.peer,
				       strerror((int)-n));
			return -EIO;
		}
		tls_tx_commit(e, (size_t)n);
		off += v.iov_len;
	}
	if (e->slen && (r = tls_tx_flush(e)) < 0)
		return tls_tx_failed(e, r);
	return (ssize_t)len;
}


/* Receiving thread. The socket gave <r> (0: EOF) while a record was wanted; sets the text. */
ssize_t tls_rec_rx_failed(struct tls_rec_conn *e, ssize_t r)
{
	const char *peer = e->base.conn.peer;

	if (r == 0) {
		if (e->rpos < e->rlen)
			mr_conn_rx_error(&e->base.conn, "the %s closed the connection in the middle of a TLS record", peer);
		else
			mr_conn_rx_error(&e->base.conn, "the %s closed the connection without a TLS close_notify", peer);
		return -ECONNRESET;
	}
	if (r == -EAGAIN) {
		mr_conn_rx_error(&e->base.conn, "nothing from the %s within the receive timeout", peer);
		return -EAGAIN;
	}
	mr_conn_rx_error(&e->base.conn, "cannot receive from the %s: %s", peer, strerror((int)-r));
	return r == -ECONNRESET || r == -EPIPE ? -ECONNRESET : -EIO;
}

/*
 * Receiving thread. A record that is not application data: an alert or a
 * post-handshake message. Returns 1 to go on, 0 for close_notify, -EIO
 * with the text set.
 */
int tls_rec_control(struct tls_rec_conn *e, const unsigned char *c, size_t n, unsigned char type)
{
	const char *peer = e->base.conn.peer;
	size_t off = 0;

	if (type == MR_REC_T_ALERT) {
		char text[TLS_MSG_LEN];

		if (n != 2) {
			mr_conn_rx_error(&e->base.conn, "the %s sent a malformed TLS alert", peer);
			return -EIO;
		}
		if (c[1] == GNUTLS_A_CLOSE_NOTIFY) {
			e->rx_closed = true;
			return 0;
		}
		if (c[1] == GNUTLS_A_USER_CANCELED)
			return 1; /* a close_notify follows (RFC 8446 §6.1) */
		tls_alert_text(e->base.tls, c[1], text, sizeof(text));
		mr_conn_rx_error(&e->base.conn, "%s", text);
		return -EIO;
	}
	if (type != MR_REC_T_HANDSHAKE) {
		mr_conn_rx_error(&e->base.conn, "the %s sent a TLS record of unexpected content type %u", peer, type);
		return -EIO;
	}
	/* handshake messages: type(1) length(3) body; several may share a record */
	while (off < n) {
		size_t mlen;

		if (n - off < 4) {
			mr_conn_rx_error(&e->base.conn, "the %s sent a truncated TLS handshake message", peer);
			return -EIO;
		}
		mlen = (size_t)c[off + 1] << 16 | (size_t)c[off + 2] << 8 | c[off + 3];
		switch (c[off]) {
		case 4: /* NewSessionTicket: we never resume, so a ticket is of no use */
			break;
		case 24: /* KeyUpdate */
			mr_conn_rx_error(&e->base.conn,
				       "the %s sent a TLS KeyUpdate, which migrelay does not support (a migrelay peer replaces the connection by a new handshake instead; is the peer a migrelay?)",
				       peer);
			return -EIO;
		default:
			mr_conn_rx_error(&e->base.conn, "the %s sent an unexpected TLS handshake message (type %u) after the handshake",
				       peer, c[off]);
			return -EIO;
		}
		if (n - off - 4 < mlen)
			break; /* a ticket continued in the next record: ignored as well */
		off += 4 + mlen;
	}
	return 1;
}

/*
 * Receiving thread. Returns up to <len> bytes of content: from an opened
 * record waiting in rbuf (one copy, the caller's), else the next record
 * opened straight into <p> when it has room for the whole content, else
 * opened in place in rbuf.
 */
static ssize_t tls_rec_recv(struct tls_rec_conn *e, unsigned char *p, size_t len)
{
	for (;;) {
		unsigned char *rec, *content, type;
		size_t pl, avail;
		ssize_t rl, n;
		bool direct;
		int r;

		if (e->plen) {
			size_t k = e->plen < len ? e->plen : len;

			memcpy(p, e->pp, k);
			e->pp += k;
			e->plen -= k;
			return (ssize_t)k;
		}
		if (e->rx_closed)
			return 0;
		rec = tls_rx_cur(e, &avail);
		rl = mr_rec_peek(rec, avail);
		if (rl < 0) {
			mr_conn_rx_error(&e->base.conn, "the %s sent %s", e->base.conn.peer, tls_rec_strerror((int)rl));
			return -EIO;
		}
		if (rl == 0 || avail < (size_t)rl) {
			n = e->urx ? tls_rx_fill_ring(e) : tls_rx_fill(e);
			if (n <= 0)
				return tls_rec_rx_failed(e, n);
			continue;
		}
		direct = len >= (size_t)rl - MR_REC_HDR - MR_REC_TAG;
		if (direct) {
			r = mr_rec_open_to(&e->rx, rec, (size_t)rl, p, len, &pl, &type);
			content = p;
		} else {
			r = mr_rec_open(&e->rx, rec, (size_t)rl, &content, &pl, &type);
		}
		tls_rx_consume(e, (size_t)rl);
		if (r == -EKEYEXPIRED) {
			mr_conn_rx_error(&e->base.conn, "the %s sent more records under one key than migrelay accepts (%llu)",
				       e->base.conn.peer, (unsigned long long)e->rx.seq);
			return -EKEYEXPIRED;
		}
		if (r < 0) {
			mr_conn_rx_error(&e->base.conn, "the %s sent %s", e->base.conn.peer, tls_rec_strerror(r));
			return -EIO;
		}
		if (type != MR_REC_T_DATA) {
			r = tls_rec_control(e, content, pl, type);
			if (r <= 0)
				return r;
			continue;
		}
		if (pl == 0)
			continue; /* empty application data is allowed (RFC 8446 §5.4) */
		if (direct)
			return (ssize_t)pl;
		e->pp = content;
		e->plen = pl;
	}
}


/*
 * Sending thread. Seals and sends close_notify, best effort: like
 * gnutls_bye, it gives up after three SO_SNDTIMEO expiries, so a peer that
 * stopped reading cannot hold us here.
 */
static void inplace_bye(struct mr_conn *c)
{
	static const unsigned char alert[2] = { 1 /* warning */, GNUTLS_A_CLOSE_NOTIFY };
	struct tls_rec_conn *e = rec_of(c);
	struct iovec v = { (void *)(uintptr_t)alert, sizeof(alert) };
	int tries = 3;
	size_t off = 0, len;
	ssize_t n;

	tls_tx_drop(e);
	n = mr_rec_seal(&e->tx, MR_REC_T_ALERT, &v, 1, e->sbuf, TLS_SBUF);
	if (n <= 0)
		return;
	len = (size_t)n;
	while (off < len) {
		n = send(c->fd, e->sbuf + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EINTR || (errno == EAGAIN && --tries > 0)))
			continue;
		if (n < 0)
			return;
		off += (size_t)n;
	}
}

static uint64_t tls_seq_load(const unsigned char s[8])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | s[i];
	return v;
}
/* Sending thread. */
static ssize_t inplace_send(struct mr_conn *c, const void *p, size_t len)
{
	return tls_rec_send(rec_of(c), p, len);
}

ssize_t tls_inplace_recv(struct mr_conn *c, void *p, size_t len)
{
	return tls_rec_recv(rec_of(c), p, len);
}

/* Sending thread: its own io_uring with a registered pool for the sealed records, where the kernel allows. */
static void inplace_start_tx(struct mr_conn *c, const struct mr_conn_io *io, char *why, size_t whylen)
{
	struct tls_rec_conn *e = rec_of(c);

	if (e->utx || !io || !mr_uring_wanted())
		return;
	if (mr_uring_tx_new(&e->utx, c->fd, io->tx_bufs, io->tx_bufsize, why, whylen) < 0) {
		e->utx = NULL;
		return;
	}
	/* every send flushed sbuf before it returned: nothing is left to go before the ring's buffers */
	e->slen = 0;
	e->tbuf = NULL;
	if (io->loopback)
		/* loopback delivery copies the pages anyway: zero-copy would only add notifications */
		mr_uring_tx_set_zc_min(e->utx, SIZE_MAX);
}

/* Sending thread, at its end, while the socket is still open: cancels, waits for notifications, frees. */
static void inplace_stop_tx(struct mr_conn *c)
{
	struct tls_rec_conn *e = rec_of(c);

	if (!e->utx)
		return;
	tls_tx_drop(e);
	mr_uring_tx_free(e->utx);
	e->utx = NULL;
}

/* The receive timeout the socket asks for (SO_RCVTIMEO), in ms; -1 for none. */
static int rec_rx_timeout(int fd)
{
	struct timeval tv;
	socklen_t l = sizeof(tv);

	if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &l) < 0 || (tv.tv_sec == 0 && tv.tv_usec == 0))
		return -1;
	return (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
}

/*
 * Receiving thread: its own io_uring with a provided-buffer ring. The
 * socket's SO_RCVTIMEO now is the receive timeout from then on.
 */
static void inplace_start_rx(struct mr_conn *c, const struct mr_conn_io *io, char *why, size_t whylen)
{
	struct tls_rec_conn *e = rec_of(c);

	if (e->urx || !io || !mr_uring_wanted())
		return;
	if (mr_uring_rx_new(&e->urx, c->fd, io->rx_bufs, io->rx_bufsize, why, whylen) < 0) {
		e->urx = NULL;
		return;
	}
	e->rx_timeout_ms = rec_rx_timeout(c->fd); /* read once here, not per received buffer */
}

/* Receiving thread, at its end: gives back the buffer held (its unread bytes are dropped), frees the ring. */
static void inplace_stop_rx(struct mr_conn *c)
{
	struct tls_rec_conn *e = rec_of(c);

	if (!e->urx)
		return;
	if (e->uwin)
		mr_uring_rx_put(e->urx, e->ubid);
	if (e->plen && e->uwin && e->pp >= e->uwin && e->pp < e->uwin + e->ulen)
		e->plen = 0;
	e->uwin = NULL;
	e->uoff = e->ulen = 0;
	mr_uring_rx_free(e->urx);
	e->urx = NULL;
}

/* Receiving thread, leaving the records: the opened content not yet returned, then the raw bytes behind it. */
static int inplace_unread(struct tls_conn *tc, unsigned char **buf, size_t *len)
{
	struct tls_rec_conn *e = (struct tls_rec_conn *)tc;
	size_t raw = e->rlen - e->rpos;
	unsigned char *b;

	*buf = NULL;
	*len = 0;
	if (e->urx)
		return -EINVAL; /* an armed receive would take bytes recv() expects */
	if (e->plen + raw == 0)
		return 0;
	if (!(b = malloc(e->plen + raw)))
		return -ENOMEM;
	memcpy(b, e->pp, e->plen);
	memcpy(b + e->plen, e->rbuf + e->rpos, raw);
	*len = e->plen + raw;
	*buf = b;
	e->plen = 0;
	e->rpos = e->rlen = 0;
	return 0;
}

void tls_rec_free(struct mr_conn *c)
{
	struct tls_rec_conn *e = rec_of(c);

	inplace_stop_tx(c);
	inplace_stop_rx(c);
	mr_rec_free(&e->tx);
	mr_rec_free(&e->rx);
	free(e->rbuf);
	free(e->sbuf);
	tls_conn_release(&e->base);
	free(e);
}

const struct mr_conn_ops tls_inplace_ops = {
	.name = "in-place",
	.send = inplace_send,
	.recv = tls_inplace_recv,
	.start_tx = inplace_start_tx,
	.stop_tx = inplace_stop_tx,
	.start_rx = inplace_start_rx,
	.stop_rx = inplace_stop_rx,
	.bye = inplace_bye,
	.note = tls_conn_note,
	.free = tls_rec_free,
};

int tls_rec_conn(struct mr_tls *t, const struct mr_conn_ops *ops, const struct tls_keys *k, bool ktls_tx,
		 bool ktls_rx, struct mr_conn **out)
{
	struct tls_rec_conn *e = calloc(1, sizeof(*e));
	const char *lim = getenv("MIGRELAY_TLS_RECORD_LIMIT");
	int r = -ENOMEM;

	if (!e)
		return -ENOMEM;
	mr_conn_init(&e->base.conn, ops, t->fd, false);
	e->base.conn.peer = tls_peer_role(t);
	e->base.tls = t;
	e->rx_timeout_ms = -1;
	if (!ktls_tx && !(e->sbuf = malloc(TLS_SBUF)))
		goto fail;
	if (!ktls_rx && !(e->rbuf = malloc(TLS_RBUF)))
		goto fail;
	r = -EIO;
	if (!ktls_tx && mr_rec_init(&e->tx, k->cipher, k->key[0].data, k->key[0].size, k->iv[0].data, k->iv[0].size,
				    tls_seq_load(k->seq[0])) < 0)
		goto fail;
	if (!ktls_rx && mr_rec_init(&e->rx, k->cipher, k->key[1].data, k->key[1].size, k->iv[1].data, k->iv[1].size,
				    tls_seq_load(k->seq[1])) < 0)
		goto fail;
	if (lim && !ktls_tx) {
		/* tests: reach the per-key record limit (record.h) after a few records */
		unsigned long long n = strtoull(lim, NULL, 10);

		if (n >= 1 && n < MR_REC_LIMIT_DEFAULT)
			mr_rec_set_limit(&e->tx, e->tx.seq + n);
	}
	/* the kernel holds the socket's records: they cannot be left for plaintext */
	e->base.unread = ktls_tx || ktls_rx ? NULL : inplace_unread;
	*out = &e->base.conn;
	return 0;
fail:
	tls_rec_free(&e->base.conn);
	return r;
}
