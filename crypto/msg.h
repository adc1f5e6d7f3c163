/* SPDX-License-Identifier: MIT */
/* crypto/ internal: formatting of the error sentences returned to callers. */
#ifndef MR_CRYPTO_MSG_H
#define MR_CRYPTO_MSG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Formats into <err> (<errlen> bytes); does nothing if err is NULL or errlen 0. */
static inline void crypto_msg(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline void crypto_msg(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

#endif
