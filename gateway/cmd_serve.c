/* SPDX-License-Identifier: MIT */
/*
 * `migrelay serve`: the destination daemon, in phases: parse the command
 * line, preflight (credentials), open the listener, accept until a
 * signal, shut down. Each accepted connection is set up in its own thread
 * (gateway/setup.c) under the pre-authentication limits and the setup
 * deadline of gateway/preauth.c; sessions live in gateway/registry.c
 * (PROTOCOL.md §2, §4). The options and the reload are in serve_conf.c,
 * the control and metrics servers in serve_ops.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmds.h"
#include "exitcodes.h"
#include "log.h"
#include "net.h"
#include "serve.h"

struct server srv = { .conf = GW_SNAPSHOT_INITIALIZER };

struct accepted {
	int fd;
	bool local; /* from a unix: listener: no TLS, identity from SO_PEERCRED */
	struct gw_pending *pe;
	char peer[INET6_ADDRSTRLEN + GW_PEER_ID_MAX + 16];
};

/* Waits for the first byte of the ClientHello: an idle connection leaves after SRV_CLIENTHELLO_MS. */
static bool first_bytes(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int r;

	do
		r = poll(&pfd, 1, ms);
	while (r < 0 && errno == EINTR);
	return r > 0 && (pfd.revents & POLLIN);
}

static int ms_left(uint64_t deadline_ns)
{
	uint64_t now = gw_now_ns();

	return now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
}

/*
 * Handshake thread of one accepted connection: TLS handshake, HELLO or
 * JOIN, WELCOME, all by the connection's setup deadline; then hands the
 * connection to its session. Owns <arg>, its fd and its pending entry.
 */
static void *handshake_main(void *arg)
{
	struct accepted *a = arg;
	uint64_t deadline = a->pe->deadline_ns;
	struct gw_snap_hold *hold = calloc(1, sizeof(*hold));
	const struct srvconf *conf;
	struct gw_admitted adm;
	struct gw_link l = { .fd = -1 };
	struct mr_tls *t = NULL;
	struct mr_conn *c = NULL;
	enum mr_tls_fail fail;
	char why[512] = "", uid[GW_PEER_ID_MAX];
	int left;

	/* The configuration in force now serves this connection to its end, whatever reloads come. */
	if (!hold || !(hold->snap = gw_snapshot_get(&srv.conf)))
		goto out;
	conf = gw_snap_obj(hold->snap);
	left = ms_left(deadline);
	if (!first_bytes(a->fd, left < SRV_CLIENTHELLO_MS ? left : SRV_CLIENTHELLO_MS)) {
		gw_metrics_handshake_failed(GW_HS_TIMEOUT);
		gw_ratelimited(GW_LOG_WARN, "%s: no %s within %d ms", a->peer, a->local ? "HELLO or JOIN" : "TLS ClientHello",
			       SRV_CLIENTHELLO_MS);
		goto out;
	}
	net_set_timeouts(a->fd, ms_left(deadline), ms_left(deadline));
	if (a->local) {
		/* sshd authenticated the user; the socket's permissions and --allow authorize its uid (SECURITY.md) */
		if (mr_conn_plain(&c, a->fd, true, NULL, 0) < 0)
			goto out;
		l = gw_link_conn(c);
		c = NULL;
	} else {
		if ((left = ms_left(deadline)) <= 0 ||
		    mr_tls_handshake(&t, conf->tls, a->fd, NULL, left, &fail, why, sizeof(why)) < 0) {
			gw_metrics_handshake_failed(left <= 0 || ms_left(deadline) <= 0 ? GW_HS_TIMEOUT : GW_HS_TLS);
			gw_ratelimited(GW_LOG_WARN, "%s: TLS handshake failed: %s", a->peer,
				       why[0] ? why : "setup deadline");
			goto out;
		}
		l = gw_link_tls(t, a->fd);
		t = NULL;
	}
	a->fd = -1; /* the link holds it */
	gw_preauth_authed(&srv.preauth, a->pe);
	if (gw_setup_serve(&conf->setup, &l, a->peer,
			   l.tls ? mr_tls_peer_identity(l.tls) : (gw_unix_peer_identity(l.fd, uid, sizeof(uid)) ? "" : uid),
			   deadline, &adm) < 0)
		goto out;
	/* Out of the pending list first: from here on nothing but the session touches the socket. */
	gw_preauth_done(&srv.preauth, a->pe);
	gw_registry_hold(&srv.reg, adm.e, hold);
	gw_setup_handover(&conf->setup, &adm, &l, a->peer);
	free(a);
	return NULL;
out:
	gw_preauth_done(&srv.preauth, a->pe);
	gw_link_free(&l);
	if (a->fd >= 0)
		close(a->fd);
	free(a);
	if (hold)
		gw_snap_put(hold->snap);
	free(hold);
	return NULL;
}


