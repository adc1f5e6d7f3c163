/* SPDX-License-Identifier: MIT */
/*
 * The plaintext engine of the connection interface (conn.h): bytes go raw
 * over the socket, with no record layer. Used for a unix socket whose
 * peer the kernel vouches for, and for --insecure-plaintext after an
 * authenticated TLS handshake (docs/PROTOCOL.md §4.4), where the bytes TLS
 * had received beyond its last record are handed over as <unread>.
 *
 * Bytes the caller keeps until they are acknowledged (send_stable) reach
 * the socket without a copy into the kernel: vmsplice lends their pages to
 * a pipe, splice moves them on.
 */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

struct plain_conn {
	struct mr_conn conn;
	int pipe[2];            /* sending thread: vmsplice/splice pipe, -1 until needed */
	unsigned char *unread;  /* receiving thread: bytes read before this engine took over ... */
	size_t upos, ulen;      /* ... [upos, ulen) still to return */
};

static struct plain_conn *plain_of(struct mr_conn *c)
{
	return (struct plain_conn *)c;
}

/* Sending thread. Returns the errno of a failed send, as mr_conn_send reports it, with the text set. */
static ssize_t plain_tx_failed(struct mr_conn *c, int e)
{
	mr_conn_tx_error(c, "cannot send to the %s: %s", c->peer, strerror(e));
	if (e == EPIPE || e == ECONNRESET)
		return -e;
	return -EIO;
}

/* Sending thread. Sends all <len> bytes with send(). */
static ssize_t plain_send(struct mr_conn *c, const void *p, size_t len)
{
	const unsigned char *b = p;
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(c->fd, b + off, len - off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue; /* SO_SNDTIMEO expired: keep trying (shutdown() ends it) */
			return plain_tx_failed(c, errno);
		}
		off += (size_t)n;
	}
	return (ssize_t)len;
}

/*
 * Sending thread: bytes the caller keeps unchanged until the peer
 * acknowledged them. A pipe that cannot be made, or a vmsplice that fails
 * before anything moved, falls back to send().
 */
static ssize_t plain_send_stable(struct mr_conn *c, const void *p, size_t len)
{
	struct plain_conn *pc = plain_of(c);
	const unsigned char *b = p;
	size_t off = 0;

	if (pc->pipe[0] < 0) {
		if (pipe2(pc->pipe, O_CLOEXEC) < 0) {
			pc->pipe[0] = pc->pipe[1] = -1;
			return plain_send(c, p, len);
		}
		(void)fcntl(pc->pipe[1], F_SETPIPE_SZ, 1 << 20); /* fewer rounds; the default 64 KiB works too */
	}
	while (off < len) {
		struct iovec v = { (void *)(uintptr_t)(b + off), len - off };
		ssize_t n = vmsplice(pc->pipe[1], &v, 1, 0);
		size_t left;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) /* the pipe is empty here: send() the rest */
			return plain_send(c, b + off, len - off) < 0 ? -EPIPE : (ssize_t)len;
		left = (size_t)n;
		while (left > 0) {
			ssize_t m = splice(pc->pipe[0], NULL, c->fd, NULL, left,
					   SPLICE_F_MOVE | (off + (size_t)n < len ? SPLICE_F_MORE : 0));

			if (m < 0 && (errno == EINTR || errno == EAGAIN))
				continue; /* EAGAIN: SO_SNDTIMEO expired; keep trying (shutdown() ends it) */
			if (m <= 0) {
				int e = m < 0 ? errno : EPIPE;

				mr_conn_tx_error(c, "cannot send to the %s: %s", c->peer, strerror(e));
				return e == ECONNRESET ? -ECONNRESET : -EPIPE;
			}
			left -= (size_t)m;
		}
		off += (size_t)n;
	}
	return (ssize_t)len;
}

/* Sending thread. What the socket still holds of what was sent: lent pages among it are still read. */
static ssize_t plain_unsent(struct mr_conn *c)
{
	int n = 0;

	if (ioctl(c->fd, SIOCOUTQ, &n) < 0)
		return -errno;
	return n;
}

/* Receiving thread. The unread bytes first, then the socket straight into <p>; 0 when the peer closed. */
static ssize_t plain_recv(struct mr_conn *c, void *p, size_t len)
{
	struct plain_conn *pc = plain_of(c);
	ssize_t n;

	if (pc->upos < pc->ulen) {
		size_t k = pc->ulen - pc->upos < len ? pc->ulen - pc->upos : len;

		memcpy(p, pc->unread + pc->upos, k);
		pc->upos += k;
		return (ssize_t)k;
	}
	for (;;) {
		n = recv(c->fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n >= 0)
			return n; /* 0: the peer closed (plaintext has no close_notify) */
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			mr_conn_rx_error(c, "nothing from the %s within the receive timeout", c->peer);
			return -EAGAIN;
		}
		n = -errno;
		mr_conn_rx_error(c, "cannot receive from the %s: %s", c->peer, strerror(errno));
		return n == -ECONNRESET || n == -EPIPE ? -ECONNRESET : -EIO;
	}
}

/* Sending thread. No protocol above the socket: a FIN is the clean end. */
static void plain_bye(struct mr_conn *c)
{
	shutdown(c->fd, SHUT_WR);
}

static void plain_free(struct mr_conn *c)
{
	struct plain_conn *pc = plain_of(c);

	if (pc->pipe[0] >= 0) {
		close(pc->pipe[0]);
		close(pc->pipe[1]);
	}
	free(pc->unread);
	free(pc);
}

static const struct mr_conn_ops plain_ops = {
	.name = "plaintext",
	.send = plain_send,
	.send_stable = plain_send_stable,
	.unsent = plain_unsent,
	.recv = plain_recv,
	.bye = plain_bye,
	.free = plain_free,
};

int mr_conn_plain(struct mr_conn **out, int fd, bool own_fd, const void *unread, size_t unread_len)
{
	struct plain_conn *pc;

	if (!out || fd < 0 || (!unread && unread_len))
		return -EINVAL;
	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	if (unread_len) {
		pc->unread = malloc(unread_len);
		if (!pc->unread) {
			free(pc);
			return -ENOMEM;
		}
		memcpy(pc->unread, unread, unread_len);
		pc->ulen = unread_len;
	}
	mr_conn_init(&pc->conn, &plain_ops, fd, own_fd);
	pc->pipe[0] = pc->pipe[1] = -1;
	*out = &pc->conn;
	return 0;
}
