/* SPDX-License-Identifier: MIT */
/* Target functions: wire_frame_parse, wire_hdr_parse, wire_hdr_encode, wire_hello_decode,
 * wire_welcome_decode, wire_join_decode, wire_open_decode, wire_end_decode, wire_u64_decode,
 * wire_error_decode (and their encoders), codec_decode, codec_encode. */
/*
 * The input is a byte stream as a connection would carry it (PROTOCOL.md
 * §3): frames are parsed one after another until the stream ends, needs
 * more bytes or is bad, and every payload goes through the decoder of its
 * type. Checks: a parsed header encodes back to the same bytes, a shorter
 * view of a whole frame asks for more, fixed-size payloads re-encode to
 * the same bytes, and a decoded chunk encodes and decodes back to itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/codec.h"
#include "stream/frame.h"
#include "check.h"

/* Re-encoding every chunk is slow for big ones; small chunks cover the same code. */
enum { REENCODE_MAX = 16 << 10 };

static struct codec *codec;
static uint8_t *raw, *enc;

static void cleanup(void)
{
	codec_free(codec);
	free(raw);
	free(enc);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	codec = codec_new(1);
	raw = malloc(WIRE_MAX_CHUNK);
	enc = malloc(WIRE_MAX_CHUNK);
	if (!codec || !raw || !enc)
		abort();
	atexit(cleanup);
	return 0;
}

/* Encodes <p, len> as a chunk and checks it decodes back to the same bytes. */
static void chunk_roundtrip(const uint8_t *p, size_t len)
{
	size_t n = 0;
	unsigned fl;
	int r;

	if (len == 0 || len > REENCODE_MAX)
		return;
	fl = codec_encode(codec, true, p, len, enc, &n);
	if (fl == 0) {
		CHECK(n == len);
		return;
	}
	CHECK(n < len);
	r = codec_decode(codec, fl, enc, n, raw, WIRE_MAX_CHUNK);
	CHECK(r == (int)len);
	CHECK(!memcmp(raw, p, len));
}

static void data_frame(const struct wire_frame *f)
{
	int r = codec_decode(codec, f->h.flags, f->payload, f->h.len, raw, WIRE_MAX_CHUNK);

	if (r < 0)
		return;
	CHECK(r > 0 && r <= WIRE_MAX_CHUNK);
	if (f->h.flags == 0) {
		CHECK(r == (int)f->h.len);
		chunk_roundtrip(f->payload, f->h.len);
		return;
	}
	CHECK(wire_load_be32(f->payload) == (uint32_t)r);
	if (f->h.flags & WIRE_F_ZERO)
		CHECK(codec_is_zero(raw, (size_t)r));
	if ((size_t)r <= REENCODE_MAX) {
		uint8_t *copy = malloc((size_t)r);

		CHECK(copy);
		memcpy(copy, raw, (size_t)r);
		chunk_roundtrip(copy, (size_t)r);
		free(copy);
	}
}

static void control_frame(const struct wire_frame *f)
{
	const uint8_t *p = f->payload;
	size_t len = f->h.len;
	uint8_t out[WIRE_MAX_CONTROL];

	switch (f->h.type) {
	case WIRE_T_HELLO: {
		struct wire_hello h, g;
		int n;

		if (wire_hello_decode(&h, p, len) < 0)
			break;
		n = wire_hello_encode(out, sizeof(out), &h);
		CHECK(n >= WIRE_HELLO_FIXED_LEN && (size_t)n <= len);
		CHECK(wire_hello_decode(&g, out, (size_t)n) == 0);
		CHECK(!memcmp(&g, &h, sizeof(h)));
		break;
	}
	case WIRE_T_WELCOME: {
		struct wire_welcome w;

		if (wire_welcome_decode(&w, p, len) < 0)
			break;
		wire_welcome_encode(out, &w);
		CHECK(!memcmp(out, p, WIRE_WELCOME_LEN));
		break;
	}
	case WIRE_T_JOIN: {
		struct wire_join j;

		if (wire_join_decode(&j, p, len) < 0)
			break;
		wire_join_encode(out, &j);
		CHECK(!memcmp(out, p, WIRE_JOIN_LEN));
		break;
	}
	case WIRE_T_OPEN: {
		uint8_t role;

		if (wire_open_decode(&role, p, len) < 0)
			break;
		CHECK(role <= WIRE_ROLE_MAX);
		wire_open_encode(out, role);
		CHECK(!memcmp(out, p, WIRE_OPEN_LEN));
		break;
	}
	case WIRE_T_END: {
		struct wire_end e;

		/* The header check already fixed the length. */
		CHECK(wire_end_decode(&e, p, len) == 0);
		wire_end_encode(out, &e);
		CHECK(!memcmp(out, p, WIRE_END_LEN));
		break;
	}
	case WIRE_T_ACK:
	case WIRE_T_VERIFIED:
	case WIRE_T_PING:
	case WIRE_T_PONG: {
		uint64_t v;

		CHECK(wire_u64_decode(&v, p, len) == 0);
		wire_u64_encode(out, v);
		CHECK(!memcmp(out, p, 8));
		break;
	}
	case WIRE_T_ERROR: {
		struct wire_errmsg e, g;
		int n;

		CHECK(wire_error_decode(&e, p, len) == 0);
		CHECK(strlen(e.text) == len - WIRE_ERROR_MIN_LEN);
		CHECK(wire_error_name(e.code) != NULL);
		n = wire_error_encode(out, e.code, e.text);
		CHECK((size_t)n == len);
		CHECK(wire_error_decode(&g, out, (size_t)n) == 0);
		CHECK(!memcmp(&g, &e, sizeof(e)));
		break;
	}
	case WIRE_T_BYE:
	case WIRE_T_OPENED:
		CHECK(len == 0);
		break;
	default:
		CHECK(0); /* wire_frame_parse let an unknown type through */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;

	if (!codec)
		LLVMFuzzerInitialize(NULL, NULL);
	for (;;) {
		struct wire_frame f;
		uint8_t hb[WIRE_HDR_LEN];
		ssize_t k = wire_frame_parse(&f, p, end);

		if (k <= 0)
			break;
		CHECK((size_t)k == WIRE_HDR_LEN + f.h.len && (size_t)k <= (size_t)(end - p));
		CHECK(f.payload == p + WIRE_HDR_LEN);
		CHECK(wire_type_name(f.h.type) != NULL);
		wire_hdr_encode(hb, &f.h);
		CHECK(!memcmp(hb, p, WIRE_HDR_LEN));
		/* One byte short of the frame is "need more", never an error. */
		CHECK(wire_frame_parse(&f, p, p + k - 1) == 0);
		CHECK(wire_frame_parse(&f, p, p + k) == k);
		if (f.h.type == WIRE_T_DATA)
			data_frame(&f);
		else
			control_frame(&f);
		p += k;
	}
	return 0;
}
