/* SPDX-License-Identifier: MIT */
/*
 * mr_pffacts QMP_SOCKET [--by-name]: gathers the pre-flight facts of the
 * QEMU behind QMP_SOCKET with gateway/preflight.c and prints them, one
 * "key: value" line each (machine, cpu, features, ram, blocks), then the
 * milliseconds it took on stderr. --by-name reads every CPU feature with
 * its own qom-get instead of taking the ones the CPUID table knows from
 * the vCPU's feature words: tests/e2e/test_preflight_cpuid.sh compares the
 * two. Exit 0, 1 when QEMU cannot be asked, 2 on bad usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/preflight.h"
#include "gateway/qmp.h"

int main(int argc, char **argv)
{
	struct gw_qemu_facts *f = malloc(sizeof(*f));
	char err[QMP_ERR_MAX];
	struct timespec t0, t1;
	struct qmp *q = NULL;
	bool by_name;
	int r;

	if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "--by-name")) || !f) {
		fprintf(stderr, "usage: %s QMP_SOCKET [--by-name]\n", argv[0]);
		return 2;
	}
	by_name = argc == 3;
	if (qmp_open(&q, argv[1], 10000, err, sizeof(err)) < 0) {
		fprintf(stderr, "mr_pffacts: %s\n", err);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = gw_qemu_facts_how(q, by_name, f, err, sizeof(err));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	qmp_close(q);
	if (r < 0) {
		fprintf(stderr, "mr_pffacts: %s\n", err);
		return 1;
	}
	printf("machine: %s\n", (f->pf.have & WIRE_PF_MACHINE) ? f->pf.machine : "-");
	printf("cpu: %s\n", (f->pf.have & WIRE_PF_CPU_MODEL) ? f->pf.cpu_model : "-");
	printf("nfeatures: %u\n", (f->pf.have & WIRE_PF_CPU_FEATURES) ? f->pf.nfeatures : 0);
	printf("features: %s\n", (f->pf.have & WIRE_PF_CPU_FEATURES) ? f->pf.features : "-");
	printf("ram: %" PRIu64 " %" PRIu64 "\n", f->pf.ram_base, f->pf.ram_plugged);
	printf("blocks: %u\n", f->pf.nblocks);
	fprintf(stderr, "mr_pffacts: %s in %.1f ms\n", by_name ? "by name" : "from the words",
		(double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	free(f);
	return 0;
}
