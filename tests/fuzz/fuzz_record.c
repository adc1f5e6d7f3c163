/* SPDX-License-Identifier: MIT */
/* Target functions: mr_rec_peek, mr_rec_open, mr_rec_open_to, mr_rec_seal. */
/*
 * The first byte picks the suite (mod 3) and the mode; the rest is a record
 * stream from a peer whose key is fixed here (so the corpus can hold
 * records that authenticate and reach the padding and content checks).
 * Mode bit 0x04: seal the rest as content instead and open it again: what
 * was sealed must come back unchanged. Bit 0x08: open out of place.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/record.h"
#include "check.h"

static const unsigned char fuzz_key[32] = "migrelay fuzz_record fixed key!";
static const unsigned char fuzz_iv[12] = "record iv 12";
static const enum mr_rec_cipher fuzz_ciphers[3] = { MR_REC_AES_128_GCM, MR_REC_AES_256_GCM,
						    MR_REC_CHACHA20_POLY1305 };

static unsigned char buf[MR_REC_MAX], dst[MR_REC_MAX];

static void open_stream(struct mr_rec *rx, const uint8_t *d, size_t n, int out_of_place)
{
	while (n > 0) {
		ssize_t k = mr_rec_peek(d, n);
		unsigned char *content, type;
		size_t pl;
		uint64_t seq = rx->seq;
		int r;

		if (k <= 0 || (size_t)k > n) {
			CHECK(k == 0 || k == -EPROTO || k == -EMSGSIZE || (size_t)k > n);
			return;
		}
		CHECK(k >= MR_REC_HDR + 17 && k <= MR_REC_MAX);
		memcpy(buf, d, (size_t)k);
		if (out_of_place) {
			r = mr_rec_open_to(rx, buf, (size_t)k, dst, sizeof(dst), &pl, &type);
			content = dst;
		} else {
			r = mr_rec_open(rx, buf, (size_t)k, &content, &pl, &type);
		}
		if (r < 0) {
			CHECK(r == -EBADMSG || r == -ENODATA || r == -EMSGSIZE);
			CHECK(rx->seq == seq);
			return;
		}
		CHECK(rx->seq == seq + 1);
		CHECK(type != 0 && pl <= MR_REC_MAX_PLAIN && pl + 1 + MR_REC_HDR + MR_REC_TAG <= (size_t)k);
		if (pl)
			CHECK(content[0] == content[0]); /* readable (sanitizers) */
		d += k;
		n -= (size_t)k;
	}
}

static void round_trip(struct mr_rec *tx, struct mr_rec *rx, const uint8_t *d, size_t n)
{
	static unsigned char rec[MR_REC_MAX];
	size_t half = n / 2 > MR_REC_MAX_PLAIN ? MR_REC_MAX_PLAIN : n / 2;
	size_t rest = n - half > MR_REC_MAX_PLAIN - half ? MR_REC_MAX_PLAIN - half : n - half;
	struct iovec v[2] = { { (void *)(uintptr_t)d, half }, { (void *)(uintptr_t)(d + half), rest } };
	unsigned char *content, type;
	size_t pl;
	ssize_t k;

	k = mr_rec_seal(tx, MR_REC_T_DATA, v, 2, rec, sizeof(rec));
	CHECK(k == (ssize_t)(half + rest + MR_REC_OVERHEAD));
	CHECK(mr_rec_peek(rec, (size_t)k) == k);
	CHECK(mr_rec_open(rx, rec, (size_t)k, &content, &pl, &type) == 0);
	CHECK(type == MR_REC_T_DATA && pl == half + rest && !memcmp(content, d, pl));
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct mr_rec tx, rx;
	enum mr_rec_cipher c;

	if (n < 1)
		return 0;
	c = fuzz_ciphers[d[0] % 3];
	CHECK(mr_rec_init(&rx, c, fuzz_key, mr_rec_key_len(c), fuzz_iv, sizeof(fuzz_iv), 0) == 0);
	if (d[0] & 0x04) {
		CHECK(mr_rec_init(&tx, c, fuzz_key, mr_rec_key_len(c), fuzz_iv, sizeof(fuzz_iv), 0) == 0);
		round_trip(&tx, &rx, d + 1, n - 1);
		mr_rec_free(&tx);
	} else {
		open_stream(&rx, d + 1, n - 1, d[0] & 0x08);
	}
	mr_rec_free(&rx);
	return 0;
}
