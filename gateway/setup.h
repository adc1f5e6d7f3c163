/* SPDX-License-Identifier: MIT */
/*
 * Session setup, both sides: HELLO -> WELCOME and JOIN -> WELCOME, or an
 * ERROR (PROTOCOL.md §2.2, §2.3, §4.4). Every setup frame goes through
 * gw_setup_send and gw_setup_recv, the only two functions that move setup
 * bytes; besides them the connection is touched only for the plaintext
 * switch after WELCOME, the close_notify of a refusal and the text of the
 * last TLS error. A new transport changes those few calls and nothing else.
 *
 * A connection in its setup is a struct gw_link: a TLS session on its TCP
 * socket, or a connection that a layer below migrelay already secures
 * (an SSH channel on the client, a unix socket that sshd forwards to on
 * the server), which carries the setup frames as it carries the data.
 */
#ifndef MR_GATEWAY_SETUP_H
#define MR_GATEWAY_SETUP_H

#include <stdbool.h>
#include <stdint.h>

#include "crypto/authz.h"
#include "crypto/tls.h"
#include "registry.h"
#include "session.h"
#include "stream/conn.h"
#include "stream/frame.h"
#include "target.h"

/*
 * One connection during its setup. Exactly one of <tls> and <conn> is
 * set: <tls> with <fd> its TCP socket; or <conn> (no TLS inside: the
 * plaintext mode of §4.4 does not apply) with <fd> == conn->fd. The
 * receive timeouts that bound the waits are set on <fd>.
 */
struct gw_link {
	struct mr_tls *tls;
	struct mr_conn *conn;
	int fd;
};

/* A link over TLS session <t> on socket <fd>, or over connection <c>. */
static inline struct gw_link gw_link_tls(struct mr_tls *t, int fd)
{
	return (struct gw_link){.tls = t, .conn = NULL, .fd = fd};
}
static inline struct gw_link gw_link_conn(struct mr_conn *c)
{
	return (struct gw_link){.tls = NULL, .conn = c, .fd = c ? c->fd : -1};
}

/* The last send or receive failure of <l>, "" if none. */
const char *gw_link_error(const struct gw_link *l);

/*
 * Frees what <l> holds: the TLS session and its socket, or the
 * connection (which closes its own socket). NULL-safe; <l> is emptied.
 */
void gw_link_free(struct gw_link *l);

/*
 * Sends one setup frame (<len> <= WIRE_MAX_CONTROL): ERROR session-wide, the others on stream 0.
 * Returns 0 or -EPIPE. Any thread that owns <l> during setup.
 */
MR_MUST_CHECK int gw_setup_send(const struct gw_link *l, uint8_t type, uint8_t flags, const uint8_t *p, uint32_t len);

/*
 * Reads one setup frame into <h> and <p> (WIRE_MAX_CONTROL bytes) by
 * <deadline_ns> (gw_now_ns clock): each wait is bounded by the time left.
 * A peer that trickles bytes can stretch a wait only up to the deadline
 * of the wait in progress; the server also shuts the socket down at its
 * setup deadline (gateway/preauth.h), which ends any wait at once.
 * Returns 0, -ECONNRESET (closed before a whole frame), -ETIMEDOUT,
 * -EPROTO (malformed header or a length over WIRE_MAX_CONTROL), -EACCES
 * (a TLS failure before the first byte: in TLS 1.3 that is how a peer
 * refuses our certificate; mr_tls_last_error names the alert).
 */
MR_MUST_CHECK int gw_setup_recv(const struct gw_link *l, uint64_t deadline_ns, struct wire_hdr *h, uint8_t *p);

/* Encodes WELCOME for connection <idx> of a session and sends it in the session's mode. 0 or -EPIPE. */
MR_MUST_CHECK int gw_setup_welcome(const struct gw_link *l, const struct gw_session *s, uint16_t idx);

/*
 * Sends ERROR <code> with <text> (cut to WIRE_MAX_ERROR_TEXT) and a TLS
 * close_notify (or the connection's own end); the caller still frees <l>.
 */
