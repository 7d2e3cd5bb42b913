/* SPDX-License-Identifier: MIT */
/*
 * wakeup: a callback on the loop that another thread can ask for, through
 * an eventfd the loop watches. libevent's own cross-thread event_active()
 * would need evthread_use_pthreads(), which locks a mutex around every
 * event operation of the loop, on every message, for the few results the
 * helper threads hand back.
 */
#ifndef PHXD_WAKEUP_H
#define PHXD_WAKEUP_H

#include <event2/event.h>

struct wakeup;

/* NULL with errno set when no eventfd can be had (fd exhaustion). */
struct wakeup *wakeup_new(struct event_base *base, event_callback_fn cb, void *arg);
/* From any thread: cb runs once on the loop, however many signals came
 * before it ran. */
void wakeup_signal(struct wakeup *w);
/* On the loop, once no thread can signal it any more. */
void wakeup_free(struct wakeup *w);

#endif
