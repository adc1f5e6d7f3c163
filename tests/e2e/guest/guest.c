// SPDX-License-Identifier: MIT
/*
 * The e2e test guest: a freestanding 32-bit multiboot kernel without paging.
 *
 * It fills guest-physical RAM from 2 MiB to the end of the usable region the
 * loader reports with a deterministic mix of pages (by page number: ~30% zero,
 * ~40% compressible repeating patterns, ~30% xorshift noise), prints
 * "migrelay-guest: filled N MiB ..." on COM1 and then either halts for good
 * ("idle" on the command line: RAM never changes again) or keeps rewriting
 * the noise pages at a steady rate ("dirty", the default; "rate=N" sets
 * N MiB/s, default 4), paced by the PIT at 100 Hz.
 *
 * "check" (with "dirty" behaviour and rate=N) makes the guest verify its own
 * RAM as it runs: it remembers the generation of every page it rewrote and
 * sweeps the data region against the content each page must have, printing
 * "migrelay-guest: check pass N ok" after every clean sweep and
 * "migrelay-guest: check MISMATCH ..." for a page that differs. A guest
 * migrated by a tool that loses or corrupts a page tells so on its console
 * on the destination, without a second QEMU to compare it with (libvirt
 * ends the source QEMU after a migration).
 *
 * Its own code, data and stack live below 2 MiB (see guest.ld), so the
 * region above holds test data only.
 */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define MB_LOADER_MAGIC 0x2BADB002u
#define MB_INFO_MEM 0x001u
#define MB_INFO_CMDLINE 0x004u
#define MB_INFO_MMAP 0x040u

#define PAGE_SIZE 4096u
#define DATA_START 0x200000u /* first byte of test data */
#define TICK_HZ 100u
#define PIT_HZ 1193182u
#define COM1 0x3f8

struct mb_info {
	u32 flags;
	u32 mem_lower, mem_upper; /* KiB below 1 MiB, KiB above 1 MiB */
	u32 boot_device;
	u32 cmdline;
	u32 mods_count, mods_addr;
	u32 syms[4];
	u32 mmap_length, mmap_addr;
} __attribute__((packed));

struct mb_mmap {
	u32 size; /* of the rest of this entry */
	u64 addr, len;
	u32 type; /* 1: usable RAM */
} __attribute__((packed));

struct idt_entry {
	u16 off_lo, sel;
	u8 zero, attr;
	u16 off_hi;
} __attribute__((packed));

struct idt_desc {
	u16 limit;
	u32 base;
} __attribute__((packed));

extern char isr_stubs[];

static struct idt_entry idt[48];
static volatile u32 ticks;
static u32 data_end;  /* end of the filled region, page aligned */
static u32 dirty_pos; /* next page to consider for rewriting */
static u32 generation;

/* check mode: the generation each noise page was last written with (0: the fill), for pages below CHECK_PAGES */
#define CHECK_PAGES (192u * 1024u) /* 768 MiB of data above 2 MiB */
/*
 * Page-aligned, so that no page of the table also holds code or the
 * guest's counters. A table page delivered stale makes every data page it
 * covers look wrong ("the generation table is stale"); see tlb_flush_all for
 * the QEMU bug that did that, with socat as well as with migrelay.
 */
static u32 gen_of[CHECK_PAGES] __attribute__((aligned(4096)));
static int checking;
static int tcg_tlb = 1; /* tlb_flush_all does its work (not under KVM) */
static int check_fault; /* "checkfault": after the first pass, corrupt one page and make one stale (proves the check sees both) */

static inline void outb(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void serial_init(void)
{
	outb(COM1 + 1, 0x00); /* no interrupts */
	outb(COM1 + 3, 0x80); /* DLAB */
	outb(COM1 + 0, 0x01); /* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03); /* 8N1 */
	outb(COM1 + 2, 0xc7); /* FIFO on */
	outb(COM1 + 4, 0x03);
}

static void putc_serial(char c)
{
	u32 n;

	for (n = 0; n < 1000000 && !(inb(COM1 + 5) & 0x20); n++)
		;
	outb(COM1, (u8)c);
}

static void puts_serial(const char *s)
{
	while (*s) {
		if (*s == '\n')
			putc_serial('\r');
		putc_serial(*s++);
	}
}

static void putu_serial(u32 v)
{
	char buf[11];
	int i = 10;

	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v && i > 0);
	puts_serial(buf + i);
}

