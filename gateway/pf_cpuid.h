/* SPDX-License-Identifier: MIT */
/*
 * Which CPUID bit an x86 CPU feature name of QEMU stands for (the table in
 * pf_cpuid.c is generated from QEMU by tests/tools/gen_cpuid_table.py).
 * Pre-flight reads the vCPU's `feature-words` once and takes these
 * features from it instead of one `qom-get` each: QEMU's monitor reads a
 * command a byte at a time, about half a millisecond of its CPU per
 * qom-get, and x86 has some 320 features.
 */
#ifndef MR_GATEWAY_PF_CPUID_H
#define MR_GATEWAY_PF_CPUID_H

#include <stddef.h>
#include <stdint.h>

struct gw_cpuid_bit {
	const char *name;
	uint32_t eax; /* CPUID leaf */
	int32_t ecx;  /* sub-leaf, or -1 for a leaf without */
	char reg;     /* 'A', 'B', 'C' or 'D' */
	uint8_t bit;
};

extern const struct gw_cpuid_bit gw_cpuid_bits[]; /* sorted by name (strcmp) */
extern const size_t gw_cpuid_nbits;

/* The entry for <name>, or NULL when the name is not in the table. */
const struct gw_cpuid_bit *gw_cpuid_find(const char *name);

#endif
