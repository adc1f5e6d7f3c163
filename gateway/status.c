/* SPDX-License-Identifier: MIT */
/*
 * The status object's builders (status.h): the one place that knows its
 * field names, so that `migrelay status`, scripts and docs/OPERATIONS.md
 * agree with what the daemon sends.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "status.h"

int gw_json_put(struct json_object *o, const char *key, struct json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_object_add(o, key, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

struct json_object *gw_json_num(double v)
{
	struct json_object *o = json_object_new_double(v);

	if (o)
		json_object_set_serializer(o, json_object_double_to_json_string, (void *)(uintptr_t) "%.3f", NULL);
	return o;
}

/* json-c represents null as a NULL object */
int gw_json_put_null(struct json_object *o, const char *key)
{
	return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
}

int gw_json_put_str(struct json_object *o, const char *key, const char *s)
{
	return s ? gw_json_put(o, key, json_object_new_string(s)) : gw_json_put_null(o, key);
}

/* The array <key> of <status>, created on first use. */
static struct json_object *array_of(struct json_object *status, const char *key)
{
	struct json_object *a;

	if (json_object_object_get_ex(status, key, &a))
		return a;
	if (gw_json_put(status, key, json_object_new_array()) < 0)
		return NULL;
	json_object_object_get_ex(status, key, &a);
	return a;
}

static int append(struct json_object *status, const char *key, struct json_object *item)
{
	struct json_object *a = array_of(status, key);

	if (!a || json_object_array_add(a, item) < 0) {
		json_object_put(item);
		return -ENOMEM;
	}
	return 0;
}

int gw_status_set_daemon(struct json_object *status, const struct gw_status_daemon *d)
{
	struct json_object *o = json_object_new_object(), *lr;
	int r = 0;

	if (!o)
		return -ENOMEM;
	r |= gw_json_put(o, "pid", json_object_new_int64(getpid()));
	r |= gw_json_put_str(o, "version", d->version);
	r |= gw_json_put(o, "uptime_s", gw_json_num(d->uptime_s));
	r |= gw_json_put(o, "config_generation", json_object_new_uint64(d->config_generation));
	if (d->reloaded && (lr = json_object_new_object())) {
		r |= gw_json_put(lr, "ok", json_object_new_boolean(d->last_reload_ok));
		r |= gw_json_put_str(lr, "message", d->last_reload_msg);
		r |= gw_json_put(lr, "age_s", gw_json_num(d->last_reload_age_s));
		r |= gw_json_put(o, "last_reload", lr);
	} else {
		r |= d->reloaded ? -ENOMEM : gw_json_put_null(o, "last_reload");
	}
	if (r) {
		json_object_put(o);
		return -ENOMEM;
	}
	return gw_json_put(status, "daemon", o);
}

int gw_status_add_listener(struct json_object *status, const char *kind, const char *address)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return -ENOMEM;
	if (gw_json_put_str(o, "kind", kind) | gw_json_put_str(o, "address", address)) {
		json_object_put(o);
		return -ENOMEM;
	}
	return append(status, "listeners", o);
}

int gw_status_add_limit(struct json_object *status, const char *name, int64_t used, int64_t max)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return -ENOMEM;
	if (gw_json_put_str(o, "name", name) | gw_json_put(o, "used", json_object_new_int64(used)) |
	    gw_json_put(o, "max", json_object_new_int64(max)) |
	    (max > 0 ? gw_json_put(o, "ratio", gw_json_num((double)used / (double)max))
		     : gw_json_put_null(o, "ratio"))) {
		json_object_put(o);
		return -ENOMEM;
	}
	return append(status, "limits", o);
}

static struct json_object *conn_json(const struct gw_status_conn *c)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	if (gw_json_put(o, "index", json_object_new_int(c->index)) |
	    gw_json_put(o, "live", json_object_new_boolean(c->live)) |
	    gw_json_put(o, "rejoins", json_object_new_int64(c->rejoins)) |
	    gw_json_put(o, "wire_in", json_object_new_uint64(c->wire_in)) |
	    gw_json_put(o, "wire_out", json_object_new_uint64(c->wire_out))) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

int gw_status_add_session(struct json_object *status, const struct gw_status_session *s)
{
	struct json_object *o = json_object_new_object(), *conns = json_object_new_array(),
			   *st = json_object_new_object();
	uint64_t raw = s->bytes_in + s->bytes_out, wire = s->wire_in + s->wire_out, rejoins = 0;
	char id[17];
	int live = 0, r = 0;

	if (!o || !conns || !st)
		goto nomem;
	for (int i = 0; i < s->nconns; i++) {
		struct json_object *c = conn_json(&s->conns[i]);

		if (!c || json_object_array_add(conns, c) < 0) {
			json_object_put(c);
			goto nomem;
		}
		live += s->conns[i].live;
		rejoins += s->conns[i].rejoins;
	}
	r |= gw_json_put(st, "open", json_object_new_int(s->streams_open));
	r |= gw_json_put(st, "verified", json_object_new_int(s->streams_verified));
	r |= gw_json_put(st, "failed", json_object_new_int(s->streams_failed));
	snprintf(id, sizeof(id), "%016" PRIx64, s->id);
	r |= gw_json_put_str(o, "id", id);
	r |= gw_json_put_str(o, "identity", s->identity);
	r |= gw_json_put_str(o, "target", s->target);
	r |= gw_json_put_str(o, "state", s->state);
	r |= gw_json_put(o, "age_s", gw_json_num(s->age_s));
	r |= gw_json_put(o, "bytes_in", json_object_new_uint64(s->bytes_in));
	r |= gw_json_put(o, "bytes_out", json_object_new_uint64(s->bytes_out));
	r |= gw_json_put(o, "wire_in", json_object_new_uint64(s->wire_in));
	r |= gw_json_put(o, "wire_out", json_object_new_uint64(s->wire_out));
	/* rate_in/rate_out: set by the control server (rates_apply) */
	r |= wire ? gw_json_put(o, "compression_ratio", gw_json_num((double)raw / (double)wire))
		  : gw_json_put_null(o, "compression_ratio");
	r |= gw_json_put(o, "connections_expected", json_object_new_int(s->connections_expected));
	r |= gw_json_put(o, "connections_live", json_object_new_int(live));
	r |= gw_json_put(o, "rejoins", json_object_new_uint64(rejoins));
	r |= gw_json_put(o, "connections", conns);
	conns = NULL;
	r |= gw_json_put(o, "streams", st);
	st = NULL;
	r |= gw_json_put_str(o, "error", s->error);
	if (r)
		goto nomem;
	return append(status, "sessions", o);
nomem:
	json_object_put(o);
	json_object_put(conns);
	json_object_put(st);
	return -ENOMEM;
}
