// SPDX-License-Identifier: MIT
/*
 * Pending connections (gateway/preauth.c): who is evicted at each cap, the
 * connect rate, the setup deadline, and which addresses count as one.
 * Each "connection" is one end of a socketpair; an evicted one's other end
 * reads EOF (the shutdown).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/log.h"
#include "gateway/preauth.h"

struct pc {
	int fd, peer;
	struct gw_pending *pe;
};

static struct sockaddr_storage v4(const char *ip)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

	s4->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	s6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	return ss;
}

/* Admits a new connection from <ss>; returns admit's result. */
static int admit(struct gw_preauth *p, struct pc *c, struct sockaddr_storage ss)
{
	int sv[2];
	int r;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	c->fd = sv[0];
	c->peer = sv[1];
	r = gw_preauth_admit(p, c->fd, (struct sockaddr *)&ss, &c->pe);
	if (r < 0) {
		close(c->fd);
		close(c->peer);
		c->fd = c->peer = -1;
	}
	return r;
}

/* True when <c> was shut down by the pending list. */
static bool evicted(struct pc *c)
{
	char b;

	return recv(c->peer, &b, 1, MSG_DONTWAIT) == 0;
}

static void done(struct gw_preauth *p, struct pc *c)
{
	gw_preauth_done(p, c->pe);
	close(c->fd);
	close(c->peer);
}

static void init(struct gw_preauth *p, int max_pending, int per_addr, int rate, int setup_ms)
{
	struct gw_preauth_cfg cfg = {
	    .max_pending = max_pending, .max_per_addr = per_addr, .rate = rate, .setup_ms = setup_ms};

	assert_int_equal(gw_preauth_init(p, &cfg), 0);
}

static void per_address_oldest_goes(void **state)
{
	struct gw_preauth p;
	struct pc c[4];

	(void)state;
	init(&p, 100, 2, 1000, 10000);
	assert_int_equal(admit(&p, &c[0], v4("10.0.0.1")), 0);
	assert_int_equal(admit(&p, &c[1], v4("10.0.0.1")), 0);
	assert_int_equal(admit(&p, &c[2], v4("10.0.0.2")), 0); /* another address: no eviction */
	assert_false(evicted(&c[0]));
	assert_int_equal(admit(&p, &c[3], v4("10.0.0.1")), 0); /* third of 10.0.0.1: its oldest goes */
	assert_true(evicted(&c[0]));
	assert_false(evicted(&c[1]));
	assert_false(evicted(&c[2]));
	assert_false(evicted(&c[3]));
	for (int i = 0; i < 4; i++)
		done(&p, &c[i]);
	assert_int_equal(gw_preauth_count(&p), 0);
	gw_preauth_free(&p);
}

static void global_cap_prefers_unauthenticated(void **state)
{
	struct gw_preauth p;
	struct pc c[4];

	(void)state;
	init(&p, 3, 100, 1000, 10000);
	assert_int_equal(admit(&p, &c[0], v4("10.0.0.1")), 0);
	assert_int_equal(admit(&p, &c[1], v4("10.0.0.2")), 0);
	assert_int_equal(admit(&p, &c[2], v4("10.0.0.3")), 0);
	gw_preauth_authed(&p, c[0].pe); /* the oldest is past its TLS handshake */
	assert_int_equal(admit(&p, &c[3], v4("10.0.0.4")), 0);
	assert_false(evicted(&c[0]));
	assert_true(evicted(&c[1])); /* the oldest still in its handshake */
	assert_false(evicted(&c[2]));
	assert_false(evicted(&c[3]));
	for (int i = 0; i < 4; i++)
		done(&p, &c[i]);
	gw_preauth_free(&p);
}

static void all_authenticated_oldest_goes(void **state)
{
	struct gw_preauth p;
	struct pc c[3];

	(void)state;
	init(&p, 2, 100, 1000, 10000);
	assert_int_equal(admit(&p, &c[0], v4("10.0.0.1")), 0);
	assert_int_equal(admit(&p, &c[1], v4("10.0.0.2")), 0);
	gw_preauth_authed(&p, c[0].pe);
	gw_preauth_authed(&p, c[1].pe);
	assert_int_equal(admit(&p, &c[2], v4("10.0.0.3")), 0);
	assert_true(evicted(&c[0]));
	assert_false(evicted(&c[1]));
	for (int i = 0; i < 3; i++)
		done(&p, &c[i]);
	gw_preauth_free(&p);
}

