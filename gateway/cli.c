/* SPDX-License-Identifier: MIT */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net.h"

/*
 * Reads the leading decimal digits of <s> into *v, stopping at the first
 * non-digit (*end). -EINVAL when there is no digit, -ERANGE on overflow:
 * strtoul would take blanks, a sign and wrap "-1" to a huge number.
 */
static int read_digits(const char *s, uint64_t *v, const char **end)
{
	uint64_t n = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - d) / 10)
			return -ERANGE;
		n = n * 10 + d;
	}
	if (p == s)
		return -EINVAL;
	*v = n;
	*end = p;
	return 0;
}

static int in_range(uint64_t v, uint64_t lo, uint64_t hi, uint64_t *out)
{
	if (v < lo || v > hi)
		return -ERANGE;
	*out = v;
	return 0;
}

int cli_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	const char *end;
	uint64_t v;
	int r;

	if ((r = read_digits(s, &v, &end)) < 0)
		return r;
	if (*end)
		return -EINVAL;
	return in_range(v, lo, hi, out);
}

int cli_parse_int(const char *s, int lo, int hi, int *out)
{
	uint64_t v;
	int r;

	if (lo < 0 || hi < lo)
		return -EINVAL; /* negative numbers are never a command-line value here */
	if ((r = cli_parse_uint(s, (uint64_t)lo, (uint64_t)hi, &v)) < 0)
		return r;
	*out = (int)v;
	return 0;
}

int cli_parse_bytes(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	const char *p;
	uint64_t whole, frac = 0, scale = 1, mul;
	int r, shift = 0;

	if ((r = read_digits(s, &whole, &p)) < 0)
		return r;
	if (*p == '.') {
		const char *q = ++p;

		/* At most 9 fraction digits count; more are refused rather than read wrong. */
		for (; *p >= '0' && *p <= '9'; p++) {
			if (p - q >= 9)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(*p - '0');
			scale *= 10;
		}
		if (p == q)
			return -EINVAL;
	}
	switch (*p) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	}
	if (shift)
		p++;
	if (shift && p[0] == 'i' && p[1] == 'B')
		p += 2;
	else if (*p == 'B' || *p == 'b')
		p++;
	if (*p)
		return -EINVAL;
	mul = (uint64_t)1 << shift;
	if (whole > UINT64_MAX / mul)
		return -ERANGE;
	whole *= mul;
	/* frac < 10^9 and mul <= 2^40: the product needs more than 64 bits */
	frac = (uint64_t)((unsigned __int128)frac * mul / scale);
	if (whole > UINT64_MAX - frac)
		return -ERANGE;
	return in_range(whole + frac, lo, hi, out);
}

/* Digits followed by one of <units> (the empty unit first, factor 1): the value times that unit's factor. */
static int parse_unit(const char *s, const char *const *units, const uint64_t *factor, int nunits, uint64_t lo,
		      uint64_t hi, uint64_t *out)
{
	const char *end;
	uint64_t v;
	int r;

	if ((r = read_digits(s, &v, &end)) < 0)
		return r;
	for (int i = 0; i < nunits; i++) {
		if (strcmp(end, units[i]))
			continue;
		if (v > UINT64_MAX / factor[i])
			return -ERANGE;
		return in_range(v * factor[i], lo, hi, out);
	}
	return -EINVAL;
}

int cli_parse_seconds(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	static const char *const units[] = { "", "s", "m", "h" };
	static const uint64_t factor[] = { 1, 1, 60, 3600 };

	return parse_unit(s, units, factor, 4, lo, hi, out);
}

int cli_parse_millis(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	static const char *const units[] = { "", "ms", "s" };
	static const uint64_t factor[] = { 1, 1, 1000 };

	return parse_unit(s, units, factor, 3, lo, hi, out);
}

int cli_parse_port(const char *s, bool allow_zero, uint16_t *out)
{
	uint64_t v;
	int r;

	if ((r = cli_parse_uint(s, allow_zero ? 0 : 1, 65535, &v)) < 0)
		return r;
	*out = (uint16_t)v;
	return 0;
}

int cli_parse_hostport(const char *spec, bool allow_zero, char *host, size_t hostlen, uint16_t *port)
{
	char h[256], p[16];
	uint16_t pv;
	int r;

	if (net_split_hostport(spec, h, host && hostlen < sizeof(h) ? hostlen : sizeof(h), p, sizeof(p)) < 0)
		return -EINVAL;
	if (spec[0] != '[' && strchr(h, ':'))
		return -EINVAL; /* a bare IPv6 address: the port would be ambiguous, use [V6]:PORT */
	if ((r = cli_parse_port(p, allow_zero, &pv)) < 0)
		return r;
	if (host)
		snprintf(host, hostlen, "%s", h);
	if (port)
		*port = pv;
	return 0;
}
