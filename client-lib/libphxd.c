/* SPDX-License-Identifier: MIT */
/* libphxd: see phxd.h. Allocation failures are returned, never fatal. */
#include "phxd.h"

#include "ipc/phxd-ipc.h"
#include "protocol/base64.h"

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
#define READ_CHUNK 65536

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

/* A line read and parsed, waiting to be handled. Lines are read first and
 * handled after, one at a time: a callback may then call into the library
 * (a blocking call, a send) without the read under it being re-entered. */
struct ready_line {
	STAILQ_ENTRY(ready_line) entry;
	json_t *j;
	char *raw;
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
	char *out;
	size_t out_off, out_len, out_cap;
	struct pending *pending;
	struct sub *subs;
	uint64_t lines;		/* stream lines delivered */
	struct ready_list ready;
	struct waiter *waiters;	/* blocking calls in progress */
	unsigned depth;		/* user callbacks running */
	/* last error and response */
	char code[64];
	char message[512];
	char *error_json;
	char *last_response;
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

static char *
dump_result(json_t *resp)
{
	json_t *r = json_object_get(resp, "result");
	return r ? json_dumps(r, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

static void
set_last_response(struct phxd_client *c, struct ready_line *l)
{
	free(c->last_response);
	c->last_response = l->raw;
	l->raw = NULL;
}

/* The answer to a blocking call in progress: recorded for it. */
static bool
take_answer(struct phxd_client *c, struct ready_line *l)
{
	json_t *id = json_object_get(l->j, "id");
	bool ok = json_is_true(json_object_get(l->j, "ok"));
	uint64_t rid = json_is_integer(id) ? (uint64_t)json_integer_value(id) : 0;
	struct waiter *w;

	if (id == NULL && json_object_get(l->j, "sub") != NULL)
		return false;	/* a stream line */
	for (w = c->waiters; w != NULL; w = w->outer)
		if (!w->done && rid != 0 && w->id == rid)
			break;
	/* An error the daemon could not tie to a request ends the innermost wait. */
	if (w == NULL && rid == 0 && !ok)
		for (w = c->waiters; w != NULL && w->done; w = w->outer)
			;
	if (w == NULL)
		return false;
	set_last_response(c, l);
	w->done = true;
	w->status = ok ? PHXD_OK : daemon_error(c, json_object_get(l->j, "error"));
	w->result = ok ? dump_result(l->j) : NULL;
	return true;
}

static int add_sub(struct phxd_client *c, int rc, char *result, phxd_line_fn fn, void *arg,
		   uint64_t *out);

/* Stream lines to their subscription, answers to their phxd_send callback. */
static void
dispatch_line(struct phxd_client *c, struct ready_line *l)
{
	json_t *j = l->j, *id = json_object_get(j, "id"), *sub = json_object_get(j, "sub");

	if (id == NULL && json_is_integer(sub)) {
		uint64_t sid = (uint64_t)json_integer_value(sub);
		for (struct sub *s = c->subs; s; s = s->next) {
			if (s->id != sid)
				continue;
			json_object_del(j, "sub");
			char *text = json_dumps(j, JSON_COMPACT);
			if (text) {
				c->lines++;
				c->depth++;
				s->fn(s->arg, sid, text, strlen(text));
				c->depth--;
				free(text);
			}
			break;
		}
		return;
	}
	set_last_response(c, l);
	bool ok = json_is_true(json_object_get(j, "ok"));
	uint64_t rid = json_is_integer(id) ? (uint64_t)json_integer_value(id) : 0;
	for (struct pending **pp = &c->pending; rid != 0 && *pp; pp = &(*pp)->next) {
		if ((*pp)->id != rid)
			continue;
		struct pending *p = *pp;
		*pp = p->next;
		int status = ok ? PHXD_OK : daemon_error(c, json_object_get(j, "error"));
		char *result = ok ? dump_result(j) : NULL;
		/* A stream is registered before its first line can be handled. */
		if (status == PHXD_OK && p->line_fn != NULL) {
			status = add_sub(c, PHXD_OK, result, p->line_fn, p->line_arg, NULL);
			result = status == PHXD_OK ? dump_result(j) : NULL;
		}
		c->depth++;
		p->fn(p->arg, c, status, result, result ? strlen(result) : 0);
		c->depth--;
		free(result);
		free(p);
		break;
	}
}

static void
line_free(struct ready_line *l)
{
	json_decref(l->j);
	free(l->raw);
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

/* Parses one line into the ready queue. */
static int
queue_line(struct phxd_client *c, const char *line, size_t len)
{
	struct ready_line *l;
	json_t *j = json_loadb(line, len, 0, NULL);

	if (!json_is_object(j)) {
		json_decref(j);
		return fail(c, PHXD_EPROTOCOL, "protocol", "phxd sent a line that is not an object");
	}
	/* Responses are kept whole for phxd_last_response(); stream lines are not. */
	bool stream = json_object_get(j, "id") == NULL && json_object_get(j, "sub") != NULL;
	l = calloc(1, sizeof(*l));
	if (l == NULL || (!stream && (l->raw = strndup(line, len)) == NULL)) {
		free(l);
		json_decref(j);
		return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
	}
	l->j = j;
	STAILQ_INSERT_TAIL(&c->ready, l, entry);
	return PHXD_OK;
}

/* Reads what the socket has (once), queues every complete line, then
 * handles them. */
static int
read_some(struct phxd_client *c)
{
	if (c->in_cap - c->in_len < READ_CHUNK) {
		size_t cap = c->in_cap ? c->in_cap * 2 : 2 * READ_CHUNK;
		char *in = realloc(c->in, cap);
		if (in == NULL)
			return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
		c->in = in;
		c->in_cap = cap;
	}
	ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return PHXD_OK;
	if (n <= 0) {
		int rc = lost(c, n == 0 ? "closed the connection" : strerror(errno));
		deliver(c);
		return rc;
	}
	c->in_len += (size_t)n;
	size_t start = 0;
	for (;;) {
		char *nl = memchr(c->in + start, '\n', c->in_len - start);
		if (nl == NULL)
			break;
		size_t len = (size_t)(nl - (c->in + start));
		int rc = queue_line(c, c->in + start, len);
		start += len + 1;
		if (rc == PHXD_ENOMEM)
			return rc;
	}
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	if (c->in_len > MAX_LINE)
		lost(c, "sent an overlong line");
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
	if (c->out_len + len + 1 > c->out_cap) {
		size_t cap = (c->out_len + len + 1) * 2;
		char *out = realloc(c->out, cap);
		if (out == NULL) {
			free(text);
			*status = fail(c, PHXD_ENOMEM, "nomem", "out of memory");
			return 0;
		}
		c->out = out;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, text, len);
	c->out[c->out_len + len] = '\n';
	c->out_len += len + 1;
	free(text);
	*status = PHXD_OK;
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

/* Sends req and waits for its response. Takes req. Safe from a callback:
 * the wait nests, and takes only answers. */
static int
call_json(struct phxd_client *c, json_t *req, char **result)
{
	struct waiter w = { .outer = c->waiters };
	int status;
	uint64_t deadline;

	if (result)
		*result = NULL;
	if (c->dead) {
		json_decref(req);
		return lost(c, "the connection is closed");
	}
	w.id = queue_request(c, req, &status);
	json_decref(req);
	if (w.id == 0)
		return status;
	c->waiters = &w;
	deadline = c->timeout_ms < 0 ? 0 : now_ms() + (uint64_t)c->timeout_ms;
	while (!w.done) {
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
		if (status != PHXD_OK && !w.done)
			break;
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
	return c->last_response;
}

void
phxd_set_timeout(struct phxd_client *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms;
}

int
phxd_call(struct phxd_client *c, const char *request, char **result)
{
	json_t *req = json_loads(request, 0, NULL);

	if (result)
		*result = NULL;
	if (req == NULL)
		return fail(c, PHXD_EINVAL, "invalid", "the request is not JSON");
	return call_json(c, req, result);
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
	if (response)
		*response = NULL;
	if (rc != PHXD_OK || result == NULL || response == NULL) {
		free(result);
		return rc;
	}
	json_t *r = json_loads(result, 0, NULL);
	free(result);
	json_t *resp = json_object_get(r, "response");
	*response = resp ? json_dumps(resp, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	json_decref(r);
	if (resp && *response == NULL)
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

int
phxd_push(struct phxd_client *c, const char *conn, const char *topic, const char *event,
	  const char *payload, size_t payload_len, unsigned flags, unsigned timeout_ms,
	  char **response)
{
	json_t *req = json_pack("{s:s, s:s, s:s}", "op", "push", "topic", topic, "event", event);
	char *result;
	int saved_timeout = c->timeout_ms, rc;

	set_conn(req, conn);
	if (flags & PHXD_PUSH_BINARY) {
		char *b64 = malloc(BASE64_ENCODED_SIZE(payload_len));
		if (b64 == NULL) {
			json_decref(req);
			return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
		}
		base64_encode(payload, payload_len, true, b64);
		json_object_set_new(req, "payload_b64", json_string(b64));
		free(b64);
	} else if (payload) {
		json_t *p = json_loads(payload, JSON_DECODE_ANY, NULL);
		if (p == NULL) {
			json_decref(req);
			return fail(c, PHXD_EINVAL, "invalid", "the payload is not JSON");
		}
		json_object_set_new(req, "payload", p);
	}
	if (flags & PHXD_PUSH_AWAIT)
		json_object_set_new(req, "await", json_true());
	if (timeout_ms) {
		json_object_set_new(req, "timeout_ms", json_integer(timeout_ms));
		/* phxd answers at the push's timeout; wait a little longer for
		 * its answer rather than giving up first. */
		if (c->timeout_ms >= 0 && (unsigned)c->timeout_ms < timeout_ms + 1000)
			c->timeout_ms = (int)(timeout_ms + 1000);
	}
	rc = call_json(c, req, &result);
	c->timeout_ms = saved_timeout;
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

static int
send_pending(struct phxd_client *c, const char *request, phxd_reply_fn fn, void *arg,
	     phxd_line_fn line_fn, void *line_arg)
{
	json_t *req = json_loads(request, 0, NULL);
	struct pending *p;
	int status;
	uint64_t id;

	if (c->dead) {
		json_decref(req);
		return lost(c, "the connection is closed");
	}
	if (req == NULL)
		return fail(c, PHXD_EINVAL, "invalid", "the request is not JSON");
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		json_decref(req);
		return fail(c, PHXD_ENOMEM, "nomem", "out of memory");
	}
	id = queue_request(c, req, &status);
	json_decref(req);
	if (id == 0) {
		free(p);
		return status;
	}
	p->id = id;
	p->fn = fn;
	p->arg = arg;
	p->line_fn = line_fn;
	p->line_arg = line_arg;
	p->next = c->pending;
	c->pending = p;
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
