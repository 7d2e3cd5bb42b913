/* SPDX-License-Identifier: MIT */
/*
 * libphxd on any bytes "phxd" can send: the input is what the daemon
 * writes on the socket after the hello. A subscription, a phxd_send
 * callback and a blocking call are waiting, so stream lines, answers and
 * errors all have somewhere to go. Beyond not crashing: every callback
 * runs at most once and every pending one runs by the end, a stream line
 * reaches its callback as one JSON object, and a result is JSON.
 */
#include "tests/fuzz/fuzz_check.h"
#include "client-lib/libphxd.c"

#include <stdint.h>
#include <sys/socket.h>


static int answers;

static void
on_line(void *arg, uint64_t sub, const char *json, size_t len)
{
	struct json_cursor c;

	(void)arg;
	CHECK(sub != 0);
	CHECK(strlen(json) == len);
	json_cursor_init(&c, json, len);
	CHECK(json_peek(&c) == JSON_KIND_OBJECT);
}

static void
on_answer(void *arg, struct phxd_client *c, int status, const char *result, size_t len)
{
	(void)arg;
	(void)c;
	answers++;
	if (status == PHXD_OK && result != NULL) {
		struct json_cursor cur;
		json_cursor_init(&cur, result, len);
		CHECK(json_skip_value(&cur));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	struct phxd_client *c;
	struct sub *s;

	if (size > 1 << 16 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return 0;
	/* a client past its hello, as phxd_connect_timeout leaves it */
	c = calloc(1, sizeof(*c));
	c->fd = sv[0];
	c->timeout_ms = 0;
	c->next_id = 2;
	c->pending_tail = &c->pending;
	STAILQ_INIT(&c->ready);
	s = calloc(1, sizeof(*s));
	s->id = 7;
	s->fn = on_line;
	c->subs = s;
	answers = 0;
	CHECK(phxd_send(c, "{\"op\":\"status\"}", on_answer, NULL) == PHXD_OK);
	CHECK(phxd_send_stream(c, "{\"op\":\"events\"}", on_line, NULL, on_answer, NULL) == PHXD_OK);
	(void)!write(sv[1], data, size);
	shutdown(sv[1], SHUT_WR);
	for (int i = 0; i < 64 && !c->dead; i++)
		if (phxd_dispatch(c) == PHXD_EPROTOCOL)
			break;
	/* a blocking call on what is left: answered, timed out or lost */
	char *out = NULL;
	int rc = phxd_call(c, "{\"op\":\"status\"}", &out);
	CHECK(rc != PHXD_OK || out == NULL || strlen(out) > 0);
	free(out);
	close(sv[1]);
	phxd_disconnect(c);
	CHECK(answers == 2);
	return 0;
}
