/* SPDX-License-Identifier: MIT */
/* libphxd: see phxd.h. Allocation failures are returned, never fatal. */
#include "phxd.h"

#include "ipc/phxd-ipc.h"
#include "protocol/base64.h"
#include "protocol/json_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE (64u << 20)
#define READ_MIN 4096		/* room for a read on a connection that keeps up */
#define READ_MAX 65536		/* room for a read while a backlog lasts */

struct pending {
	struct pending *next;
	uint64_t id;
	phxd_reply_fn fn;
	void *arg;
	phxd_line_fn line_fn;	/* phxd_send_stream: the stream's callback */
	void *line_arg;
};

struct sub {
	struct sub *next;
	uint64_t id;
	phxd_line_fn fn;
	void *arg;
};

/* A line read and scanned, waiting to be handled. A read is taken whole
 * before its lines are handled, one at a time: a callback may then call
 * into the library (a blocking call, a send) without the read under it
 * being re-entered. Lines are scanned, not parsed into trees: a stream
 * line goes to its callback as the bytes phxd sent, less its {"sub":N,
 * tag; a response's result is a span of it. A stream line that nothing
 * waits before is handled where it was read (take_lines); the rest are
 * copied into ready lines. */
struct ready_line {
	STAILQ_ENTRY(ready_line) entry;
	bool kept;		/* now the last response: freed when the next comes */
	size_t len;
	uint64_t sub;		/* a stream line's subscription; 0: a response */
	size_t body;		/* stream line: its text without the tag, from raw[body] */
	uint64_t id;		/* response: its id; 0: none (null) */
	bool ok;
	const char *result;	/* response: the "result" span in raw, or NULL */
	size_t result_len;
	char raw[];		/* the line, NUL-terminated: one allocation a line */
};
STAILQ_HEAD(ready_list, ready_line);

/* A blocking call waiting for its answer. Calls made from callbacks nest:
 * the innermost is first. */
struct waiter {
	struct waiter *outer;
	uint64_t id;
	bool done;
	int status;
	char *result;
};

struct phxd_client {
	int fd;
	bool dead;
	int timeout_ms;
	uint64_t next_id;
	char *in;
	size_t in_len, in_cap;
	bool in_backlog;	/* the last read filled its room: more is waiting */
	char *out;
	size_t out_off, out_len, out_cap;
	/* phxd_send callbacks, oldest first: answers mostly come in order */
	struct pending *pending, **pending_tail;
	struct sub *subs;
	uint64_t lines;		/* stream lines delivered */
	struct ready_list ready;
	struct waiter *waiters;	/* blocking calls in progress */
	unsigned depth;		/* user callbacks running */
	/* last error and response */
	char code[64];
	char message[512];
	char *error_json;
	struct ready_line *last_response;
};

