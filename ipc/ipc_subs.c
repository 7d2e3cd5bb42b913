/* SPDX-License-Identifier: MIT */
/*
 * Subscriptions and fan-out. Exact topics are looked up in a map; patterns
 * in a map of their prefixes, probed only at the prefix lengths some
 * pattern has, so a message costs a few lookups however many subscriptions
 * there are. Each line is encoded once and shared by every subscriber.
 */
#include "ipc_int.h"

#include "daemon/xmalloc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

void
ipc_subs_init(struct ipc_server *srv)
{
	strmap_init(&srv->exact);
	strmap_init(&srv->prefixes);
	TAILQ_INIT(&srv->events.subs);
}

static void
free_heads(struct strmap *m)
{
	struct strmap_iter it;

	for (struct strmap_entry *e = strmap_first(m, &it); e; e = strmap_next(m, &it))
		free(e->value);
	strmap_free(m);
}

void
ipc_subs_free(struct ipc_server *srv)
{
	free_heads(&srv->exact);
	free_heads(&srv->prefixes);
}

static struct sub_head *
head_for(struct ipc_server *srv, struct ipc_sub *s)
{
	struct strmap *m;
	struct sub_head *h;

	if (s->kind == SUB_EVENTS)
		return &srv->events;
	m = s->pattern ? &srv->prefixes : &srv->exact;
	h = strmap_get(m, s->topic, s->topic_len);
	if (h == NULL) {
		h = xcalloc(1, sizeof(*h));
		TAILQ_INIT(&h->subs);
		strmap_put(m, s->topic, s->topic_len, h);
	}
	return h;
}

uint64_t
ipc_subscribe(struct ipc_request *r, enum ipc_sub_kind kind, const char *conn, const char *topic,
	      json_t *events)
{
	struct ipc_client *c = r->c;
	struct ipc_server *srv = c->srv;
	struct ipc_sub *s;
	char tag[IPC_TAG_SIZE];

	if (c->nsubs >= r->d->conf->client_max_subscriptions) {
		ipc_reply_error(r, PHXD_E_LIMIT,
				"this client holds %zu subscriptions (client_max_subscriptions)",
				c->nsubs);
		return 0;
	}
	s = xcalloc(1, sizeof(*s));
	s->client = c;
	s->id = ++srv->next_sub;
	s->kind = kind;
	s->conn = conn ? xstrdup(conn) : NULL;
	if (topic != NULL) {
		size_t n = strlen(topic);
		s->pattern = n > 0 && topic[n - 1] == '*';
		s->topic_len = s->pattern ? n - 1 : n;
		s->topic = xstrndup(topic, s->topic_len);
	}
	if (events != NULL && json_array_size(events) > 0) {
		size_t i;
		json_t *e;
		s->events = xcalloc(json_array_size(events), sizeof(char *));
		json_array_foreach (events, i, e)
			s->events[s->nevents++] = xstrdup(json_string_value(e));
	}
	s->tag_len = (uint32_t)ipc_encode_tag(s->id, tag);
	s->head = head_for(srv, s);
	TAILQ_INSERT_TAIL(&s->head->subs, s, in_index);
	s->head->count++;
	if (s->pattern)
		srv->prefix_lens[s->topic_len]++;
	TAILQ_INSERT_TAIL(&c->subs, s, in_client);
	c->nsubs++;
	return s->id;
}

static void
sub_free(struct ipc_server *srv, struct ipc_sub *s)
{
	struct sub_head *h = s->head;

	TAILQ_REMOVE(&h->subs, s, in_index);
	h->count--;
	if (s->pattern)
		srv->prefix_lens[s->topic_len]--;
	if (h->count == 0 && s->kind == SUB_MESSAGES)
		free(strmap_del(s->pattern ? &srv->prefixes : &srv->exact, s->topic, s->topic_len));
	TAILQ_REMOVE(&s->client->subs, s, in_client);
	s->client->nsubs--;
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
	struct ipc_sub *s;

	TAILQ_FOREACH (s, &c->subs, in_client) {
		if (s->id == id) {
			sub_free(c->srv, s);
			return true;
		}
	}
	return false;
}

void
ipc_subs_drop_client(struct ipc_client *c)
{
	struct ipc_sub *s;

	while ((s = TAILQ_FIRST(&c->subs)) != NULL)
		sub_free(c->srv, s);
}

