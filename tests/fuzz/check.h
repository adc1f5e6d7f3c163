/* SPDX-License-Identifier: MIT */
/* CHECK(x): the property a fuzz target asserts; a failure aborts, which the fuzzer and the replay report. */
#ifndef MR_TESTS_FUZZ_CHECK_H
#define MR_TESTS_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(x)                                                                                                       \
	do {                                                                                                           \
		if (!(x)) {                                                                                            \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x);                          \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

#endif
