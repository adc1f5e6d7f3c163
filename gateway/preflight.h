/* SPDX-License-Identifier: MIT */
/*
 * Pre-flight (PROTOCOL.md §4.1, revision 1.2): what a QEMU's monitor says
 * about the guest a migration moves (RAM size and blocks, machine type,
 * CPU model and the features its vCPUs run with), gathered the same way
 * on both sides; and the destination's comparison, which names the first
 * difference in one sentence. The source sends only these names and
 * counts (struct wire_preflight); nothing it sends reaches a QMP command.
 */
#ifndef MR_GATEWAY_PREFLIGHT_H
#define MR_GATEWAY_PREFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qmp.h"
#include "stream/frame.h"

enum { GW_PF_MAX_BLOCKS = 128 };

/* One RAM block as `info ramblock` shows it. */
struct gw_ramblock {
	char name[WIRE_MAX_NAME + 1];
	uint64_t used, max; /* bytes; max > used: QEMU may resize the block to the source's size */
};

struct gw_qemu_facts {
	struct wire_preflight pf; /* what a client sends; its blocks are the first WIRE_MAX_RAMBLOCKS of <blocks> */
	int nblocks;
	struct gw_ramblock blocks[GW_PF_MAX_BLOCKS]; /* every block whose name can travel (wire_label_ok) */
	int skipped;				     /* blocks left out: a name that cannot travel, or too many */
};

/*
 * Asks the QEMU behind <q> for its facts (query-memory-size-summary, qom-get
 * of the machine's and the first vCPU's type, query-cpu-model-expansion,
 * the vCPU's features: on x86 its CPUID feature words and a qom-get for
 * each feature they do not answer, elsewhere a qom-get each; `info
 * ramblock`): only queries, nothing that changes QEMU. A fact QEMU cannot
 * give (a command it does not have) is left out of f->pf.have. Returns 0,
 * or -errno when the monitor itself failed (<err> set). Any thread that
 * owns <q>.
 */
MR_MUST_CHECK int gw_qemu_facts(struct qmp *q, struct gw_qemu_facts *f, char *err, size_t errlen);
/* The same; <by_name> reads every CPU feature with its own qom-get, as a check of the words (tests). */
MR_MUST_CHECK int gw_qemu_facts_how(struct qmp *q, bool by_name, struct gw_qemu_facts *f, char *err, size_t errlen);

/*
 * The destination's check: the source's facts <src> against this QEMU's
 * <dst>. A fact either side lacks is not compared. Returns 0, or
 * -EMEDIUMTYPE with one sentence in <why> (at most WIRE_MAX_ERROR_TEXT
 * bytes, starting "pre-flight: ") that names the difference and the fix.
 * Pure; any thread.
 */
MR_MUST_CHECK int gw_preflight_compare(const struct wire_preflight *src, const struct gw_qemu_facts *dst, char *why,
				       size_t whylen);

/* `info ramblock`'s text into f->blocks (and the first ones into f->pf). Returns the blocks taken, or -EBADMSG. */
MR_MUST_CHECK int gw_pf_parse_ramblocks(const char *text, struct gw_qemu_facts *f);

/* A QOM type name ("qemu64-x86_64-cpu", "pc-q35-7.2-machine") without its "-ARCH-cpu" or "-machine" suffix. 0 or
 * -EINVAL. */
MR_MUST_CHECK int gw_pf_model_name(const char *type, char *out, size_t len);

#endif
