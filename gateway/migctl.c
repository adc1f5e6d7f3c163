/* SPDX-License-Identifier: MIT */
/* A running migrate's control socket (migctl.h). */
#include "migctl.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "control.h"
#include "report.h"

enum req_state { RS_IDLE = 0, RS_PENDING = 1, RS_TAKEN = 2 };

struct migctl {
	struct gw_control *srv;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct migctl_info info; /* the last snapshot */
	bool have_info, accepting, stopping;
	struct migctl_req req;
	enum req_state state;
	uint64_t gen, answered; /* request generations */
	int result;
	char msg[GW_CONTROL_MAX_MESSAGE];
};

int migctl_info_json(const struct migctl_info *in, struct json_object **out)
{
	const struct qemu_mig_info *mi = &in->mi;
	struct json_object *o = json_object_new_object(), *mem = json_object_new_object(),
			   *comp = json_object_new_object(), *conns = json_object_new_object(),
			   *xb = in->xbzrle_cache ? json_object_new_object() : NULL;
	const char *health;

	if (!o || !mem || !comp || !conns || (in->xbzrle_cache && !xb)) {
		json_object_put(o);
		json_object_put(mem);
		json_object_put(comp);
		json_object_put(conns);
		json_object_put(xb);
		return -ENOMEM;
	}
	json_object_object_add(o, "phase", json_object_new_string(in->phase ? in->phase : "starting"));
	json_object_object_add(o, "status", json_object_new_string(mi->status[0] ? mi->status : "none"));
	gw_json_add_double(o, "elapsed_s", in->elapsed_s, 1);
	gw_json_add_u64(o, "data_processed", mi->transferred);
	gw_json_add_u64(o, "data_remaining", mi->remaining);
	gw_json_add_u64(o, "data_total", mi->total);
	gw_json_add_u64(mem, "rate_bps", (uint64_t)(mi->mbps * 1e6 / 8));
	gw_json_add_u64(mem, "dirty_pages_rate", mi->dirty_rate);
	gw_json_add_u64(mem, "dirty_rate_bps", mi->dirty_rate * (mi->page_size ? mi->page_size : 4096));
	gw_json_add_u64(mem, "page_size", mi->page_size);
	gw_json_add_u64(mem, "iteration", mi->passes);
	gw_json_add_u64(mem, "postcopy_requests", mi->postcopy_requests);
	json_object_object_add(o, "memory", mem);
	gw_json_add_u64(o, "expected_downtime_ms", mi->expected_downtime);
	json_object_object_add(o, "downtime_limit_ms", json_object_new_int(in->downtime_ms));
	gw_json_add_u64(o, "bandwidth_limit_bps", in->bandwidth);
	gw_json_add_u64(o, "setup_time_ms", mi->setup_time);
	json_object_object_add(o, "postcopy",
			       json_object_new_string(in->switched   ? "active"
						      : in->postcopy ? "enabled"
								     : "off"));
	json_object_object_add(o, "auto_converge", json_object_new_boolean(in->auto_converge));
	gw_json_add_u64(o, "cpu_throttle_pct", mi->throttle_pct);
	json_object_object_add(comp, "zstd", json_object_new_boolean(in->zstd));
	gw_json_add_u64(comp, "stream_bytes", in->stream_bytes);
	gw_json_add_u64(comp, "wire_bytes", in->wire_bytes);
	gw_json_add_double(comp, "ratio", in->wire_bytes ? (double)in->stream_bytes / (double)in->wire_bytes : 1.0, 3);
	if (xb) {
		gw_json_add_u64(xb, "cache_size", in->xbzrle_cache);
		gw_json_add_u64(xb, "bytes", mi->xbzrle_bytes);
		gw_json_add_u64(xb, "pages", mi->xbzrle_pages);
		gw_json_add_u64(xb, "cache_miss", mi->xbzrle_cache_miss);
		gw_json_add_double(xb, "cache_miss_rate", mi->xbzrle_cache_miss_rate, 3);
		gw_json_add_u64(xb, "overflow", mi->xbzrle_overflow);
	}
	json_object_object_add(comp, "xbzrle", xb);
	json_object_object_add(o, "compression", comp);
	gw_json_add_double(o, "stream_rate_bps", in->rate_bps, 0);
	health = in->conns_live >= in->conns_expected ? "ok" : in->conns_live > 0 ? "degraded" : "rejoining";
	json_object_object_add(conns, "expected", json_object_new_int(in->conns_expected));
	json_object_object_add(conns, "live", json_object_new_int(in->conns_live));
	json_object_object_add(conns, "health", json_object_new_string(health));
	json_object_object_add(o, "connections", conns);
	*out = o;
	return 0;
}