void
ipc_subs_report_drops(struct ipc_client *c)
{
	struct ipc_sub *s;

	TAILQ_FOREACH (s, &c->subs, in_client) {
		if (s->dropped == 0)
			continue;
		json_t *o = json_pack("{s:I, s:s, s:I}", "sub", (json_int_t)s->id, "type", "dropped",
				      "count", (json_int_t)s->dropped);
		struct ipc_line *l = ipc_line_json(o);
		json_decref(o);
		s->dropped = 0;
		ipc_client_send(c, l);
		ipc_line_unref(l);
	}
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

/* What a fan-out needs to build its line, once, if anybody wants it. */
struct fanout {
	const char *conn;
	const char *event;
	size_t event_len;
	struct ipc_line *line;
	struct ipc_line *(*build)(void *arg);
	void *arg;
};

static void
fan_out(struct sub_head *h, struct fanout *f)
{
	struct ipc_sub *s;

	if (h == NULL)
		return;
	TAILQ_FOREACH (s, &h->subs, in_index) {
		if (!sub_wants(s, f->conn, f->event, f->event_len))
			continue;
		if (f->line == NULL)
			f->line = f->build(f->arg);
		ipc_client_stream(s->client, s, f->line);
	}
}

struct message_ctx {
	const struct phxd_conn *pc;
	const struct phx_msg *m;
};

static struct ipc_line *
build_message(void *arg)
{
	struct message_ctx *mc = arg;

	return ipc_encode_message(mc->pc->conf->name, mc->m);
}

void
ipc_publish_message(struct ipc_server *srv, const struct phxd_conn *pc, const struct phx_msg *m)
{
	struct message_ctx mc = { pc, m };
	struct fanout f = { pc->conf->name, m->event.s, m->event.len, NULL, build_message, &mc };

	fan_out(strmap_get(&srv->exact, m->topic.s, m->topic.len), &f);
	for (size_t len = 0; len <= m->topic.len && len <= PHX_MAX_FIELD; len++)
		if (srv->prefix_lens[len] > 0)
			fan_out(strmap_get(&srv->prefixes, m->topic.s, len), &f);
	ipc_line_unref(f.line);
}

struct push_failed_ctx {
	const char *conn, *topic, *event, *code, *message;
};

static struct ipc_line *
build_push_failed(void *arg)
{
	struct push_failed_ctx *pf = arg;
	struct timeval tv;
	json_t *o;

	gettimeofday(&tv, NULL);
	o = json_pack("{s:s, s:o, s:I, s:o, s:o, s:s, s:o}", "type", "push_failed", "conn",
		      ipc_jstr(pf->conn), "at",
		      (json_int_t)tv.tv_sec * 1000 + (json_int_t)tv.tv_usec / 1000, "topic",
		      pf->topic ? ipc_jstr(pf->topic) : json_null(), "event",
		      pf->event ? ipc_jstr(pf->event) : json_null(), "code", pf->code, "message",
		      ipc_jstr(pf->message));
	struct ipc_line *l = ipc_encode_tail(o);
	json_decref(o);
	return l;
}

void
ipc_publish_push_failed(struct ipc_server *srv, const char *conn, const char *topic,
			const char *event, const char *code, const char *message)
{
	struct push_failed_ctx pf = { conn ? conn : "", topic, event, code, message };
	struct fanout f = { pf.conn, "push_failed", 11, NULL, build_push_failed, &pf };

	fan_out(&srv->events, &f);
	ipc_line_unref(f.line);
}

struct built_ctx {
	json_t *(*build)(void *arg);
	void *arg;
};

static struct ipc_line *
build_built(void *arg)
{
	struct built_ctx *bc = arg;
	json_t *o = bc->build(bc->arg);
	struct ipc_line *l = ipc_encode_tail(o);

	json_decref(o);
	return l;
}

void
ipc_publish_built(struct ipc_server *srv, const char *conn, const char *kind,
		  json_t *(*build)(void *arg), void *arg)
{
	struct built_ctx bc = { build, arg };
	struct fanout f = { conn, kind, strlen(kind), NULL, build_built, &bc };

	fan_out(&srv->events, &f);
	ipc_line_unref(f.line);
}

struct event_ctx {
	const struct phxd_shard *sh;
	const struct sess_event *ev;
};

static struct ipc_line *
build_event(void *arg)
{
	struct event_ctx *ec = arg;
	json_t *body = ipc_event_json(ec->sh, ec->ev);
	struct ipc_line *l = ipc_encode_tail(body);

	json_decref(body);
	return l;
}

void
ipc_publish_event(struct ipc_server *srv, const struct phxd_shard *sh, const struct sess_event *ev)
{
	struct event_ctx ec = { sh, ev };
	const char *kind = ev->kind == SEV_CHANNEL ? "channel" : "connection";
	struct fanout f = { sh->pc->conf->name, kind, strlen(kind), NULL, build_event, &ec };

	fan_out(&srv->events, &f);
	ipc_line_unref(f.line);
}
