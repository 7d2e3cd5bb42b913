/* SPDX-License-Identifier: MIT */
/*
 * Phoenix socket and channel semantics, as the Phoenix 1.7.24 server behaves
 * (see the recorded transcripts), with the quirks of other versions optional.
 */
#include "ts.h"

#include <ctype.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "protocol/json_scan.h"

#define NULL_FIELD ((struct phx_field){ NULL, 0 })

static const char subprotocol_token_prefix[] = "base64url.bearer.phx.";

static char *decode_token(const char *b64);

static struct phx_field
chan_jr(const struct ts_channel *ch)
{
	return ch->join_ref_null ? NULL_FIELD : phx_field_str(ch->join_ref);
}

static void
field_copy(char *dst, struct phx_field f, bool *is_null)
{
	*is_null = f.s == NULL;
	if (f.s != NULL)
		memcpy(dst, f.s, f.len);
	dst[f.s != NULL ? f.len : 0] = '\0';
}

static bool
field_eq_field(struct phx_field a, struct phx_field b)
{
	if (a.s == NULL || b.s == NULL)
		return a.s == NULL && b.s == NULL;
	return a.len == b.len && memcmp(a.s, b.s, a.len) == 0;
}

static bool
field_has_prefix(struct phx_field f, const char *prefix)
{
	size_t n = strlen(prefix);
	return f.s != NULL && f.len >= n && memcmp(f.s, prefix, n) == 0;
}

/* Re-encodes JSON the way the server does after decoding it: object keys
 * sorted, compact. The result is malloc'd; NULL if text is not JSON. */
