/* SPDX-License-Identifier: MIT */
/*
 * libphxd in a program with its own poll() loop, never blocking in libphxd
 * once connected: requests go out with phxd_send() and come back to a
 * callback, a subscription opens with phxd_send_stream(), and stream lines
 * reach their callback from phxd_dispatch(). Prints the reply of one ping, then N messages of a topic.
 *   cc phxd-poll.c $(pkg-config --cflags --libs libphxd) -o phxd-poll
 *   ./phxd-poll rooms:lobby 3
 */
#include <phxd.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

static int messages, wanted = 3, failed;

static void
on_reply(void *arg, struct phxd_client *c, int status, const char *result, size_t len)
{
	(void)arg;
	if (status == PHXD_OK)
		printf("reply: %.*s\n", (int)len, result);
	else
		failed = fprintf(stderr, "ping failed: %s\n", phxd_error_code(c));
}

static void
on_subscribed(void *arg, struct phxd_client *c, int status, const char *result, size_t len)
{
	(void)arg;
	(void)result;
	(void)len;
	if (status != PHXD_OK)
		failed = fprintf(stderr, "subscribe failed: %s\n", phxd_error_code(c));
}

static void
on_message(void *arg, uint64_t sub, const char *json, size_t len)
{
	(void)arg;
	(void)sub;
	printf("message: %.*s\n", (int)len, json);
	messages++;
}

int
main(int argc, char **argv)
{
	const char *topic = argc > 1 ? argv[1] : "rooms:lobby";
	struct phxd_client *c;
	char ping[512], sub[512];

	if (argc > 2)
		wanted = atoi(argv[2]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* a topic name is JSON-safe for this example; real code builds it with a JSON library */
	snprintf(ping, sizeof(ping), "{\"op\":\"push\",\"topic\":\"%s\",\"event\":\"ping\","
		 "\"await\":true}", topic);
	snprintf(sub, sizeof(sub), "{\"op\":\"subscribe\",\"topic\":\"%s\"}", topic);
	if (phxd_connect(NULL, &c) != PHXD_OK) {
		fprintf(stderr, "phxd is not running\n");
		return 1;
	}
	if (phxd_send_stream(c, sub, on_message, NULL, on_subscribed, NULL) != PHXD_OK ||
	    phxd_send(c, ping, on_reply, NULL) != PHXD_OK) {
		fprintf(stderr, "%s: %s\n", phxd_error_code(c), phxd_error_message(c));
		phxd_disconnect(c);
		return 1;
	}
	while (messages < wanted && !failed) {
		struct pollfd pfd = { phxd_fd(c), POLLIN | (phxd_want_write(c) ? POLLOUT : 0), 0 };
		if (poll(&pfd, 1, 10000) <= 0) {
			fprintf(stderr, "nothing within 10 s\n");
			break;
		}
		if (phxd_dispatch(c) != PHXD_OK) {
			fprintf(stderr, "%s\n", phxd_error_message(c));
			break;
		}
	}
	phxd_disconnect(c);
	return messages == wanted && !failed ? 0 : 1;
}
