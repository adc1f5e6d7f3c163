/* SPDX-License-Identifier: MIT */
/* Target functions: gw_control_parse_request, gw_http_parse_request, gw_prom_escape_label. */
/*
 * The whole input is one control-socket request line for
 * gw_control_parse_request: its result must be one of the documented
 * ones, a refusal must say why, and an accepted line must hold exactly one
 * JSON object whose only key is "cmd", naming the command returned
 * (checked against json-c's own parse). The same bytes are an HTTP
 * request head for the metrics server (the status is one of the
 * documented ones; 200 only for GET /metrics) and, up to the first NUL, a
 * label value whose escaping must undo exactly.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "gateway/control.h"
#include "gateway/metrics.h"
#include "check.h"

static void check_control(const uint8_t *d, size_t n)
{
	struct gw_control_req req;
	char why[256] = "";
	int r = gw_control_parse_request((const char *)d, n, &req, why, sizeof(why));

	if (n >= GW_CONTROL_MAX_REQUEST) {
		CHECK(r == -EMSGSIZE);
		return;
	}
	CHECK(r == 0 || r == -EBADMSG || r == -EOPNOTSUPP || r == -ENOMEM);
	if (r < 0) {
		CHECK(req.cmd == GW_CTL_NONE);
		CHECK(why[0] != '\0');
		return;
	}
	CHECK(req.cmd == GW_CTL_STATUS || req.cmd == GW_CTL_RELOAD);
	CHECK(!memchr(d, '\0', n));
	{
		/* the model: json-c on the same text, an object with one key "cmd" naming the command */
		char *s = malloc(n + 1);
		struct json_object *o, *v;

		CHECK(s != NULL);
		memcpy(s, d, n);
		s[n] = '\0';
		o = json_tokener_parse(s);
		CHECK(o && json_object_is_type(o, json_type_object));
		CHECK(json_object_object_length(o) == 1);
		CHECK(json_object_object_get_ex(o, "cmd", &v) && json_object_is_type(v, json_type_string));
		CHECK(!strcmp(json_object_get_string(v), req.cmd == GW_CTL_STATUS ? "status" : "reload"));
		json_object_put(o);
		free(s);
	}
}

static void check_http(const uint8_t *d, size_t n)
{
	size_t len = n > GW_METRICS_MAX_REQUEST ? GW_METRICS_MAX_REQUEST : n; /* the server reads no more */
	int st = gw_http_parse_request((const char *)d, len);

	CHECK(st == 0 || st == 200 || st == 400 || st == 404 || st == 405 || st == 431 || st == 505);
	if (st == 0)
		CHECK(len < GW_METRICS_MAX_REQUEST);
	if (st == 200)
		CHECK(len >= 14 && !memcmp(d, "GET /metrics", 12) && (d[12] == ' ' || d[12] == '?'));
}

static void check_escape(const uint8_t *d, size_t n)
{
	size_t l = strnlen((const char *)d, n), k = 0, cap;
	char *src = malloc(l + 1), *esc, *back;

	CHECK(src != NULL);
	memcpy(src, d, l);
	src[l] = '\0';
	cap = 2 * l + 1;
	esc = malloc(cap);
	back = malloc(l + 1);
	CHECK(esc && back);
	CHECK(gw_prom_escape_label(esc, cap, src) == strlen(esc));
	for (const char *p = esc; *p; p++) {
		CHECK(*p != '\n'); /* a raw newline would end the sample line */
		if (*p == '\\') {
			p++;
			CHECK(*p == '\\' || *p == '"' || *p == 'n');
			back[k++] = *p == 'n' ? '\n' : *p;
		} else {
			CHECK(*p != '"');
			back[k++] = *p;
		}
	}
	back[k] = '\0';
	CHECK(k == l && !memcmp(back, src, l));
	free(src);
	free(esc);
	free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	check_control(d, n);
	check_http(d, n);
	check_escape(d, n);
	return 0;
}
