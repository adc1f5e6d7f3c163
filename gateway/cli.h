/* SPDX-License-Identifier: MIT */
/*
 * Strict parsers for command-line values. A value is read whole or refused:
 * no leading blanks or signs, no trailing text, no hex or exponents, no
 * silent wrap-around, and a unit only where the option documents one.
 * Pure functions (no I/O, no allocation): any thread may call them.
 * Each returns 0, -EINVAL (not the expected form) or -ERANGE (the form is
 * right but the value is outside [lo, hi] or does not fit); *out is written
 * only on success.
 */
#ifndef MR_GATEWAY_CLI_H
#define MR_GATEWAY_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stream/wire.h"

/* Decimal digits only ("0", "42"; not "+1", " 1", "1e3", "0x10", "5s"). */
MR_MUST_CHECK int cli_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
MR_MUST_CHECK int cli_parse_int(const char *s, int lo, int hi, int *out);

/*
 * A byte count: digits, an optional fraction, an optional binary unit
 * K, M, G or T (either case) and an optional B or iB: "512M", "1.5G",
 * "100k", "4096", "2GiB". The result is truncated to whole bytes.
 */
MR_MUST_CHECK int cli_parse_bytes(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/*
 * A duration in whole seconds: digits with an optional unit s, m or h
 * ("90", "90s", "5m", "1h"). The result in seconds.
 */
MR_MUST_CHECK int cli_parse_seconds(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* A duration in whole milliseconds: digits with an optional "ms" or "s" ("300", "300ms", "2s"). */
MR_MUST_CHECK int cli_parse_millis(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* A TCP port: digits, 1..65535 (0 too when <allow_zero>: "let the kernel pick", for listeners). */
MR_MUST_CHECK int cli_parse_port(const char *s, bool allow_zero, uint16_t *out);

/*
 * Checks "HOST:PORT" or "[V6]:PORT": a non-empty host (at most <hostlen>-1
 * bytes) and a strict port as cli_parse_port. On success copies the host
 * into <host> (may be NULL) and the port into *port (may be NULL).
 */
MR_MUST_CHECK int cli_parse_hostport(const char *spec, bool allow_zero, char *host, size_t hostlen,
				     uint16_t *port);

#endif