static char *
canonical_json(struct phx_field text)
{
	json_error_t jerr;
	json_t *v = json_loadb(text.s, text.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	char *out;

	if (v == NULL)
		return NULL;
	out = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	json_decref(v);
	return out;
}

static void
send_msg(struct ts_conn *c, struct phx_field jr, struct phx_field ref, struct phx_field topic,
	 const char *event, const char *payload, bool is_reply)
{
	struct phx_msg m = { 0 };

	m.kind = PHX_TEXT;
	m.join_ref = jr;
	m.ref = ref;
	m.topic = topic;
	m.event = phx_field_str(event);
	m.payload = phx_field_str(payload);
	ts_conn_queue_msg(c, &m, is_reply);
}

static void
send_reply(struct ts_conn *c, struct phx_field jr, struct phx_field ref,
	   struct phx_field topic, const char *status, const char *response)
{
	size_t len = strlen(response) + 40;
	char *payload = malloc(len);

	if (payload == NULL)
		abort();
	snprintf(payload, len, "{\"response\":%s,\"status\":\"%s\"}", response, status);
	send_msg(c, jr, ref, topic, "phx_reply", payload, true);
	free(payload);
}

static struct ts_channel *
find_channel(struct ts_conn *c, struct phx_field topic)
{
	for (struct ts_channel *ch = c->channels; ch != NULL; ch = ch->next)
		if (phx_field_eq(topic, ch->topic))
			return ch;
	return NULL;
}

/* ---- presence:* (Phoenix.Presence as the guides use it) ---------------- */

/* The presence key of a socket: its "user" connect param. */
static const char *
presence_key(struct ts_conn *c)
{
	const char *colon = strchr(c->socket_id, ':');
	return colon ? colon + 1 : c->socket_id;
}

static json_t *
presence_entry(struct ts_channel *ch)
{
	return json_pack("{s:[{s:s}]}", "metas", "phx_ref", ch->presence_ref);
}

/* Sends a presence_diff to every socket on the topic but `except`. */
static void
presence_diff(struct ts_server *s, struct ts_conn *except, struct ts_conn *who,
	      struct ts_channel *ch, bool join)
{
	json_t *diff = json_pack("{s:o, s:o}", "joins", json_object(), "leaves", json_object());
	char *text;

	json_object_set_new(json_object_get(diff, join ? "joins" : "leaves"), presence_key(who),
			    presence_entry(ch));
	text = json_dumps(diff, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(diff);
	for (struct ts_conn *c = s->conns; c != NULL; c = c->next)
		if (c != except && find_channel(c, phx_field_str(ch->topic)) != NULL)
			send_msg(c, NULL_FIELD, NULL_FIELD, phx_field_str(ch->topic), "presence_diff",
				 text, false);
	free(text);
}

/* After a presence:* join: track it, push the list, broadcast the join. */
static void
presence_track(struct ts_conn *c, struct ts_channel *ch)
{
	json_t *state = json_object();
	char *text;

	ch->tracked = true;
	snprintf(ch->presence_ref, sizeof(ch->presence_ref), "p%llu.%s",
		 (unsigned long long)c->id, ch->join_ref_null ? "0" : ch->join_ref);
	for (struct ts_conn *o = c->srv->conns; o != NULL; o = o->next) {
		struct ts_channel *och = find_channel(o, phx_field_str(ch->topic));
		if (och == NULL || !och->tracked)
			continue;
		json_t *entry = json_object_get(state, presence_key(o));
		if (entry == NULL)
			json_object_set_new(state, presence_key(o), presence_entry(och));
		else
			json_array_append_new(json_object_get(entry, "metas"),
					      json_pack("{s:s}", "phx_ref", och->presence_ref));
	}
	text = json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(state);
	send_msg(c, chan_jr(ch), NULL_FIELD, phx_field_str(ch->topic), "presence_state", text, false);
	free(text);
	presence_diff(c->srv, NULL, c, ch, true);
}

static void
presence_untrack(struct ts_conn *c, struct ts_channel *ch)
{
	if (!ch->tracked)
		return;
	ch->tracked = false;
	presence_diff(c->srv, c, c, ch, false);
}

static void
remove_channel(struct ts_conn *c, struct ts_channel *gone)
{
	presence_untrack(c, gone);
	for (struct ts_channel **pp = &c->channels; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == gone) {
			*pp = gone->next;
			c->channel_count--;
			free(gone);
			return;
		}
	}
}

/* A channel's lifecycle frame: [join_ref, join_ref, topic, event, {}]. */
static void
send_lifecycle(struct ts_conn *c, struct ts_channel *ch, const char *event)
{
	send_msg(c, chan_jr(ch), chan_jr(ch), phx_field_str(ch->topic), event, "{}", false);
}

static void
broadcast(struct ts_server *s, struct phx_field topic, const char *event,
	  const char *payload)
{
	for (struct ts_conn *c = s->conns; c != NULL; c = c->next)
		if (find_channel(c, topic) != NULL)
			send_msg(c, NULL_FIELD, NULL_FIELD, topic, event, payload, false);
}

static void
handle_join(struct ts_conn *c, const struct phx_msg *m)
{
	const struct ts_quirks *q = &c->srv->opt.quirks;
	bool rooms = field_has_prefix(m->topic, "rooms:");
	bool load = field_has_prefix(m->topic, "load:");
	bool presence = field_has_prefix(m->topic, "presence:");
	char *params;
	size_t rlen;
	char *resp;

	if (field_has_prefix(m->topic, "rejected:")) {
		/* {"pad": N} in the join payload: a refusal of N more bytes,
		 * the server that answers a join with an essay. */
		json_t *jp = json_loadb(m->payload.s, m->payload.len, 0, NULL);
		json_int_t pad = json_integer_value(json_object_get(jp, "pad"));
		json_decref(jp);
		if (pad > 0 && pad <= (64 << 20)) {
			char *big = malloc((size_t)pad + 64);
			if (big == NULL)
				abort();
			int n = sprintf(big, "{\"reason\":\"unauthorized\",\"pad\":\"");
			memset(big + n, 'x', (size_t)pad);
			strcpy(big + n + pad, "\"}");
			send_reply(c, m->join_ref, m->ref, m->topic, "error", big);
			free(big);
			return;
		}
		send_reply(c, m->join_ref, m->ref, m->topic, "error",
			   "{\"reason\":\"unauthorized\"}");
		return;
	}
	if (!rooms && !load && !presence) {
		send_reply(c, NULL_FIELD, m->ref, m->topic, "error",
			   "{\"reason\":\"unmatched topic\"}");
		return;
	}
	if (q->max_channels > 0 && c->channel_count >= q->max_channels) {
		send_reply(c, m->join_ref, m->ref, m->topic, "error",
			   "{\"reason\":\"too many channels joined\"}");
		return;
	}

	struct ts_channel *ch = calloc(1, sizeof(*ch));
	if (ch == NULL)
		abort();
	memcpy(ch->topic, m->topic.s, m->topic.len);
	field_copy(ch->join_ref, m->join_ref, &ch->join_ref_null);
	ch->is_load = load;
	ch->next = c->channels;
	c->channels = ch;
	c->channel_count++;

	if (load) {
		send_reply(c, m->join_ref, m->ref, m->topic, "ok", "{}");
		return;
	}
	if (presence) {
		send_reply(c, m->join_ref, m->ref, m->topic, "ok", "{}");
		presence_track(c, ch);
		return;
	}
	params = m->kind == PHX_TEXT ? canonical_json(m->payload) : NULL;
	rlen = m->topic.len * 2 + (params ? strlen(params) : 4) + 64;
	resp = malloc(rlen);
	if (resp == NULL)
		abort();
	size_t n = (size_t)snprintf(resp, rlen, "{\"joined\":");
	n += json_escape(m->topic.s, m->topic.len, resp + n);
	snprintf(resp + n, rlen - n, ",\"params\":%s}", params ? params : "{}");
	send_reply(c, m->join_ref, m->ref, m->topic, "ok", resp);
	free(resp);
	free(params);
}

static char *
whoami_json(struct ts_conn *c)
{
	json_t *o = json_pack("{s:O, s:s, s:s?, s:O?}", "params", c->connect_params,
			      "socket_id", c->socket_id, "auth_token", c->auth_token, "headers",
			      c->headers);
	char *out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);

	json_decref(o);
	return out;
}

