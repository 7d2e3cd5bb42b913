/* SPDX-License-Identifier: MIT */
/*
 * The Phoenix rules of daemon/session.c, one test each, driven with a fake
 * clock (the timer queue) and a fake transport that records every frame.
 */
#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/session.h"

#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SENT 4096

struct result_rec {
	int calls;
	enum sess_outcome outcome;
	char status[32];
	char response[256];
	char message[160];
};

struct fake {
	struct timerq tq;
	struct conn_conf *conf;
	struct session *s;
	int connects, closes, last_close_code;
	uint64_t connect_at[64];
	json_t *sent;		/* array of decoded text frames ([jr, ref, topic, event, payload]) */
	bool sent_binary[MAX_SENT];
	char *sent_raw[MAX_SENT];
	size_t sent_len[MAX_SENT];
	json_t *messages;	/* delivered: [topic, event, payload] */
	json_t *events;
	double random;
	struct fake *shard;	/* the second websocket of a sharded fake */
	bool is_shard;
	unsigned released;
};

static void
fk_connect(void *host, struct session *s)
{
	struct fake *f = host;
	(void)s;
	if (f->connects < 64)
		f->connect_at[f->connects] = f->tq.now;
	f->connects++;
}

static void
fk_close(void *host, struct session *s, int code, const char *reason)
{
	struct fake *f = host;
	(void)s;
	(void)reason;
	f->closes++;
	f->last_close_code = code;
}

static void
fk_send(void *host, struct session *s, const char *frame, size_t len, bool binary)
{
	struct fake *f = host;
	size_t i = json_array_size(f->sent);
	(void)s;
	ck_assert_uint_lt(i, MAX_SENT);
	f->sent_binary[i] = binary;
	f->sent_raw[i] = malloc(len + 1);
	memcpy(f->sent_raw[i], frame, len);
	f->sent_len[i] = len;
	if (binary) {
		json_array_append_new(f->sent, json_pack("[s]", "binary"));
		return;
	}
	json_error_t err;
	json_t *j = json_loadb(frame, len, 0, &err);
	ck_assert_msg(json_is_array(j) && json_array_size(j) == 5, "frame not a 5-array: %.*s",
		      (int)len, frame);
	json_array_append_new(f->sent, j);
}

static void
fk_message(void *host, struct session *s, const struct phx_msg *m)
{
	struct fake *f = host;
	(void)s;
	json_array_append_new(f->messages, json_pack("[s%, s%, s%]", m->topic.s, m->topic.len,
						     m->event.s, m->event.len, m->payload.s,
						     m->payload.len));
}

/* The session's count of joined channels, checked against its channels at
 * every event it emits. */
static void
check_njoined(const struct session *s)
{
	const struct channel *ch;
	unsigned n = 0;

	TAILQ_FOREACH(ch, &s->chans, link)
		n += ch->state == CHAN_JOINED;
	ck_assert_uint_eq(s->njoined, n);
}

static void
fk_event(void *host, struct session *s, const struct sess_event *ev)
{
	struct fake *f = host;
	check_njoined(s);
	json_array_append_new(f->events,
			      json_pack("{s:i, s:s?, s:s, s:i, s:i, s:I}", "kind", ev->kind, "topic",
					ev->topic, "state", chan_state_name(ev->chan_state), "code",
					ev->code, "http", ev->http_status, "delay",
					(json_int_t)ev->delay_ms));
}

static double
fk_random(void *host)
{
	return ((struct fake *)host)->random;
}

static const struct session_ops fk_ops = {
	.connect = fk_connect,
	.close = fk_close,
	.send = fk_send,
	.message = fk_message,
	.event = fk_event,
	.random = fk_random,
};

/* A host of two websockets: new topics on the first, a refused one moves
 * to the second. */
static bool
fk_cap_refused(void *host, struct session *s, struct channel *ch)
{
	struct fake *f = host;

	(void)s;
	if (f->is_shard || f->shard == NULL)
		return false;
	session_move(ch, f->shard->s);
	return true;
}

static void
fk_released(void *host, struct session *s)
{
	(void)s;
	((struct fake *)host)->released++;
}

static const struct session_ops fk_shard_ops = {
	.connect = fk_connect,
	.close = fk_close,
	.send = fk_send,
	.message = fk_message,
	.event = fk_event,
	.random = fk_random,
	.cap_refused = fk_cap_refused,
	.released = fk_released,
};

static void
add_join(struct conn_conf *c, const char *topic, const char *payload)
{
	c->joins = realloc(c->joins, (c->njoins + 1) * sizeof(*c->joins));
	c->joins[c->njoins].topic = strdup(topic);
	c->joins[c->njoins].payload = strdup(payload);
	c->njoins++;
}

static struct conn_conf *
make_conf(void)
{
	struct conn_conf *c = calloc(1, sizeof(*c));
	char err[128];

	c->name = strdup("test");
	c->url = strdup("ws://127.0.0.1:4000/socket");
	config_conn_defaults(c);
	ck_assert(config_parse_url(c, c->url, err, sizeof(err)));
	c->jitter = 0;
	return c;
}

/* What every fake host records, empty. */
static struct fake *
fake_alloc(struct conn_conf *conf)
{
	struct fake *f = calloc(1, sizeof(*f));

	f->conf = conf;
	f->sent = json_array();
	f->messages = json_array();
	f->events = json_array();
	f->random = 0.5;
	return f;
}

/* Frees its session and its records. */
static void
fake_release(struct fake *f)
{
	session_free(f->s);
	for (size_t i = 0; i < json_array_size(f->sent); i++)
		free(f->sent_raw[i]);
	json_decref(f->sent);
	json_decref(f->messages);
	json_decref(f->events);
}

static struct fake *
fake_new(struct conn_conf *conf)
{
	struct fake *f = fake_alloc(conf ? conf : make_conf());

	log_init(LOG_LVL_ERROR, "test_session");
	tq_init(&f->tq);
	f->tq.now = 1000000;
	f->s = session_new(f->conf, &fk_ops, f, &f->tq);
	return f;
}

static void
fake_free(struct fake *f)
{
	fake_release(f);
	tq_free(&f->tq);
	config_conn_free(f->conf);
	free(f);
}

/* Moves the clock to now+ms, firing timers in deadline order. */
static void
advance(struct fake *f, uint64_t ms)
{
	uint64_t target = f->tq.now + ms;

	for (;;) {
		uint64_t next = tq_next(&f->tq);
		if (next > target)
			break;
		tq_run(&f->tq, next);
	}
	f->tq.now = target;
}

static void
server(struct fake *f, const char *frame)
{
	session_on_frame(f->s, frame, strlen(frame), false);
}

