/* SPDX-License-Identifier: MIT */
/*
 * Frame header and payload codecs (PROTOCOL.md §3-§5).
 *
 * Everything here reads bytes a peer chose. Each parser takes a cursor and
 * an end (or a length), checks a length before it reads what the length
 * covers, and only subtracts on the side that cannot wrap. Nothing here
 * allocates or makes a syscall.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "frame.h"

/* Exact payload length of each fixed-size type, or -1 when the length varies (PROTOCOL.md §3, §6). */
static int fixed_len(uint8_t type)
{
	switch (type) {
	case WIRE_T_WELCOME:
		return WIRE_WELCOME_LEN;
	case WIRE_T_JOIN:
		return WIRE_JOIN_LEN;
	case WIRE_T_OPEN:
		return WIRE_OPEN_LEN;
	case WIRE_T_ACK:
		return WIRE_ACK_LEN;
	case WIRE_T_END:
		return WIRE_END_LEN;
	case WIRE_T_VERIFIED:
		return WIRE_VERIFIED_LEN;
	case WIRE_T_PING:
	case WIRE_T_PONG:
		return WIRE_PING_LEN;
	case WIRE_T_BYE:
		return WIRE_BYE_LEN;
	case WIRE_T_OPENED:
		return WIRE_OPENED_LEN;
	default:
		return -1;
	}
}

/* Session-setup and session-wide frames carry stream 0 (PROTOCOL.md §3). */
static bool type_is_session_wide(uint8_t type)
{
	switch (type) {
	case WIRE_T_HELLO:
	case WIRE_T_WELCOME:
	case WIRE_T_JOIN:
	case WIRE_T_BYE:
	case WIRE_T_PING:
	case WIRE_T_PONG:
		return true;
	default:
		return false;
	}
}

void wire_hdr_encode(uint8_t out[WIRE_HDR_LEN], const struct wire_hdr *h)
{
	out[0] = h->type;
	out[1] = h->flags;
	wire_store_be16(out + 2, h->stream);
	wire_store_be32(out + 4, h->len);
	wire_store_be64(out + 8, h->seq);
}

/* DATA header rules (PROTOCOL.md §3.2, §5.2). */
static int data_hdr_check(const struct wire_hdr *h)
{
	if (h->len > WIRE_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (h->flags & ~WIRE_F_DATA_MASK)
		return -EBADMSG;
	if ((h->flags & WIRE_F_DATA_MASK) == WIRE_F_DATA_MASK)
		return -EBADMSG;
	/* An empty chunk carries nothing and would make chunk and byte counts disagree (§5.3). */
	if (h->len == 0)
		return -EBADMSG;
	/* ZERO is exactly the raw length; ZSTD is the raw length and a non-empty frame. */
	if ((h->flags & WIRE_F_ZERO) && h->len != WIRE_ZHDR_LEN)
		return -EBADMSG;
	if ((h->flags & WIRE_F_ZSTD) && h->len <= WIRE_ZHDR_LEN)
		return -EBADMSG;
	if (h->stream >= WIRE_MAX_STREAMS)
		return -EBADMSG;
	return 0;
}

/* Control frame rules (PROTOCOL.md §3.2). */
static int control_hdr_check(const struct wire_hdr *h)
{
	int want;

	if (h->len > WIRE_MAX_CONTROL)
		return -EMSGSIZE;
	if (h->flags && !(h->type == WIRE_T_WELCOME && !(h->flags & ~WIRE_WELCOME_F_MASK)))
		return -EBADMSG;
	want = fixed_len(h->type);
	if (want >= 0 && h->len != (uint32_t)want)
		return -EBADMSG;
	if (h->type == WIRE_T_HELLO && h->len < WIRE_HELLO_FIXED_LEN)
		return -EBADMSG;
	if (h->type == WIRE_T_ERROR &&
	    (h->len < WIRE_ERROR_MIN_LEN || h->len > WIRE_ERROR_MIN_LEN + WIRE_MAX_ERROR_TEXT))
		return -EBADMSG;
	if (type_is_session_wide(h->type))
		return h->stream == 0 ? 0 : -EBADMSG;
	if (h->type == WIRE_T_ERROR && h->stream == WIRE_STREAM_SESSION)
		return 0;
	return h->stream < WIRE_MAX_STREAMS ? 0 : -EBADMSG;
}

/*
 * Any thread. Reads WIRE_HDR_LEN bytes at most, never past <end>. The seq
 * field is not checked: frames that do not use it ignore it (§3.1).
 */
int wire_hdr_parse(struct wire_hdr *h, const uint8_t *p, const uint8_t *end)
{
	struct wire_hdr t;
	int r;

	if (!p || !end || end < p || (size_t)(end - p) < WIRE_HDR_LEN)
		return 0;
	t.type = p[0];
	t.flags = p[1];
	t.stream = wire_load_be16(p + 2);
	t.len = wire_load_be32(p + 4);
	t.seq = wire_load_be64(p + 8);
	/* §7: an unknown type is an error, never skipped; its length means nothing. */
	if (t.type == WIRE_T_INVALID || t.type > WIRE_T_MAX)
		return -EBADMSG;
	r = t.type == WIRE_T_DATA ? data_hdr_check(&t) : control_hdr_check(&t);
	if (r < 0)
		return r;
	*h = t;
	return WIRE_HDR_LEN;
}

/* Any thread. The payload view borrows [p, end); nothing is copied. */
ssize_t wire_frame_parse(struct wire_frame *f, const uint8_t *p, const uint8_t *end)
{
	struct wire_hdr h;
	int r;

	r = wire_hdr_parse(&h, p, end);
	if (r <= 0)
		return r;
	/* The header is there, so end - p >= WIRE_HDR_LEN: this cannot wrap. */
	if ((size_t)(end - p) - WIRE_HDR_LEN < h.len)
		return 0;
	f->h = h;
	f->payload = p + WIRE_HDR_LEN;
	return (ssize_t)(WIRE_HDR_LEN + h.len);
}

static bool name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
	       c == '-';
}

