/* SPDX-License-Identifier: MIT */
#include "utimer.h"

#include "log.h"

#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

uint64_t
utimer_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void
expired_cb(evutil_socket_t fd, short what, void *arg)
{
	struct utimer *t = arg;
	uint64_t expirations;

	(void)what;
	if (read(fd, &expirations, sizeof(expirations)) < 0)
		return;	/* re-armed or stopped since it became readable (EAGAIN) */
	t->armed = false;
	t->fn(t->arg);
}

bool
utimer_init(struct utimer *t, struct event_base *base, int priority,
	    void (*fn)(void *arg), void *arg)
{
	*t = (struct utimer){ .fd = -1, .fn = fn, .arg = arg };
	t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (t->fd < 0)
		return false;
	t->ev = event_new(base, t->fd, EV_READ | EV_PERSIST, expired_cb, t);
	if (t->ev == NULL || event_priority_set(t->ev, priority) != 0 ||
	    event_add(t->ev, NULL) != 0)
		fatalx("cannot create a timer event");
	return true;
}

bool
utimer_arm(struct utimer *t, uint64_t us)
{
	struct itimerspec its = {
		.it_value = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 },
	};

	if (t->ev == NULL || timerfd_settime(t->fd, 0, &its, NULL) != 0)
		return false;
	t->armed = true;
	return true;
}

void
utimer_stop(struct utimer *t)
{
	if (t->ev == NULL)
		return;
	struct itimerspec off = { 0 };
	timerfd_settime(t->fd, 0, &off, NULL);
	t->armed = false;
}

void
utimer_free(struct utimer *t)
{
	if (t->ev == NULL)
		return;
	event_free(t->ev);
	close(t->fd);
	t->ev = NULL;
}
