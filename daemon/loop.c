/* SPDX-License-Identifier: MIT */
#include "daemon/loop.h"
#include "daemon/utimer.h"
#include "daemon/xmalloc.h"

#include <sched.h>
#include <stdlib.h>

/* The first limit polling grows to: long enough for a server or a
 * client on the same host to answer, short enough that a miss is cheap. */
#define GROW_START_US 10

struct loop {
	struct event_base *base;
	uint64_t (*activity)(void *arg);
	void *arg;
	uint64_t max_us;	/* busy_poll_us; 0: sleep at once */
	uint64_t limit_us;	/* this pass's polling limit, up to max_us */
	uint64_t catches;
	uint64_t poll_us;
	bool failed;
};

struct loop *
loop_new(struct event_base *base, uint64_t (*activity)(void *arg), void *arg)
{
	struct loop *lp = xcalloc(1, sizeof(*lp));

	lp->base = base;
	lp->activity = activity;
	lp->arg = arg;
	return lp;
}

void
loop_free(struct loop *lp)
{
	free(lp);
}

void
loop_set_busy_poll(struct loop *lp, unsigned max_us)
{
	lp->max_us = max_us;
	if (lp->limit_us > max_us)
		lp->limit_us = max_us;
}

uint64_t
loop_poll_catches(const struct loop *lp)
{
	return lp->catches;
}

uint64_t
loop_poll_us(const struct loop *lp)
{
	return lp->poll_us;
}

uint64_t
loop_next_limit(uint64_t limit_us, uint64_t idle_us, uint64_t max_us)
{
	uint64_t start = GROW_START_US < max_us ? GROW_START_US : max_us;

	if (limit_us > 0 && idle_us <= limit_us)
		return limit_us;	/* polling caught it */
	if (idle_us <= max_us) {
		/* Polling a little longer would have caught it. */
		uint64_t grown = limit_us * 2 < start ? start : limit_us * 2;
		return grown < max_us ? grown : max_us;
	}
	/* Events this far apart are not worth polling for. */
	return limit_us / 2 < start ? 0 : limit_us / 2;
}

static bool
stopped(const struct loop *lp)
{
	return lp->failed || event_base_got_break(lp->base) || event_base_got_exit(lp->base);
}

/* Polls from `last` (when the last event was handled) until limit_us
 * passes with nothing read; returns how long the fruitless end lasted. */
static uint64_t
poll_on(struct loop *lp, uint64_t last)
{
	uint64_t seen = lp->activity(lp->arg), start = last, now = last;

	while (now - last < lp->limit_us) {
		/* One pass each: NONBLOCK alone keeps passing while events keep
		 * coming, and would count a whole burst as one catch. */
		if (event_base_loop(lp->base, EVLOOP_NONBLOCK | EVLOOP_ONCE) < 0)
			lp->failed = true;
		if (stopped(lp))
			break;
		/* The peer phxd just woke is often placed on this CPU, the
		 * waker's, and would otherwise wait until the spin gives up:
		 * its answer then comes busy_poll_us late. With nothing else
		 * to run, a yield costs a syscall. */
		sched_yield();
		now = utimer_now_us();
		uint64_t seen_now = lp->activity(lp->arg);
		if (seen_now != seen) {
			seen = seen_now;
			lp->catches++;
			last = now;
		}
	}
	lp->poll_us += now - start;
	return now - last;
}

bool
loop_run(struct loop *lp)
{
	uint64_t missed = 0;	/* the polling that preceded this sleep */

	for (;;) {
		uint64_t slept = lp->max_us ? utimer_now_us() : 0;
		int r = event_base_loop(lp->base, EVLOOP_ONCE);
		if (r < 0)
			return false;
		if (r > 0 || stopped(lp))
			return !lp->failed;
		if (lp->max_us == 0)
			continue;
		uint64_t now = utimer_now_us();
		lp->limit_us = loop_next_limit(lp->limit_us, missed + (now - slept), lp->max_us);
		missed = lp->limit_us ? poll_on(lp, now) : 0;
		if (stopped(lp))
			return !lp->failed;
	}
}
