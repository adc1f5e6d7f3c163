/* SPDX-License-Identifier: MIT */
/* The client commands' one way to open a session and report why it failed. */
#ifndef MR_GATEWAY_CMD_CONNECT_H
#define MR_GATEWAY_CMD_CONNECT_H

#include "client.h"

/*
 * gw_client_connect, then on failure prints "migrelay: <why>" on stderr.
 * Returns MR_EXIT_OK with *out set, or the MR_EXIT_* code of the failure.
 * Main thread of a command.
 */
int cmd_connect(const struct gw_client_opts *o, struct gw_session **out);

/* The exit code for a failure of gw_client_connect returning <r> with <f>. */
int cmd_connect_exit(int r, const struct gw_connect_fail *f);

#endif
