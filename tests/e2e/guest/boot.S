/* SPDX-License-Identifier: MIT */
/*
 * Entry of the e2e test guest: a multiboot (v1) header, a flat GDT of our
 * own (the loader's GDTR may be gone), the stack, and one interrupt stub
 * per vector 0..47 that hands the vector number to isr_dispatch().
 */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* bit 0: page-aligned modules, bit 1: memory information */

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .text
	.globl _start
_start:
	cli
	movl $stack_top, %esp
	lgdt gdt_desc
	ljmp $0x08, $1f
1:	movw $0x10, %cx
	movw %cx, %ds
	movw %cx, %es
	movw %cx, %fs
	movw %cx, %gs
	movw %cx, %ss
	pushl %ebx /* multiboot information */
	pushl %eax /* loader magic */
	call guest_main
2:	cli
	hlt
	jmp 2b

	/* 48 stubs of 16 bytes each: isr_stubs + 16 * vector */
	.globl isr_stubs
	.align 16
isr_stubs:
	.set vec, 0
	.rept 48
	.align 16
	pushl $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

isr_common:
	pushal
	cld
	pushl 32(%esp) /* the vector pushed by the stub */
	call isr_dispatch
	addl $4, %esp
	popal
	addl $4, %esp
	iret

	.section .rodata
	.align 8
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff /* 0x08: code, flat 4 GiB */
	.quad 0x00cf92000000ffff /* 0x10: data, flat 4 GiB */
gdt_desc:
	.word gdt_desc - gdt - 1
	.long gdt

	.section .bss
	.align 16
	.space 65536
stack_top:

	.section .note.GNU-stack, "", @progbits
