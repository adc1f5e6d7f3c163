/* SPDX-License-Identifier: MIT */
#include "progress.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "report.h"

static void *progress_main(void *arg)
{
	struct gw_progress *p = arg;
	uint64_t last_bytes = 0, last_t = p->t0;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		struct timespec ts;
		struct gw_stats st;
		uint64_t now, bytes;
		double rate, secs;
		char a[32], b[32], c[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) != ETIMEDOUT)
			continue;
		pthread_mutex_unlock(&p->lock);
		gw_session_stats(p->s, &st);
		now = gw_now_ns();
		bytes = st.raw_out + st.raw_in;
		rate = (double)(bytes - last_bytes) / ((double)(now - last_t) / 1e9);
		secs = (double)(now - p->t0) / 1e9;
		last_bytes = bytes;
		last_t = now;
		if (p->json) {
			struct json_object *ev = gw_json_event("progress");

			gw_json_add_double(ev, "seconds", secs, 1);
			gw_json_add_u64(ev, "sent", st.raw_out);
			gw_json_add_u64(ev, "received", st.raw_in);
			gw_json_add_u64(ev, "wire_sent", st.wire_out);
			gw_json_add_double(ev, "rate_bps", rate, 0);
			json_object_object_add(ev, "connections", json_object_new_int(st.live_conns));
			gw_json_emit(p->out, ev);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		fprintf(p->out, "\r%6.1fs  sent %s  received %s  %s/s  %d conn   ", secs,
			gw_fmt_bytes(st.raw_out, a, sizeof(a)), gw_fmt_bytes(st.raw_in, b, sizeof(b)),
			gw_fmt_bytes((uint64_t)rate, c, sizeof(c)), st.live_conns);
		fflush(p->out);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	if (!p->json)
		fputc('\n', p->out);
	return NULL;
}

void gw_progress_start(struct gw_progress *p, struct gw_session *s, FILE *out, bool json, bool force, bool quiet)
{
	p->s = s;
	p->out = out;
	p->json = json;
	p->tty = isatty(fileno(out));
	p->enabled = !quiet && (json || force || p->tty);
	p->stop = false;
	p->running = false;
	p->t0 = gw_now_ns();
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	if (p->enabled && pthread_create(&p->thr, NULL, progress_main, p) == 0)
		p->running = true;
}

void gw_progress_stop(struct gw_progress *p)
{
	if (p->running) {
		pthread_mutex_lock(&p->lock);
		p->stop = true;
		pthread_cond_signal(&p->cond);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thr, NULL);
		p->running = false;
	}
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
}

void gw_proc_mem(int pid, long *rss_kib, long *peak_kib)
{
	char path[64], line[256];
	FILE *f;

	*rss_kib = 0;
	*peak_kib = 0;
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/status", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/status");
	if (!(f = fopen(path, "re")))
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmRSS: %ld", rss_kib) == 1)
			continue;
		(void)sscanf(line, "VmHWM: %ld", peak_kib);
	}
	fclose(f);
}
