/* SPDX-License-Identifier: MIT */
#include "preflight.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pf_cpuid.h"

/* --- gathering --- */

/* A QMP failure that is QEMU's "no" (a command or property it lacks) leaves the fact out; others end the gathering. */
static bool monitor_failed(int r)
{
	return r < 0 && r != -EREMOTEIO;
}

int gw_pf_model_name(const char *type, char *out, size_t len)
{
	size_t n = strlen(type);
	const char *end;

	if (n > 8 && !strcmp(type + n - 8, "-machine")) {
		end = type + n - 8;
	} else if (n > 4 && !strcmp(type + n - 4, "-cpu")) {
		/* "<model>-<arch>-cpu": the architecture is the last part before "-cpu" */
		end = type + n - 4;
		while (end > type && end[-1] != '-')
			end--;
		if (end == type)
			return -EINVAL;
		end--;
	} else {
		return -EINVAL;
	}
	if (end == type || (size_t)(end - type) >= len || !wire_name_ok(type, (size_t)(end - type)))
		return -EINVAL;
	memcpy(out, type, (size_t)(end - type));
	out[end - type] = '\0';
	return 0;
}

/* The arguments of a qom-get of <prop> of <path>, or NULL without memory. */
static struct json_object *qom_get_args(const char *path, const char *prop)
{
	struct json_object *args = json_object_new_object();

	if (args) {
		json_object_object_add(args, "path", json_object_new_string(path));
		json_object_object_add(args, "property", json_object_new_string(prop));
	}
	return args;
}

/* qom-get of property <prop> of <path>: its value in <*ret> (the caller puts it). 0 or -errno. */
static int qom_get(struct qmp *q, const char *path, const char *prop, struct json_object **ret, char *err,
		   size_t errlen)
{
	struct json_object *args = qom_get_args(path, prop);
	int r;

	*ret = NULL;
	if (!args)
		return -ENOMEM;
	r = qmp_cmd(q, "qom-get", args, ret, err, errlen);
	json_object_put(args);
	return r;
}

/* qom-get of string property <prop> of <path> into <out>. 0 or -errno. */
static int qom_get_string(struct qmp *q, const char *path, const char *prop, char *out, size_t len, char *err,
			  size_t errlen)
{
	struct json_object *ret;
	int r = qom_get(q, path, prop, &ret, err, errlen);

	if (r == 0 && !json_object_is_type(ret, json_type_string))
		r = -EREMOTEIO;
	if (r == 0)
		snprintf(out, len, "%s", json_object_get_string(ret));
	json_object_put(ret);
	return r;
}

static int facts_ram(struct qmp *q, struct wire_preflight *pf, char *err, size_t errlen)
{
	struct json_object *ret = NULL, *v;
	int r = qmp_cmd(q, "query-memory-size-summary", NULL, &ret, err, errlen);

	if (r == 0 && json_object_object_get_ex(ret, "base-memory", &v)) {
		pf->ram_base = (uint64_t)json_object_get_int64(v);
		if (json_object_object_get_ex(ret, "plugged-memory", &v))
			pf->ram_plugged = (uint64_t)json_object_get_int64(v);
		pf->have |= WIRE_PF_RAM;
	}
	json_object_put(ret);
	return monitor_failed(r) ? r : 0;
}

static int facts_machine(struct qmp *q, struct wire_preflight *pf, char *err, size_t errlen)
{
	char type[128];
	int r = qom_get_string(q, "/machine", "type", type, sizeof(type), err, errlen);

	if (r == 0 && gw_pf_model_name(type, pf->machine, sizeof(pf->machine)) == 0)
		pf->have |= WIRE_PF_MACHINE;
	return monitor_failed(r) ? r : 0;
}

