/* SPDX-License-Identifier: MIT */
/*
 * `migrelay bench`: pushes a synthetic migration-shaped stream through a
 * session and reports what the path carries: MB/s, CPU seconds per GB on
 * each side, compression ratio and peak memory. With --local it starts its
 * own `migrelay serve` on loopback (credentials made on the fly); otherwise
 * it measures a real path to a remote `serve` target (use a discard target).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "cmd_connect.h"
#include "cmds.h"
#include "crypto/pki.h"
#include "exitcodes.h"
#include "log.h"
#include "net.h"

static const char bench_usage[] =
	"Usage: migrelay bench --local [options]\n"
	"       migrelay bench --to HOST:PORT --target NAME [options]\n"
	"\n"
	"Sends a synthetic guest-memory stream through a migrelay session and\n"
	"reports throughput, CPU seconds per GB on each side, compression ratio\n"
	"and peak memory. --local starts a `migrelay serve` with a discard target\n"
	"on loopback with throw-away certificates; otherwise name a discard target\n"
	"of a running server to measure a real path. With --insecure-plaintext\n"
	"(below) it measures the plaintext mode, the ceiling without encryption;\n"
	"--local then offers it on its own server.\n"
	"\n"
	"      --local               run both gateways here, on loopback\n"
	"      --profile P           idle (90% zero pages), mixed (30% zero, 40%\n"
	"                            compressible, 30% random; default) or random\n"
	"      --size BYTES          stream length (K, M, G suffixes; default 1G)\n"
	"  -h, --help                this text\n"
	"\n";

enum { PAGE = 4096, PATTERN_PAGES = 16384 /* 64 MiB of pages, repeated */ };

struct gen {
	int fd;
	uint64_t size;
	uint8_t *pattern;
};

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The page mix of a profile, deterministic. Returns NULL on allocation failure. */
static uint8_t *make_pattern(const char *profile)
{
	uint8_t *p = calloc(PATTERN_PAGES, PAGE);
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	int zero = 30, comp = 40;

	if (!p)
		return NULL;
	if (!strcmp(profile, "idle"))
		zero = 90, comp = 10;
	else if (!strcmp(profile, "random"))
		zero = 0, comp = 0;
	for (int i = 0; i < PATTERN_PAGES; i++) {
		uint8_t *pg = p + (size_t)i * PAGE;
		int k = (int)(xorshift(&seed) % 100);

		if (k < zero)
			continue;
		if (k < zero + comp) {
			for (int j = 0; j < PAGE; j++)
				pg[j] = (uint8_t)("guest page text "[j % 16] + (i & 7));
			continue;
		}
		for (int j = 0; j < PAGE; j += 8) {
			uint64_t v = xorshift(&seed);

			memcpy(pg + j, &v, 8);
		}
	}
	return p;
}

static void *gen_main(void *arg)
{
	struct gen *g = arg;
	uint64_t left = g->size;
	size_t off = 0, total = (size_t)PATTERN_PAGES * PAGE;

	while (left) {
		size_t n = total - off < left ? total - off : (size_t)left;
		ssize_t w = net_write_all(g->fd, g->pattern + off, n > (1 << 20) ? (1 << 20) : n);

		if (w < 0)
			break;
		left -= (uint64_t)w;
		off = (off + (size_t)w) % total;
	}
	close(g->fd);
	return NULL;
}

/* utime+stime (seconds) and VmHWM (KiB) of process <pid> (0: self). */
static void proc_usage(pid_t pid, double *cpu, long *hwm_kb)
{
	char path[64], line[256];
	FILE *f;

	*cpu = 0;
	*hwm_kb = 0;
	snprintf(path, sizeof(path), pid ? "/proc/%d/stat" : "/proc/self/stat", (int)pid);
	if ((f = fopen(path, "r"))) {
		unsigned long ut = 0, st = 0;
		char *p;

		if (fgets(line, sizeof(line), f) && (p = strrchr(line, ')')) &&
		    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
			*cpu = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
		fclose(f);
	}
	snprintf(path, sizeof(path), pid ? "/proc/%d/status" : "/proc/self/status", (int)pid);
	if ((f = fopen(path, "r"))) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "VmHWM: %ld", hwm_kb) == 1)
				break;
		fclose(f);
	}
}