static void evicted_ones_count_until_done(void **state)
{
	struct gw_preauth p;
	struct pc c[6];

	(void)state;
	/* max_pending 2: at most 4 listed, evicted ones included. */
	init(&p, 2, 100, 1000, 10000);
	for (int i = 0; i < 4; i++)
		assert_int_equal(admit(&p, &c[i], v4("10.0.0.1")), 0);
	assert_int_equal(admit(&p, &c[4], v4("10.0.0.1")), -EBUSY);
	done(&p, &c[0]); /* an evicted one leaves: room again */
	assert_int_equal(admit(&p, &c[5], v4("10.0.0.1")), 0);
	for (int i = 1; i < 4; i++)
		done(&p, &c[i]);
	done(&p, &c[5]);
	gw_preauth_free(&p);
}

static void connect_rate(void **state)
{
	struct gw_preauth p;
	struct pc c[4];

	(void)state;
	init(&p, 100, 100, 1, 10000); /* 1 per second, bursts of 2 */
	assert_int_equal(admit(&p, &c[0], v4("10.0.0.1")), 0);
	assert_int_equal(admit(&p, &c[1], v4("10.0.0.1")), 0);
	assert_int_equal(admit(&p, &c[2], v4("10.0.0.1")), -EAGAIN);
	assert_int_equal(admit(&p, &c[3], v4("10.0.0.2")), 0); /* another address has its own bucket */
	done(&p, &c[0]);
	done(&p, &c[1]);
	done(&p, &c[3]);
	gw_preauth_free(&p);
}

static void deadline(void **state)
{
	struct gw_preauth p;
	struct pc c[2];

	(void)state;
	init(&p, 100, 100, 1000, 50);
	assert_int_equal(admit(&p, &c[0], v4("10.0.0.1")), 0);
	gw_preauth_sweep(&p);
	assert_false(evicted(&c[0]));
	usleep(80 * 1000);
	assert_int_equal(admit(&p, &c[1], v4("10.0.0.1")), 0);
	gw_preauth_sweep(&p);
	assert_true(evicted(&c[0]));
	assert_false(evicted(&c[1]));
	done(&p, &c[0]);
	done(&p, &c[1]);
	gw_preauth_free(&p);
}

static void addresses_that_count_as_one(void **state)
{
	struct gw_preauth p;
	struct pc c[6];

	(void)state;
	init(&p, 100, 1, 1000, 10000);
	/* One IPv6 /64 is one address. */
	assert_int_equal(admit(&p, &c[0], v6("2001:db8:1:2::1")), 0);
	assert_int_equal(admit(&p, &c[1], v6("2001:db8:1:2:ffff::9")), 0);
	assert_true(evicted(&c[0]));
	/* Another /64 is another. */
	assert_int_equal(admit(&p, &c[2], v6("2001:db8:1:3::1")), 0);
	assert_false(evicted(&c[1]));
	/* A v4-mapped address is that IPv4 address; the rest of its /64 is not shared. */
	assert_int_equal(admit(&p, &c[3], v4("192.0.2.7")), 0);
	assert_int_equal(admit(&p, &c[4], v6("::ffff:192.0.2.7")), 0);
	assert_true(evicted(&c[3]));
	assert_int_equal(admit(&p, &c[5], v6("::ffff:192.0.2.8")), 0);
	assert_false(evicted(&c[4]));
	for (int i = 0; i < 6; i++)
		done(&p, &c[i]);
	gw_preauth_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(per_address_oldest_goes),
	    cmocka_unit_test(global_cap_prefers_unauthenticated),
	    cmocka_unit_test(all_authenticated_oldest_goes),
	    cmocka_unit_test(evicted_ones_count_until_done),
	    cmocka_unit_test(connect_rate),
	    cmocka_unit_test(deadline),
	    cmocka_unit_test(addresses_that_count_as_one),
	};

	gw_log_level = GW_LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
