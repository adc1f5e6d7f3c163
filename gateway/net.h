/* SPDX-License-Identifier: MIT */
/* Sockets: TCP HOST:PORT and unix paths. All return an fd or -errno. */
#ifndef MR_GATEWAY_NET_H
#define MR_GATEWAY_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "stream/wire.h"

/* Splits "HOST:PORT" or "[V6]:PORT". Returns 0 or -EINVAL. */
MR_MUST_CHECK int net_split_hostport(const char *spec, char *host, size_t hostlen, char *port, size_t portlen);
/* Connects to HOST:PORT (each address in turn), <timeout_ms> per attempt. *why gets a sentence on failure. */
MR_MUST_CHECK int net_tcp_connect(const char *spec, int timeout_ms, char *why, size_t whylen);
MR_MUST_CHECK int net_tcp_listen(const char *spec, char *why, size_t whylen);
/*
 * Connects to unix socket <path>, waiting at most NET_UNIX_CONNECT_MS for
 * a listener whose backlog is full (it stopped accepting): -ETIMEDOUT then.
 * Returns a blocking fd or -errno.
 */
enum { NET_UNIX_CONNECT_MS = 10000 };
MR_MUST_CHECK int net_unix_connect(const char *path);
/* Removes a stale socket file first (only if it is a socket). */
MR_MUST_CHECK int net_unix_listen(const char *path, int backlog);
/* Socket options for data connections: TCP_NODELAY and large buffers. */
void net_tune_tcp(int fd);
/*
 * The sending buffer of a local stream socket on which the destination
 * gateway writes a migration stream to QEMU: NET_LOCAL_SNDBUF (the kernel
 * doubles it, up to net.core.wmem_max), so that the stream's in pump
 * (session_stream.c) usually writes a 256 KiB chunk in one call that does
 * not wait. Not for QEMU's end on the source: measured with
 * real guests, the larger buffer there saved wake-ups but cost both
 * gateways more CPU per byte. Best effort.
 */
enum { NET_LOCAL_SNDBUF = 1 << 20 };
void net_local_sndbuf(int fd);
/* True when connected socket <fd>'s peer is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x). */
bool net_peer_is_loopback(int fd);

/* SO_RCVTIMEO / SO_SNDTIMEO in milliseconds (0 = none). */
void net_set_timeouts(int fd, int rcv_ms, int snd_ms);
/*
 * Makes a private directory (mode 0700) for sockets, named <prefix>-XXXXXX,
 * in $MIGRELAY_SOCKET_DIR, else $TMPDIR, else /tmp. QEMU must be able to
 * create its listening sockets there (multifd, NBD): same user, or a shared
 * directory. Returns 0 with the path in <buf>, or -errno.
 */
MR_MUST_CHECK int net_private_dir(char *buf, size_t len, const char *prefix);

/* write()/read() everything, retrying on EINTR. Return len or -errno (read: bytes read before EOF). */
MR_MUST_CHECK ssize_t net_write_all(int fd, const void *p, size_t len);

#endif
