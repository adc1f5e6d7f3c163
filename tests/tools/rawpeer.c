/* SPDX-License-Identifier: MIT */
/*
 * A misbehaving client for integration tests: completes a real TLS
 * handshake, then does one scripted thing a correct client never does, and
 * prints what the server answered as "ERROR <code> <text>", "WELCOME" (with
 * " (flags 0xNN)" when its header has flags), "CLOSED" or "TIMEOUT" on stdout. Exit 0 when the answer matches --expect.
 *
 *   rawpeer --to H:P --tls-dir D [--psk-file F] --target NAME [--multifd N] [--hello-flags N] --case CASE
 *           [--expect WHAT] [--pf-ram BYTES] [--pf-machine NAME] [--pf-cpu MODEL] [--pf-features "A B ..."]
 *   --pf-*: pre-flight facts in the HELLO (PROTOCOL.md §4.1, revision 1.2); features in ascending order
 *   CASE: hello            plain HELLO (prints WELCOME, then " after N ms" from HELLO to the answer)
 *         join-bad-token   HELLO on one connection, JOIN with a flipped token on another
 *         join-identity    as above with the right token, over --tls-dir2 (another identity)
 *         join-live        HELLO on one connection, kept alive; JOIN for its index 0 on another:
 *                          prints the answer, " after N ms", then whether connection 0 still
 *                          answers a PING ("; connection 0 alive"); with --joins N, N such
 *                          JOINs at once (the answer and time printed are the slowest's)
 *         oversize         after WELCOME, a DATA header claiming 4 GiB
 *         unknown-type     after WELCOME, a frame of type 0x42
 *         truncate         after WELCOME, OPEN + 100 KiB of DATA, then close without END
 *         window           after WELCOME, OPEN + 6 MB of chunks 1..60 without chunk 0, so
 *                          nothing can be delivered and the 4 MiB window must overflow
 *         ping-flood       after WELCOME, PINGs in batches and never a read, until a send
 *                          fails (30 s or 1 GiB at most): prints "DROPPED after N KiB of PINGs
 *                          in M ms", or "STALLED ..." / "NOT-DROPPED ..."
 *         error-unopened   after WELCOME, ERROR for every stream id 0..63 (none opened), then
 *                          OPEN 0 with 100 KiB and its END; prints "VERIFIED" when the server
 *                          verifies stream 0 (and ends its own direction), then completes the
 *                          session (VERIFIED, BYE)
 *         end-conflict     after WELCOME, OPEN 0 with 100 KiB, its END, then a second END with
 *                          the same total but other bytes and digest (prints the answer)
 *         fail-unread      after WELCOME, JOINs connection 1, shrinks both receive buffers,
 *                          OPEN 0..5 with 4000 KiB each (an echo target sends it all back,
 *                          which is never read: more than the socket buffers hold), then a frame
 *                          of unknown type: the session fails with data stuck towards this
 *                          peer; prints "HELD" and keeps connection 1 open, unread, for 30 s
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crypto/tls.h"
#include "gateway/net.h"
#include "stream/digest.h"
#include "stream/frame.h"

static const char *to, *tls_dir, *tls_dir2, *psk_file, *target = "t", *tcase, *expect;
static long hello_ms; /* HELLO sent -> its answer read */
static int hello_multifd; /* --multifd N: multifd channels the HELLO asks for */
static uint32_t hello_flags; /* --hello-flags N: HELLO flags (WIRE_HELLO_F_*), 0x.. accepted */
static int njoins = 1;    /* --joins N: join-live sends N JOINs at once, each on its own connection */
static struct wire_preflight hello_pf; /* --pf-*: pre-flight facts the HELLO carries */

static struct mr_tls_cfg *load(const char *dir)
{
	struct mr_tls_cfg *cfg = NULL;
	char err[512];
	int r = psk_file ? mr_tls_cfg_psk(&cfg, psk_file, false, NULL, err, sizeof(err))
			 : mr_tls_cfg_x509(&cfg, dir, false, err, sizeof(err));

	if (r < 0) {
		fprintf(stderr, "rawpeer: %s\n", err);
		exit(2);
	}
	return cfg;
}

