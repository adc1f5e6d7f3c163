/* SPDX-License-Identifier: MIT */
/*
 * `migrelay migrate`: QEMU's connections to its private unix sockets
 * (multifd, NBD), each opened as a stream of the session in accept order,
 * and the disk mirrors: --copy-storage as libvirt's copy-storage-all (sync
 * full), --copy-storage-inc as its copy-storage-inc (sync top: the
 * destination's disk is an overlay over the same backing chain), and
 * --copy-storage-synchronous-writes (copy-mode write-blocking).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "migrate.h"
#include "net.h"
#include "target.h"

/* Accepts QEMU's connections in order and opens one stream for each, in that order. */
static void *listener_main(void *arg)
{
	struct listener *l = arg;

	while (!atomic_load(&l->stop) && l->accepted < l->max) {
		struct pollfd pfd = {.fd = l->lfd, .events = POLLIN};
		int fd, id;

		if (poll(&pfd, 1, 200) <= 0)
			continue;
		fd = accept4(l->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		id = gw_stream_open(l->s, l->role, fd, fd, &gw_sock_ops, NULL);
		if (id < 0) {
			gw_err("cannot open a stream for QEMU's connection: %s", strerror(-id));
			close(fd);
			l->err = id;
			break;
		}
		l->ids[l->accepted++] = id;
	}
	return NULL;
}

int mig_listener_start(struct listener *l, struct gw_session *s, const char *path, uint8_t role, int max)
{
	memset(l, 0, sizeof(*l));
	l->s = s;
	l->role = role;
	l->max = max;
	l->lfd = net_unix_listen(path, 16);
	if (l->lfd < 0)
		return l->lfd;
	if (pthread_create(&l->thr, NULL, listener_main, l) != 0) {
		close(l->lfd);
		return -EAGAIN;
	}
	l->started = true;
	return 0;
}

void mig_listener_stop(struct listener *l)
{
	if (!l->started)
		return;
	atomic_store(&l->stop, 1);
	pthread_join(l->thr, NULL);
	close(l->lfd);
	l->started = false;
}
/* Waits until every block job of ours is gone (after cancel) or ready (before migrating). */
static int wait_jobs(struct mig *m, bool want_ready)
{
	for (int i = 0; !mig_cancel_flag; i++) {
		struct json_object *ret = NULL;
		int n, ready = 0, ours = 0;

		if (qmp_cmd(m->q, "query-block-jobs", NULL, &ret, m->err, sizeof(m->err)) < 0)
			return -EIO;
		n = (int)json_object_array_length(ret);
		for (int k = 0; k < n; k++) {
			struct json_object *j = json_object_array_get_idx(ret, k), *v;

			if (!json_object_object_get_ex(j, "device", &v) ||
			    strncmp(json_object_get_string(v), "migrelay-", 9))
				continue;
			ours++;
			if (json_object_object_get_ex(j, "ready", &v) && json_object_get_boolean(v))
				ready++;
			if (json_object_object_get_ex(j, "status", &v) &&
			    !strcmp(json_object_get_string(v), "concluded") && !want_ready) {
				/* fine: it is on its way out */
			}
		}
		json_object_put(ret);
		if (want_ready && ours < m->o.ndevices) {
			snprintf(m->err, sizeof(m->err), "a disk mirror ended before it was ready");
			return -EIO;
		}
		if ((want_ready && ready == ours) || (!want_ready && ours == 0))
			return 0;
		if (want_ready && i % 10 == 0 && !m->o.json && !m->o.quiet)
			fprintf(stderr, "migrelay migrate: waiting for %d of %d disk mirror(s) to be ready\n",
				ours - ready, ours);
		usleep(200000);
	}
	return -ECANCELED;
}

/*
 * Mirrors every --copy-storage(-inc) node into an NBD client whose socket is
 * a stream of the session, and waits until all are in sync. The NBD export
 * on the destination carries the node's own name; for --copy-storage-inc it
 * is the destination's top image, whose backing chain supplies the rest.
 */
int mig_start_mirrors(struct mig *m)
{
	int r = qmp_cmdf(m->q, "migrate-set-capabilities", NULL, m->err, sizeof(m->err),
			 "{\"capabilities\": [{\"capability\": \"pause-before-switchover\", \"state\": true}]}");

	if (r < 0)
		return r;
	for (int i = 0; i < m->o.ndevices; i++) {
		char path[128];
		const char *d = m->o.devices[i]; /* passed wire_name_ok: nothing to escape */

		snprintf(path, sizeof(path), "%s/nbd-%d.sock", m->dir, i);
		if ((r = mig_listener_start(&m->nbd[i], m->s, path, WIRE_ROLE_NBD, 64)) < 0) {
			snprintf(m->err, sizeof(m->err), "cannot listen for the disk mirror: %s", strerror(-r));
			return r;
		}
		r = qmp_cmdf(m->q, "blockdev-add", NULL, m->err, sizeof(m->err),
			     "{\"driver\": \"nbd\", \"node-name\": \"migrelay-nbd-%s\", "
			     "\"server\": {\"type\": \"unix\", \"path\": \"%s\"}, \"export\": \"%s\"}",
			     d, path, d);
		if (r < 0)
			return r;
		m->nbd_nodes = i + 1;
		r = qmp_cmdf(m->q, "blockdev-mirror", NULL, m->err, sizeof(m->err),
			     "{\"job-id\": \"migrelay-%s\", \"device\": \"%s\", \"target\": \"migrelay-nbd-%s\", "
			     "\"sync\": \"%s\", \"copy-mode\": \"%s\"}",
			     d, d, d, m->inc[i] ? "top" : "full", m->sync_writes ? "write-blocking" : "background");
		if (r < 0)
			return r;
	}
	return wait_jobs(m, true);
}

/* Ends the mirrors (a cancelled mirror that was ready leaves a consistent copy) and waits until they are gone. */
void mig_cancel_mirrors(struct mig *m)
{
	char err[QMP_ERR_MAX];

	for (int i = 0; i < m->o.ndevices; i++)
		if (qmp_cmdf(m->q, "block-job-cancel", NULL, err, sizeof(err), "{\"device\": \"migrelay-%s\"}",
			     m->o.devices[i]) < 0)
			gw_dbg("block-job-cancel %s: %s", m->o.devices[i], err);
	if (wait_jobs(m, false) < 0)
		gw_warn("disk mirrors did not end: %s", m->err);
}

/* Removes the NBD client nodes: their connections, and so the NBD streams, end. */
void mig_drop_nbd_nodes(struct mig *m)
{
	char err[QMP_ERR_MAX];

	for (int i = 0; i < m->nbd_nodes; i++)
		if (qmp_cmdf(m->q, "blockdev-del", NULL, err, sizeof(err), "{\"node-name\": \"migrelay-nbd-%s\"}",
			     m->o.devices[i]) < 0)
			gw_warn("blockdev-del migrelay-nbd-%s: %s", m->o.devices[i], err);
	m->nbd_nodes = 0;
}