/* Phase 1: the configuration file and the command line into srv.o. Returns 0, 1 after --help, or -EINVAL after printing why. */
static int parse_args(int argc, char **argv)
{
	int r;

	srv.argc = argc;
	srv.argv = argv;
	r = serve_parse_all(&srv.o, argc, argv, &srv.file, &srv.nargv);
	if (r == 1) {
		fputs(serve_usage, stdout);
		return 1;
	}
	if (r < 0) {
		if (srv.o.why[0])
			fprintf(stderr, "migrelay serve: %s\n", srv.o.why);
		else
			fputs(serve_usage, stderr);
		serve_conf_free(srv.o.conf);
		srv.o.conf = NULL;
		return -EINVAL;
	}
	srv.psk_file = srv.o.psk_file;
	srv.ntargets = srv.o.conf->ntargets;
	srv.plaintext = srv.o.plaintext;
	srv.allow_all = !srv.o.conf->allow.n;
	return 0;
}

/* Phase 2: credentials, limits and tables. Returns 0 or -errno after printing why. */
static int preflight(void)
{
	int r;

	gw_registry_init(&srv.reg, srv.o.max_sessions);
	if ((r = serve_conf_build(&srv.o)) < 0) {
		fprintf(stderr, "migrelay serve: %s\n", srv.o.why);
		serve_conf_free(srv.o.conf);
		return r;
	}
	if ((r = gw_snapshot_init(&srv.conf, srv.o.conf, serve_conf_free)) < 0) {
		serve_conf_free(srv.o.conf);
		fprintf(stderr, "migrelay serve: out of memory\n");
		return r;
	}
	/* before any session: a killed serve's partial files of file: targets go (a reload never does this) */
	for (int i = 0; i < srv.o.conf->ntargets; i++)
		(void)gw_target_remove_stale(&srv.o.conf->targets[i]);
	srv.o.conf = NULL; /* the snapshot's now */
	if ((r = gw_preauth_init(&srv.preauth, &srv.o.pre)) < 0) {
		fprintf(stderr, "migrelay serve: out of memory\n");
		return r;
	}
	return 0;
}

/* Phase 3: the listening sockets, non-blocking so the accept loop can enforce deadlines. 0 or -errno. */
static int open_listener(void)
{
	char why[512] = "";
	int r = gw_listen_open(&srv.o.ls, why, sizeof(why));

	if (r < 0) {
		fprintf(stderr, "migrelay serve: %s\n", why);
		return r;
	}
	/* Handshake threads are many and shallow: a small stack bounds their memory. */
	pthread_attr_init(&srv.hs_attr);
	pthread_attr_setstacksize(&srv.hs_attr, 256 << 10);
	for (int i = 0; i < srv.o.ls.n; i++)
		if (srv.o.ls.l[i].local)
			gw_info("listening on %s (mode %04o%s, identity UID=user, no TLS inside), %d target(s)%s",
				srv.o.ls.l[i].spec, (unsigned)srv.o.ls.mode, srv.o.ls.has_gid ? ", --socket-group" : "",
				srv.ntargets, srv.allow_all ? ", every peer the socket lets in allowed" : "");
		else
			gw_info("listening on %s (%s), %d target(s)%s", srv.o.ls.l[i].spec,
				srv.psk_file ? "TLS 1.3 PSK" : "TLS 1.3 x509", srv.ntargets,
				srv.allow_all ? ", every authenticated peer allowed" : "");
	if (srv.plaintext)
		gw_warn("INSECURE PLAINTEXT offered (--insecure-plaintext): sessions whose client asks for it move their data unencrypted and unauthenticated after the TLS handshake; use only on an isolated migration network");
	return 0;
}

