/* SPDX-License-Identifier: MIT */
/*
 * serve's listeners: TCP HOST:PORT (TLS inside) and unix:PATH, a local
 * socket for connections that sshd forwards (direct-streamlocal), whose
 * peer is named by its SO_PEERCRED uid, with no TLS inside (SSH encrypts
 * and authenticates; the socket's permissions and --allow authorize).
 */
#ifndef MR_GATEWAY_LISTEN_H
#define MR_GATEWAY_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "stream/wire.h"

enum {
	GW_LISTEN_MAX = 16,
	GW_LISTEN_DEFAULT_MODE = 0660,
	GW_PEER_ID_MAX = 96, /* "UID=" and a user name or number */
};

struct gw_listener {
	const char *spec; /* as given: "HOST:PORT" or "unix:PATH" */
	bool local;	  /* unix:PATH */
	char path[108];	  /* unix: the socket file, removed by gw_listen_close */
	int fd;		  /* listening, non-blocking; -1 when closed */
};

struct gw_listen_set {
	struct gw_listener l[GW_LISTEN_MAX];
	int n;
	mode_t mode; /* unix sockets' mode (--socket-mode) */
	gid_t gid;   /* and group (--socket-group), when has_gid */
	bool has_gid;
};

/* Empty set with the default socket mode. */
void gw_listen_init(struct gw_listen_set *s);

/*
 * Adds --listen <spec> (not opened yet): unix:PATH listeners add up; a
 * HOST:PORT replaces an earlier HOST:PORT (one TCP listener, the last
 * given). 0, or -EINVAL/-E2BIG with <why>.
 */
MR_MUST_CHECK int gw_listen_add(struct gw_listen_set *s, const char *spec, char *why, size_t whylen);

/* --socket-mode (octal, 0600..0777 without set-id bits) and --socket-group (name or number). 0 or -EINVAL with <why>.
 */
MR_MUST_CHECK int gw_listen_set_mode(struct gw_listen_set *s, const char *arg, char *why, size_t whylen);
MR_MUST_CHECK int gw_listen_set_group(struct gw_listen_set *s, const char *arg, char *why, size_t whylen);

/* Counts of each kind. */
int gw_listen_count(const struct gw_listen_set *s, bool local);

/*
 * Opens every listener, non-blocking. A unix socket file left by a
 * stopped server is replaced; one a running server answers on, or a file
 * that is not a socket, is an error. The socket gets its mode and group
 * before it listens. Returns 0, or -errno with <why> (what was opened is
 * closed again).
 */
MR_MUST_CHECK int gw_listen_open(struct gw_listen_set *s, char *why, size_t whylen);

/* Closes the listeners and removes their socket files. */
void gw_listen_close(struct gw_listen_set *s);

/*
 * The identity of the process at the other end of accepted unix socket
 * <fd> (SO_PEERCRED): "UID=name", or "UID=1234" when the uid has no user
 * name. Returns 0, or -errno.
 */
MR_MUST_CHECK int gw_unix_peer_identity(int fd, char *buf, size_t len);

#endif
