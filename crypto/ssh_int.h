/* SPDX-License-Identifier: MIT */
/*
 * crypto/ internal: what crypto/ssh.c (connection), crypto/ssh_io.c (data path) and
 * crypto/ssh_auth.c (host keys, authentication) share. Includes libssh2.
 */
#ifndef MR_CRYPTO_SSH_INT_H
#define MR_CRYPTO_SSH_INT_H

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <libssh2.h>

#include "ssh.h"

enum {
	SSH_ROLE_RX = 0,
	SSH_ROLE_TX = 1,
};

struct mr_ssh {
	int fd;
	LIBSSH2_SESSION *s;
	LIBSSH2_CHANNEL *ch;
	pthread_mutex_t mu;     /* every libssh2 call on s/ch */
	bool consumed;          /* under mu: the recv callback got bytes during the current call */
	bool waiting[2];        /* under mu: that role waits in poll for the socket */
	int wake[2];            /* eventfds: wake that role's poll */
	int cancel;             /* eventfd: mr_ssh_abort */
	atomic_int abort_fd;    /* -1, or a socket whose POLLHUP aborts too (mr_ssh_set_abort_fd) */
	atomic_int rcv_ms;      /* mr_ssh_set_timeouts; 0: none */
	atomic_int snd_ms;
	atomic_bool aborted;
	bool eof_sent;
	char methods[256];
	char last[160];         /* under mu: last data-path error */
};

/* Monotonic milliseconds. */
int64_t ssh_now_ms(void);

/*
 * Waits (without c->mu) until the socket is readable, <role> is woken, or
 * the deadline (-1: none) passes. Returns 0, -ECANCELED or -ETIMEDOUT.
 */
int ssh_wait(struct mr_ssh *c, int role, int64_t deadline);

/* ssh_io.c: libssh2's socket callbacks (set on the session by mr_ssh_connect). */
LIBSSH2_RECV_FUNC(ssh_recv_cb);
LIBSSH2_SEND_FUNC(ssh_send_cb);
/* A libssh2 error code of the data path as -errno. */
int ssh_errno(int rc);

/* libssh2's last error text of the session, into <buf>. */
void ssh_lib_error(struct mr_ssh *c, char *buf, size_t len);

/* Repeats a libssh2 call of the set-up while it says EAGAIN, until the deadline. */
#define SSH_SETUP_CALL(c, deadline, rc, call)                                          \
	do {                                                                           \
		while (((rc) = (call)) == LIBSSH2_ERROR_EAGAIN) {                       \
			int w_ = ssh_wait((c), SSH_ROLE_RX, (deadline));                \
			if (w_ < 0) {                                                   \
				(rc) = w_ == -ETIMEDOUT ? LIBSSH2_ERROR_TIMEOUT : LIBSSH2_ERROR_SOCKET_DISCONNECT; \
				break;                                                  \
			}                                                               \
		}                                                                       \
	} while (0)
/*
 * Like SSH_SETUP_CALL for calls that also talk to ssh-agent: libssh2 reads
 * the agent's socket through our non-blocking recv callback too, and its
 * EAGAIN may be the agent's, whose socket libssh2 1.10 does not show us.
 * So poll the SSH socket only briefly and retry (the agent is local).
 */
#define SSH_AGENT_CALL(c, deadline, rc, call)                                          \
	do {                                                                           \
		while (((rc) = (call)) == LIBSSH2_ERROR_EAGAIN) {                       \
			struct pollfd pf_ = { .fd = (c)->fd, .events = POLLIN };        \
			if (ssh_now_ms() >= (deadline)) {                                   \
				(rc) = LIBSSH2_ERROR_TIMEOUT;                           \
				break;                                                  \
			}                                                               \
			(void)poll(&pf_, 1, 1);                                         \
		}                                                                       \
	} while (0)

/* ssh_auth.c: host keys and authentication, set-up thread only. */
const char *ssh_home_dir(void);
/* Reads OpenSSH known_hosts <path> into <kh> (lines marked @revoked into <revoked>); a missing file is empty. */
void ssh_kh_read(LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked, const char *path);
/* The name OpenSSH files u's host under: "host" on port 22, else "[host]:port". */
void ssh_kh_name(const struct mr_ssh_url *u, char *buf, size_t len);
/* Host key algorithm preference for <name>: types known_hosts holds for it first. */
void ssh_hostkey_pref(LIBSSH2_KNOWNHOSTS *kh, const char *name, char *out, size_t len);
/* After the handshake: 0, -ENOKEY (unknown), -EKEYREJECTED (changed, revoked), -EPROTO, -EIO, or a write error of accept-new. */
int ssh_check_hostkey(struct mr_ssh *c, LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked,
		      const struct mr_ssh_url *u, const struct mr_ssh_opts *o, const char *user_kh, char *err,
		      size_t errlen);
/* Agent first, then the key file(s): 0, -EACCES, -ENOENT (explicit key unreadable), -ETIMEDOUT, -ECONNRESET. */
int ssh_authenticate(struct mr_ssh *c, const struct mr_ssh_url *u, const struct mr_ssh_opts *o, int64_t deadline,
		     char *err, size_t errlen);

#endif
