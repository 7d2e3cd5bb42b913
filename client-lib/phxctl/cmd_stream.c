/* SPDX-License-Identifier: MIT */
/*
 * subscribe / events: print stream lines until --count, or --timeout of
 * silence. --join holds the topic for the subscription's life; --follow
 * outlives phxd restarts: it reconnects, subscribes (and holds) again, and
 * says so on stderr.
 */
#include "phxctl.h"

#include "protocol/base64.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FOLLOW_RETRY_MIN_MS 100
#define FOLLOW_RETRY_MAX_MS 2000

struct stream {
	struct ctl *ctl;
	const char *op;		/* "subscribe" or "events" */
	const char *topic;	/* subscribe */
	long seen;
	uint64_t last_line_ms;	/* or the start: what --timeout counts from */
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* --raw: a message's payload, the JSON or a binary payload's bytes. */
static void
print_payload(const char *json, size_t len)
{
	json_t *m = json_loadb(json, len, JSON_ALLOW_NUL, NULL), *p = json_object_get(m, "payload");

	if (json_is_true(json_object_get(m, "binary")) && json_is_string(p)) {
		const char *b64 = json_string_value(p);
		size_t n = 0, len64 = strlen(b64);
		unsigned char *bytes = malloc(BASE64_DECODED_SIZE(len64));
		if (bytes != NULL && base64_decode(b64, len64, bytes, &n))
			fwrite(bytes, 1, n, stdout);
		free(bytes);
	} else if (p != NULL) {
		char *text = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY);
		fputs(text ? text : "null", stdout);
		free(text);
	}
	putchar('\n');
	json_decref(m);
}

static void
on_line(void *arg, uint64_t sub, const char *json, size_t len)
{
	struct stream *st = arg;

	(void)sub;
	if (st->ctl->raw && strstr(json, "\"payload\"") != NULL)
		print_payload(json, len);
	else
		printf("%.*s\n", (int)len, json);
	fflush(stdout);
	st->seen++;
	st->last_line_ms = now_ms();
}

/* True when some connection holds a topic that `topic` (exact, or a prefix
 * ending in '*') names: otherwise a subscription would wait in silence. */
static bool
topic_wanted(struct ctl *ctl, const char *topic)
{
	char *result = NULL;
	size_t plen = strlen(topic);
	bool prefix = plen > 0 && topic[plen - 1] == '*', found = false;
	json_t *r, *cn, *t;
	size_t i, j;

	if (phxd_status(ctl->c, ctl->conn, &result) != PHXD_OK)
		return true;	/* cannot tell: say nothing */
	r = json_loads(result, 0, NULL);
	free(result);
	json_array_foreach (json_object_get(r, "connections"), i, cn) {
		json_array_foreach (json_object_get(cn, "topics"), j, t) {
			const char *name = jstr(t, "topic");
			if (prefix ? strncmp(name, topic, plen - 1) == 0 : strcmp(name, topic) == 0)
				found = true;
		}
	}
	json_decref(r);
	return found;
}

static void
on_held(void *arg, struct phxd_client *c, int status, const char *result, size_t len)
{
	struct stream *st = arg;

	(void)result;
	(void)len;
	if (status == PHXD_OK || status == PHXD_EUNREACHABLE)
		return;
	if (strcmp(phxd_error_code(c), "reply_error") == 0)
		fprintf(stderr, "phxctl: warning: the server refused to join %s (%s); phxd keeps "
			"retrying while this subscription holds it\n", st->topic,
			phxd_error_json(c) ? phxd_error_json(c) : "");
	else
		fprintf(stderr, "phxctl: warning: %s is not joined yet: %s: %s\n", st->topic,
			phxd_error_code(c), phxd_error_message(c));
}

/* Subscribes on ctl->c, then holds the topic (--join): in that order, no
 * message after the join is missed. */
