/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 sessions over GnuTLS for the control path and the handshake of
 * every connection. GnuTLS error codes and alerts are turned into
 * enum mr_tls_fail and one sentence for the user here and nowhere else.
 *
 * Certificates are checked by our own verify callback during the
 * handshake, so that a failure can be named precisely and answered with
 * the matching alert; GnuTLS itself sends no alert when a handshake fails,
 * so we send one after it returns.
 *
 * After the handshake the data path leaves GnuTLS's record layer: the
 * traffic keys go to kernel TLS or to crypto/record.c, which seals records
 * from the caller's buffer into sbuf and opens them in rbuf or straight
 * into the caller's buffer (tls_records_start, tls_rec_send,
 * tls_rec_recv). GnuTLS's record layer remains the fallback.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/tls.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "msg.h"
#include "psk.h"
#include "record.h"

/*
 * TLS 1.3 only. For PSK only the key exchanges that add (EC)DHE, so a
 * leaked keys.psk does not open recorded traffic (forward secrecy).
 */
/*
 * AES-128-GCM first: TLS 1.3's mandatory suite, the cheapest per byte with
 * AES instructions (10 rounds against AES-256's 14), and with PSK the only
 * AES suite GnuTLS can use (its external PSKs are tied to SHA-256), where
 * NORMAL's order would otherwise pick ChaCha20-Poly1305 at several times
 * the CPU cost. The other two stay allowed.
 */
#define TLS_CIPHERS "-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"
#define TLS_PRIO_X509 "NORMAL:-VERS-ALL:+VERS-TLS1.3:" TLS_CIPHERS
#define TLS_PRIO_PSK "NORMAL:-VERS-ALL:+VERS-TLS1.3:" TLS_CIPHERS ":-KX-ALL:+ECDHE-PSK:+DHE-PSK"

enum {
	TLS_MSG_LEN = 512,             /* bytes of a session's error text */
	TLS_DEFAULT_TIMEOUT_MS = 30000, /* handshake limit when the caller gives none */
	TLS_HEAD_LEN = 16,             /* first peer bytes kept to recognise non-TLS peers */
	TLS_MAX_DN = 4096,             /* longest subject DN we accept as an identity */
	TLS_MAX_PSK_FILE = 1 << 20,    /* a keys.psk larger than this is a mistake */
	TLS_SHOW = 96,                 /* peer-supplied text shown in messages, bytes */
};

enum tls_last { TLS_LAST_NONE = 0, TLS_LAST_SEND = 1, TLS_LAST_RECV = 2 };

/* Which record layer carries a session's data after its handshake. */
enum tls_engine {
	TLS_ENG_GNUTLS = 0,  /* gnutls_record_send/recv through sbuf/rbuf (fallback, comparisons) */
	TLS_ENG_INPLACE = 1, /* our own records (record.c), sealed into sbuf, opened in rbuf */
	TLS_ENG_KTLS = 2,    /* the kernel seals and opens; send/recv go to the socket */
};

struct mr_tls_cfg {
	bool server;
	bool psk;
	char *src;                             /* directory or keys.psk path, for messages */
	gnutls_priority_t prio;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_server_credentials_t psk_srv;
	gnutls_psk_client_credentials_t psk_cli;
	struct psk_file *keys;                 /* PSK server: accepted identities */
	char *psk_identity;                    /* PSK client: our identity */
};

struct mr_tls {
	gnutls_session_t s;
	const struct mr_tls_cfg *cfg;
	int fd;
	char *identity;

	/* Handshake only (one thread): callbacks leave their verdict here. */
	char *peer_name;
	int timeout_ms;
	enum mr_tls_fail cb_fail;
	int cb_alert; /* alert to send for cb_fail, or -1 */
	char cb_msg[TLS_MSG_LEN];
	bool psk_seen, psk_known;
	char psk_id[TLS_SHOW + 8];
	bool capturing;
	unsigned char head[TLS_HEAD_LEN];
	size_t head_len;

	/*
	 * After the handshake the socket is read through rbuf and written
	 * through sbuf: GnuTLS reads each record in two recv() calls and
	 * writes each 16 KiB record with its own send(), and system calls are
	 * what a migration stream pays for most on a virtual machine.
	 */
	bool buffered;
	/* Receiving thread only. */
	unsigned char *rbuf;
	size_t rpos, rlen;
	int pull_errno;
	char recv_err[TLS_MSG_LEN];
	/* Sending thread only. */
	unsigned char *sbuf;
	size_t slen;
	int push_errno;
	char send_err[TLS_MSG_LEN];
	/* Which of the two texts is newer; read by any thread. */
	atomic_int last;

	/*
	 * Record layer, chosen once at the end of the handshake; <plain> is
	 * set by mr_tls_set_plaintext while neither thread is in send/recv.
	 */
	enum tls_engine engine;
	bool ktls_tx, ktls_rx;  /* kernel TLS per direction (TX can succeed while RX fails) */
	bool plain;
	char ktls_why[TLS_MSG_LEN]; /* why kernel TLS is not used, "" if it is */
	struct mr_rec tx;       /* sending thread */
	struct mr_rec rx;       /* receiving thread */
	size_t plen;            /* receiving thread: opened content not yet returned ... */
	unsigned char *pp;      /* ... at pp (in rbuf or in the provided buffer uwin) */

	/*
	 * Another transport for the in-place records (mr_tls_set_tx/rx; the
	 * gateway plugs in stream/uring): records sealed into the buffers it
	 * hands out, and opened where it received them. rbuf then holds only
	 * bytes received before, and a record that straddles two provided
	 * buffers, assembled (the only bytes copied).
	 */
	const struct mr_tls_tx_ops *txo; /* sending thread */
	void *txc;
	unsigned char *tbuf;             /* transport buffer being filled; slen bytes in it so far */
	size_t tcap;
	const struct mr_tls_rx_ops *rxo; /* receiving thread */
	void *rxc;
	int rx_timeout_ms; /* SO_RCVTIMEO when the receive transport was attached; -1: none */
	int pipe[2];                     /* sending thread, plaintext mode: vmsplice/splice pipe, -1 until needed */
	unsigned char *uwin;             /* provided buffer being parsed: [uoff, ulen) unread */
	size_t uoff, ulen;
	unsigned ubid;
	bool rx_closed;         /* receiving thread: close_notify seen */
};


/*
 * Copies at most TLS_SHOW bytes of peer-supplied <p> into <dst> with
 * anything outside printable ASCII (and '"' and '\\') shown as \xNN, so a
 * peer cannot forge log lines or hide text in messages.
 */
static void tls_printable(char *dst, size_t dstlen, const void *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = p;
	size_t o = 0, i;

	if (dstlen == 0)
		return;
	for (i = 0; i < n && i < TLS_SHOW; i++) {
		unsigned char c = s[i];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			if (o + 1 >= dstlen)
				break;
			dst[o++] = (char)c;
		} else {
			if (o + 4 >= dstlen)
				break;
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	if (i < n && o + 3 < dstlen) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
}

static const char *tls_peer_role(const struct mr_tls *t)
{
	return t->cfg->server ? "client" : "server";
}

/* ---- credentials ---- */

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

/* <with_cert>: false only for mr_tls_cfg_x509_nocert. */
static int tls_cfg_x509(struct mr_tls_cfg **out, const char *dir, bool server, bool with_cert, char *err,
			size_t errlen)
{
	const char *role = server ? "server" : "client";
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], name[32], hint[160];
	struct mr_tls_cfg *c = NULL;
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
	if ((r = tls_check_file(ca, hint, err, errlen)) < 0)
		return r;
	if (with_cert &&
	    ((r = tls_check_file(cert, hint, err, errlen)) < 0 || (r = tls_check_file(key, hint, err, errlen)) < 0))
		return r;

	if ((r = tls_cfg_new(&c, dir, server, false, err, errlen)) < 0)
		return r;
	r = gnutls_certificate_allocate_credentials(&c->x509);
	if (r < 0) {
		c->x509 = NULL;
		crypto_msg(err, errlen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	r = gnutls_certificate_set_x509_trust_file(c->x509, ca, GNUTLS_X509_FMT_PEM);
	if (r <= 0) {
		crypto_msg(err, errlen, "%s holds no usable CA certificate%s%s (it must be the PEM ca-cert.pem of `migrelay pki init`)",
			ca, r < 0 ? ": " : "", r < 0 ? gnutls_strerror(r) : "");
		r = -EINVAL;
		goto out;
	}
	if (with_cert) {
		r = gnutls_certificate_set_x509_key_file2(c->x509, cert, key, GNUTLS_X509_FMT_PEM, NULL, 0);
		if (r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
			crypto_msg(err, errlen, "%s is not the key of %s (issue both again with `migrelay pki issue %s`)", key,
				cert, role);
			r = -EINVAL;
			goto out;
		}
		if (r < 0) {
			crypto_msg(err, errlen, "cannot load %s with %s: %s (they must be an unencrypted PEM pair%s)", cert,
				key, gnutls_strerror(r), hint);
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

static int tls_psk_server_cb(gnutls_session_t s, const gnutls_datum_t *user, gnutls_datum_t *key);

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
	free(c);
}

/* ---- transport: our pull keeps the first bytes, pushes stay GnuTLS's ---- */

/* The first bytes of a TLS stream: a record type (20..23) and major version 3. */
static bool tls_head_is_tls(const struct mr_tls *t)
{
	if (t->head_len == 0)
		return true; /* nothing seen: not evidence either way */
	if (t->head[0] < 0x14 || t->head[0] > 0x17)
		return false;
	return t->head_len < 2 || t->head[1] == 0x03;
}

enum { TLS_RBUF = 256 << 10, TLS_SBUF = (1 << 20) + (64 << 10) };

static void tls_records_start(struct mr_tls *t);
static void tls_close_notify(struct mr_tls *t);

/* True while this thread is inside mr_tls_send: only then are records collected in sbuf. */
static __thread bool tls_in_send;

/* Sending thread. Writes out sbuf. Returns 0, or -1 with errno set. */
static int tls_flush(struct mr_tls *t)
{
	size_t off = 0;

	while (off < t->slen) {
		ssize_t n = send(t->fd, t->sbuf + off, t->slen - off, MSG_NOSIGNAL);

		if (n < 0) {
			/* EAGAIN: SO_SNDTIMEO expired; keep trying, as GnuTLS would (shutdown() ends it) */
			if (errno == EINTR || errno == EAGAIN)
				continue;
			t->push_errno = errno;
			t->slen = 0;
			return -1;
		}
		off += (size_t)n;
	}
	t->slen = 0;
	return 0;
}

static ssize_t tls_vec_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
	struct mr_tls *t = ptr;
	size_t total = 0;

	if (!t->buffered || !tls_in_send) {
		struct msghdr m = { .msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)iovcnt };

		return sendmsg(t->fd, &m, MSG_NOSIGNAL);
	}
	for (int i = 0; i < iovcnt; i++) {
		if (t->slen + iov[i].iov_len > TLS_SBUF && tls_flush(t) < 0)
			return -1;
		if (iov[i].iov_len > TLS_SBUF) {
			errno = EMSGSIZE;
			return -1;
		}
		memcpy(t->sbuf + t->slen, iov[i].iov_base, iov[i].iov_len);
		t->slen += iov[i].iov_len;
		total += iov[i].iov_len;
	}
	return (ssize_t)total;
}

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
	struct mr_tls *t = ptr;
	ssize_t n;

	if (t->buffered) {
		if (t->rpos == t->rlen && len < TLS_RBUF) {
			n = recv(t->fd, t->rbuf, TLS_RBUF, 0);
			if (n <= 0) {
				if (n < 0)
					t->pull_errno = errno;
				return n;
			}
			t->rpos = 0;
			t->rlen = (size_t)n;
		}
		if (t->rpos < t->rlen) {
			size_t k = t->rlen - t->rpos < len ? t->rlen - t->rpos : len;

			memcpy(buf, t->rbuf + t->rpos, k);
			t->rpos += k;
			return (ssize_t)k;
		}
	}
	n = recv(t->fd, buf, len, 0);

	if (n < 0) {
		t->pull_errno = errno;
		return n; /* errno still set: GnuTLS reads it */
	}
	if (n > 0 && t->capturing && t->head_len < sizeof(t->head)) {
		size_t k = sizeof(t->head) - t->head_len;

		if (k > (size_t)n)
			k = (size_t)n;
		memcpy(t->head + t->head_len, buf, k);
		t->head_len += k;
		/* fail at once instead of waiting for a record header that never comes */
		if (!tls_head_is_tls(t)) {
			t->pull_errno = EPROTO;
			errno = EPROTO;
			return -1;
		}
	}
	return n;
}

static int tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned int ms)
{
	struct mr_tls *t = ptr;
	struct pollfd p = { .fd = t->fd, .events = POLLIN };
	int timeout = ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : ms > INT_MAX ? INT_MAX : (int)ms;

	if (t->buffered && t->rpos < t->rlen)
		return 1;

	return poll(&p, 1, timeout);
}

