/* SPDX-License-Identifier: MIT */
/*
 * Pre-flight (gateway/preflight.h): the destination's comparison and the
 * sentence it refuses with, `info ramblock`'s text, QOM type names.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/preflight.h"

static struct gw_qemu_facts *facts(void)
{
	struct gw_qemu_facts *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->pf.have = WIRE_PF_RAM | WIRE_PF_MACHINE | WIRE_PF_CPU_MODEL | WIRE_PF_CPU_FEATURES | WIRE_PF_RAMBLOCKS;
	f->pf.ram_base = 128ull << 20;
	strcpy(f->pf.machine, "pc-i440fx-7.2");
	strcpy(f->pf.cpu_model, "qemu64");
	strcpy(f->pf.features, "apic cx8 lm pni svm");
	f->pf.nfeatures = 5;
	f->nblocks = 2;
	strcpy(f->blocks[0].name, "pc.ram");
	f->blocks[0].used = f->blocks[0].max = 128ull << 20;
	strcpy(f->blocks[1].name, "/rom@etc/acpi/tables");
	f->blocks[1].used = 0x20000;
	f->blocks[1].max = 0x200000;
	f->pf.nblocks = 2;
	for (int i = 0; i < 2; i++) {
		strcpy(f->pf.blocks[i].name, f->blocks[i].name);
		f->pf.blocks[i].used = f->blocks[i].used;
	}
	return f;
}

/* Compares <src> with <dst>: 0 and "" when <want> is NULL, else -EMEDIUMTYPE and exactly <want>. */
static void expect(const struct gw_qemu_facts *src, const struct gw_qemu_facts *dst, const char *want)
{
	char why[WIRE_MAX_ERROR_TEXT + 1];
	int r = gw_preflight_compare(&src->pf, dst, why, sizeof(why));

	if (!want) {
		if (r != 0)
			fail_msg("refused: %s", why);
		assert_string_equal(why, "");
		return;
	}
	assert_int_equal(r, -EMEDIUMTYPE);
	assert_string_equal(why, want);
}

static void test_compare(void **state)
{
	struct gw_qemu_facts *s = facts(), *d = facts();

	(void)state;
	expect(s, d, NULL);

	d->pf.ram_base = 256ull << 20;
	expect(s, d,
	       "pre-flight: the source guest has 128 MiB of RAM and the destination QEMU 256 MiB; start the "
	       "destination with -m 128M");
	s->pf.ram_base = 1ull << 30;
	d->pf.ram_base = 1536ull << 20;
	expect(s, d,
	       "pre-flight: the source guest has 1 GiB of RAM and the destination QEMU 1536 MiB; start the "
	       "destination with -m 1024M");
	s->pf.ram_base = (128ull << 20) + 4096;
	expect(s, d,
	       "pre-flight: the source guest has 131076 KiB of RAM and the destination QEMU 1536 MiB; start the "
	       "destination with -m 131076K");
	d->pf.have &= ~WIRE_PF_RAM; /* a fact one side lacks is not compared */
	expect(s, d, NULL);
	d->pf.have |= WIRE_PF_RAM;
	d->pf.ram_base = s->pf.ram_base;
	d->pf.ram_plugged = 1ull << 30;
	expect(s, d,
	       "pre-flight: the source guest has 0 bytes of hotplugged memory and the destination QEMU 1 GiB; "
	       "start the destination with the source's memory devices");
	d->pf.ram_plugged = 0;

	/* The machine comes first: it explains the rest. */
	strcpy(d->pf.machine, "pc-q35-7.2");
	d->pf.ram_base = 64ull << 20;
	expect(s, d,
	       "pre-flight: the source guest's machine type is pc-i440fx-7.2 and the destination QEMU's "
	       "pc-q35-7.2; start the destination with -machine pc-i440fx-7.2");
	s->pf.have &= ~WIRE_PF_MACHINE;
	d->pf.ram_base = s->pf.ram_base;
	expect(s, d, NULL);
	free(s);
	free(d);
}

