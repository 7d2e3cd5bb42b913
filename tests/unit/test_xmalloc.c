/* SPDX-License-Identifier: MIT */
/* daemon/xmalloc.c: a zeroed block is zero whichever way it is taken,
 * and a count that overflows is refused, not wrapped. */
#include "daemon/xmalloc.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A block just freed after being filled: malloc hands it straight back,
 * so a clear that was skipped shows. */
static void
assert_zeroed(size_t n, size_t size)
{
	unsigned char *dirty = xmalloc(n * size);
	memset(dirty, 0xa5, n * size);
	free(dirty);

	unsigned char *p = xcalloc(n, size);
	for (size_t i = 0; i < n * size; i++)
		ck_assert_msg(p[i] == 0, "byte %zu of %zu x %zu is %#x", i, n, size, p[i]);
	free(p);
}

START_TEST(a_zeroed_block_is_zero_at_every_size)
{
	assert_zeroed(1, 1);
	assert_zeroed(1, 48);
	assert_zeroed(3, 24);
	assert_zeroed(1, 1024);	/* the largest taken through malloc */
	assert_zeroed(1, 1025);
	assert_zeroed(64, 1024);
	assert_zeroed(0, 16);	/* none: still a block to free */
	assert_zeroed(16, 0);
}
END_TEST

START_TEST(a_count_that_overflows_is_refused)
{
	xcalloc(SIZE_MAX / 8 + 2, 8);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("xmalloc");
	TCase *tc = tcase_create("xmalloc");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, a_zeroed_block_is_zero_at_every_size);
	tcase_add_exit_test(tc, a_count_that_overflows_is_refused, 1);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
