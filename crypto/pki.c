/* SPDX-License-Identifier: MIT */
/*
 * A small CA through GnuTLS's X.509 API. Certificates follow what QEMU's
 * tls-creds-x509 checks when it loads a directory: basicConstraints on
 * every certificate (CA:TRUE only on the CA), keyCertSign on the CA, the
 * TLS WWW server or client purpose on a leaf, and on a leaf with a
 * critical keyUsage both digitalSignature and keyEncipherment.
 */
#include "pki.h"

#include "msg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

enum {
	PKI_CA_DAYS = 3650,      /* default CA lifetime */
	PKI_LEAF_DAYS = 365,     /* default leaf lifetime */
	PKI_MAX_DAYS = 36500,    /* 100 years: anything longer is a typo */
	PKI_MAX_NAME = 64,       /* X.520 upper bound for CN and O */
	PKI_MAX_DNS = 253,       /* longest DNS name */
	PKI_SERIAL_LEN = 16,     /* random serial, 127 bits */
	PKI_MAX_FILE = 1 << 20,  /* a PEM file larger than this is not ours */
	PKI_BACKDATE = 3600,     /* seconds: tolerates clock skew between hosts */
};

#define PKI_DAY 86400
#define PKI_CRL_DAYS 365 /* a CRL's nextUpdate: past it, GnuTLS stops trusting the CRL */


/* Maps a GnuTLS error to -errno for our callers. */
static int pki_errno(int gr)
{
	switch (gr) {
	case GNUTLS_E_MEMORY_ERROR:
		return -ENOMEM;
	case GNUTLS_E_FILE_ERROR:
		return -EIO;
	default:
		return -EBADMSG; /* -EINVAL is kept for bad options */
	}
}

static int pki_path(char *out, size_t outlen, const char *dir, const char *name, char *err, size_t errlen)
{
	int n = snprintf(out, outlen, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= outlen) {
		crypto_msg(err, errlen, "path %.200s/%s is too long", dir, name);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* Reads a whole small file into a gnutls_malloc'd datum. Returns 0 or -errno with <err> set. */
static int pki_read(const char *path, gnutls_datum_t *d, const char *hint, char *err, size_t errlen)
{
	struct stat st;
	ssize_t n;
	size_t off = 0;
	int fd, r;

	d->data = NULL;
	d->size = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		crypto_msg(err, errlen, "cannot read %s: %s%s", path, strerror(-r), hint);
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > PKI_MAX_FILE) {
		r = -EBADMSG;
		crypto_msg(err, errlen, "%s is not a PEM file of reasonable size%s", path, hint);
		goto out;
	}
	d->data = gnutls_malloc((size_t)st.st_size + 1);
	if (!d->data) {
		r = -ENOMEM;
		crypto_msg(err, errlen, "out of memory reading %s", path);
		goto out;
	}
	while (off < (size_t)st.st_size) {
		n = read(fd, d->data + off, (size_t)st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			crypto_msg(err, errlen, "cannot read %s: %s", path, strerror(-r));
			goto out;
		}
		off += (size_t)n;
	}
	d->data[off] = '\0';
	d->size = (unsigned int)off;
	r = 0;
out:
	if (r < 0) {
		gnutls_free(d->data);
		d->data = NULL;
	}
	close(fd);
	return r;
}

static int pki_write_all(int fd, const void *p, size_t len)
{
	const unsigned char *c = p;
	ssize_t n;

	while (len) {
		n = write(fd, c, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Writes <d> to <path> with <mode>. excl: fail with -EEXIST if it exists
 * (the file is created in place). Otherwise a temporary file is renamed
 * over it, so readers never see half a key.
 */
static int pki_write(const char *path, const gnutls_datum_t *d, mode_t mode, bool excl, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	const char *target = path;
	int fd, r, n;

	if (!excl) {
		n = snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
		if (n < 0 || (size_t)n >= sizeof(tmp)) {
			crypto_msg(err, errlen, "path %.200s is too long", path);
			return -ENAMETOOLONG;
		}
		fd = mkostemp(tmp, O_CLOEXEC); /* mode 0600 until we widen it */
		target = tmp;
	} else {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	}
	if (fd < 0) {
		r = -errno;
		if (r == -EEXIST)
			crypto_msg(err, errlen, "%s already exists; refusing to overwrite it (remove it or pick another directory)", path);
		else
			crypto_msg(err, errlen, "cannot create %s: %s", excl ? path : tmp, strerror(-r));
		return r;
	}
	r = fchmod(fd, mode) < 0 ? -errno : 0;
	if (r == 0)
		r = pki_write_all(fd, d->data, d->size);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && !excl && rename(tmp, path) < 0)
		r = -errno;
	if (r == 0)
		return 0;
	crypto_msg(err, errlen, "cannot write %s: %s", path, strerror(-r));
	unlink(target);
	return r;
}

/* mkdir -p with mode 0755 for the missing parts. */
static int pki_mkdirs(const char *dir, char *err, size_t errlen)
{
	char buf[PATH_MAX];
	struct stat st;
	size_t len = strlen(dir), i;
	int r;

	if (len == 0 || len >= sizeof(buf)) {
		crypto_msg(err, errlen, "directory name \"%.200s\" is empty or too long", dir);
		return -EINVAL;
	}
	memcpy(buf, dir, len + 1);
	for (i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
			r = -errno;
			crypto_msg(err, errlen, "cannot create directory %s: %s", buf, strerror(-r));
			return r;
		}
		if (i < len)
			buf[i] = '/';
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		crypto_msg(err, errlen, "%s is not a directory", dir);
		return -ENOTDIR;
	}
	return 0;
}

/* CN and O: 1..64 bytes without control characters. */
static bool pki_name_ok(const char *s)
{
	size_t n;

	if (!s)
		return false;
	n = strnlen(s, PKI_MAX_NAME + 1);
	if (n == 0 || n > PKI_MAX_NAME)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* LDH labels, dots, and '*' for a wildcard label. */
static bool pki_dns_ok(const char *s)
{
	size_t n = strnlen(s, PKI_MAX_DNS + 1), i;

	if (n == 0 || n > PKI_MAX_DNS || s[0] == '.' || s[0] == '-')
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
		      c == '.' || c == '*'))
			return false;
	}
	return true;
}