/* ---- handshake callbacks ---- */

static void tls_cb_fail(struct mr_tls *t, enum mr_tls_fail f, int alert, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void tls_cb_fail(struct mr_tls *t, enum mr_tls_fail f, int alert, const char *fmt, ...)
{
	va_list ap;

	if (t->cb_fail != MR_TLS_OK)
		return; /* keep the first, most specific reason */
	t->cb_fail = f;
	t->cb_alert = alert;
	va_start(ap, fmt);
	vsnprintf(t->cb_msg, sizeof(t->cb_msg), fmt, ap);
	va_end(ap);
}

/* Subject DN of <crt> as RFC 4514 text, malloc'd; NULL on failure or if absurd. */
static char *tls_crt_dn(gnutls_x509_crt_t crt)
{
	gnutls_datum_t dn = { NULL, 0 };
	char *s = NULL;

	if (gnutls_x509_crt_get_dn3(crt, &dn, 0) < 0)
		return NULL;
	if (dn.size > 0 && dn.size <= TLS_MAX_DN && !memchr(dn.data, '\0', dn.size)) {
		s = malloc(dn.size + 1);
		if (s) {
			memcpy(s, dn.data, dn.size);
			s[dn.size] = '\0';
		}
	}
	gnutls_free(dn.data);
	return s;
}

static void tls_fmt_time(char *buf, size_t len, time_t when)
{
	struct tm tm;

	if (when == (time_t)-1 || !gmtime_r(&when, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M UTC", &tm))
		snprintf(buf, len, "an unknown date");
}

/*
 * Verifies the peer's chain against our CA, its key purpose and, on a
 * client with a peer name, the DNS/IP SAN. Returns 0 to go on, -1 to stop
 * the handshake with t->cb_fail set. Handshake thread.
 */
static int tls_verify_cb(gnutls_session_t s)
{
	struct mr_tls *t = gnutls_session_get_ptr(s);
	const char *peer = tls_peer_role(t);
	const char *purpose_name = t->cfg->server ? "client" : "server";
	gnutls_typed_vdata_st data[2];
	const gnutls_datum_t *certs;
	gnutls_x509_crt_t crt = NULL;
	unsigned int ncerts = 0, status = 0, n = 0;
	char shown[TLS_SHOW + 8] = "?", when[40];
	gnutls_datum_t why = { NULL, 0 };
	char *dn = NULL;
	int r, ret = -1;

	certs = gnutls_certificate_get_peers(s, &ncerts);
	if (!certs || ncerts == 0) {
		tls_cb_fail(t, MR_TLS_F_NO_CERT, GNUTLS_A_CERTIFICATE_REQUIRED,
			    "the %s sent no certificate (give it %s-cert.pem and %s-key.pem from `migrelay pki issue %s`)",
			    peer, purpose_name, purpose_name, purpose_name);
		return -1;
	}
	if (gnutls_x509_crt_init(&crt) < 0) {
		tls_cb_fail(t, MR_TLS_F_INTERNAL, GNUTLS_A_INTERNAL_ERROR, "out of memory");
		return -1;
	}
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) < 0) {
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE, "the %s sent a certificate we cannot parse",
			    peer);
		goto out;
	}
	dn = tls_crt_dn(crt);
	if (dn)
		tls_printable(shown, sizeof(shown), dn, strlen(dn));

	data[n].type = GNUTLS_DT_KEY_PURPOSE_OID;
	data[n].data = (unsigned char *)(t->cfg->server ? GNUTLS_KP_TLS_WWW_CLIENT : GNUTLS_KP_TLS_WWW_SERVER);
	data[n].size = 0;
	n++;
	if (!t->cfg->server && t->peer_name) {
		data[n].type = GNUTLS_DT_DNS_HOSTNAME;
		data[n].data = (unsigned char *)t->peer_name;
		data[n].size = 0;
		n++;
	}
	r = gnutls_certificate_verify_peers(s, data, n, &status);
	if (r < 0) {
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE,
			    "cannot verify the %s's certificate \"%s\": %s", peer, shown, gnutls_strerror(r));
		goto out;
	}
	if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA)) {
		tls_cb_fail(t, MR_TLS_F_UNKNOWN_CA, GNUTLS_A_UNKNOWN_CA,
			    "the %s's certificate \"%s\" is not signed by the CA in %s/ca-cert.pem (unknown CA: issue the %s's certificate with that CA, or give this side the CA that issued it)",
			    peer, shown, t->cfg->src, peer);
		goto out;
	}
	if (status & GNUTLS_CERT_EXPIRED) {
		tls_fmt_time(when, sizeof(when), gnutls_x509_crt_get_expiration_time(crt));
		tls_cb_fail(t, MR_TLS_F_EXPIRED, GNUTLS_A_CERTIFICATE_EXPIRED,
			    "the %s's certificate \"%s\" expired on %s (issue a new one with `migrelay pki issue %s`, and check both hosts' clocks)",
			    peer, shown, when, purpose_name);
		goto out;
	}
	if (status & GNUTLS_CERT_NOT_ACTIVATED) {
		tls_fmt_time(when, sizeof(when), gnutls_x509_crt_get_activation_time(crt));
		tls_cb_fail(t, MR_TLS_F_EXPIRED, GNUTLS_A_CERTIFICATE_EXPIRED,
			    "the %s's certificate \"%s\" is not valid before %s (check both hosts' clocks)", peer, shown,
			    when);
		goto out;
	}
	if (status & GNUTLS_CERT_UNEXPECTED_OWNER) {
		unsigned char addr[16];
		bool ip = inet_pton(AF_INET, t->peer_name, addr) == 1 || inet_pton(AF_INET6, t->peer_name, addr) == 1;
		char name[TLS_SHOW + 8];

		tls_printable(name, sizeof(name), t->peer_name, strlen(t->peer_name));
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE,
			    "the server's certificate \"%s\" is not valid for \"%s\" (connect to a name or address among its subject alternative names, or issue it again with %s %s)",
			    shown, name, ip ? "--ip" : "--dns", name);
		goto out;
	}
	if (status & GNUTLS_CERT_PURPOSE_MISMATCH) {
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE,
			    "the %s's certificate \"%s\" is not meant for a TLS %s (issue one with `migrelay pki issue %s`)",
			    peer, shown, purpose_name, purpose_name);
		goto out;
	}
	if (status) {
		if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) < 0)
			why.data = NULL;
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE, "the %s's certificate \"%s\" is not acceptable: %s",
			    peer, shown, why.data ? (const char *)why.data : "verification failed");
		gnutls_free(why.data);
		goto out;
	}
	if (!dn) {
		tls_cb_fail(t, MR_TLS_F_BAD_CERT, GNUTLS_A_BAD_CERTIFICATE,
			    "the %s's certificate has no usable subject name", peer);
		goto out;
	}
	free(t->identity);
	t->identity = dn;
	dn = NULL;
	ret = 0;
out:
	free(dn);
	gnutls_x509_crt_deinit(crt);
	return ret;
}

/*
 * PSK server: looks up the identity the client offered. An unknown one
 * gets a random key from GnuTLS (return 1), so that the client cannot
 * tell it from a wrong key; we remember which it was for our own message.
 */
