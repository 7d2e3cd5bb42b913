#include "ipc.h"

#include "daemon/log.h"
#include "daemon/strmap.h"
#include "daemon/xmalloc.h"
#include "protocol/base64.h"
#include "protocol/json_scan.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

struct ipc_sub {
	struct ipc_sub *next_in_client;
	struct ipc_sub *next_in_index, *prev_in_index;
	struct ipc_client *client;
	uint64_t id;
	enum ipc_sub_kind kind;
	char *conn;		/* NULL: any */
	char *topic;		/* exact topic, or prefix when pattern */
	size_t topic_len;
	bool pattern;
	char **events;		/* NULL: any */
	size_t nevents;
	char tag[32];		/* {"sub":N, */
	size_t tag_len;
};

struct ipc_client {
	struct ipc_client *prev, *next;
	struct ipc_server *srv;
	struct bufferevent *bev;
	int refs;
	bool dead;		/* gone or cut off: nothing more is written */
	bool closing;		/* free once the output is flushed */
	struct event *linger_ev;
	uid_t uid;
	pid_t pid;
	uint64_t serial;
	struct ipc_sub *subs;
};

/* Index of subscriptions: exact topics in a map, patterns and event
 * streams in lists; each list is doubly linked so unsubscribing is O(1). */
struct sub_head {
	struct ipc_sub *first;
};

struct ipc_server {
	struct phxd *d;
	int listen_fd;
	bool activated;
	char *path;		/* unlinked at exit when we created it */
	struct event *accept_ev, *accept_pause_ev;
	struct ipc_client *clients;
	size_t nclients;
	uint64_t next_sub;
	struct strmap exact;	/* topic -> struct sub_head */
	struct sub_head patterns, events;
};

struct ipc_pending {
	struct ipc_client *client;
	json_t *id;
};

/* A line shared by many subscribers' output buffers. */
struct shared_line {
	int refs;
	size_t len;
	char data[];
};

static void client_unref(struct ipc_client *c);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void client_lost(struct ipc_client *c, const char *why, bool linger);

/* ---- output ------------------------------------------------------------- */

static bool
client_has_room(struct ipc_client *c, size_t more)
{
	struct evbuffer *out;
	size_t cap = c->srv->d->conf->client_buffer;

	if (c->dead)
		return false;
	out = bufferevent_get_output(c->bev);
	if (evbuffer_get_length(out) + more <= cap)
		return true;
	/* A burst can outrun the loop's own writes: give the kernel what it
	 * takes now, and cut off only a client whose socket is full too. */
	evbuffer_unfreeze(out, 1);	/* the bufferevent keeps the front frozen */
	evbuffer_write(out, bufferevent_getfd(c->bev));
	evbuffer_freeze(out, 1);
	if (evbuffer_get_length(out) + more <= cap)
		return true;
	log_warnx("ipc client pid %ld: %zu bytes unread (client_buffer_bytes %zu); disconnecting it",
		  (long)c->pid, evbuffer_get_length(out), cap);
	/* The reason goes last; the client gets it if it ever reads again. */
	evbuffer_add_printf(out,
			    "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"%s\",\"message\":"
			    "\"output buffer full (%zu bytes); this client read too slowly\"}}\n",
			    PHXD_E_BUFFER_FULL, cap);
	client_lost(c, NULL, true);
	return false;
}

static void
client_write_json(struct ipc_client *c, json_t *obj)
{
	char *text;
	size_t len;

	if (c->dead)
		return;
	text = json_dumps(obj, JSON_COMPACT);
	if (text == NULL)
		fatalx("cannot encode a response");
	len = strlen(text);
	if (client_has_room(c, len + 1)) {
		struct evbuffer *out = bufferevent_get_output(c->bev);
		evbuffer_add(out, text, len);
		evbuffer_add(out, "\n", 1);
	}
	free(text);
}

void
ipc_reply_ok(struct ipc_client *c, json_t *id, json_t *result)
{
	json_t *o = json_pack("{s:O, s:b, s:o}", "id", id ? id : json_null(), "ok", 1, "result",
			      result ? result : json_object());

	client_write_json(c, o);
	json_decref(o);
}

