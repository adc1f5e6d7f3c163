/* SPDX-License-Identifier: MIT */
/*
 * QEMU keys.psk parser: lines "identity:hexkey", '#' comments and blank
 * lines ignored. Pure: works on a buffer the caller read.
 */
#ifndef MR_CRYPTO_PSK_H
#define MR_CRYPTO_PSK_H

#include <stddef.h>
#include <stdint.h>

enum { PSK_MAX_IDENTITY = 128, PSK_MAX_KEY = 64, PSK_MIN_KEY = 16, PSK_MAX_ENTRIES = 256 };

struct psk_entry {
	char identity[PSK_MAX_IDENTITY + 1];
	uint8_t key[PSK_MAX_KEY];
	size_t key_len;
};

struct psk_file {
	size_t n;
	struct psk_entry e[PSK_MAX_ENTRIES];
};

/*
 * Parses <len> bytes. Returns 0, or -EBADMSG with *bad_line set to the
 * 1-based line number (identity empty or too long or with ':' or control
 * characters or preceded by blanks, key not hex, odd length, shorter than
 * PSK_MIN_KEY bytes or longer than PSK_MAX_KEY, duplicate identity, too
 * many entries), or to 0 when there is no entry at all. Blanks and '\r'
 * at the end of a line are ignored. On failure <f> holds no key bytes.
 */
int psk_parse(struct psk_file *f, const char *buf, size_t len, int *bad_line) __attribute__((warn_unused_result));
const struct psk_entry *psk_find(const struct psk_file *f, const char *identity);

#endif