static int tls_psk_server_cb(gnutls_session_t s, const gnutls_datum_t *user, gnutls_datum_t *key)
{
	struct mr_tls *t = gnutls_session_get_ptr(s);
	const struct psk_entry *e = NULL;
	char id[PSK_MAX_IDENTITY + 1];

	t->psk_seen = true;
	t->psk_known = false;
	tls_printable(t->psk_id, sizeof(t->psk_id), user->data, user->size);
	if (user->size > 0 && user->size <= PSK_MAX_IDENTITY && !memchr(user->data, '\0', user->size)) {
		memcpy(id, user->data, user->size);
		id[user->size] = '\0';
		e = psk_find(t->cfg->keys, id);
	}
	if (!e)
		return 1;
	key->data = gnutls_malloc(e->key_len);
	if (!key->data)
		return -1;
	memcpy(key->data, e->key, e->key_len);
	key->size = (unsigned int)e->key_len;
	t->psk_known = true;
	free(t->identity);
	t->identity = strdup(id);
	return t->identity ? 0 : -1;
}

static bool tls_alpn_ok(gnutls_session_t s)
{
	gnutls_datum_t p = { NULL, 0 };

	return gnutls_alpn_get_selected_protocol(s, &p) == 0 && p.size == strlen(WIRE_ALPN) &&
	       !memcmp(p.data, WIRE_ALPN, p.size);
}

/*
 * Server: after the ClientHello is parsed, refuse a client that did not
 * offer our ALPN (GnuTLS only refuses one that offered others).
 */
static int tls_hello_hook(gnutls_session_t s, unsigned int htype, unsigned int when, unsigned int incoming,
			  const gnutls_datum_t *msg)
{
	struct mr_tls *t = gnutls_session_get_ptr(s);

	if (htype != GNUTLS_HANDSHAKE_CLIENT_HELLO || when != GNUTLS_HOOK_POST || !incoming)
		return 0;
	if (tls_alpn_ok(s))
		return 0;
	tls_cb_fail(t, MR_TLS_F_PROTOCOL, GNUTLS_A_NO_APPLICATION_PROTOCOL,
		    "the client did not offer the ALPN protocol \"%s\" (it is not a migrelay, or a migrelay of another version)",
		    WIRE_ALPN);
	return GNUTLS_E_NO_APPLICATION_PROTOCOL;
}

/* ---- failure classification ---- */

/* RFC 8446 names, which people search for; GnuTLS's own texts differ. */
static const char *tls_alert_name(int alert)
{
	switch (alert) {
	case GNUTLS_A_CLOSE_NOTIFY:
		return "close notify";
	case GNUTLS_A_UNEXPECTED_MESSAGE:
		return "unexpected message";
	case GNUTLS_A_BAD_RECORD_MAC:
		return "bad record MAC";
	case GNUTLS_A_RECORD_OVERFLOW:
		return "record overflow";
	case GNUTLS_A_HANDSHAKE_FAILURE:
		return "handshake failure";
	case GNUTLS_A_BAD_CERTIFICATE:
		return "bad certificate";
	case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
		return "unsupported certificate";
	case GNUTLS_A_CERTIFICATE_REVOKED:
		return "certificate revoked";
	case GNUTLS_A_CERTIFICATE_EXPIRED:
		return "certificate expired";
	case GNUTLS_A_CERTIFICATE_UNKNOWN:
		return "certificate unknown";
	case GNUTLS_A_ILLEGAL_PARAMETER:
		return "illegal parameter";
	case GNUTLS_A_UNKNOWN_CA:
		return "unknown CA";
	case GNUTLS_A_ACCESS_DENIED:
		return "access denied";
	case GNUTLS_A_DECODE_ERROR:
		return "decode error";
	case GNUTLS_A_DECRYPT_ERROR:
		return "decrypt error";
	case GNUTLS_A_PROTOCOL_VERSION:
		return "protocol version";
	case GNUTLS_A_INSUFFICIENT_SECURITY:
		return "insufficient security";
	case GNUTLS_A_INTERNAL_ERROR:
		return "internal error";
	case GNUTLS_A_USER_CANCELED:
		return "user canceled";
	case GNUTLS_A_MISSING_EXTENSION:
		return "missing extension";
	case GNUTLS_A_UNSUPPORTED_EXTENSION:
		return "unsupported extension";
	case GNUTLS_A_UNKNOWN_PSK_IDENTITY:
		return "unknown PSK identity";
	case GNUTLS_A_CERTIFICATE_REQUIRED:
		return "certificate required";
	case GNUTLS_A_NO_APPLICATION_PROTOCOL:
		return "no application protocol";
	default:
		return NULL;
	}
}

/* Text for a fatal alert the peer sent us, in its words and with a fix. */
static void tls_alert_text(const struct mr_tls *t, int alert, char *buf, size_t len)
{
	const char *peer = tls_peer_role(t);
	const char *name = tls_alert_name(alert);
	char other[32];

	if (!name) {
		snprintf(other, sizeof(other), "alert %d", alert);
		name = other;
	}
	switch (alert) {
	case GNUTLS_A_UNKNOWN_CA:
		crypto_msg(buf, len,
			"the %s rejected our certificate: unknown CA (it does not trust the CA that issued our certificate; issue ours with the CA whose ca-cert.pem the %s uses)",
			peer, peer);
		break;
	case GNUTLS_A_CERTIFICATE_EXPIRED:
		crypto_msg(buf, len,
			"the %s rejected our certificate: certificate expired (issue a new one with `migrelay pki issue`, and check both hosts' clocks)",
			peer);
		break;
	case GNUTLS_A_CERTIFICATE_REQUIRED:
		crypto_msg(buf, len,
			"the %s rejected us: certificate required (we sent none; give this side a certificate from `migrelay pki issue`)",
			peer);
		break;
	case GNUTLS_A_BAD_CERTIFICATE:
	case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
	case GNUTLS_A_CERTIFICATE_REVOKED:
	case GNUTLS_A_CERTIFICATE_UNKNOWN:
		crypto_msg(buf, len, "the %s rejected our certificate: %s (see the %s's log for the reason)", peer, name,
			peer);
		break;
	case GNUTLS_A_NO_APPLICATION_PROTOCOL:
		crypto_msg(buf, len,
			"the %s rejected us: no application protocol (it does not speak \"%s\"; is it a migrelay of another version?)",
			peer, WIRE_ALPN);
		break;
	case GNUTLS_A_PROTOCOL_VERSION:
		crypto_msg(buf, len, "the %s rejected us: protocol version (migrelay speaks only TLS 1.3)", peer);
		break;
	case GNUTLS_A_DECRYPT_ERROR:
	case GNUTLS_A_UNKNOWN_PSK_IDENTITY:
	case GNUTLS_A_ILLEGAL_PARAMETER:
		if (t->cfg->psk && !t->cfg->server) {
			crypto_msg(buf, len,
				"the %s rejected our PSK identity \"%s\": %s (the identity must be in the %s's keys.psk with the same key)",
				peer, t->cfg->psk_identity, name, peer);
			break;
		}
		crypto_msg(buf, len, "the %s ended the handshake with TLS alert \"%s\"", peer, name);
		break;
	case GNUTLS_A_HANDSHAKE_FAILURE:
	case GNUTLS_A_INSUFFICIENT_SECURITY:
		crypto_msg(buf, len,
			"the %s rejected us: %s (no common TLS 1.3 parameters; do both sides use the same kind of credentials, x509 or PSK?)",
			peer, name);
		break;
	default:
		crypto_msg(buf, len, "the %s ended the connection with TLS alert \"%s\"", peer, name);
		break;
	}
}

/*
 * After a failed write or an early EOF in the handshake: the peer may have
 * refused us with a fatal alert that is still unread in the socket, sent
 * before its handshake keys existed and so in plaintext, possibly behind
 * a plaintext handshake record or a ChangeCipherSpec (after a
 * HelloRetryRequest). Walks the plaintext records we can peek at without
 * consuming them. Returns the alert, or -1.
 */
