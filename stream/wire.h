/* SPDX-License-Identifier: MIT */
/*
 * Wire protocol v1: frame types, flags, limits and payload layouts.
 * This header is the single source of every wire value; docs/PROTOCOL.md
 * explains each one. All integers on the wire are big-endian.
 */
#ifndef MR_STREAM_WIRE_H
#define MR_STREAM_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MR_MUST_CHECK __attribute__((warn_unused_result))

/* ALPN protocol name; the version lives here (PROTOCOL.md §1). */
#define WIRE_ALPN "migrelay/1"
#define WIRE_VERSION 1

enum wire_type {
	WIRE_T_INVALID = 0,
	WIRE_T_HELLO = 1,    /* client -> server: first frame of a new session */
	WIRE_T_WELCOME = 2,  /* server -> client: answer to HELLO or JOIN */
	WIRE_T_JOIN = 3,     /* client -> server: first frame of a further connection */
	WIRE_T_OPEN = 4,     /* client -> server: open stream <stream> */
	WIRE_T_DATA = 5,     /* either way: one chunk of one stream direction */
	WIRE_T_ACK = 6,      /* receiver -> sender: delivered up to seq (also the credit) */
	WIRE_T_END = 7,      /* sender: the direction ends: byte count and digest */
	WIRE_T_VERIFIED = 8, /* receiver: END matched, all bytes delivered */
	WIRE_T_ERROR = 9,    /* either way: code and text; ends stream or session */
	WIRE_T_PING = 10,    /* either way: liveness probe */
	WIRE_T_PONG = 11,    /* answer to PING, same nonce */
	WIRE_T_BYE = 12,     /* client -> server: the session has no more streams */
	WIRE_T_OPENED = 13,  /* server -> client: stream <stream> is connected to the target (revision 1.2) */
	WIRE_T_MAX = 13,
};

/* DATA flags. */
#define WIRE_F_ZSTD 0x01u /* payload: be32 raw length, then one zstd frame */
#define WIRE_F_ZERO 0x02u /* payload: be32 raw length; the raw bytes are all zero */
#define WIRE_F_DATA_MASK (WIRE_F_ZSTD | WIRE_F_ZERO)

/* WELCOME flags (header flags byte). */
#define WIRE_WELCOME_F_PLAINTEXT 0x01u /* this connection carries the session's frames in plaintext after the WELCOME */
#define WIRE_WELCOME_F_OPENED 0x02u    /* the server acknowledges every OPEN with OPENED (PROTOCOL.md §5.1) */
#define WIRE_WELCOME_F_MASK (WIRE_WELCOME_F_PLAINTEXT | WIRE_WELCOME_F_OPENED)

/* Stream id in an ERROR frame that concerns the whole session. */
#define WIRE_STREAM_SESSION 0xffffu

enum wire_limits {
	WIRE_HDR_LEN = 16,
	/* 1 MiB: largest raw chunk, and so the largest DATA payload (a
	 * compressed chunk is sent only if smaller than the raw one). */
	WIRE_MAX_CHUNK = 1 << 20,
	WIRE_MAX_PAYLOAD = 1 << 20,
	/* 4 KiB: cap on every control frame payload (HELLO is the largest). */
	WIRE_MAX_CONTROL = 4096,
	WIRE_TOKEN_LEN = 32,     /* bytes of random join token */
	WIRE_DIGEST_LEN = 16,    /* XXH3-128 */
	WIRE_MAX_NAME = 64,      /* target and device names, bytes */
	WIRE_MAX_DEVICES = 16,   /* devices in one HELLO */
	WIRE_MAX_RAMBLOCKS = 32, /* pre-flight RAM blocks in one HELLO (§4.1) */
	WIRE_MAX_CPU_FEATURES = 512, /* pre-flight CPU feature names in one HELLO */
	WIRE_MAX_CONNS = 64,     /* connections per session */
	WIRE_MAX_STREAMS = 64,   /* hard cap on stream ids per session */
	WIRE_MAX_ERROR_TEXT = 255,
	/* Chunks in flight per stream direction: bounds the reorder buffer
	 * however small the chunks are. */
	WIRE_WINDOW_CHUNKS = 256,
	WIRE_MIN_WINDOW = 1 << 20, /* window bytes a server may grant, at least */
	WIRE_MAX_WINDOW = 64 << 20,
};

