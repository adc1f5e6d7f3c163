/* SPDX-License-Identifier: MIT */
/*
 * An SSH channel (crypto/ssh.h) as a connection of stream/conn.h: the
 * session sends and receives through it like through a TLS connection.
 */
#ifndef MR_CRYPTO_SSH_CONN_H
#define MR_CRYPTO_SSH_CONN_H

#include "../stream/conn.h"
#include "ssh.h"

/*
 * Wraps connected <ssh> (taken over: freed by mr_conn_free, also on
 * failure). The connection's fd is a handle, not the TCP socket: one end
 * of a socketpair whose other end the engine watches, so that what the
 * session does to c->fd keeps its meaning over SSH:
 *   shutdown(c->fd, SHUT_RDWR)   aborts blocked and later calls (-ECONNRESET)
 *   shutdown(c->fd, SHUT_WR)     (mr_conn_half_close, after bye's channel EOF) nothing more
 *   SO_RCVTIMEO / SO_SNDTIMEO    the receive and send timeouts of the calls
 * (a shutdown of the TCP socket itself would end both directions of the
 * SSH connection, and its window adjustments with them). getpeername on
 * it says nothing about the SSH server. Returns 0 with *out set, or
 * -errno (-EMFILE, -ENOMEM). Any thread; the connection then follows
 * stream/conn.h's thread rules.
 */
MR_MUST_CHECK int mr_conn_ssh(struct mr_conn **out, struct mr_ssh *ssh);

/* mr_ssh_connect followed by mr_conn_ssh: what a client opening a connection calls. Same results as mr_ssh_connect. */
MR_MUST_CHECK int mr_conn_ssh_connect(struct mr_conn **out, const struct mr_ssh_url *u, const struct mr_ssh_opts *o,
				      char *err, size_t errlen);

#endif