static int pki_random_serial(gnutls_x509_crt_t crt)
{
	unsigned char serial[PKI_SERIAL_LEN];
	int r;

	r = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
	if (r < 0)
		return r;
	/* positive (top bit clear) and never zero or shortened by DER */
	serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
	return gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
}

static int pki_genkey(gnutls_x509_privkey_t *key)
{
	int r;

	r = gnutls_x509_privkey_init(key);
	if (r < 0)
		return r;
	return gnutls_x509_privkey_generate2(*key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1),
					     0, NULL, 0);
}

/* Version, serial, times, subject and public key common to every certificate. */
static int pki_crt_base(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key, const char *cn, const char *org,
			time_t from, time_t until)
{
	unsigned char id[64];
	size_t idlen = sizeof(id);
	int r;

	if ((r = gnutls_x509_crt_set_version(crt, 3)) < 0 || (r = pki_random_serial(crt)) < 0 ||
	    (r = gnutls_x509_crt_set_activation_time(crt, from)) < 0 ||
	    (r = gnutls_x509_crt_set_expiration_time(crt, until)) < 0)
		return r;
	/* O before CN: RFC 4514 text then reads "CN=...,O=..." */
	if (org && (r = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_ORGANIZATION_NAME, 0, org,
						       (unsigned int)strlen(org))) < 0)
		return r;
	if ((r = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn,
						(unsigned int)strlen(cn))) < 0 ||
	    (r = gnutls_x509_crt_set_key(crt, key)) < 0 ||
	    (r = gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA1, id, &idlen)) < 0 ||
	    (r = gnutls_x509_crt_set_subject_key_id(crt, id, idlen)) < 0)
		return r;
	return 0;
}