/*
 * Empties the TLB that QEMU's TCG keeps for this vCPU (paging is off, so
 * toggling CR4.PSE changes nothing else). Not under KVM (tcg_tlb is 0):
 * there the hardware tracks dirty pages and each CR4 write would cost an exit.
 *
 * QEMU before 9.0 (commit 03bfc2188f06, "physmem: Fix migration dirty bitmap
 * coherency with TCG memory access") does not reset TCG's TLB when a
 * migration's dirty-bitmap sync clears a page's dirty bit: stores through a
 * TLB entry filled while the page was dirty keep bypassing the dirty
 * tracking until that entry is dropped, so the page is not sent again and
 * the destination gets it stale. Hot pages suffer: the stack, the check's
 * counters, the generation table. Refilling every entry after each burst of
 * writes makes the next write to any page mark it dirty again, so what the
 * guest checks is what a migration tool delivered, not this QEMU bug.
 */
static void tlb_flush_all(void)
{
	u32 cr4;

	if (!tcg_tlb)
		return;
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4 ^ 0x10u) : "memory");
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4) : "memory");
}

static void cpuid(u32 leaf, u32 r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

/* Whether the guest runs under KVM: the hypervisor bit, then KVM's signature "KVMKVMKVM\0\0\0". */
static int under_kvm(void)
{
	u32 r[4];

	cpuid(1, r);
	if (!(r[2] & 0x80000000u))
		return 0;
	cpuid(0x40000000u, r);
	return r[1] == 0x4b4d564bu && r[2] == 0x564b4d56u && r[3] == 0x4du;
}

/* A 32-bit integer hash, so neighbouring pages get unrelated classes and seeds. */
static u32 mix32(u32 x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

enum page_class { PC_ZERO, PC_PATTERN, PC_NOISE };

static enum page_class page_class(u32 pfn)
{
	u32 h = mix32(pfn) % 10;

	if (h < 3)
		return PC_ZERO;
	if (h < 7)
		return PC_PATTERN;
	return PC_NOISE;
}

static void fill_zero(u32 *w)
{
	u32 i;

	for (i = 0; i < PAGE_SIZE / 4; i++)
		w[i] = 0;
}

/* A short run of letters (8..64 bytes), repeated over the page. */
static void fill_pattern(u8 *b, u32 pfn)
{
	u32 h = mix32(pfn ^ 0x5bd1e995u);
	u32 len = 8u << (h & 3);
	u32 i;

	for (i = 0; i < len; i++)
		b[i] = (u8)('a' + (h + i * 7) % 26);
	for (; i < PAGE_SIZE; i++)
		b[i] = b[i - len];
}

static void fill_noise(u32 *w, u32 seed)
{
	u32 x = mix32(seed) | 1;
	u32 i;

	for (i = 0; i < PAGE_SIZE / 4; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		w[i] = x;
	}
}

static void fill_page(u32 pfn)
{
	void *p = (void *)(pfn * PAGE_SIZE);

	switch (page_class(pfn)) {
	case PC_ZERO:
		fill_zero(p);
		break;
	case PC_PATTERN:
		fill_pattern(p, pfn);
		break;
	default:
		fill_noise(p, pfn);
		break;
	}
}

/* Rewrites the next noise page with content derived from a running counter. */
static void dirty_one(void)
{
	u32 first = DATA_START / PAGE_SIZE, last = data_end / PAGE_SIZE;
	u32 n;

	for (n = 0; n < 64; n++) {
		if (dirty_pos < first || dirty_pos >= last)
			dirty_pos = first;
		if (page_class(dirty_pos) == PC_NOISE)
			break;
		dirty_pos++;
	}
	if (checking && dirty_pos - first >= CHECK_PAGES) {
		dirty_pos = first; /* check mode rewrites only pages it can remember */
		return;
	}
	fill_noise((u32 *)(dirty_pos * PAGE_SIZE), dirty_pos ^ (++generation * 0x9e3779b9u));
	if (checking)
		gen_of[dirty_pos - first] = generation;
	dirty_pos++;
	tlb_flush_all();
}

/* The seed of noise page <pfn> as fill_page or dirty_one last wrote it. */
static u32 noise_seed(u32 pfn)
{
	u32 i = pfn - DATA_START / PAGE_SIZE, g = i < CHECK_PAGES ? gen_of[i] : 0;

	return g ? pfn ^ (g * 0x9e3779b9u) : pfn;
}

/* Whether page <pfn> holds what the guest last wrote there (check mode). */
static int page_ok(u32 pfn)
{
	const u32 *w = (const u32 *)(pfn * PAGE_SIZE);
	const u8 *b = (const u8 *)w;
	u32 i, x, h, len;

	switch (page_class(pfn)) {
	case PC_ZERO:
		for (i = 0; i < PAGE_SIZE / 4; i++)
			if (w[i])
				return 0;
		return 1;
	case PC_PATTERN:
		h = mix32(pfn ^ 0x5bd1e995u);
		len = 8u << (h & 3);
		for (i = 0; i < PAGE_SIZE; i++)
			if (b[i] != (u8)('a' + (h + (i % len) * 7) % 26))
				return 0;
		return 1;
	default:
		x = mix32(noise_seed(pfn)) | 1;
		for (i = 0; i < PAGE_SIZE / 4; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			if (w[i] != x)
				return 0;
		}
		return 1;
	}
}

static void puthex_serial(u32 v)
{
	u32 i;

	puts_serial("0x");
	for (i = 0; i < 8; i++)
		putc_serial("0123456789abcdef"[(v >> (28 - 4 * i)) & 15]);
}

/*
 * check mode, after a mismatch of noise page <pfn>: which generation does the
 * page hold? Compares only the first word against each generation written so
 * far (newest first) and the fill. Returns the generation, 0 for the fill,
 * or -1 when the page holds none of them (lost or corrupted, not stale).
 */
static long long noise_generation_held(u32 pfn)
{
	u32 w = *(const u32 *)(pfn * PAGE_SIZE), g, x;

	for (g = generation + 1; g-- > 0;) {
		x = mix32(g ? pfn ^ (g * 0x9e3779b9u) : pfn) | 1;
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		if (x == w)
			return g;
	}
	return -1;
}

/*
 * Says what a mismatching page holds, to tell a stale page from a lost one:
 * a noise page holding an older generation than the table says is a data
 * page that was not brought up to date; one holding a newer generation
 * means the table itself (in the guest's own first 2 MiB) is the stale page.
 */
static void check_report(u32 pfn)
{
	u32 i = pfn - DATA_START / PAGE_SIZE, want;
	long long held;

	puts_serial("migrelay-guest: check MISMATCH page ");
	puthex_serial(pfn * PAGE_SIZE);
	if (page_class(pfn) != PC_NOISE) {
		puts_serial(page_class(pfn) == PC_ZERO ? " (zero page)\n" : " (pattern page)\n");
		return;
	}
	want = i < CHECK_PAGES ? gen_of[i] : 0;
	held = noise_generation_held(pfn);
	puts_serial(" (noise page; expected generation ");
	putu_serial(want);
	if (held < 0) {
		puts_serial(", holds no generation written: lost or corrupted)\n");
		return;
	}
	puts_serial(", holds generation ");
	putu_serial((u32)held);
	if (held == want)
		puts_serial(" but differs after its first word: corrupted)\n");
	else if (held < want)
		puts_serial(": the page is stale)\n");
	else
		puts_serial(": the generation table is stale)\n");
}

/* check mode: verifies the next <n> pages; a finished sweep prints its result. */
static void check_some(u32 n)
{
	static u32 pos, pass, bad;
	u32 first = DATA_START / PAGE_SIZE, last = data_end / PAGE_SIZE;

	if (pos < first)
		pos = first;
	for (; n; n--) {
		if (!page_ok(pos)) {
			if (bad++ < 16)
				check_report(pos);
		}
		if (++pos < last)
			continue;
		pos = first;
		puts_serial("migrelay-guest: check pass ");
		putu_serial(++pass);
		puts_serial(bad ? " FAILED, pages differ: " : " ok\n");
		if (bad) {
			putu_serial(bad);
			puts_serial("\n");
		}
		bad = 0;
		if (check_fault && pass == 1) {
			/* a corrupted page, and a stale one (the table moves on, the page does not) */
			((volatile u8 *)(data_end - PAGE_SIZE))[100] ^= 0x5a;
			for (pos = first; page_class(pos) != PC_NOISE; pos++)
				;
			gen_of[pos - first] = ++generation;
			pos = first;
		}
	}
}

static void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void isr_dispatch(u32 vec);
void isr_dispatch(u32 vec)
{
	if (vec < 32) {
		puts_serial("migrelay-guest: exception ");
		putu_serial(vec);
		puts_serial("\n");
		halt_forever();
	}
	if (vec == 32)
		ticks++;
	if (vec >= 40)
		outb(0xa0, 0x20);
	outb(0x20, 0x20);
}

static void idt_init(void)
{
	struct idt_desc d;
	u32 i, off;

	for (i = 0; i < 48; i++) {
		off = (u32)isr_stubs + 16 * i;
		idt[i].off_lo = (u16)off;
		idt[i].off_hi = (u16)(off >> 16);
		idt[i].sel = 0x08;
		idt[i].zero = 0;
		idt[i].attr = 0x8e; /* present, ring 0, 32-bit interrupt gate */
	}
	d.limit = sizeof(idt) - 1;
	d.base = (u32)idt;
	__asm__ volatile("lidt %0" : : "m"(d));
}

/* PIC remapped to vectors 32..47 with only IRQ 0 unmasked; PIT channel 0 at TICK_HZ. */
static void timer_init(void)
{
	u32 div = PIT_HZ / TICK_HZ;

	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, 32);
	outb(0xa1, 40);
	outb(0x21, 4);
	outb(0xa1, 2);
	outb(0x21, 1);
	outb(0xa1, 1);
	outb(0x21, 0xfe);
	outb(0xa1, 0xff);
	outb(0x43, 0x34);
	outb(0x40, (u8)div);
	outb(0x40, (u8)(div >> 8));
}

/* Finds <key> as a whole word in the command line; returns what follows it or 0. */
static const char *cmdline_word(const char *cl, const char *key)
{
	const char *p, *k;

	for (p = cl; p && *p; p++) {
		if (p != cl && p[-1] != ' ')
			continue;
		for (k = key; *k && *p == *k; k++, p++)
			;
		if (!*k && (*p == 0 || *p == ' ' || *p == '='))
			return p;
		if (!*p)
			break;
	}
	return 0;
}

/* The end of the usable region that contains 1 MiB, capped below 4 GiB. */
static u32 ram_end(const struct mb_info *mbi)
{
	const u8 *p, *end;
	const struct mb_mmap *e;
	u64 top;

	if (mbi->flags & MB_INFO_MMAP) {
		p = (const u8 *)mbi->mmap_addr;
		end = p + mbi->mmap_length;
		for (; p + sizeof(*e) <= end; p += e->size + 4) {
			e = (const struct mb_mmap *)p;
			if (e->type != 1 || e->addr > 0x100000u || e->addr + e->len <= 0x100000u)
				continue;
			top = e->addr + e->len;
			if (top > 0xfff00000ull)
				top = 0xfff00000ull;
			return (u32)top & ~(PAGE_SIZE - 1);
		}
	}
	if (mbi->flags & MB_INFO_MEM)
		return (0x100000u + mbi->mem_upper * 1024u) & ~(PAGE_SIZE - 1);
	return 0;
}

void guest_main(u32 magic, const struct mb_info *mbi);
void guest_main(u32 magic, const struct mb_info *mbi)
{
	const char *cl = "", *v;
	u32 pfn, rate = 4, acc = 0, seen;
	int idle;

	serial_init();
	if (magic != MB_LOADER_MAGIC) {
		puts_serial("migrelay-guest: not started by a multiboot loader\n");
		halt_forever();
	}
	if (mbi->flags & MB_INFO_CMDLINE)
		cl = (const char *)mbi->cmdline;
	idle = cmdline_word(cl, "idle") != 0;
	check_fault = cmdline_word(cl, "checkfault") != 0;
	checking = check_fault || cmdline_word(cl, "check") != 0;
	tcg_tlb = !under_kvm();
	v = cmdline_word(cl, "rate");
	if (v && *v == '=') {
		for (rate = 0, v++; *v >= '0' && *v <= '9' && rate < 1024; v++)
			rate = rate * 10 + (u32)(*v - '0');
	}
	data_end = ram_end(mbi);
	if (data_end <= DATA_START + PAGE_SIZE) {
		puts_serial("migrelay-guest: no usable RAM above 2 MiB\n");
		halt_forever();
	}
	for (pfn = DATA_START / PAGE_SIZE; pfn < data_end / PAGE_SIZE; pfn++)
		fill_page(pfn);
	puts_serial("migrelay-guest: filled ");
	putu_serial((data_end - DATA_START) >> 20);
	puts_serial(" MiB, end 0x");
	for (pfn = 0; pfn < 8; pfn++)
		putc_serial("0123456789abcdef"[(data_end >> (28 - 4 * pfn)) & 15]);
	puts_serial(idle ? ", idle\n" : ", dirty ");
	if (idle)
		halt_forever();
	putu_serial(rate);
	puts_serial(checking ? " MiB/s, check\n" : " MiB/s\n");

	idt_init();
	timer_init();
	seen = ticks;
	for (;;) {
		__asm__ volatile("sti; hlt; cli");
		while (seen != ticks) {
			seen++;
			/* pages per tick = rate * 256 / TICK_HZ, carried over in acc */
			for (acc += rate * 256; acc >= TICK_HZ; acc -= TICK_HZ)
				dirty_one();
			if (checking)
				check_some(64 * 256 / TICK_HZ); /* 64 MiB/s of verification */
		}
		tlb_flush_all(); /* before the halt: the next tick's writes are tracked afresh */
	}
}
