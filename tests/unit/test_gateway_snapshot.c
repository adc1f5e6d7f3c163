// SPDX-License-Identifier: MIT
/*
 * Refcounted snapshots: generations, who frees what when, the error
 * cases, and readers taking and using versions while another thread swaps
 * them (bounded in count; run it under MR_SANITIZE=thread to check the
 * ordering, and under ASan for use-after-free).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/snapshot.h"

static atomic_int freed;

struct cfg {
	uint64_t magic; /* a reader checks it: a freed version would show */
	uint64_t value;
};

enum { CFG_MAGIC = 0x636f6e666967ULL };

static void cfg_free(void *p)
{
	struct cfg *c = p;

	c->magic = 0;
	free(c);
	atomic_fetch_add(&freed, 1);
}

static struct cfg *cfg_new(uint64_t v)
{
	struct cfg *c = malloc(sizeof(*c));

	assert_non_null(c);
	c->magic = CFG_MAGIC;
	c->value = v;
	return c;
}

static void test_lifecycle(void **state)
{
	struct gw_snapshot h = GW_SNAPSHOT_INITIALIZER;
	struct gw_snap *a, *b, *c;
	struct cfg *two = cfg_new(2);
	uint64_t gen = 0;

	(void)state;
	atomic_store(&freed, 0);
	assert_null(gw_snapshot_get(&h));
	assert_int_equal(gw_snapshot_generation(&h), 0);
	assert_int_equal(gw_snapshot_swap(&h, two, cfg_free, &gen), -EINVAL); /* before init: caller keeps it */
	assert_int_equal(gw_snapshot_init(&h, cfg_new(1), cfg_free), 0);
	assert_int_equal(gw_snapshot_init(&h, two, cfg_free), -EBUSY);
	assert_int_equal(gw_snapshot_generation(&h), 1);

	a = gw_snapshot_get(&h); /* a session set up under version 1 */
	assert_int_equal(((struct cfg *)gw_snap_obj(a))->value, 1);
	assert_int_equal(a->gen, 1);
	assert_int_equal(gw_snapshot_swap(&h, two, cfg_free, &gen), 0);
	assert_int_equal(gen, 2);
	assert_int_equal(atomic_load(&freed), 0); /* version 1 lives on in <a> */
	b = gw_snapshot_get(&h);
	assert_int_equal(((struct cfg *)gw_snap_obj(b))->value, 2);
	assert_int_equal(((struct cfg *)gw_snap_obj(a))->value, 1);
	gw_snap_put(a); /* the old session ends: version 1 goes */
	assert_int_equal(atomic_load(&freed), 1);

	assert_int_equal(gw_snapshot_swap(&h, cfg_new(3), cfg_free, NULL), 0);
	assert_int_equal(gw_snapshot_generation(&h), 3);
	assert_int_equal(atomic_load(&freed), 1); /* version 2 held by <b> */
	c = gw_snapshot_get(&h);
	gw_snapshot_fini(&h);
	assert_null(gw_snapshot_get(&h));
	assert_int_equal(gw_snapshot_generation(&h), 0);
	assert_int_equal(atomic_load(&freed), 1);
	gw_snap_put(b);
	assert_int_equal(atomic_load(&freed), 2);
	gw_snap_put(c);
	assert_int_equal(atomic_load(&freed), 3);
	gw_snap_put(NULL);

	/* no destructor: nothing is freed but the version itself */
	{
		struct gw_snapshot h2 = GW_SNAPSHOT_INITIALIZER;
		static int stat_obj;

		assert_int_equal(gw_snapshot_init(&h2, &stat_obj, NULL), 0);
		assert_ptr_equal(gw_snap_obj(a = gw_snapshot_get(&h2)), &stat_obj);
		gw_snap_put(a);
		gw_snapshot_fini(&h2);
	}
}

enum { READERS = 4, READS = 20000, SWAPS = 2000 };

static struct gw_snapshot shared = GW_SNAPSHOT_INITIALIZER;
static atomic_int swaps_done;

static void *reader(void *arg)
{
	uint64_t last = 0;
	long bad = 0;

	(void)arg;
	/* at least READS, and on while the swapper runs (at most 50 x READS) */
	for (int i = 0; i < READS || (atomic_load(&swaps_done) < SWAPS && i < 50 * READS); i++) {
		struct gw_snap *s = gw_snapshot_get(&shared);
		struct cfg *c = gw_snap_obj(s);

		/* a version, once taken, is intact and never older than one taken before */
		if (c->magic != CFG_MAGIC || c->value != s->gen || s->gen < last)
			bad++;
		last = s->gen;
		if (i % 7 == 0) /* hold some across the other thread's swaps */
			sched_yield();
		gw_snap_put(s);
	}
	return (void *)bad;
}

static void *swapper(void *arg)
{
	(void)arg;
	for (int i = 0; i < SWAPS; i++) {
		uint64_t gen = gw_snapshot_generation(&shared) + 1;
		struct cfg *c = cfg_new(gen);

		/* one swapper: the generation it installs is the one it predicted */
		if (gw_snapshot_swap(&shared, c, cfg_free, &gen) < 0)
			cfg_free(c);
		c = NULL;
		atomic_fetch_add(&swaps_done, 1);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	pthread_t r[READERS], w;
	void *bad;

	(void)state;
	atomic_store(&freed, 0);
	assert_int_equal(gw_snapshot_init(&shared, cfg_new(1), cfg_free), 0);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&r[i], NULL, reader, NULL), 0);
	assert_int_equal(pthread_create(&w, NULL, swapper, NULL), 0);
	for (int i = 0; i < READERS; i++) {
		assert_int_equal(pthread_join(r[i], &bad), 0);
		assert_int_equal((long)bad, 0);
	}
	assert_int_equal(pthread_join(w, NULL), 0);
	assert_int_equal(gw_snapshot_generation(&shared), SWAPS + 1);
	/* every replaced version was freed, exactly once */
	assert_int_equal(atomic_load(&freed), SWAPS);
	gw_snapshot_fini(&shared);
	assert_int_equal(atomic_load(&freed), SWAPS + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_concurrent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