static int tls_peek_plain_alert(const struct mr_tls *t)
{
	unsigned char b[4096];
	ssize_t n = recv(t->fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
	size_t off = 0, len;

	while (n > 0 && (size_t)n - off >= 5 && b[off + 1] == 0x03) {
		len = (size_t)b[off + 3] << 8 | b[off + 4];
		if (b[off] == 0x15) {
			if (len != 2 || (size_t)n - off < 7 || b[off + 5] != GNUTLS_AL_FATAL)
				return -1;
			return b[off + 6];
		}
		if (b[off] != 0x14 && b[off] != 0x16)
			return -1; /* application data: encrypted, not ours to read */
		if ((size_t)n - off - 5 < len)
			return -1;
		off += 5 + len;
	}
	return -1;
}

static enum mr_tls_fail tls_classify(struct mr_tls *t, int gr, int *alert, char *err, size_t errlen)
{
	const char *peer = tls_peer_role(t);
	char shown[TLS_SHOW + 8];
	int peer_alert;

	*alert = -1;
	if (t->cb_fail != MR_TLS_OK) {
		*alert = t->cb_alert;
		crypto_msg(err, errlen, "%s", t->cb_msg);
		return t->cb_fail;
	}
	if (!tls_head_is_tls(t)) {
		tls_printable(shown, sizeof(shown), t->head, t->head_len);
		crypto_msg(err, errlen,
			"the %s does not speak TLS: it sent \"%s\" (is that port a migrelay, and does the other side use TLS too?)",
			peer, shown);
		return MR_TLS_F_NOT_TLS;
	}
	switch (gr) {
	case GNUTLS_E_TIMEDOUT:
		crypto_msg(err, errlen,
			"no TLS handshake with the %s within %d ms (is the other side a migrelay speaking TLS, and is it reachable and not overloaded?)",
			peer, t->timeout_ms);
		return MR_TLS_F_TIMEOUT;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		tls_alert_text(t, (int)gnutls_alert_get(t->s), err, errlen);
		return MR_TLS_F_PEER_REJECTED;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
	case GNUTLS_E_SESSION_EOF:
		peer_alert = tls_peek_plain_alert(t);
		if (peer_alert >= 0) {
			tls_alert_text(t, peer_alert, err, errlen);
			return MR_TLS_F_PEER_REJECTED;
		}
		if (gr == GNUTLS_E_PULL_ERROR && t->pull_errno)
			crypto_msg(err, errlen, "the connection to the %s failed during the TLS handshake: %s", peer,
				strerror(t->pull_errno));
		else
			crypto_msg(err, errlen,
				"the %s closed the connection during the TLS handshake (it may have refused our credentials; see its log)",
				peer);
		return MR_TLS_F_IO;
	case GNUTLS_E_MEMORY_ERROR:
	case GNUTLS_E_INTERNAL_ERROR:
		crypto_msg(err, errlen, "TLS handshake with the %s failed: %s", peer, gnutls_strerror(gr));
		*alert = GNUTLS_A_INTERNAL_ERROR;
		return MR_TLS_F_INTERNAL;
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
		crypto_msg(err, errlen, "the %s does not offer TLS 1.3 (migrelay speaks only TLS 1.3)", peer);
		*alert = GNUTLS_A_PROTOCOL_VERSION;
		return MR_TLS_F_PROTOCOL;
	case GNUTLS_E_NO_CIPHER_SUITES:
		/* what a TLS 1.2-only ClientHello gets from a TLS 1.3-only server */
		crypto_msg(err, errlen,
			"the %s offers no TLS 1.3 cipher suite (migrelay speaks only TLS 1.3; is the peer an older TLS stack?)",
			peer);
		*alert = GNUTLS_A_HANDSHAKE_FAILURE;
		return MR_TLS_F_PROTOCOL;
	case GNUTLS_E_INSUFFICIENT_CREDENTIALS:
		if (!t->cfg->server && t->cfg->psk) {
			crypto_msg(err, errlen,
				"the server authenticates with a certificate, but this side has only a pre-shared key (use the same kind of credentials on both sides)");
			*alert = GNUTLS_A_HANDSHAKE_FAILURE;
			return MR_TLS_F_PROTOCOL;
		}
		break;
	default:
		break;
	}
	if (t->cfg->server && (gr == GNUTLS_E_CERTIFICATE_REQUIRED || gr == GNUTLS_E_NO_CERTIFICATE_FOUND)) {
		crypto_msg(err, errlen,
			"the client sent no certificate (give it client-cert.pem and client-key.pem from `migrelay pki issue client`)");
		*alert = GNUTLS_A_CERTIFICATE_REQUIRED;
		return MR_TLS_F_NO_CERT;
	}
	if (t->cfg->server && t->cfg->psk) {
		/* one alert for both cases: a client must not learn which identities exist */
		*alert = GNUTLS_A_DECRYPT_ERROR;
		if (t->psk_seen && !t->psk_known)
			crypto_msg(err, errlen,
				"the client's PSK identity \"%s\" is not in %s (add a line \"identity:hexkey\" with the client's key)",
				t->psk_id, t->cfg->src);
		else if (t->psk_seen)
			crypto_msg(err, errlen,
				"the client's key for PSK identity \"%s\" differs from the one in %s (both sides need the same line)",
				t->psk_id, t->cfg->src);
		else {
			crypto_msg(err, errlen,
				"the client offered no pre-shared key with an (EC)DHE key exchange (give it a PSK file like %s; migrelay does not use PSK without forward secrecy)",
				t->cfg->src);
			*alert = GNUTLS_A_HANDSHAKE_FAILURE;
		}
		return MR_TLS_F_PSK;
	}
	crypto_msg(err, errlen, "TLS handshake with the %s failed: %s (migrelay needs TLS 1.3 and ALPN \"%s\" on both sides)",
		peer, gnutls_strerror(gr), WIRE_ALPN);
	*alert = gnutls_error_to_alert(gr, NULL);
	return MR_TLS_F_PROTOCOL;
}

static int tls_fail_errno(enum mr_tls_fail f)
{
	switch (f) {
	case MR_TLS_F_IO:
		return -ECONNRESET;
	case MR_TLS_F_TIMEOUT:
		return -ETIMEDOUT;
	case MR_TLS_F_NOT_TLS:
	case MR_TLS_F_PROTOCOL:
		return -EPROTO;
	case MR_TLS_F_INTERNAL:
		return -EIO;
	default:
		return -EACCES;
	}
}

/* Best effort: a fatal alert must not hang us on a peer that stopped reading. */
static void tls_send_alert(struct mr_tls *t, int alert)
{
	int r, tries = 3;

	if (alert < 0)
		return;
	do
		r = gnutls_alert_send(t->s, GNUTLS_AL_FATAL, (gnutls_alert_description_t)alert);
	while ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && --tries > 0);
}

/* Checks what a successful handshake agreed on. Returns 0 or sets t->cb_fail. */
static int tls_check_result(struct mr_tls *t)
{
	const char *peer = tls_peer_role(t);
	gnutls_kx_algorithm_t kx;

	if (gnutls_protocol_get_version(t->s) != GNUTLS_TLS1_3) {
		tls_cb_fail(t, MR_TLS_F_PROTOCOL, GNUTLS_A_PROTOCOL_VERSION,
			    "the %s negotiated a TLS version other than 1.3", peer);
		return -1;
	}
	if (!tls_alpn_ok(t->s)) {
		tls_cb_fail(t, MR_TLS_F_PROTOCOL, GNUTLS_A_NO_APPLICATION_PROTOCOL,
			    "the %s did not agree on the ALPN protocol \"%s\" (it is not a migrelay, or a migrelay of another version)",
			    peer, WIRE_ALPN);
		return -1;
	}
	if (t->cfg->psk) {
		kx = gnutls_kx_get(t->s);
		if (kx != GNUTLS_KX_ECDHE_PSK && kx != GNUTLS_KX_DHE_PSK) {
			tls_cb_fail(t, MR_TLS_F_PROTOCOL, GNUTLS_A_INSUFFICIENT_SECURITY,
				    "the %s negotiated a PSK key exchange without (EC)DHE (no forward secrecy)", peer);
			return -1;
		}
		if (!t->identity && !t->cfg->server)
			t->identity = strdup(t->cfg->psk_identity);
	} else if (gnutls_certificate_type_get(t->s) != GNUTLS_CRT_X509) {
		tls_cb_fail(t, MR_TLS_F_PROTOCOL, GNUTLS_A_UNSUPPORTED_CERTIFICATE,
			    "the %s did not authenticate with an X.509 certificate", peer);
		return -1;
	}
	if (!t->identity) {
		/* the verify callback or the PSK lookup sets it; no identity means neither ran */
		tls_cb_fail(t, t->cfg->psk ? MR_TLS_F_PSK : MR_TLS_F_NO_CERT, GNUTLS_A_HANDSHAKE_FAILURE,
			    "the %s did not authenticate itself", peer);
		return -1;
	}
	return 0;
}

void mr_tls_free(struct mr_tls *t)
{
	if (!t)
		return;
	if (t->s)
		gnutls_deinit(t->s);
	mr_rec_free(&t->tx);
	mr_rec_free(&t->rx);
	free(t->identity);
	free(t->peer_name);
	free(t->rbuf);
	free(t->sbuf);
	if (t->pipe[0] >= 0) {
		close(t->pipe[0]);
		close(t->pipe[1]);
	}
	free(t);
}

int mr_tls_handshake(struct mr_tls **out, struct mr_tls_cfg *cfg, int fd, const char *peer_name, int timeout_ms,
		     enum mr_tls_fail *fail, char *err, size_t errlen)
{
	static const gnutls_datum_t alpn = { (unsigned char *)WIRE_ALPN, sizeof(WIRE_ALPN) - 1 };
	enum mr_tls_fail f = MR_TLS_F_INTERNAL;
	struct mr_tls *t = NULL;
	unsigned int flags;
	int r, gr, alert;

	if (err && errlen)
		err[0] = '\0';
	if (fail)
		*fail = MR_TLS_F_INTERNAL;
	if (!out || !cfg || fd < 0 || !fail) {
		crypto_msg(err, errlen, "invalid TLS handshake arguments");
		return -EINVAL;
	}
	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t || (peer_name && !cfg->server && !(t->peer_name = strdup(peer_name)))) {
		crypto_msg(err, errlen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	t->cfg = cfg;
	t->fd = fd;
	t->pipe[0] = t->pipe[1] = -1;
	t->cb_alert = -1;
	t->capturing = true;
	t->timeout_ms = timeout_ms > 0 ? timeout_ms : TLS_DEFAULT_TIMEOUT_MS;
	atomic_init(&t->last, TLS_LAST_NONE);

	flags = (cfg->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS;
	gr = gnutls_init(&t->s, flags);
	if (gr < 0) {
		t->s = NULL;
		crypto_msg(err, errlen, "cannot start a TLS session: %s", gnutls_strerror(gr));
		r = -ENOMEM;
		goto out;
	}
	gnutls_session_set_ptr(t->s, t);
	if ((gr = gnutls_priority_set(t->s, cfg->prio)) < 0 ||
	    (gr = gnutls_alpn_set_protocols(t->s, &alpn, 1, GNUTLS_ALPN_MANDATORY)) < 0)
		goto setup_failed;
	if (cfg->psk)
		gr = cfg->server ? gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, cfg->psk_srv)
				 : gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, cfg->psk_cli);
	else
		gr = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, cfg->x509);
	if (gr < 0)
		goto setup_failed;
	if (!cfg->psk) {
		gnutls_session_set_verify_function(t->s, tls_verify_cb);
		if (cfg->server) {
			gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
			/*
			 * Do not name our CA in the certificate request: a client
			 * then sends the certificate it has even from another CA,
			 * and we can say "unknown CA" instead of "no certificate".
			 */
			gnutls_certificate_send_x509_rdn_sequence(t->s, 1);
		}
	}
	if (cfg->server)
		gnutls_handshake_set_hook_function(t->s, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_POST,
						   tls_hello_hook);
	/* both directions through us: the first bytes are inspected, and records are batched (tls_pull, tls_vec_push) */
	gnutls_transport_set_ptr2(t->s, t, t);
	gnutls_transport_set_pull_function(t->s, tls_pull);
	gnutls_transport_set_vec_push_function(t->s, tls_vec_push);
	gnutls_transport_set_pull_timeout_function(t->s, tls_pull_timeout);
	gnutls_handshake_set_timeout(t->s, (unsigned int)t->timeout_ms);

	do
		gr = gnutls_handshake(t->s);
	while (gr < 0 && !gnutls_error_is_fatal(gr));
	t->capturing = false;
	if (gr == 0 && tls_check_result(t) < 0)
		gr = GNUTLS_E_CERTIFICATE_ERROR; /* t->cb_fail says why */
	if (gr < 0) {
		f = tls_classify(t, gr, &alert, err, errlen);
		tls_send_alert(t, alert);
		r = tls_fail_errno(f);
		goto out;
	}
	free(t->peer_name);
	t->peer_name = NULL;
	t->rbuf = malloc(TLS_RBUF);
	t->sbuf = malloc(TLS_SBUF);
	t->buffered = t->rbuf && t->sbuf; /* without the buffers, plain unbuffered I/O still works */
	tls_records_start(t);
	*fail = MR_TLS_OK;
	*out = t;
	t = NULL;
	return 0;

