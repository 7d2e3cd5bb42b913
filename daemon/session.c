/* SPDX-License-Identifier: MIT */
#include "session.h"

#include "log.h"
#include "xmalloc.h"

#include "protocol/json_scan.h"

#include <stdlib.h>
#include <string.h>

/*
 * Everything awaiting a reply sits in s->inflight keyed by its ref; the
 * value says what it is. Joins and leaves embed theirs in the channel.
 */
enum wait_kind { WAIT_JOIN, WAIT_LEAVE, WAIT_PUSH };

struct sess_wait {
	enum wait_kind kind;
	void *obj;
};

/* What session_push/join/leave hand back: a push or a waiter. */
enum req_kind { REQ_PUSH, REQ_WAITER };
struct sess_req {
	enum req_kind kind;
};

/* A caller waiting for a join or a leave to settle. */
struct sess_waiter {
	struct sess_req req;
	TAILQ_ENTRY(sess_waiter) entry;
	bool leave;
	struct channel *ch;
	sess_done_fn done;
	void *arg;
	struct tq_timer timer;
};

struct sess_push {
	struct sess_req req;
	TAILQ_ENTRY(sess_push) entry;	/* on its channel's buffer or inflight */
	struct channel *ch;
	char *event;
	char *payload;
	size_t payload_len;
	bool binary;
	bool await_reply;
	bool inflight;
	unsigned timeout_ms;
	char ref[PHX_REF_BUFSZ];
	struct sess_wait wait;
	struct tq_timer timer;
	sess_done_fn done;
	void *arg;
};

/* Per-channel wait records live beside the channel. */
struct channel_waits {
	struct sess_wait join, leave;
};

static const struct session_ops no_ops;

#define BAD_FRAME_LOG_LIMIT 10
/* What phxd keeps of a server's join refusal or close reason: enough to
 * read, never the server's choice of size. */
#define LAST_ERROR_MAX 1024

static void socket_gone(struct session *s, int code, const char *reason, int http_status);
static void set_state(struct channel *ch, enum chan_state st);
static void send_join(struct channel *ch);
static void send_push(struct session *s, struct sess_push *p);
static void channel_free(struct channel *ch);

static const char *const sess_state_names[] = {
	"idle", "connecting", "open", "waiting", "stopped",
};
static const char *const chan_state_names[] = {
	"waiting", "joining", "joined", "errored", "leaving", "closed",
};
static const char *const outcome_names[] = {
	"ok", "reply_error", "timeout", "buffer_full", "not_joined", "disconnected",
	"channel_error", "channel_closed", "left", "shutting_down", "too_large", "too_many_topics",
};

const char *
session_state_name(enum sess_state st)
{
	return sess_state_names[st];
}

const char *
chan_state_name(enum chan_state st)
{
	return chan_state_names[st];
}

const char *
session_outcome_name(enum sess_outcome o)
{
	return outcome_names[o];
}

uint64_t
session_backoff(const unsigned *list, size_t n, unsigned tries, double jitter, double random01)
{
	double ms;

	if (n == 0)
		return 0;
	ms = list[tries < n ? tries : n - 1];
	if (jitter > 0)
		ms *= 1.0 - jitter + 2.0 * jitter * random01;
	return ms < 0 ? 0 : (uint64_t)(ms + 0.5);
}

static struct channel_waits *
waits_of(struct channel *ch)
{
	return (struct channel_waits *)(ch + 1);
}

static void
emit(struct session *s, const struct sess_event *ev)
{
	if (s->ops->event)
		s->ops->event(s->host, s, ev);
}

static void
emit_channel(struct channel *ch, const char *reason, uint64_t delay_ms)
{
	struct sess_event ev = {
		.kind = SEV_CHANNEL,
		.topic = ch->topic,
		.chan_state = ch->state,
		.reason = reason,
		.delay_ms = delay_ms,
		.attempt = ch->rejoin_tries,
	};

	emit(ch->sess, &ev);
}

static void
finish(sess_done_fn done, void *arg, enum sess_outcome o, const char *message)
{
	struct sess_result r = { .outcome = o, .message = message };

	if (done)
		done(arg, &r);
}

/* ---- frames out ------------------------------------------------------- */

static void
send_frame(struct session *s, const char *join_ref, const char *ref, struct phx_field topic,
	   const char *event, const char *payload, size_t payload_len, bool binary)
{
	struct phx_msg m = {
		.kind = binary ? PHX_BIN_PUSH : PHX_TEXT,
		.join_ref = phx_field_str(join_ref),
		.ref = phx_field_str(ref),
		.topic = topic,
		.event = phx_field_str(event),
		.payload = { payload, payload_len },
	};
	size_t len = phx_encoded_max(&m, PHX_FROM_CLIENT);

	if (len > s->scratch_cap) {
		s->scratch_cap = len > 2 * s->scratch_cap ? len : 2 * s->scratch_cap;
		free(s->scratch);
		s->scratch = xmalloc(s->scratch_cap);
	}
	len = phx_encode(&m, PHX_FROM_CLIENT, s->scratch);
	s->stats.frames_out++;
	s->ops->send(s->host, s, s->scratch, len, binary);
}

static struct phx_field
topic_field(const struct channel *ch)
{
	struct phx_field f = { ch->topic, ch->topic_len };
	return f;
}

/* ---- timers ----------------------------------------------------------- */

static double
random01(struct session *s)
{
	return s->ops->random ? s->ops->random(s->host) : 0.5;
}

static void
schedule_reconnect(struct session *s, int http_status)
{
	const struct conn_conf *c = s->conf;
	uint64_t delay = session_backoff(c->reconnect_ms, c->nreconnect, s->reconnect_tries,
					 c->jitter, random01(s));

	s->reconnect_tries++;
	/* A server that refuses our credentials will not change its mind in
	 * 10 ms; retry slowly and say so. */
	if ((http_status == 401 || http_status == 403) && delay < c->auth_retry_ms)
		delay = c->auth_retry_ms;
	s->state = SESS_WAITING;
	s->next_attempt_at = s->tq->now + delay;
	tq_arm(s->tq, &s->reconnect_timer, delay);
}

static void
reconnect_due(struct tq_timer *t, void *arg)
{
	struct session *s = arg;

	(void)t;
	if (s->state == SESS_WAITING)
		session_start(s);
}