static void
reply_verror(struct ipc_client *c, json_t *id, const char *code, json_t *extra, const char *fmt,
	     va_list ap)
{
	char msg[512];
	json_t *err, *o;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	err = json_pack("{s:s, s:s}", "code", code, "message", msg);
	if (extra) {
		json_object_update_missing(err, extra);
		json_decref(extra);
	}
	o = json_pack("{s:O, s:b, s:o}", "id", id ? id : json_null(), "ok", 0, "error", err);
	client_write_json(c, o);
	json_decref(o);
}

void
ipc_reply_error(struct ipc_client *c, json_t *id, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_verror(c, id, code, NULL, fmt, ap);
	va_end(ap);
}

void
ipc_reply_error_with(struct ipc_client *c, json_t *id, const char *code, json_t *extra,
		     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_verror(c, id, code, extra, fmt, ap);
	va_end(ap);
}

/* ---- pending answers ----------------------------------------------------- */

struct ipc_pending *
ipc_pending_new(struct ipc_client *c, json_t *id)
{
	struct ipc_pending *p = xmalloc(sizeof(*p));

	p->client = c;
	p->id = json_incref(id ? id : json_null());
	c->refs++;
	return p;
}

static void
pending_free(struct ipc_pending *p)
{
	json_decref(p->id);
	client_unref(p->client);
	free(p);
}

void
ipc_pending_ok(struct ipc_pending *p, json_t *result)
{
	ipc_reply_ok(p->client, p->id, result);
	pending_free(p);
}

void
ipc_pending_error(struct ipc_pending *p, const char *code, json_t *extra, const char *msg)
{
	ipc_reply_error_with(p->client, p->id, code, extra, "%s", msg);
	pending_free(p);
}

const char *
ipc_outcome_code(enum sess_outcome o)
{
	switch (o) {
	case SESS_OK: return "ok";
	case SESS_REPLY_ERROR: return PHXD_E_REPLY_ERROR;
	case SESS_TIMEOUT: return PHXD_E_TIMEOUT;
	case SESS_BUFFER_FULL: return PHXD_E_BUFFER_FULL;
	case SESS_NOT_JOINED: return PHXD_E_NOT_JOINED;
	case SESS_DISCONNECTED: return PHXD_E_DISCONNECTED;
	case SESS_CHANNEL_ERROR: return PHXD_E_CHANNEL_ERROR;
	case SESS_CHANNEL_CLOSED: return PHXD_E_CHANNEL_CLOSED;
	case SESS_LEFT: return PHXD_E_LEFT;
	case SESS_SHUTTING_DOWN: return PHXD_E_SHUTTING_DOWN;
	case SESS_TOO_LARGE: return PHXD_E_TOO_LARGE;
	}
	return "internal";
}

/* A reply's response as JSON: parsed text, or {"binary": base64} bytes. */
static json_t *
response_json(const struct sess_result *r)
{
	json_t *j;

	if (r->response == NULL)
		return json_null();
	if (r->binary) {
		char *b64 = xmalloc(BASE64_ENCODED_SIZE(r->response_len));
		base64_encode(r->response, r->response_len, true, b64);
		j = json_pack("{s:s}", "binary", b64);
		free(b64);
		return j;
	}
	j = json_loadb(r->response, r->response_len, JSON_DECODE_ANY, NULL);
	return j ? j : json_stringn(r->response, r->response_len);
}

void
ipc_pending_session_done(void *arg, const struct sess_result *r)
{
	struct ipc_pending *p = arg;

	if (r->outcome == SESS_OK) {
		json_t *res = json_object();
		json_object_set_new(res, "status", json_string(r->status ? r->status : "ok"));
		if (r->response)
			json_object_set_new(res, "response", response_json(r));
		ipc_pending_ok(p, res);
		return;
	}
	json_t *extra = NULL;
	char msg[300];
	if (r->outcome == SESS_REPLY_ERROR) {
		extra = json_pack("{s:s, s:o}", "status", r->status, "response", response_json(r));
		snprintf(msg, sizeof(msg), "the server replied %s", r->status);
	} else {
		snprintf(msg, sizeof(msg), "%s", r->message ? r->message : session_outcome_name(r->outcome));
	}
	ipc_pending_error(p, ipc_outcome_code(r->outcome), extra, msg);
}

/* ---- request fields ------------------------------------------------------ */