setup_failed:
	crypto_msg(err, errlen, "cannot set up the TLS session: %s", gnutls_strerror(gr));
	r = -EIO;
out:
	*fail = f;
	mr_tls_free(t);
	return r;
}

const char *mr_tls_peer_identity(const struct mr_tls *t)
{
	return t && t->identity ? t->identity : "";
}

/* Sending thread. */
static void tls_send_error(struct mr_tls *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tls_send_error(struct mr_tls *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->send_err, sizeof(t->send_err), fmt, ap);
	va_end(ap);
	atomic_store(&t->last, TLS_LAST_SEND);
}

/* Receiving thread. */
static void tls_recv_error(struct mr_tls *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tls_recv_error(struct mr_tls *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->recv_err, sizeof(t->recv_err), fmt, ap);
	va_end(ap);
	atomic_store(&t->last, TLS_LAST_RECV);
}

/* Sending thread: mr_tls_send through gnutls_record_send. */
static ssize_t tls_gnutls_send(struct mr_tls *t, const unsigned char *c, size_t len)
{
	size_t off = 0;
	ssize_t n;

	tls_in_send = true;
	while (off < len) {
		/* GnuTLS sends at most one record per call and returns its size */
		n = gnutls_record_send(t->s, c + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		/* GnuTLS keeps the pending record: call again with the same arguments */
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		tls_in_send = false;
		t->slen = 0;
		if (n == GNUTLS_E_PUSH_ERROR || n == GNUTLS_E_INVALID_SESSION || n == GNUTLS_E_PREMATURE_TERMINATION) {
			/* GnuTLS reports EPIPE and ECONNRESET from send() as premature termination */
			tls_send_error(t,
				       "cannot send to the %s: the connection is closed or reset (a receive on this connection may tell why)",
				       tls_peer_role(t));
			return n == GNUTLS_E_PREMATURE_TERMINATION ? -ECONNRESET : -EPIPE;
		}
		tls_send_error(t, "cannot send to the %s: %s", tls_peer_role(t),
			       n == 0 ? "no progress" : gnutls_strerror((int)n));
		return -EIO;
	}
	tls_in_send = false;
	if (t->slen && tls_flush(t) < 0) {
		int e = t->push_errno;

		tls_send_error(t, "cannot send to the %s: %s", tls_peer_role(t), strerror(e));
		return e == ECONNRESET ? -ECONNRESET : -EPIPE;
	}
	return (ssize_t)len;
}

/* Receiving thread: mr_tls_recv through gnutls_record_recv. */
static ssize_t tls_gnutls_recv(struct mr_tls *t, void *p, size_t len)
{
	ssize_t n;
	int alert;

	for (;;) {
		t->pull_errno = 0;
		n = gnutls_record_recv(t->s, p, len);
		if (n >= 0)
			return n;
		switch (n) {
		case GNUTLS_E_INTERRUPTED:
		case GNUTLS_E_WARNING_ALERT_RECEIVED:
			continue;
		case GNUTLS_E_AGAIN:
			tls_recv_error(t, "nothing from the %s within the receive timeout", tls_peer_role(t));
			return -EAGAIN;
		case GNUTLS_E_PREMATURE_TERMINATION:
			tls_recv_error(t, "the %s closed the connection without a TLS close_notify", tls_peer_role(t));
			return -ECONNRESET;
		case GNUTLS_E_PULL_ERROR:
			tls_recv_error(t, "cannot receive from the %s: %s", tls_peer_role(t),
				       strerror(t->pull_errno ? t->pull_errno : EIO));
			return t->pull_errno == ECONNRESET || t->pull_errno == EPIPE ? -ECONNRESET : -EIO;
		case GNUTLS_E_FATAL_ALERT_RECEIVED:
			alert = (int)gnutls_alert_get(t->s);
			tls_alert_text(t, alert, t->recv_err, sizeof(t->recv_err));
			atomic_store(&t->last, TLS_LAST_RECV);
			return -EIO;
		default:
			tls_recv_error(t, "cannot receive from the %s: %s", tls_peer_role(t), gnutls_strerror((int)n));
			return -EIO;
		}
	}
}

/* ---- own record layer after the handshake (engine "in-place") and kernel TLS ---- */

/*
 * Transport of the record path. Only these three functions touch the
 * socket for records, so another transport (io_uring with a registered
 * send pool and provided receive buffers) can replace them without
 * changing the record logic.
 */

/* Sending thread. Writes out sbuf with send() (one call unless the socket is full). Returns 0 or -errno. */
static int tls_tx_flush(struct mr_tls *t)
{
	if (t->txo) {
		unsigned char *b = t->tbuf;
		size_t n = t->slen;

		if (!n)
			return 0;
		t->tbuf = NULL; /* the transport's from now on, whatever the result */
		t->slen = 0;
		return t->txo->send(t->txc, b, n);
	}
	return tls_flush(t) < 0 ? -(t->push_errno ? t->push_errno : EIO) : 0;
}

/*
 * Sending thread. Makes room for at least <need> bytes at the end of sbuf
 * (writing out what is there if it must) and returns where they go and
 * how many bytes fit. Returns 0 or -errno.
 */
static int tls_tx_space(struct mr_tls *t, size_t need, unsigned char **p, size_t *room)
{
	int r;

	if (t->txo) {
		if (t->tbuf && t->tcap - t->slen < need && (r = tls_tx_flush(t)) < 0)
			return r;
		if (!t->tbuf) {
			if ((r = t->txo->get(t->txc, &t->tbuf, &t->tcap)) < 0) {
				t->tbuf = NULL;
				return r;
			}
			t->slen = 0;
			if (t->tcap < need)
				return -EMSGSIZE;
		}
		*p = t->tbuf + t->slen;
		*room = t->tcap - t->slen;
		return 0;
	}
	if (TLS_SBUF - t->slen < need && (r = tls_tx_flush(t)) < 0)
		return r;
	*p = t->sbuf + t->slen;
	*room = TLS_SBUF - t->slen;
	return 0;
}

/* Sending thread. <n> bytes at the place tls_tx_space gave are ready to go. */
static void tls_tx_commit(struct mr_tls *t, size_t n)
{
	t->slen += n;
}

/*
 * Receiving thread. Reads what the socket has into rbuf behind the
 * unopened bytes [rpos, rlen); first moves a partial record at the tail to
 * the front when a whole record might not fit behind it (the only bytes
 * ever moved). Returns the bytes read, 0 at EOF, or -errno (-EAGAIN when
 * SO_RCVTIMEO expired).
 */
static ssize_t tls_rx_fill(struct mr_tls *t)
{
	ssize_t n;

	if (t->rpos == t->rlen) {
		t->rpos = t->rlen = 0;
	} else if (t->rpos > 0 && TLS_RBUF - t->rpos < MR_REC_MAX) {
		memmove(t->rbuf, t->rbuf + t->rpos, t->rlen - t->rpos);
		t->rlen -= t->rpos;
		t->rpos = 0;
	}
	for (;;) {
		n = recv(t->fd, t->rbuf + t->rlen, TLS_RBUF - t->rlen, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
		t->rlen += (size_t)n;
		return n;
	}
}

/* The receive timeout the socket asks for (SO_RCVTIMEO), in ms; -1 for none. */
static int tls_rx_timeout(const struct mr_tls *t)
{
	struct timeval tv;
	socklen_t l = sizeof(tv);

	if (getsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &l) < 0 || (tv.tv_sec == 0 && tv.tv_usec == 0))
		return -1;
	return (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
}

/* Receiving thread: the unread bytes the parser looks at next, rbuf's before the provided buffer's. */
static unsigned char *tls_rx_cur(struct mr_tls *t, size_t *avail)
{
	if (t->rpos < t->rlen) {
		*avail = t->rlen - t->rpos;
		return t->rbuf + t->rpos;
	}
	if (t->uwin && t->uoff < t->ulen) {
		*avail = t->ulen - t->uoff;
		return t->uwin + t->uoff;
	}
	*avail = 0;
	return t->rbuf + t->rpos;
}

/* Receiving thread: <n> bytes at tls_rx_cur are used up. */
static void tls_rx_consume(struct mr_tls *t, size_t n)
{
	if (t->rpos < t->rlen) {
		t->rpos += n;
		if (t->rpos == t->rlen)
			t->rpos = t->rlen = 0;
		return;
	}
	t->uoff += n;
}

/* Receiving thread: gives the provided buffer back once nothing in it is unread or waiting to be returned. */
static void tls_rx_release(struct mr_tls *t)
{
	if (t->uwin && t->uoff >= t->ulen && !(t->plen && t->pp >= t->uwin && t->pp < t->uwin + t->ulen)) {
		t->rxo->put(t->rxc, t->ubid);
		t->uwin = NULL;
		t->uoff = t->ulen = 0;
	}
}

/* Receiving thread: the next provided buffer from the transport. Returns > 0, 0 at EOF, -errno. */
static ssize_t tls_rx_next(struct mr_tls *t)
{
	const uint8_t *d;
	unsigned bid;
	ssize_t n;

	tls_rx_release(t);
	if (t->uwin)
		return (ssize_t)(t->ulen - t->uoff);
	n = t->rxo->recv(t->rxc, &d, &bid, t->rx_timeout_ms);
	if (n <= 0)
		return n;
	t->uwin = (unsigned char *)(uintptr_t)d; /* our buffer, lent to the kernel and back: records open in place */
	t->ubid = bid;
	t->uoff = 0;
	t->ulen = (size_t)n;
	return n;
}

/*
 * Receiving thread, with a receive transport: the record at tls_rx_cur is
 * incomplete (or nothing is there). Moves its bytes into rbuf if they are
 * in a provided buffer and appends from the next provided buffers exactly
 * what the record still lacks, so the bytes after it stay where they are.
 * Returns > 0 when there is more to parse, 0 at EOF, -errno.
 */
static ssize_t tls_rx_fill_ops(struct mr_tls *t)
{
	size_t want, k;
	ssize_t n, rl;

	if (t->rpos == t->rlen) {
		t->rpos = t->rlen = 0;
		if (!t->uwin || t->uoff == t->ulen)
			return tls_rx_next(t); /* nothing partial: a fresh buffer to parse in place */
		/* a record's start at the end of the provided buffer: assemble it in rbuf */
		memcpy(t->rbuf, t->uwin + t->uoff, t->ulen - t->uoff);
		t->rlen = t->ulen - t->uoff;
		t->uoff = t->ulen;
	} else if (t->rpos > 0) {
		memmove(t->rbuf, t->rbuf + t->rpos, t->rlen - t->rpos);
		t->rlen -= t->rpos;
		t->rpos = 0;
	}
	for (;;) {
		if (t->rlen >= MR_REC_HDR) {
			rl = mr_rec_peek(t->rbuf, t->rlen);
			if (rl <= 0 || t->rlen >= (size_t)rl)
				return 1; /* complete, or a bad header for the parser to report */
			want = (size_t)rl - t->rlen;
		} else {
			want = MR_REC_HDR - t->rlen;
		}
		if ((n = tls_rx_next(t)) <= 0)
			return n;
		k = t->ulen - t->uoff < want ? t->ulen - t->uoff : want;
		memcpy(t->rbuf + t->rlen, t->uwin + t->uoff, k);
		t->rlen += k;
		t->uoff += k;
	}
}

static const char *tls_rec_strerror(int e)
{
	switch (e) {
	case -EPROTO:
		return "a record with a bad header (not TLS 1.3 application data)";
	case -EMSGSIZE:
		return "an oversized record";
	case -EBADMSG:
		return "a record that failed authentication (corrupted or forged on the way, or not sent by the peer)";
	case -ENODATA:
		return "a record without a content type";
	default:
		return "a record we cannot open";
	}
}

/* Sending thread. Maps a failed flush to mr_tls_send's errno with the text set. */
static void tls_tx_drop(struct mr_tls *t)
{
	if (t->txo && t->tbuf) {
		t->txo->put(t->txc, t->tbuf);
		t->tbuf = NULL;
	}
	t->slen = 0;
}

static ssize_t tls_tx_failed(struct mr_tls *t, int r)
{
	tls_tx_drop(t);
	tls_send_error(t, "cannot send to the %s: %s", tls_peer_role(t), strerror(-r));
	return r == -ECONNRESET ? -ECONNRESET : -EPIPE;
}

/* Sending thread. Seals <len> bytes from <c> into sbuf, at most 16 KiB a record, and sends them. */
static ssize_t tls_rec_send(struct mr_tls *t, const unsigned char *c, size_t len)
{
	size_t off = 0, room;
	unsigned char *o;
	ssize_t n;
	int r;

	while (off < len) {
		struct iovec v = { (void *)(uintptr_t)(c + off), len - off };

		if (v.iov_len > MR_REC_MAX_PLAIN)
			v.iov_len = MR_REC_MAX_PLAIN;
		if ((r = tls_tx_space(t, v.iov_len + MR_REC_OVERHEAD, &o, &room)) < 0)
			return tls_tx_failed(t, r);
		n = mr_rec_seal(&t->tx, MR_REC_T_DATA, &v, 1, o, room);
		if (n < 0) {
			tls_tx_drop(t);
			if (n == -EKEYEXPIRED) {
				tls_send_error(t,
					       "cannot send to the %s: this connection's key has protected %llu records, its limit (the connection must be replaced by a new handshake for fresh keys)",
					       tls_peer_role(t), (unsigned long long)t->tx.seq);
				return -EKEYEXPIRED;
			}
			tls_send_error(t, "cannot send to the %s: sealing a TLS record failed (%s)", tls_peer_role(t),
				       strerror((int)-n));
			return -EIO;
		}
		tls_tx_commit(t, (size_t)n);
		off += v.iov_len;
	}
	if (t->slen && (r = tls_tx_flush(t)) < 0)
		return tls_tx_failed(t, r);
	return (ssize_t)len;
}

/* Sending thread. Sends <len> bytes as they are (kernel TLS seals them; or plaintext mode). */
static ssize_t tls_raw_send(struct mr_tls *t, const unsigned char *c, size_t len)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = send(t->fd, c + off, len - off, MSG_NOSIGNAL);
		if (n < 0) {
			int e = errno;

			if (e == EINTR || e == EAGAIN)
				continue; /* SO_SNDTIMEO expired: keep trying (shutdown() ends it) */
			tls_send_error(t, "cannot send to the %s: %s", tls_peer_role(t), strerror(e));
			if (e == EPIPE || e == ECONNRESET)
				return e == ECONNRESET ? -ECONNRESET : -EPIPE;
			return -EIO;
		}
		off += (size_t)n;
	}
	return (ssize_t)len;
}

