/* SPDX-License-Identifier: MIT */
/*
 * Refcounted snapshots (snapshot.h). The mutex makes "read the pointer and
 * take a reference" one step, so a swap cannot free a version between the
 * two; the reference count itself is atomic so that dropping a reference
 * never takes the lock.
 */
#include <errno.h>
#include <stdlib.h>

#include "snapshot.h"

static struct gw_snap *snap_new(void *obj, void (*free_fn)(void *obj), uint64_t gen)
{
	struct gw_snap *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	atomic_init(&s->refs, 1); /* the holder's */
	s->gen = gen;
	s->obj = obj;
	s->free_fn = free_fn;
	return s;
}

int gw_snapshot_init(struct gw_snapshot *h, void *obj, void (*free_fn)(void *obj))
{
	struct gw_snap *s = snap_new(obj, free_fn, 1);

	if (!s)
		return -ENOMEM;
	pthread_mutex_lock(&h->lock);
	if (h->cur) {
		pthread_mutex_unlock(&h->lock);
		free(s);
		return -EBUSY;
	}
	h->cur = s;
	h->gen = 1;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

struct gw_snap *gw_snapshot_get(struct gw_snapshot *h)
{
	struct gw_snap *s;

	pthread_mutex_lock(&h->lock);
	s = h->cur;
	if (s)
		atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed); /* the holder's ref keeps it alive here */
	pthread_mutex_unlock(&h->lock);
	return s;
}

void gw_snap_put(struct gw_snap *s)
{
	if (!s)
		return;
	/* release: our uses of the object happen before whoever frees it */
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (s->free_fn)
		s->free_fn(s->obj);
	free(s);
}

int gw_snapshot_swap(struct gw_snapshot *h, void *obj, void (*free_fn)(void *obj), uint64_t *gen)
{
	struct gw_snap *s, *old;

	s = snap_new(obj, free_fn, 0);
	if (!s)
		return -ENOMEM;
	pthread_mutex_lock(&h->lock);
	old = h->cur;
	if (!old) {
		pthread_mutex_unlock(&h->lock);
		free(s);
		return -EINVAL;
	}
	s->gen = ++h->gen;
	h->cur = s;
	if (gen)
		*gen = s->gen;
	pthread_mutex_unlock(&h->lock);
	/* Outside the lock: the old version's destructor may take a while (GnuTLS credentials). */
	gw_snap_put(old);
	return 0;
}

uint64_t gw_snapshot_generation(struct gw_snapshot *h)
{
	uint64_t g;

	pthread_mutex_lock(&h->lock);
	g = h->cur ? h->gen : 0;
	pthread_mutex_unlock(&h->lock);
	return g;
}

void gw_snapshot_fini(struct gw_snapshot *h)
{
	struct gw_snap *old;

	pthread_mutex_lock(&h->lock);
	old = h->cur;
	h->cur = NULL;
	pthread_mutex_unlock(&h->lock);
	gw_snap_put(old);
}