static void
heartbeat_due(struct tq_timer *t, void *arg)
{
	struct session *s = arg;
	char ref[PHX_REF_BUFSZ];

	(void)t;
	if (s->state != SESS_OPEN)
		return;
	if (s->heartbeat_ref[0] != '\0') {
		s->stats.heartbeat_timeouts++;
		log_warnx("%s: heartbeat %s not acknowledged within %u ms; reconnecting",
			  s->conf->name, s->heartbeat_ref, s->conf->heartbeat_ms);
		session_reconnect(s, "heartbeat timeout");
		return;
	}
	phx_ref_next(&s->refs, ref);
	memcpy(s->heartbeat_ref, ref, sizeof(ref));
	s->heartbeat_sent_at = s->tq->now;
	send_frame(s, NULL, ref, phx_field_str("phoenix"), "heartbeat", "{}", 2, false);
	tq_arm(s->tq, &s->heartbeat_timer, s->conf->heartbeat_ms);
}

/* ---- waiters ---------------------------------------------------------- */

static struct sess_waiter_list *
waiters_of(struct channel *ch, bool leave)
{
	return leave ? &ch->leave_waiters : &ch->join_waiters;
}

static void
join_waiter_timeout(struct tq_timer *t, void *arg)
{
	struct sess_waiter *w = arg;
	struct channel *ch = w->ch;

	(void)t;
	TAILQ_REMOVE(&ch->join_waiters, w, entry);
	finish(w->done, w->arg, SESS_TIMEOUT,
	       ch->state == CHAN_WAITING ? "not connected; the join stays wanted and is retried"
					 : "not joined in time; the join stays wanted and is retried");
	free(w);
}

static void
leave_waiter_timeout(struct tq_timer *t, void *arg)
{
	struct sess_waiter *w = arg;

	(void)t;
	TAILQ_REMOVE(&w->ch->leave_waiters, w, entry);
	finish(w->done, w->arg, SESS_TIMEOUT, "leave not confirmed in time");
	free(w);
}

static struct sess_req *
add_waiter(struct channel *ch, bool leave, sess_done_fn done, void *arg)
{
	struct session *s = ch->sess;
	struct sess_waiter *w = xcalloc(1, sizeof(*w));

	w->req.kind = REQ_WAITER;
	w->leave = leave;
	w->ch = ch;
	w->done = done;
	w->arg = arg;
	tq_timer_init(&w->timer, leave ? leave_waiter_timeout : join_waiter_timeout, w);
	tq_arm(s->tq, &w->timer, s->conf->join_timeout_ms);
	TAILQ_INSERT_TAIL(waiters_of(ch, leave), w, entry);
	return &w->req;
}

/* Answers and frees every waiter of a list. */
static void
settle_waiters(struct channel *ch, bool leave, const struct sess_result *r)
{
	struct sess_waiter_list *list = waiters_of(ch, leave);
	struct sess_waiter *w;

	while ((w = TAILQ_FIRST(list)) != NULL) {
		TAILQ_REMOVE(list, w, entry);
		tq_cancel(ch->sess->tq, &w->timer);
		if (w->done)
			w->done(w->arg, r);
		free(w);
	}
}

static void
settle_waiters_with(struct channel *ch, bool leave, enum sess_outcome o, const char *message)
{
	struct sess_result r = { .outcome = o, .message = message };
	settle_waiters(ch, leave, &r);
}

/* ---- pushes ----------------------------------------------------------- */

static void
push_unlink(struct sess_push *p)
{
	struct channel *ch = p->ch;

	if (p->inflight) {
		TAILQ_REMOVE(&ch->inflight, p, entry);
		strmap_del(&ch->sess->inflight, p->ref, strlen(p->ref));
	} else {
		TAILQ_REMOVE(&ch->buffer, p, entry);
		ch->sess->buffered--;
		ch->sess->buffered_bytes -= p->payload_len;
		ch->buffered--;
	}
}

static void
push_free(struct sess_push *p)
{
	free(p->event);
	free(p->payload);
	free(p);
}

/* Ends a push: unlinks it, answers its caller, frees it. */
static void
push_end(struct sess_push *p, const struct sess_result *r)
{
	struct session *s = p->ch->sess;

	push_unlink(p);
	tq_cancel(s->tq, &p->timer);
	if (r->outcome != SESS_OK && r->outcome != SESS_REPLY_ERROR) {
		s->stats.pushes_failed++;
		p->ch->stats.pushes_failed++;
	}
	if (p->done)
		p->done(p->arg, r);
	push_free(p);
}

static void
push_fail(struct sess_push *p, enum sess_outcome o, const char *message)
{
	struct sess_result r = { .outcome = o, .message = message };
	push_end(p, &r);
}

static void
fail_inflight(struct channel *ch, enum sess_outcome o, const char *message)
{
	while (!TAILQ_EMPTY(&ch->inflight))
		push_fail(TAILQ_FIRST(&ch->inflight), o, message);
}

static void
fail_buffered(struct channel *ch, enum sess_outcome o, const char *message)
{
	while (!TAILQ_EMPTY(&ch->buffer))
		push_fail(TAILQ_FIRST(&ch->buffer), o, message);
}

static void
push_timeout(struct tq_timer *t, void *arg)
{
	struct sess_push *p = arg;

	(void)t;
	push_fail(p, SESS_TIMEOUT,
		  p->inflight ? "no reply in time" : "topic not joined in time");
}

static void
push_frame(struct session *s, struct channel *ch, const char *ref, const char *event,
	   const char *payload, size_t payload_len, bool binary)
{
	send_frame(s, ch->join_ref, ref, topic_field(ch), event, payload, payload_len, binary);
	s->stats.pushes_sent++;
	ch->stats.pushes_out++;
}

static void
await_reply(struct session *s, struct sess_push *p)
{
	p->inflight = true;
	TAILQ_INSERT_TAIL(&p->ch->inflight, p, entry);
	p->wait.kind = WAIT_PUSH;
	p->wait.obj = p;
	strmap_put(&s->inflight, p->ref, strlen(p->ref), &p->wait);
}

static void
answer_sent(sess_done_fn done, void *arg)
{
	struct sess_result sent = { .outcome = SESS_OK, .status = "sent" };

	if (done)
		done(arg, &sent);
}

/* A push that waited for its channel goes out from its own copy. */
static void
send_push(struct session *s, struct sess_push *p)
{
	phx_ref_next(&s->refs, p->ref);
	push_frame(s, p->ch, p->ref, p->event, p->payload, p->payload_len, p->binary);
	/* Only the reply is awaited now; the bytes are on their way. */
	free(p->payload);
	p->payload = NULL;
	if (!p->await_reply) {
		tq_cancel(s->tq, &p->timer);
		answer_sent(p->done, p->arg);
		push_free(p);
		return;
	}
	await_reply(s, p);
}

