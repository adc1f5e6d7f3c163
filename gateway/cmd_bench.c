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
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_common.h"
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
	"reports throughput, CPU seconds per GB on each side (user + system; the\n"
	"client's without the thread that writes the synthetic stream, which\n"
	"stands for QEMU), compression ratio and peak memory. --local starts a\n"
	"`migrelay serve` with a discard target on loopback with throw-away\n"
	"certificates; otherwise name a discard target of a running server to\n"
	"measure a real path. With --insecure-plaintext (below) it measures the\n"
	"plaintext mode, the ceiling without encryption;\n"
	"--local then offers it on its own server.\n"
	"\n"
	"      --local               run both gateways here, on loopback\n"
	"      --profile P           idle (90% zero pages), mixed (30% zero, 40%\n"
	"                            compressible, 30% random; default) or random\n"
	"      --size BYTES          stream length (K, M, G suffixes; default 1G)\n"
	"  -h, --help                this text\n"
	"\n";

enum { PAGE = 4096, PATTERN_PAGES = 16384 /* 64 MiB of pages, repeated */ };
enum { O_LOCAL = 0x3000, O_PROFILE, O_SIZE };

struct gen {
	int fd;
	uint64_t size;
	uint8_t *pattern;
	double cpu; /* the generator thread's own CPU seconds, set when it ends */
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

	(void)pthread_setname_np(pthread_self(), "mr-bench-gen");

	while (left) {
		size_t n = total - off < left ? total - off : (size_t)left;
		ssize_t w = net_write_all(g->fd, g->pattern + off, n > (1 << 20) ? (1 << 20) : n);

		if (w < 0)
			break;
		left -= (uint64_t)w;
		off = (off + (size_t)w) % total;
	}
	close(g->fd);
	{
		struct timespec ts;

		/* it stands for QEMU writing its stream: its CPU is not the gateway's */
		if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
			g->cpu = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	}
	return NULL;
}

