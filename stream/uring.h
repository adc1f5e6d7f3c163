/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine: the byte transport under the TLS record layer.
 *
 * TX (struct mr_uring_tx): one ring per connection, used by the one thread
 * that sends on that connection. The ring owns a pool of registered buffers;
 * the caller takes a buffer (mr_uring_tx_get), fills it (e.g. seals TLS
 * records into it) and hands it back with mr_uring_tx_send, which sends it
 * with IORING_OP_SEND_ZC from the registered buffer and returns once the
 * kernel has accepted every byte. The kernel may still read the pages after
 * that: a buffer goes back to the pool only when its notification CQE
 * (IORING_CQE_F_NOTIF) has arrived, never before.
 *
 * RX (struct mr_uring_rx): one ring per connection, used by the one thread
 * that receives on it, with a provided-buffer ring. mr_uring_rx_recv
 * returns the bytes of one completion in a provided buffer; the caller
 * gives that buffer back with mr_uring_rx_put once it has consumed it. A
 * TLS record may straddle two buffers: assembling it is the caller's job.
 *
 * Threads: *_new may run in any thread. The first *_get/_send (TX) or
 * *_recv (RX) binds the ring to the calling thread (IORING_SETUP_SINGLE_ISSUER
 * where the kernel has it); from then on only that thread may call the
 * object's functions, except *_stats, which any thread may call (another
 * thread's send fails with -EEXIST, and the engine with it). Another
 * thread may end a blocked call with shutdown(fd, SHUT_RDWR): TX calls then
 * return -EPIPE, RX returns 0 (end of stream) or -errno.
 *
 * Fallback: *_new returns -ENOSYS (no ring can be set up: an old kernel,
 * sysctl kernel.io_uring_disabled, a seccomp filter) or -EOPNOTSUPP (a
 * feature is missing, buffers cannot be registered (RLIMIT_MEMLOCK), or
 * MIGRELAY_IO=posix) with one line in <why>; the caller logs it once and
 * uses plain send()/recv() on that connection. Other errors are the
 * caller's: -EINVAL (sizes), -ENOTSOCK, -ENOMEM (malloc/mmap).
 *
 * All functions return 0 (or a byte count) or -errno; the caller never
 * needs to look at errno.
 */
#ifndef MR_STREAM_URING_H
#define MR_STREAM_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire.h"

enum mr_uring_limits {
	MR_URING_MAX_BUFS = 4096,	 /* TX pool and RX provided buffers, each (RX: a power of two) */
	MR_URING_MAX_BUFSIZE = 16 << 20, /* 16 MiB: largest single buffer */
	MR_URING_DRAIN_MS = 5000,	 /* mr_uring_tx_free waits this long for notifications */
	MR_URING_ZC_MIN = 16 << 10,	 /* default: smaller sends are copied (mr_uring_tx_set_zc_min) */
	MR_URING_ZC_PROBE = 32,		 /* notifications looked at before zero-copy is given up (auto) */
};

/*
 * False when the environment asks for plain send()/recv() (MIGRELAY_IO=posix);
 * true otherwise (unset, "uring" or "auto"). Read once per process. The *_new
 * functions also refuse with -EOPNOTSUPP when it is false.
 */
bool mr_uring_wanted(void);

/*
 * Probes io_uring once per process (thread-safe): can a ring be set up, are
 * IORING_OP_SEND_ZC, IORING_OP_RECV, registered buffers and provided-buffer
 * rings there? Returns 0, or -ENOSYS/-EOPNOTSUPP with one line
 * in <why> (may be NULL). The *_new functions call it; tests use it to skip.
 */
MR_MUST_CHECK int mr_uring_probe(char *why, size_t whylen);

/* ---- TX ---- */

struct mr_uring_tx;

