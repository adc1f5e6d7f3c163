/* SPDX-License-Identifier: MIT */
/*
 * What the client commands (send, forward, migrate, bench) share: parsing
 * the command line around the transport options, connecting, finding out
 * why a session failed, and saying so, as a line on stderr and, with
 * --json, as JSON events on stdout. The only place besides the cmd_*()
 * entry points that deals in MR_EXIT_* codes. Main thread only.
 */
#ifndef MR_GATEWAY_CMD_COMMON_H
#define MR_GATEWAY_CMD_COMMON_H

#include <stdbool.h>
#include <stdio.h>

#include "client.h"
#include "report.h"

/* cmd_parse's "go on": every other value it returns is an exit code. */
enum { CMD_GO = -1 };

struct cmd_def {
	const char *name;           /* "send": messages start "migrelay send: " */
	const char *usage;          /* the command's own text, printed before the transport options */
	const struct option *extra; /* its own long options, NULL-name terminated; may be NULL */
	const char *shortopts;      /* its own short options ("q:"); may be NULL */
	/*
	 * Takes one of the command's own options. Returns 1 when taken, 0 when
	 * not its own (a usage error), -EINVAL for a bad value after printing why.
	 */
	int (*opt)(void *arg, int c, const char *val);
	void *arg;
	bool no_transport_check; /* bench --local: --to and --target are not required */
};

/* The exit-code table every --help ends with (README.md "Exit codes"). */
extern const char cmd_exit_help[];

/*
 * Parses <argv> into <o> (initialised here) and the command's own options.
 * Checks positional arguments (none allowed), the required transport
 * options and --to's HOST:PORT (port 1..65535). Returns CMD_GO, MR_EXIT_OK
 * after --help, or MR_EXIT_USAGE after a message on stderr.
 */
int cmd_parse(const struct cmd_def *d, struct gw_client_opts *o, int argc, char **argv);

/* The --to/--target/credential checks of cmd_parse, for a command that fills <o> itself. Returns 0 or MR_EXIT_USAGE. */
int cmd_check_transport(const char *name, const struct gw_client_opts *o);

/* Ignores SIGPIPE and opens the session. Returns MR_EXIT_OK with *s set, or an MR_EXIT_* code after a message. */
int cmd_connect(const struct gw_client_opts *o, struct gw_session **s);

/*
 * Why the session failed: the first failed stream's code and text (stream
 * <id> first when id >= 0), else the session's own failure. Returns 0 when
 * nothing failed (<text> gets ""), or -EPROTO with the WIRE_E_* code in
 * *wire_code and the reason in <text>. Takes the session's lock.
 */
MR_MUST_CHECK int cmd_first_failure(struct gw_session *s, int id, uint16_t *wire_code, char *text, size_t len);

/* Maps a WIRE_E_* code to an MR_EXIT_* code. */
int cmd_exit_for_wire_error(int code);

/*
 * The one failure formatter: "migrelay NAME: FAILED[ (CODE)]: TEXT" on
 * stderr, and with <json> a report {"event":"report","status":"failed",
 * "exit":RC[,"error":CODE],"message":TEXT} on stdout. <wire_code> 0: no
 * wire error to name. Returns <rc>.
 */
int cmd_failed(const char *name, bool json, int rc, int wire_code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

#endif
