/* SPDX-License-Identifier: MIT */
/*
 * `--compress auto`'s choice (stream/zauto.h) against a model of a path:
 * sending a raw byte takes the sender S ns of CPU and the link L ns; zstd
 * adds C ns of CPU and puts R wire bytes per raw byte on the link. The
 * time per chunk is the slower of the two stages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stream/zauto.h"

enum { CHUNK = 256 << 10 };

struct path {
	double s, l, c, r;
};

struct run {
	uint64_t raw, zstd, samples; /* bytes sent raw, sent compressed, and of them samples */
	int flips;
};

static double maxd(double a, double b)
{
	return a > b ? a : b;
}

/* Sends <bytes> through <z> over <p> from virtual time <*now>; counts what went how. */
static void drive(struct zauto *z, const struct path *p, uint64_t bytes, uint64_t *now, struct run *out)
{
	for (uint64_t sent = 0; sent < bytes; sent += CHUNK) {
		bool sample = zauto_take_sample(z, CHUNK), was = z->on;
		bool comp = z->on || sample;
		double ns = comp ? maxd(p->s + p->c, p->l * p->r) : maxd(p->s, p->l);

		*now += (uint64_t)(ns * CHUNK);
		if (sample) {
			zauto_sample(z, CHUNK, (uint64_t)(p->c * CHUNK), (uint32_t)(p->r * CHUNK));
			out->samples += CHUNK;
		}
		if (comp)
			out->zstd += CHUNK;
		else
			out->raw += CHUNK;
		zauto_account(z, CHUNK, *now);
		if (z->on != was)
			out->flips++;
	}
}

/* A fresh policy driven with <bytes> over <p>: returns what went how; the policy is left in <z>. */
static struct run fresh(struct zauto *z, const struct path *p, uint64_t bytes)
{
	struct run r = {0};
	uint64_t now = 1000;

	zauto_init(z);
	drive(z, p, bytes, &now, &r);
	return r;
}

/* Loopback: the link is nearly free, zstd's CPU is the cost: never a probe window, only samples. */
static void test_fast_link_never_probes(void **state)
{
	struct path p = {.s = 1.0, .l = 0.1, .c = 2.0, .r = 0.3};
	struct zauto z;
	struct run r;

	(void)state;
	r = fresh(&z, &p, 4ull << 30);
	assert_int_equal(r.flips, 0);
	assert_false(z.on);
	assert_int_equal(r.zstd, r.samples);   /* nothing compressed but the samples */
	assert_true(r.samples * 100 < r.raw);  /* under 1 % of the data */
	assert_false(zauto_can_pay(&z));
}

/* A slow link (about 1 Gbit/s): zstd wins, and after the warm-up and one raw window it compresses nearly all. */
static void test_slow_link_compresses(void **state)
{
	struct path p = {.s = 1.0, .l = 8.0, .c = 2.0, .r = 0.3};
	struct zauto z;
	struct run r;

	(void)state;
	r = fresh(&z, &p, 1ull << 30);
	assert_true(z.on);
	assert_true(zauto_can_pay(&z));
	assert_true(r.zstd > r.raw * 8); /* the raw windows are the warm-up, one measure and short probes */
}

/*
 * A 100 Mbit/s link: windows end by time (100 ms, the warm-up 200 ms), not
 * after their 32 MiB of raw bytes (2.7 s each here), so compression starts
 * within the first 16 MiB; and the probes of raw that keep confirming it
 * come ever more rarely (every 8, 16, 32, 64 windows).
 */
static void test_slow_link_decides_soon(void **state)
{
	struct path p = {.s = 1.0, .l = 80.0, .c = 2.0, .r = 0.3};
	struct zauto z;
	struct run r;

	(void)state;
	r = fresh(&z, &p, 16ull << 20);
	assert_true(z.on);
	assert_true(r.raw <= (12ull << 20));
	r = fresh(&z, &p, 4ull << 30);
	assert_true(z.on);
	assert_true(z.every >= 32);
	assert_true(r.raw * 50 < r.zstd); /* the warm-up, one measure and a few short probes */
}

/*
 * Compressing on a slow link while the samples say zstd could not pay (cold
 * or disturbed ones): a probe of raw that finds raw slower goes back to
 * zstd at once, on the two measured costs, and the probes keep spacing out.
 */
