/* SPDX-License-Identifier: MIT */
/*
 * SSH host keys (known_hosts as OpenSSH reads and writes it) and user
 * authentication (ssh-agent, then key files), for crypto/ssh.c's set-up.
 * Set-up thread only: the session is not shared yet.
 */
#include "ssh_int.h"

#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msg.h"

/* ssh-rsa last: libssh2 1.10 signs and verifies it with SHA-1 only. */
static const char *const ssh_hostkey_algs[] = {
	"ssh-ed25519", "ecdsa-sha2-nistp521", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp256", "ssh-rsa",
};
static const int ssh_hostkey_kh[] = {
	LIBSSH2_KNOWNHOST_KEY_ED25519,    LIBSSH2_KNOWNHOST_KEY_ECDSA_521, LIBSSH2_KNOWNHOST_KEY_ECDSA_384,
	LIBSSH2_KNOWNHOST_KEY_ECDSA_256, LIBSSH2_KNOWNHOST_KEY_SSHRSA,
};
#define SSH_N_HOSTKEY (sizeof(ssh_hostkey_algs) / sizeof(ssh_hostkey_algs[0]))

const char *ssh_home_dir(void)
{
	const char *h = getenv("HOME");
	struct passwd *pw;

	if (h && *h)
		return h;
	pw = getpwuid(getuid());
	return pw ? pw->pw_dir : "/";
}

/* SHA256:base64 (no padding), as ssh-keygen -l prints it. */
static void fingerprint(LIBSSH2_SESSION *s, char *out, size_t len)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *h = (const unsigned char *)libssh2_hostkey_hash(s, LIBSSH2_HOSTKEY_HASH_SHA256);
	size_t o = 0;

	if (!h) {
		snprintf(out, len, "(no SHA256 fingerprint)");
		return;
	}
	o = (size_t)snprintf(out, len, "SHA256:");
	for (int i = 0; i < 32 && o + 5 < len; i += 3) {
		uint32_t v = (uint32_t)h[i] << 16 | (i + 1 < 32 ? (uint32_t)h[i + 1] << 8 : 0) |
			     (i + 2 < 32 ? h[i + 2] : 0);
		int chars = i + 2 < 32 ? 4 : (i + 1 < 32 ? 3 : 2);

		for (int k = 0; k < chars; k++)
			out[o++] = b64[(v >> (18 - 6 * k)) & 63];
	}
	out[o] = '\0';
}

static const char *hostkey_type_name(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA:
		return "RSA";
	case LIBSSH2_HOSTKEY_TYPE_DSS:
		return "DSA";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
		return "ECDSA";
	case LIBSSH2_HOSTKEY_TYPE_ED25519:
		return "ED25519";
	default:
		return "unknown";
	}
}

static int hostkey_kh_bits(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA:
		return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
	case LIBSSH2_HOSTKEY_TYPE_DSS:
		return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
	case LIBSSH2_HOSTKEY_TYPE_ED25519:
		return LIBSSH2_KNOWNHOST_KEY_ED25519;
	default:
		return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
	}
}

/*
 * Reads an OpenSSH known_hosts file line by line into <kh>: libssh2's own
 * readfile gives up on the first line it cannot parse (a key type it does
 * not know, @cert-authority), while OpenSSH skips such lines. Lines marked
 * @revoked go to <revoked>. A missing file is an empty one.
 */
void ssh_kh_read(LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked, const char *path)
{
	FILE *f = fopen(path, "re");
	char line[8192];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		const char *p = line + strspn(line, " \t");
		size_t n;

		if (*p == '#' || *p == '\n' || !*p)
			continue;
		n = strlen(p);
		if (strncmp(p, "@revoked", 8) == 0 && (p[8] == ' ' || p[8] == '\t')) {
			p += 8 + strspn(p + 8, " \t");
			(void)libssh2_knownhost_readline(revoked, p, strlen(p), LIBSSH2_KNOWNHOST_FILE_OPENSSH);
			continue;
		}
		if (*p == '@')
			continue;
		(void)libssh2_knownhost_readline(kh, p, n, LIBSSH2_KNOWNHOST_FILE_OPENSSH);
	}
	fclose(f);
}

