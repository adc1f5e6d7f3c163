/* SPDX-License-Identifier: MIT */
/*
 * What `migrelay forward` needs to know about one stream of a client
 * session, read in one consistent snapshot (README.md "libvirt").
 */
#ifndef MR_GATEWAY_FORWARD_H
#define MR_GATEWAY_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "session.h"

struct gw_fwd_stream {
	bool done; /* complete or failed */
	bool ok;   /* both directions verified */
	/*
	 * The destination connected the stream to its target: its OPENED
	 * arrived (PROTOCOL.md §5.1). Only in a session whose server
	 * acknowledges OPENs (gw_session_cfg_get()->open_ack); OPENs of one
	 * session are handled in order, and across sessions this is how the
	 * forward keeps the accept order.
	 */
	bool opened;
	/*
	 * Some sign that the destination processed the OPEN: it acknowledged
	 * a chunk, sent bytes, or the stream ended. What the forward goes by
	 * with a server that does not acknowledge OPENs (best effort: a
	 * stream on which neither end says anything gives no sign).
	 */
	bool seen;
	uint64_t out_bytes;		   /* raw bytes sent to the destination */
	uint64_t in_bytes;		   /* raw bytes received from it */
	char why[WIRE_MAX_ERROR_TEXT + 1]; /* the failure, "" when none */
};

/*
 * Client session <s>, stream <id>: fills <out> from one consistent snapshot
 * (gw_stream_snapshot). Any thread but the session's own. Returns 0, or
 * -ENOENT when the id was never used.
 */
MR_MUST_CHECK int gw_fwd_stream_get(struct gw_session *s, int id, struct gw_fwd_stream *out);

#endif