/* The QOM path of the first vCPU into <path>. 0 or -errno (-EREMOTEIO: QEMU has none to give). */
static int first_vcpu(struct qmp *q, char *path, size_t len, char *err, size_t errlen)
{
	struct json_object *ret = NULL, *v;
	int r = qmp_cmd(q, "query-cpus-fast", NULL, &ret, err, errlen);

	if (r == 0 && (!json_object_is_type(ret, json_type_array) || json_object_array_length(ret) == 0 ||
		       !json_object_object_get_ex(json_object_array_get_idx(ret, 0), "qom-path", &v)))
		r = -EREMOTEIO;
	if (r == 0)
		snprintf(path, len, "%s", json_object_get_string(v));
	json_object_put(ret);
	return r;
}

/* The expansion of CPU model <model> ("static", else "full"), its "props" object in *props. 0 or -errno. */
static int expand_model(struct qmp *q, const char *model, struct json_object **ret, struct json_object **props,
			char *err, size_t errlen)
{
	static const char *const types[] = {"static", "full"};
	int r = -EREMOTEIO;

	for (int i = 0; i < 2 && r == -EREMOTEIO; i++) {
		/* <model> passed wire_name_ok: nothing to escape */
		r = qmp_cmdf(q, "query-cpu-model-expansion", ret, err, errlen,
			     "{\"type\": \"%s\", \"model\": {\"name\": \"%s\"}}", types[i], model);
		if (r == 0) {
			struct json_object *m;

			if (json_object_object_get_ex(*ret, "model", &m) &&
			    json_object_object_get_ex(m, "props", props) &&
			    json_object_is_type(*props, json_type_object))
				return 0;
			json_object_put(*ret);
			*ret = NULL;
			r = -EREMOTEIO;
		}
	}
	return r;
}

