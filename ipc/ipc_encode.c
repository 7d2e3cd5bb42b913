/* SPDX-License-Identifier: MIT */
/*
 * The line encoder: every line phxd writes to a client is built here, and
 * each is exactly one JSON value whatever the peers sent. Strings from
 * outside are made valid UTF-8 before they are echoed; JSON from the
 * server was validated by the codec and is spliced in on one line.
 */
#include "ipc_int.h"

#include "daemon/log.h"
#include "daemon/xmalloc.h"
#include "protocol/base64.h"
#include "protocol/json_scan.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Appends a string literal at p, the cursor of the line being written. */
#define PUT_LITERAL(lit) (memcpy(p, lit, sizeof(lit) - 1), p += sizeof(lit) - 1)

/* What a client gets if a line could not be encoded at all. */
static const char encode_failed[] =
	"{\"id\":null,\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":"
	"\"phxd could not encode this line\"}}\n";

struct ipc_line *
ipc_line_new(size_t cap)
{
	struct ipc_line *l = xmalloc(sizeof(*l) + cap);

	l->refs = 1;
	l->len = 0;
	return l;
}

void
ipc_line_unref(struct ipc_line *l)
{
	if (l != NULL && --l->refs == 0)
		free(l);
}

static struct ipc_line *
line_of(const char *text, size_t len)
{
	struct ipc_line *l = ipc_line_new(len + 1);

	memcpy(l->data, text, len);
	l->data[len] = '\n';
	l->len = len + 1;
	return l;
}

static struct ipc_line *
line_failed(void)
{
	log_warnx("ipc: a line could not be encoded; sent an internal error instead");
	return line_of(encode_failed, sizeof(encode_failed) - 2);
}

json_t *
ipc_jstrn(const char *s, size_t len)
{
	json_t *j;

	if (s == NULL)
		return json_null();
	if (json_utf8_valid(s, len) && memchr(s, '\0', len) == NULL)
		return json_stringn(s, len);
	size_t n = json_utf8_sanitized_len(s, len);
	char *clean = xmalloc(n + 1);
	json_utf8_sanitize(s, len, clean);
	/* jansson takes NUL inside strings, but the C strings of our
	 * clients do not: a NUL becomes '?'. */
	for (size_t i = 0; i < n; i++)
		if (clean[i] == '\0')
			clean[i] = '?';
	j = json_stringn(clean, n);
	free(clean);
	return j ? j : json_string("");
}

json_t *
ipc_jstr(const char *s)
{
	return s ? ipc_jstrn(s, strlen(s)) : json_null();
}

struct ipc_line *
ipc_line_json(json_t *o)
{
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	struct ipc_line *l;

	if (text == NULL)
		return line_failed();
	l = line_of(text, strlen(text));
	free(text);
	return l;
}

struct ipc_line *
ipc_encode_tail(json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT);
	size_t n;
	struct ipc_line *l;

	if (text == NULL || text[0] != '{')
		fatalx("ipc: cannot encode a stream line");
	n = strlen(text);
	l = line_of(text + 1, n - 1);
	free(text);
	return l;
}

size_t
ipc_encode_tag(uint64_t sub, char *buf)
{
	/* once per line per subscriber: no printf */
	size_t len = 7;

	memcpy(buf, "{\"sub\":", 7);
	len += json_put_uint(sub, buf + len);
	buf[len++] = ',';
	buf[len] = '\0';
	return len;
}

/* Appends key, then s as a JSON string. */
static char *
put_string(char *p, const char *key, const char *s, size_t len)
{
	size_t klen = strlen(key);

	memcpy(p, key, klen);
	p += klen;
	return p + json_escape(s, len, p);
}

struct ipc_line *
ipc_encode_status(json_t *id, const char *status, const char *raw, size_t raw_len)
{
	size_t slen = strlen(status);

	if (!json_is_integer(id)) {
		/* a string id (the general path takes one): rare, so jansson */
		json_t *body = json_object();

		json_object_set_new(body, "status", ipc_jstr(status));
		return ipc_encode_reply(id, true, body, raw, raw_len);
	}

	json_int_t v = json_integer_value(id);
	struct ipc_line *l = ipc_line_new(80 + json_escaped_len(status, slen) + raw_len);
	char *p = l->data;

	PUT_LITERAL("{\"id\":");
	if (v < 0)
		*p++ = '-';
	p += json_put_uint(v < 0 ? -(uint64_t)v : (uint64_t)v, p);
	p = put_string(p, ",\"ok\":true,\"result\":{\"status\":", status, slen);
	if (raw != NULL) {
		PUT_LITERAL(",\"response\":");
		p += json_copy_one_line(raw, raw_len, p);
	}
	PUT_LITERAL("}}\n");
	l->len = (size_t)(p - l->data);
	return l;
}

struct ipc_line *
ipc_encode_reply(json_t *id, bool ok, json_t *body, const char *raw, size_t raw_len)
{
	char *idtext = json_dumps(id ? id : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
	char *bodytext = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct ipc_line *l = NULL;

	json_decref(body);
	if (idtext != NULL && bodytext != NULL && bodytext[0] == '{') {
		static const char resp_key[] = "\"response\":";
		const char *member = ok ? ",\"ok\":true,\"result\":" : ",\"ok\":false,\"error\":";
		size_t idlen = strlen(idtext), mlen = strlen(member), blen = strlen(bodytext);
		size_t cap = 6 + idlen + mlen + blen + sizeof(resp_key) + raw_len + 4;
		char *p;

		l = ipc_line_new(cap);
		p = l->data;
		memcpy(p, "{\"id\":", 6);
		p += 6;
		memcpy(p, idtext, idlen);
		p += idlen;
		memcpy(p, member, mlen);
		p += mlen;
		if (raw == NULL) {
			memcpy(p, bodytext, blen);
			p += blen;
		} else {
			/* The body without its '}', then "response":RAW} */
			memcpy(p, bodytext, blen - 1);
			p += blen - 1;
			if (blen > 2)
				*p++ = ',';
			memcpy(p, resp_key, sizeof(resp_key) - 1);
			p += sizeof(resp_key) - 1;
			p += json_copy_one_line(raw, raw_len, p);
			*p++ = '}';
		}
		*p++ = '}';
		*p++ = '\n';
		l->len = (size_t)(p - l->data);
	}
	free(idtext);
	free(bodytext);
	return l ? l : line_failed();
}

struct ipc_line *
ipc_encode_message(const char *conn, const struct phx_msg *m)
{
	bool binary = m->kind != PHX_TEXT;
	size_t payload_len = binary ? BASE64_ENCODED_SIZE(m->payload.len) : m->payload.len;
	size_t cap = 96 + json_escaped_len(conn, strlen(conn)) +
		     json_escaped_len(m->topic.s, m->topic.len) +
		     json_escaped_len(m->event.s, m->event.len) + payload_len + 2;
	struct ipc_line *l = ipc_line_new(cap);
	char *p = l->data;

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
		p += json_copy_one_line(m->payload.s, m->payload.len, p);
	}
	*p++ = '}';
	*p++ = '\n';
	l->len = (size_t)(p - l->data);
	return l;
}
