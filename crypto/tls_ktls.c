/* SPDX-License-Identifier: MIT */
/*
 * Kernel TLS ("ktls"): after the handshake the kernel seals and opens the
 * records (Linux kernel TLS, the TCP "tls" ULP), and send()/recv() carry
 * plain application bytes; record types other than application data come
 * as control messages. Where the kernel takes the send keys but not the
 * receive keys, records are opened in place (tls_inplace.c).
 *
 * Not used when MIGRELAY_KTLS=0 or the kernel lacks it; t->ktls_why then
 * says why, for one log line per process.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/tls.h>

#include "tls_int.h"

static struct tls_rec_conn *rec_of(struct mr_conn *c)
{
	return (struct tls_rec_conn *)c;
}

union tls_ktls_info {
	struct tls_crypto_info base;
	struct tls12_crypto_info_aes_gcm_128 gcm128;
	struct tls12_crypto_info_aes_gcm_256 gcm256;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

/*
 * Fills the kernel's crypto_info for one direction (TLS 1.3: the first 4
 * IV bytes are the GCM salt, the other 8 the "iv"; ChaCha20 takes all 12).
 * Returns its size, 0 if the suite has no kernel equivalent.
 */
static size_t tls_ktls_info(union tls_ktls_info *k, enum mr_rec_cipher c, const gnutls_datum_t *key,
			    const gnutls_datum_t *iv, const unsigned char seq[8])
{
	memset(k, 0, sizeof(*k));
	k->base.version = TLS_1_3_VERSION;
	switch (c) {
	case MR_REC_AES_128_GCM:
		k->base.cipher_type = TLS_CIPHER_AES_GCM_128;
		memcpy(k->gcm128.salt, iv->data, 4);
		memcpy(k->gcm128.iv, iv->data + 4, 8);
		memcpy(k->gcm128.key, key->data, 16);
		memcpy(k->gcm128.rec_seq, seq, 8);
		return sizeof(k->gcm128);
	case MR_REC_AES_256_GCM:
		k->base.cipher_type = TLS_CIPHER_AES_GCM_256;
		memcpy(k->gcm256.salt, iv->data, 4);
		memcpy(k->gcm256.iv, iv->data + 4, 8);
		memcpy(k->gcm256.key, key->data, 32);
		memcpy(k->gcm256.rec_seq, seq, 8);
		return sizeof(k->gcm256);
	case MR_REC_CHACHA20_POLY1305:
		k->base.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
		memcpy(k->chacha.iv, iv->data, 12);
		memcpy(k->chacha.key, key->data, 32);
		memcpy(k->chacha.rec_seq, seq, 8);
		return sizeof(k->chacha);
	}
	return 0;
}

/*
 * Handshake thread. Hands both directions to kernel TLS: *tx and *rx for
 * what worked, t->ktls_why for what did not. Nothing may be buffered: rbuf
 * is empty and GnuTLS holds no record (checked by the caller).
 */