static void
serverf(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
serverf(struct fake *f, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	server(f, buf);
}

/* a equals the JSON text b (compared as values). */
static bool
jeq(json_t *a, const char *b)
{
	json_t *j = json_loads(b, JSON_DECODE_ANY, NULL);
	bool eq = json_equal(a, j);
	json_decref(j);
	return eq;
}

static size_t
nsent(struct fake *f)
{
	return json_array_size(f->sent);
}

static json_t *
sent(struct fake *f, size_t i)
{
	return json_array_get(f->sent, i);
}

static const char *
fs(json_t *frame, size_t i)
{
	return json_string_value(json_array_get(frame, i));
}

/* The last frame with this topic and event sent at or after index `from`. */
static json_t *
find_sent(struct fake *f, size_t from, const char *topic, const char *event)
{
	json_t *found = NULL;
	for (size_t i = from; i < nsent(f); i++) {
		json_t *fr = sent(f, i);
		if (json_array_size(fr) == 5 && strcmp(fs(fr, 2), topic) == 0 &&
		    strcmp(fs(fr, 3), event) == 0)
			found = fr;
	}
	return found;
}

static size_t
count_sent(struct fake *f, size_t from, const char *topic, const char *event)
{
	size_t n = 0;
	for (size_t i = from; i < nsent(f); i++) {
		json_t *fr = sent(f, i);
		if (json_array_size(fr) == 5 && strcmp(fs(fr, 2), topic) == 0 &&
		    strcmp(fs(fr, 3), event) == 0)
			n++;
	}
	return n;
}

/* Answers the last phx_join of topic with status/response. */
static void
reply_join(struct fake *f, const char *topic, const char *status, const char *response)
{
	json_t *j = find_sent(f, 0, topic, "phx_join");
	ck_assert_ptr_nonnull(j);
	serverf(f, "[\"%s\",\"%s\",\"%s\",\"phx_reply\",{\"status\":\"%s\",\"response\":%s}]",
		fs(j, 0), fs(j, 1), topic, status, response);
}

static void
open_socket(struct fake *f)
{
	if (f->s->state == SESS_IDLE)
		session_start(f->s);
	ck_assert_int_eq(f->s->state, SESS_CONNECTING);
	session_on_open(f->s);
	ck_assert_int_eq(f->s->state, SESS_OPEN);
}

static void
record(void *arg, const struct sess_result *r)
{
	struct result_rec *rec = arg;
	rec->calls++;
	rec->outcome = r->outcome;
	snprintf(rec->status, sizeof(rec->status), "%s", r->status ? r->status : "");
	snprintf(rec->response, sizeof(rec->response), "%.*s", (int)r->response_len,
		 r->response ? r->response : "");
	snprintf(rec->message, sizeof(rec->message), "%s", r->message ? r->message : "");
}

static struct channel *
chan(struct fake *f, const char *topic)
{
	return session_channel(f->s, topic);
}

/* A second websocket for f, sharing its topic map. */
static struct fake *
fake_shard(struct fake *f)
{
	struct fake *g = fake_alloc(f->conf);

	g->is_shard = true;
	g->s = session_new_shard(f->s, g);
	f->shard = g;
	return g;
}

static void
fake_shard_free(struct fake *g)
{
	fake_release(g);
	free(g);
}

/* ---- connection and joins ------------------------------------------------ */

START_TEST(joins_configured_topics_on_open)
{
	struct conn_conf *c = make_conf();
	add_join(c, "rooms:lobby", "{\"user\":1}");
	add_join(c, "rooms:b", "{}");
	struct fake *f = fake_new(c);

	session_start(f->s);
	ck_assert_int_eq(f->connects, 1);
	ck_assert_uint_eq(nsent(f), 0);
	session_on_open(f->s);
	json_t *j = find_sent(f, 0, "rooms:lobby", "phx_join");
	ck_assert_ptr_nonnull(j);
	/* join_ref is the ref of the join itself */
	ck_assert_str_eq(fs(j, 0), fs(j, 1));
	ck_assert(jeq(json_array_get(j, 4), "{\"user\":1}"));
	ck_assert_ptr_nonnull(find_sent(f, 0, "rooms:b", "phx_join"));
	ck_assert_int_eq(chan(f, "rooms:lobby")->state, CHAN_JOINING);
	reply_join(f, "rooms:lobby", "ok", "{\"hi\":1}");
	ck_assert_int_eq(chan(f, "rooms:lobby")->state, CHAN_JOINED);
	ck_assert_str_eq(chan(f, "rooms:lobby")->join_response, "{\"hi\":1}");
	fake_free(f);
}
END_TEST

START_TEST(refs_are_unique_and_increasing)
{
	struct conn_conf *c = make_conf();
	add_join(c, "a", "{}");
	add_join(c, "b", "{}");
	add_join(c, "c", "{}");
	struct fake *f = fake_new(c);
	open_socket(f);
	/* three joins went out: refs "1", "2", "3", each its own join_ref */
	ck_assert_uint_eq(nsent(f), 3);
	long last = 0;
	for (size_t i = 0; i < nsent(f); i++) {
		long ref = atol(fs(sent(f, i), 1));
		ck_assert_int_eq(ref, last + 1);
		ck_assert_str_eq(fs(sent(f, i), 0), fs(sent(f, i), 1));
		last = ref;
	}
	fake_free(f);
}
END_TEST

START_TEST(heartbeat_sent_and_acked_by_ref)
{
	struct fake *f = fake_new(NULL);
	f->conf->heartbeat_ms = 30000;
	open_socket(f);
	advance(f, 29999);
	ck_assert_uint_eq(nsent(f), 0);
	advance(f, 1);
	ck_assert_uint_eq(nsent(f), 1);
	json_t *hb = sent(f, 0);
	ck_assert(json_is_null(json_array_get(hb, 0)));
	ck_assert_str_eq(fs(hb, 2), "phoenix");
	ck_assert_str_eq(fs(hb, 3), "heartbeat");
	ck_assert(jeq(json_array_get(hb, 4), "{}"));
	/* a reply with another ref does not ack it */
	serverf(f, "[null,\"999\",\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
	ck_assert_str_eq(f->s->heartbeat_ref, fs(hb, 1));
	serverf(f, "[null,\"%s\",\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]",
		fs(hb, 1));
	ck_assert_str_eq(f->s->heartbeat_ref, "");
	advance(f, 30000);
	ck_assert_uint_eq(nsent(f), 2);
	ck_assert_int_eq(f->closes, 0);
	fake_free(f);
}
END_TEST

START_TEST(heartbeat_timeout_reconnects)
{
	struct fake *f = fake_new(NULL);
	f->conf->heartbeat_ms = 1000;
	open_socket(f);
	advance(f, 1000);	/* heartbeat sent */
	ck_assert_uint_eq(nsent(f), 1);
	advance(f, 999);
	ck_assert_int_eq(f->closes, 0);
	advance(f, 1);		/* due again with no ack */
	ck_assert_int_eq(f->closes, 1);
	ck_assert_uint_eq(f->s->stats.heartbeat_timeouts, 1);
	ck_assert_int_eq(f->connects, 2);	/* at once, within two intervals */
	ck_assert_int_eq(f->s->state, SESS_CONNECTING);
	/* all heartbeat state reset per connect */
	session_on_open(f->s);
	ck_assert_str_eq(f->s->heartbeat_ref, "");
	advance(f, 999);
	ck_assert_int_eq(f->closes, 1);
	advance(f, 1);
	ck_assert_int_eq(f->closes, 1);
	ck_assert_uint_eq(nsent(f), 2);
	fake_free(f);
}
END_TEST

START_TEST(reconnect_backoff_follows_schedule)
{
	struct fake *f = fake_new(NULL);
	static const unsigned want[] = { 10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000, 5000 };

	session_start(f->s);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		session_on_close(f->s, 1006, "refused", 0);
		ck_assert_int_eq(f->s->state, SESS_WAITING);
		advance(f, want[i] - 1);
		ck_assert_int_eq(f->connects, (int)i + 1);
		advance(f, 1);
		ck_assert_int_eq(f->connects, (int)i + 2);
	}
	fake_free(f);
}
END_TEST

START_TEST(reconnects_after_every_close_code)
{
	static const int codes[] = { 1000, 1001, 1011, 1012, 1006, 4000 };
	struct fake *f = fake_new(NULL);

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		open_socket(f);
		/* an ack resets the back-off, as a healthy connection does */
		advance(f, f->conf->heartbeat_ms);
		serverf(f, "[null,\"%s\",\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]",
			f->s->heartbeat_ref);
		session_on_close(f->s, codes[i], "bye", 0);
		ck_assert_int_eq(f->s->state, SESS_WAITING);
		ck_assert_int_eq(f->s->last_close_code, codes[i]);
		advance(f, 10);
		ck_assert_int_eq(f->s->state, SESS_CONNECTING);
	}
	ck_assert_uint_eq(f->s->stats.reconnects, 5);
	fake_free(f);
}
END_TEST

START_TEST(auth_failure_retries_slowly)
{
	struct fake *f = fake_new(NULL);
	f->conf->auth_retry_ms = 30000;
	session_start(f->s);
	session_on_close(f->s, 1006, "handshake answered HTTP 403", 403);
	ck_assert_int_eq(f->s->last_http_status, 403);
	advance(f, 29999);
	ck_assert_int_eq(f->connects, 1);
	advance(f, 1);
	ck_assert_int_eq(f->connects, 2);
	/* other statuses follow the normal schedule */
	session_on_close(f->s, 1006, "handshake answered HTTP 500", 500);
	advance(f, 50);
	ck_assert_int_eq(f->connects, 3);
	fake_free(f);
}
END_TEST

