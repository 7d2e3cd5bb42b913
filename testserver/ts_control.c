/* SPDX-License-Identifier: MIT */
/*
 * Fault controls over plain HTTP on the same port, so any test script can
 * drive them (curl, Python, Node):  GET or POST /control/<command>?args
 * Each answers a JSON object; see docs/phxd-testserver.md.
 */
#include "ts.h"

#include <errno.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct control_ctx {
	struct ts_server *srv;
	struct lws *wsi;
	char error[160];
	json_t *result;
};

struct control_cmd {
	const char *name;
	bool (*exec)(struct control_ctx *cc);
};

static bool
arg(struct control_ctx *cc, const char *key, char *buf, int len)
{
	/* Every argument is read whole (a hex frame is long), then the one
	 * asked for is copied out if it fits. */
	static char any[8300];
	size_t klen = strlen(key);

	for (int i = 0;
	     lws_hdr_copy_fragment(cc->wsi, any, sizeof(any), WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
	     i++) {
		if (strncmp(any, key, klen) == 0 && any[klen] == '=') {
			size_t n = strlen(any + klen + 1);
			if (n >= (size_t)len)
				return false;
			memcpy(buf, any + klen + 1, n + 1);
			return true;
		}
	}
	return false;
}

/* An integer argument in [min, max]; false with cc->error set when bad. */
static bool
int_arg(struct control_ctx *cc, const char *key, long min, long max, long dflt,
	bool required, long *out)
{
	char buf[64], *end;
	long v;

	if (!arg(cc, key, buf, sizeof(buf))) {
		if (required) {
			snprintf(cc->error, sizeof(cc->error), "missing argument %s", key);
			return false;
		}
		*out = dflt;
		return true;
	}
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno != 0 || end == buf || *end != '\0' || v < min || v > max) {
		snprintf(cc->error, sizeof(cc->error), "%s must be an integer from %ld to %ld",
			 key, min, max);
		return false;
	}
	*out = v;
	return true;
}

/* A hex argument as bytes (hostile input: any bytes at all); false with
 * cc->error set when bad. *len is 0 when the argument is absent. */
static bool
hex_arg(struct control_ctx *cc, const char *key, unsigned char *out, size_t cap, size_t *len)
{
	char buf[8200];
	size_t n;

	*len = 0;
	if (!arg(cc, key, buf, sizeof(buf)))
		return true;
	n = strlen(buf);
	if (n % 2 != 0 || n / 2 > cap) {
		snprintf(cc->error, sizeof(cc->error), "%s must be hex, at most %zu bytes", key, cap);
		return false;
	}
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(buf + 2 * i, "%2x", &v) != 1) {
			snprintf(cc->error, sizeof(cc->error), "%s must be hex", key);
			return false;
		}
		out[i] = (unsigned char)v;
	}
	*len = n / 2;
	return true;
}

static bool
cmd_drop(struct control_ctx *cc)
{
	unsigned n = 0;

	for (struct ts_conn *c = cc->srv->conns; c != NULL; c = c->next, n++)
		ts_conn_drop(c);
	json_object_set_new(cc->result, "dropped", json_integer(n));
	return true;
}

static bool
cmd_close(struct control_ctx *cc)
{
	long code;
	unsigned n = 0;
	unsigned char reason[123];
	size_t reason_len;

	if (!int_arg(cc, "code", 1000, 4999, 1000, false, &code) ||
	    !hex_arg(cc, "reason_hex", reason, sizeof(reason), &reason_len))
		return false;
	if (code == 1004 || code == 1005 || code == 1006 || code == 1015) {
		snprintf(cc->error, sizeof(cc->error), "code %ld may not be sent in a close frame",
			 code);
		return false;
	}
	for (struct ts_conn *c = cc->srv->conns; c != NULL; c = c->next, n++) {
		memcpy(c->close_reason, reason, reason_len);
		c->close_reason_len = reason_len;
		ts_conn_close(c, (int)code, true);
	}
	json_object_set_new(cc->result, "closed", json_integer(n));
	return true;
}

static bool
cmd_heartbeats(struct control_ctx *cc)
{
	long answer;

	if (!int_arg(cc, "answer", 0, 1, 1, true, &answer))
		return false;
	cc->srv->mute_heartbeats = answer == 0;
	return true;
}

static bool
cmd_delay(struct control_ctx *cc)
{
	long ms;

	if (!int_arg(cc, "ms", 0, 3600000, 0, true, &ms))
		return false;
	cc->srv->reply_delay_ms = (unsigned)ms;
	return true;
}