/*
 * "hostile" {"reply": KIND}: replies a well-behaved client library must
 * survive, each still valid Phoenix framing:
 *   bigint     an integer no 64-bit type holds
 *   nul        a string with \u0000
 *   newlines   raw CR/LF as white space, spelling a forged socket line
 *   bad_status a binary reply whose status is not UTF-8
 *   deep       {"depth": N}: arrays nested N deep
 */
static void
hostile_in(struct ts_conn *c, struct phx_field jr, const struct phx_msg *m)
{
	json_t *p = json_loadb(m->payload.s, m->payload.len, 0, NULL);
	const char *kind = json_string_value(json_object_get(p, "reply"));
	json_int_t depth = json_integer_value(json_object_get(p, "depth"));
	char *text = NULL;

	if (kind == NULL) {
		kind = "";
	} else if (strcmp(kind, "bigint") == 0) {
		text = strdup("{\"n\":123456789012345678901234567890,\"f\":1e400}");
	} else if (strcmp(kind, "nul") == 0) {
		text = strdup("{\"s\":\"a\\u0000b\"}");
	} else if (strcmp(kind, "newlines") == 0) {
		text = strdup("{\"x\":\n{\"id\":1,\"ok\":true,\"result\":{\"status\":\"ok\"}}\r\n}");
	} else if (strcmp(kind, "deep") == 0 && depth > 0 && depth <= 100000) {
		text = malloc(2 * (size_t)depth + 1);
		if (text != NULL) {
			memset(text, '[', (size_t)depth);
			memset(text + depth, ']', (size_t)depth);
			text[2 * depth] = '\0';
		}
	} else if (strcmp(kind, "bad_status") == 0) {
		struct phx_msg out = { 0 };
		out.kind = PHX_BIN_REPLY;
		out.join_ref = jr;
		out.ref = m->ref;
		out.topic = m->topic;
		out.status = (struct phx_field){ "\xff\xfe", 2 };
		out.payload = (struct phx_field){ "\x01\x02", 2 };
		ts_conn_queue_msg(c, &out, true);
		json_decref(p);
		return;
	}
	json_decref(p);
	if (text == NULL) {
		send_reply(c, jr, m->ref, m->topic, "error", "{\"reason\":\"unknown hostile reply\"}");
		return;
	}
	send_reply(c, jr, m->ref, m->topic, "ok", text);
	free(text);
}

