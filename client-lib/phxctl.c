/* SPDX-License-Identifier: MIT */
/*
 * phxctl: the command line over the phxd socket, built on libphxd. Human
 * output by default, --json for the result objects of the responses;
 * streams print one JSON object per line. Exit codes say what happened
 * (see usage()).
 */
#include "phxd.h"

#include "ipc/phxd-ipc.h"
#include "protocol/base64.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>

enum exit_code {
	EXIT_OK = 0,
	EXIT_REPLY_ERROR = 1,	/* the Phoenix server answered with an error */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,	/* no daemon at the socket */
	EXIT_TIMEOUT = 4,
	EXIT_FAILED = 5,	/* the daemon refused or could not do it */
	EXIT_UNHEALTHY = 1,	/* check: a connection or a wanted topic is down */
};

#define MAX_STDIN (64u << 20)

struct opts {
	const char *socket;
	const char *conn;
	bool json;
	bool await_reply;
	bool binary;
	bool openmetrics;
	bool raw;		/* subscribe: payloads only */
	bool quiet;		/* -q: nothing on stdout when it worked */
	bool lines;		/* push -l: each stdin line is a message */
	long timeout_ms;	/* -1: not given */
	long count;		/* streams: stop after N lines; -1: forever */
	const char *events[64];
	size_t nevents;
};

static void
usage(FILE *out)
{
	fputs("usage: phxctl [-s SOCKET] [-C CONN] [--json] COMMAND [ARGS]\n"
	      "\n"
	      "commands:\n"
	      "  status                          connections, topics and counters\n"
	      "  join TOPIC [PARAMS]             keep TOPIC joined (PARAMS: a JSON object)\n"
	      "  leave TOPIC                     stop keeping it joined\n"
	      "  push TOPIC EVENT [PAYLOAD|-]    push an event (PAYLOAD: JSON, - reads stdin)\n"
	      "       [--await] [--timeout MS] [--binary]\n"
	      "  push -l TOPIC EVENT [--await]   each stdin line (JSON) is one push, pipelined\n"
	      "  subscribe TOPIC|PATTERN [--event E]... [--count N] [--timeout MS]\n"
	      "       [--raw]                    print messages, one JSON object per line\n"
	      "                                  (--raw: only their payloads)\n"
	      "  events [--count N]              print connection and channel state changes\n"
	      "  presence TOPIC                  the topic's presence list\n"
	      "  reload                          re-read the configuration\n"
	      "  check                           exit 0 when every connection is open and every\n"
	      "                                  wanted topic joined, else say what is not, exit 1\n"
	      "  metrics [--openmetrics]         counters and gauges, Prometheus text\n"
	      "                                  (or OpenMetrics), as metrics_listen serves\n"
	      "\n"
	      "options:\n"
	      "  -s, --socket PATH   the daemon's socket ($" PHXD_SOCKET_ENV ", default "
	      PHXD_DEFAULT_SOCKET ")\n"
	      "  -C, --conn NAME     connection to use (needed when several are configured)\n"
	      "  -j, --json          print the daemon's result (or error) object as JSON\n"
	      "  -q, --quiet         print nothing when it worked (the exit status says it)\n"
	      "  -t, --timeout MS    bound every step, connecting included (exit 4 past it);\n"
	      "                      for push --await, the reply's; for streams, silence\n"
	      "  -V, --version       print the version\n"
	      "  -h, --help          this text\n"
	      "\n"
	      "exit status: 0 ok, 1 the server replied with an error, 2 usage error,\n"
	      "3 phxd unreachable, 4 timeout, 5 phxd could not do it\n",
	      out);
}

static noreturn void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static noreturn void
die_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("phxctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(phxctl --help for usage)\n", stderr);
	exit(EXIT_USAGE);
}

static void
print_text(const char *json)
{
	puts(json);
	fflush(stdout);
}

static void
print_json(json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	print_text(text);
	free(text);
}

