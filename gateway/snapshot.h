/* SPDX-License-Identifier: MIT */
/*
 * A refcounted, immutable snapshot of something that a reload replaces
 * (the daemon's credentials, CRL, PSK file, allow lists and targets).
 *
 * Readers take a reference (gw_snapshot_get) when work begins, for
 * example when a session is set up, and hold it until that work ends
 * (gw_snap_put). A reload builds a whole new object, validates it, and
 * installs it with gw_snapshot_swap: new readers see the new object at
 * once, readers in flight keep the old one, and the old one is freed by
 * whoever drops its last reference. The objects themselves are never
 * changed after they are installed, so readers need no lock to use them.
 */
#ifndef MR_GATEWAY_SNAPSHOT_H
#define MR_GATEWAY_SNAPSHOT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "stream/wire.h"

/* One installed version: its object, its destructor and its generation (1, 2, ...). */
struct gw_snap {
	atomic_uint refs;
	uint64_t gen;
	void *obj;
	void (*free_fn)(void *obj);
};

struct gw_snapshot {
	pthread_mutex_t lock; /* held only to read <cur> and take a reference, or to replace <cur> */
	struct gw_snap *cur;  /* NULL before init and after fini */
	uint64_t gen;
};
/* Every holder starts as this (static or automatic), so that get/swap before init are defined. */
#define GW_SNAPSHOT_INITIALIZER                                                                                        \
	{                                                                                                              \
		.lock = PTHREAD_MUTEX_INITIALIZER, .cur = NULL, .gen = 0                                               \
	}

/*
 * Installs the first version <obj> (generation 1) in a holder set to
 * GW_SNAPSHOT_INITIALIZER; <free_fn> (may be NULL) frees it once nothing
 * holds it. Any thread. Returns 0, -EBUSY if a version is installed
 * already, or -ENOMEM; on failure <obj> still belongs to the caller.
 */
MR_MUST_CHECK int gw_snapshot_init(struct gw_snapshot *h, void *obj, void (*free_fn)(void *obj));

/*
 * Returns the current version with a reference the caller must drop with
 * gw_snap_put, or NULL before init / after fini. Any thread; never blocks
 * on a reload's validation, only on the pointer swap itself.
 */
struct gw_snap *gw_snapshot_get(struct gw_snapshot *h);

/* The object a reference points at. */
static inline void *gw_snap_obj(const struct gw_snap *s)
{
	return s->obj;
}

/* Drops a reference; the last one frees the object and the version. NULL-safe; any thread. */
void gw_snap_put(struct gw_snap *s);

/*
 * Installs <obj> as the new current version and drops the holder's
 * reference to the previous one (which lives on while readers hold it).
 * *gen (may be NULL) gets the new generation. Any thread; concurrent
 * swaps are serialized (the last one wins). Returns 0, -EINVAL before
 * init, or -ENOMEM (then <obj> still belongs to the caller and the
 * current version is unchanged).
 */
MR_MUST_CHECK int gw_snapshot_swap(struct gw_snapshot *h, void *obj, void (*free_fn)(void *obj), uint64_t *gen);

/* The generation of the current version (0 before init). Any thread. */
uint64_t gw_snapshot_generation(struct gw_snapshot *h);

/* Drops the holder's reference; readers still holding theirs keep the object alive. Once, at shutdown. */
void gw_snapshot_fini(struct gw_snapshot *h);

#endif