static void peer_name(const struct sockaddr_storage *ss, int fd, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?", id[GW_PEER_ID_MAX];

	if (ss->ss_family == AF_UNIX) {
		if (gw_unix_peer_identity(fd, id, sizeof(id)) < 0)
			snprintf(id, sizeof(id), "UID=?");
		snprintf(buf, len, "local %s", id);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

/* Takes accepted <fd> into the pending list and starts its handshake thread; closes it if it may not stay. */
static void start_setup(int fd, const struct sockaddr_storage *ss, bool local)
{
	struct accepted *a = calloc(1, sizeof(*a));
	pthread_t thr;
	int r;

	if (!a) {
		close(fd);
		return;
	}
	if ((r = gw_preauth_admit(&srv.preauth, fd, (const struct sockaddr *)ss, &a->pe)) < 0) {
		peer_name(ss, fd, a->peer, sizeof(a->peer));
		if (r != -EAGAIN)
			gw_metrics_refused(GW_LIMIT_PENDING);
		gw_ratelimited(GW_LOG_WARN, "%s: connection closed at once: %s", a->peer,
			       r == -EAGAIN ? "its address is over --connect-rate"
					    : "too many connections in their setup (--max-pending)");
		close(fd);
		free(a);
		return;
	}
	a->fd = fd;
	a->local = local;
	peer_name(ss, fd, a->peer, sizeof(a->peer));
	if (!local)
		net_tune_tcp(fd);
	if (pthread_create(&thr, &srv.hs_attr, handshake_main, a) != 0) {
		gw_preauth_done(&srv.preauth, a->pe);
		close(fd);
		free(a);
		return;
	}
	pthread_detach(thr);
}

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}


/* Accepts one connection from listener <l> if one is waiting. */
static void accept_one(const struct gw_listener *l)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN)
			gw_ratelimited(GW_LOG_WARN, "accept on %s: %s", l->spec, strerror(errno));
		if (errno == EMFILE || errno == ENFILE)
			usleep(100000);
		return;
	}
	if (l->local)
		ss.ss_family = AF_UNIX; /* an unnamed client socket may leave the address empty */
	start_setup(fd, &ss, l->local);
}

/* Phase 4: accepts until SIGINT or SIGTERM, enforcing setup deadlines every SRV_SWEEP_MS. */
static void accept_loop(void)
{
	struct pollfd pfd[GW_LISTEN_MAX];

	for (int i = 0; i < srv.o.ls.n; i++)
		pfd[i] = (struct pollfd){ .fd = srv.o.ls.l[i].fd, .events = POLLIN };
	while (!stop_flag) {
		gw_preauth_sweep(&srv.preauth);
		serve_tick();
		if (poll(pfd, (nfds_t)srv.o.ls.n, SRV_SWEEP_MS) <= 0)
			continue;
		for (int i = 0; i < srv.o.ls.n; i++)
			if (pfd[i].revents & POLLIN)
				accept_one(&srv.o.ls.l[i]);
	}
}

/* Phase 5: ends the sessions (their peers get an ERROR) and lets setups finish, SRV_STOP_MS at most. */
static void shut_down(void)
{
	bool idle = false;

	gw_info("stopping");
	gw_listen_close(&srv.o.ls);
	gw_control_stop(srv.ctl);
	srv.ctl = NULL;
	gw_registry_fail_all(&srv.reg, WIRE_E_LIMIT, "the server is stopping");
	for (int i = 0; i < SRV_STOP_MS / 50 && !idle; i++) {
		gw_preauth_sweep(&srv.preauth);
		idle = !gw_registry_busy(&srv.reg) && !gw_preauth_count(&srv.preauth);
		if (!idle)
			usleep(50000);
	}
	gw_metrics_http_stop(srv.mh);
	srv.mh = NULL;
	pthread_attr_destroy(&srv.hs_attr);
	/* What threads still run may use the credentials and tables: only an idle server frees them. */
	if (idle) {
		gw_snapshot_fini(&srv.conf);
		gw_preauth_free(&srv.preauth);
		free(srv.nargv);
		config_args_free(&srv.file);
	}
}

int cmd_serve(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	int r;

	gw_log_set_prefix("migrelay serve");
	srv.start_ns = srv.last_tick_ns = gw_now_ns();
	/* SIGHUP stays blocked in every thread (they inherit this mask); serve_tick collects it. */
	sigemptyset(&srv.hup);
	sigaddset(&srv.hup, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &srv.hup, NULL);
	if ((r = parse_args(argc, argv)) != 0)
		return r > 0 ? MR_EXIT_OK : MR_EXIT_USAGE;
	if (preflight() < 0 || open_listener() < 0)
		return MR_EXIT_USAGE;
	if (serve_start_servers() < 0) {
		gw_metrics_http_stop(srv.mh);
		gw_listen_close(&srv.o.ls);
		return MR_EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	accept_loop();
	shut_down();
	return MR_EXIT_OK;
}