/* Fixed payload lengths (exact). */
enum wire_fixed_len {
	WIRE_JOIN_LEN = 8 + WIRE_TOKEN_LEN + 2,                 /* 42 */
	WIRE_WELCOME_LEN = 8 + WIRE_TOKEN_LEN + 2 + 2 + 4 + 4, /* 52 */
	WIRE_OPEN_LEN = 4,
	WIRE_ACK_LEN = 8,
	WIRE_END_LEN = 8 + WIRE_DIGEST_LEN, /* 24 */
	WIRE_VERIFIED_LEN = 8,
	WIRE_PING_LEN = 8,
	WIRE_BYE_LEN = 0,
	WIRE_OPENED_LEN = 0,
	WIRE_HELLO_FIXED_LEN = 8, /* version, nconns, flags; TLVs follow */
	WIRE_ERROR_MIN_LEN = 2,
	WIRE_ZHDR_LEN = 4, /* be32 raw length in front of a ZSTD/ZERO payload */
};

/* HELLO flags. */
#define WIRE_HELLO_F_ZSTD 0x00000001u      /* client may send compressed chunks */
#define WIRE_HELLO_F_PLAINTEXT 0x00000002u /* client asks for the plaintext mode (PROTOCOL.md §4.4) */
#define WIRE_HELLO_F_POSTCOPY 0x00000004u  /* the destination QEMU is to enable postcopy-ram (PROTOCOL.md §4.1) */
#define WIRE_HELLO_F_RESUME 0x00000008u    /* the destination QEMU is to run the guest once the migration is verified (§4.1) */
#define WIRE_HELLO_F_OPENED 0x00000010u    /* the client asks for OPENED, the acknowledgement of each OPEN (§5.1) */
#define WIRE_HELLO_F_MASK 0x0000001fu

/* HELLO TLV tags: u8 tag, u8 len, value. Unknown tags are an error. */
enum wire_hello_tag {
	WIRE_TAG_TARGET = 1,  /* target name, required, once */
	WIRE_TAG_MULTIFD = 2, /* u8: multifd channels asked for (0 = none) */
	WIRE_TAG_DEVICE = 3,  /* device name to export for a disk mirror; repeatable */
	/* Pre-flight facts about the source QEMU (§4.1, revision 1.2): checked against a qmp: target's QEMU. */
	WIRE_TAG_PF_RAM = 4,          /* be64 base RAM bytes, be64 hotplugged RAM bytes */
	WIRE_TAG_PF_MACHINE = 5,      /* machine type name */
	WIRE_TAG_PF_CPU_MODEL = 6,    /* CPU model name */
	WIRE_TAG_PF_CPU_FEATURES = 7, /* enabled CPU features: names, one space between, ascending; repeatable */
	WIRE_TAG_PF_RAMBLOCK = 8,     /* be64 used bytes, then the RAM block's name; repeatable */
};

/* OPEN roles: what the destination connects the stream to. */
enum wire_role {
	WIRE_ROLE_PLAIN = 0,     /* the target itself (unix:, file:, discard) */
	WIRE_ROLE_MIGRATION = 1, /* a QEMU migration channel, main first */
	WIRE_ROLE_NBD = 2,       /* the destination's NBD server (disk mirror) */
	WIRE_ROLE_MAX = 2,
};

/* ERROR codes. */
enum wire_error {
	WIRE_E_NONE = 0,
	WIRE_E_PROTOCOL = 1,      /* malformed frame, bad state */
	WIRE_E_NOT_ALLOWED = 2,   /* identity not allowed for that target */
	WIRE_E_NO_TARGET = 3,     /* unknown target name */
	WIRE_E_BAD_TOKEN = 4,     /* JOIN: unknown session or wrong token */
	WIRE_E_IDENTITY = 5,      /* JOIN: another peer identity than the session's */
	WIRE_E_DIGEST = 6,        /* END: byte count or digest mismatch */
	WIRE_E_TARGET = 7,        /* the target could not be opened or failed */
	WIRE_E_LIMIT = 8,         /* a limit was reached (sessions, streams, conns) */
	WIRE_E_TRUNCATED = 9,     /* a stream was cut before its END */
	WIRE_E_INTERNAL = 10,
	WIRE_E_UNSUPPORTED = 11,  /* an option the server does not offer */
	WIRE_E_MAX = 11,
};

struct wire_hdr {
	uint8_t type;
	uint8_t flags;
	uint16_t stream;
	uint32_t len;
	uint64_t seq;
};

static inline uint16_t wire_load_be16(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}
static inline uint32_t wire_load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t wire_load_be64(const uint8_t *p)
{
	return (uint64_t)wire_load_be32(p) << 32 | wire_load_be32(p + 4);
}
static inline void wire_store_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void wire_store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void wire_store_be64(uint8_t *p, uint64_t v)
{
	wire_store_be32(p, (uint32_t)(v >> 32));
	wire_store_be32(p + 4, (uint32_t)v);
}

#endif
