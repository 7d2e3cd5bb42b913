/* SPDX-License-Identifier: MIT */
/* push: send an event to a topic; answer when sent, or with the reply. */
#include "ipc.h"

#include "daemon/xmalloc.h"
#include "protocol/base64.h"

#include "protocol/json_scan.h"

#include <stdlib.h>
#include <string.h>

/* A notification push on its way: what its failure would say. */
struct notice {
	struct phxd *d;
	const struct phxd_conn *pc;
	char *event;		/* in text[] */
	char text[];		/* topic, then event */
};

static void
notice_done(void *arg, const struct sess_result *res)
{
	struct notice *n = arg;

	if (res->outcome != SESS_OK)
		ipc_publish_push_failed(n->d->ipc, n->pc->conf->name, n->text, n->event,
					ipc_outcome_code(res->outcome),
					res->message ? res->message : session_outcome_name(res->outcome));
	free(n);
}

static struct notice *
notice_new(struct ipc_request *r, const struct sess_push_args *a)
{
	size_t tlen = strlen(a->topic) + 1, elen = strlen(a->event) + 1;
	struct notice *n = xmalloc(sizeof(*n) + tlen + elen);

	n->d = r->d;
	n->pc = r->pc;
	memcpy(n->text, a->topic, tlen);
	n->event = n->text + tlen;
	memcpy(n->event, a->event, elen);
	return n;
}

static void
notice_stored(void *arg, const struct outbox_result *res)
{
	struct notice *n = arg;

	if (res->code != NULL)
		ipc_publish_push_failed(n->d->ipc, n->pc->conf->name, n->text, n->event, res->code,
					res->message);
	free(n);
}

static void
answer_stored(void *arg, const struct outbox_result *res)
{
	struct ipc_pending *p = arg;

	if (res->code != NULL)
		ipc_pending_answer_error(p, res->code, res->message);
	else
		ipc_pending_answer_ok(p, json_pack("{s:s, s:I}", "status", "stored", "id",
						   (json_int_t)res->id));
}

/* A durable push: answered once stored; delivered by the outbox. */
static void
store(struct ipc_request *r, const struct sess_push_args *a)
{
	struct channel *ch = session_channel(r->pc->sess, a->topic);
	struct ipc_pending *p;

	if (strlen(a->event) > PHX_MAX_FIELD) {
		/* a push session_push() would refuse, every time it was sent */
		ipc_reply_error(r, PHXD_E_TOO_LARGE, "topic and event are at most 255 bytes");
		return;
	}
	if (r->d->outbox == NULL) {
		ipc_reply_error(r, PHXD_E_OUTBOX, "%s",
				r->d->outbox_error[0] ? r->d->outbox_error
						      : "no outbox is configured (outbox in [phxd])");
		return;
	}
	/* As a push: to a topic somebody wants. The outbox then holds it
	 * until its pushes are delivered, across restarts too. */
	if (ch == NULL || ch->state == CHAN_CLOSED || ch->state == CHAN_LEAVING) {
		ipc_reply_error(r, PHXD_E_NOT_JOINED, "%s",
				ch == NULL ? "topic is not joined; join it first"
					   : ch->state == CHAN_CLOSED ? "the server closed this channel"
								      : "topic is being left");
		return;
	}
	struct outbox_push op = { r->pc, a->topic, ch->payload, a->event, a->payload,
				  a->payload_len, a->binary };
	if (r->notification) {
		outbox_store(r->d->outbox, &op, notice_stored, notice_new(r, a));
		return;
	}
	if ((p = ipc_pending_new(r)) == NULL)
		return;
	struct outbox_msg *m = outbox_store(r->d->outbox, &op, answer_stored, p);
	if (m != NULL)
		ipc_pending_track_store(p, m);
}

