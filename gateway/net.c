/* SPDX-License-Identifier: MIT */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int net_split_hostport(const char *spec, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon, *h = spec;
	size_t hl;

	if (spec[0] == '[') {
		const char *rb = strchr(spec, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = spec + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - spec);
	}
	if (hl == 0 || hl >= hostlen || strlen(colon + 1) == 0 || strlen(colon + 1) >= portlen)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int connect_timeout(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
	int fl = fcntl(fd, F_GETFL), r, err = 0;
	socklen_t el = sizeof(err);
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };

	if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	r = connect(fd, sa, len);
	if (r < 0 && errno != EINPROGRESS)
		return -errno;
	if (r < 0) {
		do
			r = poll(&pfd, 1, timeout_ms);
		while (r < 0 && errno == EINTR);
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0)
			return -errno;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			return -errno;
		if (err)
			return -err;
	}
	if (fcntl(fd, F_SETFL, fl) < 0)
		return -errno;
	return 0;
}

int net_tcp_connect(const char *spec, int timeout_ms, char *why, size_t whylen)
{
	char host[256], port[32];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG }, *res = NULL, *ai;
	int r, fd = -1, last = -EHOSTUNREACH;

	if (net_split_hostport(spec, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(why, whylen, "\"%.100s\" is not HOST:PORT", spec);
		return -EINVAL;
	}
	r = getaddrinfo(host, port, &hints, &res);
	if (r) {
		snprintf(why, whylen, "cannot resolve %.100s: %s", host, gai_strerror(r));
		return -EHOSTUNREACH;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			last = -errno;
			continue;
		}
		r = connect_timeout(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms);
		if (r == 0)
			break;
		last = r;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(why, whylen, "cannot connect to %.100s: %s (is `migrelay serve` running there, and is the port open?)",
			 spec, strerror(-last));
		return last;
	}
	net_tune_tcp(fd);
	return fd;
}

int net_tcp_listen(const char *spec, char *why, size_t whylen)
{
	char host[256], port[32];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res = NULL;
	int r, fd, one = 1;

	if (net_split_hostport(spec, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(why, whylen, "--listen \"%.100s\" is not HOST:PORT (for example 0.0.0.0:4433)", spec);
		return -EINVAL;
	}
	r = getaddrinfo(strcmp(host, "*") ? host : NULL, port, &hints, &res);
	if (r) {
		snprintf(why, whylen, "cannot resolve %.100s: %s", host, gai_strerror(r));
		return -EINVAL;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 512) < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot listen on %.100s: %s", spec, strerror(errno));
		close(fd);
		goto out;
	}
	r = fd;
out:
	if (r < 0 && !why[0])
		snprintf(why, whylen, "cannot listen on %.100s: %s", spec, strerror(-r));
	freeaddrinfo(res);
	return r;
}

static int unix_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

int net_unix_connect(const char *path)
{
	struct sockaddr_un sa;
	int fd, r;

	if ((r = unix_addr(&sa, path)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/*
	 * Non-blocking: a listener that stopped accepting fills its backlog, and
	 * a blocking connect would then wait for ever (in a session's reader
	 * thread). A unix connect either completes at once or says EAGAIN.
	 */
	for (int waited = 0;; waited += 20) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		r = errno == EAGAIN && waited >= NET_UNIX_CONNECT_MS ? -ETIMEDOUT : -errno;
		if (r != -EAGAIN && r != -EINTR) {
			close(fd);
			return r;
		}
		usleep(20000);
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int net_unix_listen(const char *path, int backlog)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, r;

	if ((r = unix_addr(&sa, path)) < 0)
		return r;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

void net_tune_tcp(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void net_local_sndbuf(int fd)
{
	int v = NET_LOCAL_SNDBUF;

	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
}

bool net_peer_is_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &l) < 0)
		return false;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss.ss_family == AF_INET6) {
		const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

void net_set_timeouts(int fd, int rcv_ms, int snd_ms)
{
	struct timeval tv;

	tv.tv_sec = rcv_ms / 1000;
	tv.tv_usec = (rcv_ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	tv.tv_sec = snd_ms / 1000;
	tv.tv_usec = (snd_ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

ssize_t net_write_all(int fd, const void *p, size_t len)
{
	const char *c = p;
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, c + done, len - done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return (ssize_t)len;
}

int net_private_dir(char *buf, size_t len, const char *prefix)
{
	const char *base = getenv("MIGRELAY_SOCKET_DIR");

	if (!base || !*base)
		base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	/* sun_path holds 108 bytes: leave room for the socket names inside */
	if ((size_t)snprintf(buf, len, "%s/%s-XXXXXX", base, prefix) >= len || strlen(buf) > 80)
		return -ENAMETOOLONG;
	if (!mkdtemp(buf))
		return -errno;
	return 0;
}
