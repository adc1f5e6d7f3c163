/* SPDX-License-Identifier: MIT */
/* Target functions: wire_hello_decode, wire_hello_encode, wire_welcome_decode, wire_welcome_encode,
 * wire_join_decode, wire_join_encode, wire_error_decode, wire_error_encode, wire_name_ok. */
/*
 * The input is one control payload (PROTOCOL.md §4, §5.6), offered to each
 * session-setup decoder in turn. Whatever a decoder accepts must survive a
 * round trip: decode, encode, decode gives the same struct, and the
 * fixed-size frames encode back to the very same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/frame.h"
#include "check.h"

static void hello(const uint8_t *p, size_t len)
{
	uint8_t out[WIRE_MAX_CONTROL];
	struct wire_hello h, g;
	int n;

	if (wire_hello_decode(&h, p, len) < 0) {
		CHECK(h.target[0] == '\0' && h.ndevices == 0 && h.pf.have == 0 && h.pf.nblocks == 0); /* nothing half-filled */
		return;
	}
	CHECK(h.nconns >= 1 && h.nconns <= WIRE_MAX_CONNS);
	CHECK(wire_name_ok(h.target, strlen(h.target)));
	CHECK(h.ndevices <= WIRE_MAX_DEVICES);
	for (unsigned i = 0; i < h.ndevices; i++)
		CHECK(wire_name_ok(h.devices[i], strlen(h.devices[i])));
	/* Pre-flight facts (revision 1.2): bounded, and names that can be shown as they are. */
	CHECK(h.pf.nblocks <= WIRE_MAX_RAMBLOCKS && h.pf.nfeatures <= WIRE_MAX_CPU_FEATURES);
	for (unsigned i = 0; i < h.pf.nblocks; i++)
		CHECK(wire_label_ok(h.pf.blocks[i].name, strlen(h.pf.blocks[i].name)));
	CHECK(!(h.pf.have & WIRE_PF_MACHINE) || wire_name_ok(h.pf.machine, strlen(h.pf.machine)));
	CHECK(!(h.pf.have & WIRE_PF_CPU_MODEL) || wire_name_ok(h.pf.cpu_model, strlen(h.pf.cpu_model)));
	n = wire_hello_encode(out, sizeof(out), &h);
	/* Our encoding is never longer than what we accepted: TLVs are the same or fewer. */
	CHECK(n >= WIRE_HELLO_FIXED_LEN && (size_t)n <= len);
	CHECK(wire_hello_decode(&g, out, (size_t)n) == 0);
	CHECK(!memcmp(&g, &h, sizeof(h)));
	/* Too small an output buffer is refused, never overrun. */
	CHECK(wire_hello_encode(out, (size_t)n - 1, &h) == -EMSGSIZE);
}

static void welcome(const uint8_t *p, size_t len)
{
	uint8_t out[WIRE_WELCOME_LEN];
	struct wire_welcome w, g;

	if (wire_welcome_decode(&w, p, len) < 0)
		return;
	CHECK(len == WIRE_WELCOME_LEN);
	wire_welcome_encode(out, &w);
	CHECK(!memcmp(out, p, WIRE_WELCOME_LEN));
	CHECK(wire_welcome_decode(&g, out, sizeof(out)) == 0);
	CHECK(!memcmp(&g, &w, sizeof(w)));
}

static void join(const uint8_t *p, size_t len)
{
	uint8_t out[WIRE_JOIN_LEN];
	struct wire_join j, g;

	if (wire_join_decode(&j, p, len) < 0)
		return;
	CHECK(len == WIRE_JOIN_LEN);
	wire_join_encode(out, &j);
	CHECK(!memcmp(out, p, WIRE_JOIN_LEN));
	CHECK(wire_join_decode(&g, out, sizeof(out)) == 0);
	CHECK(!memcmp(&g, &j, sizeof(j)));
}

static void error(const uint8_t *p, size_t len)
{
	uint8_t out[WIRE_ERROR_MIN_LEN + WIRE_MAX_ERROR_TEXT];
	struct wire_errmsg e, g;
	int n;

	if (wire_error_decode(&e, p, len) < 0)
		return;
	for (const char *c = e.text; *c; c++)
		CHECK(*c >= 0x20 && *c <= 0x7e);
	n = wire_error_encode(out, e.code, e.text);
	CHECK((size_t)n == len);
	CHECK(wire_error_decode(&g, out, (size_t)n) == 0);
	CHECK(!memcmp(&g, &e, sizeof(e)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	hello(data, size);
	welcome(data, size);
	join(data, size);
	error(data, size);
	return 0;
}