static void
push_now(struct ipc_request *r, const struct sess_push_args *a)
{
	if (r->notification) {
		session_push(r->pc->sess, a, notice_done, notice_new(r, a));
		return;
	}
	struct ipc_pending *p = ipc_pending_new(r);

	if (p != NULL) {
		struct sess_req *h = session_push(r->pc->sess, a, ipc_pending_session_done, p);
		if (h != NULL)
			ipc_pending_track(p, h);
	}
}

static void
exec_push(struct ipc_request *r)
{
	struct sess_push_args a = { .topic = r->topic };
	json_t *payload = json_object_get(r->body, "payload");
	const char *b64;
	json_int_t timeout = 0;
	bool await_reply = false, durable = false;
	char *text;

	if (!ipc_get_string(r, "event", true, &a.event) ||
	    !ipc_get_string(r, "payload_b64", false, &b64) || !ipc_get_bool(r, "await", &await_reply) ||
	    !ipc_get_uint(r, "timeout_ms", 86400000, &timeout) ||
	    !ipc_get_bool(r, "durable", &durable))
		return;
	if (durable && (await_reply || json_object_get(r->body, "timeout_ms") != NULL)) {
		r->notification = false;
		ipc_reply_error(r, PHXD_E_BAD_REQUEST,
				"a durable push is answered once stored and delivered later: "
				"\"await\" and \"timeout_ms\" do not apply (deliveries are on the "
				"events stream)");
		return;
	}
	if (r->notification && await_reply) {
		r->notification = false;	/* this one is answered: there is nothing to await */
		ipc_reply_error(r, PHXD_E_BAD_REQUEST, "a push with \"await\" needs an \"id\"");
		return;
	}
	if (b64 != NULL && payload != NULL) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST, "give \"payload\" or \"payload_b64\", not both");
		return;
	}
	if (b64 != NULL) {
		size_t n = strlen(b64);
		text = xmalloc(BASE64_DECODED_SIZE(n));
		if (!base64_decode(b64, n, text, &a.payload_len)) {
			free(text);
			ipc_reply_error(r, PHXD_E_BAD_REQUEST,
					"\"payload_b64\" is not base64 (standard alphabet, padding optional)");
			return;
		}
		a.binary = true;
	} else {
		/* Any JSON value goes, as with phoenix.js; none means {}. */
		text = payload ? json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY) : xstrdup("{}");
		a.payload_len = strlen(text);
	}
	a.payload = text;
	a.await_reply = await_reply;
	a.timeout_ms = (unsigned)timeout;
	if (durable)
		store(r, &a);
	else
		push_now(r, &a);
	free(text);
}

/* ---- the common push, without a tree ------------------------------------------- */

/* A string member without escapes, copied NUL-terminated into buf. */
static bool
plain_string(struct json_cursor *cur, char *buf, size_t size)
{
	const char *raw;
	size_t len;
	bool esc;

	if (json_peek(cur) != JSON_KIND_STRING || !json_scan_string(cur, &raw, &len, &esc) || esc ||
	    len >= size || memchr(raw, '\0', len) != NULL)
		return false;
	memcpy(buf, raw, len);
	buf[len] = '\0';
	return true;
}

