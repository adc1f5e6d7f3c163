/* SPDX-License-Identifier: MIT */
/* Entry points of the subcommands; argv[0] is the subcommand's name. Each returns an MR_EXIT_* code. */
#ifndef MR_GATEWAY_CMDS_H
#define MR_GATEWAY_CMDS_H

int cmd_serve(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_pki(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_ctl(int argc, char **argv);

#endif