static void
flush_buffer(struct channel *ch)
{
	struct session *s = ch->sess;

	while (!TAILQ_EMPTY(&ch->buffer) && ch->state == CHAN_JOINED && s->state == SESS_OPEN) {
		struct sess_push *p = TAILQ_FIRST(&ch->buffer);
		push_unlink(p);
		send_push(s, p);
	}
}

/* Without copies of event and payload: only a push that waits for its
 * channel needs them. */
static struct sess_push *
push_new(struct channel *ch, const struct sess_push_args *a, sess_done_fn done, void *arg)
{
	struct sess_push *p = xcalloc(1, sizeof(*p));

	p->req.kind = REQ_PUSH;
	p->ch = ch;
	p->payload_len = a->payload_len;
	p->binary = a->binary;
	p->await_reply = a->await_reply;
	p->timeout_ms = a->timeout_ms ? a->timeout_ms : ch->sess->conf->push_timeout_ms;
	p->done = done;
	p->arg = arg;
	tq_timer_init(&p->timer, push_timeout, p);
	return p;
}

struct sess_req *
session_push(struct session *s, const struct sess_push_args *a, sess_done_fn done, void *arg)
{
	struct channel *ch;
	struct sess_push *p;

	if (strlen(a->topic) > PHX_MAX_FIELD || strlen(a->event) > PHX_MAX_FIELD) {
		finish(done, arg, SESS_TOO_LARGE, "topic and event are at most 255 bytes");
		return NULL;
	}
	if (s->stopping) {
		finish(done, arg, SESS_SHUTTING_DOWN, "phxd is stopping");
		return NULL;
	}
	ch = session_channel(s, a->topic);
	if (ch == NULL || ch->state == CHAN_CLOSED || ch->state == CHAN_LEAVING) {
		finish(done, arg, SESS_NOT_JOINED,
		       ch == NULL ? "topic is not joined; join it first"
				  : ch->state == CHAN_CLOSED ? "the server closed this channel"
							     : "topic is being left");
		return NULL;
	}
	s = ch->sess;
	if (ch->state == CHAN_JOINED && s->state == SESS_OPEN && TAILQ_EMPTY(&ch->buffer)) {
		/* Sent now, from the caller's bytes: nothing needs them after. */
		if (!a->await_reply) {
			char ref[PHX_REF_BUFSZ];

			phx_ref_next(&s->refs, ref);
			push_frame(s, ch, ref, a->event, a->payload, a->payload_len, a->binary);
			answer_sent(done, arg);
			return NULL;
		}
		p = push_new(ch, a, done, arg);
		phx_ref_next(&s->refs, p->ref);
		tq_arm(s->tq, &p->timer, p->timeout_ms);
		push_frame(s, ch, p->ref, a->event, a->payload, a->payload_len, a->binary);
		await_reply(s, p);
		return &p->req;
	}
	if (s->buffered >= s->conf->push_buffer ||
	    s->buffered_bytes + a->payload_len > s->conf->push_buffer_bytes) {
		finish(done, arg, SESS_BUFFER_FULL, "push buffer full (push_buffer, push_buffer_bytes)");
		s->stats.pushes_failed++;
		return NULL;
	}
	p = push_new(ch, a, done, arg);
	p->event = xstrdup(a->event);
	p->payload = xmemdup(a->payload, a->payload_len);
	tq_arm(s->tq, &p->timer, p->timeout_ms);
	TAILQ_INSERT_TAIL(&ch->buffer, p, entry);
	s->buffered++;
	s->buffered_bytes += p->payload_len;
	ch->buffered++;
	return &p->req;
}

void
session_cancel(struct sess_req *r)
{
	/* Through the channel: it may have moved to another shard since. */
	if (r->kind == REQ_WAITER) {
		struct sess_waiter *w = (struct sess_waiter *)r;
		TAILQ_REMOVE(waiters_of(w->ch, w->leave), w, entry);
		tq_cancel(w->ch->sess->tq, &w->timer);
		free(w);
		return;
	}
	struct sess_push *p = (struct sess_push *)r;
	struct session *s = p->ch->sess;
	p->done = NULL;
	if (p->inflight) {
		/* Sent already: only its reply is dropped. */
		push_unlink(p);
		tq_cancel(s->tq, &p->timer);
		push_free(p);
		return;
	}
	/* Handed over but not sent yet: it still goes once the topic is
	 * joined, as a fire push whose end nobody waits for. */
	p->await_reply = false;
}

/* ---- channels --------------------------------------------------------- */

struct channel *
session_channel(const struct session *s, const char *topic)
{
	return strmap_get(s->topics, topic, strlen(topic));
}

/* Keeps the JSON text of a join refusal or close reason; one larger than
 * LAST_ERROR_MAX is kept as a JSON string of its start and its size. */
static void
set_error(struct channel *ch, const char *text, size_t len)
{
	free(ch->last_error);
	ch->last_error = NULL;
	if (text == NULL)
		return;
	if (len <= LAST_ERROR_MAX) {
		ch->last_error = xstrndup(text, len);
		return;
	}
	char note[64];
	size_t keep = json_utf8_cut(text, len, LAST_ERROR_MAX);
	int nlen = snprintf(note, sizeof(note), "... (%zu bytes)", len);
	char *plain = xmalloc(keep + (size_t)nlen);
	memcpy(plain, text, keep);
	memcpy(plain + keep, note, (size_t)nlen);
	ch->last_error = xmalloc(json_escaped_len(plain, keep + (size_t)nlen) + 1);
	ch->last_error[json_escape(plain, keep + (size_t)nlen, ch->last_error)] = '\0';
	free(plain);
}

static void
drop_join_wait(struct channel *ch)
{
	struct session *s = ch->sess;

	if (ch->state == CHAN_JOINING)
		strmap_del(&s->inflight, ch->join_ref, strlen(ch->join_ref));
	tq_cancel(s->tq, &ch->join_timer);
}

static void
schedule_rejoin(struct channel *ch, const char *reason)
{
	struct session *s = ch->sess;
	const struct conn_conf *c = s->conf;
	uint64_t delay = session_backoff(c->rejoin_ms, c->nrejoin, ch->rejoin_tries, c->jitter,
					 random01(s));

	ch->rejoin_tries++;
	set_state(ch, CHAN_ERRORED);
	tq_arm(s->tq, &ch->rejoin_timer, delay);
	emit_channel(ch, reason, delay);
}

