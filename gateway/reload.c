/* SPDX-License-Identifier: MIT */
/* Serialized reloads and their last outcome (reload.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "reload.h"

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int gw_reload_run(void *arg, char *msg, size_t msglen)
{
	struct gw_reloader *r = arg;
	int rc;

	msg[0] = '\0';
	pthread_mutex_lock(&r->run_lock);
	rc = r->fn(r->ctx, msg, msglen);
	if (rc >= 0)
		rc = 0;
	if (!msg[0])
		snprintf(msg, msglen, rc ? "reload failed: %s" : "reloaded", strerror(-rc));
	pthread_mutex_lock(&r->lock);
	r->ran = true;
	r->ok = rc == 0;
	r->at_ns = mono_ns();
	snprintf(r->msg, sizeof(r->msg), "%s", msg);
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_unlock(&r->run_lock);
	gw_metrics_reload(rc == 0);
	if (rc == 0)
		gw_info("%s", msg);
	else
		gw_warn("reload refused, the configuration in force stays: %s", msg);
	return rc;
}

void gw_reload_request(struct gw_reloader *r)
{
	atomic_store(&r->requested, 1);
}

bool gw_reload_poll(struct gw_reloader *r)
{
	char msg[GW_CONTROL_MAX_MESSAGE];

	if (!atomic_exchange(&r->requested, 0))
		return false;
	(void)gw_reload_run(r, msg, sizeof(msg));
	return true;
}

void gw_reload_describe(struct gw_reloader *r, struct gw_status_daemon *d, char *msgbuf, size_t msglen)
{
	pthread_mutex_lock(&r->lock);
	d->reloaded = r->ran;
	d->last_reload_ok = r->ok;
	d->last_reload_age_s = r->ran ? (double)(mono_ns() - r->at_ns) / 1e9 : 0;
	snprintf(msgbuf, msglen, "%s", r->msg);
	d->last_reload_msg = r->ran ? msgbuf : NULL;
	pthread_mutex_unlock(&r->lock);
}
