/* SPDX-License-Identifier: MIT */
/*
 * libphxd against a live phxd (started by 80-libphxd.py, which passes the
 * socket path and expects a joined topic rooms:c). Prints a line per check
 * and exits 1 if any failed.
 */
#include "client-lib/phxd.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                             \
	do {                                                         \
		if (cond) {                                          \
			printf("ok   " __VA_ARGS__);                     \
		} else {                                             \
			printf("FAIL " __VA_ARGS__);                     \
			failures++;                                  \
		}                                                    \
		printf(" (%s:%d)\n", __FILE__, __LINE__);            \
	} while (0)

static int lines_seen;
static char last_line[4096];

static void
on_line(void *arg, uint64_t sub, const char *json, size_t len)
{
	(void)arg;
	(void)sub;
	lines_seen++;
	snprintf(last_line, sizeof(last_line), "%.*s", (int)len, json);
}

static char failed_line[4096];

/* The events stream: keeps the push_failed line. */
static void
on_event(void *arg, uint64_t sub, const char *json, size_t len)
{
	(void)arg;
	(void)sub;
	if (strstr(json, "\"type\":\"push_failed\""))
		snprintf(failed_line, sizeof(failed_line), "%.*s", (int)len, json);
}

static int replies;
static int reply_status;
static char reply_text[4096];

static void
on_reply(void *arg, struct phxd_client *c, int status, const char *result, size_t len)
{
	(void)arg;
	(void)c;
	replies++;
	reply_status = status;
	snprintf(reply_text, sizeof(reply_text), "%.*s", (int)len, result ? result : "");
}

/* Answers each message with a blocking call from inside the callback: the
 * natural "answer a message" pattern. */
static int answered, answered_ok;

static void
answer_in_callback(void *arg, uint64_t sub, const char *json, size_t len)
{
	struct phxd_client *c = arg;
	char *out = NULL;

	(void)sub;
	(void)json;
	(void)len;
	answered++;
	if (phxd_push(c, NULL, "rooms:c", "ping", "{}", 0, PHXD_PUSH_AWAIT, 0, &out) == PHXD_OK &&
	    out && strcmp(out, "{\"pong\":\"pong\"}") == 0)
		answered_ok++;
	free(out);
}

/* A reader that was away: every line of its backlog, and a line longer
 * than any read takes, arrive whole and in order. */
#define BACKLOG_LINES 300
#define LONG_LINE_PAD 200000

static long seq_next, seq_wrong;
static size_t longest_line;

static void
count_in_order(void *arg, uint64_t sub, const char *json, size_t len)
{
	const char *seq = strstr(json, "\"seq\":");

	(void)arg;
	(void)sub;
	if (seq == NULL || strtol(seq + 6, NULL, 10) != seq_next || json[len - 1] != '}')
		seq_wrong++;
	seq_next++;
	if (len > longest_line)
		longest_line = len;
}

/* A reader of rooms:c whose lines go to fn. */
static struct phxd_client *
backlog_reader(const char *path, phxd_line_fn fn, const char *what)
{
	struct phxd_client *reader = NULL;
	uint64_t sub;

	CHECK(phxd_connect(path, &reader) == PHXD_OK &&
		      phxd_subscribe(reader, NULL, "rooms:c", NULL, fn, reader, &sub) == PHXD_OK,
	      "%s subscribed", what);
	return reader;
}

/* BACKLOG_LINES broadcasts in order, each awaited by the pusher: the
 * reader does not read meanwhile. How many were answered ok. */
static int
push_backlog(struct phxd_client *pusher)
{
	char payload[160];
	int pushed = 0;

	for (int i = 0; i < BACKLOG_LINES; i++) {
		snprintf(payload, sizeof(payload), "{\"seq\":%d,\"pad\":\"%0100d\"}", i, i);
		pushed += phxd_push(pusher, NULL, "rooms:c", "broadcast", payload, 0,
				    PHXD_PUSH_AWAIT, 0, NULL) == PHXD_OK;
	}
	return pushed;
}