/*
 * Sending thread, plaintext mode: bytes the caller keeps unchanged until
 * the peer acknowledged them go to the socket without a copy: vmsplice
 * lends their pages to a pipe, splice moves them to the socket. A pipe
 * that cannot be made, or a vmsplice that fails before anything moved,
 * falls back to send().
 */
static ssize_t tls_splice_send(struct mr_tls *t, const unsigned char *c, size_t len)
{
	size_t off = 0;

	if (t->pipe[0] < 0) {
		if (pipe2(t->pipe, O_CLOEXEC) < 0) {
			t->pipe[0] = t->pipe[1] = -1;
			return tls_raw_send(t, c, len);
		}
		(void)fcntl(t->pipe[1], F_SETPIPE_SZ, 1 << 20); /* fewer rounds; the default 64 KiB works too */
	}
	while (off < len) {
		struct iovec v = { (void *)(uintptr_t)(c + off), len - off };
		ssize_t n = vmsplice(t->pipe[1], &v, 1, 0);
		size_t left;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) /* the pipe is empty here: send() the rest */
			return tls_raw_send(t, c + off, len - off) < 0 ? -EPIPE : (ssize_t)len;
		left = (size_t)n;
		while (left > 0) {
			ssize_t m = splice(t->pipe[0], NULL, t->fd, NULL, left,
					   SPLICE_F_MOVE | (off + (size_t)n < len ? SPLICE_F_MORE : 0));

			if (m < 0 && (errno == EINTR || errno == EAGAIN))
				continue; /* EAGAIN: SO_SNDTIMEO expired; keep trying (shutdown() ends it) */
			if (m <= 0) {
				int e = m < 0 ? errno : EPIPE;

				tls_send_error(t, "cannot send to the %s: %s", tls_peer_role(t), strerror(e));
				return e == ECONNRESET ? -ECONNRESET : -EPIPE;
			}
			left -= (size_t)m;
		}
		off += (size_t)n;
	}
	return (ssize_t)len;
}

/* Receiving thread. The socket gave <r> (0: EOF) while a record was wanted; sets the text. */
static ssize_t tls_rx_failed(struct mr_tls *t, ssize_t r)
{
	const char *peer = tls_peer_role(t);

	if (r == 0) {
		if (t->rpos < t->rlen)
			tls_recv_error(t, "the %s closed the connection in the middle of a TLS record", peer);
		else
			tls_recv_error(t, "the %s closed the connection without a TLS close_notify", peer);
		return -ECONNRESET;
	}
	if (r == -EAGAIN) {
		tls_recv_error(t, "nothing from the %s within the receive timeout", peer);
		return -EAGAIN;
	}
	tls_recv_error(t, "cannot receive from the %s: %s", peer, strerror((int)-r));
	return r == -ECONNRESET || r == -EPIPE ? -ECONNRESET : -EIO;
}

/*
 * Receiving thread. A record that is not application data: an alert or a
 * post-handshake message. Returns 1 to go on, 0 for close_notify, -EIO
 * with the text set.
 */
static int tls_rec_control(struct mr_tls *t, const unsigned char *c, size_t n, unsigned char type)
{
	const char *peer = tls_peer_role(t);
	size_t off = 0;

	if (type == MR_REC_T_ALERT) {
		if (n != 2) {
			tls_recv_error(t, "the %s sent a malformed TLS alert", peer);
			return -EIO;
		}
		if (c[1] == GNUTLS_A_CLOSE_NOTIFY) {
			t->rx_closed = true;
			return 0;
		}
		if (c[1] == GNUTLS_A_USER_CANCELED)
			return 1; /* a close_notify follows (RFC 8446 §6.1) */
		tls_alert_text(t, c[1], t->recv_err, sizeof(t->recv_err));
		atomic_store(&t->last, TLS_LAST_RECV);
		return -EIO;
	}
	if (type != MR_REC_T_HANDSHAKE) {
		tls_recv_error(t, "the %s sent a TLS record of unexpected content type %u", peer, type);
		return -EIO;
	}
	/* handshake messages: type(1) length(3) body; several may share a record */
	while (off < n) {
		size_t mlen;

		if (n - off < 4) {
			tls_recv_error(t, "the %s sent a truncated TLS handshake message", peer);
			return -EIO;
		}
		mlen = (size_t)c[off + 1] << 16 | (size_t)c[off + 2] << 8 | c[off + 3];
		switch (c[off]) {
		case 4: /* NewSessionTicket: we never resume, so a ticket is of no use */
			break;
		case 24: /* KeyUpdate */
			tls_recv_error(t,
				       "the %s sent a TLS KeyUpdate, which migrelay does not support (a migrelay peer replaces the connection by a new handshake instead; is the peer a migrelay?)",
				       peer);
			return -EIO;
		default:
			tls_recv_error(t, "the %s sent an unexpected TLS handshake message (type %u) after the handshake",
				       peer, c[off]);
			return -EIO;
		}
		if (n - off - 4 < mlen)
			break; /* a ticket continued in the next record: ignored as well */
		off += 4 + mlen;
	}
	return 1;
}

