/* SPDX-License-Identifier: MIT */
/* Small CA for tests and small sites, through GnuTLS's API (no certtool). */
#ifndef MR_CRYPTO_PKI_H
#define MR_CRYPTO_PKI_H

#include <stdbool.h>
#include <stddef.h>

struct pki_issue_opts {
	const char *ca_dir;   /* holds ca-cert.pem and ca-key.pem */
	const char *out_dir;  /* gets {server,client}-{cert,key}.pem and a copy of ca-cert.pem */
	bool server;          /* server (TLS WWW server usage) or client certificate */
	const char *cn;       /* subject CN */
	const char *org;      /* subject O, may be NULL */
	const char *dns[8];   /* SAN DNS names, NULL-terminated */
	const char *ip[8];    /* SAN IP addresses (v4 or v6 text), NULL-terminated */
	int days;             /* validity from now; 0: 365 */
	bool expired;         /* for tests: valid from 30 days ago until 1 day ago */
};

/*
 * Creates <dir>/ca-cert.pem and <dir>/ca-key.pem (0600), ECDSA P-256 keys.
 * Refuses to overwrite. <cn> NULL: "migrelay CA"; <days> <= 0: 3650.
 * Returns 0 or -errno with <err> set.
 *
 * Both functions return -EINVAL only for bad arguments (a usage error:
 * names, days, addresses), -EEXIST for files they refuse to overwrite,
 * -EBADMSG for unusable CA files, other -errno from the file system.
 */
int pki_init(const char *dir, const char *cn, int days, char *err, size_t errlen) __attribute__((warn_unused_result));
int pki_issue(const struct pki_issue_opts *o, char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * Adds the certificate in <cert_path> (issued by the CA in <ca_dir>) to the
 * CRL at <crl_path> (NULL: <ca_dir>/ca-crl.pem), keeping the entries a CRL
 * there already has, and signs it with the CA: copy it as ca-crl.pem into
 * the peers' TLS directories. Returns 0 or -errno with <err> set (-EINVAL
 * for a certificate of another CA).
 */
int pki_revoke(const char *ca_dir, const char *cert_path, const char *crl_path, char *err, size_t errlen)
	__attribute__((warn_unused_result));

#endif