static void test_compare_cpu(void **state)
{
	struct gw_qemu_facts *s = facts(), *d = facts();
	char why[WIRE_MAX_ERROR_TEXT + 1];
	size_t off = 0;

	(void)state;
	strcpy(d->pf.cpu_model, "Nehalem");
	strcpy(d->pf.features, "apic cx8 lm pni popcnt sse4.1");
	d->pf.nfeatures = 6;
	expect(s, d,
	       "pre-flight: the source guest's CPU model is qemu64 and the destination QEMU's Nehalem (which lacks "
	       "svm and has popcnt, sse4.1 in addition); start the destination with -cpu qemu64");
	d->pf.have &= ~WIRE_PF_CPU_FEATURES;
	expect(s, d,
	       "pre-flight: the source guest's CPU model is qemu64 and the destination QEMU's Nehalem; start the "
	       "destination with -cpu qemu64");

	/* The same model on another host: the features the destination's lacks. */
	strcpy(s->pf.cpu_model, "host");
	strcpy(d->pf.cpu_model, "host");
	d->pf.have |= WIRE_PF_CPU_FEATURES;
	strcpy(s->pf.features, "avx avx2 pclmulqdq sse");
	s->pf.nfeatures = 4;
	strcpy(d->pf.features, "avx sse");
	d->pf.nfeatures = 2;
	expect(s, d,
	       "pre-flight: the destination QEMU's CPU (host) lacks avx2, pclmulqdq compared with the source "
	       "guest's; start the destination with the source's -cpu options on a host that has its features");
	strcpy(d->pf.features, "avx avx2 pclmulqdq sse vmx");
	d->pf.nfeatures = 5;
	expect(s, d,
	       "pre-flight: the destination QEMU's CPU (host) has vmx in addition compared with the source "
	       "guest's; start the destination with the source's -cpu options on a host that has its features");

	/* Long lists are cut with "and N more"; the sentence fits an ERROR's text whole. */
	s->pf.features[0] = '\0';
	for (int i = 0; i < 200; i++)
		off += (size_t)snprintf(s->pf.features + off, sizeof(s->pf.features) - off, "%sfeature-%03d",
					i ? " " : "", i);
	s->pf.nfeatures = 200;
	strcpy(d->pf.features, "zzz");
	d->pf.nfeatures = 1;
	strcpy(d->pf.cpu_model, "Skylake-Client-noTSX-IBRS");
	assert_int_equal(gw_preflight_compare(&s->pf, d, why, sizeof(why)), -EMEDIUMTYPE);
	assert_true(strlen(why) < WIRE_MAX_ERROR_TEXT);
	assert_non_null(strstr(why, "lacks feature-000, feature-001"));
	assert_non_null(strstr(why, " more and has zzz in addition); start the destination with -cpu host"));
	free(s);
	free(d);
}

static void test_compare_blocks(void **state)
{
	struct gw_qemu_facts *s = facts(), *d = facts();

	(void)state;
	/* A resizeable block (ACPI tables) takes the source's size up to its maximum. */
	s->pf.blocks[1].used = 0x40000;
	expect(s, d, NULL);
	s->pf.blocks[1].used = 0x400000;
	expect(s, d,
	       "pre-flight: RAM block /rom@etc/acpi/tables is 4 MiB on the source and 128 KiB on the destination "
	       "QEMU; start the destination with the source's devices and options");
	s->pf.blocks[1].used = 0x20000;
	d->blocks[0].used = d->blocks[0].max = 64ull << 20; /* pc.ram does not resize */
	expect(s, d,
	       "pre-flight: RAM block pc.ram is 128 MiB on the source and 64 MiB on the destination QEMU; start "
	       "the destination with the source's devices and options");
	d->blocks[0].used = d->blocks[0].max = 128ull << 20;
	strcpy(s->pf.blocks[1].name, "vga.vram");
	expect(s, d,
	       "pre-flight: the destination QEMU has no RAM block vga.vram, which the source guest has; start the "
	       "destination with the source's devices and options");
	d->skipped = 1; /* it may be one the destination could not name */
	expect(s, d, NULL);
	free(s);
	free(d);
}

