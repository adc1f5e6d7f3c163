/* SPDX-License-Identifier: MIT */
/*
 * Frame header and payload codecs (PROTOCOL.md §3-§5). Pure: no syscalls,
 * no allocation. Every function that reads peer bytes takes a length and
 * never reads past it.
 */
#ifndef MR_STREAM_FRAME_H
#define MR_STREAM_FRAME_H

#include <stdbool.h>
#include <sys/types.h>

#include "wire.h"

/* Writes the 16-byte header. */
void wire_hdr_encode(uint8_t out[WIRE_HDR_LEN], const struct wire_hdr *h);

/*
 * Parses and validates a header at [p, end).
 * Returns WIRE_HDR_LEN when a valid header was read into <h>, 0 when fewer
 * than WIRE_HDR_LEN bytes are available, -EMSGSIZE when the length exceeds
 * the cap for its type, -EBADMSG for an unknown type, unknown flags, a bad
 * fixed length or a stream id not allowed for the type.
 */
MR_MUST_CHECK int wire_hdr_parse(struct wire_hdr *h, const uint8_t *p, const uint8_t *end);

struct wire_frame {
	struct wire_hdr h;
	const uint8_t *payload; /* borrowed from the input; h.len bytes */
};

/*
 * Parses one whole frame at [p, end): header checks as wire_hdr_parse.
 * Returns bytes consumed (> 0), 0 when more bytes are needed, < 0 for a
 * bad frame. The payload is only checked for length here; decode it with
 * the wire_*_decode functions below.
 */
MR_MUST_CHECK ssize_t wire_frame_parse(struct wire_frame *f, const uint8_t *p, const uint8_t *end);

/* Pre-flight facts in a HELLO (§4.1, revision 1.2): which ones came. */
#define WIRE_PF_RAM 0x01u
#define WIRE_PF_MACHINE 0x02u
#define WIRE_PF_CPU_MODEL 0x04u
#define WIRE_PF_CPU_FEATURES 0x08u /* the list came (it may be empty) */
#define WIRE_PF_RAMBLOCKS 0x10u    /* at least one RAM block came */

struct wire_ramblock {
	uint64_t used;                /* bytes */
	char name[WIRE_MAX_NAME + 1]; /* wire_label_ok */
};

/* What the source says about its QEMU; only names and counts, never a command. */
struct wire_preflight {
	uint8_t have; /* WIRE_PF_* */
	uint8_t nblocks;
	uint16_t nfeatures;
	uint64_t ram_base, ram_plugged; /* bytes */
	char machine[WIRE_MAX_NAME + 1];
	char cpu_model[WIRE_MAX_NAME + 1];
	char features[WIRE_MAX_CONTROL]; /* <nfeatures> names, one space between, in ascending strcmp order */
	struct wire_ramblock blocks[WIRE_MAX_RAMBLOCKS];
};

/* HELLO (§4.1) */
struct wire_hello {
	uint16_t version;
	uint16_t nconns;  /* 1..WIRE_MAX_CONNS */
	uint32_t flags;   /* WIRE_HELLO_F_* */
	char target[WIRE_MAX_NAME + 1];
	uint8_t multifd;  /* 0 = none */
	uint8_t ndevices;
	char devices[WIRE_MAX_DEVICES][WIRE_MAX_NAME + 1];
	struct wire_preflight pf; /* pf.have == 0: no pre-flight facts */
};

/* Returns payload length written to <out>, or -EMSGSIZE if <cap> is too small, -EINVAL for bad fields. */
MR_MUST_CHECK int wire_hello_encode(uint8_t *out, size_t cap, const struct wire_hello *h);
/* Returns 0, or -EBADMSG (bad TLV, missing/duplicate target, bad name, unknown tag or flag, nconns 0 or too big). */
MR_MUST_CHECK int wire_hello_decode(struct wire_hello *h, const uint8_t *p, size_t len);

/* Names (targets, devices): 1..WIRE_MAX_NAME bytes of [A-Za-z0-9._-]; not starting with '.'. */
bool wire_name_ok(const char *s, size_t len);
/* RAM block names (§4.1): 1..WIRE_MAX_NAME bytes of [A-Za-z0-9._-/:@+,]; compared, never looked up as a path. */
bool wire_label_ok(const char *s, size_t len);

/* WELCOME (§4.2) */
struct wire_welcome {
	uint64_t session_id;
	uint8_t token[WIRE_TOKEN_LEN];
	uint16_t conn_index;
	uint16_t max_streams;
	uint32_t window;     /* bytes in flight per stream direction */
	uint32_t chunk_size; /* largest raw chunk the server wants */
};
void wire_welcome_encode(uint8_t out[WIRE_WELCOME_LEN], const struct wire_welcome *w);
/* Returns 0 or -EBADMSG (window or chunk size out of range, max_streams 0 or > cap). */
MR_MUST_CHECK int wire_welcome_decode(struct wire_welcome *w, const uint8_t *p, size_t len);

/* JOIN (§4.3) */
struct wire_join {
	uint64_t session_id;
	uint8_t token[WIRE_TOKEN_LEN];
	uint16_t conn_index;
};
void wire_join_encode(uint8_t out[WIRE_JOIN_LEN], const struct wire_join *j);
MR_MUST_CHECK int wire_join_decode(struct wire_join *j, const uint8_t *p, size_t len);

/* OPEN (§5.1): role in the first byte, three zero bytes. */
MR_MUST_CHECK int wire_open_decode(uint8_t *role, const uint8_t *p, size_t len);
void wire_open_encode(uint8_t out[WIRE_OPEN_LEN], uint8_t role);

/* END (§5.4) */
struct wire_end {
	uint64_t bytes;
	uint8_t digest[WIRE_DIGEST_LEN];
};
void wire_end_encode(uint8_t out[WIRE_END_LEN], const struct wire_end *e);
MR_MUST_CHECK int wire_end_decode(struct wire_end *e, const uint8_t *p, size_t len);

/* ACK and VERIFIED carry one be64 byte count; PING/PONG one be64 nonce. */
void wire_u64_encode(uint8_t out[8], uint64_t v);
MR_MUST_CHECK int wire_u64_decode(uint64_t *v, const uint8_t *p, size_t len);

/* ERROR (§5.6): be16 code, then 0..WIRE_MAX_ERROR_TEXT bytes of text. */
struct wire_errmsg {
	uint16_t code;
	char text[WIRE_MAX_ERROR_TEXT + 1]; /* NUL-terminated; non-printable bytes replaced by '?' */
};
/* Returns payload length; the text is cut at WIRE_MAX_ERROR_TEXT. <out> must hold 2 + WIRE_MAX_ERROR_TEXT. */
int wire_error_encode(uint8_t *out, uint16_t code, const char *text);
MR_MUST_CHECK int wire_error_decode(struct wire_errmsg *e, const uint8_t *p, size_t len);
/* Short English name of a code ("digest mismatch"); never NULL. */
const char *wire_error_name(uint16_t code);
/* Name of a frame type for logs ("DATA"); never NULL. */
const char *wire_type_name(uint8_t type);

#endif
