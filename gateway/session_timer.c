/* SPDX-License-Identifier: MIT */
/* The session's timer thread: keepalive, the deadlines of sends and drains, the idle and reconnect deadlines, rejoin. */
#include "session_int.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"

/*
 * Timer, locked, at time <now> with keepalive period <ka> (ns): one
 * connection's deadlines. A drain the peer does not end, a send that makes
 * no progress, and receive silence shut the socket (the reader then
 * declares the connection dead); send silence gets a PING.
 */
static void timer_conn_locked(struct gw_conn *c, uint64_t now, uint64_t ka)
{
	if (!c || c->dead)
		return;
	if (c->draining && now - c->drain_ns > (uint64_t)GW_DRAIN_MS * 1000000ull) {
		/* The peer did not close its end after our close_notify: stop waiting for it. */
		shutdown(c->fd, SHUT_RDWR);
		c->drain_ns = now;
		return;
	}
	if (c->tx_since_ns && now - c->tx_since_ns > 3 * ka) {
		/*
		 * A send blocked that long: the peer does not read (the
		 * io_uring send and the flush of a partial record wait
		 * for socket space without a deadline of their own).
		 */
		char why[96];

		snprintf(why, sizeof(why), "a send made no progress for %llu s",
			 (unsigned long long)((now - c->tx_since_ns) / 1000000000ull));
		conn_drop_locked(c, why);
		return;
	}
	if (c->closing)
		return;
	if (now - c->last_rx_ns > 3 * ka) {
		gw_warn("connection %d: nothing received for %llu s; dropping it", c->idx,
			(unsigned long long)((now - c->last_rx_ns) / 1000000000ull));
		/* The reader fails on the shut socket and declares the connection dead. */
		shutdown(c->fd, SHUT_RDWR);
		c->last_rx_ns = now;
	} else if (now - c->last_tx_ns > ka && !c->ctl_head) {
		struct wire_hdr h = { .type = WIRE_T_PING, .len = WIRE_PING_LEN };
		uint8_t nonce[WIRE_PING_LEN];

		wire_u64_encode(nonce, now);
		(void)!conn_queue_ctl(c, &h, nonce);
		c->last_tx_ns = now; /* one PING per period, sent or not */
	}
}

/*
 * Timer, locked. The session's deadlines: idle (server), the wait for a
 * BYE that did not come (server), the reconnect timeout with every
 * connection gone. Returns true when the session needs no rejoin this
 * tick (it failed, ended a wait, or has no open stream).
 */
static bool timer_session_locked(struct gw_session *s, uint64_t now)
{
	if (!s->err_code && s->open_streams == 0 && s->cfg.idle_ms > 0 && s->nlive > 0 &&
	    now - s->idle_since_ns > (uint64_t)s->cfg.idle_ms * 1000000ull) {
		gw_session_fail_locked(s, WIRE_E_LIMIT, true, "session idle for %d s without a stream; closed",
				       s->cfg.idle_ms / 1000);
		return true;
	}
	if (s->cfg.server && gw_session_awaits_bye_locked(s) && s->nlive == 0 && s->cfg.reconnect_ms > 0 &&
	    now - s->all_dead_ns > (uint64_t)s->cfg.reconnect_ms * 1000000ull) {
		gw_info("the client went without BYE and did not come back within %d s; closing the session",
			s->cfg.reconnect_ms / 1000);
		s->bye_wait_over = true;
		pthread_cond_broadcast(&s->cond);
		return true;
	}
	if (s->err_code || s->open_streams == 0)
		return true;
	if (s->nlive == 0 && s->cfg.reconnect_ms > 0 &&
	    now - s->all_dead_ns > (uint64_t)s->cfg.reconnect_ms * 1000000ull) {
		gw_session_fail_locked(s, WIRE_E_TRUNCATED, false,
				       "no connection came back within the %d s reconnect timeout; %d stream(s) unfinished",
				       s->cfg.reconnect_ms / 1000, s->open_streams);
		return true;
	}
	return false;
}

/*
 * Timer, locked (dropped around each attempt). Client: rejoins the dead
 * connections whose backoff has passed, through s->rejoin and
 * gw_session_replace_conn.
 */
static void timer_rejoin_locked(struct gw_session *s, uint64_t now)
{
	for (int i = 0; i < s->nconns && !s->finished && !s->err_code; i++) {
		struct gw_conn *c = s->conns[i];
		struct mr_conn *conn = NULL;
		int r;

		if (!c || !c->dead || now < s->rejoin_at_ns[i] ||
		    (s->nlive > 0 && s->rejoin_tries[i] >= GW_REJOIN_TRIES))
			continue;
		pthread_mutex_unlock(&s->lock);
		r = s->rejoin(s, i, &conn);
		if (r == 0)
			r = gw_session_replace_conn(s, i, conn);
		pthread_mutex_lock(&s->lock);
		if (r == 0) {
			gw_info("connection %d rejoined the session", i);
			s->rejoin_tries[i] = 0;
		} else if (r == -ENOENT) {
			gw_session_fail_locked(s, WIRE_E_TRUNCATED, false,
					       "the server no longer knows this session; it cannot be resumed");
		} else {
			int k = s->rejoin_tries[i] < 5 ? s->rejoin_tries[i] : 5;

			/*
			 * Backoff 100 ms, 200 ms, ... 3.2 s. While other connections
			 * live, give up on this one after GW_REJOIN_TRIES; with none
			 * left, the reconnect timeout bounds the attempts.
			 */
			s->rejoin_tries[i]++;
			s->rejoin_at_ns[i] = gw_now_ns() + (100000000ull << k);
			if (s->rejoin_tries[i] == GW_REJOIN_TRIES && s->nlive > 0)
				gw_warn("connection %d: giving up rejoining it after %d attempts; %d connection(s) carry on",
					i, GW_REJOIN_TRIES, s->nlive);
		}
	}
}

/*
 * Session timer, one tick every GW_TICK_MS until the session finishes:
 * keepalive (PING after keepalive_ms of send silence; a connection that
 * stays silent for 3 x keepalive_ms is dropped, which catches half-open
 * connections), the reconnect deadline, and on the client the rejoin of
 * dead connections with backoff.
 */
void *session_timer_main(void *arg)
{
	struct gw_session *s = arg;
	uint64_t ka = (uint64_t)s->cfg.keepalive_ms * 1000000ull;

	thread_name("mr-timer", 0);
	pthread_mutex_lock(&s->lock);
	while (!s->finished) {
		struct timespec ts;
		uint64_t now;

		deadline(&ts, GW_TICK_MS);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		if (s->finished)
			break;
		now = gw_now_ns();
		for (int i = 0; i < WIRE_MAX_CONNS; i++)
			timer_conn_locked(s->conns[i], now, ka);
		if (!timer_session_locked(s, now) && s->rejoin)
			timer_rejoin_locked(s, now);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}