/*
 * Receiving thread. Returns up to <len> bytes of content: from an opened
 * record waiting in rbuf (one copy, the caller's), else the next record
 * opened straight into <p> when it has room for the whole content, else
 * opened in place in rbuf.
 */
static ssize_t tls_rec_recv(struct mr_tls *t, unsigned char *p, size_t len)
{
	for (;;) {
		unsigned char *rec, *content, type;
		size_t pl, avail;
		ssize_t rl, n;
		bool direct;
		int r;

		if (t->plen) {
			size_t k = t->plen < len ? t->plen : len;

			memcpy(p, t->pp, k);
			t->pp += k;
			t->plen -= k;
			return (ssize_t)k;
		}
		if (t->rx_closed)
			return 0;
		rec = tls_rx_cur(t, &avail);
		rl = mr_rec_peek(rec, avail);
		if (rl < 0) {
			tls_recv_error(t, "the %s sent %s", tls_peer_role(t), tls_rec_strerror((int)rl));
			return -EIO;
		}
		if (rl == 0 || avail < (size_t)rl) {
			n = t->rxo ? tls_rx_fill_ops(t) : tls_rx_fill(t);
			if (n <= 0)
				return tls_rx_failed(t, n);
			continue;
		}
		direct = len >= (size_t)rl - MR_REC_HDR - MR_REC_TAG;
		if (direct) {
			r = mr_rec_open_to(&t->rx, rec, (size_t)rl, p, len, &pl, &type);
			content = p;
		} else {
			r = mr_rec_open(&t->rx, rec, (size_t)rl, &content, &pl, &type);
		}
		tls_rx_consume(t, (size_t)rl);
		if (r == -EKEYEXPIRED) {
			tls_recv_error(t, "the %s sent more records under one key than migrelay accepts (%llu)",
				       tls_peer_role(t), (unsigned long long)t->rx.seq);
			return -EKEYEXPIRED;
		}
		if (r < 0) {
			tls_recv_error(t, "the %s sent %s", tls_peer_role(t), tls_rec_strerror(r));
			return -EIO;
		}
		if (type != MR_REC_T_DATA) {
			r = tls_rec_control(t, content, pl, type);
			if (r <= 0)
				return r;
			continue;
		}
		if (pl == 0)
			continue; /* empty application data is allowed (RFC 8446 §5.4) */
		if (direct)
			return (ssize_t)pl;
		t->pp = content;
		t->plen = pl;
	}
}

/* Receiving thread. mr_tls_recv with kernel TLS receiving: record types arrive as a control message. */
static ssize_t tls_ktls_recv(struct mr_tls *t, unsigned char *p, size_t len)
{
	for (;;) {
		char cbuf[CMSG_SPACE(sizeof(unsigned char))];
		struct iovec v = { p, len };
		struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		unsigned char type = MR_REC_T_DATA;
		struct cmsghdr *cm;
		ssize_t n;
		int r;

		if (t->rx_closed)
			return 0;
		n = recvmsg(t->fd, &m, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno == EBADMSG || errno == EMSGSIZE) {
				tls_recv_error(t, "the %s sent %s (kernel TLS: %s)", tls_peer_role(t),
					       tls_rec_strerror(-errno), strerror(errno));
				return -EIO;
			}
			return tls_rx_failed(t, errno == EWOULDBLOCK ? -EAGAIN : -errno);
		}
		if (n == 0)
			return tls_rx_failed(t, 0);
		for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
			if (cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE)
				type = *CMSG_DATA(cm);
		if (type == MR_REC_T_DATA)
			return n;
		r = tls_rec_control(t, p, (size_t)n, type);
		if (r <= 0)
			return r;
	}
}

/*
 * Sending thread. Seals and sends close_notify, best effort: like
 * gnutls_bye before, it gives up after three SO_SNDTIMEO expiries, so a
 * peer that stopped reading cannot hold us here.
 */
static void tls_close_notify(struct mr_tls *t)
{
	static const unsigned char alert[2] = { 1 /* warning */, GNUTLS_A_CLOSE_NOTIFY };
	char cbuf[CMSG_SPACE(sizeof(unsigned char))] = { 0 };
	struct iovec v = { (void *)(uintptr_t)alert, sizeof(alert) };
	struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };
	int tries = 3;
	size_t off = 0, len;
	ssize_t n;

	if (t->ktls_tx) {
		struct cmsghdr *cm;

		m.msg_control = cbuf;
		m.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_TLS;
		cm->cmsg_type = TLS_SET_RECORD_TYPE;
		cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
		*CMSG_DATA(cm) = MR_REC_T_ALERT;
		do
			n = sendmsg(t->fd, &m, MSG_NOSIGNAL);
		while (n < 0 && (errno == EINTR || (errno == EAGAIN && --tries > 0)));
		return;
	}
	tls_tx_drop(t);
	n = mr_rec_seal(&t->tx, MR_REC_T_ALERT, &v, 1, t->sbuf, TLS_SBUF);
	if (n <= 0)
		return;
	len = (size_t)n;
	while (off < len) {
		n = send(t->fd, t->sbuf + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EINTR || (errno == EAGAIN && --tries > 0)))
			continue;
		if (n < 0)
			return;
		off += (size_t)n;
	}
}

static enum mr_rec_cipher tls_rec_cipher(gnutls_cipher_algorithm_t c)
{
	switch (c) {
	case GNUTLS_CIPHER_AES_128_GCM:
		return MR_REC_AES_128_GCM;
	case GNUTLS_CIPHER_AES_256_GCM:
		return MR_REC_AES_256_GCM;
	case GNUTLS_CIPHER_CHACHA20_POLY1305:
		return MR_REC_CHACHA20_POLY1305;
	default:
		return 0;
	}
}

static uint64_t tls_seq_load(const unsigned char s[8])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | s[i];
	return v;
}

