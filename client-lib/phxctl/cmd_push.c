/* SPDX-License-Identifier: MIT */
/* push: one event (fire, or --await the reply), or with -l each line of
 * stdin as one message, pipelined. */
#include "phxctl.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STDIN (64u << 20)

/* push -l: up to LINES_WINDOW pushes are in flight while the next lines
 * are read. */
#define LINES_WINDOW 1024

static char *
read_stdin(size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);

	while (buf != NULL) {
		size_t r = fread(buf + n, 1, cap - n, stdin);
		n += r;
		if (r == 0)
			break;
		if (n == cap) {
			if (cap >= MAX_STDIN)
				die_usage("payload on stdin larger than %u bytes", MAX_STDIN);
			cap *= 2;
			buf = realloc(buf, cap);
		}
	}
	if (buf == NULL || ferror(stdin))
		die_usage("cannot read stdin");
	*len = n;
	return buf;
}

/* PAYLOAD or stdin, checked to be JSON unless --binary; NUL-terminated. */
static char *
payload_arg(const struct ctl *ctl, const char *arg, size_t *len)
{
	char *payload;

	if (strcmp(arg, "-") == 0) {
		payload = read_stdin(len);
	} else {
		payload = strdup(arg);
		*len = strlen(arg);
	}
	payload = realloc(payload, *len + 1);
	if (payload == NULL)
		die_usage("out of memory for the payload");
	payload[*len] = '\0';
	if (!ctl->binary) {
		json_error_t jerr;
		json_t *p = json_loadb(payload, *len, JSON_DECODE_ANY, &jerr);
		if (p == NULL)
			die_usage("PAYLOAD is not JSON: %s", jerr.text);
		json_decref(p);
	}
	return payload;
}

static int
push_one(struct ctl *ctl, char **args, int nargs)
{
	size_t len = 0;
	char *payload = nargs == 3 ? payload_arg(ctl, args[2], &len) : NULL;
	char *response = NULL;
	unsigned flags = (ctl->await_reply ? PHXD_PUSH_AWAIT : 0) |
			 (ctl->binary ? PHXD_PUSH_BINARY : 0) |
			 (ctl->durable ? PHXD_PUSH_DURABLE : 0);
	int rc;

	if ((rc = ctl_connect(ctl, false)) != EXIT_OK) {
		free(payload);
		return rc;
	}
	rc = phxd_push(ctl->c, ctl->conn, args[0], args[1], payload, len, flags,
		       ctl->timeout_ms > 0 ? (unsigned)ctl->timeout_ms : 0, &response);
	free(payload);
	if (rc != PHXD_OK)
		return report(ctl, rc);
	if (ctl->json)
		print_member(phxd_last_response(ctl->c), "result");
	else if (ctl->quiet)
		;
	else if (ctl->durable)
		printf("stored %s\n", response);
	else if (!ctl->await_reply)
		puts("sent");
	else
		print_text(response ? response : "null");
	free(response);
	return EXIT_OK;
}

struct lines_state {
	const struct ctl *ctl;
	long sent, answered, failed;
	char first_error[600];
};

static void
on_pushed(void *arg, struct phxd_client *c, int status, const char *result, size_t len)
{
	struct lines_state *st = arg;

	st->answered++;
	if (status != PHXD_OK) {
		if (st->failed++ == 0)
			snprintf(st->first_error, sizeof(st->first_error), "%s: %s",
				 phxd_error_code(c), phxd_error_message(c));
		return;
	}
	if (st->ctl->await_reply && !st->ctl->quiet) {
		json_t *r = json_loadb(result, len, JSON_DECODE_ANY, NULL);
		print_json(json_object_get(r, "response"));
		json_decref(r);
	}
}

