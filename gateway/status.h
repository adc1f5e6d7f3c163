/* SPDX-License-Identifier: MIT */
/*
 * Building the daemon's status object (the shape is described in
 * control.h and docs/OPERATIONS.md), and the small json-c helpers the
 * control socket shares with it.
 */
#ifndef MR_GATEWAY_STATUS_H
#define MR_GATEWAY_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "stream/wire.h"

/* Adds <v> (NULL: allocation failed) to <o> under <key>, taking it over even on failure. Returns 0 or -ENOMEM. */
MR_MUST_CHECK int gw_json_put(struct json_object *o, const char *key, struct json_object *v);
/* Adds a JSON null. Returns 0 or -ENOMEM. */
MR_MUST_CHECK int gw_json_put_null(struct json_object *o, const char *key);
/* Adds a copy of <s>, or null for NULL. Returns 0 or -ENOMEM. */
MR_MUST_CHECK int gw_json_put_str(struct json_object *o, const char *key, const char *s);
/* A number printed with 3 decimals (json-c's default prints 2.4500000000000002); NULL when out of memory. */
struct json_object *gw_json_num(double v);

struct gw_status_daemon {
	const char *version;
	double uptime_s;
	uint64_t config_generation;
	bool reloaded; /* a reload ran since start: the next three mean something */
	bool last_reload_ok;
	const char *last_reload_msg;
	double last_reload_age_s;
};

struct gw_status_conn {
	int index;
	bool live;
	uint32_t rejoins;
	uint64_t wire_in, wire_out; /* TLS payload bytes on this connection */
};

struct gw_status_session {
	uint64_t id;
	const char *identity, *target;
	const char *state; /* "setup", "running", "rejoining" (no live connection), "closing" */
	double age_s;
	uint64_t bytes_in, bytes_out; /* raw stream bytes from / to the peer */
	uint64_t wire_in, wire_out;   /* bytes on the connections, after compression and framing */
	int connections_expected;
	const struct gw_status_conn *conns;
	int nconns;
	int streams_open, streams_verified, streams_failed;
	const char *error; /* the session's failure, NULL while fine */
};

/* Each returns 0 or -ENOMEM; <status> is the object the status callback got. Strings are copied. */
MR_MUST_CHECK int gw_status_set_daemon(struct json_object *status, const struct gw_status_daemon *d);
MR_MUST_CHECK int gw_status_add_listener(struct json_object *status, const char *kind, const char *address);
MR_MUST_CHECK int gw_status_add_limit(struct json_object *status, const char *name, int64_t used, int64_t max);
MR_MUST_CHECK int gw_status_add_session(struct json_object *status, const struct gw_status_session *s);

#endif
