/* SPDX-License-Identifier: MIT */
/*
 * Chunk codec (PROTOCOL.md §5.2).
 *
 * Encoding picks the smallest of three forms: ZERO (only the raw length),
 * ZSTD (raw length and one zstd frame, only when strictly smaller than the
 * raw chunk) or the raw bytes. Decoding trusts none of the peer's claims:
 * the raw length is bounded before anything is written, and zstd writes
 * into exactly that many bytes and must fill them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "codec.h"

enum {
	CODEC_MIN_LEVEL = 1,
	CODEC_MAX_LEVEL = 19, /* zstd's "ultra" levels only help inputs far larger than a chunk */
	CODEC_ZERO_BLOCK = 4096,
};

struct codec {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	int level;
};

static const uint8_t zero_block[CODEC_ZERO_BLOCK];

/* Any thread; the codec is then used by one thread at a time. <level> is clamped to 1..19. */
struct codec *codec_new(int level)
{
	struct codec *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	if (level < CODEC_MIN_LEVEL)
		level = CODEC_MIN_LEVEL;
	if (level > CODEC_MAX_LEVEL)
		level = CODEC_MAX_LEVEL;
	c->level = level;
	c->cctx = ZSTD_createCCtx();
	c->dctx = ZSTD_createDCtx();
	if (!c->cctx || !c->dctx) {
		codec_free(c);
		return NULL;
	}
	return c;
}

void codec_free(struct codec *c)
{
	if (!c)
		return;
	ZSTD_freeDCtx(c->dctx);
	ZSTD_freeCCtx(c->cctx);
	free(c);
}

bool codec_is_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len) {
		size_t n = len < sizeof(zero_block) ? len : sizeof(zero_block);

		if (memcmp(b, zero_block, n))
			return false;
		b += n;
		len -= n;
	}
	return true;
}

/* Thread owning <c>. <c> may be NULL when <compress> is false. */
unsigned codec_encode(struct codec *c, bool compress, const uint8_t *src, size_t len, uint8_t *dst, size_t *out_len)
{
	size_t n;

	*out_len = len;
	if (!src || !dst || len == 0 || len > WIRE_MAX_CHUNK)
		return 0;
	/* ZERO only when it saves space, as ZSTD (§5.2). */
	if (len > WIRE_ZHDR_LEN && codec_is_zero(src, len)) {
		wire_store_be32(dst, (uint32_t)len);
		*out_len = WIRE_ZHDR_LEN;
		return WIRE_F_ZERO;
	}
	if (!compress || !c || len <= WIRE_ZHDR_LEN + 1)
		return 0;
	/* A frame that does not fit in len - 4 bytes would not save anything: zstd stops early. */
	n = ZSTD_compressCCtx(c->cctx, dst + WIRE_ZHDR_LEN, len - WIRE_ZHDR_LEN, src, len, c->level);
	if (ZSTD_isError(n) || n == 0 || n >= len - WIRE_ZHDR_LEN)
		return 0;
	wire_store_be32(dst, (uint32_t)len);
	*out_len = WIRE_ZHDR_LEN + n;
	return WIRE_F_ZSTD;
}

/* The declared raw length of a ZERO/ZSTD payload, or -EBADMSG (§5.2). */
static int raw_len(const uint8_t *p, size_t cap)
{
	uint32_t raw = wire_load_be32(p);

	if (raw == 0 || raw > WIRE_MAX_CHUNK || raw > cap)
		return -EBADMSG;
	return (int)raw;
}

/* Thread owning <c>. <p, len> is a whole DATA payload from the peer. */
int codec_decode(struct codec *c, unsigned flags, const uint8_t *p, size_t len, uint8_t *dst, size_t cap)
{
	unsigned long long cs;
	size_t zlen, n;
	int raw;

	if (!p || (flags & ~WIRE_F_DATA_MASK) || (flags & WIRE_F_DATA_MASK) == WIRE_F_DATA_MASK)
		return -EBADMSG;
	if (flags == 0)
		return len == 0 || len > WIRE_MAX_CHUNK ? -EBADMSG : (int)len;
	if (flags == WIRE_F_ZERO) {
		if (len != WIRE_ZHDR_LEN || (raw = raw_len(p, cap)) < 0)
			return -EBADMSG;
		if (!dst)
			return -EINVAL;
		memset(dst, 0, (size_t)raw);
		return raw;
	}
	if (len <= WIRE_ZHDR_LEN || len > WIRE_MAX_PAYLOAD || (raw = raw_len(p, cap)) < 0)
		return -EBADMSG;
	if (!c || !dst)
		return -EINVAL;
	zlen = len - WIRE_ZHDR_LEN;
	/* Exactly one frame and nothing after it: zstd would otherwise decode concatenated frames. */
	n = ZSTD_findFrameCompressedSize(p + WIRE_ZHDR_LEN, zlen);
	if (ZSTD_isError(n) || n != zlen)
		return -EBADMSG;
	/* A frame that states its size must state the raw length; refuse before decoding anything. */
	cs = ZSTD_getFrameContentSize(p + WIRE_ZHDR_LEN, zlen);
	if (cs == ZSTD_CONTENTSIZE_ERROR || (cs != ZSTD_CONTENTSIZE_UNKNOWN && cs != (unsigned long long)raw))
		return -EBADMSG;
	/*
	 * One-shot decoding writes straight into dst and needs no window
	 * buffer, so a frame's window size costs us nothing; the capacity of
	 * exactly <raw> bytes is what bounds the output.
	 */
	n = ZSTD_decompressDCtx(c->dctx, dst, (size_t)raw, p + WIRE_ZHDR_LEN, zlen);
	if (ZSTD_isError(n) || n != (size_t)raw)
		return -EBADMSG;
	return raw;
}