bool
ipc_get_string(struct ipc_client *c, json_t *id, json_t *req, const char *key, bool required,
	       const char **out)
{
	json_t *v = json_object_get(req, key);

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (required)
			ipc_reply_error(c, id, PHXD_E_BAD_REQUEST, "\"%s\" is required", key);
		return !required;
	}
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
		ipc_reply_error(c, id, PHXD_E_BAD_REQUEST, "\"%s\" must be a string", key);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

bool
ipc_get_uint(struct ipc_client *c, json_t *id, json_t *req, const char *key, json_int_t max,
	     json_int_t *out)
{
	json_t *v = json_object_get(req, key);

	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
		ipc_reply_error(c, id, PHXD_E_BAD_REQUEST,
				"\"%s\" must be an integer from 0 to %" JSON_INTEGER_FORMAT, key, max);
		return false;
	}
	*out = json_integer_value(v);
	return true;
}

bool
ipc_get_bool(struct ipc_client *c, json_t *id, json_t *req, const char *key, bool *out)
{
	json_t *v = json_object_get(req, key);

	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_boolean(v)) {
		ipc_reply_error(c, id, PHXD_E_BAD_REQUEST, "\"%s\" must be true or false", key);
		return false;
	}
	*out = json_is_true(v);
	return true;
}

struct phxd_conn *
ipc_get_conn(struct phxd *d, struct ipc_client *c, json_t *id, json_t *req)
{
	const char *name;
	struct phxd_conn *pc;
	size_t live = 0;

	if (!ipc_get_string(c, id, req, "conn", false, &name))
		return NULL;
	if (name != NULL) {
		pc = phxd_find_conn(d, name);
		if (pc == NULL)
			ipc_reply_error(c, id, PHXD_E_UNKNOWN_CONNECTION, "no connection named '%s'",
					name);
		return pc;
	}
	pc = NULL;
	for (size_t i = 0; i < d->nconns; i++) {
		if (!d->conns[i]->removed) {
			live++;
			pc = d->conns[i];
		}
	}
	if (live == 1)
		return pc;
	ipc_reply_error(c, id, PHXD_E_BAD_REQUEST,
			"\"conn\" is required: %zu connections are configured", live);
	return NULL;
}

/* ---- subscriptions --------------------------------------------------------- */

static struct sub_head *
index_head(struct ipc_server *srv, struct ipc_sub *s, bool create)
{
	struct sub_head *h;

	if (s->kind == SUB_EVENTS)
		return &srv->events;
	if (s->pattern)
		return &srv->patterns;
	h = strmap_get(&srv->exact, s->topic, s->topic_len);
	if (h == NULL && create) {
		h = xcalloc(1, sizeof(*h));
		strmap_put(&srv->exact, s->topic, s->topic_len, h);
	}
	return h;
}

uint64_t
ipc_subscribe(struct ipc_client *c, enum ipc_sub_kind kind, const char *conn, const char *topic,
	      json_t *events)
{
	struct ipc_server *srv = c->srv;
	struct ipc_sub *s = xcalloc(1, sizeof(*s));
	struct sub_head *h;
	size_t n;

	s->client = c;
	s->id = ++srv->next_sub;
	s->kind = kind;
	s->conn = conn ? xstrdup(conn) : NULL;
	if (topic != NULL) {
		n = strlen(topic);
		s->pattern = n > 0 && topic[n - 1] == '*';
		s->topic = xstrndup(topic, s->pattern ? n - 1 : n);
		s->topic_len = s->pattern ? n - 1 : n;
	}
	if (events != NULL && json_array_size(events) > 0) {
		size_t i;
		json_t *e;
		s->events = xcalloc(json_array_size(events), sizeof(char *));
		json_array_foreach (events, i, e)
			s->events[s->nevents++] = xstrdup(json_string_value(e));
	}
	s->tag_len = (size_t)snprintf(s->tag, sizeof(s->tag), "{\"sub\":%llu,",
				      (unsigned long long)s->id);
	h = index_head(srv, s, true);
	s->next_in_index = h->first;
	if (h->first)
		h->first->prev_in_index = s;
	h->first = s;
	s->next_in_client = c->subs;
	c->subs = s;
	return s->id;
}

