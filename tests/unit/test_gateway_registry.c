// SPDX-License-Identifier: MIT
/*
 * The session registry (gateway/registry.c): slots against max_sessions,
 * the JOIN lookup (token, whole identity, not-yet-ready sessions), the
 * JOIN turn, that unlisting waits for the JOINs in progress, the
 * configuration snapshots a session holds until it is closed, rejoin
 * counts, and the status built from listed sessions.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/log.h"
#include "gateway/registry.h"
#include "gateway/snapshot.h"

/* A server session named <id>, token all <tok>, for <target> over <nconns> connections. */
static struct gw_session *new_target_session(uint64_t id, uint8_t tok, const char *target, int nconns)
{
	struct gw_session_cfg sc = {.server = true,
				    .window = GW_DEFAULT_WINDOW,
				    .chunk_size = GW_DEFAULT_CHUNK,
				    .max_streams = 8,
				    .id = id,
				    .nconns = nconns};
	struct gw_session *s = NULL;

	memset(sc.token, tok, WIRE_TOKEN_LEN);
	snprintf(sc.target, sizeof(sc.target), "%s", target);
	assert_int_equal(gw_session_new(&s, &sc), 0);
	assert_int_equal(gw_session_id(s), id);
	return s;
}

static struct gw_session *new_session(uint64_t id, uint8_t tok)
{
	return new_target_session(id, tok, "", 0);
}

static uint64_t in_ms(int ms)
{
	return gw_now_ns() + (uint64_t)ms * 1000000ull;
}

static void slots(void **state)
{
	struct gw_registry r;
	struct gw_reg_entry *e;

	(void)state;
	gw_registry_init(&r, 2);
	assert_int_equal(gw_registry_reserve(&r, "CN=a", 0), 0);
	assert_int_equal(gw_registry_reserve(&r, "CN=a", 0), 0);
	assert_int_equal(gw_registry_reserve(&r, "CN=a", 0), -EBUSY);
	gw_registry_unreserve(&r, "CN=a");
	assert_int_equal(gw_registry_add(&r, new_session(1, 0x11), "CN=a", &e), 0); /* takes the reservation */
	assert_int_equal(gw_registry_busy(&r), 1);
	assert_int_equal(gw_registry_reserve(&r, "CN=a", 0), 0);
	assert_int_equal(gw_registry_busy(&r), 2); /* one listed, one reserved */
	assert_int_equal(gw_registry_reserve(&r, "CN=a", 0), -EBUSY);
	gw_registry_unreserve(&r, "CN=a");
	gw_registry_ready(&r, e);
	gw_registry_drop(&r, e);
	assert_int_equal(gw_registry_busy(&r), 0);
}

static void lookup(void **state)
{
	char longid[700], prefix[512];
	uint8_t tok[WIRE_TOKEN_LEN], bad[WIRE_TOKEN_LEN];
	struct gw_registry r;
	struct gw_reg_entry *e, *f;
	uint16_t code;

	(void)state;
	memset(longid, 'x', sizeof(longid) - 1);
	memcpy(longid, "CN=", 3);
	longid[sizeof(longid) - 1] = '\0';
	memcpy(prefix, longid, 511);
	prefix[511] = '\0';
	memset(tok, 0x22, sizeof(tok));
	memcpy(bad, tok, sizeof(bad));
	bad[31] ^= 1;
	gw_registry_init(&r, 4);
	assert_int_equal(gw_registry_reserve(&r, "CN=a", 0), 0);
	assert_int_equal(gw_registry_add(&r, new_session(7, 0x22), longid, &e), 0);
	/* Not ready yet: a JOIN waits for it, until its deadline. */
	assert_int_equal(gw_registry_find(&r, 7, tok, longid, in_ms(30), &f, &code), -ETIMEDOUT);
	gw_registry_ready(&r, e);
	assert_int_equal(gw_registry_find(&r, 8, tok, longid, in_ms(30), &f, &code), -ENOENT);
	assert_int_equal(code, WIRE_E_BAD_TOKEN);
	assert_int_equal(gw_registry_find(&r, 7, bad, longid, in_ms(30), &f, &code), -ENOENT);
	assert_int_equal(code, WIRE_E_BAD_TOKEN);
	/* The first 511 bytes of the identity are another identity. */
	assert_int_equal(gw_registry_find(&r, 7, tok, prefix, in_ms(30), &f, &code), -EACCES);
	assert_int_equal(code, WIRE_E_IDENTITY);
	assert_int_equal(gw_registry_find(&r, 7, tok, longid, in_ms(30), &f, &code), 0);
	assert_ptr_equal(f, e);
	/* One JOIN at a time: a second one gives up at its deadline. */
	assert_int_equal(gw_registry_join_lock(f, in_ms(30)), 0);
	assert_int_equal(gw_registry_join_lock(f, in_ms(30)), -ETIMEDOUT);
	gw_registry_join_unlock(f);
	gw_registry_put(&r, f);
	gw_registry_drop(&r, e);
	assert_int_equal(gw_registry_find(&r, 7, tok, longid, in_ms(30), &f, &code), -ENOENT);
}

struct later {
	struct gw_registry *r;
	struct gw_reg_entry *e;
	bool put;
};

static void *put_later(void *arg)
{
	struct later *l = arg;

	usleep(100 * 1000);
	l->put = true;
	gw_registry_put(l->r, l->e);
	return NULL;
}

