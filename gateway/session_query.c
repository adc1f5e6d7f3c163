/* SPDX-License-Identifier: MIT */
/*
 * What commands and the control socket read of a session: counters, the
 * outcome and first failure, one stream's result, who the session is, and
 * a status snapshot. Everything that changes is copied out under s->lock,
 * so no caller needs the session's fields or its lock.
 */
#include "session_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void gw_session_stats(struct gw_session *s, struct gw_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->nstreams; i++)
		if (s->streams[i]) {
			out->raw_out += s->streams[i]->sm.out_bytes;
			out->raw_in += s->streams[i]->sm.in_bytes;
		}
	for (int i = 0; i < WIRE_MAX_CONNS; i++)
		if (s->conns[i]) {
			out->wire_out += s->conns[i]->tx_bytes;
			out->wire_in += s->conns[i]->rx_bytes;
		}
	out->live_conns = s->nlive;
	pthread_mutex_unlock(&s->lock);
}

/* Locked. The outcome snapshot behind gw_session_outcome and gw_session_first_failure. */
void outcome_locked(const struct gw_session *s, struct gw_outcome *o)
{
	memset(o, 0, sizeof(*o));
	o->first_failed = -1;
	o->nstreams = s->nstreams;
	o->open_streams = s->open_streams;
	for (int i = 0; i < s->nstreams; i++) {
		const struct gw_stream *st = s->streams[i];

		if (!st || !st->fail_code)
			continue;
		if (o->failed_streams++ == 0) {
			o->first_failed = i;
			o->stream_code = st->fail_code;
			snprintf(o->stream_text, sizeof(o->stream_text), "%s", st->fail_text);
		}
	}
	o->session_code = s->err_code;
	snprintf(o->session_text, sizeof(o->session_text), "%s", s->err_text);
	o->session_from_peer = s->err_from_peer;
	o->bye = s->bye;
	o->live_conns = s->nlive;
	o->ok = !s->err_code && !s->open_streams && !o->failed_streams;
}

void gw_session_outcome(struct gw_session *s, struct gw_outcome *o)
{
	pthread_mutex_lock(&s->lock);
	outcome_locked(s, o);
	pthread_mutex_unlock(&s->lock);
}

int gw_session_first_failure(struct gw_session *s, int *code, char *text, size_t len)
{
	struct gw_outcome o;

	gw_session_outcome(s, &o);
	*code = o.stream_code ? o.stream_code : o.session_code;
	if (text && len)
		snprintf(text, len, "%s", o.stream_code ? o.stream_text : o.session_text);
	return o.failed_streams;
}

int gw_stream_result(struct gw_session *s, int id, int *code, char *text, size_t len, struct wire_end *end)
{
	const struct gw_stream *st;
	int r;

	pthread_mutex_lock(&s->lock);
	st = id >= 0 && id < s->nstreams ? s->streams[id] : NULL;
	if (!st) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	if (code)
		*code = st->fail_code;
	if (text && len)
		snprintf(text, len, "%s", st->fail_text[0] ? st->fail_text : s->err_text);
	if (end) {
		memset(end, 0, sizeof(*end));
		if (st->sm.out_end_sent)
			(void)!wire_end_decode(end, st->out_end, WIRE_END_LEN);
	}
	r = st->complete ? 1 : 0;
	pthread_mutex_unlock(&s->lock);
	return r;
}