/* A name is never a path: no '/', and no leading '.' so "." and ".." cannot appear (§4.1). */
bool wire_name_ok(const char *s, size_t len)
{
	if (!s || len == 0 || len > WIRE_MAX_NAME || s[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!name_char_ok(s[i]))
			return false;
	return true;
}

static bool label_char_ok(char c)
{
	return name_char_ok(c) || c == '/' || c == ':' || c == '@' || c == '+' || c == ',';
}

bool wire_label_ok(const char *s, size_t len)
{
	if (!s || len == 0 || len > WIRE_MAX_NAME)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!label_char_ok(s[i]))
			return false;
	return true;
}

/* Appends one TLV; returns the new offset or -EMSGSIZE. */
static int put_tlv(uint8_t *out, size_t cap, size_t off, uint8_t tag, const void *v, size_t vlen)
{
	if (vlen > UINT8_MAX || cap < off || cap - off < 2 + vlen)
		return -EMSGSIZE;
	out[off] = tag;
	out[off + 1] = (uint8_t)vlen;
	if (vlen)
		memcpy(out + off + 2, v, vlen);
	return (int)(off + 2 + vlen);
}

/*
 * Checks a feature list (<n> names, one space between, ascending) as the
 * decoder would take it. True when it is one.
 */
static bool features_ok(const char *f, size_t flen, unsigned n)
{
	const char *prev = NULL, *p = f, *end = f + flen;
	size_t prevlen = 0;
	unsigned count = 0;

	while (p < end) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		size_t len = sp ? (size_t)(sp - p) : (size_t)(end - p);

		if (!wire_name_ok(p, len) || (sp && sp + 1 == end))
			return false;
		/* Strictly ascending: no name twice, one canonical order. */
		if (prev) {
			int c = memcmp(prev, p, prevlen < len ? prevlen : len);

			if (c > 0 || (c == 0 && prevlen >= len))
				return false;
		}
		prev = p;
		prevlen = len;
		count++;
		p += len + (sp ? 1 : 0);
	}
	return count == n && count <= WIRE_MAX_CPU_FEATURES;
}

