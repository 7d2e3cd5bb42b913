/* SPDX-License-Identifier: MIT */
/*
 * The command table and the dispatcher: one file per command, each
 * exporting its entry; what an entry's flags ask for (the connection, the
 * topic) is resolved here once, so a command body only does its job.
 */
#include "ipc_int.h"

#include "daemon/xmalloc.h"
#include "protocol/base64.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct ipc_cmd cmd_hello, cmd_status, cmd_join, cmd_leave, cmd_push, cmd_subscribe,
	cmd_unsubscribe, cmd_events, cmd_presence, cmd_reload, cmd_metrics, cmd_outbox;

static const struct ipc_cmd *const cmd_table[] = {
	&cmd_hello, &cmd_status, &cmd_join, &cmd_leave, &cmd_push, &cmd_subscribe,
	&cmd_unsubscribe, &cmd_events, &cmd_presence, &cmd_reload, &cmd_metrics, &cmd_outbox,
};

const struct ipc_cmd *
ipc_cmd_find(const char *name)
{
	for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++)
		if (strcmp(cmd_table[i]->name, name) == 0)
			return cmd_table[i];
	return NULL;
}

/* ---- replies -------------------------------------------------------------- */

void
ipc_reply_ok(struct ipc_request *r, json_t *result)
{
	if (r->notification) {
		json_decref(result);
		return;
	}
	struct ipc_line *l = ipc_encode_reply(r->id, true, result ? result : json_object(), NULL, 0);

	ipc_client_send(r->c, l);
	ipc_line_unref(l);
}

static json_t *
error_body(const char *code, const char *msg)
{
	json_t *err = json_object();

	json_object_set_new(err, "code", json_string(code));
	json_object_set_new(err, "message", ipc_jstr(msg));
	return err;
}

static void reply_verror(struct ipc_request *r, const char *code, json_t *extra, const char *fmt,
			 va_list ap) __attribute__((format(printf, 4, 0)));

static void
reply_verror(struct ipc_request *r, const char *code, json_t *extra, const char *fmt, va_list ap)
{
	char msg[512];
	json_t *body;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (r->notification) {
		const char *conn = json_string_value(json_object_get(r->body, "conn"));
		const char *topic = json_string_value(json_object_get(r->body, "topic"));
		const char *event = json_string_value(json_object_get(r->body, "event"));
		ipc_publish_push_failed(r->d->ipc, r->pc ? r->pc->conf->name : conn, topic, event,
					code, msg);
		json_decref(extra);
		return;
	}
	/* msg may quote the request and may be cut anywhere: ipc_jstr makes
	 * it valid whatever it holds. */
	body = error_body(code, msg);
	if (extra) {
		json_object_update_missing(body, extra);
		json_decref(extra);
	}
	struct ipc_line *l = ipc_encode_reply(r->id, false, body, NULL, 0);
	ipc_client_send(r->c, l);
	ipc_line_unref(l);
}

void
ipc_reply_error(struct ipc_request *r, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_verror(r, code, NULL, fmt, ap);
	va_end(ap);
}

void
ipc_reply_error_with(struct ipc_request *r, const char *code, json_t *extra, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_verror(r, code, extra, fmt, ap);
	va_end(ap);
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
	case SESS_TOO_MANY_TOPICS: return PHXD_E_TOO_MANY_TOPICS;
	}
	return PHXD_E_INTERNAL;
}

/* A reply's response as JSON text: the server's own (validated) text, or
 * {"binary": base64} for binary replies. *owned is what to free. */
static const char *
response_text(const struct sess_result *res, size_t *len, char **owned)
{
	*owned = NULL;
	if (!res->binary) {
		*len = res->response_len;
		return res->response;
	}
	char *t = xmalloc(14 + BASE64_ENCODED_SIZE(res->response_len));
	size_t n = (size_t)sprintf(t, "{\"binary\":\"");
	n += base64_encode(res->response, res->response_len, true, t + n);
	t[n++] = '"';
	t[n++] = '}';
	*len = n;
	*owned = t;
	return t;
}

void
ipc_pending_session_done(void *arg, const struct sess_result *res)
{
	struct ipc_pending *p = arg;
	const char *raw = NULL;
	size_t raw_len = 0;
	char *owned = NULL;
	json_t *body;
	bool ok = res->outcome == SESS_OK;

	if (res->response != NULL && (ok || res->outcome == SESS_REPLY_ERROR))
		raw = response_text(res, &raw_len, &owned);
	if (ok) {
		/* "sent", a reply, or a leave or join with nothing to say */
		ipc_pending_answer(p, ipc_encode_status(p->id, res->status ? res->status : "ok",
							raw, raw_len));
		free(owned);
		return;
	}
	if (res->outcome == SESS_REPLY_ERROR) {
		char msg[300];
		snprintf(msg, sizeof(msg), "the server replied %s", res->status);
		body = error_body(PHXD_E_REPLY_ERROR, msg);
		json_object_set_new(body, "status", ipc_jstr(res->status));
		if (raw == NULL)
			json_object_set_new(body, "response", json_null());
	} else {
		body = error_body(ipc_outcome_code(res->outcome),
				  res->message ? res->message : session_outcome_name(res->outcome));
	}
	ipc_pending_answer(p, ipc_encode_reply(p->id, false, body, raw, raw_len));
	free(owned);
}