const struct gw_cpuid_bit *gw_cpuid_find(const char *name)
{
	size_t lo = 0, hi = gw_cpuid_nbits;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, gw_cpuid_bits[mid].name);

		if (c == 0)
			return &gw_cpuid_bits[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

enum { PF_MAX_WORDS = 64 };

/* The CPUID feature words of an x86 vCPU (its "feature-words" property). */
struct cpuid_words {
	size_t n;
	struct {
		uint32_t eax, features;
		int32_t ecx; /* -1: a leaf without sub-leaves */
		char reg;
	} w[PF_MAX_WORDS];
};

static bool int_member(struct json_object *o, const char *key, int64_t lo, int64_t hi, int64_t *v)
{
	struct json_object *m;

	if (!json_object_object_get_ex(o, key, &m) || !json_object_is_type(m, json_type_int))
		return false;
	*v = json_object_get_int64(m);
	return *v >= lo && *v <= hi;
}

/*
 * The vCPU's feature words into <cw>. Returns 0, -EREMOTEIO when QEMU has
 * none to give (not x86) or gives something we do not understand (the
 * features are then read by name), or a monitor failure.
 */
static int read_words(struct qmp *q, const char *path, struct cpuid_words *cw, char *err, size_t errlen)
{
	struct json_object *ret = NULL, *reg;
	int r = qom_get(q, path, "feature-words", &ret, err, errlen);
	size_t n;

	cw->n = 0;
	if (r < 0)
		return r;
	n = json_object_is_type(ret, json_type_array) ? json_object_array_length(ret) : 0;
	if (n == 0 || n > PF_MAX_WORDS)
		r = -EREMOTEIO;
	for (size_t i = 0; r == 0 && i < n; i++) {
		struct json_object *e = json_object_array_get_idx(ret, i);
		const char *rs;
		int64_t eax, ecx = -1, f;

		if (!int_member(e, "cpuid-input-eax", 0, UINT32_MAX, &eax) ||
		    !int_member(e, "features", 0, UINT32_MAX, &f) ||
		    (json_object_object_get_ex(e, "cpuid-input-ecx", NULL) &&
		     !int_member(e, "cpuid-input-ecx", 0, INT32_MAX, &ecx)) ||
		    !json_object_object_get_ex(e, "cpuid-register", &reg) ||
		    !json_object_is_type(reg, json_type_string) || strlen(rs = json_object_get_string(reg)) != 3 ||
		    rs[0] != 'E' || rs[2] != 'X' || !strchr("ABCD", rs[1])) {
			r = -EREMOTEIO;
			break;
		}
		cw->w[i].eax = (uint32_t)eax;
		cw->w[i].ecx = (int32_t)ecx;
		cw->w[i].reg = rs[1];
		cw->w[i].features = (uint32_t)f;
	}
	cw->n = r == 0 ? n : 0;
	json_object_put(ret);
	return r;
}

/* Whether feature <name> is on by the words: 1 or 0, or -1 when the table or the words do not say. */
static int word_bit(const struct cpuid_words *cw, const char *name)
{
	const struct gw_cpuid_bit *b = gw_cpuid_find(name);

	for (size_t i = 0; b && i < cw->n; i++)
		if (cw->w[i].eax == b->eax && cw->w[i].ecx == b->ecx && cw->w[i].reg == b->reg)
			return (int)(cw->w[i].features >> b->bit & 1);
	return -1;
}

/*
 * Features the guest sees only through an MSR or CPUID leaf that another
 * feature enables: while that one is off, QEMU clears them (its feature
 * dependencies) and the guest could not see them anyway, so they count
 * as off without a qom-get. Names not listed here are read.
 */
static const struct {
	const char *name; /* a name, or a prefix ending in '-' */
	const char *gate;
} pf_gates[] = {
    {"vmx-", "vmx"}, /* the VMX capability MSRs */
    {"rdctl-no", "arch-capabilities"},
    {"ibrs-all", "arch-capabilities"},
    {"rsba", "arch-capabilities"},
    {"skip-l1dfl-vmentry", "arch-capabilities"},
    {"ssb-no", "arch-capabilities"},
    {"mds-no", "arch-capabilities"},
    {"pschange-mc-no", "arch-capabilities"},
    {"tsx-ctrl", "arch-capabilities"},
    {"taa-no", "arch-capabilities"},
    {"split-lock-detect", "core-capability"},
    {"full-width-write", "pdcm"}, /* IA32_PERF_CAPABILITIES */
};

/* Whether <name> is off because the feature that enables it is, by the words. */
static bool gated_off(const struct cpuid_words *cw, const char *name)
{
	for (size_t i = 0; i < sizeof(pf_gates) / sizeof(pf_gates[0]); i++) {
		size_t l = strlen(pf_gates[i].name);
		bool prefix = pf_gates[i].name[l - 1] == '-';

		if (prefix ? !strncmp(name, pf_gates[i].name, l) : !strcmp(name, pf_gates[i].name))
			return word_bit(cw, pf_gates[i].gate) == 0;
	}
	/* The KVM paravirtual features are the bits of leaf 0x40000001 EAX and EDX. */
	if (!strncmp(name, "kvm", 3)) {
		int zero = 0;

		for (size_t i = 0; i < cw->n; i++)
			if (cw->w[i].eax == 0x40000001u && (cw->w[i].reg == 'A' || cw->w[i].reg == 'D'))
				zero += cw->w[i].features == 0 ? 1 : -2;
		return zero == 2;
	}
	return false;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * The features the running vCPU has on: every boolean of its model's
 * expansion, read from the vCPU itself, so -cpu's +/- options and what
 * the accelerator filtered out count. Sorted, into pf->features.
 *
 * On x86 one qom-get of the vCPU's CPUID feature words answers for every
 * feature the table in pf_cpuid.c knows, and for those pf_gates holds off
 * while their enabling feature is. The rest (names newer than the table,
 * or enabled) are read one by one, pipelined; <by_name> reads every
 * feature that way.
 */
static int facts_features(struct qmp *q, const char *path, struct json_object *props, bool by_name,
			  struct wire_preflight *pf, char *err, size_t errlen)
{
	struct feat {
		const char *name;
		bool dflt;      /* the model's value */
		signed char on; /* 1, 0, or -1: to be read by name */
	} *f;
	/* the qom-gets of the features read by name: qmp_cmd_many's arrays */
	struct {
		struct json_object **args, **rets;
		int *rcs;
	} rd;
	size_t cap = (size_t)json_object_object_length(props) + 1, k = 0, nread = 0;
	struct cpuid_words *cw = calloc(1, sizeof(*cw));
	const char **names = calloc(cap, sizeof(*names));
	int r = 0;

	f = calloc(cap, sizeof(*f));
	rd.args = calloc(cap, sizeof(*rd.args));
	rd.rets = calloc(cap, sizeof(*rd.rets));
	rd.rcs = calloc(cap, sizeof(*rd.rcs));
	if (!f || !rd.args || !rd.rets || !rd.rcs || !cw || !names) {
		r = -ENOMEM;
		goto out;
	}
	if (!by_name && (r = read_words(q, path, cw, err, errlen)) < 0 && monitor_failed(r))
		goto out;
	r = 0;
	json_object_object_foreach(props, key, val)
	{
		if (!json_object_is_type(val, json_type_boolean) || !wire_name_ok(key, strlen(key)))
			continue;
		f[k].name = key;
		f[k].dflt = json_object_get_boolean(val);
		f[k].on = (signed char)word_bit(cw, key);
		if (f[k].on < 0 && gated_off(cw, key))
			f[k].on = 0;
		if (f[k].on < 0 && !(rd.args[nread++] = qom_get_args(path, key))) {
			r = -ENOMEM;
			goto out;
		}
		k++;
	}
	/* pipelined rather than a round trip each */
	if ((r = qmp_cmd_many(q, "qom-get", nread, rd.args, rd.rets, rd.rcs, err, errlen)) < 0)
		goto out;
	gw_dbg("pre-flight: %zu CPU features, %zu from the CPUID words, %zu read by name", k, k - nread, nread);
	{
		size_t n = 0, off = 0;

		for (size_t i = 0, j = 0; i < k; i++) {
			if (f[i].on < 0) { /* a property QEMU cannot read keeps the model's value */
				f[i].on = rd.rcs[j] == 0 && json_object_is_type(rd.rets[j], json_type_boolean)
					      ? json_object_get_boolean(rd.rets[j])
					      : f[i].dflt;
				j++;
			}
			if (f[i].on)
				names[n++] = f[i].name;
		}
		if (n > WIRE_MAX_CPU_FEATURES)
			goto out;
		qsort(names, n, sizeof(*names), cmp_str);
		for (size_t i = 0; i < n; i++) {
			size_t l = strlen(names[i]);

			if (off + l + 2 > sizeof(pf->features))
				break;
			if (i)
				pf->features[off++] = ' ';
			memcpy(pf->features + off, names[i], l);
			off += l;
			pf->features[off] = '\0';
			pf->nfeatures++;
		}
		if (pf->nfeatures == n) {
			pf->have |= WIRE_PF_CPU_FEATURES;
		} else { /* not all fit: no list rather than a wrong one */
			pf->features[0] = '\0';
			pf->nfeatures = 0;
		}
	}
out:
	for (size_t i = 0; rd.args && rd.rets && i < nread; i++) {
		json_object_put(rd.args[i]);
		json_object_put(rd.rets[i]);
	}
	free(f);
	free(rd.args);
	free(rd.rets);
	free(rd.rcs);
	free(cw);
	free(names);
	return r;
}

static int facts_cpu(struct qmp *q, bool by_name, struct wire_preflight *pf, char *err, size_t errlen)
{
	struct json_object *ret = NULL, *props = NULL;
	char path[256], type[128];
	int r = first_vcpu(q, path, sizeof(path), err, errlen);

	if (r == 0)
		r = qom_get_string(q, path, "type", type, sizeof(type), err, errlen);
	if (r == 0 && gw_pf_model_name(type, pf->cpu_model, sizeof(pf->cpu_model)) == 0) {
		pf->have |= WIRE_PF_CPU_MODEL;
		r = expand_model(q, pf->cpu_model, &ret, &props, err, errlen);
		if (r == 0)
			r = facts_features(q, path, props, by_name, pf, err, errlen);
		json_object_put(ret);
	}
	return monitor_failed(r) ? r : 0;
}

/* Takes one line of `info ramblock`: "NAME PSIZE UNIT 0xOFFSET 0xUSED 0xTOTAL ...". */
static void take_block_line(char *line, struct gw_qemu_facts *f)
{
	char *save = NULL, *name = strtok_r(line, " \t\r", &save), *tok;
	uint64_t hex[3];
	int nhex = 0;

	if (!name)
		return;
	while (nhex < 3 && (tok = strtok_r(NULL, " \t\r", &save)))
		if (!strncmp(tok, "0x", 2))
			hex[nhex++] = strtoull(tok, NULL, 16);
	if (nhex < 3)
		return;
	if (!wire_label_ok(name, strlen(name)) || f->nblocks >= GW_PF_MAX_BLOCKS) {
		f->skipped++;
		return;
	}
	snprintf(f->blocks[f->nblocks].name, sizeof(f->blocks[0].name), "%s", name);
	f->blocks[f->nblocks].used = hex[1];
	f->blocks[f->nblocks].max = hex[2];
	f->nblocks++;
}

int gw_pf_parse_ramblocks(const char *text, struct gw_qemu_facts *f)
{
	char *buf, *save = NULL, *line;
	bool header = false;

	f->nblocks = f->skipped = 0;
	if (!(buf = strdup(text)))
		return -ENOMEM;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!header) {
			header = strstr(line, "Block Name") != NULL;
			continue;
		}
		take_block_line(line, f);
	}
	free(buf);
	if (!header)
		return -EBADMSG;
	f->pf.nblocks = 0;
	for (int i = 0; i < f->nblocks && i < WIRE_MAX_RAMBLOCKS; i++) {
		memcpy(f->pf.blocks[i].name, f->blocks[i].name, sizeof(f->blocks[i].name));
		f->pf.blocks[i].used = f->blocks[i].used;
		f->pf.nblocks++;
	}
	if (f->nblocks > WIRE_MAX_RAMBLOCKS)
		f->skipped += f->nblocks - WIRE_MAX_RAMBLOCKS;
	if (f->pf.nblocks)
		f->pf.have |= WIRE_PF_RAMBLOCKS;
	return f->nblocks;
}

