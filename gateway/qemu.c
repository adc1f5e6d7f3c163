/* SPDX-License-Identifier: MIT */
#include "qemu.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t get_u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return 0;
	return (uint64_t)json_object_get_int64(v);
}

int qemu_query_migrate(struct qmp *q, struct qemu_mig_info *mi, char *err, size_t errlen)
{
	struct json_object *ret = NULL, *v, *ram = NULL;
	int r;

	memset(mi, 0, sizeof(*mi));
	r = qmp_cmd(q, "query-migrate", NULL, &ret, err, errlen);
	if (r < 0)
		return r;
	if (json_object_object_get_ex(ret, "status", &v))
		snprintf(mi->status, sizeof(mi->status), "%s", json_object_get_string(v));
	else
		strcpy(mi->status, "none");
	if (json_object_object_get_ex(ret, "error-desc", &v))
		snprintf(mi->error, sizeof(mi->error), "%s", json_object_get_string(v));
	json_object_object_get_ex(ret, "ram", &ram);
	mi->transferred = get_u64(ram, "transferred");
	mi->remaining = get_u64(ram, "remaining");
	mi->total = get_u64(ram, "total");
	mi->dirty_rate = get_u64(ram, "dirty-pages-rate");
	mi->passes = get_u64(ram, "dirty-sync-count");
	mi->page_size = get_u64(ram, "page-size");
	if (ram && json_object_object_get_ex(ram, "mbps", &v))
		mi->mbps = json_object_get_double(v);
	mi->postcopy_requests = get_u64(ram, "postcopy-requests");
	mi->expected_downtime = get_u64(ret, "expected-downtime");
	mi->setup_time = get_u64(ret, "setup-time");
	mi->throttle_pct = get_u64(ret, "cpu-throttle-percentage");
	if (json_object_object_get_ex(ret, "xbzrle-cache", &v)) {
		struct json_object *x = v;

		mi->has_xbzrle = true;
		mi->xbzrle_bytes = get_u64(x, "bytes");
		mi->xbzrle_pages = get_u64(x, "pages");
		mi->xbzrle_cache_miss = get_u64(x, "cache-miss");
		mi->xbzrle_overflow = get_u64(x, "overflow");
		if (json_object_object_get_ex(x, "cache-miss-rate", &v))
			mi->xbzrle_cache_miss_rate = json_object_get_double(v);
	}
	mi->total_time = get_u64(ret, "total-time");
	mi->downtime = get_u64(ret, "downtime");
	json_object_put(ret);
	return 0;
}

int qemu_query_status(struct qmp *q, char *status, size_t len, char *err, size_t errlen)
{
	struct json_object *ret = NULL, *v;
	int r = qmp_cmd(q, "query-status", NULL, &ret, err, errlen);

	if (r < 0)
		return r;
	if (json_object_object_get_ex(ret, "status", &v))
		snprintf(status, len, "%s", json_object_get_string(v));
	else
		snprintf(status, len, "unknown");
	json_object_put(ret);
	return 0;
}

int qemu_tcg_stale_risk(struct qmp *q, char *ver, size_t verlen, char *err, size_t errlen)
{
	struct json_object *ret = NULL, *v, *qv;
	uint64_t major, minor, micro;
	bool kvm;
	int r;

	if ((r = qmp_cmd(q, "query-kvm", NULL, &ret, err, errlen)) < 0)
		return r == -EREMOTEIO ? 0 : r;
	kvm = json_object_object_get_ex(ret, "enabled", &v) && json_object_get_boolean(v);
	json_object_put(ret);
	ret = NULL;
	if (kvm)
		return 0;
	if ((r = qmp_cmd(q, "query-version", NULL, &ret, err, errlen)) < 0)
		return r == -EREMOTEIO ? 0 : r;
	qv = NULL;
	json_object_object_get_ex(ret, "qemu", &qv);
	major = get_u64(qv, "major");
	minor = get_u64(qv, "minor");
	micro = get_u64(qv, "micro");
	json_object_put(ret);
	if (!qv || major == 0 || major >= 9)
		return 0;
	snprintf(ver, verlen, "%" PRIu64 ".%" PRIu64 ".%" PRIu64, major, minor, micro);
	return 1;
}

int qemu_enable_migration_events(struct qmp *q, char *err, size_t errlen)
{
	return qmp_cmdf(q, "migrate-set-capabilities", NULL, err, errlen,
			"{\"capabilities\": [{\"capability\": \"events\", \"state\": true}]}");
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int qemu_wait_migration_event(struct qmp *q, int timeout_ms, char *status, size_t len)
{
	int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);

	/* bounded by the deadline, and by a count against a QEMU that floods other events */
	for (int i = 0; i < 100000; i++) {
		struct json_object *ev = NULL, *data, *v;
		int64_t left = deadline - mono_ms();
		int r = qmp_next_event(q, left > 0 ? (int)left : 0, &ev);

		if (r < 0)
			return r;
		if (!strcmp(qmp_event_name(ev), "MIGRATION") && json_object_object_get_ex(ev, "data", &data) &&
		    json_object_object_get_ex(data, "status", &v)) {
			snprintf(status, len, "%s", json_object_get_string(v));
			json_object_put(ev);
			return 0;
		}
		json_object_put(ev);
	}
	return -ETIMEDOUT;
}

bool qemu_mig_terminal(const char *status)
{
	return !strcmp(status, "completed") || !strcmp(status, "failed") || !strcmp(status, "cancelled");
}
