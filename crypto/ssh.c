/* SPDX-License-Identifier: MIT */
/*
 * SSH transport over libssh2 (1.10 and later): connection set-up (TCP,
 * handshake, host key, authentication, direct-streamlocal channel) and a
 * data path that one receiving and one sending thread share.
 *
 * libssh2 sessions are not thread-safe, so every libssh2 call is made
 * under c->mu. The session is non-blocking; a caller that gets EAGAIN
 * releases the lock and waits in poll(2) for the socket, so a receiver
 * waiting for data never holds up the sender (whose calls also read the
 * window adjustments that arrive) and the receiver's calls send our window
 * adjustments.
 *
 * Two libssh2 traits shape the rest:
 *
 * - A packet libssh2 could only partly write stays pending inside the
 *   session, and the next send must be the same packet from the same
 *   caller (anything else fails with LIBSSH2_ERROR_BAD_USE). With two
 *   threads that cannot be arranged, so our send callback never returns
 *   short: it waits for POLLOUT itself (bounded by mr_ssh_abort). The lock
 *   is then held while the kernel takes the rest of one packet (at most
 *   ~32 KiB), never while waiting for the peer's data or window; sshd
 *   reads its socket regardless of what it has to write, so this cannot
 *   deadlock against it.
 * - Either thread's call may read packets meant for the other (the sender
 *   drains incoming packets to find window adjustments; the receiver may
 *   read an adjustment). So our recv callback notes when it consumed
 *   bytes, and after such a call the other thread, if it is waiting in
 *   poll for the socket, is woken through its eventfd to try again:
 *   the socket alone would no longer tell it that its data is there.
 */
#include "ssh.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libssh2.h>

#include "msg.h"

/*
 * Strongest first among what libssh2 1.10 offers; the server picks the
 * first of ours it also has. No SHA-1 key exchange, no CBC, RC4, 3DES or
 * Blowfish. libssh2 1.10 has neither AES-GCM nor ChaCha20-Poly1305 nor
 * encrypt-then-MAC, so every byte costs AES-CTR plus an HMAC.
 */
#define SSH_KEX                                                                                             \
	"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp521,ecdh-sha2-nistp384,"          \
	"ecdh-sha2-nistp256,diffie-hellman-group18-sha512,diffie-hellman-group16-sha512,"                 \
	"diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha256"
#define SSH_CIPHERS "aes256-ctr,aes192-ctr,aes128-ctr"
#define SSH_MACS "hmac-sha2-512,hmac-sha2-256"
/* ssh-rsa last: libssh2 1.10 signs and verifies it with SHA-1 only. */
static const char *const ssh_hostkey_algs[] = {
	"ssh-ed25519", "ecdsa-sha2-nistp521", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp256", "ssh-rsa",
};
static const int ssh_hostkey_kh[] = {
	LIBSSH2_KNOWNHOST_KEY_ED25519,    LIBSSH2_KNOWNHOST_KEY_ECDSA_521, LIBSSH2_KNOWNHOST_KEY_ECDSA_384,
	LIBSSH2_KNOWNHOST_KEY_ECDSA_256, LIBSSH2_KNOWNHOST_KEY_SSHRSA,
};
#define SSH_N_HOSTKEY (sizeof(ssh_hostkey_algs) / sizeof(ssh_hostkey_algs[0]))

#define SSH_STREAMLOCAL "direct-streamlocal@openssh.com"
enum {
	SSH_TIMEOUT_MS = 30000,
	SSH_WINDOW = 16 << 20,        /* receive window: 16 MiB in flight per connection */
	SSH_PACKET = 32768,           /* libssh2 reads packets of at most ~35000 bytes */
	SSH_ROLE_RX = 0,
	SSH_ROLE_TX = 1,
};

struct mr_ssh {
	int fd;
	LIBSSH2_SESSION *s;
	LIBSSH2_CHANNEL *ch;
	pthread_mutex_t mu;     /* every libssh2 call on s/ch */
	bool consumed;          /* under mu: the recv callback got bytes during the current call */
	bool waiting[2];        /* under mu: that role waits in poll for the socket */
	int wake[2];            /* eventfds: wake that role's poll */
	int cancel;             /* eventfd: mr_ssh_abort */
	atomic_int abort_fd;    /* -1, or a socket whose POLLHUP aborts too (mr_ssh_set_abort_fd) */
	atomic_int rcv_ms;      /* mr_ssh_set_timeouts; 0: none */
	atomic_int snd_ms;
	atomic_bool aborted;
	bool eof_sent;
	char methods[256];
	char last[160];         /* under mu: last data-path error */
};