void
ipc_pending_answer_error(struct ipc_pending *p, const char *code, const char *message)
{
	ipc_pending_answer(p, ipc_encode_reply(p->id, false, error_body(code, message), NULL, 0));
}

void
ipc_pending_answer_ok(struct ipc_pending *p, json_t *result)
{
	ipc_pending_answer(p, ipc_encode_reply(p->id, true, result, NULL, 0));
}

/* ---- request fields ------------------------------------------------------- */

bool
ipc_get_string(struct ipc_request *r, const char *key, bool required, const char **out)
{
	json_t *v = json_object_get(r->body, key);

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (required)
			ipc_reply_error(r, PHXD_E_BAD_REQUEST, "\"%s\" is required", key);
		return !required;
	}
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST, "\"%s\" must be a string", key);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

bool
ipc_get_uint(struct ipc_request *r, const char *key, json_int_t max, json_int_t *out)
{
	json_t *v = json_object_get(r->body, key);

	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST,
				"\"%s\" must be an integer from 0 to %" JSON_INTEGER_FORMAT, key, max);
		return false;
	}
	*out = json_integer_value(v);
	return true;
}

bool
ipc_get_bool(struct ipc_request *r, const char *key, bool *out)
{
	json_t *v = json_object_get(r->body, key);

	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_boolean(v)) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST, "\"%s\" must be true or false", key);
		return false;
	}
	*out = json_is_true(v);
	return true;
}

/* CMD_CONN: the connection named by "conn", or the only one. */
static bool
resolve_conn(struct ipc_request *r, bool required)
{
	const char *name;
	size_t live = 0;

	if (!ipc_get_string(r, "conn", false, &name))
		return false;
	if (name != NULL) {
		r->pc = phxd_find_conn(r->d, name);
		if (r->pc == NULL)
			ipc_reply_error(r, PHXD_E_UNKNOWN_CONNECTION, "no connection named '%s'", name);
		return r->pc != NULL;
	}
	if (!required || (r->pc = ipc_find_conn(r->d, NULL)) != NULL)
		return true;
	for (size_t i = 0; i < r->d->nconns; i++)
		live += r->d->conns[i] != NULL;
	ipc_reply_error(r, PHXD_E_BAD_REQUEST, "\"conn\" is required: %zu connections are configured",
			live);
	return false;
}

struct phxd_conn *
ipc_find_conn(struct phxd *d, const char *name)
{
	struct phxd_conn *only = NULL;
	size_t live = 0;

	if (name != NULL)
		return phxd_find_conn(d, name);
	for (size_t i = 0; i < d->nconns; i++) {
		if (d->conns[i] != NULL) {
			live++;
			only = d->conns[i];
		}
	}
	return live == 1 ? only : NULL;
}

void
ipc_dispatch_line(struct ipc_client *c, const char *line, size_t len)
{
	struct ipc_request r = { .d = c->srv->d, .c = c, .id = json_null() };
	json_error_t jerr;
	json_t *id, *op;
	const struct ipc_cmd *cmd;

	if (ipc_push_fast(c, line, len))
		return;
	r.body = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (r.body == NULL) {
		ipc_reply_error(&r, PHXD_E_BAD_JSON, "not JSON: %s (column %d)", jerr.text, jerr.column);
		return;
	}
	if (!json_is_object(r.body)) {
		ipc_reply_error(&r, PHXD_E_BAD_REQUEST, "a request is a JSON object");
		goto done;
	}
	id = json_object_get(r.body, "id");
	if (id != NULL && !json_is_integer(id) && !json_is_string(id) && !json_is_null(id)) {
		ipc_reply_error(&r, PHXD_E_BAD_REQUEST, "\"id\" must be an integer or a string");
		goto done;
	}
	if (id != NULL)
		r.id = id;
	op = json_object_get(r.body, "op");
	r.notification = id == NULL && json_is_string(op) && strcmp(json_string_value(op), "push") == 0;
	/* At exit the sessions are gone: requests that were already on their
	 * way get this answer rather than a reset connection. */
	if (r.d->stopping) {
		ipc_reply_error(&r, PHXD_E_SHUTTING_DOWN, "phxd is stopping; ask again once it is back");
		goto done;
	}
	if (!json_is_string(op)) {
		ipc_reply_error(&r, PHXD_E_BAD_REQUEST, "\"op\" (a string) is required");
		goto done;
	}
	if ((cmd = ipc_cmd_find(json_string_value(op))) == NULL) {
		ipc_reply_error(&r, PHXD_E_UNKNOWN_OP, "unknown op '%s'", json_string_value(op));
		goto done;
	}
	if ((cmd->flags & (CMD_CONN | CMD_CONN_FILTER)) && !resolve_conn(&r, cmd->flags & CMD_CONN))
		goto done;
	if ((cmd->flags & CMD_TOPIC) && !ipc_get_string(&r, "topic", true, &r.topic))
		goto done;
	cmd->exec(&r);
	if (cmd->flags & CMD_TIMERS)
		phxd_timers_changed(r.d);
done:
	json_decref(r.body);
}
