/* SPDX-License-Identifier: MIT */
/*
 * loop: runs the daemon's event base, and optionally busy-polls it.
 *
 * A request that crosses phxd wakes it twice (the client's line, then the
 * server's reply), and on a virtual machine whose idle CPUs halt, each
 * wake-up costs tens of microseconds of latency. With busy_poll_us set,
 * after handling what woke it the loop keeps polling (epoll with no wait)
 * for a while before it sleeps again, as the kernel's halt-polling does
 * for a whole CPU. The while adapts as halt-polling's does: it grows
 * when the next event came a little after polling gave up, and shrinks
 * when events come further apart than busy_poll_us, so a quiet daemon,
 * or a stream of events further apart than that, does not spin; events
 * that keep coming closer together keep it polling.
 */
#ifndef PHXD_LOOP_H
#define PHXD_LOOP_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

struct loop;

/* activity(arg) is any count that grows whenever a client or a server
 * was read: the loop polls on while it grows. */
struct loop *loop_new(struct event_base *base, uint64_t (*activity)(void *arg), void *arg);
void loop_free(struct loop *lp);

/* At most max_us (0: never) of polling after the last event; takes effect
 * from the next pass. */
void loop_set_busy_poll(struct loop *lp, unsigned max_us);

/* Runs the base until event_base_loopbreak(); false on a libevent error. */
bool loop_run(struct loop *lp);

/* Events that polling caught (each a wake-up saved), and the time spent
 * polling, catching included, in microseconds. */
uint64_t loop_poll_catches(const struct loop *lp);
uint64_t loop_poll_us(const struct loop *lp);

/* The next polling limit after an idle while of idle_us (polling
 * included) under the limit limit_us, both at most max_us. */
uint64_t loop_next_limit(uint64_t limit_us, uint64_t idle_us, uint64_t max_us);

#endif
