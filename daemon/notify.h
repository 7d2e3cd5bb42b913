/* SPDX-License-Identifier: MIT */
/*
 * notify: the systemd notification protocol ($NOTIFY_SOCKET), never
 * blocking. libsystemd's sd_notify() blocks while the receiver's queue is
 * full (a stuck or slow manager, a supervisor that does not read): phxd
 * would then stop serving. Here a message the socket does not take now is
 * kept, the newest per kind, and sent again from the loop; WATCHDOG=1 is
 * not kept (the next ping is as good).
 */
#ifndef PHXD_NOTIFY_H
#define PHXD_NOTIFY_H

#include <event2/event.h>
#include <stdbool.h>

struct notifier;

/* NULL when $NOTIFY_SOCKET is unset (every call is then a no-op). */
struct notifier *notify_open(struct event_base *base);
void notify_free(struct notifier *n);
/* "READY=1", "RELOADING=1", "STOPPING=1", "STATUS=...", "WATCHDOG=1". */
void notify_send(struct notifier *n, const char *msg);
/* At exit: tries once more what is kept, without waiting. */
void notify_flush(struct notifier *n);

#endif