void gw_setup_refuse(const struct gw_link *l, uint16_t code, const char *text);

/*
 * Whether this process speaks revision 1.2 (OPEN acknowledgements and
 * pre-flight TLVs, PROTOCOL.md §4.1.1, §5.1, §8): yes, unless
 * MIGRELAY_WIRE_REVISION=1.1 makes it answer and ask as a migrelay of
 * revision 1.1 does (compatibility tests).
 * Any thread.
 */
bool gw_wire_open_ack(void);

/* What a client's setup request ended with, when it did not end in WELCOME. */
struct gw_setup_fail {
	uint16_t wire_code;		      /* the server's ERROR code, 0 if none came */
	char text[WIRE_MAX_ERROR_TEXT + 256]; /* one sentence for the user, without "migrelay: " */
};

/*
 * Client: sends the setup frame <type> (HELLO or JOIN) with payload <p>
 * and reads the answer by <deadline_ns>. On WELCOME, checks it names
 * connection <idx> with exactly the WELCOME flags <want> (what the
 * session's HELLO asked for: WIRE_WELCOME_F_PLAINTEXT, _OPENED), and
 * switches the connection to plaintext right after it when so (§4.4).
 * <what> names the request in messages ("HELLO", "JOIN of connection 2").
 * Returns 0 with *w filled, or -ECONNRESET/-ETIMEDOUT (no answer),
 * -EACCES (TLS alert: our certificate was refused), -EPROTO (malformed
 * or wrong answer), -EREMOTEIO (the server refused: f->wire_code), with
 * f->text set. The plaintext mode only with a TLS link. Any thread that owns <l>.
 */
MR_MUST_CHECK int gw_setup_request(const struct gw_link *l, uint8_t type, const uint8_t *p, uint32_t len, uint16_t idx,
				   uint8_t want, const char *what, uint64_t deadline_ns, struct wire_welcome *w,
				   struct gw_setup_fail *f);

/* Server side (`migrelay serve`). */

struct gw_setup_srv {
	struct gw_target *targets;
	int ntargets;
	const struct authz_list *allow; /* for every target */
	int max_conns;
	int max_per_identity; /* sessions one identity may hold at once, 0: no limit but --max-sessions */
	uint16_t max_streams;
	uint32_t window;
	int reconnect_ms, keepalive_ms, idle_ms;
	bool plaintext; /* --insecure-plaintext: the plaintext mode is offered */
	struct gw_registry *reg;
};

/* A connection that got its WELCOME, ready to be handed to its session. */
struct gw_admitted {
	struct gw_reg_entry *e; /* HELLO: the creator's reference; JOIN: a reference and e->join_lock held */
	uint16_t idx;
	bool join;
};

/*
 * Handshake thread: reads HELLO or JOIN from authenticated connection <l>
 * (whose peer is <identity>: the TLS identity, or UID=name of a unix
 * socket's peer) by <deadline_ns>, runs every admission check before any side effect on
 * the target (HELLO: protocol, mode, target, authorization, connection and
 * stream limits, --max-sessions; then the target's preparation), and sends
 * WELCOME. Returns 0 with *a filled: the caller takes the connection out of
 * the pending list and calls gw_setup_handover. Or -errno after refusing
 * the peer with ERROR (or losing it): the caller frees <l> (gw_link_free).
 */
MR_MUST_CHECK int gw_setup_serve(const struct gw_setup_srv *c, const struct gw_link *l, const char *peer,
				 const char *identity, uint64_t deadline_ns, struct gw_admitted *a);

/*
 * Hands link <l> over to the session of <a> (connection 0 starts the
 * session and its supervisor; a JOIN fills or replaces its connection),
 * and releases what <a> held. Owns what <l> holds from the call on.
 */
void gw_setup_handover(const struct gw_setup_srv *c, struct gw_admitted *a, struct gw_link *l, const char *peer);

#endif