static int facts_blocks(struct qmp *q, struct gw_qemu_facts *f, char *err, size_t errlen)
{
	struct json_object *ret = NULL;
	int r = qmp_cmdf(q, "human-monitor-command", &ret, err, errlen, "{\"command-line\": \"info ramblock\"}");

	if (r == 0 && json_object_is_type(ret, json_type_string) &&
	    gw_pf_parse_ramblocks(json_object_get_string(ret), f) < 0)
		gw_dbg("pre-flight: QEMU's `info ramblock` is not in the form known here; RAM blocks are not compared");
	json_object_put(ret);
	return monitor_failed(r) ? r : 0;
}

int gw_qemu_facts_how(struct qmp *q, bool by_name, struct gw_qemu_facts *f, char *err, size_t errlen)
{
	int r;

	memset(f, 0, sizeof(*f));
	if ((r = facts_ram(q, &f->pf, err, errlen)) < 0 || (r = facts_machine(q, &f->pf, err, errlen)) < 0 ||
	    (r = facts_cpu(q, by_name, &f->pf, err, errlen)) < 0 || (r = facts_blocks(q, f, err, errlen)) < 0)
		return r;
	return 0;
}

int gw_qemu_facts(struct qmp *q, struct gw_qemu_facts *f, char *err, size_t errlen)
{
	return gw_qemu_facts_how(q, false, f, err, errlen);
}