START_TEST(rejoins_every_topic_after_reconnect)
{
	struct conn_conf *c = make_conf();
	add_join(c, "rooms:cfg", "{\"a\":1}");
	struct fake *f = fake_new(c);
	struct result_rec r = { 0 };

	open_socket(f);
	reply_join(f, "rooms:cfg", "ok", "{}");
	session_join(f->s, "rooms:rt", "{\"b\":2}", WANT_RUNTIME, record, &r);
	reply_join(f, "rooms:rt", "ok", "{\"x\":1}");
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.outcome, SESS_OK);
	ck_assert_str_eq(r.response, "{\"x\":1}");
	const char *old_ref = chan(f, "rooms:rt")->join_ref;
	char old[32];
	snprintf(old, sizeof(old), "%s", old_ref);

	size_t mark = nsent(f);
	session_on_close(f->s, 1000, "server restart", 0);
	ck_assert_int_eq(chan(f, "rooms:cfg")->state, CHAN_WAITING);
	advance(f, 10);
	session_on_open(f->s);
	ck_assert_uint_eq(count_sent(f, mark, "rooms:cfg", "phx_join"), 1);
	ck_assert_uint_eq(count_sent(f, mark, "rooms:rt", "phx_join"), 1);
	json_t *j = find_sent(f, mark, "rooms:rt", "phx_join");
	ck_assert_str_ne(fs(j, 0), old);
	ck_assert(jeq(json_array_get(j, 4), "{\"b\":2}"));
	fake_free(f);
}
END_TEST

START_TEST(join_error_surfaced_and_retried_with_backoff)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r = { 0 };
	f->conf->rejoin_ms[0] = 1000;
	f->conf->rejoin_ms[1] = 2000;

	open_socket(f);
	session_join(f->s, "rejected:x", NULL, WANT_RUNTIME, record, &r);
	reply_join(f, "rejected:x", "error", "{\"reason\":\"unauthorized\"}");
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.outcome, SESS_REPLY_ERROR);
	ck_assert_str_eq(r.status, "error");
	ck_assert_str_eq(r.response, "{\"reason\":\"unauthorized\"}");
	ck_assert_int_eq(chan(f, "rejected:x")->state, CHAN_ERRORED);
	ck_assert_str_eq(chan(f, "rejected:x")->last_error, "{\"reason\":\"unauthorized\"}");
	size_t mark = nsent(f);
	advance(f, 999);
	ck_assert_uint_eq(count_sent(f, mark, "rejected:x", "phx_join"), 0);
	advance(f, 1);
	ck_assert_uint_eq(count_sent(f, mark, "rejected:x", "phx_join"), 1);
	reply_join(f, "rejected:x", "error", "{\"reason\":\"too many channels joined\"}");
	mark = nsent(f);
	advance(f, 1999);
	ck_assert_uint_eq(count_sent(f, mark, "rejected:x", "phx_join"), 0);
	advance(f, 1);
	ck_assert_uint_eq(count_sent(f, mark, "rejected:x", "phx_join"), 1);
	/* success resets the schedule */
	reply_join(f, "rejected:x", "ok", "{}");
	ck_assert_uint_eq(chan(f, "rejected:x")->rejoin_tries, 0);
	ck_assert_ptr_null(chan(f, "rejected:x")->last_error);
	fake_free(f);
}
END_TEST

/* A joined topic moved to another websocket is joined there, not here,
 * and counts as joined there once the join is answered. */
START_TEST(a_joined_topic_moved_is_counted_where_it_is_joined)
{
	struct fake *f = fake_new(NULL);

	f->s->ops = &fk_shard_ops;
	struct fake *g = fake_shard(f);
	open_socket(f);
	session_start(g->s);
	session_on_open(g->s);
	session_join(f->s, "rooms:a", NULL, WANT_RUNTIME, NULL, NULL);
	session_join(f->s, "rooms:b", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:a", "ok", "{}");
	reply_join(f, "rooms:b", "ok", "{}");
	ck_assert_uint_eq(f->s->njoined, 2);
	session_move(chan(f, "rooms:b"), g->s);
	ck_assert_uint_eq(f->s->njoined, 1);
	ck_assert_uint_eq(g->s->njoined, 0);
	ck_assert_int_eq(chan(f, "rooms:b")->state, CHAN_JOINING);
	reply_join(g, "rooms:b", "ok", "{}");
	ck_assert_uint_eq(f->s->njoined, 1);
	ck_assert_uint_eq(g->s->njoined, 1);
	check_njoined(f->s);
	check_njoined(g->s);
	fake_shard_free(g);
	fake_free(f);
}
END_TEST

START_TEST(a_topic_refused_for_the_cap_moves_with_its_waiters_and_pushes)
{
	struct fake *f = fake_new(NULL);
	struct result_rec ra = { 0 }, rb = { 0 }, rp = { 0 };
	struct sess_push_args p = { "rooms:b", "ev", "{\"n\":1}", 7, false, true, 0 };

	f->s->ops = &fk_shard_ops;
	struct fake *g = fake_shard(f);
	ck_assert_ptr_eq(g->s->topics, f->s->topics);
	open_socket(f);
	session_join(f->s, "rooms:a", NULL, WANT_RUNTIME, record, &ra);
	session_join(f->s, "rooms:b", "{\"k\":2}", WANT_CLIENT(7), record, &rb);
	reply_join(f, "rooms:a", "ok", "{}");
	session_push(f->s, &p, record, &rp);	/* waits for the join of rooms:b */
	ck_assert_uint_eq(f->s->buffered, 1);
	reply_join(f, "rooms:b", "error", "{\"reason\":\"too many channels joined\"}");
	/* not an answer: the join goes on on the other websocket */
	ck_assert_int_eq(rb.calls, 0);
	ck_assert_int_eq(rp.calls, 0);
	struct channel *b = chan(f, "rooms:b");
	ck_assert_ptr_eq(b->sess, g->s);
	ck_assert_uint_eq(f->s->nchans, 1);
	ck_assert_uint_eq(g->s->nchans, 1);
	ck_assert_uint_eq(f->released, 1);
	ck_assert_uint_eq(f->s->buffered, 0);
	ck_assert_uint_eq(g->s->buffered, 1);
	ck_assert_uint_eq(g->s->buffered_bytes, 7);
	ck_assert_uint_eq(b->nholders, 1);
	ck_assert_int_eq(b->state, CHAN_WAITING);
	/* the second websocket opens and joins it, with its payload */
	session_start(g->s);
	session_on_open(g->s);
	json_t *j = find_sent(g, 0, "rooms:b", "phx_join");
	ck_assert_ptr_nonnull(j);
	ck_assert(jeq(json_array_get(j, 4), "{\"k\":2}"));
	ck_assert_ptr_null(find_sent(g, 0, "rooms:a", "phx_join"));
	reply_join(g, "rooms:b", "ok", "{}");
	ck_assert_int_eq(rb.calls, 1);
	ck_assert_int_eq(rb.outcome, SESS_OK);
	/* the buffered push goes out there, and its reply comes back there */
	json_t *pf = find_sent(g, 0, "rooms:b", "ev");
	ck_assert_ptr_nonnull(pf);
	ck_assert_ptr_null(find_sent(f, 0, "rooms:b", "ev"));
	char reply[256];
	snprintf(reply, sizeof(reply), "[\"%s\",\"%s\",\"rooms:b\",\"phx_reply\",{\"status\":\"ok\",\"response\":{\"r\":1}}]",
		 fs(pf, 0), fs(pf, 1));
	session_on_frame(g->s, reply, strlen(reply), false);
	ck_assert_int_eq(rp.calls, 1);
	ck_assert_str_eq(rp.response, "{\"r\":1}");
	/* a request through the first session reaches the topic's websocket */
	struct sess_push_args q = { "rooms:b", "again", "{}", 2, false, false, 0 };
	session_push(f->s, &q, NULL, NULL);
	ck_assert_ptr_nonnull(find_sent(g, 0, "rooms:b", "again"));
	ck_assert_ptr_null(find_sent(f, 0, "rooms:b", "again"));
	/* a message for rooms:b on the first socket is not the topic's */
	snprintf(reply, sizeof(reply), "[\"%s\",null,\"rooms:b\",\"news\",{}]", b->join_ref);
	uint64_t stale = f->s->stats.stale_dropped;
	server(f, reply);
	ck_assert_uint_eq(f->s->stats.stale_dropped, stale + 1);
	ck_assert_uint_eq(json_array_size(f->messages), 0);
	session_on_frame(g->s, reply, strlen(reply), false);
	ck_assert_uint_eq(json_array_size(g->messages), 1);
	/* a leave through the first session goes out on the second */
	session_leave(f->s, "rooms:b", NULL, NULL);
	ck_assert_ptr_nonnull(find_sent(g, 0, "rooms:b", "phx_leave"));
	/* a refusal the host does not take is retried in place */
	session_join(f->s, "rooms:c", NULL, WANT_RUNTIME, NULL, NULL);
	ck_assert_ptr_eq(chan(f, "rooms:c")->sess, f->s);
	f->shard = NULL;
	reply_join(f, "rooms:c", "error", "{\"reason\":\"too many channels joined\"}");
	ck_assert_int_eq(chan(f, "rooms:c")->state, CHAN_ERRORED);
	fake_shard_free(g);
	fake_free(f);
}
END_TEST

START_TEST(join_timeout_leaves_and_rejoins)
{
	struct fake *f = fake_new(NULL);
	f->conf->join_timeout_ms = 10000;
	f->conf->heartbeat_ms = 0;
	open_socket(f);
	session_join(f->s, "rooms:slow", NULL, WANT_RUNTIME, NULL, NULL);
	json_t *j = find_sent(f, 0, "rooms:slow", "phx_join");
	char jr[32];
	snprintf(jr, sizeof(jr), "%s", fs(j, 0));
	advance(f, 10000);
	json_t *leave = find_sent(f, 0, "rooms:slow", "phx_leave");
	ck_assert_ptr_nonnull(leave);
	ck_assert_str_eq(fs(leave, 0), jr);
	ck_assert_int_eq(chan(f, "rooms:slow")->state, CHAN_ERRORED);
	/* a late reply to the timed-out join is ignored */
	serverf(f, "[\"%s\",\"%s\",\"rooms:slow\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]",
		jr, jr);
	ck_assert_int_eq(chan(f, "rooms:slow")->state, CHAN_ERRORED);
	advance(f, f->conf->rejoin_ms[0]);
	ck_assert_uint_eq(count_sent(f, 0, "rooms:slow", "phx_join"), 2);
	fake_free(f);
}
END_TEST

START_TEST(phx_error_rejoins_and_fails_inflight)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r = { 0 };
	struct sess_push_args a = { "rooms:c", "ping", "{}", 2, false, true, 0 };

	open_socket(f);
	session_join(f->s, "rooms:c", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:c", "ok", "{}");
	session_push(f->s, &a, record, &r);
	const char *jr = chan(f, "rooms:c")->join_ref;
	serverf(f, "[\"%s\",\"%s\",\"rooms:c\",\"phx_error\",{}]", jr, jr);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.outcome, SESS_CHANNEL_ERROR);
	ck_assert_int_eq(chan(f, "rooms:c")->state, CHAN_ERRORED);
	advance(f, f->conf->rejoin_ms[0]);
	ck_assert_uint_eq(count_sent(f, 0, "rooms:c", "phx_join"), 2);
	reply_join(f, "rooms:c", "ok", "{}");
	ck_assert_int_eq(chan(f, "rooms:c")->state, CHAN_JOINED);
	fake_free(f);
}
END_TEST