static void
check_backlog_and_long_line(const char *path, struct phxd_client *pusher)
{
	static char payload[LONG_LINE_PAD + 64];
	struct phxd_client *reader = backlog_reader(path, count_in_order, "a reader");
	int pushed = push_backlog(pusher);

	int n = snprintf(payload, sizeof(payload), "{\"seq\":%d,\"pad\":\"", BACKLOG_LINES);
	memset(payload + n, 'x', LONG_LINE_PAD);
	strcpy(payload + n + LONG_LINE_PAD, "\"}");
	pushed += phxd_push(pusher, NULL, "rooms:c", "broadcast", payload, 0, PHXD_PUSH_AWAIT, 0,
			    NULL) == PHXD_OK;
	for (int i = 0; i < 100 && seq_next < BACKLOG_LINES + 1; i++)
		phxd_wait(reader, 100);
	CHECK(pushed == BACKLOG_LINES + 1 && seq_next == BACKLOG_LINES + 1 && seq_wrong == 0 &&
		      longest_line > LONG_LINE_PAD,
	      "a backlog of %d lines and one of %zu bytes: %ld read, %ld wrong", BACKLOG_LINES,
	      longest_line, seq_next, seq_wrong);
	/* and the reader keeps up with what comes after */
	pushed = phxd_push(pusher, NULL, "rooms:c", "broadcast", "{\"seq\":301}", 0,
			   PHXD_PUSH_AWAIT, 0, NULL) == PHXD_OK;
	for (int i = 0; i < 50 && seq_next < BACKLOG_LINES + 2; i++)
		phxd_wait(reader, 100);
	CHECK(pushed && seq_next == BACKLOG_LINES + 2 && seq_wrong == 0,
	      "a line after the backlog: %ld read, %ld wrong", seq_next, seq_wrong);
	phxd_disconnect(reader);
}

/* A backlog read by a callback that makes a blocking call for each line:
 * the call reads on while the lines of the read before it wait, and every
 * line still reaches the callback once, in order, each call its answer. */
static long calls_ok;

static void
count_and_call(void *arg, uint64_t sub, const char *json, size_t len)
{
	struct phxd_client *reader = arg;
	char *out = NULL;

	count_in_order(NULL, sub, json, len);
	if (phxd_push(reader, NULL, "rooms:c", "ping", "{}", 0, PHXD_PUSH_AWAIT, 0, &out) ==
		    PHXD_OK &&
	    out && strcmp(out, "{\"pong\":\"pong\"}") == 0)
		calls_ok++;
	free(out);
}

static void
check_backlog_with_calls(const char *path, struct phxd_client *pusher)
{
	seq_next = seq_wrong = 0;
	struct phxd_client *reader = backlog_reader(path, count_and_call,
						    "a reader that calls from its callback");
	int pushed = push_backlog(pusher);

	for (int i = 0; i < 100 && seq_next < BACKLOG_LINES; i++)
		phxd_wait(reader, 100);
	CHECK(pushed == BACKLOG_LINES && seq_next == BACKLOG_LINES && seq_wrong == 0 &&
		      calls_ok == BACKLOG_LINES,
	      "a backlog of %d lines, a blocking call for each: %ld read, %ld wrong, %ld calls "
	      "answered", BACKLOG_LINES, seq_next, seq_wrong, calls_ok);
	phxd_disconnect(reader);
}

/* A request sent with phxd_send whose answer never comes, then phxd goes
 * away (80-libphxd.py kills it after "sent"): the callback still fires. */
static int
pending_on_drop(const char *path)
{
	struct phxd_client *c;

	if (phxd_connect(path, &c) != PHXD_OK)
		return 1;
	phxd_send(c, "{\"op\":\"push\",\"topic\":\"rooms:c\",\"event\":\"quicksand\","
		  "\"await\":true,\"timeout_ms\":60000}", on_reply, NULL);
	puts("sent");
	fflush(stdout);
	for (int i = 0; i < 200 && replies == 0; i++) {
		struct pollfd pfd = { phxd_fd(c), POLLIN, 0 };
		if (poll(&pfd, 1, 50) > 0)
			phxd_dispatch(c);
	}
	printf("replies %d status %d code %s\n", replies, reply_status, phxd_error_code(c));
	phxd_disconnect(c);
	return replies == 1 && reply_status == PHXD_EUNREACHABLE ? 0 : 1;
}