/* utime+stime (seconds) and VmHWM (KiB) of process <pid> (0: self). */
static void proc_usage(pid_t pid, double *cpu, long *hwm_kb)
{
	char path[64], line[256];
	FILE *f;

	*cpu = 0;
	*hwm_kb = 0;
	if (!pid) {
		struct timespec ts;

		/* exact, where /proc counts clock ticks: the generator's own time is taken off it */
		if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0)
			*cpu = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	} else {
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		if ((f = fopen(path, "r"))) {
			unsigned long ut = 0, st = 0;
			char *p;

			if (fgets(line, sizeof(line), f) && (p = strrchr(line, ')')) &&
			    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
				*cpu = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
			fclose(f);
		}
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

struct bench_args {
	const char *profile;
	uint64_t size;
	bool local;
};

static int bench_opt(void *arg, int c, const char *val)
{
	struct bench_args *a = arg;
	int r;

	switch (c) {
	case O_LOCAL:
		a->local = true;
		return 1;
	case O_PROFILE:
		if (strcmp(val, "idle") && strcmp(val, "mixed") && strcmp(val, "random")) {
			fprintf(stderr, "migrelay bench: --profile takes idle, mixed or random, not \"%.40s\"\n", val);
			return -EINVAL;
		}
		a->profile = val;
		return 1;
	case O_SIZE:
		if ((r = cli_parse_bytes(val, 1, (uint64_t)1 << 50, &a->size)) < 0) {
			fprintf(stderr, "migrelay bench: --size takes bytes such as 512M or 4G (1 byte to 1 PiB), not \"%.40s\"\n",
				val);
			return -EINVAL;
		}
		return 1;
	}
	return 0;
}

/* --local: a server of our own with throw-away credentials; <o> is pointed at it. Returns its pid or 0 after a message. */
static pid_t bench_local(struct gw_client_opts *o, char *dir, size_t dirlen, char *to, size_t tolen, char *cli,
			 size_t clilen)
{
	pid_t srv;

	snprintf(dir, dirlen, "/tmp/migrelay-bench-XXXXXX");
	if (!mkdtemp(dir)) {
		fprintf(stderr, "migrelay bench: cannot create a temporary directory: %s\n", strerror(errno));
		dir[0] = '\0';
		return 0;
	}
	srv = start_local_server(dir, to, tolen, o->plaintext);
	if (srv < 0) {
		fprintf(stderr, "migrelay bench: cannot start the local server\n");
		return 0;
	}
	snprintf(cli, clilen, "%s/cli", dir);
	o->to = to;
	o->target = "bench";
	o->tls_dir = cli;
	o->psk_file = NULL;
	return srv;
}

/* The report: JSON on stdout with --json, else two lines on stdout. */
static void bench_report(const struct gw_client_opts *o, const char *profile, const struct gw_stats *st, double secs,
			 double cpu_c, long hwm_c, pid_t srv, double cpu_s, long hwm_s)
{
	double gb = (double)st->raw_out / 1e9, mbs = (double)st->raw_out / secs / 1e6;
	double ratio = st->wire_out ? (double)st->raw_out / (double)st->wire_out : 1.0;

	if (o->json) {
		struct json_object *ev = gw_json_event("report");

		json_object_object_add(ev, "status", json_object_new_string("verified"));
		json_object_object_add(ev, "profile", json_object_new_string(profile));
		gw_json_add_u64(ev, "bytes", st->raw_out);
		gw_json_add_u64(ev, "wire_bytes", st->wire_out);
		gw_json_add_double(ev, "seconds", secs, 3);
		gw_json_add_double(ev, "mb_per_s", mbs, 1);
		gw_json_add_double(ev, "cpu_s_per_gb_client", cpu_c / gb, 3);
		/* -1: a remote server's CPU is not measured here */
		gw_json_add_double(ev, "cpu_s_per_gb_server", srv ? cpu_s / gb : -1.0, 3);
		gw_json_add_double(ev, "compression_ratio", ratio, 3);
		json_object_object_add(ev, "peak_kb_client", json_object_new_int64(hwm_c));
		json_object_object_add(ev, "peak_kb_server", json_object_new_int64(hwm_s));
		json_object_object_add(ev, "connections", json_object_new_int(o->connections));
		json_object_object_add(ev, "compress",
				       json_object_new_string(o->compress_auto ? "auto" : o->compress ? "zstd" : "none"));
		json_object_object_add(ev, "insecure_plaintext", json_object_new_boolean(o->plaintext));
		gw_json_emit(stdout, ev);
		return;
	}
	printf("migrelay bench: %s profile, %.2f GB in %.2f s = %.0f MB/s over %d connection(s)%s, verified\n"
	       "  CPU s/GB: client %.2f%s%.2f; compression ratio %.2f; peak memory: client %ld KiB%s%ld KiB\n",
	       profile, gb, secs, mbs, o->connections, o->plaintext ? ", INSECURE PLAINTEXT" : "", cpu_c / gb,
	       srv ? ", server " : "", srv ? cpu_s / gb : 0.0, ratio, hwm_c, srv ? ", server " : "", srv ? hwm_s : 0L);
}

int cmd_bench(int argc, char **argv)
{
	static const struct option extra[] = {
		{ "local", no_argument, NULL, O_LOCAL },
		{ "profile", required_argument, NULL, O_PROFILE },
		{ "size", required_argument, NULL, O_SIZE },
		{ NULL, 0, NULL, 0 },
	};
	struct bench_args ba = { .profile = "mixed", .size = 1ull << 30 };
	const struct cmd_def def = { .name = "bench", .usage = bench_usage, .extra = extra, .opt = bench_opt,
				     .arg = &ba, .no_transport_check = true };
	struct gw_client_opts o;
	struct gw_session *s = NULL;
	struct gen g = { .fd = -1 };
	char dir[64] = "", to[64], cli[128], why[WIRE_MAX_ERROR_TEXT + 1];
	pid_t srv = 0;
	pthread_t gt;
	int r, rc = MR_EXIT_FAIL, sv[2], id;
	uint64_t t0;
	double secs, cpu_c0, cpu_c, cpu_s = 0;
	long hwm_c, hwm_s = 0;
	struct gw_stats st;

	gw_log_set_prefix("migrelay bench");
	if ((r = cmd_parse(&def, &o, argc, argv)) != CMD_GO)
		return r;
	g.size = ba.size;
	if (ba.local == (o.to != NULL)) {
		fprintf(stderr, "migrelay bench: give either --local or --to HOST:PORT --target NAME (see --help)\n");
		return MR_EXIT_USAGE;
	}
	if (!ba.local && (r = cmd_check_transport("bench", &o)) != 0)
		return r;
	if (ba.local && !(srv = bench_local(&o, dir, sizeof(dir), to, sizeof(to), cli, sizeof(cli))))
		goto out;
	g.pattern = make_pattern(ba.profile);
	if (!g.pattern || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		goto out;
	if ((rc = cmd_connect(&o, &s)) != MR_EXIT_OK)
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
	cpu_c -= cpu_c0 + g.cpu;
	if (cpu_c < 0)
		cpu_c = 0;
	if (srv)
		proc_usage(srv, &cpu_s, &hwm_s);
	if (r != 0) {
		uint16_t code = 0;

		if (cmd_first_failure(s, id, &code, why, sizeof(why)) == 0)
			snprintf(why, sizeof(why), "the stream did not complete");
		rc = cmd_failed("bench", o.json, code ? cmd_exit_for_wire_error(code) : MR_EXIT_FAIL, code, "%s", why);
		goto out;
	}
	bench_report(&o, ba.profile, &st, secs, cpu_c, hwm_c, srv, cpu_s, hwm_s);
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