static void
sub_free(struct ipc_server *srv, struct ipc_sub *s)
{
	struct sub_head *h = index_head(srv, s, false);

	if (s->prev_in_index)
		s->prev_in_index->next_in_index = s->next_in_index;
	else if (h)
		h->first = s->next_in_index;
	if (s->next_in_index)
		s->next_in_index->prev_in_index = s->prev_in_index;
	if (h && h->first == NULL && s->kind == SUB_MESSAGES && !s->pattern)
		free(strmap_del(&srv->exact, s->topic, s->topic_len));
	for (size_t i = 0; i < s->nevents; i++)
		free(s->events[i]);
	free(s->events);
	free(s->conn);
	free(s->topic);
	free(s);
}

bool
ipc_unsubscribe(struct ipc_client *c, uint64_t id)
{
	for (struct ipc_sub **pp = &c->subs; *pp; pp = &(*pp)->next_in_client) {
		if ((*pp)->id == id) {
			struct ipc_sub *s = *pp;
			*pp = s->next_in_client;
			sub_free(c->srv, s);
			return true;
		}
	}
	return false;
}

static bool
sub_wants(const struct ipc_sub *s, const char *conn, const char *event, size_t event_len)
{
	if (s->client->dead)
		return false;
	if (s->conn && strcmp(s->conn, conn) != 0)
		return false;
	if (s->events == NULL)
		return true;
	for (size_t i = 0; i < s->nevents; i++)
		if (strlen(s->events[i]) == event_len && memcmp(s->events[i], event, event_len) == 0)
			return true;
	return false;
}

static void
shared_unref(const void *data, size_t len, void *arg)
{
	struct shared_line *l = arg;

	(void)data;
	(void)len;
	if (--l->refs == 0)
		free(l);
}

/* Writes tag + shared body to one subscriber, sharing the body's bytes. */
static void
deliver(struct ipc_sub *s, struct shared_line *line)
{
	struct evbuffer *out;

	if (!client_has_room(s->client, s->tag_len + line->len))
		return;
	out = bufferevent_get_output(s->client->bev);
	evbuffer_add(out, s->tag, s->tag_len);
	line->refs++;
	if (evbuffer_add_reference(out, line->data, line->len, shared_unref, line) != 0) {
		line->refs--;
		evbuffer_add(out, line->data, line->len);
	}
}

static struct shared_line *
shared_from_json(json_t *body)
{
	/* The body is an object without its opening brace: the tag has it. */
	char *text = json_dumps(body, JSON_COMPACT);
	size_t n = strlen(text);
	struct shared_line *l = xmalloc(sizeof(*l) + n);

	l->refs = 1;
	memcpy(l->data, text + 1, n - 1);
	l->data[n - 1] = '\n';
	l->len = n;
	free(text);
	return l;
}

static void
fan_out(struct ipc_sub *first, struct shared_line **line, struct shared_line *(*build)(void *),
	void *arg,
	const char *conn, const char *topic, size_t topic_len, const char *event, size_t event_len,
	bool prefix_match)
{
	for (struct ipc_sub *s = first, *next; s; s = next) {
		next = s->next_in_index;
		if (prefix_match && (s->topic_len > topic_len || memcmp(s->topic, topic, s->topic_len)))
			continue;
		if (!sub_wants(s, conn, event, event_len))
			continue;
		if (*line == NULL)
			*line = build(arg);
		deliver(s, *line);
	}
}

struct message_ctx {
	const struct phxd_conn *pc;
	const struct phx_msg *m;
};

static char *
put_string(char *p, const char *key, const char *s, size_t len)
{
	size_t klen = strlen(key);

	memcpy(p, key, klen);
	p += klen;
	return p + json_escape(s, len, p);
}

/* The message line after its tag, written once from the frame's own bytes:
 * the payload was validated by the codec and goes out as it came. */