START_TEST(phx_close_is_final)
{
	struct fake *f = fake_new(NULL);
	open_socket(f);
	session_join(f->s, "rooms:s", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:s", "ok", "{}");
	const char *jr = chan(f, "rooms:s")->join_ref;
	serverf(f, "[\"%s\",\"%s\",\"rooms:s\",\"phx_close\",{}]", jr, jr);
	ck_assert_int_eq(chan(f, "rooms:s")->state, CHAN_CLOSED);
	size_t mark = nsent(f);
	advance(f, 60000);
	session_on_close(f->s, 1000, "x", 0);
	advance(f, 10);
	session_on_open(f->s);
	ck_assert_uint_eq(count_sent(f, mark, "rooms:s", "phx_join"), 0);
	/* pushes to it fail at once */
	struct result_rec r = { 0 };
	struct sess_push_args a = { "rooms:s", "ping", "{}", 2, false, true, 0 };
	session_push(f->s, &a, record, &r);
	ck_assert_int_eq(r.outcome, SESS_NOT_JOINED);
	fake_free(f);
}
END_TEST

START_TEST(stale_join_ref_dropped)
{
	struct fake *f = fake_new(NULL);
	open_socket(f);
	session_join(f->s, "rooms:d", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:d", "ok", "{}");
	char first[32];
	snprintf(first, sizeof(first), "%s", chan(f, "rooms:d")->join_ref);
	/* crash + rejoin gives a new join_ref */
	serverf(f, "[\"%s\",\"%s\",\"rooms:d\",\"phx_error\",{}]", first, first);
	advance(f, f->conf->rejoin_ms[0]);
	reply_join(f, "rooms:d", "ok", "{}");
	ck_assert_str_ne(chan(f, "rooms:d")->join_ref, first);
	/* the old join's close and pushes are not ours */
	serverf(f, "[\"%s\",null,\"rooms:d\",\"phx_close\",{}]", first);
	serverf(f, "[\"%s\",null,\"rooms:d\",\"old\",{}]", first);
	ck_assert_int_eq(chan(f, "rooms:d")->state, CHAN_JOINED);
	ck_assert_uint_eq(json_array_size(f->messages), 0);
	ck_assert_uint_eq(f->s->stats.stale_dropped, 2);
	/* current join_ref and broadcasts (null join_ref) are delivered */
	serverf(f, "[\"%s\",null,\"rooms:d\",\"new\",{}]", chan(f, "rooms:d")->join_ref);
	serverf(f, "[null,null,\"rooms:d\",\"bcast\",{\"x\":1}]");
	ck_assert_uint_eq(json_array_size(f->messages), 2);
	/* messages for topics not joined are dropped */
	serverf(f, "[null,null,\"rooms:other\",\"bcast\",{}]");
	ck_assert_uint_eq(json_array_size(f->messages), 2);
	fake_free(f);
}
END_TEST

START_TEST(push_carries_current_join_ref)
{
	struct fake *f = fake_new(NULL);
	struct sess_push_args a = { "rooms:e", "ev", "{\"k\":1}", 7, false, false, 0 };
	open_socket(f);
	session_join(f->s, "rooms:e", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:e", "ok", "{}");
	session_push(f->s, &a, NULL, NULL);
	json_t *p = find_sent(f, 0, "rooms:e", "ev");
	ck_assert_str_eq(fs(p, 0), chan(f, "rooms:e")->join_ref);
	ck_assert(jeq(json_array_get(p, 4), "{\"k\":1}"));
	fake_free(f);
}
END_TEST

/* A push on a joined channel is framed from the caller's bytes at once;
 * nothing of them is kept (under ASan a later read of the freed copies
 * fails the test). A fire push is answered "sent" before session_push
 * returns, an awaited one by its reply. */
START_TEST(push_sent_at_once_keeps_none_of_the_callers_bytes)
{
	struct fake *f = fake_new(NULL);
	struct result_rec fired = { 0 }, awaited = { 0 };
	char *event = strdup("ev"), *payload = strdup("{\"k\":2}");
	struct sess_push_args a = { "rooms:n", event, payload, 7, false, true, 0 };

	open_socket(f);
	session_join(f->s, "rooms:n", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:n", "ok", "{}");
	ck_assert_ptr_nonnull(session_push(f->s, &a, record, &awaited));
	json_t *p = find_sent(f, 0, "rooms:n", "ev");
	ck_assert_ptr_nonnull(p);
	a.await_reply = false;
	ck_assert_ptr_null(session_push(f->s, &a, record, &fired));
	ck_assert_int_eq(fired.calls, 1);
	ck_assert_int_eq(fired.outcome, SESS_OK);
	ck_assert_str_eq(fired.status, "sent");
	memset(event, 'x', 2);
	memset(payload, 'x', 7);
	free(event);
	free(payload);
	ck_assert_uint_eq(count_sent(f, 0, "rooms:n", "ev"), 2);
	ck_assert(jeq(json_array_get(p, 4), "{\"k\":2}"));
	json_t *last = find_sent(f, 0, "rooms:n", "ev");
	ck_assert(jeq(json_array_get(last, 4), "{\"k\":2}"));
	ck_assert_str_ne(fs(last, 1), fs(p, 1));
	ck_assert_int_eq(awaited.calls, 0);
	serverf(f, "[\"%s\",\"%s\",\"rooms:n\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]",
		fs(p, 0), fs(p, 1));
	ck_assert_int_eq(awaited.calls, 1);
	ck_assert_int_eq(awaited.outcome, SESS_OK);
	ck_assert_int_eq(fired.calls, 1);
	ck_assert_uint_eq(f->s->stats.pushes_sent, 2);
	fake_free(f);
}
END_TEST

START_TEST(push_buffered_until_joined)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r1 = { 0 }, r2 = { 0 };
	struct sess_push_args a = { "rooms:f", "first", "1", 1, false, true, 0 };
	struct sess_push_args b = { "rooms:f", "second", "2", 1, false, false, 0 };

	session_join(f->s, "rooms:f", NULL, WANT_RUNTIME, NULL, NULL);	/* not connected yet */
	session_push(f->s, &a, record, &r1);
	session_push(f->s, &b, record, &r2);
	ck_assert_int_eq(r1.calls + r2.calls, 0);
	ck_assert_uint_eq(f->s->buffered, 2);
	open_socket(f);
	ck_assert_uint_eq(count_sent(f, 0, "rooms:f", "first"), 0);
	reply_join(f, "rooms:f", "ok", "{}");
	/* sent after the join, in order, with the new join_ref */
	json_t *p1 = find_sent(f, 0, "rooms:f", "first"), *p2 = find_sent(f, 0, "rooms:f", "second");
	ck_assert_ptr_nonnull(p1);
	ck_assert_ptr_nonnull(p2);
	ck_assert_int_lt(atol(fs(p1, 1)), atol(fs(p2, 1)));
	ck_assert_str_eq(fs(p1, 0), chan(f, "rooms:f")->join_ref);
	ck_assert_int_eq(r2.calls, 1);
	ck_assert_str_eq(r2.status, "sent");
	serverf(f, "[\"%s\",\"%s\",\"rooms:f\",\"phx_reply\",{\"status\":\"ok\",\"response\":{\"n\":1}}]",
		fs(p1, 0), fs(p1, 1));
	ck_assert_int_eq(r1.calls, 1);
	ck_assert_int_eq(r1.outcome, SESS_OK);
	ck_assert_str_eq(r1.response, "{\"n\":1}");
	/* a buffered phx_join is never replayed: one join on the wire */
	ck_assert_uint_eq(count_sent(f, 0, "rooms:f", "phx_join"), 1);
	fake_free(f);
}
END_TEST

START_TEST(push_timeout_and_buffer_cap)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r[4] = { 0 };
	struct sess_push_args a = { "rooms:g", "x", "{}", 2, false, true, 5000 };

	f->conf->push_buffer = 2;
	session_join(f->s, "rooms:g", NULL, WANT_RUNTIME, NULL, NULL);
	session_push(f->s, &a, record, &r[0]);
	session_push(f->s, &a, record, &r[1]);
	session_push(f->s, &a, record, &r[2]);
	ck_assert_int_eq(r[2].calls, 1);
	ck_assert_int_eq(r[2].outcome, SESS_BUFFER_FULL);
	advance(f, 4999);
	ck_assert_int_eq(r[0].calls, 0);
	advance(f, 1);
	ck_assert_int_eq(r[0].calls, 1);
	ck_assert_int_eq(r[0].outcome, SESS_TIMEOUT);
	ck_assert_int_eq(r[1].outcome, SESS_TIMEOUT);
	ck_assert_uint_eq(f->s->buffered, 0);
	/* unknown topic */
	struct sess_push_args u = { "rooms:none", "x", "{}", 2, false, true, 0 };
	session_push(f->s, &u, record, &r[3]);
	ck_assert_int_eq(r[3].outcome, SESS_NOT_JOINED);
	fake_free(f);
}
END_TEST

START_TEST(push_buffer_bytes_cap)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r[3] = { 0 };
	struct sess_push_args a = { "rooms:bb", "x", "\"abcd\"", 6, false, true, 0 };

	f->conf->push_buffer_bytes = 12;
	session_join(f->s, "rooms:bb", NULL, WANT_RUNTIME, NULL, NULL);
	session_push(f->s, &a, record, &r[0]);
	session_push(f->s, &a, record, &r[1]);
	session_push(f->s, &a, record, &r[2]);
	ck_assert_int_eq(r[0].calls + r[1].calls, 0);
	ck_assert_int_eq(r[2].outcome, SESS_BUFFER_FULL);
	ck_assert_uint_eq(f->s->buffered_bytes, 12);
	/* sent after the join: the buffer is empty again */
	open_socket(f);
	reply_join(f, "rooms:bb", "ok", "{}");
	ck_assert_uint_eq(f->s->buffered_bytes, 0);
	ck_assert_uint_eq(count_sent(f, 0, "rooms:bb", "x"), 2);
	fake_free(f);
}
END_TEST

START_TEST(push_reply_error_timeout_and_disconnect)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r[3] = { 0 };
	struct sess_push_args a = { "rooms:h", "x", "{}", 2, false, true, 3000 };

	f->conf->heartbeat_ms = 0;
	open_socket(f);
	session_join(f->s, "rooms:h", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:h", "ok", "{}");
	session_push(f->s, &a, record, &r[0]);
	json_t *p = find_sent(f, 0, "rooms:h", "x");
	serverf(f, "[\"%s\",\"%s\",\"rooms:h\",\"phx_reply\",{\"status\":\"error\",\"response\":{\"reason\":\"nope\"}}]",
		fs(p, 0), fs(p, 1));
	ck_assert_int_eq(r[0].outcome, SESS_REPLY_ERROR);
	ck_assert_str_eq(r[0].status, "error");
	ck_assert_str_eq(r[0].response, "{\"reason\":\"nope\"}");
	session_push(f->s, &a, record, &r[1]);
	advance(f, 3000);
	ck_assert_int_eq(r[1].outcome, SESS_TIMEOUT);
	session_push(f->s, &a, record, &r[2]);
	session_on_close(f->s, 1006, "lost", 0);
	ck_assert_int_eq(r[2].calls, 1);
	ck_assert_int_eq(r[2].outcome, SESS_DISCONNECTED);
	ck_assert_uint_eq(f->s->inflight.len, 0);
	fake_free(f);
}
END_TEST

START_TEST(binary_push_and_reply)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r = { 0 };
	struct sess_push_args a = { "rooms:bin", "blob", "\x01\x02\x00\xff", 4, true, true, 0 };

	open_socket(f);
	session_join(f->s, "rooms:bin", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:bin", "ok", "{}");
	size_t i = nsent(f);
	session_push(f->s, &a, record, &r);
	ck_assert(f->sent_binary[i]);
	struct phx_msg m;
	ck_assert_int_eq(phx_decode_binary(f->sent_raw[i], f->sent_len[i], PHX_FROM_CLIENT, &m, NULL),
			 PHX_OK);
	ck_assert(phx_field_eq(m.join_ref, chan(f, "rooms:bin")->join_ref));
	ck_assert(phx_field_eq(m.event, "blob"));
	ck_assert_uint_eq(m.payload.len, 4);
	/* binary reply: kind 1 */
	char frame[64];
	size_t n = 0;
	const char *jr = chan(f, "rooms:bin")->join_ref;
	char ref[32];
	snprintf(ref, sizeof(ref), "%.*s", (int)m.ref.len, m.ref.s);
	frame[n++] = 1;
	frame[n++] = (char)strlen(jr);
	frame[n++] = (char)strlen(ref);
	frame[n++] = 9;
	frame[n++] = 2;
	memcpy(frame + n, jr, strlen(jr)); n += strlen(jr);
	memcpy(frame + n, ref, strlen(ref)); n += strlen(ref);
	memcpy(frame + n, "rooms:bin", 9); n += 9;
	memcpy(frame + n, "ok", 2); n += 2;
	memcpy(frame + n, "\xde\xad", 2); n += 2;
	session_on_frame(f->s, frame, n, true);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.outcome, SESS_OK);
	fake_free(f);
}
END_TEST