/* Validates <pf> as the decoder would. True when it may be sent. */
static bool preflight_ok(const struct wire_preflight *pf)
{
	if (pf->have & ~(WIRE_PF_RAM | WIRE_PF_MACHINE | WIRE_PF_CPU_MODEL | WIRE_PF_CPU_FEATURES | WIRE_PF_RAMBLOCKS))
		return false;
	if ((pf->have & WIRE_PF_MACHINE) && !wire_name_ok(pf->machine, strnlen(pf->machine, sizeof(pf->machine))))
		return false;
	if ((pf->have & WIRE_PF_CPU_MODEL) &&
	    !wire_name_ok(pf->cpu_model, strnlen(pf->cpu_model, sizeof(pf->cpu_model))))
		return false;
	if ((pf->have & WIRE_PF_CPU_FEATURES) &&
	    !features_ok(pf->features, strnlen(pf->features, sizeof(pf->features)), pf->nfeatures))
		return false;
	if (!(pf->have & WIRE_PF_RAMBLOCKS) != !pf->nblocks || pf->nblocks > WIRE_MAX_RAMBLOCKS)
		return false;
	for (unsigned i = 0; i < pf->nblocks; i++) {
		if (!wire_label_ok(pf->blocks[i].name, strnlen(pf->blocks[i].name, sizeof(pf->blocks[i].name))))
			return false;
		for (unsigned k = 0; k < i; k++)
			if (!strcmp(pf->blocks[k].name, pf->blocks[i].name))
				return false;
	}
	return true;
}

/*
 * Appends the pre-flight TLVs of <pf> (validated) at <off>. The feature
 * list fills each TLV as far as whole names go, so it takes the fewest
 * bytes. Returns the new offset or -EMSGSIZE.
 */
static int put_preflight(uint8_t *out, size_t cap, int off, const struct wire_preflight *pf)
{
	uint8_t v[8 + WIRE_MAX_NAME];

	if (off >= 0 && (pf->have & WIRE_PF_RAM)) {
		wire_store_be64(v, pf->ram_base);
		wire_store_be64(v + 8, pf->ram_plugged);
		off = put_tlv(out, cap, (size_t)off, WIRE_TAG_PF_RAM, v, 16);
	}
	if (off >= 0 && (pf->have & WIRE_PF_MACHINE))
		off = put_tlv(out, cap, (size_t)off, WIRE_TAG_PF_MACHINE, pf->machine, strlen(pf->machine));
	if (off >= 0 && (pf->have & WIRE_PF_CPU_MODEL))
		off = put_tlv(out, cap, (size_t)off, WIRE_TAG_PF_CPU_MODEL, pf->cpu_model, strlen(pf->cpu_model));
	if (off >= 0 && (pf->have & WIRE_PF_CPU_FEATURES)) {
		const char *p = pf->features, *end = p + strlen(p);

		if (p == end) /* an empty list is one empty TLV */
			off = put_tlv(out, cap, (size_t)off, WIRE_TAG_PF_CPU_FEATURES, p, 0);
		while (off >= 0 && p < end) {
			const char *cut = end;

			if (end - p > UINT8_MAX) { /* the last space within reach; names are at most 64 bytes */
				cut = p + UINT8_MAX;
				while (*cut != ' ')
					cut--;
			}
			off = put_tlv(out, cap, (size_t)off, WIRE_TAG_PF_CPU_FEATURES, p, (size_t)(cut - p));
			p = cut < end ? cut + 1 : end;
		}
	}
	for (unsigned i = 0; off >= 0 && i < pf->nblocks; i++) {
		size_t nl = strlen(pf->blocks[i].name);

		wire_store_be64(v, pf->blocks[i].used);
		memcpy(v + 8, pf->blocks[i].name, nl);
		off = put_tlv(out, cap, (size_t)off, WIRE_TAG_PF_RAMBLOCK, v, 8 + nl);
	}
	return off;
}

/*
 * Any thread. Validates every field the decoder would check, so what we send
 * is always something we would accept (§4.1).
 */