/* --json: the response's "result" (or "error") object, not the envelope. */
static void
print_member(const char *response, const char *member)
{
	json_t *r = json_loads(response ? response : "", JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	json_t *m = json_object_get(r, member);

	if (m != NULL)
		print_json(m);
	json_decref(r);
}

/* Reports a failed call and gives its exit code. */
static int
report(struct phxd_client *c, int rc, const struct opts *o)
{
	const char *code = phxd_error_code(c);

	if (rc == PHXD_EUNREACHABLE) {
		fprintf(stderr, "phxctl: %s\n", phxd_error_message(c));
		return EXIT_UNREACHABLE;
	}
	if (o->json && phxd_last_response(c) && rc == PHXD_EDAEMON)
		print_member(phxd_last_response(c), "error");
	else
		fprintf(stderr, "phxctl: %s: %s\n", code, phxd_error_message(c));
	if (!o->json && phxd_error_json(c)) {
		json_t *err = json_loads(phxd_error_json(c), 0, NULL);
		json_t *resp = json_object_get(err, "response");
		if (resp) {
			char *text = json_dumps(resp, JSON_COMPACT | JSON_ENCODE_ANY);
			fprintf(stderr, "response: %s\n", text);
			free(text);
		}
		json_decref(err);
	}
	if (rc == PHXD_ETIMEOUT)
		return EXIT_TIMEOUT;
	if (rc == PHXD_EINVAL)
		return EXIT_USAGE;
	if (strcmp(code, PHXD_E_REPLY_ERROR) == 0)
		return EXIT_REPLY_ERROR;
	if (strcmp(code, PHXD_E_BAD_REQUEST) == 0 || strcmp(code, PHXD_E_UNKNOWN_CONNECTION) == 0)
		return EXIT_USAGE;
	return EXIT_FAILED;
}

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

/* ---- status, for humans -------------------------------------------------- */

static long long
jint(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

static const char *
jstr(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));
	return v ? v : "";
}

/* Names come from servers and clients: control characters are shown, not
 * sent to the terminal. */
static void
put_safe(const char *s, int width)
{
	int n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			n += printf("\\x%02x", *p);
		else
			n += putchar(*p) != EOF;
	}
	for (; n < width; n++)
		putchar(' ');
}

