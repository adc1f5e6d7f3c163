/* SPDX-License-Identifier: MIT */
/* `--compress auto`'s choice of mode (zauto.h). */
#include "zauto.h"

#include <string.h>

void zauto_init(struct zauto *z)
{
	memset(z, 0, sizeof(*z));
}

bool zauto_take_sample(struct zauto *z, uint32_t raw)
{
	if (z->on || !z->sample_want || raw < ZAUTO_SAMPLE_MIN)
		return false;
	z->sample_want = false;
	return true;
}

void zauto_sample(struct zauto *z, uint32_t raw, uint64_t ns, uint32_t wire)
{
	double t, ratio;

	if (!raw || wire <= 4) {
		z->sample_want = true;
		return;
	}
	t = (double)ns / raw;
	ratio = (double)wire / raw;
	if (ratio > 1.0)
		ratio = 1.0;
	/*
	 * Moving averages over about four samples; the first sets them. A
	 * faster sample is taken at once: the first ones run with cold caches
	 * and a fresh zstd context, and a busy CPU only ever makes one slower.
	 */
	if (!z->samples++) {
		z->sample_ns = t;
		z->sample_ratio = ratio;
	} else {
		z->sample_ns = t < z->sample_ns ? t : z->sample_ns + (t - z->sample_ns) / 4;
		z->sample_ratio += (ratio - z->sample_ratio) / 4;
	}
}

bool zauto_can_pay(const struct zauto *z)
{
	if (!z->samples || !z->cost[0])
		return true;
	return z->cost[0] * (1.0 - z->sample_ratio) > z->sample_ns;
}

bool zauto_account(struct zauto *z, uint32_t raw, uint64_t now_ns)
{
	bool was = z->on, probing = z->probe, best;

	if (!z->t0) {
		z->t0 = now_ns ? now_ns : 1;
		z->sample_want = true;
	}
	z->raw += raw;
	if (z->raw < (z->probe || !z->every ? ZAUTO_PROBE : ZAUTO_WINDOW) &&
	    (z->raw < ZAUTO_SHORT_MIN || now_ns - z->t0 < (z->every ? ZAUTO_WINDOW_NS : ZAUTO_WARMUP_NS)))
		return false;
	if (!z->every) {
		/* the first window warms up (QEMU's first pass starts slowly): not a measurement */
		z->every = ZAUTO_EXPLORE;
		z->t0 = now_ns;
		z->raw = 0;
		return false;
	}
	z->cost[was] = (double)(now_ns - z->t0) / (double)z->raw;
	if (z->cost[was] <= 0)
		z->cost[was] = 1e-9; /* measured, if at a clock's resolution */
	z->t0 = now_ns;
	z->raw = 0;
	z->probe = false;
	z->windows++;
	if (!was) {
		z->sample_want = true; /* the next raw window samples zstd once more */
		/* after a probe of raw from zstd, the two measured costs decide, not the samples' estimate */
		if (!probing && !zauto_can_pay(z)) {
			/* zstd's own time exceeds all it could save: no probe */
			z->windows = 0;
			return true;
		}
	}
	if (!z->cost[!was]) { /* the other mode not measured yet */
		z->on = !was;
		z->probe = true;
		return true;
	}
	best = z->cost[1] < z->cost[0];
	if (best != was) {
		z->on = best;
		z->windows = 0;
		/* back from a probe that confirmed the choice: the next probe waits longer (every doubled already) */
		if (!probing)
			z->every = ZAUTO_EXPLORE;
		return true;
	}
	if (z->windows >= z->every) {
		z->on = !was;
		z->probe = true;
		z->windows = 0;
		if (z->every < ZAUTO_EXPLORE_MAX)
			z->every *= 2;
	}
	return true;
}