union tls_ktls_info {
	struct tls_crypto_info base;
	struct tls12_crypto_info_aes_gcm_128 gcm128;
	struct tls12_crypto_info_aes_gcm_256 gcm256;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

/*
 * Fills the kernel's crypto_info for one direction (TLS 1.3: the first 4
 * IV bytes are the GCM salt, the other 8 the "iv"; ChaCha20 takes all 12).
 * Returns its size, 0 if the suite has no kernel equivalent.
 */
static size_t tls_ktls_info(union tls_ktls_info *k, enum mr_rec_cipher c, const gnutls_datum_t *key,
			    const gnutls_datum_t *iv, const unsigned char seq[8])
{
	memset(k, 0, sizeof(*k));
	k->base.version = TLS_1_3_VERSION;
	switch (c) {
	case MR_REC_AES_128_GCM:
		k->base.cipher_type = TLS_CIPHER_AES_GCM_128;
		memcpy(k->gcm128.salt, iv->data, 4);
		memcpy(k->gcm128.iv, iv->data + 4, 8);
		memcpy(k->gcm128.key, key->data, 16);
		memcpy(k->gcm128.rec_seq, seq, 8);
		return sizeof(k->gcm128);
	case MR_REC_AES_256_GCM:
		k->base.cipher_type = TLS_CIPHER_AES_GCM_256;
		memcpy(k->gcm256.salt, iv->data, 4);
		memcpy(k->gcm256.iv, iv->data + 4, 8);
		memcpy(k->gcm256.key, key->data, 32);
		memcpy(k->gcm256.rec_seq, seq, 8);
		return sizeof(k->gcm256);
	case MR_REC_CHACHA20_POLY1305:
		k->base.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
		memcpy(k->chacha.iv, iv->data, 12);
		memcpy(k->chacha.key, key->data, 32);
		memcpy(k->chacha.rec_seq, seq, 8);
		return sizeof(k->chacha);
	}
	return 0;
}

/*
 * Hands both directions to kernel TLS. Sets t->ktls_tx/ktls_rx for what
 * worked, t->ktls_why for what did not. Nothing may be buffered: rbuf is
 * empty and GnuTLS holds no record (checked by the caller).
 */
static void tls_ktls_start(struct mr_tls *t, enum mr_rec_cipher c, const gnutls_datum_t *k[2], const gnutls_datum_t *iv[2],
			   unsigned char seq[2][8])
{
	union tls_ktls_info info;
	size_t n;

	if (setsockopt(t->fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0) {
		int e = errno;

		snprintf(t->ktls_why, sizeof(t->ktls_why),
			 "kernel TLS is not available: setsockopt(TCP_ULP, \"tls\"): %s (%s)", strerror(e),
			 e == ENOENT ? "this kernel has no tls module: modprobe tls, or build it with CONFIG_TLS"
				     : "the socket is not a TCP connection, or the kernel refuses the TLS ULP");
		return;
	}
	n = tls_ktls_info(&info, c, k[0], iv[0], seq[0]);
	if (!n || setsockopt(t->fd, SOL_TLS, TLS_TX, &info, (socklen_t)n) < 0) {
		snprintf(t->ktls_why, sizeof(t->ktls_why), "kernel TLS refused our send keys: %s (%s)",
			 n ? strerror(errno) : "unsupported cipher", "records are sealed in user space");
		explicit_bzero(&info, sizeof(info));
		return;
	}
	t->ktls_tx = true;
	n = tls_ktls_info(&info, c, k[1], iv[1], seq[1]);
	if (!n || setsockopt(t->fd, SOL_TLS, TLS_RX, &info, (socklen_t)n) < 0)
		snprintf(t->ktls_why, sizeof(t->ktls_why),
			 "kernel TLS refused our receive keys: %s (sending uses kernel TLS, receiving opens records in user space)",
			 n ? strerror(errno) : "unsupported cipher");
	else
		t->ktls_rx = true;
	explicit_bzero(&info, sizeof(info));
}

/*
 * Handshake thread, once, right after a successful handshake: picks the
 * record layer. GnuTLS reads a record's header and then exactly its body
 * through tls_pull, so after the handshake no byte of the peer's first
 * records is inside GnuTLS; rbuf is ours and still empty. Anything
 * unusual (a record GnuTLS already holds, a suite we do not know, keys we
 * cannot get) keeps GnuTLS's record layer.
 */
static void tls_records_start(struct mr_tls *t)
{
	const char *e = getenv("MIGRELAY_TLS_RECORDS");
	const char *k = getenv("MIGRELAY_KTLS");
	gnutls_datum_t key[2], iv[2], mac;
	const gnutls_datum_t *kp[2] = { &key[0], &key[1] }, *ivp[2] = { &iv[0], &iv[1] };
	unsigned char seq[2][8];
	enum mr_rec_cipher c;
	int r;

	t->engine = TLS_ENG_GNUTLS;
	if (e && !strcmp(e, "gnutls")) {
		snprintf(t->ktls_why, sizeof(t->ktls_why), "kernel TLS not tried: MIGRELAY_TLS_RECORDS=gnutls");
		return;
	}
	c = tls_rec_cipher(gnutls_cipher_get(t->s));
	if (!t->buffered || !c || gnutls_record_check_pending(t->s) > 0 || t->rlen != 0) {
		snprintf(t->ktls_why, sizeof(t->ktls_why), "kernel TLS not tried: %s",
			 !t->buffered ? "no buffers" : !c ? "cipher suite not supported" : "records already buffered");
		return;
	}
	/* 0: our sending (write) state, 1: our receiving (read) state */
	for (int d = 0; d < 2; d++) {
		if (gnutls_record_get_state(t->s, d, &mac, &iv[d], &key[d], seq[d]) < 0 || iv[d].size != MR_REC_IV ||
		    key[d].size != mr_rec_key_len(c)) {
			snprintf(t->ktls_why, sizeof(t->ktls_why), "kernel TLS not tried: GnuTLS does not give the record keys");
			return;
		}
	}
	if (k && !strcmp(k, "0"))
		snprintf(t->ktls_why, sizeof(t->ktls_why), "kernel TLS disabled by MIGRELAY_KTLS=0");
	else
		tls_ktls_start(t, c, kp, ivp, seq);
	if (t->ktls_tx && t->ktls_rx) {
		t->engine = TLS_ENG_KTLS;
		return;
	}
	if (!t->ktls_tx && (r = mr_rec_init(&t->tx, c, key[0].data, key[0].size, iv[0].data, iv[0].size,
					    tls_seq_load(seq[0]))) < 0)
		goto gnutls;
	if ((r = mr_rec_init(&t->rx, c, key[1].data, key[1].size, iv[1].data, iv[1].size, tls_seq_load(seq[1]))) < 0)
		goto gnutls;
	t->engine = t->ktls_tx ? TLS_ENG_KTLS : TLS_ENG_INPLACE;
	if ((e = getenv("MIGRELAY_TLS_RECORD_LIMIT"))) {
		/* tests: reach the per-key record limit (record.h) after a few records */
		unsigned long long lim = strtoull(e, NULL, 10);

		if (lim >= 1 && lim < MR_REC_LIMIT_DEFAULT && !t->ktls_tx)
			mr_rec_set_limit(&t->tx, t->tx.seq + lim);
	}
	return;
gnutls:
	mr_rec_free(&t->tx);
	mr_rec_free(&t->rx);
	if (t->ktls_tx) {
		/* the kernel seals our records already: GnuTLS must not; receiving cannot work */
		t->engine = TLS_ENG_KTLS;
		t->ktls_rx = false;
	}
}

/* Receiving thread. Plaintext mode: what TLS left unread first, then the socket straight into <p>. */
static ssize_t tls_plain_recv(struct mr_tls *t, unsigned char *p, size_t len)
{
	size_t k;
	ssize_t n;

	if (t->plen) {
		k = t->plen < len ? t->plen : len;
		memcpy(p, t->pp, k);
		t->pp += k;
		t->plen -= k;
		return (ssize_t)k;
	}
	if (t->engine == TLS_ENG_GNUTLS && gnutls_record_check_pending(t->s) > 0)
		return tls_gnutls_recv(t, p, len);
	if (t->rpos < t->rlen) {
		k = t->rlen - t->rpos < len ? t->rlen - t->rpos : len;
		memcpy(p, t->rbuf + t->rpos, k);
		t->rpos += k;
		return (ssize_t)k;
	}
	for (;;) {
		n = recv(t->fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n >= 0)
			return n; /* 0: the peer closed (no close_notify in plaintext) */
		return tls_rx_failed(t, errno == EWOULDBLOCK ? -EAGAIN : -errno);
	}
}

ssize_t mr_tls_send_stable(struct mr_tls *t, const void *p, size_t len)
{
	if (t && p && len && len <= SSIZE_MAX && t->plain)
		return tls_splice_send(t, p, len);
	return mr_tls_send(t, p, len);
}

ssize_t mr_tls_send(struct mr_tls *t, const void *p, size_t len)
{
	if (!t || (!p && len))
		return -EINVAL;
	if (len > SSIZE_MAX)
		return -EMSGSIZE;
	if (t->plain || t->ktls_tx)
		return tls_raw_send(t, p, len);
	if (t->engine == TLS_ENG_INPLACE)
		return tls_rec_send(t, p, len);
	return tls_gnutls_send(t, p, len);
}

ssize_t mr_tls_recv(struct mr_tls *t, void *p, size_t len)
{
	if (!t || !p || len == 0)
		return -EINVAL;
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	if (t->plain)
		return tls_plain_recv(t, p, len);
	if (t->ktls_rx)
		return tls_ktls_recv(t, p, len);
	if (t->engine != TLS_ENG_GNUTLS)
		return tls_rec_recv(t, p, len);
	return tls_gnutls_recv(t, p, len);
}

int mr_tls_set_plaintext(struct mr_tls *t)
{
	/* a receive transport's armed receive would take bytes recv() expects */
	if (!t || t->ktls_tx || t->ktls_rx || t->rxo)
		return -EINVAL;
	t->plain = true;
	return 0;
}

int mr_tls_set_tx(struct mr_tls *t, const struct mr_tls_tx_ops *ops, void *ctx)
{
	if (!t)
		return -EINVAL;
	if (!ops) {
		tls_tx_drop(t);
		t->txo = NULL;
		t->txc = NULL;
		return 0;
	}
	if (t->plain || t->ktls_tx || t->engine != TLS_ENG_INPLACE || !ops->get || !ops->send || !ops->put)
		return -ENOTSUP;
	if (t->slen && tls_tx_flush(t) < 0)
		return -EPIPE;
	t->txo = ops;
	t->txc = ctx;
	t->tbuf = NULL;
	t->slen = 0;
	return 0;
}

int mr_tls_set_rx(struct mr_tls *t, const struct mr_tls_rx_ops *ops, void *ctx)
{
	if (!t)
		return -EINVAL;
	if (!ops) {
		if (t->rxo && t->uwin)
			t->rxo->put(t->rxc, t->ubid);
		if (t->plen && t->uwin && t->pp >= t->uwin && t->pp < t->uwin + t->ulen)
			t->plen = 0;
		t->uwin = NULL;
		t->uoff = t->ulen = 0;
		t->rxo = NULL;
		t->rxc = NULL;
		return 0;
	}
	if (t->plain || t->ktls_rx || t->engine != TLS_ENG_INPLACE || !t->rbuf || !ops->recv || !ops->put)
		return -ENOTSUP;
	t->rxo = ops;
	t->rxc = ctx;
	t->rx_timeout_ms = tls_rx_timeout(t); /* read once here, not per received buffer */
	return 0;
}

const char *mr_tls_engine(const struct mr_tls *t)
{
	if (!t)
		return "";
	if (t->plain)
		return "plaintext";
	switch (t->engine) {
	case TLS_ENG_INPLACE:
		return "in-place";
	case TLS_ENG_KTLS:
		return "ktls";
	default:
		return "gnutls";
	}
}

const char *mr_tls_ktls_error(const struct mr_tls *t)
{
	return t ? t->ktls_why : "";
}

ssize_t mr_tls_recv_all(struct mr_tls *t, void *p, size_t len)
{
	unsigned char *c = p;
	size_t off = 0;
	ssize_t n;

	if (!t || !p || len == 0 || len > SSIZE_MAX)
		return -EINVAL;
	while (off < len) {
		n = mr_tls_recv(t, c + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (off == 0)
			return n; /* 0 (clean close), -EAGAIN or an error, nothing lost */
		if (n == 0) {
			tls_recv_error(t, "the %s closed the connection in the middle of a message", tls_peer_role(t));
			return -ECONNRESET;
		}
		if (n == -EAGAIN) {
			tls_recv_error(t, "the %s stopped sending in the middle of a message", tls_peer_role(t));
			return -ETIMEDOUT;
		}
		return n;
	}
	return (ssize_t)len;
}

const char *mr_tls_last_error(const struct mr_tls *t)
{
	if (!t)
		return "";
	switch (atomic_load(&t->last)) {
	case TLS_LAST_SEND:
		return t->send_err;
	case TLS_LAST_RECV:
		return t->recv_err;
	default:
		return "";
	}
}

void mr_tls_bye(struct mr_tls *t)
{
	int r, tries = 3;

	if (!t || !t->s)
		return;
	if (t->plain) {
		shutdown(t->fd, SHUT_WR); /* no TLS any more: a FIN is the clean end */
		return;
	}
	if (t->ktls_tx || t->engine == TLS_ENG_INPLACE) {
		tls_close_notify(t);
		return;
	}
	do
		r = gnutls_bye(t->s, GNUTLS_SHUT_WR);
	while ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && --tries > 0);
}

int mr_random(void *p, size_t len)
{
	if (len == 0)
		return 0;
	if (!p)
		return -EINVAL;
	return gnutls_rnd(GNUTLS_RND_KEY, p, len) < 0 ? -EIO : 0;
}