/* ---------------------------------------------------------------------- */
/* URL */

static bool url_chars_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return false;
	return true;
}

int mr_ssh_url_parse(const char *s, struct mr_ssh_url *u, char *err, size_t errlen)
{
	const char *p, *at, *hend, *slash;
	size_t n;

	memset(u, 0, sizeof(*u));
	if (!s || strncmp(s, "ssh://", 6) != 0) {
		crypto_msg(err, errlen, "not an ssh:// address");
		return -EINVAL;
	}
	p = s + 6;
	if (!url_chars_ok(p, strlen(p))) {
		crypto_msg(err, errlen, "%.80s: spaces or control characters in the address", s);
		return -EINVAL;
	}
	slash = strchr(p, '/');
	at = memchr(p, '@', slash ? (size_t)(slash - p) : strlen(p));
	if (at) {
		n = (size_t)(at - p);
		if (n == 0 || n >= sizeof(u->user) || memchr(p, ':', n)) {
			crypto_msg(err, errlen, "%.80s: bad user name", s);
			return -EINVAL;
		}
		memcpy(u->user, p, n);
		p = at + 1;
	} else {
		const char *env = getenv("USER");
		struct passwd *pw;

		if (env && *env && strlen(env) < sizeof(u->user) && url_chars_ok(env, strlen(env))) {
			strcpy(u->user, env);
		} else if ((pw = getpwuid(getuid())) && strlen(pw->pw_name) < sizeof(u->user)) {
			strcpy(u->user, pw->pw_name);
		} else {
			crypto_msg(err, errlen, "%.80s: no user given and our own user name is unknown", s);
			return -EINVAL;
		}
	}
	if (*p == '[') { /* [IPv6]:port */
		hend = strchr(p, ']');
		if (!hend || (slash && hend > slash) || hend == p + 1) {
			crypto_msg(err, errlen, "%.80s: bad [address]", s);
			return -EINVAL;
		}
		n = (size_t)(hend - p - 1);
		if (n >= sizeof(u->host)) {
			crypto_msg(err, errlen, "%.80s: host name too long", s);
			return -EINVAL;
		}
		memcpy(u->host, p + 1, n);
		p = hend + 1;
	} else {
		hend = p + strcspn(p, ":/");
		n = (size_t)(hend - p);
		if (n == 0 || n >= sizeof(u->host)) {
			crypto_msg(err, errlen, "%.80s: %s host name", s, n ? "too long a" : "no");
			return -EINVAL;
		}
		memcpy(u->host, p, n);
		if (memchr(u->host, '@', n) || memchr(u->host, '[', n) || memchr(u->host, ']', n)) {
			crypto_msg(err, errlen, "%.80s: bad host name", s);
			return -EINVAL;
		}
		p = hend;
	}
	u->port = MR_SSH_DEFAULT_PORT;
	if (*p == ':') {
		unsigned long v = 0;

		p++;
		if (*p < '0' || *p > '9') {
			crypto_msg(err, errlen, "%.80s: bad port", s);
			return -EINVAL;
		}
		while (*p >= '0' && *p <= '9' && v <= 65535)
			v = v * 10 + (unsigned long)(*p++ - '0');
		if (v == 0 || v > 65535 || (*p && *p != '/')) {
			crypto_msg(err, errlen, "%.80s: bad port", s);
			return -EINVAL;
		}
		u->port = (uint16_t)v;
	} else if (*p && *p != '/') {
		crypto_msg(err, errlen, "%.80s: unexpected characters after the host", s);
		return -EINVAL;
	}
	if (!*p) {
		strcpy(u->path, MR_SSH_DEFAULT_SOCKET);
		return 0;
	}
	/* The path is absolute: the '/' after the host belongs to it. */
	n = strlen(p);
	if (n < 2 || p[n - 1] == '/') {
		crypto_msg(err, errlen, "%.80s: the path must name a socket", s);
		return -EINVAL;
	}
	if (n >= sizeof(u->path)) {
		crypto_msg(err, errlen, "%.80s: socket path longer than %zu bytes", s, sizeof(u->path) - 1);
		return -EINVAL;
	}
	memcpy(u->path, p, n + 1);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* I/O callbacks and waiting */

/*
 * libssh2 also reads ssh-agent's socket through this callback, and 1.10
 * cannot resume an agent signature after EAGAIN (agent_sign frees its
 * request on any error), so the agent is waited for here (it is local;
 * SSH_AGENT_MS bounds a hung one).
 */
enum { SSH_AGENT_MS = 10000 };

static LIBSSH2_RECV_FUNC(ssh_recv_cb)
{
	struct mr_ssh *c = *abstract;
	ssize_t n;

	if (socket != c->fd) {
		struct pollfd pf = { .fd = socket, .events = POLLIN };

		if (poll(&pf, 1, SSH_AGENT_MS) == 0)
			return -ETIMEDOUT;
	}
	n = recv(socket, buffer, length, flags | MSG_DONTWAIT);

	if (n < 0)
		return -errno;
	if (n > 0)
		c->consumed = true;
	return n;
}

/* Never short (see the top of the file): waits for POLLOUT, or fails on abort. */
static LIBSSH2_SEND_FUNC(ssh_send_cb)
{
	struct mr_ssh *c = *abstract;
	size_t off = 0;

	while (off < length) {
		ssize_t n = send(socket, (const char *)buffer + off, length - off, flags | MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		struct pollfd pf[3] = { { .fd = socket, .events = POLLOUT },
					{ .fd = c->cancel, .events = POLLIN },
					{ .fd = atomic_load(&c->abort_fd), .events = 0 } };
		int snd = atomic_load(&c->snd_ms), r = poll(pf, 3, snd > 0 ? snd : -1);

		if (r < 0 && errno != EINTR)
			return -errno;
		if (pf[1].revents || pf[2].revents)
			return -ECONNABORTED;
		if (r == 0)
			return -ETIMEDOUT; /* the kernel took nothing for the whole send timeout */
	}
	return (ssize_t)length;
}

static int64_t now_ms(void);
static int64_t deadline_after(int ms);

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Waits (without c->mu) until the socket is readable, <role> is woken, or
 * the deadline (-1: none) passes. Returns 0, -ECANCELED or -ETIMEDOUT.
 */
static int ssh_wait(struct mr_ssh *c, int role, int64_t deadline)
{
	short ev = POLLIN;
	int dirs = libssh2_session_block_directions(c->s), r;

	if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		ev |= POLLOUT;
	for (;;) {
		struct pollfd pf[4] = { { .fd = c->fd, .events = ev },
					{ .fd = c->cancel, .events = POLLIN },
					{ .fd = c->wake[role], .events = POLLIN },
					{ .fd = atomic_load(&c->abort_fd), .events = 0 } };
		int tmo = -1;

		if (deadline >= 0) {
			int64_t left = deadline - now_ms();

			if (left <= 0)
				return -ETIMEDOUT;
			tmo = left > INT_MAX ? INT_MAX : (int)left;
		}
		r = poll(pf, 4, tmo);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (pf[1].revents || pf[3].revents || atomic_load(&c->aborted))
			return -ECANCELED;
		if (pf[2].revents) {
			uint64_t v;

			if (read(c->wake[role], &v, sizeof(v)) < 0) {
				/* nothing to reset: the next poll tells */
			}
		}
		if (r > 0)
			return 0;
	}
}

/* Under c->mu, after every libssh2 call by <role>: wake the other role if we may have read its packets. */
static void ssh_after_call(struct mr_ssh *c, int role)
{
	if (c->consumed && c->waiting[!role]) {
		uint64_t one = 1;

		if (write(c->wake[!role], &one, sizeof(one)) < 0) {
			/* the counter cannot overflow in practice; the peer polls anyway */
		}
	}
	c->consumed = false;
}

/* ---------------------------------------------------------------------- */
/* Errors */

static void ssh_lib_error(struct mr_ssh *c, char *buf, size_t len)
{
	char *msg = NULL;
	int mlen = 0;

	libssh2_session_last_error(c->s, &msg, &mlen, 0);
	snprintf(buf, len, "%.*s", mlen > 0 ? mlen : 0, msg ? msg : "");
}

/* A libssh2 error code of the data path as -errno. */
static int ssh_errno(int rc)
{
	switch (rc) {
	case LIBSSH2_ERROR_ALLOC:
		return -ENOMEM;
	case LIBSSH2_ERROR_SOCKET_DISCONNECT:
	case LIBSSH2_ERROR_SOCKET_RECV:
	case LIBSSH2_ERROR_SOCKET_SEND:
		return -ECONNRESET;
	case LIBSSH2_ERROR_CHANNEL_CLOSED:
	case LIBSSH2_ERROR_CHANNEL_EOF_SENT:
		return -EPIPE;
	case LIBSSH2_ERROR_TIMEOUT:
		return -ETIMEDOUT;
	default:
		return -EIO;
	}
}

/* ---------------------------------------------------------------------- */
/* Set-up helpers (one thread, before the connection is handed out) */

static pthread_once_t ssh_once = PTHREAD_ONCE_INIT;
static int ssh_init_rc;

static void ssh_global_init(void)
{
	ssh_init_rc = libssh2_init(0);
}

static int tcp_connect(const struct mr_ssh_url *u, int64_t deadline, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
	char port[8];
	int fd = -1, r = -EHOSTUNREACH, g;

	snprintf(port, sizeof(port), "%u", u->port);
	g = getaddrinfo(u->host, port, &hints, &res);
	if (g) {
		crypto_msg(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(g));
		return g == EAI_MEMORY ? -ENOMEM : -ENOENT;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int one = 1;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			struct pollfd pf = { .fd = fd, .events = POLLOUT };
			int64_t left = deadline - now_ms();
			socklen_t sl = sizeof(g);

			if (left > 0 && poll(&pf, 1, (int)left) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &g, &sl) == 0) {
				if (g == 0)
					break;
				r = -g;
			} else {
				r = -ETIMEDOUT;
			}
		} else {
			r = -errno;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		crypto_msg(err, errlen, "cannot connect to %s port %u: %s", u->host, u->port, strerror(-r));
		return r;
	}
	return fd;
}

/* Repeats a libssh2 call of the set-up while it says EAGAIN, until the deadline. */
#define SSH_SETUP_CALL(c, deadline, rc, call)                                          \
	do {                                                                           \
		while (((rc) = (call)) == LIBSSH2_ERROR_EAGAIN) {                       \
			int w_ = ssh_wait((c), SSH_ROLE_RX, (deadline));                \
			if (w_ < 0) {                                                   \
				(rc) = w_ == -ETIMEDOUT ? LIBSSH2_ERROR_TIMEOUT : LIBSSH2_ERROR_SOCKET_DISCONNECT; \
				break;                                                  \
			}                                                               \
		}                                                                       \
	} while (0)

static const char *home_dir(void)
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
static void kh_read(LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked, const char *path)
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
static void kh_name(const struct mr_ssh_url *u, char *buf, size_t len)
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
static void hostkey_pref(LIBSSH2_KNOWNHOSTS *kh, const char *name, char *out, size_t len)
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
static int check_hostkey(struct mr_ssh *c, LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked,
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
	kh_name(u, name, sizeof(name));
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
 * Whether the private key file is protected by a passphrase (OpenSSH
 * format: a cipher other than "none"; PEM: Proc-Type ENCRYPTED or PKCS#8
 * ENCRYPTED). We never ask for passphrases: the agent is the way.
 */
static bool key_encrypted(const char *path)
{
	static const char begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
	char buf[16384];
	unsigned char bin[128];
	FILE *f = fopen(path, "re");
	size_t n;
	const char *b;
	ssize_t bn;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (strstr(buf, "ENCRYPTED"))
		return true;
	b = strstr(buf, begin);
	if (!b)
		return false;
	b += sizeof(begin) - 1;
	/* "openssh-key-v1\0", then string ciphername: 15 + 4 + 6 bytes cover "none"; decode a little more */
	bn = b64_decode(b, strnlen(b, 160), bin, sizeof(bin)); /* <= 120 bytes */
	if (bn < 15 + 4 || memcmp(bin, "openssh-key-v1", 15) != 0)
		return false;
	uint32_t cl = (uint32_t)bin[15] << 24 | (uint32_t)bin[16] << 16 | (uint32_t)bin[17] << 8 | bin[18];
	return !(cl == 4 && bn >= 23 && memcmp(bin + 19, "none", 4) == 0);
}

/*
 * Like SSH_SETUP_CALL for calls that also talk to ssh-agent: libssh2 reads
 * the agent's socket through our non-blocking recv callback too, and its
 * EAGAIN may be the agent's, whose socket libssh2 1.10 does not show us.
 * So poll the SSH socket only briefly and retry (the agent is local).
 */
#define SSH_AGENT_CALL(c, deadline, rc, call)                                          \
	do {                                                                           \
		while (((rc) = (call)) == LIBSSH2_ERROR_EAGAIN) {                       \
			struct pollfd pf_ = { .fd = (c)->fd, .events = POLLIN };        \
			if (now_ms() >= (deadline)) {                                   \
				(rc) = LIBSSH2_ERROR_TIMEOUT;                           \
				break;                                                  \
			}                                                               \
			(void)poll(&pf_, 1, 1);                                         \
		}                                                                       \
	} while (0)

/* Whether the private key is RSA: libssh2 1.10 signs those with SHA-1 (ssh-rsa), which OpenSSH >= 8.8 refuses. */
static bool key_is_rsa(const char *path)
{
	static const char begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
	char buf[4096];
	unsigned char bin[120];
	FILE *f = fopen(path, "re");
	size_t n;
	const char *b;
	ssize_t bn;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (strstr(buf, "BEGIN RSA PRIVATE KEY"))
		return true;
	b = strstr(buf, begin);
	if (!b)
		return false;
	b += sizeof(begin) - 1;
	bn = b64_decode(b, strnlen(b, 160), bin, sizeof(bin));
	return bn > 7 && memmem(bin, (size_t)bn, "ssh-rsa", 7) != NULL;
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
static int authenticate(struct mr_ssh *c, const struct mr_ssh_url *u, const struct mr_ssh_opts *o,
			int64_t deadline, char *err, size_t errlen)
{
	char paths[3][PATH_MAX], tried[512] = "", encrypted[512] = "";
	const char *home = home_dir();
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

static int open_channel(struct mr_ssh *c, const struct mr_ssh_url *u, const struct mr_ssh_opts *o,
			int64_t deadline, char *err, size_t errlen)
{
	/* PROTOCOL (OpenSSH) 2.4: string socket path, string reserved, uint32 reserved */
	unsigned char msg[4 + sizeof(u->path) + 4 + 4];
	size_t plen = strlen(u->path), m = 0;
	uint32_t be;
	char why[200];
	int rc;

	be = htonl((uint32_t)plen);
	memcpy(msg + m, &be, 4);
	m += 4;
	memcpy(msg + m, u->path, plen);
	m += plen;
	memset(msg + m, 0, 8);
	m += 8;
	for (;;) {
		c->ch = libssh2_channel_open_ex(c->s, SSH_STREAMLOCAL, sizeof(SSH_STREAMLOCAL) - 1,
						o->window ? o->window : SSH_WINDOW, SSH_PACKET, (const char *)msg,
						(unsigned)m);
		if (c->ch)
			break;
		rc = libssh2_session_last_errno(c->s);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			break;
		rc = ssh_wait(c, SSH_ROLE_RX, deadline);
		if (rc < 0) {
			crypto_msg(err, errlen, "%s: %s while opening the channel to %s", u->host,
				   rc == -ETIMEDOUT ? "timed out" : "aborted", u->path);
			return rc;
		}
	}
	if (c->ch) {
		libssh2_channel_handle_extended_data2(c->ch, LIBSSH2_CHANNEL_EXTENDED_DATA_IGNORE);
		return 0;
	}
	ssh_lib_error(c, why, sizeof(why));
	if (rc == LIBSSH2_ERROR_CHANNEL_FAILURE && strstr(why, "administratively prohibited")) {
		crypto_msg(err, errlen,
			   "sshd on %s refused to forward to the unix socket %s (administratively prohibited): set "
			   "AllowStreamLocalForwarding yes (or local) in its sshd_config, and check that the key "
			   "is not restricted (no-port-forwarding, restrict) in authorized_keys",
			   u->host, u->path);
		return -EPERM;
	}
	/*
	 * OpenSSH's sshd answers "connect failed" both when the socket cannot
	 * be reached and when its policy refuses unix-socket forwarding
	 * (server_request_direct_streamlocal returns no channel either way;
	 * only its log says "refused streamlocal port forward"), so the
	 * sentence names both causes.
	 */
	if (rc == LIBSSH2_ERROR_CHANNEL_FAILURE && strstr(why, "connect failed")) {
		crypto_msg(err, errlen,
			   "sshd on %s could not open the unix socket %s: either nothing listens there (is "
			   "`migrelay serve --listen unix:%s` running, and may %s connect to it?), or sshd forbids "
			   "unix-socket forwarding (AllowStreamLocalForwarding no or remote, DisableForwarding, or "
			   "restrict/no-port-forwarding on the key; its log then says \"refused streamlocal port "
			   "forward\")",
			   u->host, u->path, u->path, u->user);
		return -ENXIO;
	}
	if (rc == LIBSSH2_ERROR_CHANNEL_FAILURE && strstr(why, "unknown channel type")) {
		crypto_msg(err, errlen, "the SSH server on %s does not support direct-streamlocal channels (%s)", u->host,
			   why);
		return -EOPNOTSUPP;
	}
	crypto_msg(err, errlen, "%s: cannot open the channel to %s: %s", u->host, u->path, why);
	return rc == LIBSSH2_ERROR_CHANNEL_FAILURE ? -EPERM : ssh_errno(rc);
}

static void set_methods(struct mr_ssh *c)
{
	const char *kex = libssh2_session_methods(c->s, LIBSSH2_METHOD_KEX);
	const char *hk = libssh2_session_methods(c->s, LIBSSH2_METHOD_HOSTKEY);
	const char *ccs = libssh2_session_methods(c->s, LIBSSH2_METHOD_CRYPT_CS);
	const char *csc = libssh2_session_methods(c->s, LIBSSH2_METHOD_CRYPT_SC);
	const char *mcs = libssh2_session_methods(c->s, LIBSSH2_METHOD_MAC_CS);
	const char *msc = libssh2_session_methods(c->s, LIBSSH2_METHOD_MAC_SC);

	snprintf(c->methods, sizeof(c->methods), "kex %s, hostkey %s, cipher %s/%s, mac %s/%s", kex ? kex : "?",
		 hk ? hk : "?", ccs ? ccs : "?", csc ? csc : "?", mcs ? mcs : "?", msc ? msc : "?");
}

static int set_prefs(struct mr_ssh *c, const struct mr_ssh_opts *o, const char *hostkeys, char *err, size_t errlen)
{
	const char *ciphers = o->ciphers ? o->ciphers : SSH_CIPHERS, *macs = o->macs ? o->macs : SSH_MACS;

	if (libssh2_session_method_pref(c->s, LIBSSH2_METHOD_KEX, SSH_KEX) ||
	    libssh2_session_method_pref(c->s, LIBSSH2_METHOD_HOSTKEY, hostkeys)) {
		crypto_msg(err, errlen, "libssh2 refused our key exchange preferences");
		return -EINVAL;
	}
	if (libssh2_session_method_pref(c->s, LIBSSH2_METHOD_CRYPT_CS, ciphers) ||
	    libssh2_session_method_pref(c->s, LIBSSH2_METHOD_CRYPT_SC, ciphers)) {
		crypto_msg(err, errlen, "libssh2 supports none of the ciphers \"%.100s\"", ciphers);
		return -EINVAL;
	}
	if (libssh2_session_method_pref(c->s, LIBSSH2_METHOD_MAC_CS, macs) ||
	    libssh2_session_method_pref(c->s, LIBSSH2_METHOD_MAC_SC, macs)) {
		crypto_msg(err, errlen, "libssh2 supports none of the MACs \"%.100s\"", macs);
		return -EINVAL;
	}
	return 0;
}

static void ssh_free(struct mr_ssh *c)
{
	if (!c)
		return;
	/*
	 * Whatever the close left undone, the peer gets no more: with the
	 * socket shut down, libssh2's frees cannot wait for it (a non-blocking
	 * channel_free would otherwise say EAGAIN while the peer is silent).
	 */
	if (c->fd >= 0)
		(void)shutdown(c->fd, SHUT_RDWR);
	for (int i = 0; c->ch && i < 100 && libssh2_channel_free(c->ch) == LIBSSH2_ERROR_EAGAIN; i++)
		;
	if (c->s)
		libssh2_session_free(c->s);
	if (c->fd >= 0)
		close(c->fd);
	for (int i = 0; i < 2; i++)
		if (c->wake[i] >= 0)
			close(c->wake[i]);
	if (c->cancel >= 0)
		close(c->cancel);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int mr_ssh_connect(const struct mr_ssh_url *u, const struct mr_ssh_opts *o, struct mr_ssh **out, char *err,
		   size_t errlen)
{
	static const struct mr_ssh_opts defaults;
	struct mr_ssh *c = NULL;
	LIBSSH2_KNOWNHOSTS *kh = NULL, *revoked = NULL;
	char user_kh[PATH_MAX], name[300], hostkeys[256];
	int64_t deadline;
	int r, rc;

	*out = NULL;
	if (!o)
		o = &defaults;
	deadline = now_ms() + (o->timeout_ms > 0 ? o->timeout_ms : SSH_TIMEOUT_MS);
	pthread_once(&ssh_once, ssh_global_init);
	if (ssh_init_rc) {
		crypto_msg(err, errlen, "libssh2 could not initialise its crypto library");
		return -EIO;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = c->cancel = c->wake[0] = c->wake[1] = -1;
	atomic_init(&c->abort_fd, -1);
	pthread_mutex_init(&c->mu, NULL);
	c->cancel = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->wake[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->wake[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->cancel < 0 || c->wake[0] < 0 || c->wake[1] < 0) {
		r = -errno;
		crypto_msg(err, errlen, "eventfd: %s", strerror(-r));
		goto out;
	}
	c->s = libssh2_session_init_ex(NULL, NULL, NULL, c);
	if (!c->s) {
		r = -ENOMEM;
		goto out;
	}
	libssh2_session_callback_set(c->s, LIBSSH2_CALLBACK_RECV, (void *)ssh_recv_cb);
	libssh2_session_callback_set(c->s, LIBSSH2_CALLBACK_SEND, (void *)ssh_send_cb);
	libssh2_session_set_blocking(c->s, 0);

	snprintf(user_kh, sizeof(user_kh), "%s", o->known_hosts ? o->known_hosts : "");
	if (!o->known_hosts)
		snprintf(user_kh, sizeof(user_kh), "%s/.ssh/known_hosts", home_dir());
	kh = libssh2_knownhost_init(c->s);
	revoked = libssh2_knownhost_init(c->s);
	if (!kh || !revoked) {
		r = -ENOMEM;
		goto out;
	}
	kh_read(kh, revoked, user_kh);
	if (!o->global_known_hosts || *o->global_known_hosts)
		kh_read(kh, revoked, o->global_known_hosts ? o->global_known_hosts : "/etc/ssh/ssh_known_hosts");
	kh_name(u, name, sizeof(name));
	hostkey_pref(kh, name, hostkeys, sizeof(hostkeys));
	if ((r = set_prefs(c, o, hostkeys, err, errlen)) < 0)
		goto out;

	r = tcp_connect(u, deadline, err, errlen);
	if (r < 0)
		goto out;
	c->fd = r;
	SSH_SETUP_CALL(c, deadline, rc, libssh2_session_handshake(c->s, c->fd));
	if (rc) {
		char why[200];

		ssh_lib_error(c, why, sizeof(why));
		if (rc == LIBSSH2_ERROR_TIMEOUT) {
			crypto_msg(err, errlen, "%s port %u: SSH handshake timed out", u->host, u->port);
			r = -ETIMEDOUT;
		} else if (rc == LIBSSH2_ERROR_KEX_FAILURE) {
			crypto_msg(err, errlen,
				   "%s port %u: no key exchange, host key, cipher or MAC in common (%s); libssh2 1.10 "
				   "has no rsa-sha2 host keys, so the server needs an ED25519 or ECDSA host key",
				   u->host, u->port, why);
			r = -EPROTO;
		} else if (rc == LIBSSH2_ERROR_SOCKET_DISCONNECT || rc == LIBSSH2_ERROR_SOCKET_RECV ||
			   rc == LIBSSH2_ERROR_SOCKET_SEND || rc == LIBSSH2_ERROR_BANNER_RECV) {
			crypto_msg(err, errlen, "%s port %u closed the connection during the SSH handshake (%s)",
				   u->host, u->port, why);
			r = -ECONNRESET;
		} else {
			crypto_msg(err, errlen, "%s port %u: SSH handshake failed: %s", u->host, u->port, why);
			r = -EPROTO;
		}
		goto out;
	}
	set_methods(c);
	if ((r = check_hostkey(c, kh, revoked, u, o, user_kh, err, errlen)) < 0)
		goto out;
	if ((r = authenticate(c, u, o, deadline, err, errlen)) < 0)
		goto out;
	if ((r = open_channel(c, u, o, deadline, err, errlen)) < 0)
		goto out;
	*out = c;
	c = NULL;
	r = 0;
out:
	if (kh)
		libssh2_knownhost_free(kh);
	if (revoked)
		libssh2_knownhost_free(revoked);
	ssh_free(c);
	return r;
}

/* ---------------------------------------------------------------------- */
/* Data path */

/* -1 for no timeout. */
static int64_t deadline_after(int ms)
{
	return ms > 0 ? now_ms() + ms : -1;
}

/* Under c->mu: record the error text of a failed data-path call. */
static int data_error(struct mr_ssh *c, int rc)
{
	if (atomic_load(&c->aborted))
		return -ECANCELED;
	ssh_lib_error(c, c->last, sizeof(c->last));
	return ssh_errno(rc);
}

/* Under c->mu: waits for the socket as <role> until <deadline> (-1: none), re-taking the lock. */
static int data_wait(struct mr_ssh *c, int role, int64_t deadline)
{
	int r;

	c->waiting[role] = true;
	pthread_mutex_unlock(&c->mu);
	r = ssh_wait(c, role, deadline);
	pthread_mutex_lock(&c->mu);
	c->waiting[role] = false;
	return r;
}

ssize_t mr_ssh_send_all(struct mr_ssh *c, const void *buf, size_t len)
{
	const char *p = buf;
	size_t off = 0;
	ssize_t r = 0;
	int snd = atomic_load(&c->snd_ms);
	int64_t deadline = deadline_after(snd);

	pthread_mutex_lock(&c->mu);
	if (c->eof_sent)
		r = -EPIPE;
	while (r == 0 && off < len) {
		ssize_t n;

		if (atomic_load(&c->aborted)) {
			r = -ECANCELED;
			break;
		}
		n = libssh2_channel_write(c->ch, p + off, len - off);
		ssh_after_call(c, SSH_ROLE_TX);
		if (n > 0) {
			off += (size_t)n;
			deadline = deadline_after(snd); /* the timeout bounds a stall, not the whole send */
		} else if (n == 0 || n == LIBSSH2_ERROR_EAGAIN) {
			/* The peer's window is closed: its adjustment comes in on the socket. */
			r = data_wait(c, SSH_ROLE_TX, deadline);
			if (r == -ETIMEDOUT)
				snprintf(c->last, sizeof(c->last), "the peer opened no window for %d ms", snd);
		} else {
			r = data_error(c, (int)n);
		}
	}
	pthread_mutex_unlock(&c->mu);
	return r < 0 ? r : (ssize_t)len;
}

ssize_t mr_ssh_recv(struct mr_ssh *c, void *buf, size_t len)
{
	int64_t deadline = deadline_after(atomic_load(&c->rcv_ms));
	ssize_t n;

	if (len == 0)
		return 0;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		if (atomic_load(&c->aborted)) {
			n = -ECANCELED;
			break;
		}
		n = libssh2_channel_read(c->ch, buf, len);
		ssh_after_call(c, SSH_ROLE_RX);
		if (n >= 0) /* 0: the peer sent EOF or closed the channel */
			break;
		if (n == LIBSSH2_ERROR_EAGAIN) {
			int w = data_wait(c, SSH_ROLE_RX, deadline);

			if (w < 0) {
				n = w == -ETIMEDOUT ? -EAGAIN : w; /* nothing received, nothing lost */
				break;
			}
			continue;
		}
		n = data_error(c, (int)n);
		break;
	}
	pthread_mutex_unlock(&c->mu);
	return n;
}

int mr_ssh_shutdown_send(struct mr_ssh *c)
{
	int r = 0, rc;

	pthread_mutex_lock(&c->mu);
	while (!c->eof_sent) {
		if (atomic_load(&c->aborted)) {
			r = -ECANCELED;
			break;
		}
		rc = libssh2_channel_send_eof(c->ch);
		ssh_after_call(c, SSH_ROLE_TX);
		if (rc == 0) {
			c->eof_sent = true;
		} else if (rc == LIBSSH2_ERROR_EAGAIN) {
			if ((r = data_wait(c, SSH_ROLE_TX, deadline_after(atomic_load(&c->snd_ms)))) < 0)
				break;
		} else {
			r = data_error(c, rc);
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return r;
}

void mr_ssh_abort(struct mr_ssh *c)
{
	uint64_t one = 1;

	atomic_store(&c->aborted, true);
	if (write(c->cancel, &one, sizeof(one)) < 0) {
		/* an eventfd write fails only on overflow; the flag is set anyway */
	}
	/* Also wake a peer blocked in the kernel on the socket. */
	(void)shutdown(c->fd, SHUT_RDWR);
}

/*
 * A polite close takes at most this long: the channel close and the
 * disconnect are sent, and we wait briefly for the peer's channel close.
 */
enum { SSH_CLOSE_MS = 2000 };

void mr_ssh_close(struct mr_ssh *c)
{
	int64_t deadline;
	int rc;

	if (!c)
		return;
	deadline = now_ms() + SSH_CLOSE_MS;
	if (!atomic_load(&c->aborted)) {
		SSH_SETUP_CALL(c, deadline, rc, libssh2_channel_close(c->ch));
		if (rc == 0)
			SSH_SETUP_CALL(c, deadline, rc, libssh2_session_disconnect(c->s, "closed"));
	}
	ssh_free(c);
}

void mr_ssh_set_abort_fd(struct mr_ssh *c, int fd)
{
	atomic_store(&c->abort_fd, fd);
}

void mr_ssh_set_timeouts(struct mr_ssh *c, int rcv_ms, int snd_ms)
{
	atomic_store(&c->rcv_ms, rcv_ms > 0 ? rcv_ms : 0);
	atomic_store(&c->snd_ms, snd_ms > 0 ? snd_ms : 0);
}

const char *mr_ssh_methods(const struct mr_ssh *c)
{
	return c->methods;
}

const char *mr_ssh_last_error(const struct mr_ssh *c)
{
	return c->last;
}

int mr_ssh_fd(const struct mr_ssh *c)
{
	return c->fd;
}
