/* SPDX-License-Identifier: MIT */
/*
 * One way to reload, whoever asks: SIGHUP (the daemon's main loop, after
 * its handler set a flag) and the control socket's "reload" both call
 * gw_reload_run, which runs the daemon's reload function one at a time,
 * logs and counts the outcome (migrelay_reloads_total) and remembers it
 * for the status ("last_reload"). The reload function itself builds and
 * validates a new configuration and installs it with gw_snapshot_swap, or
 * leaves the current one alone (docs/OPERATIONS.md "Reload").
 */
#ifndef MR_GATEWAY_RELOAD_H
#define MR_GATEWAY_RELOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control.h"
#include "stream/wire.h"

struct gw_reloader {
	pthread_mutex_t run_lock; /* one reload at a time; held across the reload function */
	pthread_mutex_t lock;	  /* the fields below */
	/* Builds, validates and installs a new configuration: 0, or -errno with the reason in <msg> (then nothing
	 * changed). */
	int (*fn)(void *ctx, char *msg, size_t msglen);
	void *ctx;
	bool ran, ok;
	uint64_t at_ns; /* CLOCK_MONOTONIC of the last run's end */
	char msg[GW_CONTROL_MAX_MESSAGE];
	atomic_int requested; /* set by gw_reload_request: lock-free, so a signal handler on any thread may */
};

#define GW_RELOADER_INITIALIZER(f, c)                                                                                  \
	{                                                                                                              \
		.run_lock = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER, .fn = (f), .ctx = (c)        \
	}

/*
 * Runs the reload function, waiting for one already running. Returns its
 * result; <msg> gets its sentence (also logged: info when accepted, warning
 * when refused). Any thread but a signal handler. Matches the signature of
 * gw_control_ops.reload, with <r> as the context.
 */
int gw_reload_run(void *r, char *msg, size_t msglen);

/*
 * Async-signal-safe: marks a reload as asked for (the SIGHUP handler).
 * The daemon should block SIGHUP in every thread but the one that polls
 * (block it before creating threads, unblock it only inside ppoll/accept
 * of its main loop), so that the signal interrupts that call.
 */
void gw_reload_request(struct gw_reloader *r);

/*
 * The daemon's loop calls this when a blocking call returned EINTR or on
 * its tick: runs the reload if one was asked for. Returns true if it ran.
 */
bool gw_reload_poll(struct gw_reloader *r);

/* Fills the last_reload fields of <d> (for gw_status_set_daemon). <msgbuf> holds the copied message. Any thread. */
void gw_reload_describe(struct gw_reloader *r, struct gw_status_daemon *d, char *msgbuf, size_t msglen);

#endif