static void
rejoin_due(struct tq_timer *t, void *arg)
{
	struct channel *ch = arg;

	(void)t;
	if (ch->state != CHAN_ERRORED)
		return;
	if (ch->sess->state == SESS_OPEN)
		send_join(ch);
	else
		set_state(ch, CHAN_WAITING);
}

static void
join_timeout(struct tq_timer *t, void *arg)
{
	struct channel *ch = arg;
	struct session *s = ch->sess;
	char ref[PHX_REF_BUFSZ];

	(void)t;
	if (ch->state == CHAN_LEAVING) {
		/* No answer to our leave: consider it left. */
		struct sess_result ok = { .outcome = SESS_OK, .message = "leave not confirmed" };
		strmap_del(&s->inflight, ch->leave_ref, strlen(ch->leave_ref));
		fail_inflight(ch, SESS_LEFT, "topic left");
		settle_waiters(ch, true, &ok);
		channel_free(ch);
		return;
	}
	if (ch->state != CHAN_JOINING)
		return;
	/* As phoenix.js: tell the server to drop the half-made join. */
	strmap_del(&s->inflight, ch->join_ref, strlen(ch->join_ref));
	phx_ref_next(&s->refs, ref);
	send_frame(s, ch->join_ref, ref, topic_field(ch), "phx_leave", "{}", 2, false);
	set_error(ch, "\"join timeout\"", 14);
	log_warnx("%s: join of %s timed out after %u ms", s->conf->name, ch->topic,
		  s->conf->join_timeout_ms);
	settle_waiters_with(ch, false, SESS_TIMEOUT, "join timed out; retrying");
	schedule_rejoin(ch, "join timeout");
}

static void
send_join(struct channel *ch)
{
	struct session *s = ch->sess;
	struct channel_waits *w = waits_of(ch);

	tq_cancel(s->tq, &ch->rejoin_timer);
	phx_ref_next(&s->refs, ch->join_ref);
	set_state(ch, CHAN_JOINING);
	/* Presence is re-synced by the presence_state the join brings. */
	presence_rejoined(&ch->presence);
	w->join.kind = WAIT_JOIN;
	w->join.obj = ch;
	strmap_put(&s->inflight, ch->join_ref, strlen(ch->join_ref), &w->join);
	tq_arm(s->tq, &ch->join_timer, s->conf->join_timeout_ms);
	send_frame(s, ch->join_ref, ch->join_ref, topic_field(ch), "phx_join", ch->payload,
		   strlen(ch->payload), false);
	emit_channel(ch, NULL, 0);
}

/* Join payloads and replies are "{}" for most topics: one shared copy
 * (a topic is a few hundred bytes; a heap copy of "{}" costs 32 more). */
static char empty_object[] = "{}";

static char *
text_copy(const char *s, size_t n)
{
	if (n == 2 && memcmp(s, "{}", 2) == 0)
		return empty_object;
	return xstrndup(s, n);
}

static void
text_free(char *s)
{
	if (s != empty_object)
		free(s);
}

static struct channel *
channel_new(struct session *s, const char *topic, const char *payload)
{
	size_t tlen = strlen(topic);
	/* one block: the channel, its waits, its topic */
	struct channel *ch = xcalloc(1, sizeof(*ch) + sizeof(struct channel_waits) + tlen + 1);

	TAILQ_INIT(&ch->buffer);
	TAILQ_INIT(&ch->inflight);
	TAILQ_INIT(&ch->join_waiters);
	TAILQ_INIT(&ch->leave_waiters);
	ch->sess = s;
	ch->topic = (char *)waits_of(ch) + sizeof(struct channel_waits);
	memcpy(ch->topic, topic, tlen + 1);
	ch->topic_len = tlen;
	ch->payload = payload ? text_copy(payload, strlen(payload)) : empty_object;
	ch->state = CHAN_WAITING;	/* not joined: nothing to count yet */
	tq_timer_init(&ch->join_timer, join_timeout, ch);
	tq_timer_init(&ch->rejoin_timer, rejoin_due, ch);
	strmap_put(s->topics, ch->topic, ch->topic_len, ch);
	TAILQ_INSERT_TAIL(&s->chans, ch, link);
	s->nchans++;
	return ch;
}

/* Every state change of a channel on its session, so that the session's
 * count of joined channels (STATUS=, the cap check) needs no scan. */
static void
set_state(struct channel *ch, enum chan_state st)
{
	ch->sess->njoined += (st == CHAN_JOINED) - (ch->state == CHAN_JOINED);
	ch->state = st;
}

/* Takes ch off its session (not off the topic map). */
static void
channel_unlink(struct channel *ch)
{
	struct session *s = ch->sess;

	TAILQ_REMOVE(&s->chans, ch, link);
	s->nchans--;
	s->njoined -= ch->state == CHAN_JOINED;
}

/* Removes a channel from its session and frees it, failing what waits. */
static void
channel_free(struct channel *ch)
{
	struct session *s = ch->sess;

	strmap_del(s->topics, ch->topic, ch->topic_len);
	channel_unlink(ch);

	tq_cancel(s->tq, &ch->join_timer);
	tq_cancel(s->tq, &ch->rejoin_timer);
	fail_buffered(ch, s->stopping ? SESS_SHUTTING_DOWN : SESS_LEFT, "topic left");
	fail_inflight(ch, s->stopping ? SESS_SHUTTING_DOWN : SESS_LEFT, "topic left");
	settle_waiters_with(ch, false, s->stopping ? SESS_SHUTTING_DOWN : SESS_LEFT, "topic left");
	settle_waiters_with(ch, true, s->stopping ? SESS_SHUTTING_DOWN : SESS_OK, NULL);
	presence_free(&ch->presence);
	free(ch->holders);
	text_free(ch->payload);
	free(ch->last_error);
	text_free(ch->join_response);
	free(ch);
	if (s->ops->released)
		s->ops->released(s->host, s);
}

static void
add_want(struct channel *ch, struct sess_want want)
{
	ch->from_config |= want.config;
	ch->runtime |= want.runtime;
	ch->from_outbox |= want.outbox;
	if (want.client == 0)
		return;
	for (uint32_t i = 0; i < ch->nholders; i++)
		if (ch->holders[i] == want.client)
			return;
	if (ch->nholders == ch->holders_cap) {
		ch->holders_cap = ch->holders_cap ? 2 * ch->holders_cap : 2;
		ch->holders = xrealloc(ch->holders, ch->holders_cap * sizeof(*ch->holders));
	}
	ch->holders[ch->nholders++] = want.client;
}

