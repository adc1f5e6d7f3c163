/* SPDX-License-Identifier: MIT */
/* `migrelay pki`: a small CA for tests and small sites. */
#ifndef MR_GATEWAY_CMD_PKI_H
#define MR_GATEWAY_CMD_PKI_H

/*
 * argv[0] is "pki". `pki init --dir DIR [--cn NAME] [--days N]` and
 * `pki issue server|client --ca DIR --out DIR --cn NAME [...]`. Returns
 * MR_EXIT_OK, MR_EXIT_USAGE for a bad command line or MR_EXIT_FAIL.
 */
int cmd_pki(int argc, char **argv);

#endif
