/* SPDX-License-Identifier: MIT */
#include "listen.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "net.h"

void gw_listen_init(struct gw_listen_set *s)
{
	memset(s, 0, sizeof(*s));
	s->mode = GW_LISTEN_DEFAULT_MODE;
	for (int i = 0; i < GW_LISTEN_MAX; i++)
		s->l[i].fd = -1;
}

int gw_listen_add(struct gw_listen_set *s, const char *spec, char *why, size_t whylen)
{
	struct gw_listener *l;

	if (strncmp(spec, "unix:", 5)) {
		/* HOST:PORT with a port of 1..65535 (0: any free port); ":99999" must not wrap to another port */
		if (cli_parse_hostport(spec, true, NULL, 0, NULL) < 0) {
			snprintf(why, whylen,
				 "--listen \"%.100s\": takes HOST:PORT with a port from 1 to 65535 ([V6]:PORT for IPv6), or unix:PATH",
				 spec);
			return -EINVAL;
		}
		/* One TCP listener: a later one replaces it (the command line overrides a configuration file). */
		for (int i = 0; i < s->n; i++)
			if (!s->l[i].local) {
				s->l[i].spec = spec;
				return 0;
			}
	}
	if (s->n >= GW_LISTEN_MAX) {
		snprintf(why, whylen, "at most %d --listen", GW_LISTEN_MAX);
		return -E2BIG;
	}
	l = &s->l[s->n];
	l->spec = spec;
	l->fd = -1;
	if (!strncmp(spec, "unix:", 5)) {
		const char *p = spec + 5;

		if (p[0] != '/' || strlen(p) >= sizeof(l->path)) {
			snprintf(why, whylen, "--listen \"%.100s\": unix: takes an absolute path of at most %zu bytes",
				 spec, sizeof(l->path) - 1);
			return -EINVAL;
		}
		l->local = true;
		snprintf(l->path, sizeof(l->path), "%s", p);
	}
	s->n++;
	return 0;
}

int gw_listen_set_mode(struct gw_listen_set *s, const char *arg, char *why, size_t whylen)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 8);
	if (errno || end == arg || *end || v < 0600 || v > 0777) {
		snprintf(why, whylen,
			 "--socket-mode takes an octal mode from 0600 to 0777 (the owner needs rw), not \"%.40s\"",
			 arg);
		return -EINVAL;
	}
	s->mode = (mode_t)v;
	return 0;
}

int gw_listen_set_group(struct gw_listen_set *s, const char *arg, char *why, size_t whylen)
{
	struct group gr, *res = NULL;
	char buf[4096], *end;
	unsigned long v;

	if (getgrnam_r(arg, &gr, buf, sizeof(buf), &res) == 0 && res) {
		s->gid = res->gr_gid;
		s->has_gid = true;
		return 0;
	}
	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || v >= (gid_t)-1) {
		snprintf(why, whylen, "--socket-group \"%.60s\": no such group", arg);
		return -EINVAL;
	}
	s->gid = (gid_t)v;
	s->has_gid = true;
	return 0;
}

int gw_listen_count(const struct gw_listen_set *s, bool local)
{
	int n = 0;

	for (int i = 0; i < s->n; i++)
		n += s->l[i].local == local;
	return n;
}

/* A unix listening socket at l->path with mode and group set before listen(). fd or -errno with <why>. */
static int open_unix(const struct gw_listen_set *s, struct gw_listener *l, char *why, size_t whylen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	mode_t old;
	int fd, r;

	if (lstat(l->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(why, whylen, "--listen %.120s: the file exists and is not a socket", l->spec);
			return -EEXIST;
		}
		fd = net_unix_connect(l->path);
		if (fd >= 0) {
			close(fd);
			snprintf(why, whylen, "--listen %.120s: another server listens on that socket", l->spec);
			return -EADDRINUSE;
		}
		unlink(l->path); /* left by a server that stopped */
	}
	memcpy(sa.sun_path, l->path, strlen(l->path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		snprintf(why, whylen, "--listen %.120s: socket: %s", l->spec, strerror(errno));
		return r;
	}
	/* Created owner-only, then opened up to the mode asked for: never wider in between. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0) {
		r = -errno;
		snprintf(why, whylen, "--listen %.120s: %s", l->spec, strerror(errno));
		close(fd);
		return r;
	}
	/* No chown when the group is already right: a sandbox (systemd's ~@privileged) may forbid the call. */
	if ((s->has_gid && (stat(l->path, &st) < 0 || st.st_gid != s->gid) && chown(l->path, (uid_t)-1, s->gid) < 0) ||
	    chmod(l->path, s->mode) < 0) {
		r = -errno;
		snprintf(why, whylen, "--listen %.120s: cannot set the socket's %s: %s", l->spec,
			 errno == EPERM && s->has_gid ? "group (--socket-group: we must be a member of it)" : "mode",
			 strerror(errno));
		unlink(l->path);
		close(fd);
		return r;
	}
	if (listen(fd, 512) < 0) {
		r = -errno;
		snprintf(why, whylen, "--listen %.120s: %s", l->spec, strerror(errno));
		unlink(l->path);
		close(fd);
		return r;
	}
	return fd;
}

int gw_listen_open(struct gw_listen_set *s, char *why, size_t whylen)
{
	for (int i = 0; i < s->n; i++) {
		struct gw_listener *l = &s->l[i];
		int fd = l->local ? open_unix(s, l, why, whylen) : net_tcp_listen(l->spec, why, whylen);

		if (fd < 0) {
			gw_listen_close(s);
			return fd;
		}
		l->fd = fd;
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
			int r = -errno;

			snprintf(why, whylen, "--listen %.120s: %s", l->spec, strerror(errno));
			gw_listen_close(s);
			return r;
		}
	}
	return 0;
}

void gw_listen_close(struct gw_listen_set *s)
{
	for (int i = 0; i < s->n; i++) {
		struct gw_listener *l = &s->l[i];

		if (l->fd < 0)
			continue;
		close(l->fd);
		l->fd = -1;
		if (l->local)
			unlink(l->path);
	}
}

int gw_unix_peer_identity(int fd, char *buf, size_t len)
{
	struct ucred uc;
	socklen_t sl = sizeof(uc);
	struct passwd pw, *res = NULL;
	char pbuf[4096];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &sl) < 0)
		return -errno;
	if (getpwuid_r(uc.uid, &pw, pbuf, sizeof(pbuf), &res) == 0 && res && res->pw_name[0])
		snprintf(buf, len, "UID=%s", res->pw_name);
	else
		snprintf(buf, len, "UID=%u", (unsigned)uc.uid);
	return 0;
}