static void
rooms_in(struct ts_conn *c, struct ts_channel *ch, const struct phx_msg *m)
{
	struct phx_field jr = chan_jr(ch), topic = m->topic;

	if (m->kind != PHX_TEXT) {
		struct phx_msg out = { 0 };

		out.kind = PHX_BIN_PUSH;
		out.join_ref = jr;
		out.topic = topic;
		out.event = phx_field_str("bin_push");
		out.payload = m->payload;
		ts_conn_queue_msg(c, &out, false);
		out.kind = PHX_BIN_REPLY;
		out.ref = m->ref;
		out.status = phx_field_str("ok");
		ts_conn_queue_msg(c, &out, true);
		return;
	}
	if (phx_field_eq(m->event, "ping")) {
		send_reply(c, jr, m->ref, topic, "ok", "{\"pong\":\"pong\"}");
	} else if (phx_field_eq(m->event, "hostile")) {
		hostile_in(c, jr, m);
	} else if (phx_field_eq(m->event, "quicksand")) {
		/* never answered */
	} else if (phx_field_eq(m->event, "echo")) {
		char *echo = canonical_json(m->payload);
		send_reply(c, jr, m->ref, topic, "ok", echo ? echo : "null");
		free(echo);
	} else if (phx_field_eq(m->event, "push to me")) {
		send_msg(c, jr, NULL_FIELD, topic, "foo", "{\"bar\":\"baz\"}", false);
	} else if (phx_field_eq(m->event, "broadcast")) {
		char *payload = canonical_json(m->payload);
		broadcast(c->srv, topic, "broadcast", payload ? payload : "null");
		free(payload);
		send_reply(c, jr, m->ref, topic, "ok", "{}");
	} else if (phx_field_eq(m->event, "error_reply")) {
		send_reply(c, jr, m->ref, topic, "error", "{\"reason\":\"nope\"}");
	} else if (phx_field_eq(m->event, "empty_ok")) {
		send_reply(c, jr, m->ref, topic, "ok", "{}");
	} else if (phx_field_eq(m->event, "whoami")) {
		char *who = whoami_json(c);
		send_reply(c, jr, m->ref, topic, "ok", who);
		free(who);
	} else if (phx_field_eq(m->event, "crash")) {
		if (c->srv->opt.quirks.crash_reason)
			send_msg(c, chan_jr(ch), chan_jr(ch), phx_field_str(ch->topic), "phx_error",
				 "{\"reason\":\"channel_crash\"}", false);
		else
			send_lifecycle(c, ch, "phx_error");
		remove_channel(c, ch);
	} else if (phx_field_eq(m->event, "stop")) {
		send_lifecycle(c, ch, "phx_close");
		remove_channel(c, ch);
	} else if (phx_field_eq(m->event, "disconnect_socket")) {
		for (struct ts_conn *o = c->srv->conns; o != NULL; o = o->next)
			if (strcmp(o->socket_id, c->socket_id) == 0)
				ts_conn_close(o, c->srv->opt.quirks.disconnect_code, false);
	} else {
		send_reply(c, jr, m->ref, topic, "error", "{\"reason\":\"unhandled event\"}");
	}
}

static void
load_in(struct ts_conn *c, struct ts_channel *ch, const struct phx_msg *m)
{
	struct phx_field jr = chan_jr(ch);

	if (phx_field_eq(m->event, "sink")) {
		ch->sink_count++;
	} else if (phx_field_eq(m->event, "tally") && c->srv->opt.tally_fd >= 0 &&
		   m->kind == PHX_TEXT) {
		/* One write(2) per line: in the file before the reply leaves. */
		char *line = malloc(m->payload.len + 1);
		bool ok = line != NULL;
		if (ok) {
			memcpy(line, m->payload.s, m->payload.len);
			line[m->payload.len] = '\n';
			ok = write(c->srv->opt.tally_fd, line, m->payload.len + 1) ==
			     (ssize_t)m->payload.len + 1;
			free(line);
		}
		send_reply(c, jr, m->ref, m->topic, ok ? "ok" : "error",
			   ok ? "{}" : "{\"reason\":\"tally write\"}");
	} else if (phx_field_eq(m->event, "count")) {
		char resp[64];
		snprintf(resp, sizeof(resp), "{\"received\":%llu}",
			 (unsigned long long)ch->sink_count);
		send_reply(c, jr, m->ref, m->topic, "ok", resp);
	} else if (phx_field_eq(m->event, "flood") && m->kind == PHX_TEXT) {
		json_t *args = json_loadb(m->payload.s, m->payload.len, JSON_DECODE_ANY, NULL);
		json_int_t n = -1, size = -1;

		if (json_unpack(args, "{s:I, s:I}", "n", &n, "size", &size) != 0 || n < 0 ||
		    size < 0 || (uint64_t)size > TS_MAX_FLOOD_SIZE)
			send_reply(c, jr, m->ref, m->topic, "error",
				   "{\"reason\":\"flood needs n >= 0 and 0 <= size <= 16777216\"}");
		else
			ts_conn_queue_flood(c, ch, (uint64_t)n, (size_t)size, m->ref);
		json_decref(args);
	} else {
		send_reply(c, jr, m->ref, m->topic, "error", "{\"reason\":\"unhandled event\"}");
	}
}

