/* SPDX-License-Identifier: MIT */
/*
 * SSH transport: one libssh2 connection carrying one
 * direct-streamlocal@openssh.com channel to a unix socket on the server
 * (normally the one `migrelay serve --listen unix:PATH` listens on). The
 * only code besides the rest of crypto/ that sees libssh2.
 *
 * Threads: after mr_ssh_connect, one thread may receive (mr_ssh_recv) while
 * another sends (mr_ssh_send_all, mr_ssh_shutdown_send); mr_ssh_abort may
 * be called from any thread at any time; mr_ssh_close once nobody else
 * uses the connection.
 */
#ifndef MR_CRYPTO_SSH_H
#define MR_CRYPTO_SSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../stream/wire.h"

/* The socket a packaged `serve` listens on for connections sshd forwards. */
#define MR_SSH_DEFAULT_SOCKET "/run/migrelay/serve.sock"
#define MR_SSH_DEFAULT_PORT 22

/* ssh://[USER@]HOST[:PORT][/PATH/TO/serve.sock], parsed. */
struct mr_ssh_url {
	char user[64];
	char host[256]; /* without the brackets of an IPv6 literal */
	uint16_t port;
	char path[108]; /* absolute; fits sockaddr_un.sun_path */
};

/*
 * Parses <s>. A missing user is $USER, else the name of our uid; a missing
 * port is 22; a missing path is MR_SSH_DEFAULT_SOCKET. Returns 0, or
 * -EINVAL with <err> naming what is wrong. Pure; any thread.
 */
MR_MUST_CHECK int mr_ssh_url_parse(const char *s, struct mr_ssh_url *u, char *err, size_t errlen);

/* Options of one connection; every pointer may be NULL (the default). */
struct mr_ssh_opts {
	const char *known_hosts;        /* user file (checked, and written by accept_new); NULL: ~/.ssh/known_hosts */
	const char *global_known_hosts; /* NULL: /etc/ssh/ssh_known_hosts; "": none */
	const char *key_file;           /* private key; NULL: ~/.ssh/id_ed25519, id_ecdsa, id_rsa (those present) */
	bool no_agent;                  /* do not ask ssh-agent ($SSH_AUTH_SOCK) first */
	bool accept_new;                /* add an unknown host key to known_hosts (never a changed one) */
	const char *ciphers;            /* libssh2 preference lists, "a,b,c"; NULL: strongest first */
	const char *macs;
	int timeout_ms;                 /* TCP connect + handshake + auth + channel open; <= 0: 30 s */
	uint32_t window;                /* channel receive window in bytes; 0: 16 MiB */
};

struct mr_ssh;

/*
 * Connects to u->host:u->port over TCP, runs the SSH handshake, checks the
 * host key against the known_hosts files (plain, hashed and [host]:port
 * entries, as OpenSSH does), authenticates u->user (ssh-agent first, then
 * the key file(s)), and opens a direct-streamlocal@openssh.com channel to
 * u->path. Blocks the calling thread up to o->timeout_ms.
 *
 * Returns 0 with *out set (the caller owns it: mr_ssh_close), or a
 * negative errno with a sentence for the user in <err>:
 *   -ENOKEY        host key unknown (the sentence shows its SHA256 fingerprint and what to do)
 *   -EKEYREJECTED  host key differs from the known one (possible attack), or was revoked
 *   -EACCES        authentication refused (no key the server accepts, or only encrypted keys)
 *   -ENXIO         the channel open failed with "connect failed": nothing listens at
 *                  u->path, or sshd's policy forbids unix-socket forwarding
 *                  (OpenSSH answers both alike; the sentence names both causes)
 *   -EPERM         the server answered "administratively prohibited" (SSH servers
 *                  other than OpenSSH's sshd, which says "connect failed" instead)
 *   -EOPNOTSUPP    the server does not know direct-streamlocal channels
 *   -EPROTO        SSH protocol failure (no common algorithm, bad packet)
 *   -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, ... (TCP), -ENOENT (host name unknown,
 *                  or an explicit key file missing), -ENOMEM, -EIO
 * Any thread; no shared state besides libssh2's one-time global init.
 */
MR_MUST_CHECK int mr_ssh_connect(const struct mr_ssh_url *u, const struct mr_ssh_opts *o, struct mr_ssh **out,
				 char *err, size_t errlen);

/*
 * Sends all <len> bytes on the channel (waiting for the peer's window as
 * needed). Returns <len>, or -EPIPE (channel closed or EOF already sent),
 * -ECANCELED (mr_ssh_abort, abort fd), -ETIMEDOUT (no progress for the
 * send timeout), -ECONNRESET/-EIO (connection lost, SSH error;
 * mr_ssh_last_error says more). The sending thread only.
 */
MR_MUST_CHECK ssize_t mr_ssh_send_all(struct mr_ssh *c, const void *buf, size_t len);

/*
 * Receives up to <len> bytes (at least 1 unless at the end). Returns the
 * count, 0 once the peer sent EOF or closed the channel, -EAGAIN when the
 * receive timeout passed with nothing received (nothing lost), or
 * -ECANCELED, -ECONNRESET, -EIO. The receiving thread only.
 */
MR_MUST_CHECK ssize_t mr_ssh_recv(struct mr_ssh *c, void *buf, size_t len);

/*
 * Half-close: sends channel EOF (the server side's socket sees a FIN);
 * receiving continues. Returns 0 or -errno. The sending thread only.
 */
MR_MUST_CHECK int mr_ssh_shutdown_send(struct mr_ssh *c);

/*
 * Makes every blocked or later send/recv on <c> return -ECANCELED, at
 * once; the connection is unusable afterwards except for mr_ssh_close.
 * Any thread, any time before mr_ssh_close.
 */
void mr_ssh_abort(struct mr_ssh *c);

/*
 * Also abort (as mr_ssh_abort) when socket <fd> reports POLLHUP, i.e. its
 * peer end was shut down in both directions: the handle a connection
 * interface hands to code that ends connections with shutdown(2). <fd>
 * stays the caller's and must stay open while <c> is in use. Any thread.
 */
void mr_ssh_set_abort_fd(struct mr_ssh *c, int fd);

/*
 * Timeouts of later calls, in ms (0: none): mr_ssh_recv returns -EAGAIN
 * after <rcv_ms> without data; a send fails with -ETIMEDOUT after <snd_ms>
 * without progress. Any thread.
 */
void mr_ssh_set_timeouts(struct mr_ssh *c, int rcv_ms, int snd_ms);

/*
 * Closes the channel and the connection (politely if they are still up)
 * and frees <c>. NULL-safe. Call once no other thread uses <c>.
 */
void mr_ssh_close(struct mr_ssh *c);

/*
 * What was negotiated, e.g. "kex curve25519-sha256, hostkey ssh-ed25519,
 * cipher aes256-ctr/aes256-ctr, mac hmac-sha2-512/hmac-sha2-512" (for a
 * debug log line). Valid until mr_ssh_close; any thread.
 */
const char *mr_ssh_methods(const struct mr_ssh *c);

/*
 * Copies the last libssh2 error text of the data path ("" if none) into
 * <buf>, for messages after a failed call. Any thread: the sending and the
 * receiving thread both write that text, under the session's lock.
 */
const char *mr_ssh_last_error(struct mr_ssh *c, char *buf, size_t len);

/* The TCP socket (for getsockopt, tests); owned by <c>. */
int mr_ssh_fd(const struct mr_ssh *c);

#endif
