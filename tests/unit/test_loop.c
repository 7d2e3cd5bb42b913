/* SPDX-License-Identifier: MIT */
/* daemon/loop.c: how the busy-polling limit adapts, and that a loop that
 * polls still runs its events and stops when broken out of; and
 * daemon/wakeup.c, how the other threads reach the loop. */
#include "daemon/loop.h"
#include "daemon/wakeup.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

START_TEST(limit_grows_on_near_misses_up_to_the_maximum)
{
	uint64_t limit = 0;

	limit = loop_next_limit(limit, 30, 100);
	ck_assert_uint_eq(limit, 10);
	limit = loop_next_limit(limit, 30, 100);
	ck_assert_uint_eq(limit, 20);
	limit = loop_next_limit(limit, 30, 100);
	ck_assert_uint_eq(limit, 40);
	/* caught within the limit: it stays */
	ck_assert_uint_eq(loop_next_limit(limit, 35, 100), 40);
	limit = loop_next_limit(80, 90, 100);
	ck_assert_uint_eq(limit, 100);
	ck_assert_uint_eq(loop_next_limit(5, 4, 5), 5);
	ck_assert_uint_eq(loop_next_limit(0, 3, 5), 5);
}
END_TEST

START_TEST(limit_shrinks_to_nothing_when_events_are_far_apart)
{
	uint64_t limit = 100;
	int steps = 0;

	while (limit > 0 && steps < 64) {
		uint64_t next = loop_next_limit(limit, 5000, 100);
		ck_assert_uint_lt(next, limit);
		limit = next;
		steps++;
	}
	ck_assert_uint_eq(limit, 0);
	ck_assert_int_le(steps, 4);
	/* and a quiet daemon stays asleep */
	ck_assert_uint_eq(loop_next_limit(0, 1000000, 100), 0);
	ck_assert_uint_eq(loop_next_limit(0, 10, 0), 0);
}
END_TEST

struct pingpong {
	struct event_base *base;
	uint64_t reads;
	int left;
};

static uint64_t
reads_of(void *arg)
{
	return ((struct pingpong *)arg)->reads;
}

/* The other end answers each byte at once, as a server or a client in a
 * closed loop does: the case busy-polling is for. It runs on the same
 * base, so every answer is ready by the next pass and the count of
 * catches does not hang on how the host schedules a second thread. */
static void
answer(evutil_socket_t fd, short what, void *arg)
{
	char b;

	(void)what;
	(void)arg;
	if (read(fd, &b, 1) == 1)
		ck_assert_int_eq(write(fd, &b, 1), 1);
}

static void
bounce(evutil_socket_t fd, short what, void *arg)
{
	struct pingpong *pp = arg;
	char b;

	(void)what;
	if (read(fd, &b, 1) != 1)
		return;
	pp->reads++;
	if (--pp->left == 0)
		event_base_loopbreak(pp->base);
	else
		ck_assert_int_eq(write(fd, "x", 1), 1);
}

static void
run_pingpong(unsigned busy_poll_us, uint64_t *catches)
{
	struct pingpong pp = { .left = 2000 };
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pp.base = event_base_new();
	struct event *ev = event_new(pp.base, sv[0], EV_READ | EV_PERSIST, bounce, &pp);
	struct event *peer = event_new(pp.base, sv[1], EV_READ | EV_PERSIST, answer, NULL);
	event_add(ev, NULL);
	event_add(peer, NULL);
	struct loop *lp = loop_new(pp.base, reads_of, &pp);
	loop_set_busy_poll(lp, busy_poll_us);
	ck_assert_int_eq(write(sv[0], "x", 1), 1);
	ck_assert(loop_run(lp));
	ck_assert_int_eq(pp.left, 0);
	*catches = loop_poll_catches(lp);
	if (busy_poll_us == 0)
		ck_assert_uint_eq(loop_poll_us(lp), 0);
	else
		ck_assert_uint_gt(loop_poll_us(lp), 0);
	loop_free(lp);
	event_free(peer);
	event_free(ev);
	event_base_free(pp.base);
	close(sv[0]);
	close(sv[1]);
}

START_TEST(a_polling_loop_runs_its_events_and_catches_them)
{
	uint64_t catches;

	run_pingpong(0, &catches);
	ck_assert_uint_eq(catches, 0);
	run_pingpong(1000, &catches);
	/* Past the first few round trips, which grow the limit, every answer
	 * lands while the loop polls; a host that stalls the loop for a
	 * millisecond now and then costs a catch each time. */
	ck_assert_uint_gt(catches, 1000);
}
END_TEST

static void
count_run(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(*(int *)arg)++;
}

static void *
signal_thrice(void *arg)
{
	for (int i = 0; i < 3; i++)
		wakeup_signal(arg);
	return NULL;
}

START_TEST(a_wakeup_from_another_thread_runs_its_callback_once)
{
	struct event_base *base = event_base_new();
	int runs = 0;
	struct wakeup *w = wakeup_new(base, count_run, &runs);
	pthread_t t;

	ck_assert_ptr_nonnull(w);
	/* nothing signalled: a pass of the loop does not run it */
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 0);
	ck_assert_int_eq(runs, 0);
	/* twice: a wake-up that has run can be signalled again */
	for (int round = 1; round <= 2; round++) {
		/* three signals before the loop looked: one run, then none */
		ck_assert_int_eq(pthread_create(&t, NULL, signal_thrice, w), 0);
		ck_assert_int_eq(pthread_join(t, NULL), 0);
		ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE), 0);
		ck_assert_int_eq(runs, round);
		ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 0);
		ck_assert_int_eq(runs, round);
	}
	wakeup_free(w);
	event_base_free(base);
}
END_TEST

START_TEST(no_wakeup_without_a_descriptor)
{
	struct event_base *base = event_base_new();
	int runs = 0, lowest = dup(0);
	struct rlimit rl;

	/* every descriptor a new one could take is in use */
	ck_assert_int_ge(lowest, 0);
	close(lowest);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = (rlim_t)lowest;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	errno = 0;
	ck_assert_ptr_null(wakeup_new(base, count_run, &runs));
	ck_assert_int_eq(errno, EMFILE);
	event_base_free(base);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("loop");
	TCase *tc = tcase_create("loop");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, limit_grows_on_near_misses_up_to_the_maximum);
	tcase_add_test(tc, limit_shrinks_to_nothing_when_events_are_far_apart);
	tcase_add_test(tc, a_polling_loop_runs_its_events_and_catches_them);
	tcase_add_test(tc, a_wakeup_from_another_thread_runs_its_callback_once);
	tcase_add_test(tc, no_wakeup_without_a_descriptor);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
