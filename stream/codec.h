/* SPDX-License-Identifier: MIT */
/*
 * Chunk codec (PROTOCOL.md §5.2): all-zero detection, zstd compression
 * that is used only when it saves space, and decompression into a fixed
 * capacity that trusts nothing the peer says.
 */
#ifndef MR_STREAM_CODEC_H
#define MR_STREAM_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct codec; /* one per thread: holds zstd contexts */

/* <level>: zstd level 1..19. Returns NULL on allocation failure. */
struct codec *codec_new(int level);
void codec_free(struct codec *c); /* NULL-safe */

bool codec_is_zero(const void *p, size_t len);

/*
 * Encodes raw chunk [src, src+len) (len <= WIRE_MAX_CHUNK) into <dst>, which
 * has room for len bytes. Tries zstd only when <compress> is true.
 * Returns the DATA flags to send (0, WIRE_F_ZERO or WIRE_F_ZSTD) and sets
 * *out_len to the payload length in <dst>. For flags 0 nothing is written to
 * dst: the caller sends <src> as it is. For ZERO and ZSTD the payload starts
 * with the be32 raw length.
 */
unsigned codec_encode(struct codec *c, bool compress, const uint8_t *src, size_t len, uint8_t *dst,
		      size_t *out_len);

/*
 * Decodes a DATA payload with <flags> into <dst> (capacity <cap>, at least
 * WIRE_MAX_CHUNK). For flags 0 copies nothing and returns len (the caller
 * uses the payload in place). Returns raw length, or -EBADMSG when the
 * declared raw length is 0, above WIRE_MAX_CHUNK or above <cap>, when zstd
 * fails or yields another length, or both flags are set.
 */
MR_MUST_CHECK int codec_decode(struct codec *c, unsigned flags, const uint8_t *p, size_t len, uint8_t *dst,
			       size_t cap);

#endif