/* The name OpenSSH files a host under: "host" on port 22, else "[host]:port". */
void ssh_kh_name(const struct mr_ssh_url *u, char *buf, size_t len)
{
	if (u->port == 22)
		snprintf(buf, len, "%s", u->host);
	else
		snprintf(buf, len, "[%s]:%u", u->host, u->port);
}

/*
 * Host key algorithms: the types known_hosts holds for this host first,
 * strongest first within each group, as OpenSSH orders them; otherwise a
 * host known by its ECDSA key that also has an ED25519 one would look
 * unknown. A probe with a key that matches nothing tells "known with
 * another key of this type" (MISMATCH) from "no key of this type".
 */
void ssh_hostkey_pref(LIBSSH2_KNOWNHOSTS *kh, const char *name, char *out, size_t len)
{
	size_t o = 0;

	out[0] = '\0';
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < SSH_N_HOSTKEY; i++) {
			int known = libssh2_knownhost_checkp(kh, name, -1, "AAAA", 4,
							     LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_BASE64 |
								     ssh_hostkey_kh[i],
							     NULL) == LIBSSH2_KNOWNHOST_CHECK_MISMATCH;

			if (known == (pass == 0))
				o += (size_t)snprintf(out + o, len - o, "%s%s", o ? "," : "", ssh_hostkey_algs[i]);
		}
}

/* Appends one plain known_hosts line for the server's key to <path> (accept-new). */
static int kh_append(LIBSSH2_SESSION *s, const char *path, const char *name, const char *key, size_t keylen,
		     int bits)
{
	LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s);
	struct libssh2_knownhost *node = NULL;
	char line[8192];
	size_t n = 0;
	int fd, r = 0;

	if (!kh)
		return -ENOMEM;
	if (libssh2_knownhost_addc(kh, name, NULL, key, keylen, NULL, 0,
				   LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | bits, &node) ||
	    libssh2_knownhost_writeline(kh, node, line, sizeof(line), &n, LIBSSH2_KNOWNHOST_FILE_OPENSSH)) {
		libssh2_knownhost_free(kh);
		return -EINVAL;
	}
	libssh2_knownhost_free(kh);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT) {
		/* ~/.ssh may not exist yet; create only the last directory, as ssh does. */
		char dir[PATH_MAX];
		char *slash;

		snprintf(dir, sizeof(dir), "%s", path);
		slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = '\0';
			(void)mkdir(dir, 0700);
		}
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	}
	if (fd < 0)
		return -errno;
	if (write(fd, line, n) != (ssize_t)n)
		r = -EIO;
	if (close(fd) < 0 && !r)
		r = -errno;
	return r;
}

/* Checks the server's host key; see mr_ssh_connect for the results. */
int ssh_check_hostkey(struct mr_ssh *c, LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked,
			 const struct mr_ssh_url *u, const struct mr_ssh_opts *o, const char *user_kh, char *err,
			 size_t errlen)
{
	size_t keylen = 0;
	int type = 0, bits, rc, r;
	const char *key = libssh2_session_hostkey(c->s, &keylen, &type);
	char name[300], fp[64];
	int mask;

	if (!key) {
		crypto_msg(err, errlen, "%s did not present a host key", u->host);
		return -EPROTO;
	}
	ssh_kh_name(u, name, sizeof(name));
	fingerprint(c->s, fp, sizeof(fp));
	bits = hostkey_kh_bits(type);
	mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | bits;
	if (libssh2_knownhost_checkp(revoked, name, -1, key, keylen, mask, NULL) == LIBSSH2_KNOWNHOST_CHECK_MATCH) {
		crypto_msg(err, errlen, "the %s host key of %s (%s) is marked @revoked in known_hosts: refused",
			   hostkey_type_name(type), name, fp);
		return -EKEYREJECTED;
	}
	rc = libssh2_knownhost_checkp(kh, name, -1, key, keylen, mask, NULL);
	switch (rc) {
	case LIBSSH2_KNOWNHOST_CHECK_MATCH:
		return 0;
	case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
		crypto_msg(err, errlen,
			   "the host key of %s has CHANGED: it now presents the %s key %s, which is not the one in "
			   "known_hosts. Someone may be intercepting the connection, or the host was reinstalled. "
			   "Check the new fingerprint with the host's administrator; if the change is expected, "
			   "remove the old key (ssh-keygen -R '%s' -f %s) and connect again",
			   name, hostkey_type_name(type), fp, name, user_kh);
		return -EKEYREJECTED;
	case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
		break;
	default:
		crypto_msg(err, errlen, "cannot check the host key of %s against known_hosts", name);
		return -EIO;
	}
	if (!o->accept_new) {
		crypto_msg(err, errlen,
			   "the host key of %s is not known: it presents the %s key %s. Check that fingerprint "
			   "with the host's administrator (ssh-keygen -lf on its /etc/ssh/ssh_host_*_key.pub), "
			   "then add the key to %s (for example by connecting once with ssh -p %u %s@%s), or "
			   "accept it on first use with --ssh-accept-new",
			   name, hostkey_type_name(type), fp, user_kh, u->port, u->user, u->host);
		return -ENOKEY;
	}
	r = kh_append(c->s, user_kh, name, key, keylen, bits);
	if (r < 0) {
		crypto_msg(err, errlen, "cannot add the host key of %s to %s: %s", name, user_kh, strerror(-r));
		return r;
	}
	return 0;
}

