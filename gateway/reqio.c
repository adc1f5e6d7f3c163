/* SPDX-License-Identifier: MIT */
/* Socket I/O of the small request/answer servers (see reqio.h). */
#include "reqio.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t gw_reqio_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until <fd> is ready for <events> or <deadline> passes. Returns 0, -ETIMEDOUT or -errno. */
static int wait_ready(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int64_t left = deadline - gw_reqio_now_ms();

	if (left <= 0)
		return -ETIMEDOUT;
	if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
		return -errno;
	return 0;
}

int gw_reqio_accept(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd >= 0)
		return fd;
	if (errno == EMFILE || errno == ENFILE) {
		usleep(100000); /* do not spin while out of descriptors */
		return -EMFILE;
	}
	return -errno;
}

ssize_t gw_reqio_recv(int fd, void *buf, size_t len, int64_t deadline)
{
	for (;;) {
		int r = wait_ready(fd, POLLIN, deadline);
		ssize_t n;

		if (r < 0)
			return r;
		n = recv(fd, buf, len, 0);
		if (n >= 0)
			return n;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
}

int gw_reqio_send(int fd, const void *p, size_t len, int64_t deadline)
{
	const char *c = p;

	while (len) {
		int r = wait_ready(fd, POLLOUT, deadline);
		ssize_t n;

		if (r < 0)
			return r;
		n = send(fd, c, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		c += n;
		len -= (size_t)n;
	}
	return 0;
}