/* Starts `migrelay serve` with a discard target on a free loopback port. Returns its pid or -errno. */
static pid_t start_local_server(const char *dir, char *to, size_t tolen, bool plaintext)
{
	char ca[600], srv[600], cli[600], err[256], listen_spec[64], target[64];
	struct pki_issue_opts so = { 0 }, co = { 0 };
	char exe[4096];
	ssize_t el;
	pid_t pid;
	int port;

	snprintf(ca, sizeof(ca), "%s/ca", dir);
	snprintf(srv, sizeof(srv), "%s/srv", dir);
	snprintf(cli, sizeof(cli), "%s/cli", dir);
	so.ca_dir = co.ca_dir = ca;
	so.out_dir = srv;
	so.server = true;
	so.cn = "bench-server";
	so.ip[0] = "127.0.0.1";
	co.out_dir = cli;
	co.cn = "bench-client";
	if (pki_init(ca, "migrelay bench CA", 1, err, sizeof(err)) < 0 || pki_issue(&so, err, sizeof(err)) < 0 ||
	    pki_issue(&co, err, sizeof(err)) < 0) {
		fprintf(stderr, "migrelay bench: %s\n", err);
		return -EIO;
	}
	{
		/* A port the kernel picks, given back to it just before serve binds it. */
		int fd = net_tcp_listen("127.0.0.1:0", err, sizeof(err));
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
			return -EIO;
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		close(fd);
	}
	snprintf(listen_spec, sizeof(listen_spec), "127.0.0.1:%d", port);
	snprintf(to, tolen, "127.0.0.1:%d", port);
	snprintf(target, sizeof(target), "bench=discard");
	el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (el <= 0)
		return -EIO;
	exe[el] = '\0';
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, STDERR_FILENO);
		execl(exe, exe, "serve", "--listen", listen_spec, "--tls-dir", srv, "--target", target,
		      plaintext ? "--insecure-plaintext" : (char *)NULL, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) { /* 10 s at most for it to listen */
		char why[256];
		int fd = net_tcp_connect(to, 200, why, sizeof(why));

		if (fd >= 0) {
			close(fd);
			return pid;
		}
		usleep(100000);
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return -ETIMEDOUT;
}

