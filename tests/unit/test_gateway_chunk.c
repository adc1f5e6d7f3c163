/* SPDX-License-Identifier: MIT */
/*
 * The sending side's chunks (gateway/session_int.h): chunk_alloc gives
 * a buffer of whole pages of the chunk's own block, and chunk_put of a chunk that was both lent to
 * the kernel and re-sent takes its pages away first, so that a copy the
 * kernel still holds (here a pipe, as vmsplice leaves it; in a session a
 * local peer's receive queue) keeps the bytes it was given when malloc
 * hands the memory out again.
 */
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/session_int.h"

enum { PAYLOAD = 256 << 10, SPAN = WIRE_HDR_LEN + PAYLOAD };

static void test_alloc_whole_pages(void **state)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct gw_chunk *c = chunk_alloc(PAYLOAD);
	(void)state;

	assert_non_null(c);
	assert_int_equal((uintptr_t)c->mem % page, 0);
	assert_true(c->mem >= (uint8_t *)(c + 1));
	assert_int_equal(c->cap % page, 0);
	assert_true(c->cap >= SPAN);
	assert_true(c->cap < SPAN + page);
	assert_true(malloc_usable_size(c) >= (size_t)(c->mem + c->cap - (uint8_t *)c) + 1);
	assert_int_equal(atomic_load(&c->flags), 0);
	atomic_init(&c->refs, 1);
	chunk_put(c);
	assert_null(chunk_alloc((size_t)UINT32_MAX));
}

/*
 * Lends a chunk's SPAN bytes, filled with 0xa5, to a pipe; drops the chunk
 * with <flags>; allocates again and fills with 0x5a. Returns the byte the
 * pipe then gives back at every position (or -1 if they differ) and tells
 * in <*reused> whether malloc returned the same memory.
 */
static int lend_put_reuse(unsigned flags, bool *reused)
{
	struct gw_chunk *c = chunk_alloc(PAYLOAD), *d;
	static unsigned char back[SPAN];
	int p[2], first;
	size_t got = 0;
	uintptr_t old;

	assert_non_null(c);
	assert_int_equal(pipe(p), 0);
	assert_true(fcntl(p[1], F_SETPIPE_SZ, 1 << 20) >= SPAN);
	memset(c->mem, 0xa5, SPAN);
	atomic_init(&c->refs, 1);
	atomic_store(&c->flags, flags);
	assert_int_equal(vmsplice(p[1], &(struct iovec){c->mem, SPAN}, 1, 0), SPAN);
	old = (uintptr_t)c->mem;
	chunk_put(c);
	d = chunk_alloc(PAYLOAD);
	assert_non_null(d);
	*reused = (uintptr_t)d->mem == old;
	memset(d->mem, 0x5a, SPAN);
	while (got < SPAN) {
		ssize_t n = read(p[0], back + got, SPAN - got);

		assert_true(n > 0);
		got += (size_t)n;
	}
	close(p[0]);
	close(p[1]);
	atomic_init(&d->refs, 1);
	chunk_put(d);
	first = back[0];
	for (size_t i = 1; i < SPAN; i++)
		if (back[i] != first)
			return -1;
	return first;
}

static void test_lent_and_resent_keeps_the_kernels_copy(void **state)
{
	bool reused = false;
	(void)state;

	for (int i = 0; i < 4; i++)
		assert_int_equal(lend_put_reuse(CHUNK_QUEUED | CHUNK_RESENT | CHUNK_LENT, &reused), 0xa5);
	if (!reused)
		print_message("note: malloc did not hand the same memory out again (a sanitizer's quarantine?); "
			      "the pipe kept its bytes trivially\n");
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZER_ALLOCATOR 1
#endif
#endif

/*
 * The reason for the above: without it, a lent page that glibc's malloc
 * hands out again changes under the kernel's copy. A sanitizer's allocator
 * unmaps or quarantines large blocks, so it shows nothing there.
 */
static void test_lent_once_is_freed_as_is(void **state)
{
	bool reused = false;
	int b = lend_put_reuse(CHUNK_QUEUED | CHUNK_LENT, &reused);
	(void)state;

#ifdef SANITIZER_ALLOCATOR
	print_message("note: a sanitizer's allocator; the kernel's copy read back 0x%02x\n", (unsigned)b & 0xff);
#else
	assert_true(reused);
	assert_int_equal(b, 0x5a);
#endif
}

int main(void)
{
	/*
	 * A session's chunks come from the heap once glibc's dynamic mmap
	 * threshold has risen past their size, where free() keeps the pages
	 * and the next malloc reuses them (the heap is not trimmed either);
	 * here from the start.
	 */
	mallopt(M_MMAP_THRESHOLD, 16 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_alloc_whole_pages),
	    cmocka_unit_test(test_lent_and_resent_keeps_the_kernels_copy),
	    cmocka_unit_test(test_lent_once_is_freed_as_is),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
