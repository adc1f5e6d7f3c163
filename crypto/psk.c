/* SPDX-License-Identifier: MIT */
/*
 * keys.psk parser (QEMU's tls-creds-psk format). Pure: no I/O, no
 * allocation; the caller reads the file and owns <f>.
 */
#include "psk.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static bool psk_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static int psk_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Parses one non-blank, non-comment line [p, end) into <e>. Returns 0 or
 * -EBADMSG. The line has no '\n' and no trailing blanks.
 */
static int psk_parse_line(struct psk_entry *e, const char *p, const char *end)
{
	const char *colon = memchr(p, ':', (size_t)(end - p));
	size_t idlen, hexlen, i;

	if (!colon)
		return -EBADMSG;
	idlen = (size_t)(colon - p);
	if (idlen == 0 || idlen > PSK_MAX_IDENTITY)
		return -EBADMSG;
	for (i = 0; i < idlen; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c < 0x20 || c == 0x7f)
			return -EBADMSG;
	}
	hexlen = (size_t)(end - colon - 1);
	/* compare halves so that an odd length cannot slip through */
	if (hexlen % 2 || hexlen / 2 < PSK_MIN_KEY || hexlen / 2 > PSK_MAX_KEY)
		return -EBADMSG;
	for (i = 0; i < hexlen / 2; i++) {
		int hi = psk_hexval(colon[1 + 2 * i]);
		int lo = psk_hexval(colon[2 + 2 * i]);

		if (hi < 0 || lo < 0)
			return -EBADMSG;
		e->key[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(e->identity, p, idlen);
	e->identity[idlen] = '\0';
	e->key_len = hexlen / 2;
	return 0;
}

int psk_parse(struct psk_file *f, const char *buf, size_t len, int *bad_line)
{
	const char *p = buf, *end = buf + len;
	struct psk_entry e;
	int line = 0, r = 0;
	size_t i;

	memset(f, 0, sizeof(*f));
	*bad_line = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *line_start = p, *s = p;

		line++;
		p = nl ? nl + 1 : end;
		while (s < le && psk_is_space(*s))
			s++;
		while (le > s && psk_is_space(le[-1]))
			le--;
		if (s == le || *s == '#')
			continue;
		/*
		 * GnuTLS and QEMU take the identity from the very start of
		 * the line, so " alice" would be another user to them:
		 * refuse it rather than guess.
		 */
		if (s != line_start) {
			r = -EBADMSG;
			goto bad;
		}
		if (f->n == PSK_MAX_ENTRIES) {
			r = -EBADMSG;
			goto bad;
		}
		memset(&e, 0, sizeof(e));
		r = psk_parse_line(&e, s, le);
		if (r < 0)
			goto bad;
		for (i = 0; i < f->n; i++) {
			if (!strcmp(f->e[i].identity, e.identity)) {
				r = -EBADMSG;
				goto bad;
			}
		}
		f->e[f->n++] = e;
	}
	if (f->n == 0) {
		r = -EBADMSG; /* *bad_line stays 0: no line is at fault */
		goto out;
	}
	r = 0;
	goto out;
bad:
	*bad_line = line;
out:
	/* never leave key bytes behind in a failed result or on the stack */
	explicit_bzero(&e, sizeof(e));
	if (r < 0)
		explicit_bzero(f, sizeof(*f));
	return r;
}

const struct psk_entry *psk_find(const struct psk_file *f, const char *identity)
{
	size_t i;

	if (!f || !identity)
		return NULL;
	for (i = 0; i < f->n; i++)
		if (!strcmp(f->e[i].identity, identity))
			return &f->e[i];
	return NULL;
}
