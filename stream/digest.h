/* SPDX-License-Identifier: MIT */
/* XXH3-128 over all the bytes of one stream direction (PROTOCOL.md §5.4). */
#ifndef MR_STREAM_DIGEST_H
#define MR_STREAM_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct digest {
	void *state; /* XXH3_state_t, allocated by digest_init */
	uint64_t bytes;
};

/* Returns 0 or -ENOMEM. */
MR_MUST_CHECK int digest_init(struct digest *d);
void digest_update(struct digest *d, const void *p, size_t len);
/* Feeds <len> zero bytes without a caller buffer. */
void digest_update_zero(struct digest *d, size_t len);
/* Canonical big-endian XXH3-128 (high 64 bits first). Does not reset. */
void digest_final(const struct digest *d, uint8_t out[WIRE_DIGEST_LEN]);
void digest_free(struct digest *d); /* NULL-safe state */
/* Lower-case hex of a digest, 33 bytes with the NUL. */
void digest_hex(const uint8_t in[WIRE_DIGEST_LEN], char out[2 * WIRE_DIGEST_LEN + 1]);

#endif
