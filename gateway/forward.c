/* SPDX-License-Identifier: MIT */
#include "forward.h"

#include <stdio.h>
#include <string.h>

int gw_fwd_stream_get(struct gw_session *s, int id, struct gw_fwd_stream *out)
{
	struct gw_stream_info i;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = gw_stream_snapshot(s, id, &i)) < 0)
		return r;
	out->ok = i.complete;
	out->done = i.complete || i.fail_code;
	out->opened = i.target_connected;
	out->seen = i.peer_seen;
	out->out_bytes = i.out_bytes;
	out->in_bytes = i.in_bytes;
	if (i.fail_code)
		snprintf(out->why, sizeof(out->why), "%s", i.fail_text);
	return 0;
}
