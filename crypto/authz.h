/* SPDX-License-Identifier: MIT */
/*
 * Authorization lists (SECURITY.md): --allow patterns matched against the
 * peer identity. x509: the subject DN as RFC 4514 text, patterns with '*'
 * and '?' wildcards as libvirt's tls_allowed_dn_list (fnmatch semantics,
 * whole string). PSK: the identity, same wildcard rules. Pure.
 */
#ifndef MR_CRYPTO_AUTHZ_H
#define MR_CRYPTO_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>

struct authz_list {
	size_t n;
	char **patterns;
};

/* Returns 0, -EINVAL for an empty or over-long (> 1024 bytes) pattern or one with control characters, -ENOMEM. */
int authz_add(struct authz_list *l, const char *pattern) __attribute__((warn_unused_result));
/* An empty list allows every authenticated identity. */
bool authz_allowed(const struct authz_list *l, const char *identity);
/* One pattern against one identity. */
bool authz_match(const char *pattern, const char *identity);
void authz_free(struct authz_list *l);

#endif
