/* SPDX-License-Identifier: MIT */
/*
 * XXH3-128 over the raw bytes of one stream direction (PROTOCOL.md §5.4).
 * xxHash catches corruption and loss, not forgery: TLS gives authenticity.
 */
#include <errno.h>
#include <string.h>

#include <xxhash.h>
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
/* libxxhash picks the widest vector unit of the CPU at run time (AVX2, AVX-512) */
#include <xxh_x86dispatch.h>
#define DIGEST_UPDATE XXH3_128bits_update_dispatch
#else
#define DIGEST_UPDATE XXH3_128bits_update
#endif

#include "digest.h"

/* ZERO chunks are hashed without materialising them (§5.2). */
enum { DIGEST_ZERO_BLOCK = 64 << 10 };
static const uint8_t zero_block[DIGEST_ZERO_BLOCK];

/* Any thread; the digest is then owned by the caller and freed with digest_free(). */
int digest_init(struct digest *d)
{
	XXH3_state_t *st;

	d->state = NULL;
	d->bytes = 0;
	st = XXH3_createState();
	if (!st)
		return -ENOMEM;
	if (XXH3_128bits_reset(st) != XXH_OK) {
		XXH3_freeState(st);
		return -ENOMEM;
	}
	d->state = st;
	return 0;
}

void digest_update(struct digest *d, const void *p, size_t len)
{
	if (!d->state || !len)
		return;
	(void)DIGEST_UPDATE(d->state, p, len);
	d->bytes += len;
}

void digest_update_zero(struct digest *d, size_t len)
{
	while (len) {
		size_t n = len < sizeof(zero_block) ? len : sizeof(zero_block);

		digest_update(d, zero_block, n);
		len -= n;
	}
}

/* Canonical form: the high 64 bits first, each big-endian (§5.4). */
void digest_final(const struct digest *d, uint8_t out[WIRE_DIGEST_LEN])
{
	XXH128_canonical_t c;
	XXH128_hash_t h;

	if (d->state)
		h = XXH3_128bits_digest(d->state);
	else
		h = XXH3_128bits(NULL, 0);
	XXH128_canonicalFromHash(&c, h);
	memcpy(out, c.digest, WIRE_DIGEST_LEN);
}

void digest_free(struct digest *d)
{
	if (!d)
		return;
	if (d->state)
		XXH3_freeState(d->state);
	d->state = NULL;
}

void digest_hex(const uint8_t in[WIRE_DIGEST_LEN], char out[2 * WIRE_DIGEST_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (unsigned i = 0; i < WIRE_DIGEST_LEN; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 0xf];
	}
	out[2 * WIRE_DIGEST_LEN] = '\0';
}
