/* SPDX-License-Identifier: MIT */
/*
 * TLS credentials: x509 from a QEMU tls-creds-x509 directory, PSK from a
 * QEMU keys.psk file. One cfg serves any number of sessions and threads.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "msg.h"
#include "tls_int.h"

/* Opens and closes <path> so that a missing or unreadable file gets its own errno text. */
static int tls_check_file(const char *path, const char *hint, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int r;

	if (fd < 0) {
		r = -errno;
		crypto_msg(err, errlen, "cannot read %s: %s%s", path, strerror(-r), hint);
		return r;
	}
	close(fd);
	return 0;
}

static int tls_cfg_new(struct mr_tls_cfg **out, const char *src, bool server, bool psk, char *err, size_t errlen)
{
	struct mr_tls_cfg *c;
	const char *errpos = NULL;
	int r;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->src = strdup(src))) {
		free(c);
		crypto_msg(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->server = server;
	c->psk = psk;
	r = gnutls_priority_init(&c->prio, psk ? TLS_PRIO_PSK : TLS_PRIO_X509, &errpos);
	if (r < 0) {
		c->prio = NULL;
		crypto_msg(err, errlen, "this GnuTLS does not accept our TLS 1.3 settings: %s", gnutls_strerror(r));
		mr_tls_cfg_free(c);
		return -ENOTSUP;
	}
	*out = c;
	return 0;
}

static int tls_path(char *out, size_t outlen, const char *dir, const char *name, char *err, size_t errlen)
{
	int n = snprintf(out, outlen, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= outlen) {
		crypto_msg(err, errlen, "path %.200s/%s is too long", dir, name);
		return -ENAMETOOLONG;
	}
	return 0;
}

/*
 * x509 credentials from explicit files. <src> names the source in messages
 * (the directory, or the CA file). f->cert/f->key may be NULL only when
 * <with_cert> is false (mr_tls_cfg_x509_nocert); f->crl may be NULL.
 */
static int tls_cfg_x509_files(struct mr_tls_cfg **out, const char *src, const struct mr_tls_files *f, bool server,
			      bool with_cert, const char *hint, char *err, size_t errlen)
{
	struct mr_tls_cfg *c = NULL;
	int r;

	if ((r = tls_check_file(f->ca, hint, err, errlen)) < 0)
		return r;
	if (with_cert &&
	    ((r = tls_check_file(f->cert, hint, err, errlen)) < 0 || (r = tls_check_file(f->key, hint, err, errlen)) < 0))
		return r;
	if (f->crl && (r = tls_check_file(f->crl, " (a CRL is a PEM file from `certtool --generate-crl`)", err, errlen)) < 0)
		return r;
	if ((r = tls_cfg_new(&c, src, server, false, err, errlen)) < 0)
		return r;
	if (!(c->ca_path = strdup(f->ca)) || (f->crl && !(c->crl_path = strdup(f->crl)))) {
		crypto_msg(err, errlen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	r = gnutls_certificate_allocate_credentials(&c->x509);
	if (r < 0) {
		c->x509 = NULL;
		crypto_msg(err, errlen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	r = gnutls_certificate_set_x509_trust_file(c->x509, f->ca, GNUTLS_X509_FMT_PEM);
	if (r <= 0) {
		crypto_msg(err, errlen, "%s holds no usable CA certificate%s%s (it must be the PEM ca-cert.pem of `migrelay pki init`)",
			f->ca, r < 0 ? ": " : "", r < 0 ? gnutls_strerror(r) : "");
		r = -EINVAL;
		goto out;
	}
	if (f->crl) {
		/* QEMU reads ca-crl.pem the same way: every certificate it lists is refused */
		r = gnutls_certificate_set_x509_crl_file(c->x509, f->crl, GNUTLS_X509_FMT_PEM);
		if (r < 0) {
			crypto_msg(err, errlen, "%s holds no usable CRL: %s (it must be a PEM CRL signed by the CA of %s)",
				f->crl, gnutls_strerror(r), f->ca);
			r = -EINVAL;
			goto out;
		}
	}
	if (with_cert) {
		r = gnutls_certificate_set_x509_key_file2(c->x509, f->cert, f->key, GNUTLS_X509_FMT_PEM, NULL, 0);
		if (r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
			crypto_msg(err, errlen, "%s is not the key of %s (issue both again with `migrelay pki issue %s`)",
				f->key, f->cert, server ? "server" : "client");
			r = -EINVAL;
			goto out;
		}
		if (r < 0) {
			crypto_msg(err, errlen, "cannot load %s with %s: %s (they must be an unencrypted PEM pair%s)",
				f->cert, f->key, gnutls_strerror(r), hint);
			r = -EINVAL;
			goto out;
		}
	}
	*out = c;
	c = NULL;
	r = 0;
out:
	mr_tls_cfg_free(c);
	return r;
}

/* <with_cert>: false only for mr_tls_cfg_x509_nocert. */
static int tls_cfg_x509(struct mr_tls_cfg **out, const char *dir, bool server, bool with_cert, char *err,
			size_t errlen)
{
	const char *role = server ? "server" : "client";
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], crl[PATH_MAX], name[32], hint[160];
	struct mr_tls_files f = { ca, cert, key, NULL };
	int r;

	if (err && errlen)
		err[0] = '\0';
	if (!out || !dir || !*dir) {
		crypto_msg(err, errlen, "no TLS directory given");
		return -EINVAL;
	}
	*out = NULL;
	snprintf(hint, sizeof(hint), " (a %s needs ca-cert.pem, %s-cert.pem and %s-key.pem from `migrelay pki issue %s`)",
		 role, role, role, role);
	if ((r = tls_path(ca, sizeof(ca), dir, "ca-cert.pem", err, errlen)) < 0)
		return r;
	snprintf(name, sizeof(name), "%s-cert.pem", role);
	if ((r = tls_path(cert, sizeof(cert), dir, name, err, errlen)) < 0)
		return r;
	snprintf(name, sizeof(name), "%s-key.pem", role);
	if ((r = tls_path(key, sizeof(key), dir, name, err, errlen)) < 0)
		return r;
	if ((r = tls_path(crl, sizeof(crl), dir, "ca-crl.pem", err, errlen)) < 0)
		return r;
	/* the CRL is optional in QEMU's layout; when it is there it is used */
	if (access(crl, F_OK) == 0)
		f.crl = crl;
	return tls_cfg_x509_files(out, dir, &f, server, with_cert, hint, err, errlen);
}

int mr_tls_cfg_x509_files(struct mr_tls_cfg **out, const struct mr_tls_files *f, bool server, char *err,
			  size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!out || !f || !f->ca || !f->cert || !f->key || !*f->ca || !*f->cert || !*f->key) {
		crypto_msg(err, errlen, "the CA, certificate and key files must all be given (--ca, --cert, --key)");
		return -EINVAL;
	}
	*out = NULL;
	return tls_cfg_x509_files(out, f->ca, f, server, true, " (--ca, --cert and --key name PEM files)", err, errlen);
}

int mr_tls_cfg_x509(struct mr_tls_cfg **out, const char *dir, bool server, char *err, size_t errlen)
{
	return tls_cfg_x509(out, dir, server, true, err, errlen);
}

int mr_tls_cfg_x509_nocert(struct mr_tls_cfg **out, const char *dir, char *err, size_t errlen)
{
	return tls_cfg_x509(out, dir, false, false, err, errlen);
}

/* Reads keys.psk into a malloc'd NUL-terminated buffer; *len gets its size. */
static int tls_read_psk_file(const char *file, char **buf, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	size_t off = 0;
	ssize_t n;
	char *b = NULL;
	int fd, r;

	*buf = NULL;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		crypto_msg(err, errlen, "cannot read %s: %s (a PSK file holds lines identity:hexkey, as QEMU's keys.psk)",
			file, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > TLS_MAX_PSK_FILE) {
		crypto_msg(err, errlen, "%s is not a regular file of at most %d bytes", file, TLS_MAX_PSK_FILE);
		r = -EINVAL;
		goto out;
	}
	b = malloc((size_t)st.st_size + 1);
	if (!b) {
		crypto_msg(err, errlen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	while (off < (size_t)st.st_size) {
		n = read(fd, b + off, (size_t)st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			crypto_msg(err, errlen, "cannot read %s: %s", file, strerror(-r));
			goto out;
		}
		if (n == 0)
			break; /* shrank under us: parse what is there */
		off += (size_t)n;
	}
	b[off] = '\0';
	*buf = b;
	*len = off;
	b = NULL;
	r = 0;
out:
	if (b) {
		explicit_bzero(b, (size_t)st.st_size + 1);
		free(b);
	}
	close(fd);
	return r;
}

int mr_tls_cfg_psk(struct mr_tls_cfg **out, const char *file, bool server, const char *identity, char *err,
		   size_t errlen)
{
	struct mr_tls_cfg *c = NULL;
	struct psk_file *keys = NULL;
	const struct psk_entry *e;
	unsigned char kb[PSK_MAX_KEY];
	gnutls_datum_t k = { kb, 0 };
	char *buf = NULL;
	size_t len = 0;
	int r, bad_line = 0;

	if (err && errlen)
		err[0] = '\0';
	if (!out || !file || !*file) {
		crypto_msg(err, errlen, "no PSK file given");
		return -EINVAL;
	}
	*out = NULL;
	if ((r = tls_read_psk_file(file, &buf, &len, err, errlen)) < 0)
		return r;
	keys = malloc(sizeof(*keys));
	if (!keys) {
		crypto_msg(err, errlen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	r = psk_parse(keys, buf, len, &bad_line);
	if (r < 0) {
		if (bad_line)
			crypto_msg(err, errlen,
				"%s line %d is not \"identity:hexkey\" (identity: 1 to %d characters, no ':' or control characters, not repeated; key: %d to %d bytes as hex digits; at most %d lines)",
				file, bad_line, PSK_MAX_IDENTITY, PSK_MIN_KEY, PSK_MAX_KEY, PSK_MAX_ENTRIES);
		else
			crypto_msg(err, errlen, "%s holds no \"identity:hexkey\" line", file);
		r = -EINVAL;
		goto out;
	}
	if ((r = tls_cfg_new(&c, file, server, true, err, errlen)) < 0)
		goto out;
	if (server) {
		if (gnutls_psk_allocate_server_credentials(&c->psk_srv) < 0) {
			c->psk_srv = NULL;
			crypto_msg(err, errlen, "out of memory");
			r = -ENOMEM;
			goto out;
		}
		gnutls_psk_set_server_credentials_function2(c->psk_srv, tls_psk_server_cb);
		c->keys = keys;
		keys = NULL;
	} else {
		e = identity ? psk_find(keys, identity) : &keys->e[0];
		if (!e) {
			char shown[TLS_SHOW + 8];

			tls_printable(shown, sizeof(shown), identity, strlen(identity));
			crypto_msg(err, errlen, "%s has no line for identity \"%s\" (add \"%s:hexkey\" to it, with the server's key)",
				file, shown, shown);
			r = -ENOENT;
			goto out;
		}
		c->psk_identity = strdup(e->identity);
		if (!c->psk_identity || gnutls_psk_allocate_client_credentials(&c->psk_cli) < 0) {
			c->psk_cli = NULL;
			crypto_msg(err, errlen, "out of memory");
			r = -ENOMEM;
			goto out;
		}
		memcpy(kb, e->key, e->key_len);
		k.size = (unsigned int)e->key_len;
		r = gnutls_psk_set_client_credentials(c->psk_cli, e->identity, &k, GNUTLS_PSK_KEY_RAW);
		if (r < 0) {
			crypto_msg(err, errlen, "cannot use the key of identity \"%s\" in %s: %s", e->identity, file,
				gnutls_strerror(r));
			r = -EINVAL;
			goto out;
		}
	}
	*out = c;
	c = NULL;
	r = 0;
out:
	explicit_bzero(kb, sizeof(kb));
	if (buf) {
		explicit_bzero(buf, len);
		free(buf);
	}
	if (keys) {
		explicit_bzero(keys, sizeof(*keys));
		free(keys);
	}
	mr_tls_cfg_free(c);
	return r;
}

void mr_tls_cfg_free(struct mr_tls_cfg *c)
{
	if (!c)
		return;
	if (c->x509)
		gnutls_certificate_free_credentials(c->x509);
	if (c->psk_srv)
		gnutls_psk_free_server_credentials(c->psk_srv);
	if (c->psk_cli)
		gnutls_psk_free_client_credentials(c->psk_cli);
	if (c->prio)
		gnutls_priority_deinit(c->prio);
	if (c->keys) {
		explicit_bzero(c->keys, sizeof(*c->keys));
		free(c->keys);
	}
	free(c->psk_identity);
	free(c->src);
	free(c->ca_path);
	free(c->crl_path);
	free(c);
}
