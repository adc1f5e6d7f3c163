/* SPDX-License-Identifier: MIT */
/*
 * JSON lines for --json: progress events and reports, built with json-c
 * and written one object per line. Any thread; a line is written with one
 * stdio call, so lines from threads do not interleave.
 */
#ifndef MR_GATEWAY_REPORT_H
#define MR_GATEWAY_REPORT_H

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>

/* A new JSON object {"event": <event>}. NULL when out of memory (json-c's calls take NULL then). */
struct json_object *gw_json_event(const char *event);
/* Adds <key>: <v> printed with <decimals> digits after the point. */
void gw_json_add_double(struct json_object *o, const char *key, double v, int decimals);
void gw_json_add_u64(struct json_object *o, const char *key, uint64_t v);
/* Writes <o> as one line on <out>, flushes, and releases it. NULL-safe. */
void gw_json_emit(FILE *out, struct json_object *o);

#endif
