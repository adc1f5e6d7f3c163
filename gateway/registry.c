/* SPDX-License-Identifier: MIT */
#include "registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "log.h"

void gw_registry_init(struct gw_registry *r, int max_sessions)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	r->max_sessions = max_sessions;
}

/* A reserved slot's identity, until its session is listed or the reservation given back. */
struct gw_reg_pending {
	struct gw_reg_pending *next;
	char identity[];
};

/* Locked. Sessions <identity> holds: listed ones and reservations. */
static int identity_count_locked(const struct gw_registry *r, const char *identity)
{
	int n = 0;

	for (const struct gw_reg_entry *e = r->head; e; e = e->next)
		n += !strcmp(e->identity, identity);
	for (const struct gw_reg_pending *p = r->pending; p; p = p->next)
		n += !strcmp(p->identity, identity);
	return n;
}

int gw_registry_reserve(struct gw_registry *r, const char *identity, int per_identity)
{
	size_t len = strlen(identity) + 1;
	struct gw_reg_pending *p = malloc(sizeof(*p) + len);
	int ret = 0;

	if (!p)
		return -ENOMEM;
	memcpy(p->identity, identity, len);
	pthread_mutex_lock(&r->lock);
	/* a closing session still holds its memory: it counts until it has released everything */
	if (r->nsessions + r->reserved + r->closing >= r->max_sessions)
		ret = -EBUSY;
	else if (per_identity > 0 && identity_count_locked(r, identity) >= per_identity)
		ret = -EDQUOT;
	if (!ret) {
		r->reserved++;
		p->next = r->pending;
		r->pending = p;
		p = NULL;
	}
	pthread_mutex_unlock(&r->lock);
	free(p);
	return ret;
}

/* Locked. Drops one reservation of <identity> (of anybody's, should none be that identity's). */
static void unreserve_locked(struct gw_registry *r, const char *identity)
{
	struct gw_reg_pending **pp = &r->pending, *p;

	while (*pp && strcmp((*pp)->identity, identity))
		pp = &(*pp)->next;
	if (!*pp)
		pp = &r->pending;
	if ((p = *pp)) {
		*pp = p->next;
		free(p);
	}
	r->reserved--;
}

void gw_registry_unreserve(struct gw_registry *r, const char *identity)
{
	pthread_mutex_lock(&r->lock);
	unreserve_locked(r, identity);
	pthread_mutex_unlock(&r->lock);
}

int gw_registry_add(struct gw_registry *r, struct gw_session *s, const char *identity, struct gw_reg_entry **out)
{
	struct gw_reg_entry *e = calloc(1, sizeof(*e));

	if (!e || !(e->identity = strdup(identity))) {
		free(e);
		gw_registry_unreserve(r, identity);
		return -ENOMEM;
	}
	e->s = s;
	e->id = gw_session_id(s);
	memcpy(e->token, gw_session_token(s), WIRE_TOKEN_LEN);
	e->refs = 1;
	e->listed = true;
	pthread_mutex_init(&e->join_lock, NULL);
	pthread_mutex_init(&e->flow_lock, NULL);
	e->joined = 1; /* connection 0 comes with the HELLO */
	pthread_mutex_lock(&r->lock);
	unreserve_locked(r, identity);
	r->nsessions++;
	e->next = r->head;
	r->head = e;
	pthread_mutex_unlock(&r->lock);
	*out = e;
	return 0;
}