static int
fail(struct phxd_client *c, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int
fail(struct phxd_client *c, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	snprintf(c->code, sizeof(c->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof(c->message), fmt, ap);
	va_end(ap);
	free(c->error_json);
	c->error_json = NULL;
	return status;
}

static int
lost(struct phxd_client *c, const char *why)
{
	c->dead = true;
	return fail(c, PHXD_EUNREACHABLE, "unreachable", "phxd: %s", why);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- lines in ------------------------------------------------------------- */

/* Records a daemon error object and gives the status it means. */
static int
daemon_error(struct phxd_client *c, json_t *err)
{
	const char *code = json_string_value(json_object_get(err, "code"));
	const char *msg = json_string_value(json_object_get(err, "message"));

	fail(c, PHXD_EDAEMON, code ? code : "internal", "%s", msg ? msg : "");
	c->error_json = json_dumps(err, JSON_COMPACT);
	return code && strcmp(code, PHXD_E_TIMEOUT) == 0 ? PHXD_ETIMEOUT : PHXD_EDAEMON;
}

/* The error of a response that failed (the slow path: a tree). */
static int
line_error(struct phxd_client *c, const struct ready_line *l)
{
	json_t *j = json_loadb(l->raw, l->len, 0, NULL);
	int status = daemon_error(c, json_object_get(j, "error"));

	json_decref(j);
	return status;
}

/* The result span as its own string (the caller frees it), or NULL. */
static char *
copy_result(const struct ready_line *l)
{
	return l->result ? strndup(l->result, l->result_len) : NULL;
}

static void
set_last_response(struct phxd_client *c, struct ready_line *l)
{
	free(c->last_response);
	c->last_response = l;
	l->kept = true;
}

/* The answer to a blocking call in progress: recorded for it. */
static bool
take_answer(struct phxd_client *c, struct ready_line *l)
{
	struct waiter *w;

	if (l->sub != 0)
		return false;	/* a stream line */
	for (w = c->waiters; w != NULL; w = w->outer)
		if (!w->done && l->id != 0 && w->id == l->id)
			break;
	/* An error the daemon could not tie to a request ends the innermost wait. */
	if (w == NULL && l->id == 0 && !l->ok)
		for (w = c->waiters; w != NULL && w->done; w = w->outer)
			;
	if (w == NULL)
		return false;
	w->done = true;
	w->status = l->ok ? PHXD_OK : line_error(c, l);
	w->result = l->ok ? copy_result(l) : NULL;
	set_last_response(c, l);
	return true;
}

static int add_sub(struct phxd_client *c, int rc, char *result, phxd_line_fn fn, void *arg,
		   uint64_t *out);

static void
dispatch_stream(struct phxd_client *c, uint64_t sub, const char *json, size_t len)
{
	for (struct sub *s = c->subs; s; s = s->next) {
		if (s->id != sub)
			continue;
		c->lines++;
		c->depth++;
		s->fn(s->arg, sub, json, len);
		c->depth--;
		break;
	}
}

/* Stream lines to their subscription, answers to their phxd_send callback. */
static void
dispatch_line(struct phxd_client *c, struct ready_line *l)
{
	if (l->sub != 0) {
		dispatch_stream(c, l->sub, l->raw + l->body, l->len - l->body);
		return;
	}
	struct pending **pp = &c->pending;
	while (l->id != 0 && *pp != NULL && (*pp)->id != l->id)
		pp = &(*pp)->next;
	if (l->id == 0 || *pp == NULL) {
		set_last_response(c, l);
		return;
	}
	struct pending *p = *pp;
	*pp = p->next;
	if (c->pending_tail == &p->next)
		c->pending_tail = pp;
	int status = l->ok ? PHXD_OK : line_error(c, l);
	char *result = l->ok ? copy_result(l) : NULL;
	/* A stream is registered before its first line can be handled. */
	if (status == PHXD_OK && p->line_fn != NULL) {
		status = add_sub(c, PHXD_OK, result, p->line_fn, p->line_arg, NULL);
		result = status == PHXD_OK ? copy_result(l) : NULL;
	}
	set_last_response(c, l);
	c->depth++;
	p->fn(p->arg, c, status, result, result ? strlen(result) : 0);
	c->depth--;
	free(result);
	free(p);
}

static void
line_free(struct ready_line *l)
{
	if (!l->kept)
		free(l);
}

/* Every phxd_send callback still waiting gets status (the connection is
 * gone, or being closed). */
static void
fail_pending(struct phxd_client *c, int status)
{
	struct pending *p;

	while ((p = c->pending) != NULL) {
		c->pending = p->next;
		if (c->pending == NULL)
			c->pending_tail = &c->pending;
		c->depth++;
		p->fn(p->arg, c, status, NULL, 0);
		c->depth--;
		free(p);
	}
}

/* Handles the lines read. Inside a callback only the answers of blocking
 * calls are taken; the rest waits until the callback has returned. */
static void
deliver(struct phxd_client *c)
{
	struct ready_line *l, *next;

	if (c->depth > 0) {
		for (l = STAILQ_FIRST(&c->ready); l != NULL; l = next) {
			next = STAILQ_NEXT(l, entry);
			if (take_answer(c, l)) {
				STAILQ_REMOVE(&c->ready, l, ready_line, entry);
				line_free(l);
			}
		}
		return;
	}
	while ((l = STAILQ_FIRST(&c->ready)) != NULL) {
		STAILQ_REMOVE_HEAD(&c->ready, entry);
		if (!take_answer(c, l))
			dispatch_line(c, l);
		line_free(l);
	}
	if (c->dead)
		fail_pending(c, PHXD_EUNREACHABLE);
}

/* A stream line starts with its tag, {"sub":N, (ipc_encode_tag): N, and
 * where the rest begins; 0 when the line is not one. */
static uint64_t
stream_tag(const char *line, size_t len, size_t *rest)
{
	static const char tag[] = "{\"sub\":";
	uint64_t sub = 0;
	size_t i = sizeof(tag) - 1;

	if (len < i + 2 || memcmp(line, tag, i) != 0)
		return 0;
	for (; i < len && line[i] >= '0' && line[i] <= '9' && sub < UINT64_MAX / 10; i++)
		sub = sub * 10 + (uint64_t)(line[i] - '0');
	if (i >= len || line[i] != ',')
		return 0;
	*rest = i;
	return sub;
}

/* A response: {"id":N|null,"ok":B,"result"|"error":V}, in any order.
 * Validates the whole line. */
static bool
scan_response(struct ready_line *l)
{
	struct json_cursor cur;
	bool seen_ok = false;

	const char *key, *val;
	size_t klen;
	bool esc;
	unsigned n = 0;
	enum json_member m;

	json_cursor_init(&cur, l->raw, l->len);
	if (!json_expect(&cur, '{'))
		return false;
	while ((m = json_next_member(&cur, &n, &key, &klen, &esc)) == JSON_MEMBER) {
		val = cur.p;
		enum json_kind kind = json_peek(&cur);
		if (!json_skip_value(&cur))
			return false;
		if (klen == 2 && memcmp(key, "id", 2) == 0) {
			l->id = 0;
			if (kind == JSON_KIND_NUMBER)
				l->id = strtoull(val, NULL, 10);
		} else if (klen == 2 && memcmp(key, "ok", 2) == 0) {
			seen_ok = kind == JSON_KIND_TRUE || kind == JSON_KIND_FALSE;
			l->ok = kind == JSON_KIND_TRUE;
		} else if (klen == 6 && memcmp(key, "result", 6) == 0) {
			l->result = val;
			l->result_len = (size_t)(cur.p - val);
		}
	}
	json_skip_ws(&cur);
	return m == JSON_MEMBERS_END && cur.p == cur.end && seen_ok;
}

/* What phxd sends is checked, not trusted: a stream line's text, its tag
 * replaced by '{', is one valid object. */
static int
check_stream_text(struct phxd_client *c, const char *json, size_t len)
{
	const char *why;

	if (!json_validate(json, len, &why))
		return fail(c, PHXD_EPROTOCOL, "protocol", "phxd sent a stream line that is "
			    "not one JSON object");
	return PHXD_OK;
}

/* Scans one line into the ready queue. */
static int
queue_line(struct phxd_client *c, const char *line, size_t len)
{
	struct ready_line *l = malloc(sizeof(*l) + len + 1);
	int rc;

	if (l == NULL)
		return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
	*l = (struct ready_line){ .len = len };
	memcpy(l->raw, line, len);
	l->raw[len] = '\0';
	if ((l->sub = stream_tag(line, len, &l->body)) != 0) {
		l->raw[l->body] = '{';	/* the rest of the object, as its own */
		if ((rc = check_stream_text(c, l->raw + l->body, len - l->body)) != PHXD_OK) {
			line_free(l);
			return rc;
		}
	} else if (!scan_response(l)) {
		line_free(l);
		return fail(c, PHXD_EPROTOCOL, "protocol", "phxd sent a line that is not a response");
	}
	STAILQ_INSERT_TAIL(&c->ready, l, entry);
	return PHXD_OK;
}

/* The room a read wants with `held` bytes of a line already in hand. */
static size_t
room_wanted(const struct phxd_client *c, size_t held)
{
	return held + (c->in_backlog ? READ_MAX : READ_MIN);
}

/* A buffer of cap bytes (0: none yet), doubled until it holds want. */
static size_t
room_for(size_t cap, size_t want)
{
	for (cap = cap ? cap : READ_MIN; cap < want; cap *= 2)
		;
	return cap;
}

/*
 * The input buffer is small while the connection keeps up, and grows
 * while a backlog lasts or a line is long: a process with a thousand
 * connections holds a thousand of them, and room the allocator shares
 * costs less than a large buffer each (a mapping of its own).
 */
static bool
make_room(struct phxd_client *c)
{
	size_t want = room_wanted(c, c->in_len), cap;

	if (c->in_cap >= want)
		return true;
	cap = room_for(c->in_cap, want);
	char *in = realloc(c->in, cap);
	if (in == NULL)
		return false;
	c->in = in;
	c->in_cap = cap;
	return true;
}

/* Once a backlog or a long line is read, the room it took goes back. */
static void
give_back_room(struct phxd_client *c)
{
	if (c->in_len == 0 && !c->in_backlog && c->in_cap > READ_MIN) {
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
}

/* Moves what follows the whole lines just read (the start of a line) out
 * of the input buffer, and the buffer out of the client: the lines stay
 * where they were read while they are handled, and a callback's blocking
 * call reads into a buffer of its own. */
static bool
keep_partial_line(struct phxd_client *c, size_t whole)
{
	size_t rest = c->in_len - whole;

	if (rest == 0) {
		c->in = NULL;
		c->in_cap = c->in_len = 0;
		return true;
	}
	size_t cap = room_for(0, room_wanted(c, rest));
	char *in = malloc(cap);
	if (in == NULL)
		return false;
	memcpy(in, c->in + whole, rest);
	c->in = in;
	c->in_cap = cap;
	c->in_len = rest;
	return true;
}

/*
 * Handles the whole lines read, each ending in '\n'. A stream line that
 * nothing waits before, outside any callback, goes to its callback from
 * where it was read, neither copied nor allocated: the common case of a
 * reader that keeps up. The rest are queued as ready lines, and so are all
 * that follow a callback whose blocking call read on: what that read
 * queued came later, and stays behind this read's lines.
 */
static int
take_lines(struct phxd_client *c, char *lines, size_t len)
{
	struct ready_list later;
	bool direct = c->depth == 0;
	size_t start = 0;
	int rc = PHXD_OK;

	STAILQ_INIT(&later);
	while (start < len && rc != PHXD_ENOMEM) {
		char *line = lines + start;
		size_t n = (size_t)((char *)memchr(line, '\n', len - start) - line), body;
		uint64_t sub;
		start += n + 1;
		if (!direct || !STAILQ_EMPTY(&c->ready) || (sub = stream_tag(line, n, &body)) == 0) {
			rc = queue_line(c, line, n);
			continue;
		}
		line[body] = '{';	/* the rest of the object, as its own */
		line[n] = '\0';
		if (check_stream_text(c, line + body, n - body) != PHXD_OK)
			continue;
		dispatch_stream(c, sub, line + body, n - body);
		if (!STAILQ_EMPTY(&c->ready)) {
			STAILQ_CONCAT(&later, &c->ready);
			direct = false;
		}
	}
	STAILQ_CONCAT(&c->ready, &later);
	return rc;
}

/* Reads what the socket has (once), hands on every complete line. */
static int
read_some(struct phxd_client *c)
{
	if (!make_room(c))
		return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
	size_t room = c->in_cap - c->in_len;
	ssize_t n = recv(c->fd, c->in + c->in_len, room, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return PHXD_OK;
	if (n <= 0) {
		int rc = lost(c, n == 0 ? "closed the connection" : strerror(errno));
		deliver(c);
		return rc;
	}
	c->in_backlog = (size_t)n == room;
	c->in_len += (size_t)n;
	char *last = memrchr(c->in + c->in_len - n, '\n', (size_t)n);
	if (last != NULL) {
		size_t whole = (size_t)(last - c->in) + 1;
		char *lines = c->in;
		size_t cap = c->in_cap;
		if (!keep_partial_line(c, whole))
			return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
		int rc = take_lines(c, lines, whole);
		if (c->in == NULL) {
			c->in = lines;
			c->in_cap = cap;
		} else {
			free(lines);
		}
		if (rc == PHXD_ENOMEM) {
			c->dead = true;	/* the lines after the failure are gone */
			deliver(c);
			return fail(c, PHXD_ENOMEM, "nomem", "out of memory: lines from phxd were lost, "
				    "and the connection with them");
		}
	}
	if (c->in_len > MAX_LINE)
		lost(c, "sent an overlong line");
	give_back_room(c);
	deliver(c);
	return c->dead ? PHXD_EUNREACHABLE : PHXD_OK;
}

/* ---- lines out ------------------------------------------------------------ */

static int
write_some(struct phxd_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return PHXD_OK;
		if (n <= 0)
			return lost(c, strerror(errno));
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return PHXD_OK;
}

/* Room for n more bytes of output, at c->out + c->out_len. */
static int
out_room(struct phxd_client *c, size_t n)
{
	if (c->out_len + n > c->out_cap) {
		size_t cap = (c->out_len + n) * 2;
		char *out = realloc(c->out, cap);
		if (out == NULL)
			return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
		c->out = out;
		c->out_cap = cap;
	}
	return PHXD_OK;
}

/* Appends a, b and a newline to the output. */
static int
queue_out(struct phxd_client *c, const char *a, size_t alen, const char *b, size_t blen)
{
	int rc = out_room(c, alen + blen + 1);

	if (rc != PHXD_OK)
		return rc;
	memcpy(c->out + c->out_len, a, alen);
	memcpy(c->out + c->out_len + alen, b, blen);
	c->out[c->out_len + alen + blen] = '\n';
	c->out_len += alen + blen + 1;
	return PHXD_OK;
}

/* Queues `request` (an object with "op") with a new id; returns the id or 0. */
static uint64_t
queue_request(struct phxd_client *c, json_t *req, int *status)
{
	char *text;
	size_t len;
	uint64_t id = c->next_id++;

	if (!json_is_object(req) || !json_is_string(json_object_get(req, "op"))) {
		*status = fail(c, PHXD_EINVAL, "invalid", "a request is an object with \"op\"");
		return 0;
	}
	json_object_set_new(req, "id", json_integer((json_int_t)id));
	text = json_dumps(req, JSON_COMPACT);
	if (text == NULL) {
		*status = fail(c, PHXD_ENOMEM, "nomem", "out of memory");
		return 0;
	}
	len = strlen(text);
	if ((*status = queue_out(c, text, len, "", 0)) != PHXD_OK) {
		free(text);
		return 0;
	}
	free(text);
	return id;
}

/* One round of poll: write if we must, read what comes. */
static int
pump(struct phxd_client *c, int wait_ms)
{
	struct pollfd pfd = { c->fd, POLLIN | (c->out_off < c->out_len ? POLLOUT : 0), 0 };
	int r = poll(&pfd, 1, wait_ms);

	if (r < 0 && errno != EINTR)
		return lost(c, strerror(errno));
	if (r <= 0)
		return PHXD_OK;
	if (pfd.revents & POLLOUT) {
		int rc = write_some(c);
		if (rc != PHXD_OK)
			return rc;
	}
	if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
		return read_some(c);
	return PHXD_OK;
}

/* Waits for the answer to request id, queued (and written, as far as the
 * socket takes it) already. Safe from a callback: the wait nests, and
 * takes only answers. */
static int
wait_answer(struct phxd_client *c, uint64_t id, char **result)
{
	struct waiter w = { .outer = c->waiters, .id = id };
	uint64_t deadline;
	int status;

	if (result)
		*result = NULL;
	c->waiters = &w;
	deadline = c->timeout_ms < 0 ? 0 : now_ms() + (uint64_t)c->timeout_ms;
	/* Out at once: a poll first would only say that the socket is writable. */
	status = write_some(c);
	while (!w.done && status == PHXD_OK) {
		int wait = -1;
		if (deadline) {
			uint64_t now = now_ms();
			if (now >= deadline) {
				status = fail(c, PHXD_ETIMEOUT, "timeout",
					      "no answer from phxd within %d ms", c->timeout_ms);
				break;
			}
			wait = (int)(deadline - now);
		}
		status = pump(c, wait);
	}
	c->waiters = w.outer;
	if (!w.done)
		return status;
	if (result)
		*result = w.result;
	else
		free(w.result);
	return w.status;
}

/* Sends req and waits for its response. Takes req. */
static int
call_json(struct phxd_client *c, json_t *req, char **result)
{
	uint64_t id;
	int status;

	if (result)
		*result = NULL;
	if (c->dead) {
		json_decref(req);
		return lost(c, "the connection is closed");
	}
	id = queue_request(c, req, &status);
	json_decref(req);
	if (id == 0)
		return status;
	return wait_answer(c, id, result);
}

/* ---- public API ---------------------------------------------------------------- */

int
phxd_connect(const char *path, struct phxd_client **out)
{
	return phxd_connect_timeout(path, 60000, out);
}

int
phxd_connect_timeout(const char *path, int timeout_ms, struct phxd_client **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct phxd_client *c;
	int rc;

	*out = NULL;
	if (path == NULL) {
		path = getenv(PHXD_SOCKET_ENV);
		if (path == NULL || path[0] == '\0')
			path = PHXD_DEFAULT_SOCKET;
	}
	if (strlen(path) >= sizeof(sa.sun_path))
		return PHXD_EINVAL;
	strcpy(sa.sun_path, path);
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return PHXD_ENOMEM;
	c->timeout_ms = timeout_ms;
	c->pending_tail = &c->pending;
	STAILQ_INIT(&c->ready);
	c->next_id = 1;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = errno;
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		errno = rc;
		return PHXD_EUNREACHABLE;
	}
	rc = call_json(c, json_pack("{s:s, s:i}", "op", "hello", "version", PHXD_IPC_VERSION), NULL);
	if (rc != PHXD_OK) {
		phxd_disconnect(c);
		return rc;
	}
	*out = c;
	return PHXD_OK;
}

void
phxd_disconnect(struct phxd_client *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	/* as when phxd goes away: no callback is left waiting */
	fail_pending(c, PHXD_EUNREACHABLE);
	struct ready_line *l;
	while ((l = STAILQ_FIRST(&c->ready)) != NULL) {
		STAILQ_REMOVE_HEAD(&c->ready, entry);
		line_free(l);
	}
	while (c->subs) {
		struct sub *s = c->subs;
		c->subs = s->next;
		free(s);
	}
	free(c->in);
	free(c->out);
	free(c->error_json);
	free(c->last_response);
	free(c);
}

const char *
phxd_error_code(const struct phxd_client *c)
{
	return c->code;
}

const char *
phxd_error_message(const struct phxd_client *c)
{
	return c->message;
}

const char *
phxd_error_json(const struct phxd_client *c)
{
	return c->error_json;
}

const char *
phxd_last_response(const struct phxd_client *c)
{
	return c->last_response ? c->last_response->raw : NULL;
}

void
phxd_set_timeout(struct phxd_client *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms;
}

static uint64_t queue_text(struct phxd_client *c, const char *request, int *status);

int
phxd_call(struct phxd_client *c, const char *request, char **result)
{
	uint64_t id;
	int status;

	if (result)
		*result = NULL;
	if (c->dead)
		return lost(c, "the connection is closed");
	if ((id = queue_text(c, request, &status)) == 0)
		return status;
	return wait_answer(c, id, result);
}

static void
set_conn(json_t *req, const char *conn)
{
	if (conn)
		json_object_set_new(req, "conn", json_string(conn));
}

int
phxd_status(struct phxd_client *c, const char *conn, char **result)
{
	json_t *req = json_pack("{s:s}", "op", "status");

	set_conn(req, conn);
	return call_json(c, req, result);
}

/* The "response" member of a result, as its own JSON text. */
static int
take_response(struct phxd_client *c, int rc, char *result, char **response)
{
	struct json_cursor cur;
	const char *key, *value = NULL;
	size_t klen, value_len = 0;
	bool esc;
	unsigned n = 0;

	if (response)
		*response = NULL;
	if (rc != PHXD_OK || result == NULL || response == NULL) {
		free(result);
		return rc;
	}
	/* The result was checked as JSON when its line came in: only its
	 * "response" is looked for, and kept as the text the server sent. */
	json_cursor_init(&cur, result, strlen(result));
	if (json_expect(&cur, '{'))
		while (json_next_member(&cur, &n, &key, &klen, &esc) == JSON_MEMBER) {
			json_skip_ws(&cur);
			const char *v = cur.p;
			if (!json_skip_value(&cur))
				break;
			if (!esc && klen == 8 && memcmp(key, "response", 8) == 0) {
				value = v;
				value_len = (size_t)(cur.p - v);
			}
		}
	*response = value ? strndup(value, value_len) : NULL;
	free(result);
	if (value && *response == NULL)
		return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
	return PHXD_OK;
}

/* {"status":"stored","id":N}: *response = "N" */
static int
take_stored_id(struct phxd_client *c, int rc, char *result, char **response)
{
	if (response)
		*response = NULL;
	if (rc != PHXD_OK || result == NULL || response == NULL) {
		free(result);
		return rc;
	}
	json_t *r = json_loads(result, 0, NULL);
	json_t *id = json_object_get(r, "id");
	free(result);
	if (!json_is_integer(id)) {
		json_decref(r);
		return fail(c, PHXD_EPROTOCOL, "protocol", "no id in the answer to a durable push");
	}
	char num[24];
	snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(id));
	json_decref(r);
	if ((*response = strdup(num)) == NULL)
		return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
	return PHXD_OK;
}

static int
join(struct phxd_client *c, const char *conn, const char *topic, const char *payload,
     const char *hold, char **response)
{
	json_t *req = json_pack("{s:s, s:s, s:s}", "op", "join", "topic", topic, "hold", hold);
	char *result;

	if (response)
		*response = NULL;
	if (req == NULL)
		return fail(c, PHXD_EINVAL, "invalid", "the topic is not UTF-8");
	set_conn(req, conn);
	if (payload) {
		json_t *p = json_loads(payload, 0, NULL);
		if (!json_is_object(p)) {
			json_decref(p);
			json_decref(req);
			return fail(c, PHXD_EINVAL, "invalid", "the join payload is not a JSON object");
		}
		json_object_set_new(req, "payload", p);
	}
	int rc = call_json(c, req, &result);
	return take_response(c, rc, result, response);
}

int
phxd_join(struct phxd_client *c, const char *conn, const char *topic, const char *payload,
	  char **response)
{
	return join(c, conn, topic, payload, "daemon", response);
}

int
phxd_hold(struct phxd_client *c, const char *conn, const char *topic, const char *payload,
	  char **response)
{
	return join(c, conn, topic, payload, "client", response);
}

int
phxd_leave(struct phxd_client *c, const char *conn, const char *topic)
{
	json_t *req = json_pack("{s:s, s:s}", "op", "leave", "topic", topic);

	set_conn(req, conn);
	return call_json(c, req, NULL);
}

/* A notification waits for room here: at most this much unsent. */
#define NOTIFY_BACKLOG (1u << 20)

/* "key":"escaped value", */
static char *
put_member(char *p, const char *key, const char *value)
{
	size_t klen = strlen(key);

	*p++ = '"';
	memcpy(p, key, klen);
	p += klen;
	*p++ = '"';
	*p++ = ':';
	p += json_escape(value, strlen(value), p);
	*p++ = ',';
	return p;
}

static char *
put_text(char *p, const char *text, size_t len)
{
	memcpy(p, text, len);
	return p + len;
}

#define PUT_LITERAL(p, s) put_text((p), (s), sizeof(s) - 1)

/*
 * Queues a push's line, written here rather than built as a tree: the
 * members phxd reads in one pass (docs/ipc.md), with the payload as the
 * caller's text. payload: JSON (checked), or payload_len bytes with
 * PHXD_PUSH_BINARY; JSON over several lines is put on one where
 * lines_ok, refused otherwise. id 0: a notification; timeout_ms 0: none.
 */
static int
queue_push(struct phxd_client *c, const char *conn, const char *topic, const char *event,
	   const char *payload, size_t payload_len, unsigned flags, unsigned timeout_ms,
	   uint64_t id, bool lines_ok)
{
	const char *why;
	char *b64 = NULL, *p;
	size_t plen;
	int rc;

	if (flags & PHXD_PUSH_BINARY) {
		if ((b64 = malloc(BASE64_ENCODED_SIZE(payload_len))) == NULL)
			return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
		base64_encode(payload, payload_len, true, b64);
		payload = b64;
		plen = strlen(b64);
	} else {
		if (payload == NULL)
			payload = "{}";
		plen = strlen(payload);
		if (!json_validate(payload, plen, &why))
			return fail(c, PHXD_EINVAL, "invalid", "the payload is not JSON");
		if (!lines_ok && memchr(payload, '\n', plen) != NULL)
			return fail(c, PHXD_EINVAL, "invalid", "the payload is not on one line");
	}
	/* written in place: room for the worst case costs less than counting
	 * (the names, the literals, two numbers and the newline take under
	 * 256 bytes) */
	rc = out_room(c, 256 + json_escaped_max(strlen(topic)) + json_escaped_max(strlen(event)) +
			     (conn ? json_escaped_max(strlen(conn)) : 0) + plen);
	if (rc != PHXD_OK) {
		free(b64);
		return rc;
	}
	p = PUT_LITERAL(c->out + c->out_len, "{\"op\":\"push\",");
	if (conn)
		p = put_member(p, "conn", conn);
	p = put_member(p, "topic", topic);
	p = put_member(p, "event", event);
	if (b64) {
		p = PUT_LITERAL(p, "\"payload_b64\":\"");
		p = put_text(p, b64, plen);
		*p++ = '"';
	} else {
		p = PUT_LITERAL(p, "\"payload\":");
		p += json_copy_one_line(payload, plen, p);
	}
	if (flags & PHXD_PUSH_AWAIT)
		p = PUT_LITERAL(p, ",\"await\":true");
	if (flags & PHXD_PUSH_DURABLE)
		p = PUT_LITERAL(p, ",\"durable\":true");
	if (timeout_ms) {
		p = PUT_LITERAL(p, ",\"timeout_ms\":");
		p += json_put_uint(timeout_ms, p);
	}
	if (id) {
		p = PUT_LITERAL(p, ",\"id\":");
		p += json_put_uint(id, p);
	}
	*p++ = '}';
	*p++ = '\n';
	c->out_len = (size_t)(p - c->out);
	free(b64);
	return PHXD_OK;
}

int
phxd_notify(struct phxd_client *c, const char *conn, const char *topic, const char *event,
	    const char *payload, size_t payload_len, unsigned flags)
{
	int rc;

	if (c->dead)
		return lost(c, "the connection is closed");
	if (topic == NULL || event == NULL || (flags & PHXD_PUSH_AWAIT))
		return fail(c, PHXD_EINVAL, "invalid", "a notification has a topic and an event, "
			    "and no answer to await");
	rc = queue_push(c, conn, topic, event, payload, payload_len, flags, 0, 0, false);
	if (rc != PHXD_OK)
		return rc;
	/* Bounded: past the backlog, wait for phxd to read (the timeout). */
	uint64_t deadline = c->timeout_ms < 0 ? 0 : now_ms() + (uint64_t)c->timeout_ms;
	while ((rc = write_some(c)) == PHXD_OK && c->out_len - c->out_off > NOTIFY_BACKLOG) {
		int wait = deadline ? (int)(deadline > now_ms() ? deadline - now_ms() : 0) : -1;
		if (wait == 0)
			return fail(c, PHXD_ETIMEOUT, "timeout", "phxd read nothing for %d ms",
				    c->timeout_ms);
		if ((rc = pump(c, wait)) != PHXD_OK)
			return rc;
	}
	return rc;
}

int
phxd_push(struct phxd_client *c, const char *conn, const char *topic, const char *event,
	  const char *payload, size_t payload_len, unsigned flags, unsigned timeout_ms,
	  char **response)
{
	int saved_timeout = c->timeout_ms, rc;
	char *result;
	uint64_t id;

	if (response)
		*response = NULL;
	if (c->dead)
		return lost(c, "the connection is closed");
	if (topic == NULL || event == NULL)
		return fail(c, PHXD_EINVAL, "invalid", "a push has a topic and an event");
	id = c->next_id++;
	rc = queue_push(c, conn, topic, event, payload, payload_len, flags, timeout_ms, id, true);
	if (rc != PHXD_OK)
		return rc;
	/* phxd answers at the push's timeout; wait a little longer for its
	 * answer rather than giving up first. */
	if (timeout_ms && c->timeout_ms >= 0 && (unsigned)c->timeout_ms < timeout_ms + 1000)
		c->timeout_ms = (int)(timeout_ms + 1000);
	rc = wait_answer(c, id, &result);
	c->timeout_ms = saved_timeout;
	if (flags & PHXD_PUSH_DURABLE)
		return take_stored_id(c, rc, result, response);
	return take_response(c, rc, result, response);
}

static int
add_sub(struct phxd_client *c, int rc, char *result, phxd_line_fn fn, void *arg, uint64_t *out)
{
	json_t *r;
	struct sub *s;

	if (rc != PHXD_OK) {
		free(result);
		return rc;
	}
	r = json_loads(result ? result : "", 0, NULL);
	free(result);
	if (!json_is_integer(json_object_get(r, "sub"))) {
		json_decref(r);
		return fail(c, PHXD_EPROTOCOL, "protocol", "no subscription id in the response");
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		json_decref(r);
		return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
	}
	s->id = (uint64_t)json_integer_value(json_object_get(r, "sub"));
	s->fn = fn;
	s->arg = arg;
	s->next = c->subs;
	c->subs = s;
	json_decref(r);
	if (out)
		*out = s->id;
	return PHXD_OK;
}

int
phxd_subscribe(struct phxd_client *c, const char *conn, const char *topic,
	       const char *const *events, phxd_line_fn fn, void *arg, uint64_t *sub)
{
	json_t *req = json_pack("{s:s, s:s}", "op", "subscribe", "topic", topic);
	char *result;

	set_conn(req, conn);
	if (events) {
		json_t *a = json_array();
		for (; *events; events++)
			json_array_append_new(a, json_string(*events));
		json_object_set_new(req, "events", a);
	}
	int rc = call_json(c, req, &result);
	return add_sub(c, rc, result, fn, arg, sub);
}

int
phxd_events(struct phxd_client *c, const char *conn, phxd_line_fn fn, void *arg, uint64_t *sub)
{
	json_t *req = json_pack("{s:s}", "op", "events");
	char *result;

	set_conn(req, conn);
	int rc = call_json(c, req, &result);
	return add_sub(c, rc, result, fn, arg, sub);
}

int
phxd_unsubscribe(struct phxd_client *c, uint64_t sub)
{
	json_t *req = json_pack("{s:s, s:I}", "op", "unsubscribe", "sub", (json_int_t)sub);
	int rc = call_json(c, req, NULL);

	for (struct sub **pp = &c->subs; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == sub) {
			struct sub *s = *pp;
			*pp = s->next;
			free(s);
			break;
		}
	}
	return rc;
}

int
phxd_wait(struct phxd_client *c, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : now_ms() + (uint64_t)timeout_ms;
	uint64_t before = c->lines;

	for (;;) {
		int wait = -1;
		if (deadline) {
			uint64_t now = now_ms();
			wait = now >= deadline ? 0 : (int)(deadline - now);
		}
		int rc = pump(c, wait);
		if (rc != PHXD_OK)
			return rc;
		if (c->lines != before)
			return PHXD_OK;
		if (timeout_ms == 0 || (deadline && now_ms() >= deadline))
			return fail(c, PHXD_ETIMEOUT, "timeout", "no stream line within %d ms",
				    timeout_ms);
	}
}

int
phxd_fd(const struct phxd_client *c)
{
	return c->fd;
}

/*
 * A request as the caller wrote it, with "id" put in front: no tree is
 * built. It must be one JSON object with a string "op" and no "id"; one
 * that has an "id", or spans lines, goes through jansson instead.
 */
static uint64_t
queue_text(struct phxd_client *c, const char *request, int *status)
{
	struct json_cursor cur;
	size_t len = strlen(request);
	bool has_op = false, has_id = false;
	const char *body;

	const char *key;
	size_t klen;
	bool esc;
	unsigned n = 0;
	enum json_member m;

	json_cursor_init(&cur, request, len);
	if (!json_expect(&cur, '{'))
		goto invalid;
	body = cur.p;
	while ((m = json_next_member(&cur, &n, &key, &klen, &esc)) == JSON_MEMBER) {
		bool string = json_peek(&cur) == JSON_KIND_STRING;
		if (!json_skip_value(&cur))
			goto invalid;
		has_op |= klen == 2 && memcmp(key, "op", 2) == 0 && string;
		has_id |= klen == 2 && memcmp(key, "id", 2) == 0;
	}
	json_skip_ws(&cur);
	if (m != JSON_MEMBERS_END || cur.p != cur.end)
		goto invalid;
	if (!has_op) {
		*status = fail(c, PHXD_EINVAL, "invalid", "a request is an object with \"op\"");
		return 0;
	}
	if (has_id || memchr(request, '\n', len) != NULL) {
		json_t *req = json_loadb(request, len, 0, NULL);
		uint64_t id = queue_request(c, req, status);
		json_decref(req);
		return id;
	}
	char head[32];
	uint64_t id = c->next_id++;
	int hlen = snprintf(head, sizeof(head), "{\"id\":%llu,", (unsigned long long)id);
	*status = queue_out(c, head, (size_t)hlen, body, len - (size_t)(body - request));
	return *status == PHXD_OK ? id : 0;
invalid:
	*status = fail(c, PHXD_EINVAL, "invalid", "the request is not JSON");
	return 0;
}

static int
send_pending(struct phxd_client *c, const char *request, phxd_reply_fn fn, void *arg,
	     phxd_line_fn line_fn, void *line_arg)
{
	struct pending *p;
	int status;
	uint64_t id;

	if (c->dead)
		return lost(c, "the connection is closed");
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
	id = queue_text(c, request, &status);
	if (id == 0) {
		free(p);
		return status;
	}
	p->id = id;
	p->fn = fn;
	p->arg = arg;
	p->line_fn = line_fn;
	p->line_arg = line_arg;
	*c->pending_tail = p;
	c->pending_tail = &p->next;
	return write_some(c);
}

int
phxd_send(struct phxd_client *c, const char *request, phxd_reply_fn fn, void *arg)
{
	if (fn == NULL)
		return fail(c, PHXD_EINVAL, "invalid", "phxd_send needs a callback");
	return send_pending(c, request, fn, arg, NULL, NULL);
}

int
phxd_send_stream(struct phxd_client *c, const char *request, phxd_line_fn line_fn,
		 void *line_arg, phxd_reply_fn fn, void *arg)
{
	if (fn == NULL || line_fn == NULL)
		return fail(c, PHXD_EINVAL, "invalid", "phxd_send_stream needs both callbacks");
	return send_pending(c, request, fn, arg, line_fn, line_arg);
}

bool
phxd_want_write(const struct phxd_client *c)
{
	return c->out_off < c->out_len;
}

int
phxd_dispatch(struct phxd_client *c)
{
	int rc;

	if (c->dead)
		return lost(c, "the connection is closed");
	rc = write_some(c);
	if (rc != PHXD_OK)
		return rc;
	return read_some(c);
}