int wire_hello_encode(uint8_t *out, size_t cap, const struct wire_hello *h)
{
	size_t tlen = strnlen(h->target, sizeof(h->target));
	int off;

	if (h->nconns == 0 || h->nconns > WIRE_MAX_CONNS || (h->flags & ~WIRE_HELLO_F_MASK) ||
	    h->ndevices > WIRE_MAX_DEVICES || h->multifd >= WIRE_MAX_STREAMS || !wire_name_ok(h->target, tlen) ||
	    !preflight_ok(&h->pf))
		return -EINVAL;
	for (unsigned i = 0; i < h->ndevices; i++) {
		size_t dl = strnlen(h->devices[i], sizeof(h->devices[i]));

		if (!wire_name_ok(h->devices[i], dl))
			return -EINVAL;
		for (unsigned k = 0; k < i; k++)
			if (!strcmp(h->devices[k], h->devices[i]))
				return -EINVAL;
	}
	if (cap < WIRE_HELLO_FIXED_LEN)
		return -EMSGSIZE;
	wire_store_be16(out, h->version);
	wire_store_be16(out + 2, h->nconns);
	wire_store_be32(out + 4, h->flags);
	off = put_tlv(out, cap, WIRE_HELLO_FIXED_LEN, WIRE_TAG_TARGET, h->target, tlen);
	if (off >= 0 && h->multifd)
		off = put_tlv(out, cap, (size_t)off, WIRE_TAG_MULTIFD, &h->multifd, 1);
	for (unsigned i = 0; off >= 0 && i < h->ndevices; i++)
		off = put_tlv(out, cap, (size_t)off, WIRE_TAG_DEVICE, h->devices[i],
			      strnlen(h->devices[i], sizeof(h->devices[i])));
	return put_preflight(out, cap, off, &h->pf);
}

/*
 * Without pre-flight facts the largest HELLO fits a control frame (§6);
 * with them, the encoder answers -EMSGSIZE for what does not fit.
 */
_Static_assert(WIRE_HELLO_FIXED_LEN + (2 + WIRE_MAX_NAME) + 3 + WIRE_MAX_DEVICES * (2 + WIRE_MAX_NAME) <=
		       WIRE_MAX_CONTROL,
	       "HELLO over the control cap");

/* Copies a validated name into a NUL-terminated field of WIRE_MAX_NAME + 1 bytes. */
static int take_name(char dst[WIRE_MAX_NAME + 1], const uint8_t *v, size_t vlen)
{
	if (!wire_name_ok((const char *)v, vlen))
		return -EBADMSG;
	memcpy(dst, v, vlen);
	dst[vlen] = '\0';
	return 0;
}

/* Appends the names of one CPU_FEATURES value to pf->features. 0 or -EBADMSG. */
static int take_features(struct wire_preflight *pf, const uint8_t *v, size_t vlen)
{
	size_t cur = strlen(pf->features), last = 0;
	unsigned n;

	if (vlen == 0)
		return 0; /* the caller allows it only as the one CPU_FEATURES TLV */
	/* The list so far and this value, checked as one: order and uniqueness span TLVs. */
	if (cur + 1 + vlen >= sizeof(pf->features))
		return -EBADMSG;
	if (cur) {
		for (size_t i = 0; i < cur; i++)
			if (pf->features[i] == ' ')
				last = i + 1;
		pf->features[cur++] = ' ';
	}
	memcpy(pf->features + cur, v, vlen);
	pf->features[cur + vlen] = '\0';
	n = 1;
	for (size_t i = 0; i < vlen; i++)
		n += v[i] == ' ';
	/* Only the last known name and the new ones need checking; the list before them already passed. */
	if (!features_ok(pf->features + last, cur + vlen - last, n + (cur ? 1 : 0)) ||
	    pf->nfeatures + n > WIRE_MAX_CPU_FEATURES)
		return -EBADMSG;
	pf->nfeatures = (uint16_t)(pf->nfeatures + n);
	return 0;
}

/*
 * One pre-flight TLV (§4.1, revision 1.2) into h->pf. *empty_feat counts
 * empty CPU_FEATURES values, *nfeat CPU_FEATURES TLVs. 0 or -EBADMSG.
 */