bool
session_wanted(const struct channel *ch)
{
	return ch->from_config || ch->runtime || ch->from_outbox || ch->nholders > 0;
}

bool
session_unwant(struct session *s, struct channel *ch, struct sess_want want)
{
	(void)s;
	if (want.config)
		ch->from_config = false;
	if (want.runtime)
		ch->runtime = false;
	if (want.outbox)
		ch->from_outbox = false;
	for (uint32_t i = 0; want.client && i < ch->nholders; i++) {
		if (ch->holders[i] == want.client) {
			ch->holders[i] = ch->holders[--ch->nholders];
			break;
		}
	}
	return !session_wanted(ch);
}

struct sess_req *
session_join(struct session *s, const char *topic, const char *payload, struct sess_want want,
	     sess_done_fn done, void *arg)
{
	struct channel *ch;
	struct sess_req *req = NULL;

	if (strlen(topic) > PHX_MAX_FIELD || strlen(topic) == 0) {
		finish(done, arg, SESS_TOO_LARGE, "a topic is 1 to 255 bytes");
		return NULL;
	}
	if (s->stopping) {
		finish(done, arg, SESS_SHUTTING_DOWN, "phxd is stopping");
		return NULL;
	}
	ch = session_channel(s, topic);
	if (ch == NULL) {
		if (!want.config && s->conf->max_topics && s->topics->len >= s->conf->max_topics) {
			finish(done, arg, SESS_TOO_MANY_TOPICS,
			       "this connection holds max_topics topics already");
			return NULL;
		}
		if (s->ops->place)
			s = s->ops->place(s->host, s);
		ch = channel_new(s, topic, payload);
		add_want(ch, want);
		if (done)
			req = add_waiter(ch, false, done, arg);
		if (s->state == SESS_OPEN)
			send_join(ch);
		else
			emit_channel(ch, NULL, 0);
		return req;
	}
	s = ch->sess;
	/* One join per topic per connection: a second request shares the first. */
	if (ch->state != CHAN_LEAVING)
		add_want(ch, want);
	switch (ch->state) {
	case CHAN_JOINED: {
		struct sess_result r = { .outcome = SESS_OK, .status = "ok",
					 .response = ch->join_response,
					 .response_len = ch->join_response ? strlen(ch->join_response) : 0 };
		if (done)
			done(arg, &r);
		return NULL;
	}
	case CHAN_LEAVING:
		finish(done, arg, SESS_NOT_JOINED, "topic is being left; join again once it is");
		return NULL;
	case CHAN_CLOSED:
		text_free(ch->payload);
		ch->payload = payload ? text_copy(payload, strlen(payload)) : empty_object;
		set_state(ch, CHAN_WAITING);
		ch->rejoin_tries = 0;
		if (done)
			req = add_waiter(ch, false, done, arg);
		if (s->state == SESS_OPEN)
			send_join(ch);
		return req;
	default:
		return done ? add_waiter(ch, false, done, arg) : NULL;
	}
}

struct sess_req *
session_leave(struct session *s, const char *topic, sess_done_fn done, void *arg)
{
	struct channel *ch = session_channel(s, topic);
	char ref[PHX_REF_BUFSZ];
	struct sess_req *req = NULL;

	if (ch == NULL) {
		finish(done, arg, SESS_NOT_JOINED, "topic is not joined");
		return NULL;
	}
	s = ch->sess;
	if (ch->state == CHAN_LEAVING)
		return done ? add_waiter(ch, true, done, arg) : NULL;
	ch->from_config = ch->runtime = ch->from_outbox = false;
	ch->nholders = 0;
	fail_buffered(ch, SESS_LEFT, "topic left before the push could be sent");
	settle_waiters_with(ch, false, SESS_LEFT, "topic left");
	if (s->state == SESS_OPEN && (ch->state == CHAN_JOINED || ch->state == CHAN_JOINING)) {
		struct channel_waits *w = waits_of(ch);
		drop_join_wait(ch);
		tq_cancel(s->tq, &ch->rejoin_timer);
		phx_ref_next(&s->refs, ref);
		memcpy(ch->leave_ref, ref, sizeof(ref));
		set_state(ch, CHAN_LEAVING);
		w->leave.kind = WAIT_LEAVE;
		w->leave.obj = ch;
		strmap_put(&s->inflight, ref, strlen(ref), &w->leave);
		tq_arm(s->tq, &ch->join_timer, s->conf->join_timeout_ms);
		if (done)
			req = add_waiter(ch, true, done, arg);
		send_frame(s, ch->join_ref, ref, topic_field(ch), "phx_leave", "{}", 2, false);
		emit_channel(ch, NULL, 0);
		return req;
	}
	/* Nothing on the server side to undo. */
	set_state(ch, CHAN_CLOSED);
	emit_channel(ch, "left", 0);
	channel_free(ch);
	finish(done, arg, SESS_OK, NULL);
	return NULL;
}

/* ---- frames in -------------------------------------------------------- */

/* {"reason":"too many channels joined"}: the server's cap of channels per
 * socket (Phoenix 1.7.24+), not a verdict on the topic. */
static bool
is_cap_refusal(const char *json, size_t len)
{
	static const char want[] = "too many channels joined";
	struct json_cursor c;
	const char *key, *raw;
	size_t klen, raw_len;
	bool escaped, key_escaped;
	unsigned n = 0;

	json_cursor_init(&c, json, len);
	if (!json_expect(&c, '{'))
		return false;
	for (;;) {
		enum json_member m = json_next_member(&c, &n, &key, &klen, &key_escaped);
		if (m != JSON_MEMBER)
			return false;
		if (!key_escaped && klen == 6 && memcmp(key, "reason", 6) == 0 &&
		    json_peek(&c) == JSON_KIND_STRING)
			return json_scan_string(&c, &raw, &raw_len, &escaped) && !escaped &&
			       raw_len == sizeof(want) - 1 && memcmp(raw, want, raw_len) == 0;
		if (!json_skip_value(&c))
			return false;
	}
}

