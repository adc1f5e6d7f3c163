/* SPDX-License-Identifier: MIT */
/*
 * Socket I/O of the small request/answer servers (the control socket,
 * gateway/control.c, and the metrics endpoint, gateway/metrics.c): one
 * client at a time on a non-blocking socket, everything by a deadline.
 */
#ifndef MIGRELAY_GATEWAY_REQIO_H
#define MIGRELAY_GATEWAY_REQIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in milliseconds: the clock of the deadlines below. */
int64_t gw_reqio_now_ms(void);

/*
 * Takes the next client of listening socket <lfd>, non-blocking and
 * close-on-exec. Returns its fd or -errno; out of descriptors, it first
 * sleeps 100 ms so that the caller's loop does not spin.
 */
int gw_reqio_accept(int lfd);

/*
 * Waits for bytes on non-blocking <fd> until <deadline> and reads what
 * came, at most <len>. Returns the count, 0 at end of file, -ETIMEDOUT,
 * or -errno.
 */
ssize_t gw_reqio_recv(int fd, void *buf, size_t len, int64_t deadline);

/* Writes all of <p> to non-blocking <fd> before <deadline>. Returns 0 or -errno. */
int gw_reqio_send(int fd, const void *p, size_t len, int64_t deadline);

#endif