static struct shared_line *
build_message(void *arg)
{
	struct message_ctx *mc = arg;
	const struct phx_msg *m = mc->m;
	const char *conn = mc->pc->conf->name;
	bool binary = m->kind != PHX_TEXT;
	size_t payload_len = binary ? BASE64_ENCODED_SIZE(m->payload.len) : m->payload.len;
	size_t cap = 96 + json_escaped_len(conn, strlen(conn)) +
		     json_escaped_len(m->topic.s, m->topic.len) +
		     json_escaped_len(m->event.s, m->event.len) + payload_len + 2;
	struct shared_line *l = xmalloc(sizeof(*l) + cap);
	char *p = l->data;

#define PUT_LITERAL(lit) (memcpy(p, lit, sizeof(lit) - 1), p += sizeof(lit) - 1)
	PUT_LITERAL("\"type\":\"message\"");
	p = put_string(p, ",\"conn\":", conn, strlen(conn));
	p = put_string(p, ",\"topic\":", m->topic.s, m->topic.len);
	p = put_string(p, ",\"event\":", m->event.s, m->event.len);
	if (binary) {
		PUT_LITERAL(",\"binary\":true,\"payload\":\"");
		p += base64_encode(m->payload.s, m->payload.len, true, p);
		*p++ = '"';
	} else {
		PUT_LITERAL(",\"payload\":");
		memcpy(p, m->payload.s, m->payload.len);
		p += m->payload.len;
	}
#undef PUT_LITERAL
	*p++ = '}';
	*p++ = '\n';
	l->refs = 1;
	l->len = (size_t)(p - l->data);
	return l;
}

void
ipc_publish_message(struct ipc_server *srv, const struct phxd_conn *pc, const struct phx_msg *m)
{
	struct message_ctx mc = { pc, m };
	struct shared_line *line = NULL;
	struct sub_head *h = strmap_get(&srv->exact, m->topic.s, m->topic.len);
	const char *conn = pc->conf->name;

	if (h)
		fan_out(h->first, &line, build_message, &mc, conn, m->topic.s, m->topic.len,
			m->event.s, m->event.len, false);
	fan_out(srv->patterns.first, &line, build_message, &mc, conn, m->topic.s, m->topic.len,
		m->event.s, m->event.len, true);
	if (line)
		shared_unref(NULL, 0, line);
}

struct event_ctx {
	const struct phxd_conn *pc;
	const struct sess_event *ev;
};

static struct shared_line *
build_event(void *arg)
{
	struct event_ctx *ec = arg;
	json_t *body = ipc_event_json(ec->pc, ec->ev);
	struct shared_line *l = shared_from_json(body);

	json_decref(body);
	return l;
}

void
ipc_publish_event(struct ipc_server *srv, const struct phxd_conn *pc, const struct sess_event *ev)
{
	struct event_ctx ec = { pc, ev };
	struct shared_line *line = NULL;
	const char *kind = ev->kind == SEV_CHANNEL ? "channel" : "connection";

	fan_out(srv->events.first, &line, build_event, &ec, pc->conf->name, "", 0, kind,
		strlen(kind), false);
	if (line)
		shared_unref(NULL, 0, line);
}

/* ---- clients --------------------------------------------------------------- */

static void
client_free(struct ipc_client *c)
{
	struct ipc_server *srv = c->srv;

	while (c->subs) {
		struct ipc_sub *s = c->subs;
		c->subs = s->next_in_client;
		sub_free(srv, s);
	}
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->linger_ev)
		event_free(c->linger_ev);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nclients--;
	free(c);
}

static void
client_unref(struct ipc_client *c)
{
	if (--c->refs == 0)
		client_free(c);
}

static void
client_reap(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_client *c = arg;

	(void)fd;
	(void)what;
	/* Subscriptions and the socket go now; pending answers keep the
	 * struct until they are dropped. */
	while (c->subs) {
		struct ipc_sub *s = c->subs;
		c->subs = s->next_in_client;
		sub_free(c->srv, s);
	}
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	client_unref(c);
}

/* Moves a lingering client's reaping to the next loop pass. */
static void
reap_soon(struct ipc_client *c)
{
	struct timeval now = { 0, 0 };

	evtimer_add(c->linger_ev, &now);
}

static void
linger_drained(struct bufferevent *bev, void *arg)
{
	struct ipc_client *c = arg;

	(void)bev;
	/* Everything, the reason last, reached the client: close now. */
	reap_soon(c);
}

/*
 * Marks a client dead; it is freed from the loop, never under a caller.
 * A client cut off for reading too slowly lingers up to 2 s, so it can
 * still read what it was sent and the reason at its end.
 */