static int pki_export(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key, gnutls_datum_t *cpem, gnutls_datum_t *kpem)
{
	int r;

	r = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, cpem);
	if (r < 0)
		return r;
	return gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, kpem);
}

static void pki_datum_free(gnutls_datum_t *d, bool secret)
{
	if (!d->data)
		return;
	if (secret)
		gnutls_memset(d->data, 0, d->size);
	gnutls_free(d->data);
	d->data = NULL;
	d->size = 0;
}

int pki_init(const char *dir, const char *cn, int days, char *err, size_t errlen)
{
	char cert_path[PATH_MAX], key_path[PATH_MAX];
	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crt_t crt = NULL;
	gnutls_datum_t cpem = { NULL, 0 }, kpem = { NULL, 0 };
	bool key_written = false;
	time_t now = time(NULL);
	int r;

	if (err && errlen)
		err[0] = '\0';
	if (!cn)
		cn = "migrelay CA";
	if (days <= 0)
		days = PKI_CA_DAYS;
	if (!dir || !*dir) {
		crypto_msg(err, errlen, "no CA directory given (use --dir DIR)");
		return -EINVAL;
	}
	if (!pki_name_ok(cn)) {
		crypto_msg(err, errlen, "CA name \"%.80s\" must be 1 to %d characters without control characters", cn,
			PKI_MAX_NAME);
		return -EINVAL;
	}
	if (days > PKI_MAX_DAYS) {
		crypto_msg(err, errlen, "--days %d is more than %d (100 years)", days, PKI_MAX_DAYS);
		return -EINVAL;
	}
	if ((r = pki_path(cert_path, sizeof(cert_path), dir, "ca-cert.pem", err, errlen)) < 0 ||
	    (r = pki_path(key_path, sizeof(key_path), dir, "ca-key.pem", err, errlen)) < 0)
		return r;
	if (access(cert_path, F_OK) == 0 || access(key_path, F_OK) == 0) {
		crypto_msg(err, errlen,
			"%s already holds a CA (ca-cert.pem or ca-key.pem); refusing to overwrite it (pick another --dir, or remove the old CA and every certificate it issued)",
			dir);
		return -EEXIST;
	}
	if ((r = pki_mkdirs(dir, err, errlen)) < 0)
		return r;

	if ((r = pki_genkey(&key)) < 0 || (r = gnutls_x509_crt_init(&crt)) < 0 ||
	    (r = pki_crt_base(crt, key, cn, NULL, now - PKI_BACKDATE, now + (time_t)days * PKI_DAY)) < 0 ||
	    (r = gnutls_x509_crt_set_basic_constraints(crt, 1, -1)) < 0 ||
	    (r = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN)) < 0 ||
	    (r = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) < 0 ||
	    (r = pki_export(crt, key, &cpem, &kpem)) < 0) {
		crypto_msg(err, errlen, "cannot create the CA certificate: %s", gnutls_strerror(r));
		r = pki_errno(r);
		goto out;
	}
	/* O_EXCL on both: a CA created concurrently is never overwritten */
	if ((r = pki_write(key_path, &kpem, 0600, true, err, errlen)) < 0)
		goto out;
	key_written = true;
	if ((r = pki_write(cert_path, &cpem, 0644, true, err, errlen)) < 0)
		goto out;
	r = 0;
out:
	if (r < 0 && key_written)
		unlink(key_path);
	pki_datum_free(&kpem, true);
	pki_datum_free(&cpem, false);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	if (key)
		gnutls_x509_privkey_deinit(key);
	return r;
}

