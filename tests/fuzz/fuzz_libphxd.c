/* SPDX-License-Identifier: MIT */
/*
 * libphxd on any bytes "phxd" can send: the input is what the daemon
 * writes on the socket after the hello. A subscription, a phxd_send
 * callback and a blocking call are waiting, so stream lines, answers and
 * errors all have somewhere to go; the subscription's callback reads on
 * while it runs. Beyond not crashing: every callback runs at most once
 * and every pending one runs by the end, a stream line reaches its
 * callback as one JSON object, and a result or an awaited push's
 * response is JSON.
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
	/* read on from inside the callback, as a blocking call there does:
	 * the lines of the read under it wait where they were read */
	if (arg != NULL)
		phxd_wait(arg, 0);
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
	s->arg = c;
	c->subs = s;
	answers = 0;
	CHECK(phxd_send(c, "{\"op\":\"status\"}", on_answer, NULL) == PHXD_OK);
	CHECK(phxd_send_stream(c, "{\"op\":\"events\"}", on_line, NULL, on_answer, NULL) == PHXD_OK);
	/* what comes before a NUL byte is read by phxd_dispatch, the rest
	 * (and the end) by the blocking calls below, which can then be answered */
	const uint8_t *nul = memchr(data, '\0', size);
	size_t first = nul ? (size_t)(nul - data) : size;
	(void)!write(sv[1], data, first);
	if (nul == NULL)
		shutdown(sv[1], SHUT_WR);
	for (int i = 0; i < 64 && !c->dead; i++)
		if (phxd_dispatch(c) == PHXD_EPROTOCOL)
			break;
	if (nul != NULL) {
		(void)!write(sv[1], nul + 1, size - first - 1);
		shutdown(sv[1], SHUT_WR);
	}
	/* blocking calls on what is left, answered or lost: the end is
	 * written, so a wait ends with what is there */
	c->timeout_ms = 10000;
	/* an awaited push: its response, when one came, is one JSON value */
	char *out = NULL;
	int rc = phxd_push(c, NULL, "t", "e", "{}", 0, PHXD_PUSH_AWAIT, 0, &out);
	CHECK(rc == PHXD_OK || out == NULL);
	if (out != NULL) {
		struct json_cursor cur;
		json_cursor_init(&cur, out, strlen(out));
		CHECK(json_skip_value(&cur) && (json_skip_ws(&cur), cur.p == cur.end));
	}
	free(out);
	out = NULL;
	rc = phxd_call(c, "{\"op\":\"status\"}", &out);
	CHECK(rc != PHXD_OK || out == NULL || strlen(out) > 0);
	free(out);
	close(sv[1]);
	phxd_disconnect(c);
	CHECK(answers == 2);
	return 0;
}
