/* SPDX-License-Identifier: MIT */
#include "cmd_connect.h"

#include <errno.h>
#include <stdio.h>

#include "exitcodes.h"

int cmd_connect_exit(int r, const struct gw_connect_fail *f)
{
	switch (f->stage) {
	case GW_CS_CONFIG:
		return MR_EXIT_USAGE;
	case GW_CS_CONNECT:
		return MR_EXIT_CONNECT;
	case GW_CS_HANDSHAKE:
		return r == -EACCES ? MR_EXIT_AUTH : MR_EXIT_PEER_GONE;
	case GW_CS_SETUP:
		if (r == -EREMOTEIO)
			return gw_exit_for_wire_error(f->wire_code);
		return r == -EACCES ? MR_EXIT_AUTH : r == -EPROTO ? MR_EXIT_PROTOCOL : MR_EXIT_PEER_GONE;
	case GW_CS_SESSION:
	default:
		return MR_EXIT_FAIL;
	}
}

int cmd_connect(const struct gw_client_opts *o, struct gw_session **out)
{
	struct gw_connect_fail f;
	int r = gw_client_connect(o, out, &f);

	if (r == 0)
		return MR_EXIT_OK;
	fprintf(stderr, "migrelay: %s\n", f.text);
	return cmd_connect_exit(r, &f);
}