static void
handle_reply(struct session *s, const struct phx_msg *m)
{
	struct phx_reply reply;
	struct phx_error perr;
	struct sess_wait *w;
	char ref[PHX_MAX_FIELD + 1];

	if (m->ref.s == NULL || m->ref.len > PHX_MAX_FIELD) {
		s->stats.unmatched_replies++;
		return;
	}
	memcpy(ref, m->ref.s, m->ref.len);
	ref[m->ref.len] = '\0';
	if (phx_field_eq(m->topic, "phoenix") && strcmp(ref, s->heartbeat_ref) == 0) {
		s->heartbeat_ref[0] = '\0';
		s->reconnect_tries = 0;
		s->stats.heartbeats_acked++;
		s->heartbeat_rtt_ms = (int64_t)(s->tq->now - s->heartbeat_sent_at);
		return;
	}
	w = strmap_get(&s->inflight, ref, m->ref.len);
	if (w == NULL) {
		s->stats.unmatched_replies++;
		return;
	}
	if (phx_reply_parse(m, &reply, &perr) != PHX_OK) {
		s->stats.bad_frames++;
		log_warnx("%s: reply %s to %.*s is malformed (%s); ignored", s->conf->name, ref,
			  (int)m->topic.len, m->topic.s, perr.detail);
		return;
	}
	char status[PHX_MAX_FIELD + 1];
	size_t slen = reply.status.len > PHX_MAX_FIELD ? PHX_MAX_FIELD : reply.status.len;
	memcpy(status, reply.status.s, slen);
	status[slen] = '\0';
	struct sess_result r = {
		.outcome = strcmp(status, "ok") == 0 ? SESS_OK : SESS_REPLY_ERROR,
		.status = status,
		.response = reply.response.s,
		.response_len = reply.response.len,
		.binary = reply.binary,
	};

	switch (w->kind) {
	case WAIT_PUSH: {
		struct sess_push *p = w->obj;
		if (!phx_field_eq(m->topic, p->ch->topic))
			break;
		if (r.outcome == SESS_OK)
			p->ch->stats.replies_ok++;
		else
			p->ch->stats.replies_error++;
		push_end(p, &r);
		return;
	}
	case WAIT_JOIN: {
		struct channel *ch = w->obj;
		if (!phx_field_eq(m->topic, ch->topic))
			break;
		strmap_del(&s->inflight, ref, m->ref.len);
		tq_cancel(s->tq, &ch->join_timer);
		s->reconnect_tries = 0;
		if (r.outcome == SESS_OK) {
			set_state(ch, CHAN_JOINED);
			ch->joins++;
			ch->rejoin_tries = 0;
			set_error(ch, NULL, 0);
			text_free(ch->join_response);
			ch->join_response = text_copy(r.response, r.response_len);
			log_info("%s: joined %s", s->conf->name, ch->topic);
			emit_channel(ch, NULL, 0);
			settle_waiters(ch, false, &r);
			flush_buffer(ch);
		} else {
			set_error(ch, r.response, r.response_len);
			if (!r.binary && is_cap_refusal(r.response, r.response_len) &&
			    s->ops->cap_refused && s->ops->cap_refused(s->host, s, ch))
				return;
			log_warnx("%s: join of %s refused: %s %.*s", s->conf->name, ch->topic, status,
				  (int)r.response_len, r.response);
			settle_waiters(ch, false, &r);
			schedule_rejoin(ch, ch->last_error);
		}
		return;
	}
	case WAIT_LEAVE: {
		struct channel *ch = w->obj;
		if (!phx_field_eq(m->topic, ch->topic))
			break;
		strmap_del(&s->inflight, ref, m->ref.len);
		set_state(ch, CHAN_CLOSED);
		emit_channel(ch, "left", 0);
		settle_waiters(ch, true, &r);
		channel_free(ch);
		return;
	}
	}
	s->stats.unmatched_replies++;
}

/* The server ended this join: phx_error (crash) or phx_close (stop). */
static void
channel_ended(struct channel *ch, bool crashed, const struct phx_msg *m)
{
	struct session *s = ch->sess;

	(void)m;
	if (ch->state != CHAN_JOINED && ch->state != CHAN_JOINING)
		return;
	drop_join_wait(ch);
	if (crashed) {
		log_warnx("%s: channel %s crashed on the server; rejoining", s->conf->name, ch->topic);
		set_error(ch, "\"phx_error\"", 11);
		fail_inflight(ch, SESS_CHANNEL_ERROR, "the channel crashed on the server");
		settle_waiters_with(ch, false, SESS_CHANNEL_ERROR, "the channel crashed; retrying");
		schedule_rejoin(ch, "phx_error");
		return;
	}
	log_warnx("%s: the server closed channel %s", s->conf->name, ch->topic);
	set_state(ch, CHAN_CLOSED);
	set_error(ch, "\"phx_close\"", 11);
	fail_inflight(ch, SESS_CHANNEL_CLOSED, "the server closed the channel");
	fail_buffered(ch, SESS_CHANNEL_CLOSED, "the server closed the channel");
	settle_waiters_with(ch, false, SESS_CHANNEL_CLOSED, "the server closed the channel");
	emit_channel(ch, "phx_close", 0);
}

void
session_on_frame(struct session *s, const char *data, size_t len, bool binary)
{
	struct phx_msg m;
	struct phx_error perr;
	struct channel *ch;
	enum phx_err rc;

	if (s->state != SESS_OPEN)
		return;
	s->stats.frames_in++;
	rc = binary ? phx_decode_binary(data, len, PHX_FROM_SERVER, &m, &perr)
		    : phx_decode_text(data, len, PHX_DECODE_STRICT, &m, &perr);
	if (rc != PHX_OK) {
		s->stats.bad_frames++;
		if (s->stats.bad_frames <= BAD_FRAME_LOG_LIMIT)
			log_warnx("%s: bad frame from the server ignored: %s%s", s->conf->name,
				  perr.detail,
				  s->stats.bad_frames == BAD_FRAME_LOG_LIMIT ? " (no more such warnings)"
									     : "");
		return;
	}
	if (phx_field_eq(m.event, "phx_reply")) {
		handle_reply(s, &m);
		return;
	}
	if (m.topic.len > PHX_MAX_FIELD)
		return;
	char topic[PHX_MAX_FIELD + 1];
	memcpy(topic, m.topic.s, m.topic.len);
	topic[m.topic.len] = '\0';
	ch = strmap_get(s->topics, topic, m.topic.len);
	/* ch->sess: a topic another shard holds is not this socket's */
	if (ch == NULL || ch->sess != s || (ch->state != CHAN_JOINED && ch->state != CHAN_JOINING)) {
		s->stats.stale_dropped++;
		return;
	}
	/* A message of an earlier join of this topic (the server's phx_close
	 * of a replaced join, say) is not ours any more. */
	if (m.join_ref.s != NULL && !phx_field_eq(m.join_ref, ch->join_ref)) {
		s->stats.stale_dropped++;
		return;
	}
	if (phx_field_eq(m.event, "phx_error")) {
		channel_ended(ch, true, &m);
		return;
	}
	if (phx_field_eq(m.event, "phx_close")) {
		channel_ended(ch, false, &m);
		return;
	}
	presence_on_message(&ch->presence, &m);
	s->stats.delivered++;
	ch->stats.messages_in++;
	ch->stats.last_message_at = s->tq->now;
	if (s->ops->message)
		s->ops->message(s->host, s, &m);
}