START_TEST(presence_synced_and_diffs_buffered)
{
	struct fake *f = fake_new(NULL);
	open_socket(f);
	session_join(f->s, "rooms:p", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:p", "ok", "{}");
	/* a diff before the state waits for it */
	server(f, "[null,null,\"rooms:p\",\"presence_diff\",{\"joins\":{\"bob\":{\"metas\":[{\"phx_ref\":\"b1\"}]}},\"leaves\":{}}]");
	ck_assert_ptr_null(chan(f, "rooms:p")->presence.state);
	server(f, "[null,null,\"rooms:p\",\"presence_state\",{\"alice\":{\"metas\":[{\"phx_ref\":\"a1\"}]}}]");
	json_t *p = chan(f, "rooms:p")->presence.state;
	ck_assert_ptr_nonnull(json_object_get(p, "alice"));
	ck_assert_ptr_nonnull(json_object_get(p, "bob"));
	server(f, "[null,null,\"rooms:p\",\"presence_diff\",{\"joins\":{\"alice\":{\"metas\":[{\"phx_ref\":\"a2\"}]}},\"leaves\":{\"bob\":{\"metas\":[{\"phx_ref\":\"b1\"}]}}}]");
	p = chan(f, "rooms:p")->presence.state;
	ck_assert_ptr_null(json_object_get(p, "bob"));
	ck_assert_uint_eq(json_array_size(json_object_get(json_object_get(p, "alice"), "metas")), 2);
	/* a rejoin waits for a fresh state */
	session_on_close(f->s, 1000, "x", 0);
	advance(f, 10);
	session_on_open(f->s);
	ck_assert(!chan(f, "rooms:p")->presence.synced);
	reply_join(f, "rooms:p", "ok", "{}");
	server(f, "[null,null,\"rooms:p\",\"presence_state\",{\"carol\":{\"metas\":[{\"phx_ref\":\"c1\"}]}}]");
	p = chan(f, "rooms:p")->presence.state;
	ck_assert_ptr_null(json_object_get(p, "alice"));
	ck_assert_ptr_nonnull(json_object_get(p, "carol"));
	/* presence messages also reach subscribers */
	ck_assert_uint_eq(json_array_size(f->messages), 4);
	fake_free(f);
}
END_TEST

START_TEST(leave_sends_phx_leave_and_forgets)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r = { 0 }, r2 = { 0 };
	open_socket(f);
	session_join(f->s, "rooms:l", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:l", "ok", "{}");
	session_leave(f->s, "rooms:l", record, &r);
	json_t *l = find_sent(f, 0, "rooms:l", "phx_leave");
	ck_assert_ptr_nonnull(l);
	ck_assert_str_eq(fs(l, 0), chan(f, "rooms:l")->join_ref);
	ck_assert_int_eq(chan(f, "rooms:l")->state, CHAN_LEAVING);
	serverf(f, "[\"%s\",\"%s\",\"rooms:l\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]",
		fs(l, 0), fs(l, 1));
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.outcome, SESS_OK);
	ck_assert_ptr_null(chan(f, "rooms:l"));
	/* not rejoined after a reconnect */
	size_t mark = nsent(f);
	session_on_close(f->s, 1000, "x", 0);
	advance(f, 10);
	session_on_open(f->s);
	ck_assert_uint_eq(count_sent(f, mark, "rooms:l", "phx_join"), 0);
	session_leave(f->s, "rooms:l", record, &r2);
	ck_assert_int_eq(r2.outcome, SESS_NOT_JOINED);
	fake_free(f);
}
END_TEST

