/* SPDX-License-Identifier: MIT */
#include "wakeup.h"

#include "xmalloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct wakeup {
	int fd;
	struct event *ev;
	event_callback_fn cb;
	void *arg;
};

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	struct wakeup *w = arg;
	uint64_t n;

	/* One read resets the counter: the signals so far are this run's. */
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	w->cb(fd, what, w->arg);
}

struct wakeup *
wakeup_new(struct event_base *base, event_callback_fn cb, void *arg)
{
	struct wakeup *w = xcalloc(1, sizeof(*w));
	int e;

	w->cb = cb;
	w->arg = arg;
	w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->fd < 0)
		goto fail;
	w->ev = event_new(base, w->fd, EV_READ | EV_PERSIST, on_read, w);
	if (w->ev == NULL || event_add(w->ev, NULL) != 0) {
		errno = ENOMEM;
		goto fail;
	}
	return w;
fail:
	e = errno;
	if (w->ev != NULL)
		event_free(w->ev);
	if (w->fd >= 0)
		close(w->fd);
	free(w);
	errno = e;
	return NULL;
}

void
wakeup_signal(struct wakeup *w)
{
	uint64_t one = 1;

	/* EAGAIN: the counter is full, so a wake-up is pending anyway */
	while (write(w->fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

void
wakeup_free(struct wakeup *w)
{
	if (w == NULL)
		return;
	event_free(w->ev);
	close(w->fd);
	free(w);
}