int gw_stream_snapshot(struct gw_session *s, int id, struct gw_stream_info *o)
{
	const struct gw_stream *st;

	memset(o, 0, sizeof(*o));
	pthread_mutex_lock(&s->lock);
	st = id >= 0 && id < s->nstreams ? s->streams[id] : NULL;
	if (!st) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	o->id = st->id;
	o->role = st->role;
	o->complete = st->complete;
	o->fail_code = st->fail_code;
	snprintf(o->fail_text, sizeof(o->fail_text), "%s", st->fail_text);
	o->out_bytes = st->sm.out_bytes;
	o->in_bytes = st->sm.in_bytes;
	o->peer_seen = st->complete || st->fail_code || st->sm.cr.acked_chunks > 0 || st->sm.in_bytes > 0 ||
		       st->sm.in_held > 0 || st->sm.in_end_seen;
	o->target_connected = s->cfg.server ? st->opened : st->sm.opened_seen;
	o->session_code = s->err_code;
	snprintf(o->session_text, sizeof(o->session_text), "%s", s->err_text);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

uint64_t gw_session_id(const struct gw_session *s)
{
	return s->id;
}

const uint8_t *gw_session_token(const struct gw_session *s)
{
	return s->token;
}

const char *gw_session_identity(const struct gw_session *s)
{
	return s->identity;
}

const char *gw_session_target(const struct gw_session *s)
{
	return s->target;
}

const struct wire_hello *gw_session_hello(const struct gw_session *s)
{
	return &s->hello;
}

int gw_session_nconns(const struct gw_session *s)
{
	return s->nconns;
}

const struct gw_session_cfg *gw_session_cfg_get(const struct gw_session *s)
{
	return &s->cfg;
}

void *gw_session_rejoin_ctx(const struct gw_session *s)
{
	return s->rejoin_ctx;
}

struct mr_tls_cfg *gw_session_tls_cfg(const struct gw_session *s)
{
	return s->own_cfg;
}

void *gw_session_ctx(const struct gw_session *s)
{
	return s->ctx;
}

struct gw_session *gw_stream_session(const struct gw_stream *st)
{
	return st->s;
}

uint16_t gw_stream_id(const struct gw_stream *st)
{
	return st->id;
}

uint8_t gw_stream_role(const struct gw_stream *st)
{
	return st->role;
}

int gw_stream_rfd(const struct gw_stream *st)
{
	return st->rfd;
}

int gw_stream_wfd(const struct gw_stream *st)
{
	return st->wfd;
}

void *gw_stream_ctx(const struct gw_stream *st)
{
	return st->ctx;
}

const char *gw_stream_state_name(enum gw_stream_state state)
{
	switch (state) {
	case GW_STREAM_OPEN:
		return "open";
	case GW_STREAM_VERIFIED:
		return "verified";
	case GW_STREAM_FAILED:
		return "failed";
	}
	return "?";
}

/* Locked. The state word of the status snapshot (control.h). */
static const char *state_locked(const struct gw_session *s)
{
	if (s->finished || s->err_code)
		return "closing";
	if (s->never == 0)
		return "setup";
	if (s->nlive == 0)
		return "rejoining";
	return "running";
}

/* Locked. One stream's line of the snapshot. */
static void stream_status_locked(const struct gw_stream *st, struct gw_session_stream_status *o)
{
	o->id = st->id;
	o->role = st->role;
	o->state = st->fail_code ? GW_STREAM_FAILED : st->complete ? GW_STREAM_VERIFIED : GW_STREAM_OPEN;
	o->bytes_out = st->sm.out_bytes;
	o->bytes_in = st->sm.in_bytes;
	o->out_verified = st->sm.out_verified;
	o->in_verified = st->sm.in_done;
}

void gw_session_status(struct gw_session *s, struct gw_session_status *o)
{
	memset(o, 0, sizeof(*o));
	pthread_mutex_lock(&s->lock);
	o->id = s->id;
	snprintf(o->identity, sizeof(o->identity), "%s", s->identity);
	snprintf(o->target, sizeof(o->target), "%s", s->target);
	o->state = state_locked(s);
	o->age_s = (double)(gw_now_ns() - s->started_ns) / 1e9;
	o->connections_expected = s->nconns;
	o->connections_live = s->nlive;
	o->nconns = s->nconns > 0 && s->nconns <= WIRE_MAX_CONNS ? s->nconns : 0;
	for (int i = 0; i < WIRE_MAX_CONNS; i++) {
		const struct gw_conn *c = s->conns[i];
		struct gw_session_conn_status *cs = &o->conns[i];

		cs->rejoins = s->rejoins[i];
		o->rejoins += s->rejoins[i];
		if (!c)
			continue;
		if (i >= o->nconns)
			o->nconns = i + 1;
		cs->live = !c->dead;
		cs->wire_in = c->rx_bytes;
		cs->wire_out = c->tx_bytes;
		o->wire_in += c->rx_bytes;
		o->wire_out += c->tx_bytes;
	}
	o->nstreams = s->nstreams;
	for (int i = 0; i < s->nstreams; i++) {
		const struct gw_stream *st = s->streams[i];
		struct gw_session_stream_status *ss = &o->streams[i];

		if (!st) {
			/* a frame for a later id came first: this one is not here yet, and not counted */
			ss->id = (uint16_t)i;
			ss->state = GW_STREAM_OPEN;
			continue;
		}
		stream_status_locked(st, ss);
		o->bytes_in += ss->bytes_in;
		o->bytes_out += ss->bytes_out;
		o->streams_open += ss->state == GW_STREAM_OPEN;
		o->streams_verified += ss->state == GW_STREAM_VERIFIED;
		o->streams_failed += ss->state == GW_STREAM_FAILED;
	}
	o->error_code = s->err_code;
	snprintf(o->error, sizeof(o->error), "%s", s->err_text);
	pthread_mutex_unlock(&s->lock);
}
