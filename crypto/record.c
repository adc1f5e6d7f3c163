/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 record protection with GnuTLS's AEAD primitives (see record.h).
 * Sealing uses gnutls_aead_cipher_encryptv, which for GnuTLS's built-in
 * ciphers encrypts piece by piece from the input vector straight into the
 * contiguous output: the plaintext is read once, by the cipher.
 */
#include "record.h"

#include <errno.h>
#include <string.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>

static gnutls_cipher_algorithm_t rec_gnutls_alg(enum mr_rec_cipher c)
{
	switch (c) {
	case MR_REC_AES_128_GCM:
		return GNUTLS_CIPHER_AES_128_GCM;
	case MR_REC_AES_256_GCM:
		return GNUTLS_CIPHER_AES_256_GCM;
	case MR_REC_CHACHA20_POLY1305:
		return GNUTLS_CIPHER_CHACHA20_POLY1305;
	}
	return GNUTLS_CIPHER_UNKNOWN;
}

size_t mr_rec_key_len(enum mr_rec_cipher c)
{
	switch (c) {
	case MR_REC_AES_128_GCM:
		return 16;
	case MR_REC_AES_256_GCM:
	case MR_REC_CHACHA20_POLY1305:
		return 32;
	}
	return 0;
}

int mr_rec_init(struct mr_rec *r, enum mr_rec_cipher cipher, const void *key, size_t keylen, const void *iv,
		size_t ivlen, uint64_t seq)
{
	gnutls_datum_t k = { (unsigned char *)(uintptr_t)key, (unsigned int)keylen };
	gnutls_aead_cipher_hd_t h = NULL;
	int gr;

	if (!r || !key || !iv)
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	if (rec_gnutls_alg(cipher) == GNUTLS_CIPHER_UNKNOWN)
		return -ENOTSUP;
	if (keylen != mr_rec_key_len(cipher) || ivlen != MR_REC_IV)
		return -EINVAL;
	gr = gnutls_aead_cipher_init(&h, rec_gnutls_alg(cipher), &k);
	if (gr < 0)
		return gr == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -ENOTSUP;
	r->aead = h;
	r->cipher = cipher;
	memcpy(r->iv, iv, MR_REC_IV);
	r->seq = seq;
	r->limit = MR_REC_LIMIT_DEFAULT;
	return 0;
}

void mr_rec_free(struct mr_rec *r)
{
	if (!r)
		return;
	if (r->aead)
		gnutls_aead_cipher_deinit(r->aead);
	explicit_bzero(r, sizeof(*r));
}

void mr_rec_set_limit(struct mr_rec *r, uint64_t records)
{
	if (r)
		r->limit = records;
}

/* RFC 8446 §5.3: the sequence number, big-endian and left-padded to the IV's length, xor the IV. */
static void rec_nonce(const struct mr_rec *r, unsigned char nonce[MR_REC_IV])
{
	memcpy(nonce, r->iv, MR_REC_IV);
	for (int i = 0; i < 8; i++)
		nonce[MR_REC_IV - 1 - i] ^= (unsigned char)(r->seq >> (8 * i));
}

static void rec_header(unsigned char h[MR_REC_HDR], size_t cipher_len)
{
	h[0] = MR_REC_T_DATA;
	h[1] = 0x03;
	h[2] = 0x03;
	h[3] = (unsigned char)(cipher_len >> 8);
	h[4] = (unsigned char)cipher_len;
}

ssize_t mr_rec_seal(struct mr_rec *r, enum mr_rec_type type, const struct iovec *iov, int iovcnt, void *out,
		    size_t outlen)
{
	giovec_t v[16 + 1], aad;
	unsigned char nonce[MR_REC_IV], *o = out;
	unsigned char inner = (unsigned char)type;
	size_t plain = 0, clen;
	int i, n = 0;

	if (!r || !r->aead || !out || iovcnt < 0 || (iovcnt > 0 && !iov))
		return -EINVAL;
	if (type != MR_REC_T_DATA && type != MR_REC_T_ALERT && type != MR_REC_T_HANDSHAKE)
		return -EINVAL;
	if (iovcnt > 16)
		return -EINVAL;
	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > MR_REC_MAX_PLAIN - plain)
			return -EMSGSIZE;
		plain += iov[i].iov_len;
		if (iov[i].iov_len) {
			v[n].iov_base = iov[i].iov_base;
			v[n].iov_len = iov[i].iov_len;
			n++;
		}
	}
	if (plain == 0 && type != MR_REC_T_DATA)
		return -EINVAL; /* §5.1: only application data may be empty */
	if (outlen < plain + MR_REC_OVERHEAD)
		return -EMSGSIZE;
	if (r->seq >= r->limit)
		return -EKEYEXPIRED;
	v[n].iov_base = &inner;
	v[n].iov_len = 1;
	n++;
	clen = plain + 1 + MR_REC_TAG;
	rec_header(o, clen);
	aad.iov_base = o;
	aad.iov_len = MR_REC_HDR;
	rec_nonce(r, nonce);
	{
		size_t got = outlen - MR_REC_HDR;

		if (gnutls_aead_cipher_encryptv(r->aead, nonce, sizeof(nonce), &aad, 1, MR_REC_TAG, v, n,
						o + MR_REC_HDR, &got) < 0 ||
		    got != clen) {
			explicit_bzero(o, outlen < MR_REC_HDR + clen ? outlen : MR_REC_HDR + clen);
			return -EIO;
		}
	}
	r->seq++;
	return (ssize_t)(MR_REC_HDR + clen);
}