/* A non-negative integer no larger than max. */
static bool
small_uint(struct json_cursor *cur, uint64_t max, uint64_t *out)
{
	const char *p;
	uint64_t v = 0;

	if (json_peek(cur) != JSON_KIND_NUMBER)
		return false;
	p = cur->p;
	if (!json_skip_value(cur) || cur->p - p > 18)
		return false;
	for (; p < cur->p; p++) {
		if (*p < '0' || *p > '9')
			return false;	/* a sign, a fraction, an exponent */
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*out = v;
	return v <= max;
}

enum { F_ID = 1, F_OP = 2, F_TOPIC = 4, F_EVENT = 8, F_PAYLOAD = 16, F_AWAIT = 32,
       F_TIMEOUT = 64, F_CONN = 128 };

/*
 * The push almost every client sends, {"id":N,"op":"push","topic":..,
 * "event":..,"payload":..} (and "conn", "await", "timeout_ms"), read in one
 * pass with the payload kept as the bytes the client sent. Anything else
 * (another member, an escape in a name, a duplicate, a string id, binary)
 * is left to the general path, which answers exactly as before.
 */
bool
ipc_push_fast(struct ipc_client *c, const char *line, size_t len)
{
	struct ipc_request r = { .d = ipc_client_daemon(c), .c = c };
	struct sess_push_args a = { 0 };
	char topic[PHX_MAX_FIELD + 1], event[PHX_MAX_FIELD + 1], conn[256], op[8];
	struct json_cursor cur;
	unsigned seen = 0;
	uint64_t id = 0, timeout = 0;

	const char *key;
	size_t klen;
	bool esc;
	unsigned n = 0;
	enum json_member m;

	json_cursor_init(&cur, line, len);
	if (!json_expect(&cur, '{'))
		return false;
	while ((m = json_next_member(&cur, &n, &key, &klen, &esc)) == JSON_MEMBER) {
		unsigned bit;
		if (esc)
			return false;
#define KEY(s) (klen == sizeof(s) - 1 && memcmp(key, s, klen) == 0)
		if (KEY("id")) {
			bit = F_ID;
			if (!small_uint(&cur, UINT64_MAX, &id) || id > INT64_MAX)
				return false;
		} else if (KEY("op")) {
			bit = F_OP;
			if (!plain_string(&cur, op, sizeof(op)) || strcmp(op, "push") != 0)
				return false;
		} else if (KEY("topic")) {
			bit = F_TOPIC;
			if (!plain_string(&cur, topic, sizeof(topic)) || topic[0] == '\0')
				return false;
		} else if (KEY("event")) {
			bit = F_EVENT;
			if (!plain_string(&cur, event, sizeof(event)))
				return false;
		} else if (KEY("conn")) {
			bit = F_CONN;
			if (!plain_string(&cur, conn, sizeof(conn)))
				return false;
		} else if (KEY("payload")) {
			bit = F_PAYLOAD;
			a.payload = cur.p;
			if (json_peek(&cur) == JSON_KIND_NULL || !json_skip_value(&cur))
				return false;
			a.payload_len = (size_t)(cur.p - a.payload);
		} else if (KEY("await")) {
			bit = F_AWAIT;
			enum json_kind k = json_peek(&cur);
			if ((k != JSON_KIND_TRUE && k != JSON_KIND_FALSE) || !json_skip_value(&cur))
				return false;
			a.await_reply = k == JSON_KIND_TRUE;
		} else if (KEY("timeout_ms")) {
			bit = F_TIMEOUT;
			if (!small_uint(&cur, 86400000, &timeout))
				return false;
		} else {
			return false;
		}
#undef KEY
		if (seen & bit)
			return false;	/* a duplicate: the general path refuses it */
		seen |= bit;
	}
	json_skip_ws(&cur);
	if (m != JSON_MEMBERS_END || cur.p != cur.end)
		return false;
	if ((seen & (F_OP | F_TOPIC | F_EVENT)) != (F_OP | F_TOPIC | F_EVENT) || r.d->stopping ||
	    (!(seen & F_ID) && a.await_reply))
		return false;
	r.notification = !(seen & F_ID);
	r.pc = ipc_find_conn(r.d, seen & F_CONN ? conn : NULL);
	if (r.pc == NULL)
		return false;	/* unknown, or ambiguous: the general path says which */
	if (!(seen & F_PAYLOAD)) {
		a.payload = "{}";
		a.payload_len = 2;
	}
	r.id = r.notification ? NULL : json_integer((json_int_t)id);
	r.topic = topic;
	a.topic = topic;
	a.event = event;
	a.timeout_ms = (unsigned)timeout;
	push_now(&r, &a);
	json_decref(r.id);
	phxd_timers_changed(r.d);
	return true;
}

const struct ipc_cmd cmd_push = { "push", CMD_CONN | CMD_TOPIC | CMD_TIMERS, exec_push };
