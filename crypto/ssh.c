/* SPDX-License-Identifier: MIT */
/*
 * SSH transport over libssh2 (1.10 and later): connection set-up (TCP,
 * handshake, then host key and authentication in ssh_auth.c, then the
 * direct-streamlocal channel) and a data path that one receiving and one
 * sending thread share.
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
 *
 * This file: the URL and the connection's set-up and close; the callbacks,
 * waits and the data path are in ssh_io.c, host keys and authentication in
 * ssh_auth.c.
 */
#include "ssh_int.h"

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
 * Among what libssh2 1.10 offers; the server picks the first of ours it
 * also has. No SHA-1 key exchange, no CBC, RC4, 3DES or Blowfish. libssh2
 * 1.10 has neither AES-GCM nor ChaCha20-Poly1305 nor encrypt-then-MAC, so
 * every byte costs AES-CTR plus an HMAC. The key exchange is strongest
 * first; cipher and MAC are cheapest first, as OpenSSH orders them and as
 * the TLS transport puts AES-128-GCM first (tls_int.h): AES-128 (10 rounds
 * against 14) and HMAC-SHA-256 (SHA instructions; SHA-512 has none here)
 * made a migration over SSH about a quarter faster than aes256-ctr with
 * hmac-sha2-512 (bench/README.md). Both pairs stay allowed.
 */
#define SSH_KEX                                                                                             \
	"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp521,ecdh-sha2-nistp384,"          \
	"ecdh-sha2-nistp256,diffie-hellman-group18-sha512,diffie-hellman-group16-sha512,"                 \
	"diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha256"
#define SSH_CIPHERS "aes128-ctr,aes192-ctr,aes256-ctr"
#define SSH_MACS "hmac-sha2-256,hmac-sha2-512"

#define SSH_STREAMLOCAL "direct-streamlocal@openssh.com"
enum {
	SSH_TIMEOUT_MS = 30000,
	SSH_WINDOW = 16 << 20,        /* receive window: 16 MiB in flight per connection */
	SSH_PACKET = 32768,           /* libssh2 reads packets of at most ~35000 bytes */
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
			int64_t left = deadline - ssh_now_ms();
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

static int open_channel(struct mr_ssh *c, const struct mr_ssh_url *u, const struct mr_ssh_opts *o,
			int64_t deadline, char *err, size_t errlen)
{
	/* PROTOCOL (OpenSSH) 2.4: string socket path, string reserved, uint32 reserved */
	unsigned char msg[4 + sizeof(u->path) + 4 + 4];
	size_t plen = strlen(u->path), m = 0;
	uint32_t be;
	char why[200];
	int rc = 0;

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
	deadline = ssh_now_ms() + (o->timeout_ms > 0 ? o->timeout_ms : SSH_TIMEOUT_MS);
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
		snprintf(user_kh, sizeof(user_kh), "%s/.ssh/known_hosts", ssh_home_dir());
	kh = libssh2_knownhost_init(c->s);
	revoked = libssh2_knownhost_init(c->s);
	if (!kh || !revoked) {
		r = -ENOMEM;
		goto out;
	}
	ssh_kh_read(kh, revoked, user_kh);
	if (!o->global_known_hosts || *o->global_known_hosts)
		ssh_kh_read(kh, revoked, o->global_known_hosts ? o->global_known_hosts : "/etc/ssh/ssh_known_hosts");
	ssh_kh_name(u, name, sizeof(name));
	ssh_hostkey_pref(kh, name, hostkeys, sizeof(hostkeys));
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
	if ((r = ssh_check_hostkey(c, kh, revoked, u, o, user_kh, err, errlen)) < 0)
		goto out;
	if ((r = ssh_authenticate(c, u, o, deadline, err, errlen)) < 0)
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
	deadline = ssh_now_ms() + SSH_CLOSE_MS;
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

const char *mr_ssh_last_error(struct mr_ssh *c, char *buf, size_t len)
{
	pthread_mutex_lock(&c->mu);
	snprintf(buf, len, "%s", c->last);
	pthread_mutex_unlock(&c->mu);
	return buf;
}

int mr_ssh_fd(const struct mr_ssh *c)
{
	return c->fd;
}