static bool
cmd_refuse(struct control_ctx *cc)
{
	long ms, status;

	if (!int_arg(cc, "ms", 0, 3600000, 0, false, &ms) ||
	    !int_arg(cc, "status", 0, 599, 0, false, &status))
		return false;
	if (status != 0 && status < 400) {
		snprintf(cc->error, sizeof(cc->error), "status must be an HTTP error (400-599)");
		return false;
	}
	cc->srv->refusing = true;
	cc->srv->refuse_mode = status ? TS_REFUSE_HTTP : TS_REFUSE_CLOSE;
	cc->srv->refuse_status = (int)status;
	cc->srv->refuse_until = ms ? lws_now_usecs() + (lws_usec_t)ms * 1000 : 0;
	return true;
}

static bool
cmd_accept(struct control_ctx *cc)
{
	cc->srv->refusing = false;
	cc->srv->refuse_mode = TS_REFUSE_NONE;
	return true;
}

static bool
cmd_reset(struct control_ctx *cc)
{
	cc->srv->mute_heartbeats = false;
	cc->srv->reply_delay_ms = 0;
	return cmd_accept(cc);
}

static bool
cmd_broadcast(struct control_ctx *cc)
{
	char topic[PHX_MAX_FIELD + 1], event[PHX_MAX_FIELD + 1], payload[4096];
	unsigned n = 0;

	if (!arg(cc, "topic", topic, sizeof(topic)) || !arg(cc, "event", event, sizeof(event))) {
		snprintf(cc->error, sizeof(cc->error), "topic and event are required");
		return false;
	}
	if (!arg(cc, "payload", payload, sizeof(payload)))
		strcpy(payload, "{}");
	json_t *v = json_loads(payload, 0, NULL);
	if (v == NULL || !json_is_object(v)) {
		json_decref(v);
		snprintf(cc->error, sizeof(cc->error), "payload must be a JSON object");
		return false;
	}
	char *canon = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(v);
	struct phx_msg m = { 0 };
	m.kind = PHX_TEXT;
	m.topic = phx_field_str(topic);
	m.event = phx_field_str(event);
	m.payload = phx_field_str(canon);
	for (struct ts_conn *c = cc->srv->conns; c != NULL; c = c->next) {
		for (struct ts_channel *ch = c->channels; ch != NULL; ch = ch->next) {
			if (strcmp(ch->topic, topic) == 0) {
				ts_conn_queue_msg(c, &m, false);
				n++;
				break;
			}
		}
	}
	free(canon);
	json_object_set_new(cc->result, "delivered", json_integer(n));
	return true;
}

/* Stops (answer=0) or resumes (1) reading every open socket: a server
 * that no longer reads, so a client's send queue fills up. */
static bool
cmd_reading(struct control_ctx *cc)
{
	long on;
	unsigned n = 0;

	if (!int_arg(cc, "on", 0, 1, 1, true, &on))
		return false;
	for (struct ts_conn *c = cc->srv->conns; c != NULL; c = c->next, n++)
		if (c->wsi)
			lws_rx_flow_control(c->wsi, on ? 1 : 0);
	json_object_set_new(cc->result, "sockets", json_integer(n));
	return true;
}

/* Sends a raw text frame to every socket: how tests make a server say
 * something odd on purpose (a stale join_ref, a bad frame). */
static bool
cmd_inject(struct control_ctx *cc)
{
	char frame[8192];
	size_t len;
	long binary, fragments;
	unsigned n = 0;

	if (!hex_arg(cc, "hex", (unsigned char *)frame, sizeof(frame) / 2, &len) ||
	    !int_arg(cc, "binary", 0, 1, 0, false, &binary) ||
	    !int_arg(cc, "fragments", 1, 64, 1, false, &fragments))
		return false;
	if (len == 0) {
		if (!arg(cc, "frame", frame, sizeof(frame))) {
			snprintf(cc->error, sizeof(cc->error), "frame or hex is required");
			return false;
		}
		len = strlen(frame);
	}
	for (struct ts_conn *c = cc->srv->conns; c != NULL; c = c->next, n++) {
		if (fragments > 1)
			ts_conn_queue_fragments(c, frame, len, binary != 0, (unsigned)fragments);
		else
			ts_conn_queue(c, frame, len, binary != 0, false);
	}
	json_object_set_new(cc->result, "sent", json_integer(n));
	return true;
}