static const char ramblock_72[] =
    "              Block Name    PSize              Offset               Used              Total\r\n"
    "                  pc.ram    4 KiB  0x0000000000000000 0x0000000004000000 0x0000000004000000\r\n"
    "    /rom@etc/acpi/tables    4 KiB  0x0000000004080000 0x0000000000020000 0x0000000000200000\r\n"
    "                 pc.bios    4 KiB  0x0000000004000000 0x0000000000040000 0x0000000000040000\r\n";

static const char ramblock_hva[] =
    "              Block Name    PSize              Offset               Used              Total                HVA  "
    "RO\n"
    "                  pc.ram    4 KiB  0x0000000000000000 0x0000000008000000 0x0000000008000000 0x00007f1234560000  "
    "rw\n"
    " a-name-that-is-much-longer-than-the-sixty-four-bytes-a-name-may-have-on-the-wire 4 KiB  0x0 0x1000 0x1000 "
    "0x00007f0000000000  rw\n"
    "                 has\"quote    4 KiB  0x0 0x1000 0x1000 0x00007f0000000000  ro\n"
    "              short line    4 KiB  0x0\n";

static void test_parse_ramblocks(void **state)
{
	struct gw_qemu_facts *f = calloc(1, sizeof(*f));

	(void)state;
	assert_non_null(f);
	assert_int_equal(gw_pf_parse_ramblocks(ramblock_72, f), 3);
	assert_string_equal(f->blocks[1].name, "/rom@etc/acpi/tables");
	assert_int_equal(f->blocks[1].used, 0x20000);
	assert_int_equal(f->blocks[1].max, 0x200000);
	assert_int_equal(f->pf.nblocks, 3);
	assert_true(f->pf.have & WIRE_PF_RAMBLOCKS);
	assert_int_equal(f->pf.blocks[0].used, 0x4000000);
	assert_int_equal(f->skipped, 0);

	memset(f, 0, sizeof(*f));
	assert_int_equal(gw_pf_parse_ramblocks(ramblock_hva, f), 1); /* newer QEMUs add HVA and RO */
	assert_int_equal(f->blocks[0].used, 0x8000000);
	assert_int_equal(f->skipped, 2); /* too long a name, a quote; the short line is no block */

	memset(f, 0, sizeof(*f));
	assert_int_equal(gw_pf_parse_ramblocks("unknown command: 'info ramblock'\r\n", f), -EBADMSG);
	assert_int_equal(f->pf.have, 0);
	free(f);
}

static void test_model_name(void **state)
{
	static const struct {
		const char *type, *want;
	} cases[] = {
	    {"qemu64-x86_64-cpu", "qemu64"},
	    {"Skylake-Client-v4-x86_64-cpu", "Skylake-Client-v4"},
	    {"host-x86_64-cpu", "host"},
	    {"cortex-a57-arm-cpu", "cortex-a57"},
	    {"pc-q35-7.2-machine", "pc-q35-7.2"},
	    {"pc-i440fx-7.2-machine", "pc-i440fx-7.2"},
	    {"x86_64-cpu", NULL},
	    {"-x86_64-cpu", NULL},
	    {"-machine", NULL},
	    {"qemu64", NULL},
	    {"a/b-x86_64-cpu", NULL},
	    {"", NULL},
	};
	char out[WIRE_MAX_NAME + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = gw_pf_model_name(cases[i].type, out, sizeof(out));

		if (cases[i].want) {
			if (r != 0)
				fail_msg("\"%s\": %d", cases[i].type, r);
			assert_string_equal(out, cases[i].want);
		} else if (r != -EINVAL) {
			fail_msg("\"%s\" taken as \"%s\"", cases[i].type, out);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_compare),	   cmocka_unit_test(test_compare_cpu),
	    cmocka_unit_test(test_compare_blocks), cmocka_unit_test(test_parse_ramblocks),
	    cmocka_unit_test(test_model_name),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