static struct mr_tls *conn(struct mr_tls_cfg *cfg, int *fdp)
{
	char why[512];
	enum mr_tls_fail f;
	struct mr_tls *t;
	int fd = net_tcp_connect(to, 5000, why, sizeof(why));

	if (fd < 0) {
		fprintf(stderr, "rawpeer: %s\n", why);
		exit(2);
	}
	net_set_timeouts(fd, 5000, 5000);
	if (mr_tls_handshake(&t, cfg, fd, NULL, 5000, &f, why, sizeof(why)) < 0) {
		printf("HANDSHAKE %s\n", why);
		close(fd);
		mr_tls_cfg_free(cfg);
		exit(expect && !strcmp(expect, "HANDSHAKE") ? 0 : 1);
	}
	*fdp = fd;
	return t;
}

static void put(struct mr_tls *t, uint8_t type, uint8_t flags, uint16_t stream, uint64_t seq, const void *p,
		uint32_t len, uint32_t claimed)
{
	uint8_t *buf = malloc(WIRE_HDR_LEN + len);

	wire_hdr_encode(buf, &(struct wire_hdr){ .type = type, .flags = flags, .stream = stream, .len = claimed,
						 .seq = seq });
	if (len)
		memcpy(buf + WIRE_HDR_LEN, p, len);
	if (mr_tls_send(t, buf, WIRE_HDR_LEN + len) < 0) {
		free(buf);
		return; /* the server may already have hung up; the answer tells */
	}
	free(buf);
}

/* Reads frames until WELCOME or ERROR or the end; prints it into <out>. */
static void answer(struct mr_tls *t, char *out, size_t outlen, struct wire_welcome *w)
{
	for (;;) {
		uint8_t hb[WIRE_HDR_LEN], p[WIRE_MAX_CONTROL];
		struct wire_hdr h;
		ssize_t n = mr_tls_recv_all(t, hb, sizeof(hb));

		if (n == -EAGAIN) {
			snprintf(out, outlen, "TIMEOUT");
			return;
		}
		if (n <= 0) {
			snprintf(out, outlen, "CLOSED");
			return;
		}
		if (wire_hdr_parse(&h, hb, hb + sizeof(hb)) < 0 || h.len > WIRE_MAX_CONTROL ||
		    mr_tls_recv_all(t, p, h.len) != (ssize_t)h.len) {
			snprintf(out, outlen, "GARBAGE");
			return;
		}
		if (h.type == WIRE_T_ERROR) {
			struct wire_errmsg em;

			if (wire_error_decode(&em, p, h.len) < 0)
				snprintf(out, outlen, "GARBAGE");
			else
				snprintf(out, outlen, "ERROR %s %s", wire_error_name(em.code), em.text);
			return;
		}
		if (h.type == WIRE_T_WELCOME) {
			if (w && wire_welcome_decode(w, p, h.len) < 0) {
				snprintf(out, outlen, "GARBAGE");
				return;
			}
			if (h.flags)
				snprintf(out, outlen, "WELCOME (flags 0x%02x)", h.flags);
			else
				snprintf(out, outlen, "WELCOME");
			return;
		}
		/* ACKs and the like: keep reading */
	}
}

/* Reads frames until the PONG with <nonce>: true, or false at the end or on garbage. */
static bool pong(struct mr_tls *t, const uint8_t *nonce)
{
	for (;;) {
		uint8_t hb[WIRE_HDR_LEN], p[WIRE_MAX_CONTROL];
		struct wire_hdr h;

		if (mr_tls_recv_all(t, hb, sizeof(hb)) <= 0 || wire_hdr_parse(&h, hb, hb + sizeof(hb)) < 0 ||
		    h.len > WIRE_MAX_CONTROL || mr_tls_recv_all(t, p, h.len) != (ssize_t)h.len)
			return false;
		if (h.type == WIRE_T_PONG && h.len == WIRE_PING_LEN && !memcmp(p, nonce, WIRE_PING_LEN))
			return true;
	}
}

