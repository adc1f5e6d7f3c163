/* SPDX-License-Identifier: MIT */
/*
 * `--compress auto`: whether the next chunks of a session go compressed.
 * Pure: no threads, locks or clocks; the caller passes the time and
 * serialises access (the session's lock).
 *
 * The measure is the wall time per raw byte sent, over windows of the
 * session's data, in one mode: a slow network (credit waits for ACKs) and a
 * busy CPU (zstd's time, on small hosts also taken from QEMU) both show up
 * in it. After a warm-up window, raw is measured; a shorter probe window
 * compresses; the cheaper mode goes on and the other is tried again after
 * some windows (doubling while the choice holds, back to the first count
 * when it flips), so the choice follows the data and the network. A window
 * ends after its bytes or, on a slow link, after 100 ms (the warm-up after
 * 200 ms) with at least ZAUTO_SHORT_MIN bytes: at 100 Mbit/s the 32 MiB of
 * a window would take 2.7 s before the first decision.
 *
 * While raw, one chunk a window is compressed as a sample (it is sent so:
 * its cost is not wasted): zstd's time per raw byte (a faster sample counts
 * at once, a slower one a quarter) and its ratio. A probe window of zstd
 * happens only when zstd can pay: the time of the bytes it
 * would remove, raw's time per byte times (1 - ratio), is more than its own
 * time per byte. Both are wall-clock times: on a busy host, waiting for a
 * CPU inflates both alike. On loopback or a fast LAN it is not, and auto costs one
 * sample a window over raw.
 */
#ifndef MR_STREAM_ZAUTO_H
#define MR_STREAM_ZAUTO_H

#include <stdbool.h>
#include <stdint.h>

enum zauto_limits {
	ZAUTO_WINDOW = 32 << 20,    /* raw bytes per measurement window */
	ZAUTO_PROBE = 16 << 20,     /* raw bytes of a window that tries the other mode */
	ZAUTO_EXPLORE = 8,          /* windows before the other mode is tried again, at first */
	ZAUTO_EXPLORE_MAX = 64,     /* ... doubling up to this while the choice holds */
	ZAUTO_SAMPLE_MIN = 64 << 10, /* smallest chunk taken as a zstd sample */
	ZAUTO_SHORT_MIN = 4 << 20    /* raw bytes a window needs at least when it ends by time */
};

/* A window also ends after this long (with ZAUTO_SHORT_MIN bytes): on a slow link the bytes would take seconds. */
#define ZAUTO_WINDOW_NS 100000000ull     /* measurement and probe windows */
#define ZAUTO_WARMUP_NS 200000000ull     /* the warm-up */

struct zauto {
	bool on;           /* chunks go compressed now */
	bool probe;        /* this window tries the mode not chosen */
	bool sample_want;  /* the next raw chunk of at least ZAUTO_SAMPLE_MIN is a sample */
	uint64_t t0, raw;  /* this window: its start (ns) and raw bytes so far */
	double cost[2];    /* wall ns per raw byte: [0] raw, [1] zstd; 0 = not measured */
	uint32_t windows;  /* windows since the last choice or probe */
	uint32_t every;    /* windows between probes; 0 until warmed up */
	uint32_t samples;  /* zstd samples taken */
	double sample_ns;  /* zstd's ns per raw byte, wall clock (moving average) */
	double sample_ratio; /* zstd wire bytes per raw byte (moving average) */
};

/* A session's policy at its start: raw, warming up. */
void zauto_init(struct zauto *z);

/* Should the chunk of <raw> bytes about to go raw be a zstd sample? Clears the request when it says yes. */
bool zauto_take_sample(struct zauto *z, uint32_t raw);

/*
 * A sample of <raw> bytes took <ns> to compress and became <wire> bytes
 * (<wire> of at most 4: an all-zero chunk, which says nothing of zstd:
 * the next chunk is sampled instead).
 */
void zauto_sample(struct zauto *z, uint32_t raw, uint64_t ns, uint32_t wire);

/* <raw> bytes went out at <now_ns>; may switch z->on. Returns true when a window ended (a decision was made). */
bool zauto_account(struct zauto *z, uint32_t raw, uint64_t now_ns);

/* Can zstd win against raw's measured time per byte? True while nothing is known. */
bool zauto_can_pay(const struct zauto *z);

#endif
