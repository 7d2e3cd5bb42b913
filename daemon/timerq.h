/* SPDX-License-Identifier: MIT */
/*
 * timerq: every timer of the Phoenix logic in one binary heap, driven by a
 * clock the host owns. The daemon arms one libevent timer for the earliest
 * deadline; unit tests move a fake clock by hand. Arm and cancel are
 * O(log n), so per-push timeouts cost nothing per message.
 */
#ifndef PHXD_TIMERQ_H
#define PHXD_TIMERQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tq_timer;
typedef void (*tq_fn)(struct tq_timer *t, void *arg);

struct tq_timer {
	uint64_t when;		/* ms on the queue's clock */
	size_t slot;		/* index in the heap + 1; 0 when not armed */
	tq_fn fn;
	void *arg;
};

struct timerq {
	uint64_t now;		/* ms; set by the host before running */
	struct tq_timer **heap;
	size_t len, cap;
};

void tq_init(struct timerq *q);
void tq_free(struct timerq *q);	/* does not touch the timers */
void tq_timer_init(struct tq_timer *t, tq_fn fn, void *arg);
/* (Re)arms t to fire `ms` after q->now. */
void tq_arm(struct timerq *q, struct tq_timer *t, uint64_t ms);
void tq_cancel(struct timerq *q, struct tq_timer *t);
static inline bool tq_armed(const struct tq_timer *t) { return t->slot != 0; }
/* Fires every timer due at `now` (which becomes q->now), earliest first.
 * A callback may arm or cancel any timer. Returns how many fired. */
size_t tq_run(struct timerq *q, uint64_t now);
/* Earliest deadline, or UINT64_MAX when nothing is armed. */
uint64_t tq_next(const struct timerq *q);

#endif