/* Runs the client until at most `left` pushes are unanswered. */
static int
drain_to(struct phxd_client *c, struct lines_state *st, long left)
{
	while (st->sent - st->answered > left) {
		struct pollfd pfd = { phxd_fd(c), POLLIN | (phxd_want_write(c) ? POLLOUT : 0), 0 };
		int timeout = st->ctl->timeout_ms > 0 ? (int)st->ctl->timeout_ms : -1;
		int r = poll(&pfd, 1, timeout);
		if (r == 0)
			return PHXD_ETIMEOUT;
		if (r > 0 && phxd_dispatch(c) != PHXD_OK)
			return PHXD_EUNREACHABLE;
	}
	return PHXD_OK;
}

static int
push_lines(struct ctl *ctl, const char *topic, const char *event)
{
	struct lines_state st = { .ctl = ctl };
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	long lineno = 0, bad = 0;
	int rc;

	if ((rc = ctl_connect(ctl, false)) != EXIT_OK)
		return rc;
	rc = PHXD_OK;
	while (rc == PHXD_OK && (n = getline(&line, &cap, stdin)) >= 0) {
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0)
			continue;
		json_error_t jerr;
		json_t *payload = json_loadb(line, (size_t)n, JSON_DECODE_ANY, &jerr);
		if (payload == NULL) {
			if (bad++ < 5)
				fprintf(stderr, "phxctl: line %ld is not JSON: %s\n", lineno, jerr.text);
			continue;
		}
		json_t *req = ctl_request(ctl, "push");
		json_object_set_new(req, "topic", json_string(topic));
		json_object_set_new(req, "event", json_string(event));
		json_object_set_new(req, "payload", payload);
		if (ctl->await_reply)
			json_object_set_new(req, "await", json_true());
		if (ctl->durable)
			json_object_set_new(req, "durable", json_true());
		char *text = json_dumps(req, JSON_COMPACT);
		json_decref(req);
		rc = phxd_send(ctl->c, text, on_pushed, &st);
		free(text);
		if (rc != PHXD_OK)
			break;
		st.sent++;
		rc = drain_to(ctl->c, &st, LINES_WINDOW - 1);
	}
	free(line);
	if (rc == PHXD_OK)
		rc = drain_to(ctl->c, &st, 0);
	if (!ctl->quiet || rc != PHXD_OK || st.failed || bad)
		fprintf(stderr, "phxctl: %ld line%s sent, %ld failed%s%s%s, %ld not JSON\n", st.sent,
			st.sent == 1 ? "" : "s", st.failed, st.failed ? " (first: " : "",
			st.failed ? st.first_error : "", st.failed ? ")" : "", bad);
	if (rc == PHXD_ETIMEOUT) {
		fprintf(stderr, "phxctl: %ld answers missing after %ld ms of silence\n",
			st.sent - st.answered, ctl->timeout_ms);
		return EXIT_TIMEOUT;
	}
	if (rc != PHXD_OK) {
		fprintf(stderr, "phxctl: %s\n", phxd_error_message(ctl->c));
		return EXIT_UNREACHABLE;
	}
	return bad ? EXIT_USAGE : st.failed ? EXIT_FAILED : EXIT_OK;
}

static int
run_push(struct ctl *ctl, char **args, int nargs)
{
	if (ctl->durable && (ctl->await_reply || ctl->timeout_ms > 0))
		die_usage("--durable is answered once stored; its delivery is on the events stream "
			  "(no --await, no -t)");
	if (!ctl->lines)
		return push_one(ctl, args, nargs);
	if (nargs != 2)
		die_usage("usage: phxctl push -l TOPIC EVENT < lines (each line a JSON payload)");
	if (ctl->binary)
		die_usage("-l is for JSON payloads, not --binary");
	return push_lines(ctl, args[0], args[1]);
}

const struct ctl_cmd cmd_push = {
	"push", "TOPIC EVENT [PAYLOAD|-]", "push an event (PAYLOAD: JSON; -: stdin)", 2, 3,
	OPT_AWAIT | OPT_BINARY | OPT_LINES | OPT_DURABLE, run_push,
};
