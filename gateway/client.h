/* SPDX-License-Identifier: MIT */
/* Client side of a session: options shared by send, forward and migrate; connecting N connections. */
#ifndef MR_GATEWAY_CLIENT_H
#define MR_GATEWAY_CLIENT_H

#include <getopt.h>
#include <stdbool.h>

#include "session.h"

struct gw_client_opts {
	const char *to;          /* HOST:PORT, or ssh://[USER@]HOST[:PORT][/PATH] */
	const char *target;      /* target name */
	const char *tls_dir;     /* x509 directory (QEMU layout) */
	const char *psk_file;    /* keys.psk */
	const char *psk_identity;
	const char *server_name; /* name the server certificate must carry; default: the host of --to */
	int connections;         /* 1..64 */
	bool compress;
	bool compress_auto;
	int zlevel;
	uint8_t multifd;
	bool postcopy;           /* the destination QEMU enables postcopy-ram (HELLO flag, PROTOCOL.md §4.1) */
	bool resume;             /* the destination QEMU runs the guest once the migration is verified (HELLO flag) */
	const struct wire_preflight *preflight; /* facts of the source QEMU for the destination's check (PROTOCOL.md §4.1), or NULL */
	int ndevices;
	const char *devices[WIRE_MAX_DEVICES];
	int reconnect_ms;        /* 0: default; -1: no reconnection */
	int keepalive_ms;        /* 0: default */
	bool plaintext;          /* --insecure-plaintext: ask for the plaintext mode (PROTOCOL.md §4.4) */
	/*
	 * Ask for OPEN acknowledgements (PROTOCOL.md §5.1, revision 1.2); a
	 * server without them is asked again without, and the session's
	 * gw_session_cfg_get()->open_ack says which it got.
	 */
	bool open_ack;
	bool json;
	bool progress;           /* force the progress line */
	bool quiet;
	const char *ssh_key;         /* --ssh-key FILE */
	const char *ssh_known_hosts; /* --ssh-known-hosts FILE (instead of ~/.ssh/known_hosts) */
	bool ssh_accept_new;         /* --ssh-accept-new */
	bool ssh_no_agent;           /* --ssh-no-agent */
};

/* True when <to> names an SSH destination (ssh://...). */
bool gw_client_is_ssh(const char *to);

/* getopt_long entries for the transport options, terminated like a normal table; ids from 0x1000 up. */
extern const struct option gw_client_longopts[];
#define GW_CLIENT_OPTSTRING "t:n:c:"

/* Usage text for the transport options. */
extern const char gw_client_usage[];

void gw_client_opts_init(struct gw_client_opts *o);

enum { GW_LONGOPTS_MAX = 48 };
/*
 * Fills <lo> (GW_LONGOPTS_MAX entries) with the transport options, the
 * command's own <extra> options (terminated by a NULL name) and --help ('h').
 */
void gw_client_longopts_with(struct option *lo, const struct option *extra);

/* "512M", "1.5G", "100k", optionally followed by B: bytes. Returns 0 or -1. */
int gw_parse_bytes(const char *s, uint64_t *out);
/* Handles option <c> with <arg>. Returns 1 if it was a transport option, 0 if not, -1 on a bad value (message printed). */
int gw_client_opt(struct gw_client_opts *o, int c, const char *arg);
/* Checks required options. Returns 0 or prints what is missing and returns -1. */
int gw_client_opts_check(const struct gw_client_opts *o);

/* Where opening a session failed: the command maps it to its exit code (cmd_common.c). */
enum gw_connect_stage {
	GW_CS_CONFIG = 1,    /* credentials or options */
	GW_CS_CONNECT = 2,   /* no TCP connection */
	GW_CS_HANDSHAKE = 3, /* TLS handshake: -EACCES refused, -ETIMEDOUT or -ECONNRESET lost */
	GW_CS_SETUP = 4,     /* HELLO/JOIN: see gw_setup_request for the codes */
	GW_CS_SESSION = 5,   /* local resources */
	GW_CS_SSH = 6,       /* ssh://: connection, host key, authentication or channel (crypto/ssh.h's codes) */
};

struct gw_connect_fail {
	enum gw_connect_stage stage;
	uint16_t wire_code; /* the server's ERROR code, 0 if it sent none */
	char text[1024];    /* what happened, for the user, without "migrelay: " */
};

/*
 * Opens the session: connection 0 with HELLO, then the JOINs. Prints
 * nothing but the plaintext warning. Returns 0 with *out set, or -errno
 * with <f> filled. Any thread; the session is the caller's.
 */
MR_MUST_CHECK int gw_client_connect(const struct gw_client_opts *o, struct gw_session **out,
				    struct gw_connect_fail *f);

/* The warning both ends log for every plaintext session, after "session <id>: ". */
#define GW_PLAINTEXT_WARNING                                                                                  \
	"INSECURE PLAINTEXT: data is neither encrypted nor authenticated by TLS after the handshake; anyone on " \
	"the network path can read and change it (the XXH3 digests are not a MAC). Use only on an isolated "    \
	"migration network"

/* Human-readable byte count ("1.5 GiB") into buf. */
const char *gw_fmt_bytes(uint64_t n, char *buf, size_t len);

#endif
