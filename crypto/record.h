/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 record protection (RFC 8446 §5.2-§5.5) with keys that a GnuTLS
 * handshake agreed on, so the data path seals and opens records in its own
 * buffers: one cipher pass, no copy into a library-owned buffer. Pure: no
 * system calls, no I/O; one struct per direction, used by one thread.
 *
 * Record on the wire: 0x17 0x03 0x03 len16 | AEAD(plaintext || type ||
 * zeros) | 16-byte tag; nonce = static IV xor the 64-bit sequence number
 * (big-endian, right-aligned), additional data = the 5-byte header.
 */
#ifndef MR_CRYPTO_RECORD_H
#define MR_CRYPTO_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "../stream/wire.h"

enum mr_rec_limits {
	MR_REC_HDR = 5,                   /* record header: type, legacy version, length */
	MR_REC_TAG = 16,                  /* AEAD tag of all three suites */
	MR_REC_IV = 12,                   /* per-direction static IV (nonce length) */
	MR_REC_MAX_PLAIN = 1 << 14,       /* TLSInnerPlaintext content limit, §5.1 */
	MR_REC_MAX_CIPHER = (1 << 14) + 256, /* TLSCiphertext.length limit, §5.2 */
	MR_REC_MAX = MR_REC_HDR + MR_REC_MAX_CIPHER,   /* largest record we accept */
	MR_REC_OVERHEAD = MR_REC_HDR + 1 + MR_REC_TAG, /* bytes a sealed record adds */
};

/* Outer and inner content types (RFC 8446 §5.1). */
enum mr_rec_type {
	MR_REC_T_ALERT = 21,
	MR_REC_T_HANDSHAKE = 22,
	MR_REC_T_DATA = 23,
};

enum mr_rec_cipher {
	MR_REC_AES_128_GCM = 1,
	MR_REC_AES_256_GCM = 2,
	MR_REC_CHACHA20_POLY1305 = 3,
};

/*
 * Records one key protects before mr_rec_seal/mr_rec_open refuse with
 * -EKEYEXPIRED: 2^23 (8.4 million; 128 GiB of full records). RFC 8446 §5.5
 * allows about 2^24.5 full records per AES-GCM key; we stay a factor 2.8
 * below that, and use the same count for ChaCha20-Poly1305 (whose limit is
 * far higher) so both behave alike. The gateway replaces a connection by
 * a new handshake after 64 GiB (2^22 full records) before this matters;
 * many small records can reach it first, and then -EKEYEXPIRED tells the
 * caller to do the same.
 */
#define MR_REC_LIMIT_DEFAULT (UINT64_C(1) << 23)

struct api_aead_cipher_hd_st; /* GnuTLS's gnutls_aead_cipher_hd_t, opaque here */

/* One direction of a connection. Zero-initialised = unused (mr_rec_free is safe). */
struct mr_rec {
	struct api_aead_cipher_hd_st *aead;
	enum mr_rec_cipher cipher;
	unsigned char iv[MR_REC_IV];
	uint64_t seq;   /* sequence number of the next record */
	uint64_t limit; /* records allowed under this key (seq < limit) */
};

/*
 * Sets up <r> for <cipher> with <key> (16 or 32 bytes as the suite needs),
 * <iv> (12 bytes) and the sequence number <seq> of the next record.
 * Returns 0, -EINVAL (wrong sizes), -ENOTSUP (unknown suite, or GnuTLS
 * cannot do it) or -ENOMEM. <r> keeps no pointer to key or iv.
 */
MR_MUST_CHECK int mr_rec_init(struct mr_rec *r, enum mr_rec_cipher cipher, const void *key, size_t keylen,
			      const void *iv, size_t ivlen, uint64_t seq);

/* Frees the AEAD handle and wipes the IV. NULL-safe, idempotent. */
void mr_rec_free(struct mr_rec *r);

/* Lowers (or raises) the record limit; for tests and cautious callers. */
void mr_rec_set_limit(struct mr_rec *r, uint64_t records);

/* Key length in bytes of <cipher> (16 or 32), 0 if unknown. */
size_t mr_rec_key_len(enum mr_rec_cipher cipher);

/*
 * Seals the <iovcnt> buffers of <iov> (together at most MR_REC_MAX_PLAIN
 * bytes; 0 only for MR_REC_T_DATA) as one record of inner content type
 * <type> into <out>, which needs plaintext + MR_REC_OVERHEAD bytes and
 * must not overlap the input. One cipher pass reads the input and writes
 * the ciphertext behind the header. Returns the record's length, or
 * -EMSGSIZE (too much plaintext, or <outlen> too small), -EINVAL,
 * -EKEYEXPIRED (the key's record limit is reached: get fresh keys) or -EIO.
 * On success the sequence number advances.
 */
MR_MUST_CHECK ssize_t mr_rec_seal(struct mr_rec *r, enum mr_rec_type type, const struct iovec *iov, int iovcnt,
				  void *out, size_t outlen);

/*
 * Looks at the first <avail> bytes of a record stream. Returns the length
 * of the whole first record (header included) once its header is there,
 * 0 if fewer than MR_REC_HDR bytes are, -EPROTO for a header that is not
 * an application_data record of legacy version 0x0303 or that is too
 * short to hold a tag and a content type, -EMSGSIZE for a length above
 * MR_REC_MAX_CIPHER. Checks only the header; the caller waits for that
 * many bytes, then calls mr_rec_open or mr_rec_open_to.
 */
MR_MUST_CHECK ssize_t mr_rec_peek(const void *p, size_t avail);

/*
 * Opens the record of <reclen> bytes at <rec> in place. On success
 * returns 0 with *plain pointing into <rec> at the content (*plainlen
 * bytes, maybe 0: padding removed) and *type its inner content type.
 * Errors, with nothing returned and the record's body wiped: -EPROTO or
 * -EMSGSIZE (bad header or size, as mr_rec_peek; also <reclen> not what
 * the header says), -EBADMSG (authentication failed: tampered, truncated,
 * reordered or the wrong key), -ENODATA (no content type: all zeros),
 * -EMSGSIZE (content above MR_REC_MAX_PLAIN), -EKEYEXPIRED (limit), -EIO.
 * On success the sequence number advances.
 */
MR_MUST_CHECK int mr_rec_open(struct mr_rec *r, void *rec, size_t reclen, unsigned char **plain, size_t *plainlen,
			      unsigned char *type);

/*
 * As mr_rec_open, but decrypts out of place into <dst>, which must hold
 * reclen - MR_REC_HDR - MR_REC_TAG bytes (the content plus its type byte
 * and padding; else -ENOSPC) and must not overlap <rec>. The content
 * starts at <dst>. On failure <dst> is wiped as far as it was written.
 */
MR_MUST_CHECK int mr_rec_open_to(struct mr_rec *r, const void *rec, size_t reclen, void *dst, size_t dstlen,
				 size_t *plainlen, unsigned char *type);

#endif
