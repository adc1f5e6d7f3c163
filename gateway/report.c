/* SPDX-License-Identifier: MIT */
#include "report.h"

struct json_object *gw_json_event(const char *event)
{
	struct json_object *o = json_object_new_object();

	if (o && event)
		json_object_object_add(o, "event", json_object_new_string(event));
	return o;
}

void gw_json_add_double(struct json_object *o, const char *key, double v, int decimals)
{
	char buf[64];

	/* json-c would print 17 significant digits; a report wants the figure as measured */
	snprintf(buf, sizeof(buf), "%.*f", decimals, v);
	json_object_object_add(o, key, json_object_new_double_s(v, buf));
}

void gw_json_add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

void gw_json_emit(FILE *out, struct json_object *o)
{
	if (!o)
		return;
	fprintf(out, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(out);
	json_object_put(o);
}