static long ms_since(const struct timespec *a)
{
	struct timespec b;

	clock_gettime(CLOCK_MONOTONIC, &b);
	return (long)((b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000);
}

/* PINGs, never a read: the server must bound what it queues for us and drop us. */
static void ping_flood(struct mr_tls *t, char *out, size_t outlen)
{
	enum { BATCH = 2048, FRAME = WIRE_HDR_LEN + WIRE_PING_LEN };
	static uint8_t buf[BATCH * FRAME];
	uint64_t sent = 0;
	struct timespec a;
	ssize_t n = 0;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < BATCH; i++) {
		wire_hdr_encode(buf + i * FRAME, &(struct wire_hdr){ .type = WIRE_T_PING, .len = WIRE_PING_LEN });
		wire_u64_encode(buf + i * FRAME + WIRE_HDR_LEN, (uint64_t)i);
	}
	while (sent < (1ull << 30) && ms_since(&a) < 30000) {
		n = mr_tls_send(t, buf, sizeof(buf));
		if (n < 0)
			break;
		sent += sizeof(buf);
	}
	snprintf(out, outlen, "%s after %llu KiB of PINGs in %ld ms",
		 n == -EAGAIN ? "STALLED" : n < 0 ? "DROPPED" : "NOT-DROPPED", (unsigned long long)(sent >> 10),
		 ms_since(&a));
}

/* OPEN 0 with 100 KiB of 0xa5 and its END in <end>; <end2>, if not NULL, a second END. */
static void open_send_end(struct mr_tls *t, const uint8_t *end2)
{
	static uint8_t data[100 << 10];
	uint8_t op[WIRE_OPEN_LEN], end[WIRE_END_LEN];
	struct wire_end e = { .bytes = sizeof(data) };
	struct digest dg;

	memset(data, 0xa5, sizeof(data));
	if (digest_init(&dg) < 0)
		exit(2);
	digest_update(&dg, data, sizeof(data));
	digest_final(&dg, e.digest);
	digest_free(&dg);
	wire_end_encode(end, &e);
	wire_open_encode(op, WIRE_ROLE_PLAIN);
	put(t, WIRE_T_OPEN, 0, 0, 0, op, sizeof(op), sizeof(op));
	put(t, WIRE_T_DATA, 0, 0, 0, data, sizeof(data), sizeof(data));
	put(t, WIRE_T_END, 0, 0, 1, end, sizeof(end), sizeof(end));
	if (end2)
		put(t, WIRE_T_END, 0, 0, 1, end2, WIRE_END_LEN, WIRE_END_LEN);
}

/*
 * Reads frames until the server both VERIFIED stream 0 and ENDed its own
 * direction of it; answers that END with VERIFIED and sends BYE. Prints
 * "VERIFIED", or what came instead (ERROR ..., CLOSED, TIMEOUT).
 */
static void await_verified(struct mr_tls *t, char *out, size_t outlen)
{
	bool verified = false, ended = false;
	struct wire_hdr end_h = { 0 };
	struct wire_end e = { 0 };

	while (!verified || !ended) {
		uint8_t hb[WIRE_HDR_LEN], p[WIRE_MAX_CONTROL], vp[WIRE_VERIFIED_LEN];
		struct wire_hdr h;
		ssize_t n = mr_tls_recv_all(t, hb, sizeof(hb));

		if (n <= 0) {
			snprintf(out, outlen, n == -EAGAIN ? "TIMEOUT" : "CLOSED");
			return;
		}
		if (wire_hdr_parse(&h, hb, hb + sizeof(hb)) < 0 || h.len > WIRE_MAX_CONTROL ||
		    mr_tls_recv_all(t, p, h.len) != (ssize_t)h.len) {
			snprintf(out, outlen, "GARBAGE");
			return;
		}
		if (h.type == WIRE_T_ERROR) {
			struct wire_errmsg em;

			if (wire_error_decode(&em, p, h.len) < 0)
				snprintf(out, outlen, "GARBAGE");
			else
				snprintf(out, outlen, "ERROR %s %s", wire_error_name(em.code), em.text);
			return;
		}
		if (h.stream != 0)
			continue;
		if (h.type == WIRE_T_VERIFIED)
			verified = true;
		if (h.type == WIRE_T_END && wire_end_decode(&e, p, h.len) == 0) {
			ended = true;
			end_h = h;
			wire_u64_encode(vp, e.bytes);
			put(t, WIRE_T_ACK, 0, 0, end_h.seq, vp, sizeof(vp), sizeof(vp));
			put(t, WIRE_T_VERIFIED, 0, 0, end_h.seq, vp, sizeof(vp), sizeof(vp));
		}
	}
	put(t, WIRE_T_BYE, 0, 0, 0, NULL, 0, 0);
	snprintf(out, outlen, "VERIFIED");
}