/* --- comparing --- */

/* "128 MiB", "1 GiB", "4097 KiB" or "12345 bytes": exact, never rounded. */
static const char *size_text(uint64_t n, char *buf, size_t len)
{
	if (n && !(n % (1ull << 30)))
		snprintf(buf, len, "%" PRIu64 " GiB", n >> 30);
	else if (n && !(n % (1ull << 20)))
		snprintf(buf, len, "%" PRIu64 " MiB", n >> 20);
	else if (n && !(n % 1024))
		snprintf(buf, len, "%" PRIu64 " KiB", n >> 10);
	else
		snprintf(buf, len, "%" PRIu64 " bytes", n);
	return buf;
}

/* The -m argument for <n> bytes: "128M", or "131073K", or "131073000B". */
static const char *size_arg(uint64_t n, char *buf, size_t len)
{
	if (n && !(n % (1ull << 20)))
		snprintf(buf, len, "%" PRIu64 "M", n >> 20);
	else if (n && !(n % 1024))
		snprintf(buf, len, "%" PRIu64 "K", n >> 10);
	else
		snprintf(buf, len, "%" PRIu64 "B", n);
	return buf;
}

static bool has_name(const char *list, const char *name, size_t nl)
{
	for (const char *p = list; *p;) {
		const char *sp = strchr(p, ' ');
		size_t l = sp ? (size_t)(sp - p) : strlen(p);

		if (l == nl && !memcmp(p, name, nl))
			return true;
		p += l + (sp ? 1 : 0);
	}
	return false;
}

