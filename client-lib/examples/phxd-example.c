/* SPDX-License-Identifier: MIT */
/*
 * A libphxd example: push with a reply, then follow a topic.
 *   cc phxd-example.c $(pkg-config --cflags --libs libphxd) -o phxd-example
 *   ./phxd-example rooms:lobby
 */
#include <phxd.h>

#include <stdio.h>
#include <stdlib.h>

static void
on_message(void *arg, uint64_t sub, const char *json, size_t len)
{
	(void)arg;
	(void)sub;
	printf("message: %.*s\n", (int)len, json);
}

int
main(int argc, char **argv)
{
	const char *topic = argc > 1 ? argv[1] : "rooms:lobby";
	struct phxd_client *c;
	char *reply = NULL;
	int rc;

	/* One line per message, as it comes, even into a pipe. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (phxd_connect(NULL, &c) != PHXD_OK) {	/* $PHXD_SOCKET or /run/phxd/phxd.sock */
		fprintf(stderr, "phxd is not running\n");
		return 1;
	}
	rc = phxd_push(c, NULL, topic, "ping", "{}", 0, PHXD_PUSH_AWAIT, 5000, &reply);
	if (rc == PHXD_OK)
		printf("reply: %s\n", reply);
	else
		fprintf(stderr, "push failed: %s: %s\n", phxd_error_code(c), phxd_error_message(c));
	free(reply);

	if (phxd_subscribe(c, NULL, topic, NULL, on_message, NULL, NULL) == PHXD_OK) {
		/* In a program with its own loop: watch phxd_fd(c) and call
		 * phxd_dispatch(c) when it is readable. Here: just wait. */
		int waited = PHXD_OK;
		for (int i = 0; i < 3 && (waited = phxd_wait(c, 10000)) == PHXD_OK; i++)
			;
		if (waited == PHXD_ETIMEOUT)
			fprintf(stderr, "no message within 10 s\n");
	}
	phxd_disconnect(c);
	return rc == PHXD_OK ? 0 : 1;
}
