/* SPDX-License-Identifier: MIT */
#include "forward.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int gw_fwd_stream_get(struct gw_session *s, int id, struct gw_fwd_stream *out)
{
	const struct gw_stream *st;
	int r = -ENOENT;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&s->lock);
	if (id < 0 || id >= s->nstreams || !(st = s->streams[id]))
		goto out;
	out->ok = st->complete;
	out->done = st->complete || st->fail_code;
	out->seen =
	    out->done || st->sm.cr.acked_chunks > 0 || st->sm.in_bytes > 0 || st->sm.in_held > 0 || st->sm.in_end_seen;
	out->out_bytes = st->sm.out_bytes;
	out->in_bytes = st->sm.in_bytes;
	if (st->fail_code)
		snprintf(out->why, sizeof(out->why), "%s", st->fail_text);
	r = 0;
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}