/*
 * The names of <a> that <b> lacks, ", "-separated into <out> (<cap>
 * bytes, at least 32), as many as fit, then "and N more". Returns how
 * many there are.
 */
static int missing_names(const char *a, const char *b, char *out, size_t cap)
{
	size_t off = 0;
	int n = 0, shown = 0;

	out[0] = '\0';
	for (const char *p = a; *p;) {
		const char *sp = strchr(p, ' ');
		size_t l = sp ? (size_t)(sp - p) : strlen(p);

		if (!has_name(b, p, l)) {
			n++;
			/* room for this name and a later " and NNN more" */
			if (shown == n - 1 && off + l + 2 + 16 < cap) {
				off += (size_t)snprintf(out + off, cap - off, "%s%.*s", shown ? ", " : "", (int)l, p);
				shown++;
			}
		}
		p += l + (sp ? 1 : 0);
	}
	if (n > shown)
		snprintf(out + off, cap - off, " and %d more", n - shown);
	return n;
}

static int differ(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int differ(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(why, whylen, "pre-flight: ");
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < whylen)
		vsnprintf(why + n, whylen - (size_t)n, fmt, ap);
	va_end(ap);
	return -EMEDIUMTYPE;
}

/*
 * "lacks A, B and has C in addition" for the features <src> has and <dst>
 * lacks and the other way round, in at most <cap> bytes (the lists cut
 * with "and N more"). "" when the lists are equal.
 */
static void feature_detail(const char *src, const char *dst, char *out, size_t cap)
{
	char lacks[WIRE_MAX_ERROR_TEXT], extra[WIRE_MAX_ERROR_TEXT], tmp[8];
	int nl = missing_names(src, dst, tmp, sizeof(tmp)), ne = missing_names(dst, src, tmp, sizeof(tmp));
	size_t room = cap > 40 ? cap - 40 : 0; /* "lacks ", " and has ", " in addition" */

	out[0] = '\0';
	if (room < 32)
		room = 32;
	if (room > sizeof(lacks))
		room = sizeof(lacks);
	if (nl)
		missing_names(src, dst, lacks, ne ? room * 2 / 3 : room);
	if (ne) /* what the first list left */
		missing_names(dst, src, extra, nl && room - strlen(lacks) > 32 ? room - strlen(lacks) : nl ? 32 : room);
	if (nl && ne)
		snprintf(out, cap, "lacks %s and has %s in addition", lacks, extra);
	else if (nl)
		snprintf(out, cap, "lacks %s", lacks);
	else if (ne)
		snprintf(out, cap, "has %s in addition", extra);
}