static void
dispatch(struct ts_conn *c, const struct phx_msg *m)
{
	const struct ts_quirks *q = &c->srv->opt.quirks;
	struct ts_channel *ch;

	if (phx_field_eq(m->topic, "phoenix") && phx_field_eq(m->event, "heartbeat")) {
		c->srv->heartbeats++;
		if (!c->srv->mute_heartbeats)
			send_reply(c, NULL_FIELD, m->ref, m->topic, "ok", "{}");
		return;
	}
	ch = find_channel(c, m->topic);
	if (phx_field_eq(m->event, "phx_join")) {
		struct ts_channel old;

		if (ch == NULL) {
			handle_join(c, m);
			return;
		}
		/* Duplicate join: the old channel is shut down, the new join is
		 * answered, and the old join's phx_close follows the answer. */
		old = *ch;
		remove_channel(c, ch);
		handle_join(c, m);
		send_lifecycle(c, &old, "phx_close");
		return;
	}
	if (ch == NULL) {
		if (phx_field_eq(m->event, "phx_leave"))
			send_reply(c, m->join_ref, m->ref, m->topic, "ok", "{}");
		else
			send_reply(c, NULL_FIELD, m->ref, m->topic, "error",
				   "{\"reason\":\"unmatched topic\"}");
		return;
	}
	bool current = ch->join_ref_null || field_eq_field(m->join_ref, chan_jr(ch));
	if (phx_field_eq(m->event, "phx_leave")) {
		/* 1.7 ignores a leave without the current join_ref (it raced a
		 * close); 1.8 honours one with a null join_ref */
		if (!current && !(m->join_ref.s == NULL && q->leave_null_join_ref))
			return;
		send_reply(c, chan_jr(ch), m->ref, m->topic, "ok", "{}");
		send_lifecycle(c, ch, "phx_close");
		remove_channel(c, ch);
		return;
	}
	if (!current) {
		if (m->join_ref.s == NULL ? q->drop_null_join_ref : q->drop_stale_join_ref)
			return;
	}
	if (ch->is_load)
		load_in(c, ch, m);
	else
		rooms_in(c, ch, m);
}

/* V1 frames: {"topic", "event", "payload", "ref", "join_ref"?} objects. */
static int
v1_frame(struct ts_conn *c, const char *data, size_t len)
{
	json_t *o = json_loadb(data, len, JSON_ALLOW_NUL, NULL);
	json_t *topic, *event, *payload, *ref, *jr;
	struct phx_msg m = { 0 };
	char *payload_text = NULL;

	if (o == NULL || !json_is_object(o))
		goto bad;
	topic = json_object_get(o, "topic");
	event = json_object_get(o, "event");
	payload = json_object_get(o, "payload");
	ref = json_object_get(o, "ref");
	jr = json_object_get(o, "join_ref");
	if (!json_is_string(topic) || !json_is_string(event) || payload == NULL ||
	    !(ref == NULL || json_is_null(ref) || json_is_string(ref)) ||
	    !(jr == NULL || json_is_null(jr) || json_is_string(jr)) ||
	    json_string_length(topic) > PHX_MAX_FIELD || json_string_length(event) > PHX_MAX_FIELD)
		goto bad;
	payload_text = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	m.kind = PHX_TEXT;
	m.topic = (struct phx_field){ json_string_value(topic), json_string_length(topic) };
	m.event = (struct phx_field){ json_string_value(event), json_string_length(event) };
	if (json_is_string(ref))
		m.ref = (struct phx_field){ json_string_value(ref), json_string_length(ref) };
	if (json_is_string(jr))
		m.join_ref = (struct phx_field){ json_string_value(jr), json_string_length(jr) };
	m.payload = phx_field_str(payload_text);
	dispatch(c, &m);
	free(payload_text);
	json_decref(o);
	return 0;
bad:
	json_decref(o);
	ts_conn_close(c, 1011, true);
	return 0;
}

