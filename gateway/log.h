/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr: one line per message, prefixed with the program name and
 * level; debug lines also carry the monotonic clock's seconds ("[12.345678]"),
 * which is the same clock in every process of a host.
 */
#ifndef MR_GATEWAY_LOG_H
#define MR_GATEWAY_LOG_H

#include <string.h>

enum gw_level { GW_LOG_ERR = 0, GW_LOG_WARN = 1, GW_LOG_INFO = 2, GW_LOG_DEBUG = 3 };

extern int gw_log_level;                  /* messages above this level are dropped */
void gw_log_set_prefix(const char *prefix); /* "migrelay serve", default "migrelay" */

void gw_log(int level, const char *func, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define gw_err(...) gw_log(GW_LOG_ERR, NULL, 0, __VA_ARGS__)
#define gw_warn(...) gw_log(GW_LOG_WARN, NULL, 0, __VA_ARGS__)
#define gw_info(...) gw_log(GW_LOG_INFO, NULL, 0, __VA_ARGS__)
#define gw_dbg(...) gw_log(GW_LOG_DEBUG, NULL, 0, __VA_ARGS__)
/* _r: append strerror(-r); _f: prefix with the function name. */
#define gw_err_r(r, ...) gw_log(GW_LOG_ERR, NULL, (r), __VA_ARGS__)
#define gw_warn_r(r, ...) gw_log(GW_LOG_WARN, NULL, (r), __VA_ARGS__)
#define gw_err_fr(r, ...) gw_log(GW_LOG_ERR, __func__, (r), __VA_ARGS__)
#define gw_dbg_f(...) gw_log(GW_LOG_DEBUG, __func__, 0, __VA_ARGS__)

/* At most GW_LOG_BURST messages per second per call site (a peer can trigger these); the rest are dropped and counted. */
enum { GW_LOG_BURST = 10 };
struct gw_ratelimit {
	long sec;
	int n, dropped;
};
#define gw_ratelimited(level, ...)                                                  \
	do {                                                                          \
		static struct gw_ratelimit gw__rl_;                                   \
		if (gw_log_ratelimit_ok(&gw__rl_))                                    \
			gw_log((level), NULL, 0, __VA_ARGS__);                        \
	} while (0)
int gw_log_ratelimit_ok(struct gw_ratelimit *rl);

#endif
