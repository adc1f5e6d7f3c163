/* SPDX-License-Identifier: MIT */
/*
 * SSH transport, the I/O side (see ssh.c for the two libssh2 traits that
 * shape it): libssh2's socket callbacks, waiting without the lock, error
 * codes, and the data path that one receiving and one sending thread share.
 */
#include "ssh_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libssh2.h>

#include "msg.h"

/* ---------------------------------------------------------------------- */
/* I/O callbacks and waiting */

/*
 * libssh2 also reads ssh-agent's socket through this callback, and 1.10
 * cannot resume an agent signature after EAGAIN (agent_sign frees its
 * request on any error), so the agent is waited for here (it is local;
 * SSH_AGENT_MS bounds a hung one).
 */
enum { SSH_AGENT_MS = 10000 };

LIBSSH2_RECV_FUNC(ssh_recv_cb)
{
	struct mr_ssh *c = *abstract;
	ssize_t n;

	if (socket != c->fd) {
		struct pollfd pf = { .fd = socket, .events = POLLIN };

		if (poll(&pf, 1, SSH_AGENT_MS) == 0)
			return -ETIMEDOUT;
	}
	n = recv(socket, buffer, length, flags | MSG_DONTWAIT);

	if (n < 0)
		return -errno;
	if (n > 0) {
		c->consumed = true;
		if (socket == c->fd) {
			/*
			 * sshd does not set TCP_NODELAY for a forwarding-only
			 * connection, so its small frame (an END, a VERIFIED)
			 * waits behind an unacknowledged one until our ACK,
			 * which the kernel would delay by 40 ms; quick-ack mode
			 * ends after each ACK, hence after every read. Over SSH
			 * this took 60 to 140 ms off a migration's end.
			 */
			int one = 1;

			(void)setsockopt(socket, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		}
	}
	return n;
}

/* Never short (see the top of the file): waits for POLLOUT, or fails on abort. */
LIBSSH2_SEND_FUNC(ssh_send_cb)
{
	struct mr_ssh *c = *abstract;
	size_t off = 0;

	while (off < length) {
		ssize_t n = send(socket, (const char *)buffer + off, length - off, flags | MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		struct pollfd pf[3] = { { .fd = socket, .events = POLLOUT },
					{ .fd = c->cancel, .events = POLLIN },
					{ .fd = atomic_load(&c->abort_fd), .events = 0 } };
		int snd = atomic_load(&c->snd_ms), r = poll(pf, 3, snd > 0 ? snd : -1);

		if (r < 0 && errno != EINTR)
			return -errno;
		if (pf[1].revents || pf[2].revents) {
			atomic_store(&c->aborted, true); /* the session is unusable from here on */
			return -ECONNABORTED;
		}
		if (r == 0)
			return -ETIMEDOUT; /* the kernel took nothing for the whole send timeout */
	}
	return (ssize_t)length;
}

int64_t ssh_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Waits (without c->mu) until the socket is readable, <role> is woken, or
 * the deadline (-1: none) passes. Returns 0, -ECANCELED or -ETIMEDOUT.
 */
int ssh_wait(struct mr_ssh *c, int role, int64_t deadline)
{
	int r;

	/*
	 * Only input is ever waited for here: our send callback never leaves
	 * libssh2 with a half-sent packet, so an EAGAIN always means "needs
	 * bytes from the server" (and libssh2_session_block_directions, which
	 * reads session state, would need c->mu).
	 */
	for (;;) {
		struct pollfd pf[4] = { { .fd = c->fd, .events = POLLIN },
					{ .fd = c->cancel, .events = POLLIN },
					{ .fd = c->wake[role], .events = POLLIN },
					{ .fd = atomic_load(&c->abort_fd), .events = 0 } };
		int tmo = -1;

		if (deadline >= 0) {
			int64_t left = deadline - ssh_now_ms();

			if (left <= 0)
				return -ETIMEDOUT;
			tmo = left > INT_MAX ? INT_MAX : (int)left;
		}
		r = poll(pf, 4, tmo);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (pf[1].revents || pf[3].revents || atomic_load(&c->aborted)) {
			atomic_store(&c->aborted, true);
			return -ECANCELED;
		}
		if (pf[2].revents) {
			uint64_t v;

			if (read(c->wake[role], &v, sizeof(v)) < 0) {
				/* nothing to reset: the next poll tells */
			}
		}
		if (r > 0)
			return 0;
	}
}

/* Under c->mu, after every libssh2 call by <role>: wake the other role if we may have read its packets. */
static void ssh_after_call(struct mr_ssh *c, int role)
{
	if (c->consumed && c->waiting[!role]) {
		uint64_t one = 1;

		if (write(c->wake[!role], &one, sizeof(one)) < 0) {
			/* the counter cannot overflow in practice; the peer polls anyway */
		}
	}
	c->consumed = false;
}

/* ---------------------------------------------------------------------- */
/* Errors */

void ssh_lib_error(struct mr_ssh *c, char *buf, size_t len)
{
	char *msg = NULL;
	int mlen = 0;

	libssh2_session_last_error(c->s, &msg, &mlen, 0);
	snprintf(buf, len, "%.*s", mlen > 0 ? mlen : 0, msg ? msg : "");
}

/* A libssh2 error code of the data path as -errno. */
int ssh_errno(int rc)
{
	switch (rc) {
	case LIBSSH2_ERROR_ALLOC:
		return -ENOMEM;
	case LIBSSH2_ERROR_SOCKET_DISCONNECT:
	case LIBSSH2_ERROR_SOCKET_RECV:
	case LIBSSH2_ERROR_SOCKET_SEND:
		return -ECONNRESET;
	case LIBSSH2_ERROR_CHANNEL_CLOSED:
	case LIBSSH2_ERROR_CHANNEL_EOF_SENT:
		return -EPIPE;
	case LIBSSH2_ERROR_TIMEOUT:
		return -ETIMEDOUT;
	default:
		return -EIO;
	}
}

/* ---------------------------------------------------------------------- */
/* Data path */

/* -1 for no timeout. */
static int64_t deadline_after(int ms)
{
	return ms > 0 ? ssh_now_ms() + ms : -1;
}

/* Under c->mu: record the error text of a failed data-path call. */
static int data_error(struct mr_ssh *c, int rc)
{
	if (atomic_load(&c->aborted))
		return -ECANCELED;
	ssh_lib_error(c, c->last, sizeof(c->last));
	return ssh_errno(rc);
}

/* Under c->mu: waits for the socket as <role> until <deadline> (-1: none), re-taking the lock. */
static int data_wait(struct mr_ssh *c, int role, int64_t deadline)
{
	int r;

	c->waiting[role] = true;
	pthread_mutex_unlock(&c->mu);
	r = ssh_wait(c, role, deadline);
	pthread_mutex_lock(&c->mu);
	c->waiting[role] = false;
	return r;
}

ssize_t mr_ssh_send_all(struct mr_ssh *c, const void *buf, size_t len)
{
	const char *p = buf;
	size_t off = 0;
	ssize_t r = 0;
	int snd = atomic_load(&c->snd_ms);
	int64_t deadline = deadline_after(snd);

	pthread_mutex_lock(&c->mu);
	if (c->eof_sent)
		r = -EPIPE;
	while (r == 0 && off < len) {
		ssize_t n;

		if (atomic_load(&c->aborted)) {
			r = -ECANCELED;
			break;
		}
		n = libssh2_channel_write(c->ch, p + off, len - off);
		ssh_after_call(c, SSH_ROLE_TX);
		if (n > 0) {
			off += (size_t)n;
			deadline = deadline_after(snd); /* the timeout bounds a stall, not the whole send */
		} else if (n == 0 || n == LIBSSH2_ERROR_EAGAIN) {
			/* The peer's window is closed: its adjustment comes in on the socket. */
			r = data_wait(c, SSH_ROLE_TX, deadline);
			if (r == -ETIMEDOUT)
				snprintf(c->last, sizeof(c->last), "the peer opened no window for %d ms", snd);
		} else {
			r = data_error(c, (int)n);
		}
	}
	pthread_mutex_unlock(&c->mu);
	return r < 0 ? r : (ssize_t)len;
}

ssize_t mr_ssh_recv(struct mr_ssh *c, void *buf, size_t len)
{
	int64_t deadline = deadline_after(atomic_load(&c->rcv_ms));
	ssize_t n;

	if (len == 0)
		return 0;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		if (atomic_load(&c->aborted)) {
			n = -ECANCELED;
			break;
		}
		n = libssh2_channel_read(c->ch, buf, len);
		ssh_after_call(c, SSH_ROLE_RX);
		if (n >= 0) /* 0: the peer sent EOF or closed the channel */
			break;
		if (n == LIBSSH2_ERROR_EAGAIN) {
			int w = data_wait(c, SSH_ROLE_RX, deadline);

			if (w < 0) {
				n = w == -ETIMEDOUT ? -EAGAIN : w; /* nothing received, nothing lost */
				break;
			}
			continue;
		}
		n = data_error(c, (int)n);
		break;
	}
	pthread_mutex_unlock(&c->mu);
	return n;
}

int mr_ssh_shutdown_send(struct mr_ssh *c)
{
	int r = 0, rc;

	pthread_mutex_lock(&c->mu);
	while (!c->eof_sent) {
		if (atomic_load(&c->aborted)) {
			r = -ECANCELED;
			break;
		}
		rc = libssh2_channel_send_eof(c->ch);
		ssh_after_call(c, SSH_ROLE_TX);
		if (rc == 0) {
			c->eof_sent = true;
		} else if (rc == LIBSSH2_ERROR_EAGAIN) {
			if ((r = data_wait(c, SSH_ROLE_TX, deadline_after(atomic_load(&c->snd_ms)))) < 0)
				break;
		} else {
			r = data_error(c, rc);
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return r;
}

void mr_ssh_abort(struct mr_ssh *c)
{
	uint64_t one = 1;

	atomic_store(&c->aborted, true);
	if (write(c->cancel, &one, sizeof(one)) < 0) {
		/* an eventfd write fails only on overflow; the flag is set anyway */
	}
	/* Also wake a peer blocked in the kernel on the socket. */
	(void)shutdown(c->fd, SHUT_RDWR);
}