int
ts_phoenix_frame(struct ts_conn *c, const char *data, size_t len, bool binary)
{
	struct phx_msg m;
	struct phx_error err;
	enum phx_err rc;

	if (c->close_now || c->drop)
		return 0;
	if (c->vsn == 1) {
		if (binary) {
			ts_conn_close(c, 1011, true);
			return 0;
		}
		return v1_frame(c, data, len);
	}
	if (binary)
		rc = phx_decode_binary(data, len, PHX_FROM_CLIENT, &m, &err);
	else
		rc = phx_decode_text(data, len, PHX_DECODE_ALLOW_EXTRA, &m, &err);
	if (rc != PHX_OK) {
		/* The server's decoder raises, and the socket closes with 1011. */
		if (c->srv->opt.verbose)
			ts_log(c->srv, "conn %llu: bad frame (%s), closing 1011",
			       (unsigned long long)c->id, err.detail);
		ts_conn_close(c, 1011, true);
		return 0;
	}
	if (m.topic.s == NULL || m.event.s == NULL) {
		ts_conn_close(c, 1011, true);
		return 0;
	}
	dispatch(c, &m);
	return 0;
}

/* The query string, one "key=value" fragment at a time. */
static bool
query_arg(struct lws *wsi, const char *key, char *buf, int len)
{
	size_t klen = strlen(key);

	for (int i = 0; lws_hdr_copy_fragment(wsi, buf, len, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
	     i++) {
		if (strncmp(buf, key, klen) == 0 && buf[klen] == '=') {
			memmove(buf, buf + klen + 1, strlen(buf + klen + 1) + 1);
			return true;
		}
	}
	return false;
}

/*
 * Phoenix 1.8 with auth_token: true: the bearer entry must hold standard
 * base64 without padding (a padded or URL-safe one makes the server fail,
 * 500), and the socket's connect refuses an empty token or "reject" (403).
 */
static bool
check_auth_token(struct lws *wsi, int *http_status)
{
	char buf[1024];

	if (lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_PROTOCOL) <= 0)
		return true;
	for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok != NULL;
	     tok = strtok_r(NULL, ", ", &save)) {
		if (strncmp(tok, subprotocol_token_prefix, sizeof(subprotocol_token_prefix) - 1) != 0)
			continue;
		const char *b64 = tok + sizeof(subprotocol_token_prefix) - 1;
		if (strpbrk(b64, "=-_") != NULL) {
			*http_status = 500;
			return false;
		}
		char *token = decode_token(b64);
		bool refused = token == NULL || token[0] == '\0' || strcmp(token, "reject") == 0;
		free(token);
		if (refused) {
			*http_status = 403;
			return false;
		}
	}
	return true;
}

bool
ts_phoenix_accept_upgrade(struct ts_server *s, struct lws *wsi, int *http_status)
{
	char buf[512];

	if (lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_GET_URI) <= 0 ||
	    strcmp(buf, "/socket/websocket") != 0) {
		*http_status = 404;
		return false;
	}
	if (s->refusing && s->refuse_mode == TS_REFUSE_HTTP) {
		*http_status = s->refuse_status;
		s->refused_total++;
		return false;
	}
	if (query_arg(wsi, "vsn", buf, sizeof(buf)) && strcmp(buf, "2.0.0") != 0 &&
	    strcmp(buf, "1.0.0") != 0) {
		*http_status = 403;
		return false;
	}
	if (query_arg(wsi, "reject", buf, sizeof(buf)) && strcmp(buf, "true") == 0) {
		*http_status = 403;
		return false;
	}
	if (s->opt.quirks.checks_auth_token)
		return check_auth_token(wsi, http_status);
	return true;
}