static void
client_lost(struct ipc_client *c, const char *why, bool linger)
{
	struct timeval delay = { linger ? 2 : 0, 0 };

	if (c->dead)
		return;
	c->dead = true;
	if (why)
		log_debug("ipc client pid %ld: %s", (long)c->pid, why);
	bufferevent_disable(c->bev, EV_READ);
	c->linger_ev = evtimer_new(c->srv->d->base, client_reap, c);
	evtimer_add(c->linger_ev, &delay);
	if (linger)
		bufferevent_setcb(c->bev, NULL, linger_drained, event_cb, c);
}

static void
dispatch_line(struct ipc_client *c, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *req, *id, *op;
	const struct ipc_cmd *cmd;

	req = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (req == NULL) {
		ipc_reply_error(c, NULL, PHXD_E_BAD_JSON, "not JSON: %s (column %d)", jerr.text,
				jerr.column);
		return;
	}
	if (!json_is_object(req)) {
		ipc_reply_error(c, NULL, PHXD_E_BAD_REQUEST, "a request is a JSON object");
		json_decref(req);
		return;
	}
	id = json_object_get(req, "id");
	if (id != NULL && !json_is_integer(id) && !json_is_string(id) && !json_is_null(id)) {
		ipc_reply_error(c, NULL, PHXD_E_BAD_REQUEST, "\"id\" must be an integer or a string");
		json_decref(req);
		return;
	}
	op = json_object_get(req, "op");
	if (!json_is_string(op)) {
		ipc_reply_error(c, id, PHXD_E_BAD_REQUEST, "\"op\" (a string) is required");
	} else if ((cmd = ipc_cmd_find(json_string_value(op))) == NULL) {
		ipc_reply_error(c, id, PHXD_E_UNKNOWN_OP, "unknown op '%s'", json_string_value(op));
	} else {
		cmd->exec(c->srv->d, c, id, req);
	}
	json_decref(req);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct ipc_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t max = c->srv->d->conf->max_line;

	/* A reference: a command may lose the client while we loop. */
	c->refs++;
	c->srv->d->tq.now = phxd_now_ms();
	while (!c->dead) {
		size_t eol_len = 0;
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > max) {
				ipc_reply_error(c, NULL, PHXD_E_LINE_TOO_LONG,
						"request line longer than %zu bytes", max);
				client_lost(c, "line too long", true);
			}
			break;
		}
		size_t len = (size_t)eol.pos;
		if (len > max) {
			ipc_reply_error(c, NULL, PHXD_E_LINE_TOO_LONG,
					"request line longer than %zu bytes", max);
			client_lost(c, "line too long", true);
			break;
		}
		const char *line = (const char *)evbuffer_pullup(in, (ev_ssize_t)(len + 1));
		size_t n = len;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		/* Blank lines are keep-alives. */
		bool blank = true;
		for (size_t i = 0; i < n && blank; i++)
			blank = line[i] == ' ' || line[i] == '\t';
		if (!blank)
			dispatch_line(c, line, n);
		evbuffer_drain(in, len + 1);
	}
	client_unref(c);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ipc_client *c = arg;

	(void)bev;
	if (c->dead) {
		if (c->linger_ev)
			reap_soon(c);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_lost(c, what & BEV_EVENT_EOF ? "closed the connection" : "socket error", false);
}

static void
accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_server *srv = arg;

	(void)fd;
	(void)what;
	event_add(srv->accept_ev, NULL);
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct ipc_server *srv = arg;
	struct phxd *d = srv->d;

	(void)what;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors: pause instead of spinning. */
				log_warn("ipc: accept");
				struct timeval tv = { 1, 0 };
				event_del(srv->accept_ev);
				evtimer_add(srv->accept_pause_ev, &tv);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
				   errno != ECONNABORTED) {
				log_warn("ipc: accept");
			}
			return;
		}
		if (srv->nclients >= d->conf->max_clients) {
			static const char msg[] =
				"{\"id\":null,\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":"
				"\"too many clients (max_clients)\"}}\n";
			ssize_t w = write(fd, msg, sizeof(msg) - 1);
			(void)w;
			close(fd);
			log_warnx("ipc: client refused: max_clients (%u) reached", d->conf->max_clients);
			continue;
		}
		struct ipc_client *c = xcalloc(1, sizeof(*c));
		struct ucred cred;
		socklen_t clen = sizeof(cred);
		c->srv = srv;
		c->refs = 1;
		c->uid = (uid_t)-1;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
			c->uid = cred.uid;
			c->pid = cred.pid;
		}
		c->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
		bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		c->next = srv->clients;
		if (srv->clients)
			srv->clients->prev = c;
		srv->clients = c;
		srv->nclients++;
		log_debug("ipc: client pid %ld uid %ld connected", (long)c->pid, (long)c->uid);
	}
}