static int
open_stream(struct stream *st)
{
	struct ctl *ctl = st->ctl;
	int rc;

	if (strcmp(st->op, "events") == 0)
		return phxd_events(ctl->c, ctl->conn, on_line, st, NULL);
	rc = phxd_subscribe(ctl->c, ctl->conn, st->topic, ctl->nevents ? ctl->events : NULL,
			    on_line, st, NULL);
	if (rc != PHXD_OK)
		return rc;
	if (ctl->join) {
		json_t *req = ctl_request(ctl, "join");
		json_object_set_new(req, "topic", json_string(st->topic));
		json_object_set_new(req, "hold", json_string("client"));
		char *text = json_dumps(req, JSON_COMPACT);
		json_decref(req);
		rc = phxd_send(ctl->c, text, on_held, st);
		free(text);
	} else if (!topic_wanted(ctl, st->topic)) {
		fprintf(stderr, "phxctl: warning: no connection holds a topic %s %s: nothing will "
			"arrive until one is joined (phxctl join, or subscribe --join)\n",
			st->topic[strlen(st->topic) - 1] == '*' ? "matching" : "named", st->topic);
	}
	return rc;
}

/* -t: what is left of the silence allowed; -1: no limit. */
static int
silence_left(const struct stream *st)
{
	uint64_t elapsed = now_ms() - st->last_line_ms;

	if (st->ctl->timeout_ms <= 0)
		return -1;
	return elapsed >= (uint64_t)st->ctl->timeout_ms ? 0
							 : (int)((uint64_t)st->ctl->timeout_ms - elapsed);
}

static int
timed_out(const struct stream *st)
{
	fprintf(stderr, "phxctl: nothing within %ld ms\n", st->ctl->timeout_ms);
	return EXIT_TIMEOUT;
}

/* --follow: phxd went away; connects again until it is back. */
static int
reconnect(struct stream *st)
{
	struct ctl *ctl = st->ctl;
	unsigned delay = FOLLOW_RETRY_MIN_MS;

	fprintf(stderr, "phxctl: lost phxd (%s); reconnecting\n", phxd_error_message(ctl->c));
	phxd_disconnect(ctl->c);
	ctl->c = NULL;
	for (;;) {
		int left = silence_left(st);
		if (left == 0)
			return timed_out(st);
		sleep_ms(left > 0 && (unsigned)left < delay ? (unsigned)left : delay);
		if (ctl_connect(ctl, true) == EXIT_OK)
			break;
		delay = delay * 2 > FOLLOW_RETRY_MAX_MS ? FOLLOW_RETRY_MAX_MS : delay * 2;
	}
	int rc = open_stream(st);
	if (rc == PHXD_OK)
		fprintf(stderr, "phxctl: reconnected; %s again (what came meanwhile is not "
			"replayed)\n", strcmp(st->op, "events") == 0 ? "following events"
								   : "subscribed");
	return rc == PHXD_OK ? EXIT_OK : report(ctl, rc);
}

static int
run_stream(struct stream *st)
{
	struct ctl *ctl = st->ctl;
	int rc;

	st->last_line_ms = now_ms();
	if ((rc = ctl_connect(ctl, false)) != EXIT_OK)
		return rc;
	if ((rc = open_stream(st)) != PHXD_OK)
		return report(ctl, rc);
	while (ctl->count < 0 || st->seen < ctl->count) {
		rc = phxd_wait(ctl->c, silence_left(st));
		if (rc == PHXD_OK)
			continue;
		if (rc == PHXD_ETIMEOUT)
			return timed_out(st);
		if (!ctl->follow || rc != PHXD_EUNREACHABLE)
			return report(ctl, rc);
		if ((rc = reconnect(st)) != EXIT_OK)
			return rc;
	}
	return EXIT_OK;
}

static int
run_subscribe(struct ctl *ctl, char **args, int nargs)
{
	struct stream st = { .ctl = ctl, .op = "subscribe", .topic = args[0] };
	const char *star = strchr(args[0], '*');

	(void)nargs;
	if (args[0][0] == '\0')
		die_usage("TOPIC is empty");
	if (ctl->join && star != NULL)
		die_usage("--join holds one topic, not a pattern (%s)", args[0]);
	return run_stream(&st);
}

static int
run_events(struct ctl *ctl, char **args, int nargs)
{
	struct stream st = { .ctl = ctl, .op = "events" };

	(void)args;
	(void)nargs;
	return run_stream(&st);
}

const struct ctl_cmd cmd_subscribe = {
	"subscribe", "TOPIC|PATTERN", "print its messages, one JSON object per line", 1, 1,
	OPT_COUNT | OPT_EVENT | OPT_RAW | OPT_FOLLOW | OPT_JOIN, run_subscribe,
};

const struct ctl_cmd cmd_events = {
	"events", "", "print connection and channel state changes", 0, 0,
	OPT_COUNT | OPT_FOLLOW, run_events,
};
