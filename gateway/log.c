/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

int gw_log_level = GW_LOG_INFO;
static const char *gw_prefix = "migrelay";

void gw_log_set_prefix(const char *prefix)
{
	gw_prefix = prefix;
}

static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;

int gw_log_ratelimit_ok(struct gw_ratelimit *rl)
{
	struct timespec ts;
	int ok, dropped = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	pthread_mutex_lock(&rl_lock);
	if (rl->sec != ts.tv_sec) {
		dropped = rl->dropped;
		rl->sec = ts.tv_sec;
		rl->n = 0;
		rl->dropped = 0;
	}
	ok = rl->n < GW_LOG_BURST;
	if (ok)
		rl->n++;
	else
		rl->dropped++;
	pthread_mutex_unlock(&rl_lock);
	if (dropped)
		gw_log(GW_LOG_WARN, NULL, 0, "%d similar messages suppressed", dropped);
	return ok;
}

void gw_log(int level, const char *func, int err, const char *fmt, ...)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	char msg[1024];
	size_t n;
	va_list ap;

	if (level > gw_log_level)
		return;
	n = (size_t)snprintf(msg, sizeof(msg), "%s: %s: ", gw_prefix, names[level]);
	if (level == GW_LOG_DEBUG && n < sizeof(msg)) {
		/* the monotonic clock is one for every process of the host: steps of both gateways line up */
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		n += (size_t)snprintf(msg + n, sizeof(msg) - n, "[%ld.%06ld] ", (long)ts.tv_sec, ts.tv_nsec / 1000);
	}
	if (func && n < sizeof(msg))
		n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s: ", func);
	if (n < sizeof(msg)) {
		va_start(ap, fmt);
		n += (size_t)vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
		va_end(ap);
	}
	if (err && n < sizeof(msg))
		n += (size_t)snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(err < 0 ? -err : err));
	if (n >= sizeof(msg) - 1)
		n = sizeof(msg) - 2;
	msg[n++] = '\n';
	/* one write per line so lines from threads do not interleave */
	fwrite(msg, 1, n, stderr);
}