/* Parses the argument of set-speed or set-downtime into <req>. 0 or -EINVAL with a sentence. */
static int parse_req(const struct gw_control_req *cr, struct migctl_req *req, char *msg, size_t msglen)
{
	memset(req, 0, sizeof(*req));
	if (!strcmp(cr->name, "set-speed")) {
		req->op = MIGCTL_SPEED;
		if (cli_parse_bytes(cr->arg, 1, UINT64_MAX, &req->value) == 0)
			return 0;
		snprintf(msg, msglen, "set-speed takes bytes/s such as 500M or 1G, not \"%.40s\"", cr->arg);
		return -EINVAL;
	}
	if (!strcmp(cr->name, "set-downtime")) {
		req->op = MIGCTL_DOWNTIME;
		if (cli_parse_millis(cr->arg, 1, 2000000, &req->value) == 0)
			return 0;
		snprintf(msg, msglen, "set-downtime takes 1 to 2000000 ms (300, 300ms, 2s), not \"%.40s\"", cr->arg);
		return -EINVAL;
	}
	req->op = !strcmp(cr->name, "postcopy") ? MIGCTL_POSTCOPY : MIGCTL_CANCEL;
	return 0;
}

/* Control thread: one job command. */
static int job(void *ctx, const struct gw_control_req *cr, struct json_object *reply, char *msg, size_t msglen)
{
	struct migctl *c = ctx;
	struct migctl_req req;
	struct timespec until;
	uint64_t gen;
	int r;

	if (!strcmp(cr->name, "info")) {
		struct migctl_info info;
		struct json_object *o = NULL;
		bool have;

		pthread_mutex_lock(&c->lock);
		info = c->info;
		have = c->have_info;
		pthread_mutex_unlock(&c->lock);
		if (!have) {
			snprintf(msg, msglen, "the migration has not started yet");
			return -EAGAIN;
		}
		if (migctl_info_json(&info, &o) < 0 || gw_json_put(reply, "info", o) < 0) {
			snprintf(msg, msglen, "out of memory");
			return -ENOMEM;
		}
		return 0;
	}
	if ((r = parse_req(cr, &req, msg, msglen)) < 0)
		return r;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += MIGCTL_WAIT_MS / 1000;
	pthread_mutex_lock(&c->lock);
	if (!c->accepting || c->stopping) {
		snprintf(msg, msglen, "the migration does not take requests now (%s)",
			 c->have_info ? c->info.phase : "starting");
		r = -EAGAIN;
		goto out;
	}
	if (c->state != RS_IDLE) {
		snprintf(msg, msglen, "another request is being handled; try again");
		r = -EBUSY;
		goto out;
	}
	c->req = req;
	c->state = RS_PENDING;
	gen = ++c->gen;
	while (c->answered != gen && !c->stopping)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT)
			break;
	if (c->answered == gen) {
		r = c->result;
		snprintf(msg, msglen, "%s", c->msg);
	} else if (c->state == RS_PENDING) {
		c->state = RS_IDLE; /* withdrawn: the main loop never saw it */
		snprintf(msg, msglen, "the migration did not take the request within %d ms", MIGCTL_WAIT_MS);
		r = -ETIMEDOUT;
	} else {
		snprintf(msg, msglen, "the request was taken but not answered within %d ms", MIGCTL_WAIT_MS);
		r = -ETIMEDOUT;
	}
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

int migctl_start(struct migctl **out, const char *path, char *why, size_t whylen)
{
	struct migctl *c = calloc(1, sizeof(*c));
	struct gw_control_ops ops = {.job = job};
	int r;

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	ops.ctx = c;
	if ((r = gw_control_start(&c->srv, path, &ops, why, whylen)) < 0) {
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		free(c);
		return r;
	}
	*out = c;
	return 0;
}

const char *migctl_path(const struct migctl *c)
{
	return gw_control_path(c->srv);
}

void migctl_publish(struct migctl *c, const struct migctl_info *info, bool accepting)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->info = *info;
	c->have_info = true;
	c->accepting = accepting;
	pthread_mutex_unlock(&c->lock);
}

bool migctl_take(struct migctl *c, struct migctl_req *req)
{
	bool got = false;

	if (!c)
		return false;
	pthread_mutex_lock(&c->lock);
	if (c->state == RS_PENDING) {
		*req = c->req;
		c->state = RS_TAKEN;
		got = true;
	}
	pthread_mutex_unlock(&c->lock);
	return got;
}

void migctl_answer(struct migctl *c, int r, const char *fmt, ...)
{
	va_list ap;

	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->state == RS_TAKEN) {
		va_start(ap, fmt);
		vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
		va_end(ap);
		c->result = r;
		c->answered = c->gen;
		c->state = RS_IDLE;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->lock);
}

void migctl_stop(struct migctl *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	/* joins the control thread: no job() call runs after this */
	gw_control_stop(c->srv);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