static const char *
duration(long long ms, char *buf, size_t size)
{
	long long s = ms / 1000;

	if (ms < 1000)
		snprintf(buf, size, "%lldms", ms);
	else if (s < 60)
		snprintf(buf, size, "%.1fs", (double)ms / 1000.0);
	else if (s < 3600)
		snprintf(buf, size, "%lldmin %llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, size, "%lldh %lldmin", s / 3600, s / 60 % 60);
	else
		snprintf(buf, size, "%lldd %lldh", s / 86400, s / 3600 % 24);
	return buf;
}

static const char *
bytes(long long n, char *buf, size_t size)
{
	if (n < 1024)
		snprintf(buf, size, "%lldB", n);
	else if (n < 1024 * 1024)
		snprintf(buf, size, "%.1fK", (double)n / 1024);
	else
		snprintf(buf, size, "%.1fM", (double)n / (1024 * 1024));
	return buf;
}

static void
print_connection(json_t *c)
{
	char a[32], b[32];
	json_t *st = json_object_get(c, "stats"), *pb = json_object_get(c, "push_buffer");
	json_t *outage = json_object_get(c, "outage"), *t;
	bool open = strcmp(jstr(c, "state"), "open") == 0;
	size_t i;

	printf("\n%s ", open ? "*" : "o");
	put_safe(jstr(c, "name"), 0);
	printf(" - %s - %s\n", jstr(c, "state"), jstr(c, "url"));
	if (open) {
		printf("    Up: %s", duration(jint(c, "connected_for_ms"), a, sizeof(a)));
		if (json_object_get(c, "heartbeat_rtt_ms"))
			printf(", heartbeat rtt %lldms", jint(c, "heartbeat_rtt_ms"));
	} else if (outage) {
		printf("    Down: %s, %lld failed attempt%s", duration(jint(outage, "down_for_ms"), a,
							     sizeof(a)),
		       jint(outage, "failed_attempts"), jint(outage, "failed_attempts") == 1 ? "" : "s");
		if (json_object_get(c, "retry_in_ms"))
			printf(", next in %s", duration(jint(c, "retry_in_ms"), a, sizeof(a)));
	} else {
		printf("    Not connected");
	}
	printf("; %lld connect%s, %lld reconnect%s\n", jint(c, "connects"),
	       jint(c, "connects") == 1 ? "" : "s", jint(c, "reconnects"),
	       jint(c, "reconnects") == 1 ? "" : "s");
	if (*jstr(c, "last_error")) {
		printf("    Last error: ");
		put_safe(jstr(c, "last_error"), 0);
		if (json_object_get(c, "last_http_status"))
			printf(" (HTTP %lld)", jint(c, "last_http_status"));
		putchar('\n');
	}
	printf("    Frames: %lld in, %lld out; %lld delivered, %lld pushes sent, %lld failed\n",
	       jint(st, "frames_in"), jint(st, "frames_out"), jint(st, "delivered"),
	       jint(st, "pushes_sent"), jint(st, "pushes_failed"));
	printf("    Push buffer: %lld/%lld pushes, %s/%s\n", jint(pb, "pushes"),
	       jint(pb, "max_pushes"), bytes(jint(pb, "bytes"), a, sizeof(a)),
	       bytes(jint(pb, "max_bytes"), b, sizeof(b)));
	if (json_array_size(json_object_get(c, "topics")) == 0)
		return;
	printf("    %-32s %-8s %9s %9s %13s %s\n", "TOPIC", "STATE", "MSGS IN", "PUSHES",
	       "REPLIES OK/ERR", "LAST MSG");
	json_array_foreach (json_object_get(c, "topics"), i, t) {
		json_t *ts = json_object_get(t, "stats");
		char replies[48], last[48] = "-";
		printf("    ");
		put_safe(jstr(t, "topic"), 32);
		snprintf(replies, sizeof(replies), "%lld/%lld", jint(ts, "replies_ok"),
			 jint(ts, "replies_error"));
		if (!json_is_null(json_object_get(ts, "last_message_ago_ms")))
			snprintf(last, sizeof(last), "%s ago",
				 duration(jint(ts, "last_message_ago_ms"), a, sizeof(a)));
		printf(" %-8s %9lld %9lld %14s %s", jstr(t, "state"), jint(ts, "messages_in"),
		       jint(ts, "pushes_out"), replies, last);
		json_t *err = json_object_get(t, "last_error");
		if (!json_is_null(err) && strcmp(jstr(t, "state"), "joined") != 0) {
			char *text = json_dumps(err, JSON_COMPACT | JSON_ENCODE_ANY);
			printf("  error: ");
			put_safe(text, 0);
			free(text);
		}
		putchar('\n');
	}
}

/* check: every connection open and every wanted topic joined. Says what
 * is not; the exit status is for monitoring and ExecCondition=. */
static int
check_health(json_t *result, bool quiet)
{
	json_t *conns = json_object_get(result, "connections"), *c, *t;
	size_t i, j, nconns = 0, ntopics = 0, bad = 0;

	json_array_foreach (conns, i, c) {
		nconns++;
		if (strcmp(jstr(c, "state"), "open") != 0) {
			bad++;
			printf("connection ");
			put_safe(jstr(c, "name"), 0);
			printf(" is %s", jstr(c, "state"));
			if (*jstr(c, "last_error")) {
				printf(": ");
				put_safe(jstr(c, "last_error"), 0);
			}
			putchar('\n');
		}
		json_array_foreach (json_object_get(c, "topics"), j, t) {
			if (strcmp(jstr(t, "state"), "leaving") == 0)
				continue;	/* not wanted any more */
			ntopics++;
			if (strcmp(jstr(t, "state"), "joined") == 0)
				continue;
			bad++;
			printf("topic ");
			put_safe(jstr(t, "topic"), 0);
			printf(" on ");
			put_safe(jstr(c, "name"), 0);
			printf(" is %s\n", jstr(t, "state"));
		}
	}
	if (bad == 0 && !quiet)
		printf("ok: %zu connection%s open, %zu topic%s joined\n", nconns, nconns == 1 ? "" : "s",
		       ntopics, ntopics == 1 ? "" : "s");
	return bad == 0 ? EXIT_OK : EXIT_UNHEALTHY;
}

/* Like systemctl status: the daemon first, then each connection. */
static void
print_status(json_t *result)
{
	json_t *ipc = json_object_get(result, "ipc"), *conns = json_object_get(result, "connections");
	char a[32], b[32], m[32];
	size_t i, up = 0;
	json_t *c;

	json_array_foreach (conns, i, c)
		up += strcmp(jstr(c, "state"), "open") == 0;
	printf("%s %s - up %s, %lld reload%s\n", up == json_array_size(conns) ? "*" : "o",
	       jstr(result, "daemon"), duration(jint(result, "uptime_ms"), a, sizeof(a)),
	       jint(result, "reloads"), jint(result, "reloads") == 1 ? "" : "s");
	printf("    Connections: %zu/%zu open\n", up, json_array_size(conns));
	printf("    Clients: %lld (%lld requests pending, %lld subscriptions), queued %s, "
	       "fullest %s of %s\n",
	       jint(ipc, "clients"), jint(ipc, "pending"), jint(ipc, "subscriptions"),
	       bytes(jint(ipc, "queued_bytes"), a, sizeof(a)),
	       bytes(jint(ipc, "largest_queue_bytes"), b, sizeof(b)),
	       bytes(jint(ipc, "client_buffer_bytes"), m, sizeof(m)));
	json_array_foreach (conns, i, c)
		print_connection(c);
}

/* Streams: prints each line of the subscription (without its tag), or with
 * --raw only its payload: the JSON, or a binary payload's bytes. */
struct stream_state {
	long seen;
	bool raw;
};

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
	struct stream_state *st = arg;

	(void)sub;
	if (st->raw && strstr(json, "\"payload\"") != NULL)
		print_payload(json, len);
	else
		printf("%.*s\n", (int)len, json);
	fflush(stdout);
	st->seen++;
}