/* phxd goes away between two calls (80-libphxd.py kills it after
 * "connected"): the next call fails at once as unreachable. */
static int
call_after_drop(const char *path)
{
	struct phxd_client *c;
	char *out = NULL, go[8];
	int rc;

	if (phxd_connect(path, &c) != PHXD_OK)
		return 1;
	puts("connected");
	fflush(stdout);
	if (fgets(go, sizeof(go), stdin) == NULL)
		return 1;
	rc = phxd_push(c, NULL, "rooms:c", "ping", "{}", 0, PHXD_PUSH_AWAIT, 0, &out);
	printf("status %d code %s\n", rc, phxd_error_code(c));
	free(out);
	phxd_disconnect(c);
	return rc == PHXD_EUNREACHABLE && out == NULL ? 0 : 1;
}

int
main(int argc, char **argv)
{
	struct phxd_client *c, *bad;
	char *out = NULL;
	int rc;

	if (argc == 3 && strcmp(argv[2], "pending-on-drop") == 0)
		return pending_on_drop(argv[1]);
	if (argc == 3 && strcmp(argv[2], "call-after-drop") == 0)
		return call_after_drop(argv[1]);
	if (argc != 2) {
		fprintf(stderr, "usage: libphxd-check SOCKET [pending-on-drop|call-after-drop]\n");
		return 2;
	}
	rc = phxd_connect("/nonexistent/phxd.sock", &bad);
	CHECK(rc == PHXD_EUNREACHABLE && bad == NULL && errno == ENOENT, "unreachable socket");
	rc = phxd_connect(argv[1], &c);
	CHECK(rc == PHXD_OK, "connect");
	if (rc != PHXD_OK)
		return 1;

	rc = phxd_push(c, NULL, "rooms:c", "ping", "{}", 0, PHXD_PUSH_AWAIT, 0, &out);
	CHECK(rc == PHXD_OK && out && strcmp(out, "{\"pong\":\"pong\"}") == 0, "push await: %s",
	      out ? out : "(null)");
	free(out);
	out = NULL;

	rc = phxd_push(c, "demo", "rooms:c", "ping", "{}", 0, PHXD_PUSH_AWAIT, 0, &out);
	CHECK(rc == PHXD_OK && out && strcmp(out, "{\"pong\":\"pong\"}") == 0,
	      "push await on a named connection: %s", out ? out : "(null)");
	free(out);
	out = NULL;

	/* the response is the reply's own "response", not a member of it of
	 * the same name; a payload over several lines goes out compacted */
	rc = phxd_push(c, NULL, "rooms:c", "echo",
		       "{\n  \"response\": [1, {\"response\": 2}],\n  \"status\": \"x\\ny\"\n}", 0,
		       PHXD_PUSH_AWAIT, 5000, &out);
	CHECK(rc == PHXD_OK && out &&
		      strcmp(out, "{\"response\":[1,{\"response\":2}],\"status\":\"x\\ny\"}") == 0,
	      "echo of a payload over several lines: %s", out ? out : "(null)");
	free(out);
	out = NULL;
	rc = phxd_push(c, NULL, "rooms:c", "echo", "[\"a\\\"\\\\\",-1.5e3,null]", 0,
		       PHXD_PUSH_AWAIT, 0, &out);
	CHECK(rc == PHXD_OK && out && strcmp(out, "[\"a\\\"\\\\\",-1500.0,null]") == 0,
	      "echo of an array: %s", out ? out : "(null)");
	free(out);
	out = NULL;
	/* what the server sent, as it sent it: numbers past 64 bits, NUL in a
	 * string, a response over lines (phxd puts it on one) */
	rc = phxd_push(c, NULL, "rooms:c", "hostile", "{\"reply\":\"bigint\"}", 0, PHXD_PUSH_AWAIT,
		       0, &out);
	CHECK(rc == PHXD_OK && out &&
		      strcmp(out, "{\"n\":123456789012345678901234567890,\"f\":1e400}") == 0,
	      "a response with numbers past 64 bits: %s", out ? out : "(null)");
	free(out);
	out = NULL;
	rc = phxd_push(c, NULL, "rooms:c", "hostile", "{\"reply\":\"nul\"}", 0, PHXD_PUSH_AWAIT, 0,
		       &out);
	CHECK(rc == PHXD_OK && out && strcmp(out, "{\"s\":\"a\\u0000b\"}") == 0,
	      "a response with NUL in a string: %s", out ? out : "(null)");
	free(out);
	out = NULL;
	rc = phxd_push(c, NULL, "rooms:c", "hostile", "{\"reply\":\"newlines\"}", 0,
		       PHXD_PUSH_AWAIT, 0, &out);
	CHECK(rc == PHXD_OK && out && strchr(out, '\n') == NULL && strncmp(out, "{\"x\":", 5) == 0 &&
		      strstr(out, "\"result\":{\"status\":\"ok\"}"),
	      "a response over lines: %s", out ? out : "(null)");
	free(out);
	out = NULL;
	rc = phxd_push(c, NULL, "rooms:c", "echo", "{\"a\":1} {\"b\":2}", 0, PHXD_PUSH_AWAIT, 0,
		       &out);
	CHECK(rc == PHXD_EINVAL && out == NULL, "two payloads");
	rc = phxd_push(c, NULL, "rooms:c", "echo", "{\"a\":\n1", 0, PHXD_PUSH_AWAIT, 0, &out);
	CHECK(rc == PHXD_EINVAL && out == NULL, "a payload over several lines, cut short");
	rc = phxd_push(c, NULL, NULL, "echo", "{}", 0, PHXD_PUSH_AWAIT, 0, &out);
	CHECK(rc == PHXD_EINVAL && out == NULL, "a push without a topic");
	rc = phxd_notify(c, NULL, "rooms:c", "ping", "{\n}", 0, 0);
	CHECK(rc == PHXD_EINVAL, "a notification's payload over two lines");

	rc = phxd_push(c, NULL, "rooms:c", "ping", NULL, 0, 0, 0, NULL);
	CHECK(rc == PHXD_OK, "fire push");

	rc = phxd_push(c, NULL, "rooms:c", "error_reply", "{}", 0, PHXD_PUSH_AWAIT, 0, &out);
	CHECK(rc == PHXD_EDAEMON && strcmp(phxd_error_code(c), "reply_error") == 0 &&
		      phxd_error_json(c) && strstr(phxd_error_json(c), "\"nope\"") && out == NULL,
	      "reply error: %s %s", phxd_error_code(c), phxd_error_json(c) ? phxd_error_json(c) : "");

	rc = phxd_push(c, NULL, "rooms:none", "x", "{}", 0, 0, 0, NULL);
	CHECK(rc == PHXD_EDAEMON && strcmp(phxd_error_code(c), "not_joined") == 0, "not joined");

	rc = phxd_push(c, NULL, "rooms:c", "quicksand", "{}", 0, PHXD_PUSH_AWAIT, 200, NULL);
	CHECK(rc == PHXD_ETIMEOUT && strcmp(phxd_error_code(c), "timeout") == 0, "push timeout");

	rc = phxd_push(c, NULL, "rooms:c", "x", "{not json", 0, 0, 0, NULL);
	CHECK(rc == PHXD_EINVAL, "payload not JSON");

	rc = phxd_push(c, NULL, "rooms:c", "ping", "{}", 0, PHXD_PUSH_DURABLE, 0, &out);
	CHECK(rc == PHXD_OK && out && strtol(out, NULL, 10) > 0, "durable push: %s", out ? out : "");
	free(out);
	rc = phxd_push(c, NULL, "rooms:c", "ping", "{}", 0, PHXD_PUSH_DURABLE | PHXD_PUSH_AWAIT, 0,
		       &out);
	CHECK(rc == PHXD_EDAEMON && strcmp(phxd_error_code(c), "bad_request") == 0 && out == NULL,
	      "durable and await");
	rc = phxd_push(c, NULL, "rooms:c", "ping", "{}", 0, PHXD_PUSH_DURABLE, 500, &out);
	CHECK(rc == PHXD_EDAEMON && strcmp(phxd_error_code(c), "bad_request") == 0 && out == NULL,
	      "durable and a timeout");
	rc = phxd_notify(c, NULL, "rooms:c", "ping", "{}", 0, PHXD_PUSH_DURABLE);
	CHECK(rc == PHXD_OK, "durable notification");

	rc = phxd_push(c, NULL, "rooms:c", "blob", "\x00\x01\x02", 3,
		       PHXD_PUSH_AWAIT | PHXD_PUSH_BINARY, 0, &out);
	CHECK(rc == PHXD_OK && out && strcmp(out, "{\"binary\":\"AAEC\"}") == 0, "binary push: %s",
	      out ? out : "(null)");
	free(out);
	out = NULL;

	rc = phxd_join(c, NULL, "rooms:lib", "{\"k\":1}", &out);
	CHECK(rc == PHXD_OK && out && strstr(out, "\"joined\":\"rooms:lib\""), "join: %s",
	      out ? out : "(null)");
	free(out);
	out = NULL;
	rc = phxd_leave(c, NULL, "rooms:lib");
	CHECK(rc == PHXD_OK, "leave");

	rc = phxd_status(c, NULL, &out);
	CHECK(rc == PHXD_OK && out && strstr(out, "\"rooms:c\""), "status");
	free(out);
	out = NULL;

	rc = phxd_call(c, "{\"op\":\"teleport\"}", &out);
	CHECK(rc == PHXD_EDAEMON && strcmp(phxd_error_code(c), "unknown_op") == 0, "unknown op");
	rc = phxd_call(c, "[1,2]", &out);
	CHECK(rc == PHXD_EINVAL, "request not an object");
	rc = phxd_call(c, "{\"op\":\"status\"", &out);
	CHECK(rc == PHXD_EINVAL && out == NULL, "request cut short");
	rc = phxd_call(c, "{\"topic\":\"rooms:c\"}", &out);
	CHECK(rc == PHXD_EINVAL && out == NULL, "request without an op");
	rc = phxd_call(c, "{\"op\":\"push\",\"topic\":\"rooms:c\",\"event\":\"ping\",\"await\":true}",
		       &out);
	CHECK(rc == PHXD_OK && out && strstr(out, "\"response\":{\"pong\":\"pong\"}"), "call: %s",
	      out ? out : "(null)");
	free(out);
	out = NULL;
	/* an id of the caller's is replaced; a request over lines is compacted */
	rc = phxd_call(c, "{\"id\":\"mine\",\n \"op\":\"push\",\"topic\":\"rooms:c\",\n"
		       " \"event\":\"ping\",\"await\":true}", &out);
	CHECK(rc == PHXD_OK && out && strstr(out, "\"response\":{\"pong\":\"pong\"}"),
	      "call with an id, over lines: %s", out ? out : "(null)");
	free(out);
	out = NULL;

	uint64_t sub = 0;
	rc = phxd_subscribe(c, NULL, "rooms:*", NULL, on_line, NULL, &sub);
	CHECK(rc == PHXD_OK && sub > 0, "subscribe");
	rc = phxd_push(c, NULL, "rooms:c", "broadcast", "{\"b\":1}", 0, PHXD_PUSH_AWAIT, 0, NULL);
	/* the broadcast may come before or after the reply: wait for it */
	for (int i = 0; i < 50 && lines_seen == 0; i++)
		phxd_wait(c, 100);
	CHECK(rc == PHXD_OK && lines_seen == 1 && strstr(last_line, "\"payload\":{\"b\":1}") &&
		      !strstr(last_line, "\"sub\""),
	      "subscription line: %s", last_line);
	rc = phxd_unsubscribe(c, sub);
	CHECK(rc == PHXD_OK, "unsubscribe");
	rc = phxd_wait(c, 200);
	CHECK(rc == PHXD_ETIMEOUT && strcmp(phxd_error_code(c), "timeout") == 0,
	      "a wait with nothing to deliver says timeout");

	/* a blocking call from inside a stream callback, for every message */
	rc = phxd_subscribe(c, NULL, "rooms:c", NULL, answer_in_callback, c, &sub);
	CHECK(rc == PHXD_OK, "subscribe for answers");
	for (int i = 0; i < 3; i++)
		phxd_push(c, NULL, "rooms:c", "broadcast", "{\"q\":1}", 0, PHXD_PUSH_AWAIT, 0, NULL);
	for (int i = 0; i < 50 && answered < 3; i++)
		phxd_wait(c, 100);
	CHECK(answered == 3 && answered_ok == 3, "blocking calls inside callbacks: %d answered, %d ok",
	      answered, answered_ok);
	rc = phxd_unsubscribe(c, sub);
	CHECK(rc == PHXD_OK, "unsubscribe the answers");

	/* non-blocking: queue, poll, dispatch */
	rc = phxd_send(c, "{\"op\":\"push\",\"topic\":\"rooms:c\",\"event\":\"ping\",\"await\":true}",
		       on_reply, NULL);
	CHECK(rc == PHXD_OK, "send");
	for (int i = 0; i < 100 && replies == 0; i++) {
		struct pollfd pfd = { phxd_fd(c), POLLIN | (phxd_want_write(c) ? POLLOUT : 0), 0 };
		if (poll(&pfd, 1, 50) > 0)
			phxd_dispatch(c);
	}
	CHECK(replies == 1 && reply_status == PHXD_OK && strstr(reply_text, "pong"),
	      "non-blocking reply: %s", reply_text);

	/* non-blocking streams: the subscription is registered before its
	 * first line, which is sent right behind the subscribe */
	replies = lines_seen = 0;
	rc = phxd_send_stream(c, "{\"op\":\"subscribe\",\"topic\":\"rooms:c\"}", on_line, NULL,
			      on_reply, NULL);
	CHECK(rc == PHXD_OK, "send_stream");
	rc = phxd_send(c, "{\"op\":\"push\",\"topic\":\"rooms:c\",\"event\":\"broadcast\","
		       "\"payload\":{\"nb\":1}}", on_reply, NULL);
	for (int i = 0; i < 100 && (replies < 2 || lines_seen == 0); i++) {
		struct pollfd pfd = { phxd_fd(c), POLLIN | (phxd_want_write(c) ? POLLOUT : 0), 0 };
		if (poll(&pfd, 1, 50) > 0)
			phxd_dispatch(c);
	}
	CHECK(replies == 2 && lines_seen == 1 && strstr(last_line, "\"payload\":{\"nb\":1}"),
	      "non-blocking subscription: %d replies, line %s", replies, last_line);
	rc = phxd_send_stream(c, "{\"op\":\"subscribe\"}", on_line, NULL, on_reply, NULL);
	for (int i = 0; i < 100 && replies < 3; i++) {
		struct pollfd pfd = { phxd_fd(c), POLLIN | (phxd_want_write(c) ? POLLOUT : 0), 0 };
		if (poll(&pfd, 1, 50) > 0)
			phxd_dispatch(c);
	}
	CHECK(rc == PHXD_OK && replies == 3 && reply_status == PHXD_EDAEMON &&
		      strcmp(phxd_error_code(c), "bad_request") == 0,
	      "a refused stream answers its callback: %s", phxd_error_code(c));
	/* requests go out as written, with the id put in front; those the
	 * library cannot pass through as they are take the slow path */
	replies = 0;
	CHECK(phxd_send(c, "{\"op\":\"push\",\"id\":\"mine\",\"topic\":\"rooms:c\",\"event\":"
			   "\"echo\",\"payload\":{\"via\":\"an id of its own\"},\"await\":true}",
			on_reply, NULL) == PHXD_OK &&
		      phxd_send(c, "{\n \"op\" : \"push\",\n \"topic\":\"rooms:c\",\"event\":\"echo\","
				   "\"payload\":{\"via\":\"lines\"},\"await\":true}\n", on_reply,
				NULL) == PHXD_OK &&
		      phxd_send(c, " { } ", on_reply, NULL) == PHXD_EINVAL &&
		      phxd_send(c, "{\"op\":1}", on_reply, NULL) == PHXD_EINVAL &&
		      phxd_send(c, "{\"op\":\"status\"} x", on_reply, NULL) == PHXD_EINVAL &&
		      phxd_send(c, "{\"op\":\"status\",}", on_reply, NULL) == PHXD_EINVAL &&
		      phxd_send(c, "[\"op\"]", on_reply, NULL) == PHXD_EINVAL,
	      "requests checked before they are sent");
	for (int i = 0; i < 100 && replies < 2; i++) {
		struct pollfd pfd = { phxd_fd(c), POLLIN | (phxd_want_write(c) ? POLLOUT : 0), 0 };
		if (poll(&pfd, 1, 50) > 0)
			phxd_dispatch(c);
	}
	CHECK(replies == 2 && reply_status == PHXD_OK && strstr(reply_text, "\"via\":\"lines\""),
	      "requests with an id, and over lines, answered: %s", reply_text);

	CHECK(phxd_send(c, "{\"op\":\"status\"}", NULL, NULL) == PHXD_EINVAL &&
		      phxd_send_stream(c, "{\"op\":\"events\"}", NULL, NULL, on_reply, NULL) ==
			      PHXD_EINVAL,
	      "callbacks are required");

	/* notifications: not answered; a failure arrives on the events stream */
	rc = phxd_events(c, NULL, on_event, NULL, &sub);
	CHECK(rc == PHXD_OK, "events");
	CHECK(phxd_notify(c, NULL, "rooms:c", "ping", "{}", 0, 0) == PHXD_OK &&
		      phxd_notify(c, NULL, "rooms:c", "blob", "\x00\x01", 2, PHXD_PUSH_BINARY) ==
			      PHXD_OK &&
		      phxd_notify(c, NULL, "rooms:c", "x", "{bad", 0, 0) == PHXD_EINVAL &&
		      phxd_notify(c, NULL, "rooms:c", "x", "{}", 0, PHXD_PUSH_AWAIT) == PHXD_EINVAL &&
		      phxd_notify(c, "demo", "rooms:none\"quoted", "e\n", NULL, 0, 0) == PHXD_OK,
	      "notify");
	for (int i = 0; i < 50 && failed_line[0] == '\0'; i++)
		phxd_wait(c, 100);
	CHECK(strstr(failed_line, "\"topic\":\"rooms:none\\\"quoted\"") &&
		      strstr(failed_line, "\"event\":\"e\\n\"") &&
		      strstr(failed_line, "\"code\":\"not_joined\""),
	      "a failed notification is an event: %s", failed_line);
	rc = phxd_unsubscribe(c, sub);
	CHECK(rc == PHXD_OK, "unsubscribe the events");

	/* a hold lasts as long as the client: a second client sees it go */
	struct phxd_client *holder;
	rc = phxd_connect(argv[1], &holder);
	CHECK(rc == PHXD_OK, "connect the holder");
	rc = phxd_hold(holder, NULL, "rooms:held", NULL, &out);
	CHECK(rc == PHXD_OK, "hold");
	free(out);
	out = NULL;
	phxd_status(c, NULL, &out);
	CHECK(out && strstr(out, "\"topic\":\"rooms:held\""), "held topic in status");
	free(out);
	out = NULL;
	rc = phxd_leave(c, NULL, "rooms:held");
	CHECK(rc == PHXD_OK && strstr(phxd_last_response(c), "\"left\":false"),
	      "another client's leave keeps it: %s", phxd_last_response(c));
	phxd_disconnect(holder);
	bool gone = false;
	for (int i = 0; i < 100 && !gone; i++) {
		phxd_status(c, NULL, &out);
		gone = out && !strstr(out, "\"topic\":\"rooms:held\"");
		free(out);
		out = NULL;
		if (!gone)
			poll(NULL, 0, 20);
	}
	CHECK(gone, "the hold ended with its client");

	check_backlog_and_long_line(argv[1], c);
	check_backlog_with_calls(argv[1], c);

	phxd_disconnect(c);
	printf("%d failed\n", failures);
	return failures ? 1 : 0;
}
