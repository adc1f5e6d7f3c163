/* SPDX-License-Identifier: MIT */
/*
 * `migrelay migrate`: steering a running migration. Post-copy (the switch,
 * and what a failure after it means), the timeout's actions, and the
 * control socket `migrelay ctl` talks to (migctl.h): the snapshots it
 * answers from and the requests carried out here, on migrate's own QMP
 * connection. Main thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "control.h"
#include "exitcodes.h"
#include "migrate.h"
#include "report.h"

/* The control socket for `migrelay ctl`, and where it is. Returns 0 or an exit code. */
int mig_control_start(struct mig *m)
{
	char path[160], why[GW_CONTROL_MAX_MESSAGE];
	int r;

	if (m->control) {
		if (gw_control_parse_path(m->control, path, sizeof(path)) < 0)
			return mig_fail(m, MR_EXIT_USAGE, "--control %.80s: not a unix socket path", m->control);
	} else {
		snprintf(path, sizeof(path), "%s/control.sock", m->dir);
	}
	if ((r = migctl_start(&m->ctl, path, why, sizeof(why))) < 0)
		return mig_fail(m, MR_EXIT_FAIL, "control socket: %s", why);
	if (m->o.json) {
		struct json_object *ev = gw_json_event("control");

		json_object_object_add(ev, "path", json_object_new_string(migctl_path(m->ctl)));
		gw_json_emit(stdout, ev);
	} else if (!m->o.quiet) {
		fprintf(stderr, "migrelay migrate: control socket %s (migrelay ctl %s info)\n", migctl_path(m->ctl),
			migctl_path(m->ctl));
	}
	return 0;
}

/* Publishes what `ctl info` shows; <phase> is a static string. */
void mig_control_publish(struct mig *m, const char *phase, double secs, bool accepting)
{
	struct migctl_info in;
	struct gw_stats st;
	uint64_t now = gw_now_ns();

	if (!m->ctl)
		return;
	gw_session_stats(m->s, &st);
	if (m->last_ns && now - m->last_ns >= 500000000ull) {
		m->last_rate = (double)(st.raw_out - m->last_raw) / ((double)(now - m->last_ns) / 1e9);
		m->last_raw = st.raw_out;
		m->last_ns = now;
	} else if (!m->last_ns) {
		m->last_raw = st.raw_out;
		m->last_ns = now;
	}
	memset(&in, 0, sizeof(in));
	in.phase = phase;
	in.elapsed_s = secs;
	in.mi = m->mi;
	in.stream_bytes = st.raw_out;
	in.wire_bytes = st.wire_out;
	in.rate_bps = m->last_rate;
	in.conns_expected = m->o.connections;
	in.conns_live = st.live_conns;
	in.zstd = m->o.compress;
	in.postcopy = m->o.postcopy;
	in.switched = m->switched;
	in.auto_converge = m->auto_converge;
	in.bandwidth = m->bandwidth;
	in.downtime_ms = m->downtime_ms;
	in.xbzrle_cache = m->xbzrle_cache;
	migctl_publish(m->ctl, &in, accepting);
}

/* Asks QEMU to switch to post-copy (once). Returns 0 or -errno with m->err set. */
int mig_start_postcopy(struct mig *m, const char *why)
{
	int r;

	if (m->pc_started)
		return 0;
	if ((r = qmp_cmd(m->q, "migrate-start-postcopy", NULL, NULL, m->err, sizeof(m->err))) < 0)
		return r;
	m->pc_started = true;
	mig_end_line(m);
	if (!m->o.quiet && !m->o.json)
		fprintf(stderr, "migrelay migrate: switching to post-copy (%s)\n", why);
	return 0;
}

/*
 * After the switch to post-copy the destination holds the guest's running
 * state and the source the rest of its memory: neither may run. Says so,
 * and what QEMU offers to recover. Returns the exit code.
 */
int mig_postcopy_lost(struct mig *m, int rc, const char *what)
{
	mig_end_line(m);
	return mig_fail(
	    m, rc,
	    "%s after the switch to post-copy: the guest is paused on the destination, which holds its "
	    "running state, and its remaining memory is still on the source (status %s). Do not resume or "
	    "stop either QEMU. QEMU's post-copy recovery: on the destination QEMU, migrate-recover with a new "
	    "URI; then on the source QEMU, migrate with that URI and \"resume\": true (QEMU 3.0 and later)",
	    what, m->mi.status);
}