/* ---- connection lifecycle ----------------------------------------------- */

void
session_start(struct session *s)
{
	struct sess_event ev = { .kind = SEV_CONNECTING };

	if (s->stopping || s->state == SESS_CONNECTING || s->state == SESS_OPEN)
		return;
	tq_cancel(s->tq, &s->reconnect_timer);
	s->state = SESS_CONNECTING;
	s->stats.attempts++;
	ev.attempt = s->stats.attempts;
	emit(s, &ev);
	s->ops->connect(s->host, s);
}

void
session_on_open(struct session *s)
{
	struct sess_event ev = { .kind = SEV_CONNECTED };
	struct channel *ch;

	if (s->state != SESS_CONNECTING)
		return;
	s->state = SESS_OPEN;
	s->opened_at = s->tq->now;
	s->stats.connects++;
	if (s->stats.connects > 1)
		s->stats.reconnects++;
	s->heartbeat_ref[0] = '\0';
	s->last_http_status = 0;
	if (s->conf->heartbeat_ms)
		tq_arm(s->tq, &s->heartbeat_timer, s->conf->heartbeat_ms);
	if (s->outage) {
		log_info("%s: connected to %s after %.1f s down (%llu failed attempt%s)",
			 s->conf->name, s->conf->url_shown,
			 (double)(s->tq->now - s->outage_since) / 1000.0,
			 (unsigned long long)s->outage_attempts, s->outage_attempts == 1 ? "" : "s");
		s->outage = false;
		s->outage_attempts = 0;
	} else {
		log_info("%s: connected to %s", s->conf->name, s->conf->url_shown);
	}
	ev.attempt = s->stats.attempts;
	emit(s, &ev);
	TAILQ_FOREACH(ch, &s->chans, link)
		if (ch->state == CHAN_WAITING || ch->state == CHAN_ERRORED)
			send_join(ch);
}

/* The websocket is gone (closed by either side or never opened). */
static void
socket_gone(struct session *s, int code, const char *reason, int http_status)
{
	struct sess_event ev = { .kind = SEV_DISCONNECTED, .code = code, .reason = reason,
				 .http_status = http_status };
	bool was_open = s->state == SESS_OPEN;

	tq_cancel(s->tq, &s->heartbeat_timer);
	s->heartbeat_ref[0] = '\0';
	s->closed_at = s->tq->now;
	s->last_close_code = code;
	if (http_status)
		s->last_http_status = http_status;
	size_t rlen = reason ? json_utf8_cut(reason, strlen(reason), sizeof(s->last_error) - 1) : 0;
	memcpy(s->last_error, reason ? reason : "", rlen);
	s->last_error[rlen] = '\0';

	/* The connection's fate first, then what it means for each channel. */
	if (s->stopping) {
		s->state = SESS_STOPPED;
	} else {
		schedule_reconnect(s, http_status);
		ev.delay_ms = s->next_attempt_at - s->tq->now;
		ev.attempt = s->reconnect_tries;
		bool began = !s->outage;
		if (began) {
			s->outage = true;
			s->outage_since = s->tq->now;
			s->outage_logged_at = s->tq->now;
		}
		if (!was_open)
			s->outage_attempts++;
		if (!began && !was_open && s->conf->outage_log_ms &&
		    s->tq->now - s->outage_logged_at >= s->conf->outage_log_ms) {
			s->outage_logged_at = s->tq->now;
			log_warnx("%s: still down after %.1f s: %llu failed attempt%s, the last: %s%s"
				  "%.0d; retrying in %llu ms", s->conf->name,
				  (double)(s->tq->now - s->outage_since) / 1000.0,
				  (unsigned long long)s->outage_attempts,
				  s->outage_attempts == 1 ? "" : "s", reason ? reason : "",
				  http_status ? ", HTTP " : "", http_status,
				  (unsigned long long)ev.delay_ms);
		} else if (was_open || began || http_status)
			log_warnx("%s: %s%s (code %d%s%.0d); retrying in %llu ms", s->conf->name,
				  was_open ? "disconnected: " : "cannot connect: ", reason ? reason : "",
				  code, http_status ? ", HTTP " : "", http_status,
				  (unsigned long long)ev.delay_ms);
		else
			log_debug("%s: cannot connect: %s; retrying in %llu ms", s->conf->name,
				  reason ? reason : "", (unsigned long long)ev.delay_ms);
	}
	emit(s, &ev);

	for (struct channel *ch = TAILQ_FIRST(&s->chans), *next; ch != NULL; ch = next) {
		next = TAILQ_NEXT(ch, link);
		fail_inflight(ch, s->stopping ? SESS_SHUTTING_DOWN : SESS_DISCONNECTED,
			      "the connection was lost before the reply");
		switch (ch->state) {
		case CHAN_JOINING:
		case CHAN_JOINED:
		case CHAN_ERRORED:
			drop_join_wait(ch);
			tq_cancel(s->tq, &ch->rejoin_timer);
			set_state(ch, CHAN_WAITING);
			if (!s->stopping)
				emit_channel(ch, "disconnected", 0);
			break;
		case CHAN_LEAVING:
			/* The server forgets the channel with the socket. */
			strmap_del(&s->inflight, ch->leave_ref, strlen(ch->leave_ref));
			set_state(ch, CHAN_CLOSED);
			channel_free(ch);
			break;
		default:
			break;
		}
	}
	/* Nothing in flight survives its socket. */
	strmap_free(&s->inflight);
	strmap_init(&s->inflight);
}

void
session_on_close(struct session *s, int code, const char *reason, int http_status)
{
	if (s->state != SESS_OPEN && s->state != SESS_CONNECTING)
		return;
	socket_gone(s, code, reason, http_status);
}

void
session_reconnect(struct session *s, const char *reason)
{
	if (s->state == SESS_OPEN || s->state == SESS_CONNECTING) {
		s->ops->close(s->host, s, 1000, reason);
		socket_gone(s, 1000, reason, 0);
	}
	/* Asked-for reconnects (settings changed, heartbeat lost) go at once
	 * for the first time; the back-off still applies if they keep failing. */
	if (s->state == SESS_WAITING && s->reconnect_tries <= 1) {
		tq_cancel(s->tq, &s->reconnect_timer);
		session_start(s);
	}
}