static int take_preflight(struct wire_preflight *pf, uint8_t tag, const uint8_t *v, uint8_t vlen, int *nfeat,
			  bool *empty_feat)
{
	switch (tag) {
	case WIRE_TAG_PF_RAM:
		if ((pf->have & WIRE_PF_RAM) || vlen != 16)
			return -EBADMSG;
		pf->ram_base = wire_load_be64(v);
		pf->ram_plugged = wire_load_be64(v + 8);
		pf->have |= WIRE_PF_RAM;
		return 0;
	case WIRE_TAG_PF_MACHINE:
		if ((pf->have & WIRE_PF_MACHINE) || take_name(pf->machine, v, vlen) < 0)
			return -EBADMSG;
		pf->have |= WIRE_PF_MACHINE;
		return 0;
	case WIRE_TAG_PF_CPU_MODEL:
		if ((pf->have & WIRE_PF_CPU_MODEL) || take_name(pf->cpu_model, v, vlen) < 0)
			return -EBADMSG;
		pf->have |= WIRE_PF_CPU_MODEL;
		return 0;
	case WIRE_TAG_PF_CPU_FEATURES:
		(*nfeat)++;
		*empty_feat |= vlen == 0;
		pf->have |= WIRE_PF_CPU_FEATURES;
		return take_features(pf, v, vlen);
	case WIRE_TAG_PF_RAMBLOCK: {
		struct wire_ramblock *b = &pf->blocks[pf->nblocks];

		if (pf->nblocks >= WIRE_MAX_RAMBLOCKS || vlen < 9 || !wire_label_ok((const char *)v + 8, vlen - 8u))
			return -EBADMSG;
		b->used = wire_load_be64(v);
		memcpy(b->name, v + 8, vlen - 8u);
		b->name[vlen - 8] = '\0';
		for (unsigned k = 0; k < pf->nblocks; k++)
			if (!strcmp(pf->blocks[k].name, b->name))
				return -EBADMSG;
		pf->nblocks++;
		pf->have |= WIRE_PF_RAMBLOCKS;
		return 0;
	}
	}
	return -EBADMSG; /* unknown tags are an error, not skipped (§4.1, §8) */
}

/* Any thread. Fills <h> completely (zeroed first) or returns -EBADMSG (§4.1). */
int wire_hello_decode(struct wire_hello *h, const uint8_t *p, size_t len)
{
	const uint8_t *end;
	bool have_target = false, have_multifd = false, empty_feat = false;
	int nfeat = 0;

	memset(h, 0, sizeof(*h));
	if (!p || len < WIRE_HELLO_FIXED_LEN || len > WIRE_MAX_CONTROL)
		return -EBADMSG;
	end = p + len;
	/* The version is returned, not judged: the server answers UNSUPPORTED for it (§8). */
	h->version = wire_load_be16(p);
	h->nconns = wire_load_be16(p + 2);
	h->flags = wire_load_be32(p + 4);
	if (h->nconns == 0 || h->nconns > WIRE_MAX_CONNS || (h->flags & ~WIRE_HELLO_F_MASK))
		goto bad;
	p += WIRE_HELLO_FIXED_LEN;
	while (p < end) {
		uint8_t tag, vlen;

		if (end - p < 2)
			goto bad;
		tag = p[0];
		vlen = p[1];
		p += 2;
		if ((size_t)(end - p) < vlen)
			goto bad;
		switch (tag) {
		case WIRE_TAG_TARGET:
			if (have_target || take_name(h->target, p, vlen) < 0)
				goto bad;
			have_target = true;
			break;
		case WIRE_TAG_MULTIFD:
			/* Each multifd channel and the main channel take a stream id (§4.1). */
			if (have_multifd || vlen != 1 || p[0] >= WIRE_MAX_STREAMS)
				goto bad;
			h->multifd = p[0];
			have_multifd = true;
			break;
		case WIRE_TAG_DEVICE:
			if (h->ndevices >= WIRE_MAX_DEVICES || take_name(h->devices[h->ndevices], p, vlen) < 0)
				goto bad;
			for (unsigned k = 0; k < h->ndevices; k++)
				if (!strcmp(h->devices[k], h->devices[h->ndevices]))
					goto bad;
			h->ndevices++;
			break;
		default:
			if (take_preflight(&h->pf, tag, p, vlen, &nfeat, &empty_feat) < 0)
				goto bad;
		}
		p += vlen;
	}
	/* An empty feature list is one empty CPU_FEATURES TLV, alone. */
	if (!have_target || (empty_feat && nfeat > 1))
		goto bad;
	return 0;
bad:
	memset(h, 0, sizeof(*h));
	return -EBADMSG;
}