/* --timeout has passed: cancel, pause the guest here, or switch to post-copy. */
enum tick mig_on_timeout(struct mig *m, int *rc)
{
	char err[QMP_ERR_MAX];

	m->timed_out = true;
	switch (m->timeout_action) {
	case TA_SUSPEND:
		if (qmp_cmd(m->q, "stop", NULL, NULL, err, sizeof(err)) < 0) {
			*rc = mig_fail(m, MR_EXIT_QEMU, "timeout: source QEMU refused to pause the guest: %s", err);
			return TICK_FAIL;
		}
		m->we_stopped = true;
		mig_end_line(m);
		if (!m->o.quiet && !m->o.json)
			fprintf(stderr,
				"migrelay migrate: timeout: paused the guest here so that the migration completes\n");
		return TICK_NOW;
	case TA_POSTCOPY:
		if (mig_start_postcopy(m, "timeout") < 0) {
			*rc = mig_fail(m, MR_EXIT_QEMU, "timeout: source QEMU refused to switch to post-copy: %s",
				       m->err);
			return TICK_FAIL;
		}
		return TICK_NOW;
	case TA_CANCEL:
		break;
	}
	mig_qemu_cancel(m);
	mig_end_line(m);
	*rc = mig_fail(m, MR_EXIT_CANCELLED, "timeout; migration cancelled, the guest keeps running here");
	return TICK_FAIL;
}

/* Acts on a `migrelay ctl` request, if one is waiting, and answers it. Main thread (it owns the QMP socket). */
void mig_control_apply(struct mig *m)
{
	struct migctl_req req;
	char a[32];
	int r;

	if (!migctl_take(m->ctl, &req))
		return;
	switch (req.op) {
	case MIGCTL_SPEED:
		/* After the switch QEMU throttles by max-postcopy-bandwidth when one is set: set both. */
		r = qmp_cmdf(m->q, "migrate-set-parameters", NULL, m->err, sizeof(m->err),
			     m->switched ? "{\"max-bandwidth\": %" PRIu64 ", \"max-postcopy-bandwidth\": %" PRIu64 "}"
					 : "{\"max-bandwidth\": %" PRIu64 "}",
			     req.value, req.value);
		if (r == 0)
			m->bandwidth = req.value;
		mig_end_line(m);
		if (r == 0 && !m->o.quiet && !m->o.json)
			fprintf(stderr, "migrelay migrate: ctl: bandwidth set to %s/s\n",
				gw_fmt_bytes(req.value, a, sizeof(a)));
		if (r < 0)
			migctl_answer(m->ctl, r, "QEMU refused: %s", m->err);
		else
			migctl_answer(m->ctl, 0, "bandwidth set to %s/s", gw_fmt_bytes(req.value, a, sizeof(a)));
		return;
	case MIGCTL_DOWNTIME:
		r = qmp_cmdf(m->q, "migrate-set-parameters", NULL, m->err, sizeof(m->err),
			     "{\"downtime-limit\": %" PRIu64 "}", req.value);
		if (r == 0)
			m->downtime_ms = (int)req.value;
		if (r < 0)
			migctl_answer(m->ctl, r, "QEMU refused: %s", m->err);
		else
			migctl_answer(m->ctl, 0, "downtime limit set to %" PRIu64 " ms", req.value);
		return;
	case MIGCTL_POSTCOPY:
		if (!m->o.postcopy)
			migctl_answer(m->ctl, -EINVAL, "post-copy was not enabled: start migrate with --postcopy");
		else if (m->pc_started)
			migctl_answer(m->ctl, 0, "already switching to post-copy (status %s)", m->mi.status);
		else if ((r = mig_start_postcopy(m, "migrelay ctl")) < 0)
			migctl_answer(m->ctl, r, "QEMU refused: %s", m->err);
		else
			migctl_answer(m->ctl, 0, "switching to post-copy");
		return;
	case MIGCTL_CANCEL:
		if (m->switched) {
			migctl_answer(m->ctl, -EBUSY,
				      "in post-copy the migration cannot be cancelled: the destination "
				      "holds the guest");
			return;
		}
		mig_cancel_flag = 1;
		migctl_answer(m->ctl, 0, "cancelling; the guest keeps running on the source");
		return;
	case MIGCTL_NONE:
		break;
	}
	migctl_answer(m->ctl, -EINVAL, "unknown request");
}