/* True when some connection holds a topic that `topic` (exact, or a prefix
 * ending in '*') names: otherwise a subscription would wait in silence. */
static bool
topic_wanted(struct phxd_client *c, const char *conn, const char *topic)
{
	char *result = NULL;
	size_t plen = strlen(topic);
	bool prefix = plen > 0 && topic[plen - 1] == '*', found = false;
	json_t *r, *cn, *t;
	size_t i, j;

	if (phxd_status(c, conn, &result) != PHXD_OK)
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

/* subscribe / events: prints lines until --count, or --timeout of silence. */
static int
stream(struct phxd_client *c, const char *cmd, const char *topic, const struct opts *o)
{
	struct stream_state st = { .raw = o->raw };
	const char *events[65];
	int rc;

	memcpy(events, o->events, o->nevents * sizeof(char *));
	events[o->nevents] = NULL;
	if (strcmp(cmd, "subscribe") == 0)
		rc = phxd_subscribe(c, o->conn, topic, o->nevents ? events : NULL, on_line, &st,
				    NULL);
	else
		rc = phxd_events(c, o->conn, on_line, &st, NULL);
	if (rc != PHXD_OK)
		return report(c, rc, o);
	if (strcmp(cmd, "subscribe") == 0 && !topic_wanted(c, o->conn, topic))
		fprintf(stderr, "phxctl: warning: no connection holds a topic %s %s: nothing will "
			"arrive until one is joined (phxctl join)\n",
			topic[0] && topic[strlen(topic) - 1] == '*' ? "matching" : "named", topic);
	while (o->count < 0 || st.seen < o->count) {
		rc = phxd_wait(c, o->timeout_ms > 0 ? (int)o->timeout_ms : -1);
		if (rc == PHXD_ETIMEOUT) {
			fprintf(stderr, "phxctl: nothing within %ld ms\n", o->timeout_ms);
			return EXIT_TIMEOUT;
		}
		if (rc != PHXD_OK)
			return report(c, rc, o);
	}
	return EXIT_OK;
}

/* push -l: each line of stdin is one message, pipelined: up to
 * LINES_WINDOW pushes are in flight while the next lines are read. */
#define LINES_WINDOW 1024

struct lines_state {
	const struct opts *o;
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
	if (st->o->await_reply && !st->o->quiet) {
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
		int timeout = st->o->timeout_ms > 0 ? (int)st->o->timeout_ms : -1;
		int r = poll(&pfd, 1, timeout);
		if (r == 0)
			return PHXD_ETIMEOUT;
		if (r > 0 && phxd_dispatch(c) != PHXD_OK)
			return PHXD_EUNREACHABLE;
	}
	return PHXD_OK;
}

static int
push_lines(struct phxd_client *c, const char *topic, const char *event, const struct opts *o)
{
	struct lines_state st = { .o = o };
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	long lineno = 0, bad = 0;
	int rc = PHXD_OK;

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
		json_t *req = json_pack("{s:s, s:s, s:s, s:o}", "op", "push", "topic", topic, "event",
					event, "payload", payload);
		if (o->conn)
			json_object_set_new(req, "conn", json_string(o->conn));
		if (o->await_reply)
			json_object_set_new(req, "await", json_true());
		char *text = json_dumps(req, JSON_COMPACT);
		json_decref(req);
		rc = phxd_send(c, text, on_pushed, &st);
		free(text);
		if (rc != PHXD_OK)
			break;
		st.sent++;
		rc = drain_to(c, &st, LINES_WINDOW - 1);
	}
	free(line);
	if (rc == PHXD_OK)
		rc = drain_to(c, &st, 0);
	if (!o->quiet || rc != PHXD_OK || st.failed || bad)
		fprintf(stderr, "phxctl: %ld line%s sent, %ld failed%s%s, %ld not JSON\n", st.sent,
			st.sent == 1 ? "" : "s", st.failed, st.failed ? " (first: " : "",
			st.failed ? st.first_error : "", bad);
	if (rc == PHXD_ETIMEOUT) {
		fprintf(stderr, "phxctl: %ld answers missing after %ld ms of silence\n",
			st.sent - st.answered, o->timeout_ms);
		return EXIT_TIMEOUT;
	}
	if (rc != PHXD_OK) {
		fprintf(stderr, "phxctl: %s\n", phxd_error_message(c));
		return EXIT_UNREACHABLE;
	}
	return bad ? EXIT_USAGE : st.failed ? EXIT_FAILED : EXIT_OK;
}