void wire_welcome_encode(uint8_t out[WIRE_WELCOME_LEN], const struct wire_welcome *w)
{
	wire_store_be64(out, w->session_id);
	memcpy(out + 8, w->token, WIRE_TOKEN_LEN);
	wire_store_be16(out + 40, w->conn_index);
	wire_store_be16(out + 42, w->max_streams);
	wire_store_be32(out + 44, w->window);
	wire_store_be32(out + 48, w->chunk_size);
}

/* Any thread. The client sizes its buffers from these values, so bound them all (§4.2). */
int wire_welcome_decode(struct wire_welcome *w, const uint8_t *p, size_t len)
{
	struct wire_welcome t;

	memset(w, 0, sizeof(*w));
	if (!p || len != WIRE_WELCOME_LEN)
		return -EBADMSG;
	memset(&t, 0, sizeof(t));
	t.session_id = wire_load_be64(p);
	memcpy(t.token, p + 8, WIRE_TOKEN_LEN);
	t.conn_index = wire_load_be16(p + 40);
	t.max_streams = wire_load_be16(p + 42);
	t.window = wire_load_be32(p + 44);
	t.chunk_size = wire_load_be32(p + 48);
	if (t.conn_index >= WIRE_MAX_CONNS || t.max_streams == 0 || t.max_streams > WIRE_MAX_STREAMS ||
	    t.window < WIRE_MIN_WINDOW || t.window > WIRE_MAX_WINDOW || t.chunk_size == 0 ||
	    t.chunk_size > WIRE_MAX_CHUNK)
		return -EBADMSG;
	*w = t;
	return 0;
}

void wire_join_encode(uint8_t out[WIRE_JOIN_LEN], const struct wire_join *j)
{
	wire_store_be64(out, j->session_id);
	memcpy(out + 8, j->token, WIRE_TOKEN_LEN);
	wire_store_be16(out + 40, j->conn_index);
}

/* Any thread. Connection 0 is always the HELLO connection, never joined (§4.3). */
int wire_join_decode(struct wire_join *j, const uint8_t *p, size_t len)
{
	memset(j, 0, sizeof(*j));
	if (!p || len != WIRE_JOIN_LEN)
		return -EBADMSG;
	/* 0 is valid: connection 0 may be rejoined after it was lost (§2.3). */
	if (wire_load_be16(p + 40) >= WIRE_MAX_CONNS)
		return -EBADMSG;
	j->session_id = wire_load_be64(p);
	memcpy(j->token, p + 8, WIRE_TOKEN_LEN);
	j->conn_index = wire_load_be16(p + 40);
	return 0;
}

/* Any thread. The three reserved bytes must be zero so they can gain a meaning later (§5.1). */
int wire_open_decode(uint8_t *role, const uint8_t *p, size_t len)
{
	*role = 0;
	if (!p || len != WIRE_OPEN_LEN || p[0] > WIRE_ROLE_MAX || p[1] || p[2] || p[3])
		return -EBADMSG;
	*role = p[0];
	return 0;
}

void wire_open_encode(uint8_t out[WIRE_OPEN_LEN], uint8_t role)
{
	out[0] = role;
	out[1] = 0;
	out[2] = 0;
	out[3] = 0;
}

void wire_end_encode(uint8_t out[WIRE_END_LEN], const struct wire_end *e)
{
	wire_store_be64(out, e->bytes);
	memcpy(out + 8, e->digest, WIRE_DIGEST_LEN);
}

