// SPDX-License-Identifier: MIT
/* Target functions: qmp_parser_feed, qmp_msg_classify, qmp_event_name, qmp_open_fd, qmp_cmd, qmp_next_event */
/*
 * Bytes a QEMU monitor might send us. Input: one mode byte, one chunk-size
 * byte, then the stream.
 *   mode even: the pure parser alone, fed <chunk> bytes at a time (0: all),
 *              each message classified; a lowered size cap exercises
 *              -EMSGSIZE.
 *   mode odd:  the client over a socketpair whose far end already holds the
 *              stream and then EOF: greeting, qmp_capabilities, a few
 *              commands and events, until the stream runs dry. No call can
 *              wait, since the far end is shut down.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/log.h"
#include "gateway/qmp.h"

static void parse_only(const uint8_t *d, size_t n, size_t chunk, size_t cap)
{
	struct qmp_parser p;
	struct json_object *msg;
	char err[QMP_ERR_MAX];
	int64_t id;
	size_t len;
	int r, guard;

	if (qmp_parser_init(&p) < 0)
		return;
	if (cap)
		p.max_msg = cap;
	for (guard = 0; n && guard < 1 << 20; guard++) {
		len = chunk && chunk < n ? chunk : n;
		r = qmp_parser_feed(&p, (const char *)d, len, &msg);
		if (r < 0)
			break;
		if (msg) {
			if (qmp_msg_classify(msg, &id, err, sizeof(err)) == QMP_MSG_EVENT)
				(void)qmp_event_name(msg);
			json_object_put(msg);
		}
		d += r;
		n -= (size_t)r;
	}
	qmp_parser_fini(&p);
}

static void client(const uint8_t *d, size_t n)
{
	struct json_object *ret = NULL, *ev = NULL;
	struct qmp *q = NULL;
	char err[QMP_ERR_MAX];
	ssize_t w;
	int sv[2], i, r;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	/* what does not fit in the socket buffer is dropped: the far end never blocks */
	w = send(sv[1], d, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)w;
	shutdown(sv[1], SHUT_WR);
	if (qmp_open_fd(&q, sv[0], 200, err, sizeof(err)) < 0)
		goto out;
	for (i = 0; i < 8; i++) {
		r = qmp_cmd(q, i & 1 ? "query-migrate" : "query-status", NULL, &ret, err, sizeof(err));
		json_object_put(ret);
		ret = NULL;
		while (qmp_next_event(q, 0, &ev) == 0) {
			(void)qmp_event_name(ev);
			json_object_put(ev);
		}
		if (r < 0 && r != -EREMOTEIO)
			break;
	}
out:
	qmp_close(q);
	close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	uint8_t mode, chunk;

	gw_log_level = -1; /* silent */
	if (n < 2)
		return 0;
	mode = d[0];
	chunk = d[1];
	if (mode & 1)
		client(d + 2, n - 2);
	else
		parse_only(d + 2, n - 2, chunk, mode & 2 ? 64 + (size_t)chunk * 4 : 0);
	return 0;
}