static int compare_cpu(const struct wire_preflight *src, const struct wire_preflight *dst, char *why, size_t whylen)
{
	bool models = (src->have & dst->have & WIRE_PF_CPU_MODEL) && strcmp(src->cpu_model, dst->cpu_model);
	char detail[WIRE_MAX_ERROR_TEXT + 1] = "";
	size_t fixed;

	/* What the sentence takes without the lists, so that the lists get the rest of an ERROR's text. */
	fixed = models ? 120 + 3 * strlen(src->cpu_model) : 160 + strlen(dst->cpu_model);
	if (src->have & dst->have & WIRE_PF_CPU_FEATURES)
		feature_detail(src->features, dst->features, detail,
			       fixed < WIRE_MAX_ERROR_TEXT - 32 ? WIRE_MAX_ERROR_TEXT - fixed : 32);
	if (models)
		return differ(why, whylen,
			      "the source guest's CPU model is %s and the destination QEMU's %s%s%s%s; start the "
			      "destination with -cpu %s",
			      src->cpu_model, dst->cpu_model, detail[0] ? " (which " : "", detail, detail[0] ? ")" : "",
			      src->cpu_model);
	if (detail[0])
		return differ(why, whylen,
			      "the destination QEMU's CPU%s%s%s %s compared with the source guest's; start the "
			      "destination with the source's -cpu options on a host that has its features",
			      (dst->have & WIRE_PF_CPU_MODEL) ? " (" : "", dst->cpu_model,
			      (dst->have & WIRE_PF_CPU_MODEL) ? ")" : "", detail);
	return 0;
}

static int compare_blocks(const struct wire_preflight *src, const struct gw_qemu_facts *dst, char *why, size_t whylen)
{
	char a[32], b[32];

	if (!(src->have & WIRE_PF_RAMBLOCKS) || !(dst->pf.have & WIRE_PF_RAMBLOCKS))
		return 0;
	for (unsigned i = 0; i < src->nblocks; i++) {
		const struct wire_ramblock *s = &src->blocks[i];
		const struct gw_ramblock *d = NULL;

		for (int k = 0; k < dst->nblocks && !d; k++)
			if (!strcmp(dst->blocks[k].name, s->name))
				d = &dst->blocks[k];
		if (!d && dst->skipped)
			continue; /* it may be one we could not read */
		if (!d)
			return differ(why, whylen,
				      "the destination QEMU has no RAM block %s, which the source guest has; "
				      "start the destination with the source's devices and options",
				      s->name);
		/* QEMU resizes a resizeable block (max > used) to the source's size when it fits (ACPI tables). */
		if (s->used != d->used && !(d->max > d->used && s->used <= d->max))
			return differ(why, whylen,
				      "RAM block %s is %s on the source and %s on the destination QEMU; start "
				      "the destination with the source's devices and options",
				      s->name, size_text(s->used, a, sizeof(a)), size_text(d->used, b, sizeof(b)));
	}
	return 0;
}

int gw_preflight_compare(const struct wire_preflight *src, const struct gw_qemu_facts *dst, char *why, size_t whylen)
{
	const struct wire_preflight *d = &dst->pf;
	char a[32], b[32], c[32];
	int r;

	why[0] = '\0';
	if ((src->have & d->have & WIRE_PF_MACHINE) && strcmp(src->machine, d->machine))
		return differ(why, whylen,
			      "the source guest's machine type is %s and the destination QEMU's %s; start the "
			      "destination with -machine %s",
			      src->machine, d->machine, src->machine);
	if ((src->have & d->have & WIRE_PF_RAM) && src->ram_base != d->ram_base)
		return differ(why, whylen,
			      "the source guest has %s of RAM and the destination QEMU %s; start the "
			      "destination with -m %s",
			      size_text(src->ram_base, a, sizeof(a)), size_text(d->ram_base, b, sizeof(b)),
			      size_arg(src->ram_base, c, sizeof(c)));
	if ((src->have & d->have & WIRE_PF_RAM) && src->ram_plugged != d->ram_plugged)
		return differ(why, whylen,
			      "the source guest has %s of hotplugged memory and the destination QEMU %s; "
			      "start the destination with the source's memory devices",
			      size_text(src->ram_plugged, a, sizeof(a)), size_text(d->ram_plugged, b, sizeof(b)));
	if ((r = compare_cpu(src, d, why, whylen)) < 0)
		return r;
	return compare_blocks(src, dst, why, whylen);
}
