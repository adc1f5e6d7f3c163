/* SPDX-License-Identifier: MIT */
/* A progress line for long transfers: redrawn once a second on a terminal, or JSON lines. */
#ifndef MR_GATEWAY_PROGRESS_H
#define MR_GATEWAY_PROGRESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include "session.h"

struct gw_progress {
	struct gw_session *s;
	FILE *out;
	bool json, tty, enabled;
	pthread_t thr;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	uint64_t t0;
};

/* Starts the reporter (nothing happens unless enabled). */
void gw_progress_start(struct gw_progress *p, struct gw_session *s, FILE *out, bool json, bool force, bool quiet);
void gw_progress_stop(struct gw_progress *p);

/* Resident size now and its peak (VmRSS, VmHWM) of process <pid>, 0 for this one, in KiB; 0 where unknown. */
void gw_proc_mem(int pid, long *rss_kib, long *peak_kib);

#endif