struct mr_uring_tx_stats {
	uint64_t sends;		/* mr_uring_tx_send calls that succeeded */
	uint64_t bytes;		/* bytes accepted by the kernel */
	uint64_t zc_sends;	/* SEND_ZC requests that will get a notification */
	uint64_t notifs;	/* notifications received (== zc_sends once drained) */
	uint64_t notifs_copied; /* notifications saying the kernel copied anyway (e.g. loopback) */
	uint64_t copied_sends;	/* copying sends: -ENOBUFS fallback, below zc_min, or socket without zero-copy */
	uint64_t short_sends;	/* requests that moved fewer bytes than asked (the rest resent) */
	uint64_t waits;		/* mr_uring_tx_get calls that had to wait for a notification */
	uint32_t inflight;	/* buffers waiting for their notification now */
	bool zc_given_up;	/* auto: the kernel copied the first MR_URING_ZC_PROBE sends; copying now */
};

/*
 * Sets up a TX engine for connected stream socket <fd> (not owned: the
 * caller closes it after mr_uring_tx_free) with <nbufs> registered buffers
 * of <bufsize> bytes each (1..MR_URING_MAX_BUFS, 1..MR_URING_MAX_BUFSIZE;
 * without CAP_IPC_LOCK, the pools of all rings of the same user together
 * count against RLIMIT_MEMLOCK, often 8 MiB).
 * Sockets without zero-copy support (AF_UNIX) get copying sends from the
 * same pool. Returns 0 and *out, or -errno with a reason in <why>.
 */
MR_MUST_CHECK int mr_uring_tx_new(struct mr_uring_tx **out, int fd, unsigned nbufs, size_t bufsize, char *why,
				  size_t whylen);

/*
 * Buffers shorter than <bytes> are sent with a copying send (no
 * notification, buffer reusable at once). Default MR_URING_ZC_MIN: below
 * about 10 KB pinning pages and waiting for a notification costs more
 * than the copy it saves (kernel Documentation/networking/msg_zerocopy.rst);
 * control frames (ACK, PING) are far below it. 0: everything zero-copy.
 */
void mr_uring_tx_set_zc_min(struct mr_uring_tx *tx, size_t bytes);

/*
 * On (the default): if the kernel reports (IORING_SEND_ZC_REPORT_USAGE,
 * kernel 6.2+) that it copied the data of each of the first
 * MR_URING_ZC_PROBE zero-copy sends anyway, as it does on loopback and veth,
 * where delivery to a local socket copies, the engine switches to copying
 * sends from the same pool, which cost less (see bench/uring_bench.c). Off:
 * zero-copy whatever the kernel does.
 */
void mr_uring_tx_set_zc_auto(struct mr_uring_tx *tx, bool on);

/*
 * A send that moves no byte for <ms> (0, the default: no limit) fails with
 * -ETIMEDOUT, and so does every later call: how much of the cancelled
 * request went out is unknown, so the stream cannot go on. A get that
 * waits that long for a notification fails with -ETIMEDOUT too (nothing is
 * lost then; it may be called again). io_uring ignores SO_SNDTIMEO; this
 * takes its place.
 */
void mr_uring_tx_set_timeout(struct mr_uring_tx *tx, int ms);

/*
 * On (the default), each request carries MSG_WAITALL: the kernel itself
 * resends after a partial send and we see one result per buffer. Off, a
 * partial send comes back and is resubmitted from here (one more CQE and,
 * for zero-copy, one more notification each); for tests and measurement.
 */
void mr_uring_tx_set_waitall(struct mr_uring_tx *tx, bool on);

/*
 * Owner thread. Hands out a free pool buffer: *buf and its capacity *cap.
 * Waits for notifications while every buffer is in flight. Returns 0,
 * -EPIPE when the socket was shut down or failed while waiting (noticed
 * within 100 ms), -ETIMEDOUT (mr_uring_tx_set_timeout), -EBUSY when
 * the caller already holds every buffer, or another -errno from the ring.
 */
MR_MUST_CHECK int mr_uring_tx_get(struct mr_uring_tx *tx, uint8_t **buf, size_t *cap);