static void test_probe_of_raw_uses_measured_costs(void **state)
{
	struct path p = {.s = 1.0, .l = 8.0, .c = 2.0, .r = 0.3};
	struct run r = {0};
	struct zauto z;
	uint64_t now = 1000;
	int probes = 0;

	(void)state;
	zauto_init(&z);
	drive(&z, &p, 256ull << 20, &now, &r);
	assert_true(z.on);
	for (uint64_t sent = 0; sent < (4ull << 30); sent += CHUNK) {
		bool was = z.on;

		z.sample_ns = 100.0; /* whatever the samples said, it is the measures that decide here */
		now += (uint64_t)((z.on ? maxd(p.s + p.c, p.l * p.r) : maxd(p.s, p.l)) * CHUNK);
		zauto_account(&z, CHUNK, now);
		if (was && !z.on)
			probes++;
		if (!was)
			assert_true(z.on || z.probe || z.raw > 0); /* raw only for the probe window itself */
	}
	assert_true(z.on);
	assert_true(z.every >= 32);
	assert_true(probes <= 6);
}

/* A slow link and incompressible data: zstd would remove nothing, so it is never probed. */
static void test_incompressible_never_probes(void **state)
{
	struct path p = {.s = 1.0, .l = 8.0, .c = 2.0, .r = 1.0};
	struct zauto z;
	struct run r;

	(void)state;
	r = fresh(&z, &p, 1ull << 30);
	assert_false(z.on);
	assert_int_equal(r.flips, 0);
	assert_int_equal(r.zstd, r.samples);
}

/* The data turns incompressible on a slow link: auto goes back to raw (the probe of raw finds it no slower). */
static void test_follows_the_data(void **state)
{
	struct path p = {.s = 1.0, .l = 8.0, .c = 2.0, .r = 0.3};
	struct zauto z;
	struct run r = {0};
	uint64_t now = 1000;

	(void)state;
	zauto_init(&z);
	drive(&z, &p, 512ull << 20, &now, &r);
	assert_true(z.on);
	p.r = 1.0;
	memset(&r, 0, sizeof(r));
	drive(&z, &p, 8ull << 30, &now, &r);
	assert_false(z.on);
	/* and the link speeds up under compressible data: raw again, then no more probes */
	p.r = 0.3;
	p.l = 0.1;
	drive(&z, &p, 8ull << 30, &now, &r);
	assert_false(z.on);
	assert_false(zauto_can_pay(&z));
}

/* Samples: only raw chunks of at least ZAUTO_SAMPLE_MIN, one per request; an all-zero chunk asks for the next. */
static void test_samples(void **state)
{
	struct zauto z;

	(void)state;
	zauto_init(&z);
	assert_false(zauto_take_sample(&z, CHUNK)); /* nothing asked yet */
	zauto_account(&z, CHUNK, 1000);             /* the first chunk starts the warm-up and asks */
	assert_false(zauto_take_sample(&z, ZAUTO_SAMPLE_MIN - 1));
	assert_true(zauto_take_sample(&z, CHUNK));
	assert_false(zauto_take_sample(&z, CHUNK)); /* one per request */
	zauto_sample(&z, CHUNK, 1000, 4);           /* all zero: says nothing */
	assert_int_equal(z.samples, 0);
	assert_true(zauto_take_sample(&z, CHUNK));
	zauto_sample(&z, CHUNK, 2 * CHUNK, CHUNK + 100); /* grew: counted as ratio 1 */
	assert_int_equal(z.samples, 1);
	assert_true(z.sample_ratio <= 1.0);
	assert_true(z.sample_ns > 1.9 && z.sample_ns < 2.1);
	/* a faster sample counts at once, a slower one a quarter */
	zauto_sample(&z, CHUNK, CHUNK, CHUNK / 2);
	assert_true(z.sample_ns > 0.99 && z.sample_ns < 1.01);
	zauto_sample(&z, CHUNK, 5 * CHUNK, CHUNK / 2);
	assert_true(z.sample_ns > 1.99 && z.sample_ns < 2.01);
	z.on = true;
	z.sample_want = true;
	assert_false(zauto_take_sample(&z, CHUNK)); /* compressing anyway: no sample */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fast_link_never_probes),
		cmocka_unit_test(test_slow_link_compresses), cmocka_unit_test(test_slow_link_decides_soon),
		cmocka_unit_test(test_probe_of_raw_uses_measured_costs),
		cmocka_unit_test(test_incompressible_never_probes),
		cmocka_unit_test(test_follows_the_data),
		cmocka_unit_test(test_samples),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