/* Loads and checks the CA of <dir>. Returns 0 or -errno with <err> set. */
static int pki_load_ca(const char *dir, gnutls_x509_crt_t *crt, gnutls_x509_privkey_t *key, gnutls_datum_t *cpem,
		       char *err, size_t errlen)
{
	static const char hint[] = " (create a CA with `migrelay pki init --dir DIR` and pass that DIR as --ca)";
	char path[PATH_MAX], kpath[PATH_MAX];
	gnutls_datum_t kpem = { NULL, 0 };
	unsigned char id1[64], id2[64];
	size_t l1 = sizeof(id1), l2 = sizeof(id2);
	unsigned int critical = 0;
	int r;

	if ((r = pki_path(path, sizeof(path), dir, "ca-cert.pem", err, errlen)) < 0 ||
	    (r = pki_path(kpath, sizeof(kpath), dir, "ca-key.pem", err, errlen)) < 0 ||
	    (r = pki_read(path, cpem, hint, err, errlen)) < 0 || (r = pki_read(kpath, &kpem, hint, err, errlen)) < 0)
		goto out;
	if ((r = gnutls_x509_crt_init(crt)) < 0 || (r = gnutls_x509_crt_import(*crt, cpem, GNUTLS_X509_FMT_PEM)) < 0) {
		crypto_msg(err, errlen, "%s holds no usable certificate: %s", path, gnutls_strerror(r));
		r = pki_errno(r);
		goto out;
	}
	if ((r = gnutls_x509_privkey_init(key)) < 0 ||
	    (r = gnutls_x509_privkey_import2(*key, &kpem, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN)) < 0) {
		crypto_msg(err, errlen, "%s holds no usable unencrypted private key: %s", kpath, gnutls_strerror(r));
		r = pki_errno(r);
		goto out;
	}
	if (gnutls_x509_crt_get_ca_status(*crt, &critical) <= 0) {
		crypto_msg(err, errlen, "%s is not a CA certificate (basicConstraints CA:TRUE is missing)", path);
		r = -EBADMSG;
		goto out;
	}
	if (gnutls_x509_crt_get_key_id(*crt, 0, id1, &l1) < 0 ||
	    gnutls_x509_privkey_get_key_id(*key, 0, id2, &l2) < 0 || l1 != l2 || memcmp(id1, id2, l1)) {
		crypto_msg(err, errlen, "%s does not belong to %s (both must come from the same `migrelay pki init`)", kpath,
			path);
		r = -EBADMSG;
		goto out;
	}
	r = 0;
out:
	pki_datum_free(&kpem, true);
	return r;
}

/*
 * Copies the CA certificate next to the leaf unless the same certificate
 * is there already. Another CA's certificate is not replaced: other
 * credentials in that directory may depend on it.
 */
static int pki_copy_ca(const char *out_dir, const gnutls_datum_t *cpem, bool check_only, char *err, size_t errlen)
{
	char path[PATH_MAX];
	gnutls_datum_t have = { NULL, 0 };
	int r;

	if ((r = pki_path(path, sizeof(path), out_dir, "ca-cert.pem", err, errlen)) < 0)
		return r;
	if (access(path, F_OK) == 0) {
		r = pki_read(path, &have, "", err, errlen);
		if (r < 0)
			return r;
		r = 0;
		if (have.size != cpem->size || memcmp(have.data, cpem->data, cpem->size)) {
			crypto_msg(err, errlen,
				"%s holds another CA's certificate; refusing to replace it (pick another --out directory or remove that file)",
				path);
			r = -EEXIST;
		}
		pki_datum_free(&have, false);
		return r;
	}
	if (check_only)
		return 0;
	return pki_write(path, cpem, 0644, false, err, errlen);
}

static int pki_add_sans(gnutls_x509_crt_t crt, const struct pki_issue_opts *o, char *err, size_t errlen)
{
	unsigned char addr[16];
	size_t i;
	int r;

	for (i = 0; i < 8 && o->dns[i]; i++) {
		r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, o->dns[i],
							 (unsigned int)strlen(o->dns[i]), GNUTLS_FSAN_APPEND);
		if (r < 0)
			goto fail;
	}
	for (i = 0; i < 8 && o->ip[i]; i++) {
		unsigned int len = 16;

		if (inet_pton(AF_INET, o->ip[i], addr) == 1)
			len = 4;
		else if (inet_pton(AF_INET6, o->ip[i], addr) != 1)
			return -EINVAL; /* checked by the caller already */
		r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, addr, len, GNUTLS_FSAN_APPEND);
		if (r < 0)
			goto fail;
	}
	/* a server certificate without a SAN would match no host name */
	if (o->server && !o->dns[0] && !o->ip[0]) {
		r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, o->cn, (unsigned int)strlen(o->cn),
							 GNUTLS_FSAN_APPEND);
		if (r < 0)
			goto fail;
	}
	return 0;
