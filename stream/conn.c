/* SPDX-License-Identifier: MIT */
/*
 * The connection interface (conn.h): argument checks, error texts and
 * what every engine would otherwise write again (recv_all, half-close),
 * on top of the ops chosen when the connection was set up.
 */
#include "conn.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

enum conn_last { CONN_LAST_NONE = 0, CONN_LAST_TX = 1, CONN_LAST_RX = 2 };

void mr_conn_init(struct mr_conn *c, const struct mr_conn_ops *ops, int fd, bool own_fd)
{
	c->ops = ops;
	c->fd = fd;
	c->own_fd = own_fd;
	c->peer = "peer";
	c->tx_err[0] = c->rx_err[0] = '\0';
	atomic_init(&c->last, CONN_LAST_NONE);
}

void mr_conn_tx_error(struct mr_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->tx_err, sizeof(c->tx_err), fmt, ap);
	va_end(ap);
	atomic_store(&c->last, CONN_LAST_TX);
}

void mr_conn_rx_error(struct mr_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->rx_err, sizeof(c->rx_err), fmt, ap);
	va_end(ap);
	atomic_store(&c->last, CONN_LAST_RX);
}

ssize_t mr_conn_send(struct mr_conn *c, const void *p, size_t len)
{
	if (!c || (!p && len))
		return -EINVAL;
	if (len > SSIZE_MAX)
		return -EMSGSIZE;
	if (len == 0)
		return 0;
	return c->ops->send(c, p, len);
}

ssize_t mr_conn_send_stable(struct mr_conn *c, const void *p, size_t len)
{
	if (!c || (!p && len))
		return -EINVAL;
	if (len > SSIZE_MAX)
		return -EMSGSIZE;
	if (len == 0)
		return 0;
	return c->ops->send_stable ? c->ops->send_stable(c, p, len) : c->ops->send(c, p, len);
}

bool mr_conn_lends(const struct mr_conn *c)
{
	return c && c->ops->unsent;
}

ssize_t mr_conn_unsent(struct mr_conn *c)
{
	return c && c->ops->unsent ? c->ops->unsent(c) : -EOPNOTSUPP;
}

ssize_t mr_conn_recv(struct mr_conn *c, void *p, size_t len)
{
	if (!c || !p || len == 0)
		return -EINVAL;
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	return c->ops->recv(c, p, len);
}

ssize_t mr_conn_recv_all(struct mr_conn *c, void *p, size_t len)
{
	unsigned char *b = p;
	size_t off = 0;
	ssize_t n;

	if (!c || !p || len == 0 || len > SSIZE_MAX)
		return -EINVAL;
	while (off < len) {
		n = c->ops->recv(c, b + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (off == 0)
			return n; /* 0 (clean end), -EAGAIN or an error, nothing lost */
		if (n == 0) {
			mr_conn_rx_error(c, "the %s closed the connection in the middle of a message", c->peer);
			return -ECONNRESET;
		}
		if (n == -EAGAIN) {
			mr_conn_rx_error(c, "the %s stopped sending in the middle of a message", c->peer);
			return -ETIMEDOUT;
		}
		return n;
	}
	return (ssize_t)len;
}

void mr_conn_start_tx(struct mr_conn *c, const struct mr_conn_io *io, char *why, size_t whylen)
{
	if (why && whylen)
		why[0] = '\0';
	if (c && c->ops->start_tx)
		c->ops->start_tx(c, io, why, whylen);
}

void mr_conn_stop_tx(struct mr_conn *c)
{
	if (c && c->ops->stop_tx)
		c->ops->stop_tx(c);
}

void mr_conn_start_rx(struct mr_conn *c, const struct mr_conn_io *io, char *why, size_t whylen)
{
	if (why && whylen)
		why[0] = '\0';
	if (c && c->ops->start_rx)
		c->ops->start_rx(c, io, why, whylen);
}

void mr_conn_stop_rx(struct mr_conn *c)
{
	if (c && c->ops->stop_rx)
		c->ops->stop_rx(c);
}

void mr_conn_bye(struct mr_conn *c)
{
	if (c)
		c->ops->bye(c);
}

void mr_conn_half_close(struct mr_conn *c)
{
	if (!c)
		return;
	c->ops->bye(c);
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_WR);
}

const char *mr_conn_last_error(const struct mr_conn *c)
{
	if (!c)
		return "";
	switch (atomic_load(&c->last)) {
	case CONN_LAST_TX:
		return c->tx_err;
	case CONN_LAST_RX:
		return c->rx_err;
	default:
		return "";
	}
}

const char *mr_conn_name(const struct mr_conn *c)
{
	return c ? c->ops->name : "";
}

const char *mr_conn_note(const struct mr_conn *c)
{
	return c && c->ops->note ? c->ops->note(c) : "";
}

void mr_conn_free(struct mr_conn *c)
{
	int fd;

	if (!c)
		return;
	fd = c->own_fd ? c->fd : -1;
	c->ops->free(c);
	if (fd >= 0)
		close(fd);
}
