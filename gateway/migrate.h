/* SPDX-License-Identifier: MIT */
/*
 * `migrelay migrate`'s state and the parts of it outside cmd_migrate.c's
 * phases: migrate_disks.c (QEMU's listeners and the disk mirrors) and
 * migrate_steer.c (post-copy, the timeout's actions, the control socket).
 * Main thread only, except the listener threads (migrate_disks.c).
 */
#ifndef MR_GATEWAY_MIGRATE_H
#define MR_GATEWAY_MIGRATE_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "migctl.h"
#include "qemu.h"

/* Set by SIGINT/SIGTERM and by `ctl cancel`: cancel (before the switch to post-copy). */
extern volatile sig_atomic_t mig_cancel_flag;

struct listener {
	struct gw_session *s;
	int lfd;
	uint8_t role;
	int max; /* connections to accept */
	int accepted;
	pthread_t thr;
	bool started;
	atomic_int stop;
	int ids[WIRE_MAX_STREAMS];
	int err;
};

enum timeout_action { TA_CANCEL = 0, TA_SUSPEND = 1, TA_POSTCOPY = 2 };

struct mig {
	struct gw_client_opts o;
	const char *qmp_path;
	uint64_t bandwidth;
	int downtime_ms;
	int timeout_s;
	enum timeout_action timeout_action;
	bool timed_out; /* the timeout action was taken */
	bool pc_after;	/* --postcopy-after-precopy */
	bool inc[WIRE_MAX_DEVICES]; /* o.devices[i] came from --copy-storage-inc: mirror its top image only */
	bool sync_writes;	    /* --copy-storage-synchronous-writes: the mirrors block the guest's writes */
	uint64_t pc_bandwidth;
	bool auto_converge;
	int ac_initial, ac_increment; /* 0: QEMU's */
	uint64_t xbzrle_cache;
	bool pc_started;     /* migrate-start-postcopy was sent */
	bool switched;	     /* QEMU reported postcopy-active: the destination holds the guest */
	bool we_stopped;     /* --timeout-action suspend stopped the guest here */
	const char *control; /* --control PATH */
	bool suspend;	     /* --suspend */
	bool no_preflight;   /* --no-preflight */
	struct wire_preflight pf; /* the source QEMU's facts for the destination's pre-flight check */
	bool src_running;    /* the guest ran here when migrate started */
	char tcg_risk[32];   /* the source QEMU's version when it runs TCG before 9.0 (qemu_tcg_stale_risk), else "" */
	struct migctl *ctl;
	uint64_t last_raw, last_ns; /* for the stream rate `ctl info` shows */
	double last_rate;
	struct qmp *q;
	struct gw_session *s;
	char dir[96];
	struct listener mf, nbd[WIRE_MAX_DEVICES];
	int main_id;
	int nbd_nodes;	/* NBD client nodes added so far */
	bool tty;	/* stderr is a terminal: the progress line is redrawn */
	bool mirrors;	/* disk mirrors were started */
	bool completed; /* QEMU said "completed": the guest may be stopped here */
	uint64_t t0;
	const struct sigaction *sa; /* installed once the session is open */
	long rss0, peak;
	struct qemu_mig_info mi;
	int wire_code; /* the session's failure, WIRE_E_*, for the report */
	char err[QMP_ERR_MAX];
};

enum tick { TICK_WAIT, TICK_NOW, TICK_DONE, TICK_FAIL };

/* cmd_migrate.c */
/* Records why a phase failed (for the report) and returns <rc>. */
int mig_fail(struct mig *m, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Ends a redrawn progress line before another message. */
void mig_end_line(const struct mig *m);
/* Cancels QEMU's migration; the guest keeps running here. */
void mig_qemu_cancel(struct mig *m);

/* migrate_disks.c */
/* Listens on <path>; a thread opens a stream of <role> for each of QEMU's first <max> connections, in order. 0 or
 * -errno. */
MR_MUST_CHECK int mig_listener_start(struct listener *l, struct gw_session *s, const char *path, uint8_t role, int max);
void mig_listener_stop(struct listener *l);
/* Mirrors every --copy-storage(-inc) node into NBD streams and waits until all are ready. 0, -ECANCELED or -errno
 * (m->err). */
MR_MUST_CHECK int mig_start_mirrors(struct mig *m);
void mig_cancel_mirrors(struct mig *m);
void mig_drop_nbd_nodes(struct mig *m);

/* migrate_steer.c */
/* Asks QEMU to switch to post-copy (once). 0 or -errno with m->err set. */
MR_MUST_CHECK int mig_start_postcopy(struct mig *m, const char *why);
/* The failure after the switch to post-copy: where the guest is and QEMU's recovery. Returns <rc>. */
int mig_postcopy_lost(struct mig *m, int rc, const char *what);
/* --timeout has passed: cancel, pause the guest here, or switch to post-copy. */
enum tick mig_on_timeout(struct mig *m, int *rc);
/* The control socket for `migrelay ctl`, and where it is. 0 or an exit code. */
int mig_control_start(struct mig *m);
/* Publishes what `ctl info` shows; <phase> is a static string. */
void mig_control_publish(struct mig *m, const char *phase, double secs, bool accepting);
/* Acts on a waiting `migrelay ctl` request, and answers it. */
void mig_control_apply(struct mig *m);

#endif