static struct mr_tls *hello(struct mr_tls_cfg *cfg, int *fd, int nconns, struct wire_welcome *w, char *out,
			    size_t outlen)
{
	struct wire_hello hl = { .version = WIRE_VERSION, .nconns = (uint16_t)nconns };
	uint8_t p[WIRE_MAX_CONTROL];
	struct mr_tls *t = conn(cfg, fd);
	struct timespec a, b;
	int n;

	snprintf(hl.target, sizeof(hl.target), "%s", target);
	hl.multifd = (uint8_t)hello_multifd;
	hl.flags = hello_flags;
	hl.pf = hello_pf;
	n = wire_hello_encode(p, sizeof(p), &hl);
	if (n < 0)
		exit(2);
	clock_gettime(CLOCK_MONOTONIC, &a);
	put(t, WIRE_T_HELLO, 0, 0, 0, p, (uint32_t)n, (uint32_t)n);
	answer(t, out, outlen, w);
	clock_gettime(CLOCK_MONOTONIC, &b);
	hello_ms = (long)((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000);
	return t;
}

struct joiner {
	struct mr_tls_cfg *cfg;
	const uint8_t *jp;
	char out[600];
	long ms;
};

/* One of --joins N: its own connection, one JOIN, the answer and how long it took. */
static void *joiner_main(void *arg)
{
	struct joiner *jn = arg;
	struct timespec a, b;
	struct mr_tls *t;
	int fd;

	t = conn(jn->cfg, &fd);
	clock_gettime(CLOCK_MONOTONIC, &a);
	put(t, WIRE_T_JOIN, 0, 0, 0, jn->jp, WIRE_JOIN_LEN, WIRE_JOIN_LEN);
	answer(t, jn->out, sizeof(jn->out), NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	jn->ms = (long)((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000);
	mr_tls_free(t);
	close(fd);
	return NULL;
}

/* --joins N: N JOINs <jp> at once; prints the slowest's answer and time into <out>. */
static void join_many(struct mr_tls_cfg *cfg, const uint8_t *jp, char *out, size_t outlen)
{
	struct joiner *jn = calloc((size_t)njoins, sizeof(*jn));
	pthread_t *thr = calloc((size_t)njoins, sizeof(*thr));
	int slow = 0;

	if (!jn || !thr)
		exit(2);
	for (int i = 0; i < njoins; i++) {
		jn[i] = (struct joiner){ .cfg = cfg, .jp = jp };
		if (pthread_create(&thr[i], NULL, joiner_main, &jn[i]) != 0)
			exit(2);
	}
	for (int i = 0; i < njoins; i++) {
		pthread_join(thr[i], NULL);
		if (jn[i].ms > jn[slow].ms)
			slow = i;
	}
	snprintf(out, outlen, "%s after %ld ms (slowest of %d JOINs)", jn[slow].out, jn[slow].ms, njoins);
	free(jn);
	free(thr);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "to", required_argument, NULL, 't' },	     { "tls-dir", required_argument, NULL, 'd' },
		{ "tls-dir2", required_argument, NULL, 'D' }, { "psk-file", required_argument, NULL, 'p' },
		{ "target", required_argument, NULL, 'n' },   { "case", required_argument, NULL, 'c' },
		{ "expect", required_argument, NULL, 'e' },   { "multifd", required_argument, NULL, 'm' },
		{ "joins", required_argument, NULL, 'j' },   { "hello-flags", required_argument, NULL, 'f' },
		{ "pf-ram", required_argument, NULL, 'R' },   { "pf-machine", required_argument, NULL, 'M' },
		{ "pf-cpu", required_argument, NULL, 'C' },   { "pf-features", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	struct wire_welcome w;
	struct mr_tls_cfg *cfg;
	struct mr_tls *t, *t2;
	char out[600] = "";
	int c, fd, fd2;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 't': to = optarg; break;
		case 'd': tls_dir = optarg; break;
		case 'D': tls_dir2 = optarg; break;
		case 'p': psk_file = optarg; break;
		case 'n': target = optarg; break;
		case 'c': tcase = optarg; break;
		case 'e': expect = optarg; break;
		case 'm': hello_multifd = atoi(optarg); break;
		case 'f': hello_flags = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'j': njoins = atoi(optarg) > 0 && atoi(optarg) <= 256 ? atoi(optarg) : 1; break;
		case 'R': hello_pf.ram_base = strtoull(optarg, NULL, 0); hello_pf.have |= WIRE_PF_RAM; break;
		case 'M': snprintf(hello_pf.machine, sizeof(hello_pf.machine), "%s", optarg); hello_pf.have |= WIRE_PF_MACHINE; break;
		case 'C': snprintf(hello_pf.cpu_model, sizeof(hello_pf.cpu_model), "%s", optarg); hello_pf.have |= WIRE_PF_CPU_MODEL; break;
		case 'F':
			snprintf(hello_pf.features, sizeof(hello_pf.features), "%s", optarg);
			hello_pf.nfeatures = optarg[0] ? 1 : 0;
			for (const char *q = optarg; *q; q++)
				hello_pf.nfeatures += *q == ' ';
			hello_pf.have |= WIRE_PF_CPU_FEATURES;
			break;
		default: return 2;
		}
	}
	if (!to || !tcase || (!tls_dir && !psk_file)) {
		fprintf(stderr, "usage: rawpeer --to H:P --tls-dir D --case CASE [--expect PREFIX]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN); /* a server that drops us shows as a failed send */
	cfg = load(tls_dir);
	t = hello(cfg, &fd, 2, &w, out, sizeof(out));
	if (!strcmp(tcase, "hello")) {
		size_t l = strlen(out);

		/* out says WELCOME or the refusal, and how long the server took */
		snprintf(out + l, sizeof(out) - l, " after %ld ms", hello_ms);
	} else if (strncmp(out, "WELCOME", 7)) {
		/* refused before the case could run: print that */
	} else if (!strcmp(tcase, "join-bad-token") || !strcmp(tcase, "join-identity")) {
		struct wire_join j = { .session_id = w.session_id, .conn_index = 1 };
		uint8_t jp[WIRE_JOIN_LEN];
		struct mr_tls_cfg *cfg2 = cfg;

		memcpy(j.token, w.token, WIRE_TOKEN_LEN);
		if (!strcmp(tcase, "join-bad-token"))
			j.token[7] ^= 0x01;
		else
			cfg2 = load(tls_dir2);
		wire_join_encode(jp, &j);
		t2 = conn(cfg2, &fd2);
		put(t2, WIRE_T_JOIN, 0, 0, 0, jp, sizeof(jp), sizeof(jp));
		answer(t2, out, sizeof(out), NULL);
		mr_tls_free(t2);
		close(fd2);
		if (cfg2 != cfg)
			mr_tls_cfg_free(cfg2);
	} else if (!strcmp(tcase, "join-live")) {
		struct wire_join j = { .session_id = w.session_id, .conn_index = 0 };
		uint8_t jp[WIRE_JOIN_LEN], nonce[WIRE_PING_LEN] = "rawpeer";
		struct timespec a, b;
		size_t l;

		memcpy(j.token, w.token, WIRE_TOKEN_LEN);
		wire_join_encode(jp, &j);
		if (njoins > 1) {
			join_many(cfg, jp, out, sizeof(out));
		} else {
			t2 = conn(cfg, &fd2);
			clock_gettime(CLOCK_MONOTONIC, &a);
			put(t2, WIRE_T_JOIN, 0, 0, 0, jp, sizeof(jp), sizeof(jp));
			answer(t2, out, sizeof(out), NULL);
			clock_gettime(CLOCK_MONOTONIC, &b);
			mr_tls_free(t2);
			close(fd2);
			l = strlen(out);
			snprintf(out + l, sizeof(out) - l, " after %ld ms",
				 (long)((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000));
		}
		put(t, WIRE_T_PING, 0, 0, 0, nonce, sizeof(nonce), sizeof(nonce));
		if (pong(t, nonce)) {
			l = strlen(out);
			snprintf(out + l, sizeof(out) - l, "; connection 0 alive");
		}
	} else if (!strcmp(tcase, "ping-flood")) {
		ping_flood(t, out, sizeof(out));
	} else if (!strcmp(tcase, "error-unopened")) {
		uint8_t ep[2 + WIRE_MAX_ERROR_TEXT];
		int n = wire_error_encode(ep, WIRE_E_TARGET, "never opened");

		for (uint16_t id = 0; id < WIRE_MAX_STREAMS; id++)
			put(t, WIRE_T_ERROR, 0, id, 0, ep, (uint32_t)n, (uint32_t)n);
		open_send_end(t, NULL);
		await_verified(t, out, sizeof(out));
	} else if (!strcmp(tcase, "end-conflict")) {
		uint8_t end2[WIRE_END_LEN];

		wire_end_encode(end2, &(struct wire_end){ .bytes = 7, .digest = { 1, 2, 3 } });
		open_send_end(t, end2);
		answer(t, out, sizeof(out), NULL);
	} else if (!strcmp(tcase, "fail-unread")) {
		uint8_t op[WIRE_OPEN_LEN];
		static uint8_t data[100 << 10];
		int small = 4096;

		struct wire_join j = { .session_id = w.session_id, .conn_index = 1 };
		uint8_t jp[WIRE_JOIN_LEN];

		/* connection 1 joins and is never read again: the server's data for us piles up there */
		memcpy(j.token, w.token, WIRE_TOKEN_LEN);
		wire_join_encode(jp, &j);
		t2 = conn(cfg, &fd2);
		put(t2, WIRE_T_JOIN, 0, 0, 0, jp, sizeof(jp), sizeof(jp));
		answer(t2, out, sizeof(out), NULL);
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
		setsockopt(fd2, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
		memset(data, 0x5a, sizeof(data));
		wire_open_encode(op, WIRE_ROLE_PLAIN);
		/* six streams, each a window's worth: more than the socket buffers towards us hold */
		for (uint16_t id = 0; id < 6; id++) {
			put(t, WIRE_T_OPEN, 0, id, 0, op, sizeof(op), sizeof(op));
			for (int i = 0; i < 40; i++)
				put(t, WIRE_T_DATA, 0, id, (uint64_t)i, data, sizeof(data), sizeof(data));
		}
		sleep(2); /* the echoes come back and fill the way towards us */
		/* a frame of no known type: the server fails the whole session (PROTOCOL.md §7) */
		put(t, 0x42, 0, 0, 0, NULL, 0, 0);
		printf("HELD (%s)\n", out);
		fflush(stdout);
		sleep(30);
		mr_tls_free(t2);
		close(fd2);
		snprintf(out, sizeof(out), "RELEASED");
	} else if (!strcmp(tcase, "oversize")) {
		put(t, WIRE_T_DATA, 0, 0, 0, NULL, 0, 0xffffffffu);
		answer(t, out, sizeof(out), NULL);
	} else if (!strcmp(tcase, "unknown-type")) {
		put(t, 0x42, 0, 0, 0, NULL, 0, 0);
		answer(t, out, sizeof(out), NULL);
	} else if (!strcmp(tcase, "truncate") || !strcmp(tcase, "window")) {
		uint8_t op[WIRE_OPEN_LEN];
		static uint8_t data[100 << 10];
		int window = !strcmp(tcase, "window"), chunks = window ? 60 : 1;

		memset(data, 0xa5, sizeof(data));
		wire_open_encode(op, WIRE_ROLE_PLAIN);
		put(t, WIRE_T_OPEN, 0, 0, 0, op, sizeof(op), sizeof(op));
		for (int i = 0; i < chunks; i++)
			put(t, WIRE_T_DATA, 0, 0, (uint64_t)(i + window), data, sizeof(data), sizeof(data));
		if (!strcmp(tcase, "truncate")) {
			mr_tls_free(t);
			close(fd);
			mr_tls_cfg_free(cfg);
			printf("SENT-TRUNCATED\n");
			return expect && !strcmp(expect, "SENT-TRUNCATED") ? 0 : 1;
		}
		answer(t, out, sizeof(out), NULL);
	} else {
		fprintf(stderr, "rawpeer: unknown case %s\n", tcase);
		return 2;
	}
	mr_tls_free(t);
	close(fd);
	mr_tls_cfg_free(cfg);
	printf("%s\n", out);
	return !expect || !strncmp(out, expect, strlen(expect)) ? 0 : 1;
}