/* Any thread (§5.4). */
int wire_end_decode(struct wire_end *e, const uint8_t *p, size_t len)
{
	memset(e, 0, sizeof(*e));
	if (!p || len != WIRE_END_LEN)
		return -EBADMSG;
	e->bytes = wire_load_be64(p);
	memcpy(e->digest, p + 8, WIRE_DIGEST_LEN);
	return 0;
}

void wire_u64_encode(uint8_t out[8], uint64_t v)
{
	wire_store_be64(out, v);
}

/* Any thread: ACK, VERIFIED, PING and PONG payloads (§5.3, §5.5, §5.7). */
int wire_u64_decode(uint64_t *v, const uint8_t *p, size_t len)
{
	*v = 0;
	if (!p || len != 8)
		return -EBADMSG;
	*v = wire_load_be64(p);
	return 0;
}

/* Printable ASCII only, so a peer's text cannot steer a terminal or a log parser (§5.6). */
static char printable(uint8_t c)
{
	return c >= 0x20 && c <= 0x7e ? (char)c : '?';
}

/* Any thread. <text> may be NULL (no text). The sender cleans its text as a receiver would (§5.6). */
int wire_error_encode(uint8_t *out, uint16_t code, const char *text)
{
	size_t n = text ? strnlen(text, WIRE_MAX_ERROR_TEXT) : 0;

	wire_store_be16(out, code);
	for (size_t i = 0; i < n; i++)
		out[2 + i] = (uint8_t)printable((uint8_t)text[i]);
	return (int)(WIRE_ERROR_MIN_LEN + n);
}

/* Any thread. Unknown codes are kept: wire_error_name() names them (§5.6, §8). */
int wire_error_decode(struct wire_errmsg *e, const uint8_t *p, size_t len)
{
	size_t n;

	memset(e, 0, sizeof(*e));
	if (!p || len < WIRE_ERROR_MIN_LEN || len > WIRE_ERROR_MIN_LEN + WIRE_MAX_ERROR_TEXT)
		return -EBADMSG;
	e->code = wire_load_be16(p);
	n = len - WIRE_ERROR_MIN_LEN;
	for (size_t i = 0; i < n; i++)
		e->text[i] = printable(p[WIRE_ERROR_MIN_LEN + i]);
	e->text[n] = '\0';
	return 0;
}

const char *wire_error_name(uint16_t code)
{
	static const char *const names[] = {
		[WIRE_E_NONE] = "no error",
		[WIRE_E_PROTOCOL] = "protocol error",
		[WIRE_E_NOT_ALLOWED] = "not allowed",
		[WIRE_E_NO_TARGET] = "no such target",
		[WIRE_E_BAD_TOKEN] = "bad join token",
		[WIRE_E_IDENTITY] = "identity mismatch",
		[WIRE_E_DIGEST] = "digest mismatch",
		[WIRE_E_TARGET] = "target failed",
		[WIRE_E_LIMIT] = "limit reached",
		[WIRE_E_TRUNCATED] = "stream truncated",
		[WIRE_E_INTERNAL] = "internal error",
		[WIRE_E_UNSUPPORTED] = "not supported",
	};

	if (code < sizeof(names) / sizeof(names[0]) && names[code])
		return names[code];
	return "unknown error";
}

const char *wire_type_name(uint8_t type)
{
	static const char *const names[] = {
		[WIRE_T_HELLO] = "HELLO",
		[WIRE_T_WELCOME] = "WELCOME",
		[WIRE_T_JOIN] = "JOIN",
		[WIRE_T_OPEN] = "OPEN",
		[WIRE_T_DATA] = "DATA",
		[WIRE_T_ACK] = "ACK",
		[WIRE_T_END] = "END",
		[WIRE_T_VERIFIED] = "VERIFIED",
		[WIRE_T_ERROR] = "ERROR",
		[WIRE_T_PING] = "PING",
		[WIRE_T_PONG] = "PONG",
		[WIRE_T_BYE] = "BYE",
		[WIRE_T_OPENED] = "OPENED",
	};

	if (type < sizeof(names) / sizeof(names[0]) && names[type])
		return names[type];
	return "UNKNOWN";
}