/* base64 decoding of the body of a PEM-like block; returns the length or -1. */
static ssize_t b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < inlen; i++) {
		int v;
		char ch = in[i];

		if (ch >= 'A' && ch <= 'Z')
			v = ch - 'A';
		else if (ch >= 'a' && ch <= 'z')
			v = ch - 'a' + 26;
		else if (ch >= '0' && ch <= '9')
			v = ch - '0' + 52;
		else if (ch == '+')
			v = 62;
		else if (ch == '/')
			v = 63;
		else if (ch == '=')
			break;
		else
			continue; /* line breaks */
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outcap)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return (ssize_t)o;
}

/*
 * Reads the head of private key file <path>. *marked: the text holds
 * <marker>. Otherwise, for the OpenSSH format, decodes the first bytes of
 * its base64 body into <bin> and returns their count; 0 for another format,
 * -1 when the file cannot be read.
 */
static ssize_t key_head(const char *path, const char *marker, bool *marked, unsigned char *bin, size_t binlen)
{
	static const char begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
	char buf[16384];
	FILE *f = fopen(path, "re");
	size_t n;
	const char *b;

	*marked = false;
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (strstr(buf, marker)) {
		*marked = true;
		return 0;
	}
	b = strstr(buf, begin);
	if (!b)
		return 0;
	b += sizeof(begin) - 1;
	return b64_decode(b, strnlen(b, 160), bin, binlen); /* <= 120 bytes */
}

/*
 * Whether the private key file is protected by a passphrase (OpenSSH
 * format: a cipher other than "none"; PEM: Proc-Type ENCRYPTED or PKCS#8
 * ENCRYPTED). We never ask for passphrases: the agent is the way.
 */
static bool key_encrypted(const char *path)
{
	unsigned char bin[128];
	bool marked;
	ssize_t bn = key_head(path, "ENCRYPTED", &marked, bin, sizeof(bin));

	if (marked)
		return true;
	/* "openssh-key-v1\0", then string ciphername: 15 + 4 + 6 bytes cover "none"; decode a little more */
	if (bn < 15 + 4 || memcmp(bin, "openssh-key-v1", 15) != 0)
		return false;
	uint32_t cl = (uint32_t)bin[15] << 24 | (uint32_t)bin[16] << 16 | (uint32_t)bin[17] << 8 | bin[18];
	return !(cl == 4 && bn >= 23 && memcmp(bin + 19, "none", 4) == 0);
}

/* Whether the private key is RSA: libssh2 1.10 signs those with SHA-1 (ssh-rsa), which OpenSSH >= 8.8 refuses. */
static bool key_is_rsa(const char *path)
{
	unsigned char bin[128];
	bool marked;
	ssize_t bn = key_head(path, "BEGIN RSA PRIVATE KEY", &marked, bin, sizeof(bin));

	return marked || (bn > 7 && memmem(bin, (size_t)bn, "ssh-rsa", 7) != NULL);
}

