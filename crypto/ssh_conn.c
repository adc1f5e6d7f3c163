/* SPDX-License-Identifier: MIT */
/*
 * The "ssh" engine of stream/conn.h over crypto/ssh.c. See ssh_conn.h for
 * why the connection's fd is one end of a socketpair.
 */
#include "ssh_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct ssh_conn {
	struct mr_conn base; /* first: the session holds &base */
	struct mr_ssh *ssh;
	int watch;           /* our end of the socketpair; base.fd is the other */
};

static int timeo_ms(int fd, int opt)
{
	struct timeval tv = { 0 };
	socklen_t l = sizeof(tv);

	if (getsockopt(fd, SOL_SOCKET, opt, &tv, &l) < 0)
		return 0;
	return (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
}

/* The session's timeouts live on its handle, as they would on a TCP socket; each call picks them up. */
static void sync_timeouts(struct ssh_conn *sc)
{
	mr_ssh_set_timeouts(sc->ssh, timeo_ms(sc->base.fd, SO_RCVTIMEO), timeo_ms(sc->base.fd, SO_SNDTIMEO));
}

/* -ECANCELED means the session shut the handle down: to it, the connection is reset. */
static ssize_t map_err(ssize_t n)
{
	return n == -ECANCELED ? -ECONNRESET : n;
}

static ssize_t ssh_conn_send(struct mr_conn *c, const void *p, size_t len)
{
	struct ssh_conn *sc = (struct ssh_conn *)c;
	ssize_t n;

	sync_timeouts(sc);
	n = mr_ssh_send_all(sc->ssh, p, len);
	if (n == -ECANCELED) {
		mr_conn_tx_error(c, "the connection to the %s was shut down here", c->peer);
	} else if (n < 0) {
		char buf[160];
		const char *why = mr_ssh_last_error(sc->ssh, buf, sizeof(buf));

		mr_conn_tx_error(c, "sending to the %s over SSH: %s%s%s", c->peer, strerror((int)-n), *why ? ": " : "",
				 why);
	}
	return map_err(n);
}

static ssize_t ssh_conn_recv(struct mr_conn *c, void *p, size_t len)
{
	struct ssh_conn *sc = (struct ssh_conn *)c;
	ssize_t n;

	sync_timeouts(sc);
	n = mr_ssh_recv(sc->ssh, p, len);
	if (n == -ECANCELED) {
		mr_conn_rx_error(c, "the connection to the %s was shut down here", c->peer);
	} else if (n < 0 && n != -EAGAIN) {
		char buf[160];
		const char *why = mr_ssh_last_error(sc->ssh, buf, sizeof(buf));

		mr_conn_rx_error(c, "receiving from the %s over SSH: %s%s%s", c->peer, strerror((int)-n),
				 *why ? ": " : "", why);
	}
	return map_err(n);
}

/* Channel EOF: the server's unix socket sees our FIN; the channel goes on carrying the other way. */
static void ssh_conn_bye(struct mr_conn *c)
{
	struct ssh_conn *sc = (struct ssh_conn *)c;

	int r;

	sync_timeouts(sc);
	r = mr_ssh_shutdown_send(sc->ssh);
	if (r < 0) /* best effort, as the interface says; a later send or recv reports the loss */
		mr_conn_tx_error(c, "ending our direction to the %s over SSH: %s", c->peer, strerror(-r));
}

/* libssh2 1.10 has no AEAD cipher: name what each byte costs instead. */
static const char *ssh_conn_note(const struct mr_conn *c)
{
	return mr_ssh_methods(((const struct ssh_conn *)c)->ssh);
}

static void ssh_conn_free(struct mr_conn *c)
{
	struct ssh_conn *sc = (struct ssh_conn *)c;

	mr_ssh_close(sc->ssh);
	close(sc->watch);
	free(sc);
}

static const struct mr_conn_ops ssh_conn_ops = {
	.name = "ssh",
	.send = ssh_conn_send,
	.recv = ssh_conn_recv,
	.bye = ssh_conn_bye,
	.note = ssh_conn_note,
	.free = ssh_conn_free,
};

int mr_conn_ssh(struct mr_conn **out, struct mr_ssh *ssh)
{
	struct ssh_conn *sc = calloc(1, sizeof(*sc));
	int sp[2];

	*out = NULL;
	if (!sc) {
		mr_ssh_close(ssh);
		return -ENOMEM;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		int r = -errno;

		mr_ssh_close(ssh);
		free(sc);
		return r;
	}
	mr_conn_init(&sc->base, &ssh_conn_ops, sp[0], true);
	sc->ssh = ssh;
	sc->watch = sp[1];
	mr_ssh_set_abort_fd(ssh, sc->watch);
	*out = &sc->base;
	return 0;
}

int mr_conn_ssh_connect(struct mr_conn **out, const struct mr_ssh_url *u, const struct mr_ssh_opts *o, char *err,
			size_t errlen)
{
	struct mr_ssh *ssh;
	int r;

	*out = NULL;
	r = mr_ssh_connect(u, o, &ssh, err, errlen);
	if (r < 0)
		return r;
	r = mr_conn_ssh(out, ssh);
	if (r < 0)
		snprintf(err, errlen, "cannot set up the SSH connection: %s", strerror(-r));
	return r;
}