fail:
	crypto_msg(err, errlen, "cannot add a subject alternative name: %s", gnutls_strerror(r));
	return pki_errno(r);
}

static int pki_check_opts(const struct pki_issue_opts *o, char *err, size_t errlen)
{
	unsigned char addr[16];
	size_t i;

	if (!o->ca_dir || !*o->ca_dir || !o->out_dir || !*o->out_dir) {
		crypto_msg(err, errlen, "both the CA directory (--ca) and the output directory (--out) are needed");
		return -EINVAL;
	}
	if (!pki_name_ok(o->cn)) {
		crypto_msg(err, errlen, "--cn \"%.80s\" must be 1 to %d characters without control characters",
			o->cn ? o->cn : "", PKI_MAX_NAME);
		return -EINVAL;
	}
	if (o->org && !pki_name_ok(o->org)) {
		crypto_msg(err, errlen, "--org \"%.80s\" must be 1 to %d characters without control characters", o->org,
			PKI_MAX_NAME);
		return -EINVAL;
	}
	if (o->days < 0 || o->days > PKI_MAX_DAYS) {
		crypto_msg(err, errlen, "--days %d must be between 1 and %d", o->days, PKI_MAX_DAYS);
		return -EINVAL;
	}
	for (i = 0; i < 8 && o->dns[i]; i++) {
		if (!pki_dns_ok(o->dns[i])) {
			crypto_msg(err, errlen, "--dns \"%.80s\" is not a DNS name (letters, digits, '-', '.', '*')",
				o->dns[i]);
			return -EINVAL;
		}
	}
	for (i = 0; i < 8 && o->ip[i]; i++) {
		if (inet_pton(AF_INET, o->ip[i], addr) != 1 && inet_pton(AF_INET6, o->ip[i], addr) != 1) {
			crypto_msg(err, errlen, "--ip \"%.80s\" is not an IPv4 or IPv6 address (no brackets, no port)",
				o->ip[i]);
			return -EINVAL;
		}
	}
	if (o->server && !o->dns[0] && !o->ip[0] && !pki_dns_ok(o->cn)) {
		crypto_msg(err, errlen,
			"a server certificate needs a host name: give --dns NAME or --ip ADDR (the CN \"%.80s\" is not a DNS name)",
			o->cn);
		return -EINVAL;
	}
	return 0;
}