ssize_t mr_rec_peek(const void *p, size_t avail)
{
	const unsigned char *h = p;
	size_t len;

	if (avail < MR_REC_HDR)
		return 0;
	if (h[0] != MR_REC_T_DATA || h[1] != 0x03 || h[2] != 0x03)
		return -EPROTO;
	len = (size_t)h[3] << 8 | h[4];
	if (len > MR_REC_MAX_CIPHER)
		return -EMSGSIZE;
	if (len < 1 + MR_REC_TAG)
		return -EPROTO;
	return (ssize_t)(MR_REC_HDR + len);
}

/* Strips zero padding from the decrypted TLSInnerPlaintext <p>, <n> bytes (§5.4). */
static int rec_unpad(const unsigned char *p, size_t n, size_t *plainlen, unsigned char *type)
{
	while (n > 0 && p[n - 1] == 0)
		n--;
	if (n == 0)
		return -ENODATA;
	if (n - 1 > MR_REC_MAX_PLAIN)
		return -EMSGSIZE;
	*type = p[n - 1];
	*plainlen = n - 1;
	return 0;
}

static int rec_check(struct mr_rec *r, const void *rec, size_t reclen)
{
	ssize_t k;

	if (!r || !r->aead || !rec)
		return -EINVAL;
	k = mr_rec_peek(rec, reclen);
	if (k < 0)
		return (int)k;
	if (k == 0 || (size_t)k != reclen)
		return -EPROTO;
	if (r->seq >= r->limit)
		return -EKEYEXPIRED;
	return 0;
}

int mr_rec_open(struct mr_rec *r, void *rec, size_t reclen, unsigned char **plain, size_t *plainlen,
		unsigned char *type)
{
	unsigned char nonce[MR_REC_IV], *b = rec;
	size_t body;
	giovec_t aad, v;
	int e;

	if (!plain || !plainlen || !type)
		return -EINVAL;
	if ((e = rec_check(r, rec, reclen)) < 0)
		return e;
	body = reclen - MR_REC_HDR - MR_REC_TAG;
	aad.iov_base = b;
	aad.iov_len = MR_REC_HDR;
	v.iov_base = b + MR_REC_HDR;
	v.iov_len = body;
	rec_nonce(r, nonce);
	if (gnutls_aead_cipher_decryptv2(r->aead, nonce, sizeof(nonce), &aad, 1, &v, 1, b + MR_REC_HDR + body,
					 MR_REC_TAG) < 0) {
		explicit_bzero(b + MR_REC_HDR, body);
		return -EBADMSG;
	}
	if ((e = rec_unpad(b + MR_REC_HDR, body, plainlen, type)) < 0) {
		explicit_bzero(b + MR_REC_HDR, body);
		return e;
	}
	r->seq++;
	*plain = b + MR_REC_HDR;
	return 0;
}

int mr_rec_open_to(struct mr_rec *r, const void *rec, size_t reclen, void *dst, size_t dstlen, size_t *plainlen,
		   unsigned char *type)
{
	unsigned char nonce[MR_REC_IV];
	const unsigned char *b = rec;
	size_t body, got;
	int e;

	if (!dst || !plainlen || !type)
		return -EINVAL;
	if ((e = rec_check(r, rec, reclen)) < 0)
		return e;
	body = reclen - MR_REC_HDR - MR_REC_TAG;
	if (dstlen < body)
		return -ENOSPC;
	got = body;
	rec_nonce(r, nonce);
	if (gnutls_aead_cipher_decrypt(r->aead, nonce, sizeof(nonce), b, MR_REC_HDR, MR_REC_TAG, b + MR_REC_HDR,
				       body + MR_REC_TAG, dst, &got) < 0 ||
	    got != body) {
		explicit_bzero(dst, body);
		return -EBADMSG;
	}
	if ((e = rec_unpad(dst, body, plainlen, type)) < 0) {
		explicit_bzero(dst, body);
		return e;
	}
	r->seq++;
	return 0;
}