void gw_registry_ready(struct gw_registry *r, struct gw_reg_entry *e)
{
	pthread_mutex_lock(&r->lock);
	e->ready = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static bool ct_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

static void abs_deadline(struct timespec *ts, uint64_t deadline_ns)
{
	struct timespec now;
	uint64_t left, mono = gw_now_ns();

	/* gw_now_ns is CLOCK_MONOTONIC; the condition variable uses CLOCK_REALTIME. */
	left = deadline_ns > mono ? deadline_ns - mono : 0;
	clock_gettime(CLOCK_REALTIME, &now);
	ts->tv_sec = now.tv_sec + (time_t)(left / 1000000000ull);
	ts->tv_nsec = now.tv_nsec + (long)(left % 1000000000ull);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static struct gw_reg_entry *lookup_locked(struct gw_registry *r, uint64_t id)
{
	for (struct gw_reg_entry *e = r->head; e; e = e->next)
		if (e->listed && e->id == id)
			return e;
	return NULL;
}

int gw_registry_find(struct gw_registry *r, uint64_t id, const uint8_t *token, const char *identity,
		     uint64_t deadline_ns, struct gw_reg_entry **out, uint16_t *code)
{
	struct gw_reg_entry *e;
	struct timespec ts;

	abs_deadline(&ts, deadline_ns);
	pthread_mutex_lock(&r->lock);
	for (;;) {
		e = lookup_locked(r, id);
		/* Unknown session and wrong token read the same to the peer. */
		if (!e || !ct_equal(e->token, token, WIRE_TOKEN_LEN)) {
			pthread_mutex_unlock(&r->lock);
			*code = WIRE_E_BAD_TOKEN;
			return -ENOENT;
		}
		if (e->ready)
			break;
		/* Its WELCOME is on the way: the client may JOIN before connection 0 is in. */
		if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT) {
			pthread_mutex_unlock(&r->lock);
			*code = WIRE_E_LIMIT;
			return -ETIMEDOUT;
		}
	}
	/* Whole identities: a DN that shares a prefix with the session's is another peer. */
	if (strcmp(e->identity, identity)) {
		pthread_mutex_unlock(&r->lock);
		*code = WIRE_E_IDENTITY;
		return -EACCES;
	}
	e->refs++;
	pthread_mutex_unlock(&r->lock);
	*out = e;
	return 0;
}

int gw_registry_join_lock(struct gw_reg_entry *e, uint64_t deadline_ns)
{
	struct timespec ts;

	abs_deadline(&ts, deadline_ns);
	return -pthread_mutex_timedlock(&e->join_lock, &ts);
}

void gw_registry_join_unlock(struct gw_reg_entry *e)
{
	pthread_mutex_unlock(&e->join_lock);
}

void gw_registry_put(struct gw_registry *r, struct gw_reg_entry *e)
{
	pthread_mutex_lock(&r->lock);
	e->refs--;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* Unlists <e> and waits, lock released, until only the caller's reference is left. */
static void unlist_and_wait(struct gw_registry *r, struct gw_reg_entry *e)
{
	pthread_mutex_lock(&r->lock);
	for (struct gw_reg_entry **pp = &r->head; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	e->listed = false;
	r->nsessions--;
	r->closing++;
	pthread_cond_broadcast(&r->cond);
	while (e->refs > 1)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
}

/* After the session is closed: the slot is free, and the configuration snapshots it held are let go. */
static void release(struct gw_registry *r, struct gw_reg_entry *e)
{
	struct gw_snap_hold *h, *next;

	pthread_mutex_lock(&r->lock);
	r->closing--;
	h = e->snaps;
	e->snaps = NULL;
	pthread_mutex_unlock(&r->lock);
	for (; h; h = next) {
		next = h->next;
		gw_snap_put(h->snap);
		free(h);
	}
	pthread_mutex_destroy(&e->join_lock);
	pthread_mutex_destroy(&e->flow_lock);
	free(e->identity);
	free(e);
}

void gw_registry_hold(struct gw_registry *r, struct gw_reg_entry *e, struct gw_snap_hold *h)
{
	bool dup = false;

	pthread_mutex_lock(&r->lock);
	for (struct gw_snap_hold *x = e->snaps; x && !dup; x = x->next)
		dup = x->snap == h->snap;
	if (!dup) {
		h->next = e->snaps;
		e->snaps = h;
	}
	pthread_mutex_unlock(&r->lock);
	if (dup) {
		gw_snap_put(h->snap);
		free(h);
	}
}

void gw_registry_joined(struct gw_registry *r, struct gw_reg_entry *e, int idx)
{
	bool rejoin;

	if (idx < 0 || idx >= WIRE_MAX_CONNS)
		return;
	pthread_mutex_lock(&r->lock);
	rejoin = (e->joined >> idx) & 1;
	e->joined |= 1ull << idx;
	if (rejoin)
		e->rejoins[idx]++;
	pthread_mutex_unlock(&r->lock);
	if (rejoin)
		gw_metrics_rejoin(gw_session_target(e->s));
}

/* Feeds the session's byte totals into the metrics, one caller at a time per session. */
static void flow_update(struct gw_reg_entry *e)
{
	struct gw_stats st;

	gw_session_stats(e->s, &st);
	pthread_mutex_lock(&e->flow_lock);
	gw_metrics_flow_update(&e->flow, gw_session_target(e->s), st.raw_in, st.raw_out);
	pthread_mutex_unlock(&e->flow_lock);
}

enum { REG_MAX_LIST = 512 }; /* more than --max-sessions allows */

/* References on every listed entry (at most REG_MAX_LIST); the caller drops them with gw_registry_put. */
static int take_listed(struct gw_registry *r, struct gw_reg_entry **list)
{
	int n = 0;

	pthread_mutex_lock(&r->lock);
	for (struct gw_reg_entry *e = r->head; e && n < REG_MAX_LIST; e = e->next)
		if (e->listed) {
			e->refs++;
			list[n++] = e;
		}
	pthread_mutex_unlock(&r->lock);
	return n;
}

void gw_registry_metrics_tick(struct gw_registry *r)
{
	struct gw_reg_entry *list[REG_MAX_LIST];
	int n = take_listed(r, list);

	for (int i = 0; i < n; i++) {
		flow_update(list[i]);
		gw_registry_put(r, list[i]);
	}
}

void gw_registry_counts(struct gw_registry *r, int *listed, int *closing, int *conns_used)
{
	struct gw_reg_entry *list[REG_MAX_LIST];
	int n = take_listed(r, list);

	*conns_used = 0;
	for (int i = 0; i < n; i++) {
		struct gw_stats st;

		gw_session_stats(list[i]->s, &st);
		if (st.live_conns > *conns_used)
			*conns_used = st.live_conns;
		gw_registry_put(r, list[i]);
	}
	pthread_mutex_lock(&r->lock);
	*listed = r->nsessions;
	*closing = r->closing;
	pthread_mutex_unlock(&r->lock);
}

/*
 * One session's numbers, from one snapshot of the session (<ss>, scratch
 * space) and the registry's own view: "setup" until the entry is ready, and
 * the rejoins the registry counted.
 */
static void session_status(struct gw_registry *r, struct gw_reg_entry *e, struct gw_session_status *ss,
			   struct gw_status_session *o, struct gw_status_conn *conns, char *err, size_t errlen)
{
	bool ready;

	pthread_mutex_lock(&r->lock);
	ready = e->ready;
	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		conns[i] = (struct gw_status_conn){.index = i, .rejoins = e->rejoins[i]};
	pthread_mutex_unlock(&r->lock);

	gw_session_status(e->s, ss);
	o->id = e->id;
	o->identity = e->identity;
	o->target = gw_session_target(e->s);
	o->age_s = ss->age_s;
	o->connections_expected = ss->connections_expected;
	o->nconns = ss->connections_expected < WIRE_MAX_CONNS ? ss->connections_expected : WIRE_MAX_CONNS;
	for (int i = 0; i < o->nconns; i++) {
		const struct gw_session_conn_status *c = &ss->conns[i];

		conns[i].live = c->live;
		conns[i].wire_in = c->wire_in;
		conns[i].wire_out = c->wire_out;
		o->wire_in += c->wire_in;
		o->wire_out += c->wire_out;
	}
	o->bytes_in = ss->bytes_in;
	o->bytes_out = ss->bytes_out;
	o->streams_open = ss->streams_open;
	o->streams_verified = ss->streams_verified;
	o->streams_failed = ss->streams_failed;
	if (ss->error_code) {
		snprintf(err, errlen, "%s", ss->error);
		o->error = err;
	}
	if (!ready)
		o->state = "setup";
	else if (!strcmp(ss->state, "closing")) /* failed or finished */
		o->state = "closing";
	else
		o->state = ss->connections_live ? "running" : "rejoining";
	o->conns = conns;
}

int gw_registry_status(struct gw_registry *r, struct json_object *status)
{
	struct gw_reg_entry *list[REG_MAX_LIST];
	struct gw_session_status *ss = malloc(sizeof(*ss)); /* about 5 KiB */
	int n = take_listed(r, list), ret = ss ? 0 : -ENOMEM;

	for (int i = 0; i < n; i++) {
		struct gw_status_conn conns[WIRE_MAX_CONNS];
		struct gw_status_session o = {0};
		char err[WIRE_MAX_ERROR_TEXT + 1];

		if (!ret) {
			session_status(r, list[i], ss, &o, conns, err, sizeof(err));
			ret = gw_status_add_session(status, &o);
		}
		gw_registry_put(r, list[i]);
	}
	free(ss);
	return ret;
}

void gw_registry_drop(struct gw_registry *r, struct gw_reg_entry *e)
{
	unlist_and_wait(r, e);
	gw_session_close(e->s);
	release(r, e);
}

struct supervisor {
	struct gw_registry *r;
	struct gw_reg_entry *e;
};

/*
 * Waits for the end of the session. With every connection gone while
 * streams are open, or after streams but before the client's BYE, the
 * session waits for a rejoin (its timer enforces the timeout): the last
 * VERIFIED may have gone down with a connection. Returns true when it
 * ended well; <what> says how it ended.
 */
static bool wait_outcome(struct gw_session *s, char *what, size_t len, int *code)
{
	char sfail[WIRE_MAX_ERROR_TEXT + 32] = "", a[32], b[32];
	struct gw_outcome o;
	struct gw_stats st;
	bool idle;

	gw_session_wait_finished(s, &o);
	/* A stream can fail on its own (its target would not open) while the session stays sound. */
	*code = o.session_code ? o.session_code : o.stream_code;
	if (o.failed_streams)
		snprintf(sfail, sizeof(sfail), "stream %d: %s", o.first_failed, o.stream_text);
	/*
	 * Closed for a limit (--idle-timeout, a stopping server) with no stream
	 * open and none failed: every stream it carried was verified, which is
	 * not an error (a long-lived `migrelay forward` leaves sessions idle).
	 */
	idle = o.session_code == WIRE_E_LIMIT && !o.session_from_peer && o.open_streams == 0 &&
	       o.failed_streams == 0;

	gw_session_stats(s, &st);
	if (o.ok || idle) {
		snprintf(what, len, "done%s%s%s: %d stream(s), received %s, sent %s, all verified", idle ? " (" : "",
			 idle ? o.session_text : "", idle ? ")" : "", o.nstreams, gw_fmt_bytes(st.raw_in, a, sizeof(a)),
			 gw_fmt_bytes(st.raw_out, b, sizeof(b)));
		return true;
	}
	if (o.session_code)
		snprintf(what, len, "failed: %s", o.session_text);
	else if (o.failed_streams)
		snprintf(what, len, "failed: %d of %d stream(s) failed; %s", o.failed_streams, o.nstreams, sfail);
	else
		snprintf(what, len, "failed: connections closed before every stream ended");
	return false;
}

/* Supervisor thread of one session: owns the creator's reference of its entry. */
static void *supervisor_main(void *arg)
{
	struct supervisor *sv = arg;
	struct gw_reg_entry *e = sv->e;
	struct gw_session *s = e->s;
	char line[256], what[WIRE_MAX_ERROR_TEXT + 64];
	int code = 0;
	bool ok;

	ok = wait_outcome(s, what, sizeof(what), &code);
	/* Counted before the session leaves the registry: a scrape never sees it neither active nor ended. */
	flow_update(e);
	if (ok)
		gw_metrics_session_done(gw_session_target(s));
	else
		gw_metrics_session_failed(gw_session_target(s), code);
	snprintf(line, sizeof(line), "session %016llx (%.160s, target %s) ", (unsigned long long)e->id, e->identity,
		 gw_session_target(s));
	unlist_and_wait(sv->r, e);
	/* Close first (a failed file target removes its temporary file), then say how it ended. */
	gw_session_close(s);
	release(sv->r, e);
	if (ok)
		gw_info("%s%s", line, what);
	else
		gw_err("%s%s", line, what);
	free(sv);
	return NULL;
}

void gw_registry_supervise(struct gw_registry *r, struct gw_reg_entry *e)
{
	struct supervisor *sv = malloc(sizeof(*sv));
	pthread_t thr;

	gw_metrics_session_started(gw_session_target(e->s));
	if (sv) {
		sv->r = r;
		sv->e = e;
		if (pthread_create(&thr, NULL, supervisor_main, sv) == 0) {
			pthread_detach(thr);
			return;
		}
		free(sv);
	}
	gw_err("session %016llx: cannot start its supervisor", (unsigned long long)e->id);
	gw_session_fail(e->s, WIRE_E_INTERNAL, true, "the server cannot start the session");
	gw_metrics_session_failed(gw_session_target(e->s), WIRE_E_INTERNAL);
	gw_registry_drop(r, e);
}

void gw_registry_fail_all(struct gw_registry *r, int code, const char *text)
{
	struct gw_reg_entry *list[512];
	int n = 0;

	/* References, so the sessions stay while they are failed with the registry lock released. */
	pthread_mutex_lock(&r->lock);
	for (struct gw_reg_entry *e = r->head; e && n < (int)(sizeof(list) / sizeof(list[0])); e = e->next) {
		e->refs++;
		list[n++] = e;
	}
	pthread_mutex_unlock(&r->lock);
	for (int i = 0; i < n; i++) {
		gw_session_fail(list[i]->s, code, true, "%s", text);
		gw_registry_put(r, list[i]);
	}
}

int gw_registry_busy(struct gw_registry *r)
{
	int n;

	pthread_mutex_lock(&r->lock);
	n = r->nsessions + r->reserved + r->closing;
	pthread_mutex_unlock(&r->lock);
	return n;
}
