/* SPDX-License-Identifier: MIT */
#include "phx_codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json_scan.h"

static const char *const field_names[] = { "join_ref", "ref", "topic", "event" };

const char *
phx_err_name(enum phx_err code)
{
	switch (code) {
	case PHX_OK: return "ok";
	case PHX_ERR_NOT_JSON: return "not_json";
	case PHX_ERR_NOT_ARRAY: return "not_array";
	case PHX_ERR_ARITY: return "arity";
	case PHX_ERR_TYPE: return "type";
	case PHX_ERR_OVERSIZE: return "oversize";
	case PHX_ERR_TRUNCATED: return "truncated";
	case PHX_ERR_KIND: return "kind";
	case PHX_ERR_EMPTY: return "empty";
	case PHX_ERR_NOT_REPLY: return "not_reply";
	}
	return "unknown";
}

static enum phx_err set_err(struct phx_error *err, enum phx_err code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum phx_err
set_err(struct phx_error *err, enum phx_err code, const char *fmt, ...)
{
	if (err != NULL) {
		va_list ap;

		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
		va_end(ap);
	}
	return code;
}

bool
phx_field_eq(struct phx_field f, const char *s)
{
	size_t n;

	if (f.s == NULL || s == NULL)
		return f.s == NULL && s == NULL;
	n = strlen(s);
	return f.len == n && memcmp(f.s, s, n) == 0;
}

struct phx_field
phx_field_str(const char *s)
{
	struct phx_field f = { s, s != NULL ? strlen(s) : 0 };
	return f;
}

static void
msg_reset(struct phx_msg *m)
{
	m->kind = PHX_TEXT;
	m->join_ref = m->ref = m->topic = m->event = m->status = m->payload = m->response =
		(struct phx_field){ NULL, 0 };
	m->reply_read = false;
	m->reply_fault = NULL;
}

/* How a reply payload read. */
enum reply_read {
	REPLY_WHOLE,
	REPLY_FAULT,	/* JSON, but not a reply: why says what is wrong */
	REPLY_NOT_JSON,	/* why: c->error, or "bad object" */
};

/*
 * The members of a reply payload, which must be an object: the last
 * "status" (a plain string) and the last "response", each value checked
 * as a member of the payload. REPLY_WHOLE leaves the cursor after the
 * object; otherwise it stops where the fault is.
 */
static enum reply_read
read_reply(struct json_cursor *c, struct phx_field *status, struct phx_field *response,
	   const char **why)
{
	bool have_status = false, have_response = false;

	if (json_peek(c) != JSON_KIND_OBJECT) {
		*why = "reply payload is not an object";
		return REPLY_FAULT;
	}
	c->p++;
	if (!json_expect(c, '}')) {
		do {
			const char *key, *val;
			size_t key_len;
			bool esc;

			if (!json_scan_string(c, &key, &key_len, &esc) || !json_expect(c, ':')) {
				*why = "bad object";
				return REPLY_NOT_JSON;
			}
			json_skip_ws(c);
			val = c->p;
			if (key_len == 6 && !esc && memcmp(key, "status", 6) == 0) {
				const char *raw;
				size_t raw_len;
				bool sesc;

				if (json_peek(c) != JSON_KIND_STRING ||
				    !json_scan_string(c, &raw, &raw_len, &sesc) || sesc) {
					*why = "reply status is not a plain string";
					return REPLY_FAULT;
				}
				status->s = raw;
				status->len = raw_len;
				have_status = true;
				continue;
			}
			if (!json_skip_nested(c, 1)) {
				*why = c->error;
				return REPLY_NOT_JSON;
			}
			if (key_len == 8 && !esc && memcmp(key, "response", 8) == 0) {
				response->s = val;
				response->len = (size_t)(c->p - val);
				have_response = true;
			}
		} while (json_expect(c, ','));
		if (!json_expect(c, '}')) {
			*why = "bad object";
			return REPLY_NOT_JSON;
		}
	}
	if (!have_status) {
		*why = "reply without a status";
		return REPLY_FAULT;
	}
	if (!have_response) {
		*why = "reply without a response";
		return REPLY_FAULT;
	}
	return REPLY_WHOLE;
}

/*
 * Checks a phx_reply's payload and moves past it, reading it for
 * phx_reply_parse on the way: a well-formed reply is scanned once. One
 * that is not a reply is checked as any payload is.
 */
static bool
skip_reply_payload(struct json_cursor *c, struct phx_msg *m)
{
	struct json_cursor r = *c;
	struct phx_field status = { NULL, 0 }, response = { NULL, 0 };
	const char *why;

	m->reply_read = true;
	switch (read_reply(&r, &status, &response, &why)) {
	case REPLY_WHOLE:
		m->status = status;
		m->response = response;
		*c = r;
		return true;
	case REPLY_FAULT:
		break;
	case REPLY_NOT_JSON:
		return json_skip_value(c);	/* fails, with its own words */
	}
	m->reply_fault = why;
	return json_skip_value(c);
}

/* Reads header element `index` (0..3) of a text frame into m. */
static enum phx_err
decode_text_field(struct json_cursor *c, struct phx_msg *m, int index,
		  struct phx_error *err)
{
	struct phx_field *slots[] = { &m->join_ref, &m->ref, &m->topic, &m->event };
	struct phx_field *f = slots[index];
	bool nullable = index < 2;
	const char *raw;
	size_t raw_len;
	bool esc;

	switch (json_peek(c)) {
	case JSON_KIND_NULL:
		if (!nullable)
			return set_err(err, PHX_ERR_TYPE, "%s: expected a string, got null",
				       field_names[index]);
		if (!json_skip_value(c))
			return set_err(err, PHX_ERR_NOT_JSON, "%s: %s",
				       field_names[index], c->error);
		f->s = NULL;
		f->len = 0;
		return PHX_OK;
	case JSON_KIND_STRING:
		break;
	default:
		if (!json_skip_value(c))
			return set_err(err, PHX_ERR_NOT_JSON, "%s: %s",
				       field_names[index], c->error);
		return set_err(err, PHX_ERR_TYPE, "%s: expected a string%s",
			       field_names[index], nullable ? " or null" : "");
	}
	if (!json_scan_string(c, &raw, &raw_len, &esc))
		return set_err(err, PHX_ERR_NOT_JSON, "%s: %s", field_names[index],
			       c->error);
	if (!esc) {
		if (raw_len > PHX_MAX_FIELD)
			return set_err(err, PHX_ERR_OVERSIZE, "%s: %zu bytes, limit %d",
				       field_names[index], raw_len, PHX_MAX_FIELD);
		f->s = raw;
		f->len = raw_len;
		return PHX_OK;
	}
	/* An escape is at most six bytes for one byte of text, so a longer
	 * raw string cannot fit the limit once decoded. */
	if (raw_len > PHX_MAX_FIELD * 6) {
		return set_err(err, PHX_ERR_OVERSIZE, "%s: over %d bytes",
			       field_names[index], PHX_MAX_FIELD);
	}
	char tmp[PHX_MAX_FIELD * 6];
	size_t n = json_unescape(raw, raw_len, tmp);
	if (n > PHX_MAX_FIELD)
		return set_err(err, PHX_ERR_OVERSIZE, "%s: %zu bytes, limit %d",
			       field_names[index], n, PHX_MAX_FIELD);
	char *dst = m->store + index * PHX_MAX_FIELD;
	memcpy(dst, tmp, n);
	f->s = dst;
	f->len = n;
	return PHX_OK;
}

enum phx_err
phx_decode_text(const char *frame, size_t len, unsigned flags, struct phx_msg *out,
		struct phx_error *err)
{
	struct json_cursor c;
	const char *payload_start;
	enum phx_err rc;
	int count;

	msg_reset(out);
	if (len == 0)
		return set_err(err, PHX_ERR_EMPTY, "empty frame");
	json_cursor_init(&c, frame, len);
	if (json_peek(&c) != JSON_KIND_ARRAY) {
		const char *why;
		if (!json_validate(frame, len, &why))
			return set_err(err, PHX_ERR_NOT_JSON, "not JSON: %s", why);
		return set_err(err, PHX_ERR_NOT_ARRAY, "expected a JSON array");
	}
	c.p++;
	for (count = 0; count < 4; count++) {
		if (count > 0 && !json_expect(&c, ','))
			goto short_or_bad;
		if (json_peek(&c) == JSON_KIND_NONE)
			goto short_or_bad;
		rc = decode_text_field(&c, out, count, err);
		if (rc != PHX_OK)
			return rc;
	}
	if (!json_expect(&c, ','))
		goto short_or_bad;
	json_skip_ws(&c);
	payload_start = c.p;
	if (!(phx_field_eq(out->event, "phx_reply") ? skip_reply_payload(&c, out)
						     : json_skip_value(&c)))
		return set_err(err, PHX_ERR_NOT_JSON, "payload: %s", c.error);
	out->payload.s = payload_start;
	out->payload.len = (size_t)(c.p - payload_start);
	count = 5;
	while (json_expect(&c, ',')) {
		if (!json_skip_value(&c))
			return set_err(err, PHX_ERR_NOT_JSON, "element %d: %s", count + 1,
				       c.error);
		count++;
	}
	if (!json_expect(&c, ']'))
		return set_err(err, PHX_ERR_NOT_JSON, "expected ',' or ']'");
	json_skip_ws(&c);
	if (c.p != c.end)
		return set_err(err, PHX_ERR_NOT_JSON, "trailing data after the array");
	if (count != 5 && !(flags & PHX_DECODE_ALLOW_EXTRA))
		return set_err(err, PHX_ERR_ARITY, "expected 5 elements, got %d", count);
	return PHX_OK;

short_or_bad:
	/* Tell a short array apart from broken JSON. */
	{
		const char *why;
		if (!json_validate(frame, len, &why))
			return set_err(err, PHX_ERR_NOT_JSON, "not JSON: %s", why);
		return set_err(err, PHX_ERR_ARITY, "expected 5 elements, got %d",
			       json_expect(&c, ']') ? count : count + 1);
	}
}

/* Reads `n` length-prefixed strings whose sizes are in hdr[0..n-1]. */
static enum phx_err
take_strings(const unsigned char *frame, size_t len, size_t hdr_len,
	     struct phx_field *const *dst, const char *const *names, int n,
	     size_t *consumed, struct phx_error *err)
{
	size_t off = hdr_len;

	if (len < hdr_len)
		return set_err(err, PHX_ERR_TRUNCATED, "header needs %zu bytes, frame has %zu",
			       hdr_len, len);
	for (int i = 0; i < n; i++) {
		size_t flen = frame[1 + i];
		if (len - off < flen)
			return set_err(err, PHX_ERR_TRUNCATED,
				       "%s needs %zu bytes, %zu left", names[i], flen,
				       len - off);
		dst[i]->s = (const char *)frame + off;
		dst[i]->len = flen;
		off += flen;
	}
	*consumed = off;
	return PHX_OK;
}

enum phx_err
phx_decode_binary(const void *data, size_t len, enum phx_origin origin,
		  struct phx_msg *out, struct phx_error *err)
{
	const unsigned char *frame = data;
	size_t used = 0;
	enum phx_err rc;

	msg_reset(out);
	if (len == 0)
		return set_err(err, PHX_ERR_EMPTY, "empty frame");
	switch (frame[0]) {
	case 0:
		out->kind = PHX_BIN_PUSH;
		if (origin == PHX_FROM_CLIENT) {
			struct phx_field *d[] = { &out->join_ref, &out->ref, &out->topic,
						  &out->event };
			const char *names[] = { "join_ref", "ref", "topic", "event" };
			rc = take_strings(frame, len, 5, d, names, 4, &used, err);
		} else {
			struct phx_field *d[] = { &out->join_ref, &out->topic, &out->event };
			const char *names[] = { "join_ref", "topic", "event" };
			rc = take_strings(frame, len, 4, d, names, 3, &used, err);
		}
		break;
	case 1:
	case 2:
		if (origin == PHX_FROM_CLIENT)
			return set_err(err, PHX_ERR_KIND,
				       "binary kind %u is not sent by clients", frame[0]);
		if (frame[0] == 1) {
			struct phx_field *d[] = { &out->join_ref, &out->ref, &out->topic,
						  &out->status };
			const char *names[] = { "join_ref", "ref", "topic", "status" };
			out->kind = PHX_BIN_REPLY;
			rc = take_strings(frame, len, 5, d, names, 4, &used, err);
			out->event = phx_field_str("phx_reply");
		} else {
			struct phx_field *d[] = { &out->topic, &out->event };
			const char *names[] = { "topic", "event" };
			out->kind = PHX_BIN_BROADCAST;
			rc = take_strings(frame, len, 3, d, names, 2, &used, err);
		}
		break;
	default:
		return set_err(err, PHX_ERR_KIND, "unknown binary kind %u", frame[0]);
	}
	if (rc != PHX_OK)
		return rc;
	/* The binary format has no null: an empty ref is how Phoenix writes nil. */
	if (out->join_ref.s != NULL && out->join_ref.len == 0)
		out->join_ref.s = NULL;
	if (out->ref.s != NULL && out->ref.len == 0)
		out->ref.s = NULL;
	out->payload.s = (const char *)frame + used;
	out->payload.len = len - used;
	return PHX_OK;
}

static size_t
text_field_len(struct phx_field f)
{
	return f.s == NULL ? 4 : json_escaped_len(f.s, f.len);
}

static size_t
text_field_max(struct phx_field f)
{
	return f.s == NULL ? 4 : json_escaped_max(f.len);
}

static size_t
text_field_put(struct phx_field f, char *out)
{
	if (f.s == NULL) {
		memcpy(out, "null", 4);
		return 4;
	}
	return json_escape(f.s, f.len, out);
}

/* The header fields a binary frame of this kind carries, in wire order. */
static int
binary_fields(const struct phx_msg *m, enum phx_origin origin, struct phx_field *f,
	      unsigned char *kind_byte)
{
	switch (m->kind) {
	case PHX_BIN_PUSH:
		*kind_byte = 0;
		if (origin == PHX_FROM_CLIENT) {
			f[0] = m->join_ref; f[1] = m->ref; f[2] = m->topic; f[3] = m->event;
			return 4;
		}
		f[0] = m->join_ref; f[1] = m->topic; f[2] = m->event;
		return 3;
	case PHX_BIN_REPLY:
		*kind_byte = 1;
		f[0] = m->join_ref; f[1] = m->ref; f[2] = m->topic; f[3] = m->status;
		return 4;
	case PHX_BIN_BROADCAST:
		*kind_byte = 2;
		f[0] = m->topic; f[1] = m->event;
		return 2;
	case PHX_TEXT:
	default:
		return -1;
	}
}

enum phx_err
phx_check_encodable(const struct phx_msg *m, enum phx_origin origin,
		    struct phx_error *err)
{
	const struct phx_field text_f[] = { m->join_ref, m->ref, m->topic, m->event };

	if (m->kind == PHX_TEXT) {
		for (int i = 0; i < 4; i++) {
			if (text_f[i].s == NULL && i >= 2)
				return set_err(err, PHX_ERR_TYPE, "%s must not be null",
					       field_names[i]);
			if (text_f[i].len > PHX_MAX_FIELD)
				return set_err(err, PHX_ERR_OVERSIZE, "%s: %zu bytes, limit %d",
					       field_names[i], text_f[i].len, PHX_MAX_FIELD);
		}
		if (m->payload.s == NULL || m->payload.len == 0)
			return set_err(err, PHX_ERR_TYPE, "payload must be JSON text");
		return PHX_OK;
	}
	if ((m->kind == PHX_BIN_REPLY || m->kind == PHX_BIN_BROADCAST) &&
	    origin == PHX_FROM_CLIENT)
		return set_err(err, PHX_ERR_KIND, "clients only send binary pushes");

	struct phx_field f[4];
	unsigned char kind;
	int n = binary_fields(m, origin, f, &kind);
	if (n < 0)
		return set_err(err, PHX_ERR_KIND, "unknown frame kind");
	for (int i = 0; i < n; i++)
		if (f[i].len > PHX_MAX_FIELD)
			return set_err(err, PHX_ERR_OVERSIZE,
				       "binary header string of %zu bytes, limit %d", f[i].len,
				       PHX_MAX_FIELD);
	if (m->topic.s == NULL || m->event.s == NULL)
		return set_err(err, PHX_ERR_TYPE, "topic and event must not be null");
	return PHX_OK;
}

size_t
phx_encoded_len(const struct phx_msg *m, enum phx_origin origin)
{
	if (m->kind == PHX_TEXT)
		return 6 /* [ , , , , ] */ + text_field_len(m->join_ref) +
		       text_field_len(m->ref) + text_field_len(m->topic) +
		       text_field_len(m->event) + m->payload.len;

	struct phx_field f[4];
	unsigned char kind;
	int n = binary_fields(m, origin, f, &kind);
	size_t len = 1 + (size_t)n + m->payload.len;

	for (int i = 0; i < n; i++)
		len += f[i].len;
	return len;
}

size_t
phx_encoded_max(const struct phx_msg *m, enum phx_origin origin)
{
	if (m->kind == PHX_TEXT)
		return 6 + text_field_max(m->join_ref) + text_field_max(m->ref) +
		       text_field_max(m->topic) + text_field_max(m->event) + m->payload.len;
	return phx_encoded_len(m, origin);	/* binary fields are copied as they are */
}

size_t
phx_encode(const struct phx_msg *m, enum phx_origin origin, char *out)
{
	size_t n = 0;

	if (m->kind == PHX_TEXT) {
		const struct phx_field f[] = { m->join_ref, m->ref, m->topic, m->event };

		out[n++] = '[';
		for (int i = 0; i < 4; i++) {
			n += text_field_put(f[i], out + n);
			out[n++] = ',';
		}
		memcpy(out + n, m->payload.s, m->payload.len);
		n += m->payload.len;
		out[n++] = ']';
		return n;
	}

	struct phx_field f[4];
	unsigned char kind;
	int count = binary_fields(m, origin, f, &kind);

	out[n++] = (char)kind;
	for (int i = 0; i < count; i++)
		out[n++] = (char)(unsigned char)f[i].len;
	for (int i = 0; i < count; i++) {
		if (f[i].len > 0)
			memcpy(out + n, f[i].s, f[i].len);
		n += f[i].len;
	}
	if (m->payload.len > 0)
		memcpy(out + n, m->payload.s, m->payload.len);
	return n + m->payload.len;
}

enum phx_err
phx_reply_parse(const struct phx_msg *m, struct phx_reply *out, struct phx_error *err)
{
	struct json_cursor c;
	struct phx_field status = { NULL, 0 }, response = { NULL, 0 };
	const char *why;

	out->status = out->response = (struct phx_field){ NULL, 0 };
	out->binary = false;
	if (!phx_field_eq(m->event, "phx_reply"))
		return set_err(err, PHX_ERR_NOT_REPLY, "event is not phx_reply");
	if (m->kind == PHX_BIN_REPLY) {
		out->status = m->status;
		out->response = m->payload;
		out->binary = true;
		return PHX_OK;
	}
	if (m->kind != PHX_TEXT)
		return set_err(err, PHX_ERR_NOT_REPLY, "binary push named phx_reply");
	if (m->reply_read) {
		if (m->reply_fault != NULL)
			return set_err(err, PHX_ERR_NOT_REPLY, "%s", m->reply_fault);
		out->status = m->status;
		out->response = m->response;
		return PHX_OK;
	}
	json_cursor_init(&c, m->payload.s, m->payload.len);
	switch (read_reply(&c, &status, &response, &why)) {
	case REPLY_WHOLE:
		out->status = status;
		out->response = response;
		return PHX_OK;
	case REPLY_FAULT:
		return set_err(err, PHX_ERR_NOT_REPLY, "%s", why);
	case REPLY_NOT_JSON:
		break;
	}
	return set_err(err, PHX_ERR_NOT_JSON, "reply payload: %s", why);
}

size_t
phx_ref_next(struct phx_refgen *g, char *buf)
{
	g->last++;
	if (g->last == 0)	/* wrapped: refs start again at 1 */
		g->last = 1;
	size_t n = json_put_uint(g->last, buf);

	buf[n] = '\0';
	return n;
}