int pki_issue(const struct pki_issue_opts *o, char *err, size_t errlen)
{
	const char *base = o && o->server ? "server" : "client";
	char cert_path[PATH_MAX], key_path[PATH_MAX], name[32];
	gnutls_x509_crt_t ca = NULL, crt = NULL;
	gnutls_x509_privkey_t ca_key = NULL, key = NULL;
	gnutls_datum_t ca_pem = { NULL, 0 }, cpem = { NULL, 0 }, kpem = { NULL, 0 };
	unsigned char id[64];
	size_t idlen = sizeof(id);
	time_t now = time(NULL), from, until;
	int r;

	if (err && errlen)
		err[0] = '\0';
	if (!o) {
		crypto_msg(err, errlen, "no options");
		return -EINVAL;
	}
	if ((r = pki_check_opts(o, err, errlen)) < 0)
		return r;
	if (o->expired) {
		from = now - 30 * PKI_DAY;
		until = now - PKI_DAY;
	} else {
		from = now - PKI_BACKDATE;
		until = now + (time_t)(o->days > 0 ? o->days : PKI_LEAF_DAYS) * PKI_DAY;
	}
	snprintf(name, sizeof(name), "%s-cert.pem", base);
	if ((r = pki_path(cert_path, sizeof(cert_path), o->out_dir, name, err, errlen)) < 0)
		return r;
	snprintf(name, sizeof(name), "%s-key.pem", base);
	if ((r = pki_path(key_path, sizeof(key_path), o->out_dir, name, err, errlen)) < 0)
		return r;

	if ((r = pki_load_ca(o->ca_dir, &ca, &ca_key, &ca_pem, err, errlen)) < 0)
		goto out;
	if ((r = pki_mkdirs(o->out_dir, err, errlen)) < 0 ||
	    (r = pki_copy_ca(o->out_dir, &ca_pem, true, err, errlen)) < 0)
		goto out;

	if ((r = pki_genkey(&key)) < 0 || (r = gnutls_x509_crt_init(&crt)) < 0 ||
	    (r = pki_crt_base(crt, key, o->cn, o->org, from, until)) < 0 ||
	    (r = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
	    /* keyEncipherment is meaningless for ECDSA but QEMU insists on it */
	    (r = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_ENCIPHERMENT)) < 0 ||
	    (r = gnutls_x509_crt_set_key_purpose_oid(
		     crt, o->server ? GNUTLS_KP_TLS_WWW_SERVER : GNUTLS_KP_TLS_WWW_CLIENT, 0)) < 0 ||
	    (r = gnutls_x509_crt_get_subject_key_id(ca, id, &idlen, NULL)) < 0 ||
	    (r = gnutls_x509_crt_set_authority_key_id(crt, id, idlen)) < 0) {
		crypto_msg(err, errlen, "cannot create the %s certificate: %s", base, gnutls_strerror(r));
		r = pki_errno(r);
		goto out;
	}
	if ((r = pki_add_sans(crt, o, err, errlen)) < 0)
		goto out;
	if ((r = gnutls_x509_crt_sign2(crt, ca, ca_key, GNUTLS_DIG_SHA256, 0)) < 0 ||
	    (r = pki_export(crt, key, &cpem, &kpem)) < 0) {
		crypto_msg(err, errlen, "cannot sign the %s certificate with the CA in %s: %s", base, o->ca_dir,
			gnutls_strerror(r));
		r = pki_errno(r);
		goto out;
	}
	if ((r = pki_write(key_path, &kpem, 0600, false, err, errlen)) < 0 ||
	    (r = pki_write(cert_path, &cpem, 0644, false, err, errlen)) < 0 ||
	    (r = pki_copy_ca(o->out_dir, &ca_pem, false, err, errlen)) < 0)
		goto out;
	r = 0;
out:
	pki_datum_free(&kpem, true);
	pki_datum_free(&cpem, false);
	pki_datum_free(&ca_pem, false);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	if (key)
		gnutls_x509_privkey_deinit(key);
	if (ca)
		gnutls_x509_crt_deinit(ca);
	if (ca_key)
		gnutls_x509_privkey_deinit(ca_key);
	return r;
}

/* Copies the entries of the CRL in <pem> (the one being replaced) into <crl>. */
static int pki_crl_keep(gnutls_x509_crl_t crl, const gnutls_datum_t *pem, const char *path, char *err, size_t errlen)
{
	gnutls_x509_crl_t old = NULL;
	unsigned char serial[64];
	size_t len;
	time_t when;
	int r, n, i;

	if ((r = gnutls_x509_crl_init(&old)) < 0 || (r = gnutls_x509_crl_import(old, pem, GNUTLS_X509_FMT_PEM)) < 0) {
		crypto_msg(err, errlen, "%s holds no usable CRL: %s (remove it to start a new one)", path, gnutls_strerror(r));
		r = -EBADMSG;
		goto out;
	}
	n = gnutls_x509_crl_get_crt_count(old);
	for (i = 0; i < n; i++) {
		len = sizeof(serial);
		if ((r = gnutls_x509_crl_get_crt_serial(old, i, serial, &len, &when)) < 0 ||
		    (r = gnutls_x509_crl_set_crt_serial(crl, serial, len, when)) < 0) {
			crypto_msg(err, errlen, "cannot copy entry %d of %s: %s", i, path, gnutls_strerror(r));
			r = pki_errno(r);
			goto out;
		}
	}
	r = 0;
out:
	if (old)
		gnutls_x509_crl_deinit(old);
	return r;
}

