/* SPDX-License-Identifier: MIT */
/* What the fuzz targets share: the entry point and a check that aborts
 * (libFuzzer keeps the input that made it fail). */
#ifndef PHXD_FUZZ_CHECK_H
#define PHXD_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,  \
				__LINE__, #cond);                               \
			abort();                                                \
		}                                                               \
	} while (0)

#endif
