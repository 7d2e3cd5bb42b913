/* SPDX-License-Identifier: MIT */
/*
 * utimer: one-shot timers to the microsecond, each on a timerfd of its
 * own. The daemon's base keeps whole-millisecond timers (precise ones cost
 * a timerfd_settime every loop pass); the few waits shorter than that,
 * the fan-out write window and read moderation's pause, use these.
 */
#ifndef PHXD_UTIMER_H
#define PHXD_UTIMER_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

struct utimer {
	struct event *ev;	/* NULL: not made (or no timerfd could be had) */
	int fd;
	bool armed;
	void (*fn)(void *arg);
	void *arg;
};

/* CLOCK_MONOTONIC in microseconds. */
uint64_t utimer_now_us(void);

/* Makes t, to run fn(arg) at the given event priority when it expires;
 * false (t stays unmade, utimer_arm then fails) without a timerfd. */
bool utimer_init(struct utimer *t, struct event_base *base, int priority,
		 void (*fn)(void *arg), void *arg);
/* Arms t to expire in us (more than 0) microseconds, replacing what was
 * armed; false when t is not made or the kernel refused. */
bool utimer_arm(struct utimer *t, uint64_t us);
/* Disarms t: fn does not run until t is armed again. */
void utimer_stop(struct utimer *t);
/* Frees what utimer_init made; a t never made (zeroed) is fine. */
void utimer_free(struct utimer *t);

#endif
