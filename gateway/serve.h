/* SPDX-License-Identifier: MIT */
/*
 * `migrelay serve`, private to its files: cmd_serve.c (the phases, the
 * accept loop and the handshake threads), serve_conf.c (options, the
 * configuration file, the configuration a reload replaces) and
 * serve_ops.c (the main loop's chores, the control and metrics servers).
 */
#ifndef MIGRELAY_GATEWAY_SERVE_H
#define MIGRELAY_GATEWAY_SERVE_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "control.h"
#include "crypto/authz.h"
#include "listen.h"
#include "metrics.h"
#include "preauth.h"
#include "registry.h"
#include "reload.h"
#include "setup.h"
#include "snapshot.h"
#include "target.h"

enum {
	SRV_MAX_TARGETS = 64,
	SRV_DEFAULT_MAX_SESSIONS = 16,
	SRV_DEFAULT_MAX_PENDING = 1024,
	SRV_DEFAULT_PER_ADDR = 64,
	SRV_DEFAULT_RATE = 200,
	SRV_CLIENTHELLO_MS = 3000, /* connect -> first byte of the TLS ClientHello */
	SRV_SWEEP_MS = 100,        /* how often setup deadlines are enforced */
	SRV_STOP_MS = 10000,       /* sessions and setups get this long to end at shutdown */
	SRV_METRICS_TICK_MS = 1000, /* how often running sessions' bytes are fed to the metrics */
};

#define SRV_DEFAULT_CONFIG "/etc/migrelay/serve.conf"
#define SRV_DEFAULT_TLS_DIR "/etc/pki/qemu"

/*
 * What a reload replaces (docs/OPERATIONS.md "Reload"): credentials (CRL
 * included), targets, allow lists and the per-session settings. Immutable
 * once installed in srv.conf; a handshake holds a reference from its start,
 * and a session holds the references of its connections until it is closed.
 */
struct srvconf {
	struct mr_tls_cfg *tls;
	struct gw_target targets[SRV_MAX_TARGETS];
	int ntargets;
	struct authz_list allow; /* applies to every target */
	struct gw_setup_srv setup;
};

/* The options of one reading of the configuration file and command line. */
struct srvopts {
	struct gw_listen_set ls; /* --listen (TCP and unix:), --socket-mode, --socket-group */
	const char *tls_dir, *psk_file, *ca, *cert, *key, *crl, *control, *metrics;
	int max_sessions, max_streams, window, max_conns, max_per_identity;
	int reconnect_ms, keepalive_ms, idle_ms;
	struct gw_preauth_cfg pre;
	bool plaintext; /* --insecure-plaintext: the plaintext mode is offered */
	struct srvconf *conf; /* targets and allow lists go here as they are parsed */
	char why[512];	      /* why parsing failed */
};

struct server {
	struct srvopts o; /* as read at start: what a reload does not change */
	int argc;
	char **argv;		 /* the command line, read again by every reload */
	struct config_args file; /* the configuration file read at start (o's strings point into it) */
	char **nargv;
	/* as open_listener logs them */
	const char *psk_file;
	int ntargets;
	bool plaintext, allow_all;
	struct gw_snapshot conf; /* struct srvconf */
	struct gw_registry reg;
	struct gw_preauth preauth;
	pthread_attr_t hs_attr;
	struct gw_control *ctl;
	struct gw_metrics_http *mh;
	/* written before the control thread starts, read by it: */
	char control_path[108], metrics_addr[80];
	uint64_t start_ns, last_tick_ns;
	sigset_t hup;
};

/* The server (cmd_serve.c). */
extern struct server srv;
/* Serializes reloads (serve_conf.c). */
extern struct gw_reloader serve_reloader;
extern const char serve_usage[];

/* serve_conf.c */
int serve_parse_all(struct srvopts *o, int argc, char **argv, struct config_args *file, char ***nargv);
int serve_conf_build(struct srvopts *o);
void serve_conf_free(void *p);

/* serve_ops.c */
void serve_tick(void);
int serve_start_servers(void);

#endif
