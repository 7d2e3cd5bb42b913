/* SPDX-License-Identifier: MIT */
/*
 * libphxd in a libevent program: phxd_fd() is watched by the event base,
 * phxd_dispatch() runs when it is readable (or writable while
 * phxd_want_write()). Prints the reply of one ping, then N messages.
 *   cc phxd-libevent.c $(pkg-config --cflags --libs libphxd libevent) -o phxd-libevent
 *   ./phxd-libevent rooms:lobby 3
 */
#include <phxd.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

struct app {
	struct phxd_client *c;
	struct event_base *base;
	struct event *io;
	int messages, wanted, failed;
};

static void
on_reply(void *arg, struct phxd_client *c, int status, const char *result, size_t len)
{
	struct app *a = arg;

	if (status == PHXD_OK)
		printf("reply: %.*s\n", (int)len, result);
	else
		a->failed = fprintf(stderr, "ping failed: %s\n", phxd_error_code(c));
}

static void
on_message(void *arg, uint64_t sub, const char *json, size_t len)
{
	struct app *a = arg;

	(void)sub;
	printf("message: %.*s\n", (int)len, json);
	if (++a->messages == a->wanted)
		event_base_loopbreak(a->base);
}

static void on_io(evutil_socket_t fd, short what, void *arg);

/* Re-arms the watch: writable too while libphxd has output queued. */
static void
watch(struct app *a)
{
	event_del(a->io);
	event_assign(a->io, a->base, phxd_fd(a->c),
		     EV_READ | (phxd_want_write(a->c) ? EV_WRITE : 0) | EV_PERSIST, on_io, a);
	event_add(a->io, NULL);
}

static void
on_io(evutil_socket_t fd, short what, void *arg)
{
	struct app *a = arg;

	(void)fd;
	(void)what;
	if (phxd_dispatch(a->c) != PHXD_OK || a->failed) {
		fprintf(stderr, "%s\n", phxd_error_message(a->c));
		event_base_loopbreak(a->base);
		return;
	}
	watch(a);
}

int
main(int argc, char **argv)
{
	const char *topic = argc > 1 ? argv[1] : "rooms:lobby";
	struct app a = { .wanted = argc > 2 ? atoi(argv[2]) : 3 };
	char ping[512];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (phxd_connect(NULL, &a.c) != PHXD_OK) {
		fprintf(stderr, "phxd is not running\n");
		return 1;
	}
	/* a topic name is JSON-safe for this example; real code builds it with a JSON library */
	snprintf(ping, sizeof(ping), "{\"op\":\"push\",\"topic\":\"%s\",\"event\":\"ping\","
		 "\"await\":true}", topic);
	a.base = event_base_new();
	a.io = event_new(a.base, phxd_fd(a.c), EV_READ | EV_PERSIST, on_io, &a);
	if (phxd_subscribe(a.c, NULL, topic, NULL, on_message, &a, NULL) != PHXD_OK ||
	    phxd_send(a.c, ping, on_reply, &a) != PHXD_OK) {
		fprintf(stderr, "%s: %s\n", phxd_error_code(a.c), phxd_error_message(a.c));
		return 1;
	}
	watch(&a);
	event_base_dispatch(a.base);
	event_free(a.io);
	event_base_free(a.base);
	phxd_disconnect(a.c);
	return a.messages == a.wanted && !a.failed ? 0 : 1;
}