START_TEST(a_leave_never_confirmed_counts_as_left)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r = { 0 }, p = { 0 };
	open_socket(f);
	session_join(f->s, "rooms:q", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:q", "ok", "{}");
	struct sess_push_args a = { "rooms:q", "quicksand", "{}", 2, false, true, 60000 };
	session_push(f->s, &a, record, &p);
	session_leave(f->s, "rooms:q", record, &r);
	ck_assert_int_eq(chan(f, "rooms:q")->state, CHAN_LEAVING);
	/* the server never answers the leave: after join_timeout_ms it is left */
	advance(f, f->conf->join_timeout_ms + 1);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.outcome, SESS_OK);
	ck_assert_str_eq(r.message, "leave not confirmed");
	ck_assert_int_eq(p.calls, 1);
	ck_assert_int_eq(p.outcome, SESS_LEFT);
	ck_assert_ptr_null(chan(f, "rooms:q"));
	ck_assert_uint_eq(f->s->inflight.len, 0);
	fake_free(f);
}
END_TEST

START_TEST(a_channel_the_server_closed_is_joined_again_on_request)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r = { 0 };
	open_socket(f);
	session_join(f->s, "rooms:s", "{\"v\":1}", WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:s", "ok", "{}");
	const char *jr = chan(f, "rooms:s")->join_ref;
	serverf(f, "[\"%s\",\"%s\",\"rooms:s\",\"phx_close\",{}]", jr, jr);
	ck_assert_int_eq(chan(f, "rooms:s")->state, CHAN_CLOSED);
	size_t mark = nsent(f);
	session_join(f->s, "rooms:s", "{\"v\":2}", WANT_RUNTIME, record, &r);
	json_t *j = find_sent(f, mark, "rooms:s", "phx_join");
	ck_assert_ptr_nonnull(j);
	ck_assert(jeq(json_array_get(j, 4), "{\"v\":2}"));
	ck_assert_int_eq(r.calls, 0);
	reply_join(f, "rooms:s", "ok", "{\"again\":true}");
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.outcome, SESS_OK);
	ck_assert_int_eq(chan(f, "rooms:s")->state, CHAN_JOINED);
	fake_free(f);
}
END_TEST

START_TEST(cancelled_requests_never_call_back)
{
	struct fake *f = fake_new(NULL);
	struct result_rec j = { 0 }, sent_p = { 0 }, buffered = { 0 };
	open_socket(f);
	/* a join waiter, cancelled: the join itself stays wanted */
	struct sess_req *h = session_join(f->s, "rooms:c", NULL, WANT_RUNTIME, record, &j);
	ck_assert_ptr_nonnull(h);
	session_cancel(h);
	reply_join(f, "rooms:c", "ok", "{}");
	ck_assert_int_eq(j.calls, 0);
	ck_assert_int_eq(chan(f, "rooms:c")->state, CHAN_JOINED);
	/* an awaited push already sent: its reply is dropped, the ref forgotten */
	struct sess_push_args a = { "rooms:c", "ping", "{}", 2, false, true, 0 };
	h = session_push(f->s, &a, record, &sent_p);
	ck_assert_ptr_nonnull(h);
	json_t *pf = find_sent(f, 0, "rooms:c", "ping");
	session_cancel(h);
	ck_assert_uint_eq(f->s->inflight.len, 0);
	serverf(f, "[\"%s\",\"%s\",\"rooms:c\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]",
		fs(pf, 0), fs(pf, 1));
	ck_assert_int_eq(sent_p.calls, 0);
	ck_assert_uint_eq(f->s->stats.unmatched_replies, 1);
	/* a push still waiting for the join: it is still sent, as a fire push */
	session_join(f->s, "rooms:w", NULL, WANT_RUNTIME, NULL, NULL);
	struct sess_push_args b = { "rooms:w", "later", "{}", 2, false, true, 0 };
	h = session_push(f->s, &b, record, &buffered);
	ck_assert_ptr_nonnull(h);
	session_cancel(h);
	size_t mark = nsent(f);
	reply_join(f, "rooms:w", "ok", "{}");
	ck_assert_ptr_nonnull(find_sent(f, mark, "rooms:w", "later"));
	ck_assert_int_eq(buffered.calls, 0);
	ck_assert_uint_eq(f->s->inflight.len, 0);
	fake_free(f);
}
END_TEST

