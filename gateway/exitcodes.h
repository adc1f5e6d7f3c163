/* SPDX-License-Identifier: MIT */
/* Exit codes of every migrelay command (README.md "Exit codes"). */
#ifndef MR_GATEWAY_EXITCODES_H
#define MR_GATEWAY_EXITCODES_H

enum mr_exit {
	MR_EXIT_OK = 0,
	MR_EXIT_FAIL = 1,      /* any other failure */
	MR_EXIT_USAGE = 2,     /* bad command line or configuration */
	MR_EXIT_CONNECT = 3,   /* cannot connect to the peer gateway */
	MR_EXIT_AUTH = 4,      /* TLS handshake or authorization failed */
	MR_EXIT_TARGET = 5,    /* unknown target, or the target failed */
	MR_EXIT_DIGEST = 6,    /* byte count or digest mismatch */
	MR_EXIT_PEER_GONE = 7, /* the peer or the connections went away before the END was verified */
	MR_EXIT_PROTOCOL = 8,  /* the peer broke the protocol */
	MR_EXIT_QEMU = 9,      /* QEMU refused or failed the migration */
	MR_EXIT_CANCELLED = 10, /* cancelled by a signal */
	MR_EXIT_HOSTKEY = 11    /* ssh://: the server's host key is unknown or changed */
};

#endif