/* ---- listener ---------------------------------------------------------------- */

static int
listen_activated(void)
{
	int n = sd_listen_fds(1);

	if (n <= 0)
		return -1;
	for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0)
			return fd;
	log_warnx("ipc: %d activated sockets, none a listening Unix stream socket", n);
	return -1;
}

static int
listen_path(struct phxd *d, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, saved;
	mode_t old_mask;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		log_warn("ipc: socket path %s", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		log_warn("ipc: socket");
		return -1;
	}
	/* Never steal the socket of a daemon that is alive. */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0) {
		if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			close(fd);
			log_warnx("ipc: %s is in use by a running phxd", path);
			return -1;
		}
		saved = errno;
		close(probe);
		if (saved == ECONNREFUSED)
			unlink(path);
	}
	old_mask = umask(0177);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		saved = errno;
		umask(old_mask);
		close(fd);
		errno = saved;
		log_warn("ipc: bind %s", path);
		return -1;
	}
	umask(old_mask);
	if (chmod(path, d->conf->socket_mode) != 0)
		log_warn("ipc: chmod %s", path);
	if (d->conf->socket_group) {
		struct group *g = getgrnam(d->conf->socket_group);
		if (g == NULL || chown(path, (uid_t)-1, g->gr_gid) != 0)
			log_warnx("ipc: cannot give %s to group %s", path, d->conf->socket_group);
	}
	if (listen(fd, 128) != 0) {
		log_warn("ipc: listen %s", path);
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

struct ipc_server *
ipc_server_new(struct phxd *d, const char *path)
{
	struct ipc_server *srv = xcalloc(1, sizeof(*srv));

	srv->d = d;
	srv->listen_fd = listen_activated();
	if (srv->listen_fd >= 0) {
		srv->activated = true;
		evutil_make_socket_nonblocking(srv->listen_fd);
		log_info("ipc: using the socket passed by systemd");
	} else {
		srv->listen_fd = listen_path(d, path);
		if (srv->listen_fd < 0) {
			free(srv);
			return NULL;
		}
		srv->path = xstrdup(path);
	}
	strmap_init(&srv->exact);
	srv->accept_ev = event_new(d->base, srv->listen_fd, EV_READ | EV_PERSIST, accept_cb, srv);
	srv->accept_pause_ev = evtimer_new(d->base, accept_resume, srv);
	event_add(srv->accept_ev, NULL);
	return srv;
}

void
ipc_server_close_listener(struct ipc_server *srv)
{
	if (srv->listen_fd < 0)
		return;
	event_del(srv->accept_ev);
	event_del(srv->accept_pause_ev);
	/* An activated socket stays with systemd, which queues clients for
	 * the next start. */
	if (!srv->activated) {
		close(srv->listen_fd);
		unlink(srv->path);
	}
	srv->listen_fd = -1;
}

size_t
ipc_server_client_count(const struct ipc_server *srv)
{
	return srv->nclients;
}

bool
ipc_server_activated(const struct ipc_server *srv)
{
	return srv->activated;
}

void
ipc_server_free(struct ipc_server *srv)
{
	struct strmap_iter it;

	if (srv == NULL)
		return;
	ipc_server_close_listener(srv);
	while (srv->clients) {
		struct ipc_client *c = srv->clients;
		/* Flush what is queued, as far as the socket takes it now. */
		if (c->bev && !c->dead) {
			struct evbuffer *out = bufferevent_get_output(c->bev);
			evbuffer_unfreeze(out, 1);
			evbuffer_write(out, bufferevent_getfd(c->bev));
		}
		c->refs = 1;
		client_free(c);
	}
	for (struct strmap_entry *e = strmap_first(&srv->exact, &it); e;
	     e = strmap_next(&srv->exact, &it))
		free(e->value);
	strmap_free(&srv->exact);
	event_free(srv->accept_ev);
	event_free(srv->accept_pause_ev);
	free(srv->path);
	free(srv);
}