/* Standard or URL-safe base64 without padding, as the 1.8 client sends it. */
static char *
decode_token(const char *b64)
{
	size_t n = strlen(b64);
	char *norm = malloc(n + 4), *out = malloc(n + 1);
	int len;

	if (norm == NULL || out == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		norm[i] = b64[i] == '-' ? '+' : b64[i] == '_' ? '/' : b64[i];
	while (n % 4 != 0)
		norm[n++] = '=';
	norm[n] = '\0';
	len = lws_b64_decode_string(norm, out, (int)strlen(b64) + 1);
	free(norm);
	if (len < 0) {
		free(out);
		return NULL;
	}
	out[len] = '\0';
	return out;
}

int
ts_phoenix_established(struct ts_conn *c)
{
	char buf[8192];	/* a query argument as long as Cowboy's request line */

	c->vsn = 1;
	c->connect_params = json_object();
	for (int i = 0;
	     lws_hdr_copy_fragment(c->wsi, buf, sizeof(buf), WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
	     i++) {
		char *eq = strchr(buf, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		json_object_set_new(c->connect_params, buf, json_string(eq + 1));
		if (strcmp(buf, "vsn") == 0 && strcmp(eq + 1, "2.0.0") == 0)
			c->vsn = 2;
	}
	/* Custom headers cannot be listed, only fetched by name: the
	 * "headers" connect param names those whoami should report. */
	json_t *wanted = json_object_get(c->connect_params, "headers");
	if (json_is_string(wanted)) {
		char names[512];
		snprintf(names, sizeof(names), "%s", json_string_value(wanted));
		c->headers = json_object();
		for (char *save = NULL, *h = strtok_r(names, ",", &save); h != NULL;
		     h = strtok_r(NULL, ",", &save)) {
			static char value[8192];	/* Cowboy takes values of 4096 */
			char name[128];
			int nlen = snprintf(name, sizeof(name), "%s:", h);
			for (char *p = name; *p; p++)
				*p = (char)tolower((unsigned char)*p);
			/* Host and Authorization are headers lws knows by token,
			 * not by name. */
			int token = strcmp(name, "host:") == 0 ? WSI_TOKEN_HOST
				    : strcmp(name, "authorization:") == 0 ? WSI_TOKEN_HTTP_AUTHORIZATION
									     : -1;
			if (token >= 0) {
				if (lws_hdr_copy(c->wsi, value, sizeof(value), token) >= 0)
					json_object_set_new(c->headers, h, json_string(value));
			}
			else if (nlen > 0 && nlen < (int)sizeof(name) &&
				 lws_hdr_custom_copy(c->wsi, value, sizeof(value), name, nlen) >= 0)
				json_object_set_new(c->headers, h, json_string(value));
		}
	}
	json_t *user = json_object_get(c->connect_params, "user");
	snprintf(c->socket_id, sizeof(c->socket_id), "user_socket:%s",
		 json_is_string(user) ? json_string_value(user) : "anon");

	if (lws_hdr_copy(c->wsi, buf, sizeof(buf), WSI_TOKEN_PROTOCOL) > 0) {
		for (char *tok = strtok(buf, ", "); tok != NULL; tok = strtok(NULL, ", ")) {
			if (strncmp(tok, subprotocol_token_prefix,
				    sizeof(subprotocol_token_prefix) - 1) == 0) {
				c->auth_token =
					decode_token(tok + sizeof(subprotocol_token_prefix) - 1);
				break;
			}
		}
	}
	ts_conn_touch(c);
	return 0;
}

void
ts_phoenix_closed(struct ts_conn *c)
{
	struct ts_channel *ch, *next;

	for (ch = c->channels; ch != NULL; ch = ch->next)
		presence_untrack(c, ch);
	for (ch = c->channels; ch != NULL; ch = next) {
		next = ch->next;
		free(ch);
	}
	c->channels = NULL;
	c->channel_count = 0;
	json_decref(c->connect_params);
	c->connect_params = NULL;
	free(c->auth_token);
	c->auth_token = NULL;
	json_decref(c->headers);
	c->headers = NULL;
}