int pki_revoke(const char *ca_dir, const char *cert_path, const char *crl_path, char *err, size_t errlen)
{
	char def[PATH_MAX];
	gnutls_x509_crt_t ca = NULL, crt = NULL;
	gnutls_x509_privkey_t ca_key = NULL;
	gnutls_x509_crl_t crl = NULL;
	gnutls_datum_t ca_pem = { NULL, 0 }, cpem = { NULL, 0 }, old = { NULL, 0 }, out_pem = { NULL, 0 };
	unsigned char id[64];
	size_t idlen = sizeof(id);
	time_t now = time(NULL);
	int r;

	if (err && errlen)
		err[0] = '\0';
	if (!ca_dir || !cert_path) {
		crypto_msg(err, errlen, "both the CA directory and the certificate to revoke must be given");
		return -EINVAL;
	}
	if (!crl_path) {
		if ((r = pki_path(def, sizeof(def), ca_dir, "ca-crl.pem", err, errlen)) < 0)
			return r;
		crl_path = def;
	}
	if ((r = pki_load_ca(ca_dir, &ca, &ca_key, &ca_pem, err, errlen)) < 0 ||
	    (r = pki_read(cert_path, &cpem, " (name the PEM certificate to revoke)", err, errlen)) < 0)
		goto out;
	if ((r = gnutls_x509_crt_init(&crt)) < 0 || (r = gnutls_x509_crt_import(crt, &cpem, GNUTLS_X509_FMT_PEM)) < 0) {
		crypto_msg(err, errlen, "%s holds no usable certificate: %s", cert_path, gnutls_strerror(r));
		r = pki_errno(r);
		goto out;
	}
	if (gnutls_x509_crt_check_issuer(crt, ca) != 1) {
		crypto_msg(err, errlen, "%s was not issued by the CA in %s: its CRL cannot revoke it", cert_path, ca_dir);
		r = -EINVAL;
		goto out;
	}
	if ((r = gnutls_x509_crl_init(&crl)) < 0) {
		r = pki_errno(r);
		goto out;
	}
	/* a CRL already there keeps its entries: revocations accumulate */
	if (access(crl_path, F_OK) == 0 &&
	    ((r = pki_read(crl_path, &old, "", err, errlen)) < 0 || (r = pki_crl_keep(crl, &old, crl_path, err, errlen)) < 0))
		goto out;
	if ((r = gnutls_x509_crl_set_version(crl, 2)) < 0 || (r = gnutls_x509_crl_set_crt(crl, crt, now)) < 0 ||
	    (r = gnutls_x509_crl_set_this_update(crl, now - PKI_BACKDATE)) < 0 ||
	    (r = gnutls_x509_crl_set_next_update(crl, now + (time_t)PKI_CRL_DAYS * PKI_DAY)) < 0 ||
	    (r = gnutls_x509_crt_get_subject_key_id(ca, id, &idlen, NULL)) < 0 ||
	    (r = gnutls_x509_crl_set_authority_key_id(crl, id, idlen)) < 0 ||
	    (r = gnutls_x509_crl_sign2(crl, ca, ca_key, GNUTLS_DIG_SHA256, 0)) < 0 ||
	    (r = gnutls_x509_crl_export2(crl, GNUTLS_X509_FMT_PEM, &out_pem)) < 0) {
		crypto_msg(err, errlen, "cannot make the CRL with the CA in %s: %s", ca_dir, gnutls_strerror(r));
		r = pki_errno(r);
		goto out;
	}
	r = pki_write(crl_path, &out_pem, 0644, false, err, errlen);
out:
	pki_datum_free(&out_pem, false);
	pki_datum_free(&old, false);
	pki_datum_free(&cpem, false);
	pki_datum_free(&ca_pem, false);
	if (crl)
		gnutls_x509_crl_deinit(crl);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	if (ca)
		gnutls_x509_crt_deinit(ca);
	if (ca_key)
		gnutls_x509_privkey_deinit(ca_key);
	return r;
}