static bool agent_try(struct mr_ssh *c, const struct mr_ssh_url *u, int64_t deadline)
{
	LIBSSH2_AGENT *a;
	struct libssh2_agent_publickey *id = NULL, *prev = NULL;
	bool ok = false;
	int rc;

	if (!getenv("SSH_AUTH_SOCK"))
		return false;
	a = libssh2_agent_init(c->s);
	if (!a)
		return false;
	SSH_AGENT_CALL(c, deadline, rc, libssh2_agent_connect(a));
	if (rc == 0)
		SSH_AGENT_CALL(c, deadline, rc, libssh2_agent_list_identities(a));
	if (rc == 0) {
		while (!ok && libssh2_agent_get_identity(a, &id, prev) == 0) {
			SSH_AGENT_CALL(c, deadline, rc, libssh2_agent_userauth(a, u->user, id));
			if (rc == 0)
				ok = true;
			else if (rc == LIBSSH2_ERROR_TIMEOUT || rc == LIBSSH2_ERROR_SOCKET_DISCONNECT)
				break;
			prev = id;
		}
		libssh2_agent_disconnect(a);
	}
	libssh2_agent_free(a);
	return ok;
}

/*
 * Agent first, then the key file(s). Returns 0, -EACCES (refused; <err>
 * names what was tried), -ENOENT (explicit key file missing), -ETIMEDOUT.
 */
int ssh_authenticate(struct mr_ssh *c, const struct mr_ssh_url *u, const struct mr_ssh_opts *o,
			int64_t deadline, char *err, size_t errlen)
{
	char paths[3][PATH_MAX], tried[512] = "", encrypted[512] = "";
	const char *home = ssh_home_dir();
	int n = 0, rc;
	size_t tl = 0, el = 0;
	bool rsa = false;

	if (!o->no_agent && agent_try(c, u, deadline))
		return 0;
	if (o->key_file) {
		if (access(o->key_file, R_OK) != 0) {
			int e = errno;

			crypto_msg(err, errlen, "cannot read the SSH key %s: %s", o->key_file, strerror(e));
			return -e;
		}
		snprintf(paths[n++], PATH_MAX, "%s", o->key_file);
	} else {
		static const char *const names[] = { "id_ed25519", "id_ecdsa", "id_rsa" };

		for (size_t i = 0; i < 3; i++) {
			snprintf(paths[n], PATH_MAX, "%s/.ssh/%s", home, names[i]);
			if (access(paths[n], R_OK) == 0)
				n++;
		}
	}
	for (int i = 0; i < n; i++) {
		if (key_encrypted(paths[i])) {
			el += (size_t)snprintf(encrypted + el, sizeof(encrypted) - el, "%s%s", el ? ", " : "", paths[i]);
			if (el >= sizeof(encrypted))
				el = sizeof(encrypted) - 1;
			continue;
		}
		SSH_SETUP_CALL(c, deadline, rc,
			       libssh2_userauth_publickey_fromfile_ex(c->s, u->user, (unsigned)strlen(u->user), NULL,
								      paths[i], NULL));
		if (rc == 0)
			return 0;
		if (rc == LIBSSH2_ERROR_TIMEOUT) {
			crypto_msg(err, errlen, "%s: timed out during authentication", u->host);
			return -ETIMEDOUT;
		}
		if (rc == LIBSSH2_ERROR_SOCKET_DISCONNECT || rc == LIBSSH2_ERROR_SOCKET_RECV ||
		    rc == LIBSSH2_ERROR_SOCKET_SEND) {
			crypto_msg(err, errlen, "%s closed the connection during authentication", u->host);
			return -ECONNRESET;
		}
		rsa = rsa || key_is_rsa(paths[i]);
		tl += (size_t)snprintf(tried + tl, sizeof(tried) - tl, "%s%s", tl ? ", " : "", paths[i]);
		if (tl >= sizeof(tried))
			tl = sizeof(tried) - 1;
	}
	crypto_msg(err, errlen,
		   "%s@%s refused our authentication (publickey; %s; %s%s%s%s). Add our public key to "
		   "~%s/.ssh/authorized_keys on the server, or name the right key with --ssh-key%s",
		   u->user, u->host,
		   o->no_agent ? "agent not asked" : getenv("SSH_AUTH_SOCK") ? "no agent key accepted" : "no ssh-agent",
		   tl ? "keys refused: " : "no usable key file", tried,
		   el ? "; passphrase-protected keys skipped, load them into ssh-agent with ssh-add: " : "", encrypted,
		   u->user,
		   rsa ? " (libssh2 1.10 signs RSA keys with SHA-1 only, which OpenSSH 8.8 and later refuse: use an "
			 "ED25519 or ECDSA key)" : "");
	return -EACCES;
}