START_TEST(reconfigure_rearms_the_heartbeat_without_reconnecting)
{
	struct fake *f = fake_new(NULL);
	open_socket(f);
	struct conn_conf *n = make_conf();
	n->heartbeat_ms = 0;
	session_reconfigure(f->s, n);
	size_t mark = nsent(f);
	advance(f, 10 * f->conf->heartbeat_ms);
	ck_assert_uint_eq(count_sent(f, mark, "phoenix", "heartbeat"), 0);
	ck_assert_int_eq(f->s->state, SESS_OPEN);
	struct conn_conf *m = make_conf();
	m->heartbeat_ms = 100;
	session_reconfigure(f->s, m);
	advance(f, 100);
	ck_assert_uint_eq(count_sent(f, mark, "phoenix", "heartbeat"), 1);
	ck_assert_int_eq(f->connects, 1);
	f->s->conf = f->conf;
	config_conn_free(n);
	config_conn_free(m);
	fake_free(f);
}
END_TEST

START_TEST(max_topics_refuses_runtime_joins_past_it)
{
	struct conn_conf *c = make_conf();
	c->max_topics = 2;
	add_join(c, "cfg:1", "{}");
	struct fake *f = fake_new(c);
	struct result_rec r = { 0 };
	open_socket(f);
	session_join(f->s, "rooms:1", NULL, WANT_RUNTIME, NULL, NULL);
	session_join(f->s, "rooms:2", NULL, WANT_RUNTIME, record, &r);
	ck_assert_int_eq(r.outcome, SESS_TOO_MANY_TOPICS);
	ck_assert_ptr_null(chan(f, "rooms:2"));
	fake_free(f);
}
END_TEST

START_TEST(duplicate_join_requests_share_one_join)
{
	struct fake *f = fake_new(NULL);
	struct result_rec a = { 0 }, b = { 0 }, c = { 0 };
	open_socket(f);
	session_join(f->s, "rooms:dup", NULL, WANT_RUNTIME, record, &a);
	session_join(f->s, "rooms:dup", NULL, WANT_RUNTIME, record, &b);
	ck_assert_uint_eq(count_sent(f, 0, "rooms:dup", "phx_join"), 1);
	reply_join(f, "rooms:dup", "ok", "{\"v\":1}");
	ck_assert_int_eq(a.outcome, SESS_OK);
	ck_assert_int_eq(b.outcome, SESS_OK);
	session_join(f->s, "rooms:dup", NULL, WANT_RUNTIME, record, &c);
	ck_assert_int_eq(c.calls, 1);
	ck_assert_str_eq(c.response, "{\"v\":1}");
	ck_assert_uint_eq(count_sent(f, 0, "rooms:dup", "phx_join"), 1);
	fake_free(f);
}
END_TEST

START_TEST(join_request_times_out_while_disconnected)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r = { 0 };
	f->conf->join_timeout_ms = 2000;
	session_start(f->s);
	session_on_close(f->s, 1006, "refused", 0);
	session_join(f->s, "rooms:w", NULL, WANT_RUNTIME, record, &r);
	advance(f, 1999);
	ck_assert_int_eq(r.calls, 0);
	advance(f, 1);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.outcome, SESS_TIMEOUT);
	/* the topic stays wanted */
	ck_assert_ptr_nonnull(chan(f, "rooms:w"));
	fake_free(f);
}
END_TEST

START_TEST(stop_leaves_closes_and_answers)
{
	struct fake *f = fake_new(NULL);
	struct result_rec r = { 0 }, j = { 0 };
	struct sess_push_args a = { "rooms:z", "x", "{}", 2, false, true, 0 };
	open_socket(f);
	session_join(f->s, "rooms:z", NULL, WANT_RUNTIME, NULL, NULL);
	reply_join(f, "rooms:z", "ok", "{}");
	session_join(f->s, "rooms:pending", NULL, WANT_RUNTIME, record, &j);
	session_push(f->s, &a, record, &r);
	session_stop(f->s);
	ck_assert_ptr_nonnull(find_sent(f, 0, "rooms:z", "phx_leave"));
	ck_assert_int_eq(f->closes, 1);
	ck_assert_int_eq(f->last_close_code, 1000);
	ck_assert_int_eq(r.outcome, SESS_SHUTTING_DOWN);
	ck_assert_int_eq(j.outcome, SESS_SHUTTING_DOWN);
	ck_assert_int_eq(f->s->state, SESS_STOPPED);
	advance(f, 60000);
	ck_assert_int_eq(f->connects, 1);
	fake_free(f);
}
END_TEST

START_TEST(reconfigure_joins_leaves_and_reconnects)
{
	struct conn_conf *c = make_conf();
	add_join(c, "keep", "{}");
	add_join(c, "drop", "{}");
	struct fake *f = fake_new(c);
	open_socket(f);
	reply_join(f, "keep", "ok", "{}");
	reply_join(f, "drop", "ok", "{}");

	struct conn_conf *n = make_conf();
	add_join(n, "keep", "{}");
	add_join(n, "add", "{}");
	size_t mark = nsent(f);
	session_reconfigure(f->s, n);
	ck_assert_int_eq(f->closes, 0);	/* same url: no reconnect */
	ck_assert_ptr_nonnull(find_sent(f, mark, "drop", "phx_leave"));
	ck_assert_ptr_nonnull(find_sent(f, mark, "add", "phx_join"));
	ck_assert_uint_eq(count_sent(f, mark, "keep", "phx_join"), 0);

	struct conn_conf *m = make_conf();
	char err[64];
	add_join(m, "keep", "{}");
	free(m->url);
	m->url = strdup("ws://127.0.0.1:4001/socket");
	ck_assert(config_parse_url(m, m->url, err, sizeof(err)));
	session_reconfigure(f->s, m);
	ck_assert_int_eq(f->closes, 1);
	ck_assert_int_eq(f->connects, 2);
	f->s->conf = c;	/* fake_free frees c */
	config_conn_free(n);
	config_conn_free(m);
	fake_free(f);
}
END_TEST

/* A reload of a long topic list leaves exactly the topics it dropped. */
START_TEST(reconfigure_of_many_topics_leaves_exactly_the_dropped)
{
	enum { N = 600 };
	char topic[32];
	struct conn_conf *c = make_conf(), *n = make_conf();
	for (int i = 0; i < N; i++) {
		snprintf(topic, sizeof(topic), "load:t%d", i);
		add_join(c, topic, "{}");
		if (i % 3 != 0)
			add_join(n, topic, "{}");
	}
	struct fake *f = fake_new(c);
	open_socket(f);
	for (int i = 0; i < N; i++) {
		snprintf(topic, sizeof(topic), "load:t%d", i);
		reply_join(f, topic, "ok", "{}");
	}
	ck_assert_uint_eq(f->s->njoined, N);
	size_t mark = nsent(f);
	session_reconfigure(f->s, n);
	ck_assert_uint_eq(nsent(f) - mark, N / 3);
	ck_assert_uint_eq(f->s->njoined, N - N / 3);
	for (int i = 0; i < N; i++) {
		snprintf(topic, sizeof(topic), "load:t%d", i);
		ck_assert_uint_eq(count_sent(f, mark, topic, "phx_leave"), i % 3 == 0);
		ck_assert_int_eq(chan(f, topic)->state, i % 3 == 0 ? CHAN_LEAVING : CHAN_JOINED);
	}
	f->s->conf = c;	/* fake_free frees c */
	config_conn_free(n);
	fake_free(f);
}
END_TEST