/*
 * Owner thread. Sends <len> bytes at <buf>, which must lie within one buffer
 * the caller got from mr_uring_tx_get (not necessarily at its start). The
 * buffer belongs to the engine from now on, whatever the result: do not
 * touch it again. Returns 0 once the kernel has accepted all <len> bytes
 * (short sends are resent, -ENOBUFS falls back to a copying send, EINTR and
 * EAGAIN retried), or -EPIPE, -ECONNRESET, -ETIMEDOUT or another -errno of
 * the socket; -EINVAL if <buf> is not a held pool buffer.
 */
MR_MUST_CHECK int mr_uring_tx_send(struct mr_uring_tx *tx, uint8_t *buf, size_t len);

/*
 * Owner thread. Gives back a buffer got with mr_uring_tx_get without sending it.
 */
void mr_uring_tx_put(struct mr_uring_tx *tx, uint8_t *buf);

/*
 * Owner thread. Waits up to <timeout_ms> (< 0: MR_URING_DRAIN_MS) for every
 * outstanding notification. Returns 0 or -ETIMEDOUT (a peer that does not
 * read keeps the pages pinned; shutting the socket down releases them).
 */
MR_MUST_CHECK int mr_uring_tx_drain(struct mr_uring_tx *tx, int timeout_ms);

/*
 * Owner thread, or any thread once the owner is done with it. Drains
 * (MR_URING_DRAIN_MS; 200 ms if the socket is already shut down, failed
 * or closed), then frees the ring and the pool. Pool pages still
 * pinned by the kernel after that are unmapped, never reused by this
 * process, so they cannot change under a retransmission. NULL-safe.
 */
void mr_uring_tx_free(struct mr_uring_tx *tx);

/* Any thread: a snapshot of the counters (each read atomically). */
void mr_uring_tx_stats(const struct mr_uring_tx *tx, struct mr_uring_tx_stats *st);

/* Owner thread, for tests: notifications pending on the buffer holding <buf>. */
unsigned mr_uring_tx_pending(const struct mr_uring_tx *tx, const uint8_t *buf);

/* ---- RX ---- */

struct mr_uring_rx;

struct mr_uring_rx_stats {
	uint64_t completions; /* receive completions with data */
	uint64_t bytes;
	uint64_t arms;	   /* receive requests submitted (multishot: few) */
	uint64_t enobufs;  /* the provided ring ran empty */
	uint64_t timeouts; /* mr_uring_rx_recv returned -EAGAIN */
	uint32_t held;	   /* buffers the caller holds now */
	bool multishot;	   /* the kernel took a multishot receive */
};

/*
 * Sets up an RX engine for connected stream socket <fd> (not owned) with a
 * provided-buffer ring of <nbufs> buffers of <bufsize> bytes (nbufs a
 * power of two, 1..MR_URING_MAX_BUFS). Returns 0 and *out, or -errno with
 * a reason in <why>.
 */
MR_MUST_CHECK int mr_uring_rx_new(struct mr_uring_rx **out, int fd, unsigned nbufs, size_t bufsize, char *why,
				  size_t whylen);

/*
 * Owner thread. Waits up to <timeout_ms> (< 0: no limit) for bytes.
 * Returns n > 0: *data points at n bytes in provided buffer *bid, which the
 * caller holds until mr_uring_rx_put; 0: end of stream (again on every
 * later call); -EAGAIN: timeout, the receive stays armed and the next call
 * continues where this one stopped (nothing is lost); -ENOBUFS: the caller
 * holds every buffer and must put some back first; or -errno of the socket
 * (-ECONNRESET, ...). Bytes come in stream order across calls.
 */
MR_MUST_CHECK ssize_t mr_uring_rx_recv(struct mr_uring_rx *rx, const uint8_t **data, unsigned *bid, int timeout_ms);

/* Owner thread. Gives provided buffer <bid> back to the kernel. */
void mr_uring_rx_put(struct mr_uring_rx *rx, unsigned bid);

/* Owner thread, or any thread once the owner is done with it. NULL-safe. */
void mr_uring_rx_free(struct mr_uring_rx *rx);

/* Any thread: a snapshot of the counters. */
void mr_uring_rx_stats(const struct mr_uring_rx *rx, struct mr_uring_rx_stats *st);

#endif