static bool
cmd_stats(struct control_ctx *cc)
{
	struct ts_server *s = cc->srv;
	unsigned channels = 0;
	json_t *per_socket = json_array();

	for (struct ts_conn *c = s->conns; c != NULL; c = c->next) {
		channels += c->channel_count;
		json_array_append_new(per_socket, json_integer(c->channel_count));
	}
	json_object_set_new(cc->result, "connections", json_integer(s->conn_count));
	json_object_set_new(cc->result, "channels_per_socket", per_socket);
	json_object_set_new(cc->result, "channels", json_integer(channels));
	json_object_set_new(cc->result, "connects_total", json_integer((json_int_t)s->connects_total));
	json_object_set_new(cc->result, "refused_total", json_integer((json_int_t)s->refused_total));
	json_object_set_new(cc->result, "frames_in", json_integer((json_int_t)s->frames_in));
	json_object_set_new(cc->result, "frames_out", json_integer((json_int_t)s->frames_out));
	json_object_set_new(cc->result, "heartbeats", json_integer((json_int_t)s->heartbeats));
	json_object_set_new(cc->result, "heartbeats_answered", json_boolean(!s->mute_heartbeats));
	json_object_set_new(cc->result, "reply_delay_ms", json_integer(s->reply_delay_ms));
	json_object_set_new(cc->result, "refusing", json_boolean(s->refusing));
	return true;
}

static const struct control_cmd control_cmds[] = {
	{ "drop", cmd_drop },
	{ "close", cmd_close },
	{ "heartbeats", cmd_heartbeats },
	{ "delay", cmd_delay },
	{ "refuse", cmd_refuse },
	{ "accept", cmd_accept },
	{ "reset", cmd_reset },
	{ "broadcast", cmd_broadcast },
	{ "stats", cmd_stats },
	{ "inject", cmd_inject },
	{ "reading", cmd_reading },
};

void
ts_control_refuse_expire(struct ts_server *s)
{
	if (s->refusing && s->refuse_until != 0 && lws_now_usecs() >= s->refuse_until) {
		s->refusing = false;
		s->refuse_mode = TS_REFUSE_NONE;
	}
}

static int
respond(struct ts_conn *pss, struct lws *wsi, unsigned status, json_t *body)
{
	unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start;
	unsigned char *end = hdr + sizeof(hdr) - 1;
	char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	size_t len = strlen(text);

	json_decref(body);
	pss->http_body = malloc(LWS_PRE + len + 1);
	if (pss->http_body == NULL)
		abort();
	memcpy(pss->http_body + LWS_PRE, text, len);
	pss->http_body[LWS_PRE + len] = '\n';
	pss->http_body_len = len + 1;
	free(text);
	if (lws_add_http_common_headers(wsi, status, "application/json",
					pss->http_body_len, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return 1;
	lws_callback_on_writable(wsi);
	return 0;
}

int
ts_control_http(struct ts_server *s, struct ts_conn *pss, struct lws *wsi, const char *path)
{
	struct control_ctx cc = { .srv = s, .wsi = wsi };
	const char *name;

	if (strncmp(path, "/control/", 9) != 0)
		return respond(pss, wsi, 404,
			       json_pack("{s:b, s:s}", "ok", 0, "error",
					 "not found: the websocket is /socket/websocket, "
					 "controls are under /control/"));
	name = path + 9;
	for (size_t i = 0; i < sizeof(control_cmds) / sizeof(control_cmds[0]); i++) {
		if (strcmp(control_cmds[i].name, name) != 0)
			continue;
		cc.result = json_pack("{s:b}", "ok", 1);
		if (!control_cmds[i].exec(&cc)) {
			json_decref(cc.result);
			return respond(pss, wsi, 400,
				       json_pack("{s:b, s:s}", "ok", 0, "error", cc.error));
		}
		if (s->opt.verbose)
			ts_log(s, "control: %s", name);
		return respond(pss, wsi, 200, cc.result);
	}
	return respond(pss, wsi, 404,
		       json_pack("{s:b, s:s}", "ok", 0, "error", "unknown control command"));
}

int
ts_control_http_writeable(struct ts_conn *pss, struct lws *wsi)
{
	int n;

	if (pss->http_body == NULL)
		return 0;
	n = lws_write(wsi, (unsigned char *)pss->http_body + LWS_PRE, pss->http_body_len,
		      LWS_WRITE_HTTP_FINAL);
	free(pss->http_body);
	pss->http_body = NULL;
	if (n < 0)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}