void
session_stop(struct session *s)
{
	struct channel *ch;
	char ref[PHX_REF_BUFSZ];
	bool open = s->state == SESS_OPEN;

	if (s->stopping)
		return;
	s->stopping = true;
	tq_cancel(s->tq, &s->reconnect_timer);
	TAILQ_FOREACH(ch, &s->chans, link) {
		fail_buffered(ch, SESS_SHUTTING_DOWN, "phxd is stopping");
		fail_inflight(ch, SESS_SHUTTING_DOWN, "phxd is stopping");
		settle_waiters_with(ch, false, SESS_SHUTTING_DOWN, "phxd is stopping");
		settle_waiters_with(ch, true, SESS_SHUTTING_DOWN, "phxd is stopping");
		if (open && (ch->state == CHAN_JOINED || ch->state == CHAN_JOINING)) {
			phx_ref_next(&s->refs, ref);
			send_frame(s, ch->join_ref, ref, topic_field(ch), "phx_leave", "{}", 2, false);
		}
	}
	if (open || s->state == SESS_CONNECTING) {
		s->ops->close(s->host, s, 1000, "phxd stopping");
		socket_gone(s, 1000, "phxd stopping", 0);
	}
	s->state = SESS_STOPPED;
}

void
session_reconfigure(struct session *s, const struct conn_conf *conf)
{
	const struct conn_conf *old = s->conf;
	bool reconnect = config_conn_needs_reconnect(old, conf);
	unsigned old_heartbeat = old->heartbeat_ms;

	s->conf = conf;
	/* Topics the old config joined and the new one does not: leave. */
	struct strmap joins;
	strmap_init(&joins);
	for (size_t i = 0; i < conf->njoins; i++)
		strmap_put(&joins, conf->joins[i].topic, strlen(conf->joins[i].topic),
			   &conf->joins[i]);
	for (struct channel *ch = TAILQ_FIRST(&s->chans), *next; ch != NULL; ch = next) {
		next = TAILQ_NEXT(ch, link);
		if (ch->from_config && strmap_get(&joins, ch->topic, ch->topic_len) == NULL &&
		    session_unwant(s, ch, WANT_CONFIG) && ch->state != CHAN_LEAVING)
			session_leave(s, ch->topic, NULL, NULL);
	}
	strmap_free(&joins);
	/* The config's topics, once per connection, in config order. */
	for (size_t i = 0; s->topics == &s->own_topics && i < conf->njoins; i++) {
		struct channel *ch = session_channel(s, conf->joins[i].topic);
		if (ch != NULL && strcmp(ch->payload, conf->joins[i].payload) != 0) {
			text_free(ch->payload);
			ch->payload = text_copy(conf->joins[i].payload, strlen(conf->joins[i].payload));
		}
		session_join(s, conf->joins[i].topic, conf->joins[i].payload, WANT_CONFIG, NULL,
			     NULL);
	}
	if (reconnect) {
		log_info("%s: connection settings changed; reconnecting", conf->name);
		s->reconnect_tries = 0;
		session_reconnect(s, "settings changed");
	} else if (old_heartbeat != conf->heartbeat_ms && s->state == SESS_OPEN) {
		/* The new interval applies now; a heartbeat still unanswered
		 * gets the whole new interval. */
		tq_cancel(s->tq, &s->heartbeat_timer);
		if (conf->heartbeat_ms) {
			tq_arm(s->tq, &s->heartbeat_timer, conf->heartbeat_ms);
		} else {
			s->heartbeat_ref[0] = '\0';
		}
		log_info("%s: heartbeat interval now %u ms", conf->name, conf->heartbeat_ms);
	}
}

static struct session *
session_alloc(const struct conn_conf *conf, const struct session_ops *ops, void *host,
	      struct timerq *tq)
{
	struct session *s = xcalloc(1, sizeof(*s));

	s->conf = conf;
	s->ops = ops;
	s->host = host;
	s->tq = tq;
	s->state = SESS_IDLE;
	s->heartbeat_rtt_ms = -1;
	s->topics = &s->own_topics;
	strmap_init(&s->own_topics);
	TAILQ_INIT(&s->chans);
	strmap_init(&s->inflight);
	tq_timer_init(&s->reconnect_timer, reconnect_due, s);
	tq_timer_init(&s->heartbeat_timer, heartbeat_due, s);
	return s;
}

struct session *
session_new(const struct conn_conf *conf, const struct session_ops *ops, void *host,
	    struct timerq *tq)
{
	struct session *s = session_alloc(conf, ops, host, tq);

	/* In config order; ops->place() may open shards for them. */
	for (size_t i = 0; i < conf->njoins; i++)
		session_join(s, conf->joins[i].topic, conf->joins[i].payload, WANT_CONFIG, NULL,
			     NULL);
	return s;
}

struct session *
session_new_shard(struct session *first, void *host)
{
	struct session *s = session_alloc(first->conf, first->ops, host, first->tq);

	s->topics = first->topics;
	return s;
}

void
session_move(struct channel *ch, struct session *to)
{
	struct session *from = ch->sess;
	struct sess_push *p;

	drop_join_wait(ch);
	tq_cancel(from->tq, &ch->rejoin_timer);
	fail_inflight(ch, SESS_DISCONNECTED, "the topic moved to another websocket");
	channel_unlink(ch);
	TAILQ_FOREACH(p, &ch->buffer, entry) {
		from->buffered--;
		from->buffered_bytes -= p->payload_len;
		to->buffered++;
		to->buffered_bytes += p->payload_len;
	}
	ch->sess = to;
	TAILQ_INSERT_TAIL(&to->chans, ch, link);
	to->nchans++;
	ch->state = CHAN_WAITING;	/* channel_unlink took it off from's count */
	ch->rejoin_tries = 0;
	if (to->state == SESS_OPEN)
		send_join(ch);
	else
		emit_channel(ch, NULL, 0);
	if (from->ops->released)
		from->ops->released(from->host, from);
}

void
session_free(struct session *s)
{
	struct channel *ch;

	if (s == NULL)
		return;
	s->stopping = true;
	tq_cancel(s->tq, &s->reconnect_timer);
	tq_cancel(s->tq, &s->heartbeat_timer);
	/* Its host is going: nothing more is reported as released. */
	s->ops = &no_ops;
	while ((ch = TAILQ_FIRST(&s->chans)) != NULL)
		channel_free(ch);
	strmap_free(&s->own_topics);
	strmap_free(&s->inflight);
	free(s->scratch);
	free(s);
}
