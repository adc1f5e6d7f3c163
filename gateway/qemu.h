/* SPDX-License-Identifier: MIT */
/* QEMU migration helpers on top of the QMP client: what both gateways ask QEMU. */
#ifndef MR_GATEWAY_QEMU_H
#define MR_GATEWAY_QEMU_H

#include <stdbool.h>
#include <stdint.h>

#include "qmp.h"

struct qemu_mig_info {
	char status[32];      /* none, setup, active, completed, failed, cancelled, ... */
	uint64_t transferred; /* ram.transferred, bytes */
	uint64_t remaining;   /* ram.remaining */
	uint64_t total;       /* ram.total */
	uint64_t dirty_rate;  /* ram.dirty-pages-rate, pages/s */
	uint64_t passes;      /* ram.dirty-sync-count */
	uint64_t page_size;
	uint64_t total_time;  /* ms */
	uint64_t downtime;    /* ms */
	double mbps;
	uint64_t expected_downtime; /* ms, QEMU's estimate while active */
	uint64_t setup_time;        /* ms */
	uint64_t postcopy_requests; /* ram.postcopy-requests: pages the destination asked for */
	uint64_t throttle_pct;      /* cpu-throttle-percentage (auto-converge) */
	uint64_t xbzrle_bytes, xbzrle_pages, xbzrle_cache_miss, xbzrle_overflow;
	double xbzrle_cache_miss_rate;
	bool has_xbzrle;
	char error[256];      /* error-desc when failed */
};

/* Returns 0 or -errno (err set). */
MR_MUST_CHECK int qemu_query_migrate(struct qmp *q, struct qemu_mig_info *mi, char *err, size_t errlen);
/* "running", "inmigrate", "postmigrate", "paused", ... into <status>. */
MR_MUST_CHECK int qemu_query_status(struct qmp *q, char *status, size_t len, char *err, size_t errlen);
bool qemu_mig_terminal(const char *status);
/*
 * Whether this QEMU runs its guest without KVM (TCG) and is older than 9.0:
 * such a QEMU does not reset TCG's TLB when a migration's dirty-bitmap sync
 * clears a page's bit (fixed upstream by commit 03bfc2188f06), so guest
 * writes through an entry filled earlier go untracked and the page can reach
 * the destination stale, whatever carries the stream. Returns 1 and QEMU's
 * version ("7.2.22") in <ver>, 0 (KVM, a newer QEMU, or a command it lacks),
 * or -errno when the monitor itself failed (err set).
 */
MR_MUST_CHECK int qemu_tcg_stale_risk(struct qmp *q, char *ver, size_t verlen, char *err, size_t errlen);
/* Turns on QEMU's "events" migration capability (a MIGRATION event at each status change). 0 or -errno (err set). */
MR_MUST_CHECK int qemu_enable_migration_events(struct qmp *q, char *err, size_t errlen);
/*
 * Waits up to <timeout_ms> for QEMU's next MIGRATION event and puts its
 * status in <status>; other events are dropped. Returns 0, -ETIMEDOUT, or an
 * error as qmp_cmd (-ECONNRESET when QEMU closed the monitor). Events that
 * came while a command ran were queued and are taken first.
 */
MR_MUST_CHECK int qemu_wait_migration_event(struct qmp *q, int timeout_ms, char *status, size_t len);

#endif