void tls_ktls_start(struct mr_tls *t, const struct tls_keys *k, bool *tx, bool *rx)
{
	union tls_ktls_info info;
	size_t n;

	*tx = *rx = false;
	if (setsockopt(t->fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0) {
		int e = errno;

		snprintf(t->ktls_why, sizeof(t->ktls_why),
			 "kernel TLS is not available: setsockopt(TCP_ULP, \"tls\"): %s (%s)", strerror(e),
			 e == ENOENT ? "this kernel has no tls module: modprobe tls, or build it with CONFIG_TLS"
				     : "the socket is not a TCP connection, or the kernel refuses the TLS ULP");
		return;
	}
	n = tls_ktls_info(&info, k->cipher, &k->key[0], &k->iv[0], k->seq[0]);
	if (!n || setsockopt(t->fd, SOL_TLS, TLS_TX, &info, (socklen_t)n) < 0) {
		snprintf(t->ktls_why, sizeof(t->ktls_why), "kernel TLS refused our send keys: %s (%s)",
			 n ? strerror(errno) : "unsupported cipher", "records are sealed in user space");
		explicit_bzero(&info, sizeof(info));
		return;
	}
	*tx = true;
	n = tls_ktls_info(&info, k->cipher, &k->key[1], &k->iv[1], k->seq[1]);
	if (!n || setsockopt(t->fd, SOL_TLS, TLS_RX, &info, (socklen_t)n) < 0)
		snprintf(t->ktls_why, sizeof(t->ktls_why),
			 "kernel TLS refused our receive keys: %s (sending uses kernel TLS, receiving opens records in user space)",
			 n ? strerror(errno) : "unsupported cipher");
	else
		*rx = true;
	explicit_bzero(&info, sizeof(info));
}

/* Sending thread. The kernel seals: the bytes go to the socket as they are. */
static ssize_t ktls_send(struct mr_conn *c, const void *p, size_t len)
{
	const unsigned char *b = p;
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = send(c->fd, b + off, len - off, MSG_NOSIGNAL);
		if (n < 0) {
			int e = errno;

			if (e == EINTR || e == EAGAIN)
				continue; /* SO_SNDTIMEO expired: keep trying (shutdown() ends it) */
			mr_conn_tx_error(c, "cannot send to the %s: %s", c->peer, strerror(e));
			if (e == EPIPE || e == ECONNRESET)
				return e == ECONNRESET ? -ECONNRESET : -EPIPE;
			return -EIO;
		}
		off += (size_t)n;
	}
	return (ssize_t)len;
}

/* Receiving thread. The kernel opens: record types arrive as a control message. */
static ssize_t ktls_recv(struct mr_conn *c, void *buf, size_t len)
{
	struct tls_rec_conn *e = rec_of(c);
	unsigned char *p = buf;

	for (;;) {
		char cbuf[CMSG_SPACE(sizeof(unsigned char))];
		struct iovec v = { p, len };
		struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		unsigned char type = MR_REC_T_DATA;
		struct cmsghdr *cm;
		ssize_t n;
		int r;

		if (e->rx_closed)
			return 0;
		n = recvmsg(c->fd, &m, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno == EBADMSG || errno == EMSGSIZE) {
				mr_conn_rx_error(c, "the %s sent %s (kernel TLS: %s)", c->peer, tls_rec_strerror(-errno),
						 strerror(errno));
				return -EIO;
			}
			return tls_rec_rx_failed(e, errno == EWOULDBLOCK ? -EAGAIN : -errno);
		}
		if (n == 0)
			return tls_rec_rx_failed(e, 0);
		for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
			if (cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE)
				type = *CMSG_DATA(cm);
		if (type == MR_REC_T_DATA)
			return n;
		r = tls_rec_control(e, p, (size_t)n, type);
		if (r <= 0)
			return r;
	}
}

/*
 * Sending thread. close_notify as an alert record the kernel seals, best
 * effort: at most three SO_SNDTIMEO expiries.
 */
static void ktls_bye(struct mr_conn *c)
{
	static const unsigned char alert[2] = { 1 /* warning */, GNUTLS_A_CLOSE_NOTIFY };
	char cbuf[CMSG_SPACE(sizeof(unsigned char))] = { 0 };
	struct iovec v = { (void *)(uintptr_t)alert, sizeof(alert) };
	struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	int tries = 3;
	ssize_t n;

	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
	*CMSG_DATA(cm) = MR_REC_T_ALERT;
	do
		n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
	while (n < 0 && (errno == EINTR || (errno == EAGAIN && --tries > 0)));
}

const struct mr_conn_ops tls_ktls_ops = {
	.name = "ktls",
	.send = ktls_send,
	.recv = ktls_recv,
	.bye = ktls_bye,
	.note = tls_conn_note,
	.free = tls_rec_free,
};

const struct mr_conn_ops tls_ktls_tx_ops = {
	.name = "ktls",
	.send = ktls_send,
	.recv = tls_inplace_recv,
	.bye = ktls_bye,
	.note = tls_conn_note,
	.free = tls_rec_free,
};