static void
need(int nargs, int lo, int hi, const char *what)
{
	if (nargs < lo || nargs > hi)
		die_usage("usage: phxctl %s", what);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "conn", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "await", no_argument, NULL, 'a' },
		{ "binary", no_argument, NULL, 'b' },
		{ "timeout", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'n' },
		{ "event", required_argument, NULL, 'e' },
		{ "openmetrics", no_argument, NULL, 'O' },
		{ "raw", no_argument, NULL, 'r' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "lines", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .timeout_ms = -1, .count = -1 };
	struct phxd_client *c;
	char *result = NULL, *end;
	int opt, rc;

	o.socket = getenv(PHXD_SOCKET_ENV);
	if (o.socket == NULL || o.socket[0] == '\0')
		o.socket = PHXD_DEFAULT_SOCKET;
	opterr = 0;
	/* GNU getopt permutes: options may follow the command ("push T E --await"). */
	while ((opt = getopt_long(argc, argv, ":s:C:jhVt:qlr", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': o.socket = optarg; break;
		case 'C': o.conn = optarg; break;
		case 'j': o.json = true; break;
		case 'a': o.await_reply = true; break;
		case 'b': o.binary = true; break;
		case 'O': o.openmetrics = true; break;
		case 'r': o.raw = true; break;
		case 'q': o.quiet = true; break;
		case 'l': o.lines = true; break;
		case 't':
			errno = 0;
			o.timeout_ms = strtol(optarg, &end, 10);
			if (errno || *end || o.timeout_ms <= 0 || o.timeout_ms > 86400000)
				die_usage("--timeout wants milliseconds (1 to 86400000), not '%s'", optarg);
			break;
		case 'n':
			errno = 0;
			o.count = strtol(optarg, &end, 10);
			if (errno || *end || o.count <= 0)
				die_usage("--count wants a positive number, not '%s'", optarg);
			break;
		case 'e':
			if (o.nevents == 64)
				die_usage("at most 64 --event options");
			o.events[o.nevents++] = optarg;
			break;
		case 'h': usage(stdout); return EXIT_OK;
		case 'V': puts("phxctl " PACKAGE_VERSION); return EXIT_OK;
		case ':': die_usage("option %s needs a value", argv[optind - 1]);
		default: die_usage("unknown option %s", argv[optind - 1]);
		}
	}
	char **args = argv + optind;
	int nargs = argc - optind;
	if (nargs == 0)
		die_usage("a command is needed");
	const char *cmd = args[0];
	static const char *const commands[] = { "status", "join", "leave", "push", "subscribe",
						"events", "presence", "reload", "metrics", "check" };
	bool known = false;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		known |= strcmp(cmd, commands[i]) == 0;
	if (!known)
		die_usage("unknown command '%s'", cmd);

	/* Check the arguments before touching the daemon. */
	char *payload = NULL;
	size_t payload_len = 0;
	if (strcmp(cmd, "status") == 0 || strcmp(cmd, "events") == 0 || strcmp(cmd, "reload") == 0 ||
	    strcmp(cmd, "metrics") == 0 || strcmp(cmd, "check") == 0)
		need(nargs, 1, 1, cmd);
	else if (strcmp(cmd, "join") == 0)
		need(nargs, 2, 3, "join TOPIC [PARAMS]");
	else if (strcmp(cmd, "leave") == 0 || strcmp(cmd, "presence") == 0 ||
		 strcmp(cmd, "subscribe") == 0)
		need(nargs, 2, 2, strcmp(cmd, "subscribe") == 0
					  ? "subscribe TOPIC|PATTERN [--event E]... [--count N]"
					  : "leave|presence TOPIC");
	else if (strcmp(cmd, "push") == 0 && o.lines)
		need(nargs, 3, 3, "push -l TOPIC EVENT < lines (each line a JSON payload)");
	else if (strcmp(cmd, "push") == 0)
		need(nargs, 3, 4, "push TOPIC EVENT [PAYLOAD|-] [--await]");
	if (o.lines && (strcmp(cmd, "push") != 0 || o.binary))
		die_usage("-l is for push, with JSON payloads");
	if (strcmp(cmd, "join") == 0 && nargs == 3) {
		json_error_t jerr;
		json_t *p = json_loads(args[2], 0, &jerr);
		if (!json_is_object(p))
			die_usage("PARAMS must be a JSON object%s%s", p ? "" : ": ", p ? "" : jerr.text);
		json_decref(p);
	}
	if (strcmp(cmd, "push") == 0 && nargs == 4) {
		if (strcmp(args[3], "-") == 0) {
			payload = read_stdin(&payload_len);
		} else {
			payload = strdup(args[3]);
			payload_len = strlen(payload);
		}
		if (!o.binary) {
			json_error_t jerr;
			json_t *p = json_loadb(payload, payload_len, JSON_DECODE_ANY, &jerr);
			if (p == NULL) {
				free(payload);
				die_usage("PAYLOAD is not JSON: %s", jerr.text);
			}
			json_decref(p);
			/* libphxd takes JSON text NUL-terminated */
			payload = realloc(payload, payload_len + 1);
			payload[payload_len] = '\0';
		}
	}

	/* --timeout bounds every step: the hello, and each call after it. */
	rc = phxd_connect_timeout(o.socket, o.timeout_ms > 0 ? (int)o.timeout_ms : 60000, &c);
	if (rc != PHXD_OK) {
		if (rc == PHXD_EUNREACHABLE)
			fprintf(stderr, "phxctl: cannot reach phxd at %s: %s\n", o.socket, strerror(errno));
		else if (rc == PHXD_ETIMEOUT)
			fprintf(stderr, "phxctl: phxd at %s did not answer within %ld ms\n", o.socket,
				o.timeout_ms > 0 ? o.timeout_ms : 60000L);
		else
			fprintf(stderr, "phxctl: phxd at %s did not accept us (error %d)\n", o.socket, rc);
		free(payload);
		return rc == PHXD_EUNREACHABLE ? EXIT_UNREACHABLE
		       : rc == PHXD_ETIMEOUT	 ? EXIT_TIMEOUT
						 : EXIT_FAILED;
	}

	int exit_code = EXIT_OK;
	if (o.lines) {
		exit_code = push_lines(c, args[1], args[2], &o);
		goto out;
	}
	if (strcmp(cmd, "subscribe") == 0 || strcmp(cmd, "events") == 0) {
		exit_code = stream(c, cmd, nargs > 1 ? args[1] : NULL, &o);
		goto out;
	}
	char *response = NULL;
	if (strcmp(cmd, "status") == 0 || strcmp(cmd, "check") == 0) {
		rc = phxd_status(c, o.conn, &result);
	} else if (strcmp(cmd, "join") == 0) {
		rc = phxd_join(c, o.conn, args[1], nargs == 3 ? args[2] : NULL, &response);
	} else if (strcmp(cmd, "leave") == 0) {
		rc = phxd_leave(c, o.conn, args[1]);
	} else if (strcmp(cmd, "push") == 0) {
		unsigned flags = (o.await_reply ? PHXD_PUSH_AWAIT : 0) | (o.binary ? PHXD_PUSH_BINARY : 0);
		rc = phxd_push(c, o.conn, args[1], args[2], payload, payload_len, flags,
			       o.timeout_ms > 0 ? (unsigned)o.timeout_ms : 0, &response);
	} else {
		json_t *req = json_pack("{s:s}", "op", cmd);
		if (o.conn)
			json_object_set_new(req, "conn", json_string(o.conn));
		if (nargs > 1)
			json_object_set_new(req, "topic", json_string(args[1]));
		if (o.openmetrics)
			json_object_set_new(req, "openmetrics", json_true());
		char *text = json_dumps(req, JSON_COMPACT);
		rc = phxd_call(c, text, &result);
		free(text);
		json_decref(req);
	}
	if (rc != PHXD_OK) {
		exit_code = report(c, rc, &o);
	} else if (strcmp(cmd, "check") == 0) {
		json_t *r = json_loads(result, 0, NULL);
		exit_code = check_health(r, o.quiet);
		json_decref(r);
	} else if (o.quiet) {
		/* -q: the exit status says it */
	} else if (o.json) {
		print_member(phxd_last_response(c), "result");
	} else if (strcmp(cmd, "status") == 0) {
		json_t *r = json_loads(result, 0, NULL);
		print_status(r);
		json_decref(r);
	} else if (strcmp(cmd, "metrics") == 0) {
		json_t *r = json_loads(result, 0, NULL);
		fputs(jstr(r, "text"), stdout);
		json_decref(r);
	} else if (strcmp(cmd, "push") == 0 && !o.await_reply) {
		puts("sent");
	} else if (response) {
		print_text(response);
	} else if (strcmp(cmd, "presence") == 0) {
		json_t *r = json_loads(result, 0, NULL);
		print_json(json_object_get(r, "presence"));
		json_decref(r);
	} else {
		puts("ok");
	}
	free(response);
out:
	free(result);
	free(payload);
	phxd_disconnect(c);
	return exit_code;
}