int cmd_bench(int argc, char **argv)
{
	enum { O_LOCAL = 0x3000, O_PROFILE, O_SIZE };
	struct gw_client_opts o;
	struct gw_session *s = NULL;
	struct gen g = { .fd = -1, .size = 1ull << 30 };
	const char *profile = "mixed";
	char dir[64] = "", to[64], cli[128];
	bool local = false;
	pid_t srv = 0;
	pthread_t gt;
	int c, r, rc = MR_EXIT_FAIL, sv[2], id;
	uint64_t t0;
	double secs, cpu_c0, cpu_c, cpu_s = 0;
	long hwm_c, hwm_s = 0;
	struct gw_stats st;

	gw_log_set_prefix("migrelay bench");
	gw_client_opts_init(&o);
	{
		static const struct option extra[] = {
			{ "local", no_argument, NULL, O_LOCAL },
			{ "profile", required_argument, NULL, O_PROFILE },
			{ "size", required_argument, NULL, O_SIZE },
			{ NULL, 0, NULL, 0 },
		};
		struct option lo[GW_LONGOPTS_MAX];

		gw_client_longopts_with(lo, extra);
		while ((c = getopt_long(argc, argv, GW_CLIENT_OPTSTRING "h", lo, NULL)) != -1) {
			if (c == 'h') {
				printf("%s%s", bench_usage, gw_client_usage);
				return MR_EXIT_OK;
			}
			if (c == O_LOCAL) {
				local = true;
				continue;
			}
			if (c == O_PROFILE) {
				if (strcmp(optarg, "idle") && strcmp(optarg, "mixed") && strcmp(optarg, "random")) {
					fprintf(stderr, "migrelay bench: --profile takes idle, mixed or random\n");
					return MR_EXIT_USAGE;
				}
				profile = optarg;
				continue;
			}
			if (c == O_SIZE) {
				if (gw_parse_bytes(optarg, &g.size) < 0) {
					fprintf(stderr, "migrelay bench: --size takes bytes such as 512M or 4G\n");
					return MR_EXIT_USAGE;
				}
				continue;
			}
			r = gw_client_opt(&o, c, optarg);
			if (r < 0)
				return MR_EXIT_USAGE;
			if (r == 0) {
				fprintf(stderr, "%s%s", bench_usage, gw_client_usage);
				return MR_EXIT_USAGE;
			}
		}
	}
	if (local == (o.to != NULL)) {
		fprintf(stderr, "migrelay bench: give either --local or --to HOST:PORT --target NAME (see --help)\n");
		return MR_EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	if (local) {
		snprintf(dir, sizeof(dir), "/tmp/migrelay-bench-XXXXXX");
		if (!mkdtemp(dir)) {
			fprintf(stderr, "migrelay bench: cannot create a temporary directory: %s\n", strerror(errno));
			return MR_EXIT_FAIL;
		}
		srv = start_local_server(dir, to, sizeof(to), o.plaintext);
		if (srv < 0) {
			fprintf(stderr, "migrelay bench: cannot start the local server\n");
			srv = 0;
			goto out;
		}
		snprintf(cli, sizeof(cli), "%s/cli", dir);
		o.to = to;
		o.target = "bench";
		o.tls_dir = cli;
		o.psk_file = NULL;
	} else if (gw_client_opts_check(&o) < 0) {
		return MR_EXIT_USAGE;
	}
	g.pattern = make_pattern(profile);
	if (!g.pattern || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		goto out;
	if ((rc = cmd_connect(&o, &s)) != 0)
		goto out;
	rc = MR_EXIT_FAIL;
	proc_usage(0, &cpu_c0, &hwm_c);
	t0 = gw_now_ns();
	g.fd = sv[0];
	if (pthread_create(&gt, NULL, gen_main, &g) != 0)
		goto out;
	id = gw_stream_open(s, WIRE_ROLE_PLAIN, sv[1], -1, NULL, NULL);
	if (id < 0) {
		fprintf(stderr, "migrelay bench: cannot open the stream: %s\n", strerror(-id));
		shutdown(sv[1], SHUT_RDWR);
		pthread_join(gt, NULL);
		goto out;
	}
	r = gw_stream_wait(s, id, -1);
	secs = (double)(gw_now_ns() - t0) / 1e9;
	pthread_join(gt, NULL);
	gw_session_stats(s, &st);
	proc_usage(0, &cpu_c, &hwm_c);
	cpu_c -= cpu_c0;
	if (srv)
		proc_usage(srv, &cpu_s, &hwm_s);
	if (r != 0) {
		fprintf(stderr, "migrelay bench: FAILED (%s): %s\n", wire_error_name((uint16_t)r),
			s->streams[id]->fail_text[0] ? s->streams[id]->fail_text : s->err_text);
		rc = gw_exit_for_wire_error(r);
		goto out;
	}
	{
		double gb = (double)st.raw_out / 1e9, mbs = (double)st.raw_out / secs / 1e6;
		double ratio = st.wire_out ? (double)st.raw_out / (double)st.wire_out : 1.0;

		if (o.json)
			printf("{\"profile\":\"%s\",\"bytes\":%llu,\"wire_bytes\":%llu,\"seconds\":%.3f,\"mb_per_s\":%.1f,"
			       "\"cpu_s_per_gb_client\":%.3f,\"cpu_s_per_gb_server\":%s%.3f,\"compression_ratio\":%.3f,"
			       "\"peak_kb_client\":%ld,\"peak_kb_server\":%ld,\"connections\":%d,\"compress\":\"%s\","
			       "\"insecure_plaintext\":%s}\n",
			       profile, (unsigned long long)st.raw_out, (unsigned long long)st.wire_out, secs, mbs,
			       cpu_c / gb, srv ? "" : "-", srv ? cpu_s / gb : 1.0, ratio, hwm_c, hwm_s, o.connections,
			       o.compress_auto ? "auto" : o.compress ? "zstd" : "none", o.plaintext ? "true" : "false");
		else
			printf("migrelay bench: %s profile, %.2f GB in %.2f s = %.0f MB/s over %d connection(s)%s, verified\n"
			       "  CPU s/GB: client %.2f%s%.2f; compression ratio %.2f; peak memory: client %ld KiB%s%ld KiB\n",
			       profile, gb, secs, mbs, o.connections, o.plaintext ? ", INSECURE PLAINTEXT" : "", cpu_c / gb,
			       srv ? ", server " : "",
			       srv ? cpu_s / gb : 0.0, ratio, hwm_c, srv ? ", server " : "", srv ? hwm_s : 0L);
	}
	rc = MR_EXIT_OK;
out:
	if (s) {
		if (rc == MR_EXIT_OK)
			gw_session_bye(s);
		gw_session_close(s);
	}
	free(g.pattern);
	if (srv) {
		kill(srv, SIGTERM);
		waitpid(srv, NULL, 0);
	}
	if (dir[0]) {
		char cmd[128];

		/* only our own temporary directory, made above with mkdtemp */
		snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
		if (system(cmd) != 0)
			gw_warn("could not remove %s", dir);
	}
	return rc;
}