static void drop_waits_for_joins(void **state)
{
	uint8_t tok[WIRE_TOKEN_LEN];
	struct gw_registry r;
	struct gw_reg_entry *e, *f;
	struct later l;
	pthread_t thr;
	uint16_t code;

	(void)state;
	memset(tok, 0x33, sizeof(tok));
	gw_registry_init(&r, 4);
	assert_int_equal(gw_registry_reserve(&r, "CN=a", 0), 0);
	assert_int_equal(gw_registry_add(&r, new_session(9, 0x33), "CN=b", &e), 0);
	gw_registry_ready(&r, e);
	assert_int_equal(gw_registry_find(&r, 9, tok, "CN=b", in_ms(30), &f, &code), 0);
	l = (struct later){.r = &r, .e = f};
	assert_int_equal(pthread_create(&thr, NULL, put_later, &l), 0);
	gw_registry_drop(&r, e); /* returns only after the JOIN let go */
	assert_true(l.put);
	pthread_join(thr, NULL);
	assert_int_equal(gw_registry_busy(&r), 0);
}

static int freed;
static void count_free(void *obj)
{
	(void)obj;
	freed++;
}

static struct gw_snap_hold *hold_of(struct gw_snapshot *h)
{
	struct gw_snap_hold *x = calloc(1, sizeof(*x));

	assert_non_null(x);
	x->snap = gw_snapshot_get(h);
	assert_non_null(x->snap);
	return x;
}

/* A session keeps every configuration version its connections used, once each, until it is closed. */
static void holds_snapshots(void **state)
{
	struct gw_snapshot h = GW_SNAPSHOT_INITIALIZER;
	static int a, b;
	struct gw_registry r;
	struct gw_reg_entry *e;
	struct json_object *st;
	struct json_object *sessions, *s0, *v;

	(void)state;
	freed = 0;
	assert_int_equal(gw_snapshot_init(&h, &a, count_free), 0);
	gw_registry_init(&r, 2);
	assert_int_equal(gw_registry_reserve(&r, "CN=a", 0), 0);
	assert_int_equal(gw_registry_add(&r, new_target_session(9, 0x33, "t", 2), "CN=held", &e), 0);
	gw_registry_ready(&r, e);
	gw_registry_hold(&r, e, hold_of(&h)); /* connection 0 */
	gw_registry_hold(&r, e, hold_of(&h)); /* connection 1, same version: the extra reference is dropped */
	assert_int_equal(gw_snapshot_swap(&h, &b, count_free, NULL), 0);
	assert_int_equal(freed, 0);	      /* the session still holds version 1 */
	gw_registry_hold(&r, e, hold_of(&h)); /* a rejoin under version 2 */
	gw_registry_joined(&r, e, 1);	      /* first JOIN of connection 1: not a rejoin */
	gw_registry_joined(&r, e, 1);	      /* its rejoin */
	gw_registry_joined(&r, e, 0);	      /* connection 0 came with the HELLO: a rejoin */
	assert_int_equal(e->rejoins[0], 1);
	assert_int_equal(e->rejoins[1], 1);

	assert_non_null(st = json_object_new_object());
	assert_int_equal(gw_registry_status(&r, st), 0);
	assert_true(json_object_object_get_ex(st, "sessions", &sessions));
	assert_int_equal(json_object_array_length(sessions), 1);
	s0 = json_object_array_get_idx(sessions, 0);
	assert_true(json_object_object_get_ex(s0, "identity", &v));
	assert_string_equal(json_object_get_string(v), "CN=held");
	assert_true(json_object_object_get_ex(s0, "target", &v));
	assert_string_equal(json_object_get_string(v), "t");
	assert_true(json_object_object_get_ex(s0, "rejoins", &v));
	assert_int_equal(json_object_get_int(v), 2);
	assert_true(json_object_object_get_ex(s0, "connections", &v));
	assert_int_equal(json_object_array_length(v), 2);
	json_object_put(st);

	gw_snapshot_fini(&h);
	assert_int_equal(freed, 0); /* the holder let go of version 2: the session holds both versions */
	gw_registry_drop(&r, e);
	assert_int_equal(freed, 2);
	assert_int_equal(gw_registry_busy(&r), 0);
}

/* --max-sessions-per-identity: one identity's listed sessions and reservations count; others are not held up. */
static void per_identity(void **state)
{
	struct gw_registry r;
	struct gw_reg_entry *e;

	(void)state;
	gw_registry_init(&r, 8);
	assert_int_equal(gw_registry_reserve(&r, "CN=q", 2), 0);
	assert_int_equal(gw_registry_reserve(&r, "CN=q", 2), 0);
	assert_int_equal(gw_registry_reserve(&r, "CN=q", 2), -EDQUOT);
	assert_int_equal(gw_registry_reserve(&r, "CN=z", 2), 0);
	assert_int_equal(gw_registry_add(&r, new_session(3, 0x44), "CN=q", &e), 0); /* listed now, still counts */
	assert_int_equal(gw_registry_reserve(&r, "CN=q", 2), -EDQUOT);
	gw_registry_unreserve(&r, "CN=q");
	assert_int_equal(gw_registry_reserve(&r, "CN=q", 2), 0);
	assert_int_equal(gw_registry_reserve(&r, "CN=q", 0), 0); /* 0: no quota */
	gw_registry_unreserve(&r, "CN=q");
	gw_registry_unreserve(&r, "CN=q");
	gw_registry_unreserve(&r, "CN=z");
	gw_registry_ready(&r, e);
	gw_registry_drop(&r, e);
	assert_int_equal(gw_registry_busy(&r), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(slots),
	    cmocka_unit_test(lookup),
	    cmocka_unit_test(drop_waits_for_joins),
	    cmocka_unit_test(holds_snapshots),
	    cmocka_unit_test(per_identity),
	};

	gw_log_level = GW_LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