START_TEST(a_topic_is_left_only_when_nobody_wants_it)
{
	struct conn_conf *c = make_conf();
	add_join(c, "cfg", "{}");
	struct fake *f = fake_new(c);
	open_socket(f);
	reply_join(f, "cfg", "ok", "{}");

	/* Two clients hold a topic, and a runtime join wants it too. */
	session_join(f->s, "held", NULL, WANT_CLIENT(7), NULL, NULL);
	reply_join(f, "held", "ok", "{}");
	session_join(f->s, "held", NULL, WANT_CLIENT(9), NULL, NULL);
	session_join(f->s, "held", NULL, WANT_CLIENT(9), NULL, NULL);	/* once per client */
	session_join(f->s, "held", NULL, WANT_RUNTIME, NULL, NULL);
	struct channel *ch = chan(f, "held");
	ck_assert_uint_eq(ch->nholders, 2);
	ck_assert(ch->runtime && !ch->from_config);
	ck_assert_uint_eq(count_sent(f, 0, "held", "phx_join"), 1);

	ck_assert(!session_unwant(f->s, ch, WANT_CLIENT(7)));
	ck_assert(!session_unwant(f->s, ch, WANT_CLIENT(7)));	/* not a holder any more */
	ck_assert(!session_unwant(f->s, ch, WANT_RUNTIME));
	ck_assert_uint_eq(ch->nholders, 1);
	ck_assert(session_wanted(ch));
	ck_assert(session_unwant(f->s, ch, WANT_CLIENT(9)));
	ck_assert(!session_wanted(ch));

	/* A config topic a client also holds: a reload dropping it from the
	 * config keeps it joined for the client. */
	session_join(f->s, "cfg", NULL, WANT_CLIENT(7), NULL, NULL);
	struct conn_conf *n = make_conf();
	size_t mark = nsent(f);
	session_reconfigure(f->s, n);
	ck_assert_uint_eq(count_sent(f, mark, "cfg", "phx_leave"), 0);
	ck_assert_int_eq(chan(f, "cfg")->state, CHAN_JOINED);
	ck_assert(!chan(f, "cfg")->from_config);
	ck_assert(session_unwant(f->s, chan(f, "cfg"), WANT_CLIENT(7)));

	/* A runtime join of a new topic counts against max_topics; the config
	 * does not. */
	n->max_topics = f->s->topics->len;
	struct result_rec r = { 0 };
	session_join(f->s, "one-too-many", NULL, WANT_CLIENT(3), record, &r);
	ck_assert_int_eq(r.outcome, SESS_TOO_MANY_TOPICS);
	ck_assert_ptr_null(chan(f, "one-too-many"));
	f->s->conf = c;	/* fake_free frees c */
	config_conn_free(n);
	fake_free(f);
}
END_TEST

START_TEST(bad_server_frames_are_counted_not_fatal)
{
	static const char *bad[] = {
		"", "[", "{}", "[1,2,3,4,5]", "[null,null,\"t\",\"e\"]", "null",
		"[null,null,\"t\",\"phx_reply\",{}]", "[null,\"1\",\"t\",\"phx_reply\",{\"status\":1}]",
		"[\"1\",\"1\",\"t\",\"e\",{}] trailing", "\xff\xfe", "[null,null,null,\"e\",{}]",
	};
	struct fake *f = fake_new(NULL);
	open_socket(f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		session_on_frame(f->s, bad[i], strlen(bad[i]), false);
	session_on_frame(f->s, "\x07\x00", 2, true);
	session_on_frame(f->s, "\x01\x05", 2, true);
	/* 11 of the 13 are refused by the decoder; the two phx_reply frames
	 * decode, and match nothing in flight (nothing was pushed). */
	ck_assert_uint_eq(f->s->stats.bad_frames, 11);
	ck_assert_uint_eq(f->s->stats.unmatched_replies, 2);
	ck_assert_int_eq(f->s->state, SESS_OPEN);
	ck_assert_uint_eq(json_array_size(f->messages), 0);
	fake_free(f);
}
END_TEST

START_TEST(backoff_jitter_bounds)
{
	unsigned list[] = { 1000 };
	ck_assert_uint_eq(session_backoff(list, 1, 0, 0.0, 0.9), 1000);
	ck_assert_uint_eq(session_backoff(list, 1, 5, 0.2, 0.0), 800);
	ck_assert_uint_eq(session_backoff(list, 1, 5, 0.2, 0.5), 1000);
	ck_assert_uint_le(session_backoff(list, 1, 5, 0.2, 0.999999), 1200);
	ck_assert_uint_eq(session_backoff(NULL, 0, 3, 0.2, 0.5), 0);
}
END_TEST

START_TEST(unmatched_reply_ignored)
{
	struct fake *f = fake_new(NULL);
	open_socket(f);
	server(f, "[null,\"77\",\"rooms:q\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
	ck_assert_uint_eq(f->s->stats.unmatched_replies, 1);
	fake_free(f);
}
END_TEST

static Suite *
session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("rules");

	tcase_add_test(tc, joins_configured_topics_on_open);
	tcase_add_test(tc, refs_are_unique_and_increasing);
	tcase_add_test(tc, heartbeat_sent_and_acked_by_ref);
	tcase_add_test(tc, heartbeat_timeout_reconnects);
	tcase_add_test(tc, reconnect_backoff_follows_schedule);
	tcase_add_test(tc, reconnects_after_every_close_code);
	tcase_add_test(tc, auth_failure_retries_slowly);
	tcase_add_test(tc, rejoins_every_topic_after_reconnect);
	tcase_add_test(tc, join_error_surfaced_and_retried_with_backoff);
	tcase_add_test(tc, a_joined_topic_moved_is_counted_where_it_is_joined);
	tcase_add_test(tc, a_topic_refused_for_the_cap_moves_with_its_waiters_and_pushes);
	tcase_add_test(tc, join_timeout_leaves_and_rejoins);
	tcase_add_test(tc, phx_error_rejoins_and_fails_inflight);
	tcase_add_test(tc, phx_close_is_final);
	tcase_add_test(tc, stale_join_ref_dropped);
	tcase_add_test(tc, push_carries_current_join_ref);
	tcase_add_test(tc, push_sent_at_once_keeps_none_of_the_callers_bytes);
	tcase_add_test(tc, push_buffered_until_joined);
	tcase_add_test(tc, push_timeout_and_buffer_cap);
	tcase_add_test(tc, push_buffer_bytes_cap);
	tcase_add_test(tc, push_reply_error_timeout_and_disconnect);
	tcase_add_test(tc, binary_push_and_reply);
	tcase_add_test(tc, presence_synced_and_diffs_buffered);
	tcase_add_test(tc, leave_sends_phx_leave_and_forgets);
	tcase_add_test(tc, duplicate_join_requests_share_one_join);
	tcase_add_test(tc, a_leave_never_confirmed_counts_as_left);
	tcase_add_test(tc, a_channel_the_server_closed_is_joined_again_on_request);
	tcase_add_test(tc, cancelled_requests_never_call_back);
	tcase_add_test(tc, reconfigure_rearms_the_heartbeat_without_reconnecting);
	tcase_add_test(tc, max_topics_refuses_runtime_joins_past_it);
	tcase_add_test(tc, join_request_times_out_while_disconnected);
	tcase_add_test(tc, stop_leaves_closes_and_answers);
	tcase_add_test(tc, reconfigure_joins_leaves_and_reconnects);
	tcase_add_test(tc, reconfigure_of_many_topics_leaves_exactly_the_dropped);
	tcase_add_test(tc, a_topic_is_left_only_when_nobody_wants_it);
	tcase_add_test(tc, bad_server_frames_are_counted_not_fatal);
	tcase_add_test(tc, backoff_jitter_bounds);
	tcase_add_test(tc, unmatched_reply_ignored);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(session_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
