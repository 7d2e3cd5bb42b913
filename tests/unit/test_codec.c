/* SPDX-License-Identifier: MIT */
/* Unit tests of protocol/: the JSON scanner and the Phoenix V2 codec.
 * Arbitrary bytes are the job of tests/fuzz/fuzz_codec.c (whose corpus
 * make check replays): it checks that what decodes re-encodes the same. */
#include <check.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fixtures.h"
#include "protocol/json_scan.h"
#include "protocol/phx_codec.h"
#include "protocol/ws_codec.h"

static struct fx_file *fx_files;
static size_t fx_count;

static enum phx_err
decode(const char *text, unsigned flags, struct phx_msg *m)
{
	struct phx_error err;
	return phx_decode_text(text, strlen(text), flags, m, &err);
}

static void
assert_field(struct phx_field f, const char *want)
{
	if (want == NULL) {
		ck_assert_ptr_null(f.s);
		return;
	}
	ck_assert_ptr_nonnull(f.s);
	ck_assert_uint_eq(f.len, strlen(want));
	ck_assert_mem_eq(f.s, want, f.len);
}

static char *
encode_alloc(const struct phx_msg *m, enum phx_origin origin, size_t *len)
{
	struct phx_error err;

	ck_assert_int_eq(phx_check_encodable(m, origin, &err), PHX_OK);
	*len = phx_encoded_len(m, origin);
	ck_assert_uint_le(*len, phx_encoded_max(m, origin));
	char *out = malloc(*len + 1);
	ck_assert_uint_eq(phx_encode(m, origin, out), *len);
	out[*len] = '\0';
	return out;
}

/* --- text decoding ------------------------------------------------------ */

START_TEST(decode_join_reply)
{
	struct phx_msg m;
	const char *f = "[\"1\",\"1\",\"rooms:lobby\",\"phx_reply\","
			"{\"response\":{\"joined\":\"rooms:lobby\"},\"status\":\"ok\"}]";

	ck_assert_int_eq(decode(f, 0, &m), PHX_OK);
	ck_assert_int_eq(m.kind, PHX_TEXT);
	assert_field(m.join_ref, "1");
	assert_field(m.ref, "1");
	assert_field(m.topic, "rooms:lobby");
	assert_field(m.event, "phx_reply");
	assert_field(m.payload, "{\"response\":{\"joined\":\"rooms:lobby\"},\"status\":\"ok\"}");

	struct phx_reply r;
	ck_assert_int_eq(phx_reply_parse(&m, &r, NULL), PHX_OK);
	assert_field(r.status, "ok");
	assert_field(r.response, "{\"joined\":\"rooms:lobby\"}");
	ck_assert(!r.binary);
}
END_TEST

START_TEST(decode_nulls_and_whitespace)
{
	struct phx_msg m;

	ck_assert_int_eq(decode(" [ null , null ,\"t\" , \"e\" , [1, 2] ] \n", 0, &m), PHX_OK);
	assert_field(m.join_ref, NULL);
	assert_field(m.ref, NULL);
	assert_field(m.payload, "[1, 2]");
}
END_TEST

START_TEST(decode_escaped_fields)
{
	struct phx_msg m;

	ck_assert_int_eq(decode("[\"a\\\"b\",\"\\u00e9\",\"t\\/x\",\"\\ud83d\\ude00\",\"s\"]", 0, &m),
			 PHX_OK);
	assert_field(m.join_ref, "a\"b");
	assert_field(m.ref, "\xc3\xa9");
	assert_field(m.topic, "t/x");
	assert_field(m.event, "\xf0\x9f\x98\x80");
	assert_field(m.payload, "\"s\"");
}
END_TEST

START_TEST(decode_extra_elements)
{
	struct phx_msg m;
	const char *f = "[\"1\",\"2\",\"t\",\"e\",{},\"extra\"]";

	ck_assert_int_eq(decode(f, PHX_DECODE_STRICT, &m), PHX_ERR_ARITY);
	ck_assert_int_eq(decode(f, PHX_DECODE_ALLOW_EXTRA, &m), PHX_OK);
	assert_field(m.payload, "{}");
}
END_TEST

struct bad_case {
	const char *frame;
	enum phx_err want;
};

static const struct bad_case bad_text[] = {
	{ "", PHX_ERR_EMPTY },
	{ "hello", PHX_ERR_NOT_JSON },
	{ "{\"topic\":\"t\"}", PHX_ERR_NOT_ARRAY },
	{ "\"str\"", PHX_ERR_NOT_ARRAY },
	{ "[]", PHX_ERR_ARITY },
	{ "[\"1\"]", PHX_ERR_ARITY },
	{ "[\"1\",\"1\",\"rooms:lobby\"]", PHX_ERR_ARITY },
	{ "[\"1\",\"1\",\"t\",\"e\"]", PHX_ERR_ARITY },
	{ "[1,\"1\",\"t\",\"e\",{}]", PHX_ERR_TYPE },
	{ "[\"1\",2,\"t\",\"e\",{}]", PHX_ERR_TYPE },
	{ "[\"1\",\"1\",null,\"e\",{}]", PHX_ERR_TYPE },
	{ "[\"1\",\"1\",\"t\",null,{}]", PHX_ERR_TYPE },
	{ "[\"1\",\"1\",[],\"e\",{}]", PHX_ERR_TYPE },
	{ "[\"1\",\"1\",\"t\",\"e\",{]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"t\",\"e\",{}] x", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"t\",\"e\",]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"t\",\"e\",{}", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"t\",\"e\",01]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"t\",\"e\",1.]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"t\",\"e\",-]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"t\",\"e\",1e]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"t\",\"e\",tru]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"t\",\"e\",{\"a\"}]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"t\",\"e\",{1:2}]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"t\x01\",\"e\",{}]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"\\x\",\"e\",{}]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"\\ud800\",\"e\",{}]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"\\udc00\",\"e\",{}]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"\\u12\",\"e\",{}]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"\xff\",\"e\",{}]", PHX_ERR_NOT_JSON },
	{ "[\"1\",\"1\",\"\xc0\xaf\",\"e\",{}]", PHX_ERR_NOT_JSON },	/* overlong */
	{ "[\"1\",\"1\",\"\xed\xa0\x80\",\"e\",{}]", PHX_ERR_NOT_JSON },	/* surrogate */
	{ "[\"1\",\"1\",\"\xe2\x98\",\"e\",{}]", PHX_ERR_NOT_JSON },	/* cut short */
	{ "[\"1\",\"1\",\"t\",\"e\",\"\xf5\x80\x80\x80\"]", PHX_ERR_NOT_JSON },
	{ "[\"1\" \"1\",\"t\",\"e\",{}]", PHX_ERR_NOT_JSON },
};

START_TEST(decode_rejects_bad_text)
{
	const struct bad_case *bc = &bad_text[_i];
	struct phx_msg m;
	struct phx_error err = { 0 };
	enum phx_err rc = phx_decode_text(bc->frame, strlen(bc->frame), 0, &m, &err);

	ck_assert_msg(rc == bc->want, "frame %s: got %s (%s), want %s", bc->frame,
		      phx_err_name(rc), err.detail, phx_err_name(bc->want));
	ck_assert_int_eq(err.code, bc->want);
	ck_assert(err.detail[0] != '\0');
}
END_TEST

START_TEST(decode_field_size_limits)
{
	char frame[2400], topic[300];
	struct phx_msg m;

	memset(topic, 'a', 255);
	topic[255] = '\0';
	snprintf(frame, sizeof(frame), "[null,null,\"%s\",\"e\",{}]", topic);
	ck_assert_int_eq(decode(frame, 0, &m), PHX_OK);
	ck_assert_uint_eq(m.topic.len, 255);

	memset(topic, 'a', 256);
	topic[256] = '\0';
	snprintf(frame, sizeof(frame), "[null,null,\"%s\",\"e\",{}]", topic);
	ck_assert_int_eq(decode(frame, 0, &m), PHX_ERR_OVERSIZE);

	/* 255 escaped characters decode to 255 bytes: allowed, kept in store[] */
	char *p = frame + sprintf(frame, "[\"");
	for (int i = 0; i < 255; i++)
		p += sprintf(p, "\\u0041");
	sprintf(p, "\",null,\"t\",\"e\",{}]");
	ck_assert_int_eq(decode(frame, 0, &m), PHX_OK);
	ck_assert_uint_eq(m.join_ref.len, 255);
	ck_assert_int_eq(m.join_ref.s[254], 'A');

	/* 256 of them are one too many */
	p = frame + sprintf(frame, "[\"");
	for (int i = 0; i < 256; i++)
		p += sprintf(p, "\\u0041");
	sprintf(p, "\",null,\"t\",\"e\",{}]");
	ck_assert_int_eq(decode(frame, 0, &m), PHX_ERR_OVERSIZE);
}
END_TEST

START_TEST(decode_deep_nesting_is_refused)
{
	size_t depth = 100000;
	char *frame = malloc(depth * 2 + 64);
	size_t n = (size_t)sprintf(frame, "[\"1\",\"1\",\"t\",\"e\",");
	struct phx_msg m;

	memset(frame + n, '[', depth);
	memset(frame + n + depth, ']', depth);
	strcpy(frame + n + 2 * depth, "]");
	ck_assert_int_eq(phx_decode_text(frame, strlen(frame), 0, &m, NULL), PHX_ERR_NOT_JSON);

	/* within the limit it is fine */
	n = (size_t)sprintf(frame, "[\"1\",\"1\",\"t\",\"e\",");
	memset(frame + n, '[', 100);
	memset(frame + n + 100, ']', 100);
	strcpy(frame + n + 200, "]");
	ck_assert_int_eq(phx_decode_text(frame, strlen(frame), 0, &m, NULL), PHX_OK);
	free(frame);
}
END_TEST

START_TEST(decode_every_prefix_fails_cleanly)
{
	const char *f = "[\"1\",\"2\",\"rooms:lobby\",\"echo\",{\"a\":[1,2.5e-3,{\"b\":null}],"
			"\"s\":\"h\\u00e9llo\",\"t\":true,\"f\":false}]";
	size_t len = strlen(f);
	struct phx_msg m;

	for (size_t i = 0; i < len; i++) {
		/* a heap copy of exactly i bytes, so ASan sees any over-read */
		char *prefix = malloc(i ? i : 1);
		memcpy(prefix, f, i);
		ck_assert_int_ne(phx_decode_text(prefix, i, 0, &m, NULL), PHX_OK);
		free(prefix);
	}
	ck_assert_int_eq(phx_decode_text(f, len, 0, &m, NULL), PHX_OK);
}
END_TEST


/* --- binary frames ------------------------------------------------------ */

static const unsigned char bin_client_push[] = {
	0x00, 0x01, 0x01, 0x0b, 0x03, '1', '2', 'r', 'o', 'o', 'm', 's', ':', 'l', 'o', 'b',
	'b', 'y', 'b', 'i', 'n', 0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff
};

START_TEST(binary_client_push_round_trip)
{
	struct phx_msg m;
	size_t len;

	ck_assert_int_eq(phx_decode_binary(bin_client_push, sizeof(bin_client_push),
					   PHX_FROM_CLIENT, &m, NULL), PHX_OK);
	ck_assert_int_eq(m.kind, PHX_BIN_PUSH);
	assert_field(m.join_ref, "1");
	assert_field(m.ref, "2");
	assert_field(m.topic, "rooms:lobby");
	assert_field(m.event, "bin");
	ck_assert_uint_eq(m.payload.len, 7);
	ck_assert_mem_eq(m.payload.s, "\x00\x01\x02\x7f\x80\xfe\xff", 7);

	char *out = encode_alloc(&m, PHX_FROM_CLIENT, &len);
	ck_assert_uint_eq(len, sizeof(bin_client_push));
	ck_assert_mem_eq(out, bin_client_push, len);
	free(out);
}
END_TEST

START_TEST(binary_server_kinds)
{
	struct phx_msg m, back;
	size_t len;
	struct phx_reply r;

	/* push, reply and broadcast, encoded then decoded */
	memset(&m, 0, sizeof(m));
	m.kind = PHX_BIN_BROADCAST;
	m.topic = phx_field_str("rooms:x");
	m.event = phx_field_str("ev");
	m.payload = (struct phx_field){ "\x00\x01", 2 };
	char *out = encode_alloc(&m, PHX_FROM_SERVER, &len);
	ck_assert_uint_eq(len, 1 + 2 + 7 + 2 + 2);
	ck_assert_int_eq(out[0], 2);
	ck_assert_int_eq(phx_decode_binary(out, len, PHX_FROM_SERVER, &back, NULL), PHX_OK);
	ck_assert_int_eq(back.kind, PHX_BIN_BROADCAST);
	assert_field(back.join_ref, NULL);
	assert_field(back.ref, NULL);
	assert_field(back.topic, "rooms:x");
	assert_field(back.event, "ev");
	ck_assert_uint_eq(back.payload.len, 2);
	free(out);

	m.kind = PHX_BIN_REPLY;
	m.join_ref = phx_field_str("4");
	m.ref = phx_field_str("17");
	m.status = phx_field_str("error");
	out = encode_alloc(&m, PHX_FROM_SERVER, &len);
	ck_assert_int_eq(phx_decode_binary(out, len, PHX_FROM_SERVER, &back, NULL), PHX_OK);
	ck_assert_int_eq(back.kind, PHX_BIN_REPLY);
	assert_field(back.event, "phx_reply");
	ck_assert_int_eq(phx_reply_parse(&back, &r, NULL), PHX_OK);
	ck_assert(r.binary);
	assert_field(r.status, "error");
	ck_assert_uint_eq(r.response.len, 2);
	free(out);

	/* a server push with no join_ref: length 0, decoded back as null */
	m.kind = PHX_BIN_PUSH;
	m.join_ref = (struct phx_field){ NULL, 0 };
	out = encode_alloc(&m, PHX_FROM_SERVER, &len);
	ck_assert_uint_eq(len, 1 + 3 + 0 + 7 + 2 + 2);
	ck_assert_int_eq(phx_decode_binary(out, len, PHX_FROM_SERVER, &back, NULL), PHX_OK);
	assert_field(back.join_ref, NULL);
	assert_field(back.ref, NULL);
	free(out);
}
END_TEST

START_TEST(binary_rejects_bad_frames)
{
	struct phx_msg m;
	struct phx_error err;

	ck_assert_int_eq(phx_decode_binary("", 0, PHX_FROM_SERVER, &m, &err), PHX_ERR_EMPTY);
	ck_assert_int_eq(phx_decode_binary("\x09\x01\x02", 3, PHX_FROM_CLIENT, &m, &err),
			 PHX_ERR_KIND);
	ck_assert_int_eq(phx_decode_binary("\x03\x00\x00", 3, PHX_FROM_SERVER, &m, &err),
			 PHX_ERR_KIND);
	/* replies and broadcasts never come from a client */
	ck_assert_int_eq(phx_decode_binary("\x01\x00\x00\x01\x02tok", 8, PHX_FROM_CLIENT, &m,
					   &err), PHX_ERR_KIND);
	ck_assert_int_eq(phx_decode_binary("\x00\x01", 2, PHX_FROM_CLIENT, &m, &err),
			 PHX_ERR_TRUNCATED);
	ck_assert_int_eq(phx_decode_binary("\x02\x05\x01" "abc", 6, PHX_FROM_SERVER, &m, &err),
			 PHX_ERR_TRUNCATED);
	ck_assert(strstr(err.detail, "topic") != NULL);

	/* every prefix shorter than the header and strings is truncated */
	for (size_t i = 1; i < 21; i++) {
		unsigned char *prefix = malloc(i);
		memcpy(prefix, bin_client_push, i);
		ck_assert_int_eq(phx_decode_binary(prefix, i, PHX_FROM_CLIENT, &m, NULL),
				 PHX_ERR_TRUNCATED);
		free(prefix);
	}
}
END_TEST

/* --- encoding ----------------------------------------------------------- */

START_TEST(encode_text_escapes_like_json_stringify)
{
	struct phx_msg m = { 0 };
	size_t len;

	m.kind = PHX_TEXT;
	m.ref = phx_field_str("7");
	m.topic = (struct phx_field){ "a\"b\\c\n\x01\x1f/\xc3\xa9", 11 };
	m.event = phx_field_str("e");
	m.payload = phx_field_str("{}");
	char *out = encode_alloc(&m, PHX_FROM_CLIENT, &len);
	ck_assert_str_eq(out, "[null,\"7\",\"a\\\"b\\\\c\\n\\u0001\\u001f/\xc3\xa9\",\"e\",{}]");
	free(out);
}
END_TEST

/* phxd sizes its frame buffer by phx_encoded_max() alone: the worst
 * escapes (a control byte is six bytes, a byte that is not UTF-8 three)
 * in every field must still fit. */
START_TEST(encode_fits_the_most_it_announces)
{
	char ctl[PHX_MAX_FIELD], bad[PHX_MAX_FIELD];
	struct phx_msg m = { 0 };
	size_t len;

	memset(ctl, '\x01', sizeof(ctl));
	memset(bad, '\xff', sizeof(bad));
	m.kind = PHX_TEXT;
	m.join_ref = (struct phx_field){ ctl, sizeof(ctl) };
	m.ref = (struct phx_field){ bad, sizeof(bad) };
	m.topic = (struct phx_field){ ctl, sizeof(ctl) };
	m.event = (struct phx_field){ bad, 1 };
	m.payload = phx_field_str("{}");
	char *out = encode_alloc(&m, PHX_FROM_CLIENT, &len);
	ck_assert_uint_eq(len, 6 + 2 * json_escaped_max(sizeof(ctl)) + (2 + 3 * sizeof(bad)) +
				       (2 + 3) + 2);
	free(out);
	m.ref = (struct phx_field){ NULL, 0 };
	out = encode_alloc(&m, PHX_FROM_CLIENT, &len);
	free(out);
}
END_TEST

START_TEST(encode_refuses_what_the_wire_cannot_carry)
{
	struct phx_msg m = { 0 };
	struct phx_error err;
	char big[300];

	memset(big, 'x', sizeof(big));
	m.kind = PHX_TEXT;
	m.topic = phx_field_str("t");
	m.event = phx_field_str("e");
	ck_assert_int_eq(phx_check_encodable(&m, PHX_FROM_CLIENT, &err), PHX_ERR_TYPE);
	m.payload = phx_field_str("{}");
	ck_assert_int_eq(phx_check_encodable(&m, PHX_FROM_CLIENT, &err), PHX_OK);
	m.topic = (struct phx_field){ big, 256 };
	ck_assert_int_eq(phx_check_encodable(&m, PHX_FROM_CLIENT, &err), PHX_ERR_OVERSIZE);
	m.topic = (struct phx_field){ NULL, 0 };
	ck_assert_int_eq(phx_check_encodable(&m, PHX_FROM_CLIENT, &err), PHX_ERR_TYPE);

	m.kind = PHX_BIN_PUSH;
	m.topic = phx_field_str("t");
	m.event = (struct phx_field){ big, 256 };
	ck_assert_int_eq(phx_check_encodable(&m, PHX_FROM_CLIENT, &err), PHX_ERR_OVERSIZE);
	m.event = phx_field_str("e");
	m.kind = PHX_BIN_REPLY;
	ck_assert_int_eq(phx_check_encodable(&m, PHX_FROM_CLIENT, &err), PHX_ERR_KIND);
}
END_TEST

/* --- replies and refs ----------------------------------------------------- */

START_TEST(reply_parse_rejects_malformed)
{
	static const char *const bad[] = {
		"[\"1\",\"1\",\"t\",\"phx_reply\",{\"response\":{}}]",
		"[\"1\",\"1\",\"t\",\"phx_reply\",{\"status\":\"ok\"}]",
		"[\"1\",\"1\",\"t\",\"phx_reply\",{\"status\":1,\"response\":{}}]",
		"[\"1\",\"1\",\"t\",\"phx_reply\",[\"ok\"]]",
		"[\"1\",\"1\",\"t\",\"phx_reply\",\"ok\"]",
		"[\"1\",\"1\",\"t\",\"phx_reply\",{}]",
		"[\"1\",\"1\",\"t\",\"other\",{\"status\":\"ok\",\"response\":{}}]",
	};
	struct phx_msg m;
	struct phx_reply r;
	struct phx_error err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(decode(bad[i], 0, &m), PHX_OK);
		ck_assert_msg(phx_reply_parse(&m, &r, &err) != PHX_OK, "accepted %s", bad[i]);
	}
	/* keys in any order, other keys ignored */
	ck_assert_int_eq(decode("[null,\"3\",\"t\",\"phx_reply\",{\"x\":[1],\"status\":\"error\","
				"\"response\":\"str\"}]", 0, &m), PHX_OK);
	ck_assert_int_eq(phx_reply_parse(&m, &r, &err), PHX_OK);
	assert_field(r.status, "error");
	assert_field(r.response, "\"str\"");
}
END_TEST

/* The decoder reads a reply's payload while it checks it; what it found is
 * what phx_reply_parse finds on a message made by hand with that payload. */
START_TEST(a_decoded_reply_reads_as_one_made_by_hand)
{
	static const char *const payloads[] = {
		"{\"status\":\"ok\",\"response\":{}}",
		" { \"response\" : [1, {\"a\":\"\\u00e9\"}] , \"status\" : \"error\" } ",
		"{\"status\":\"ok\",\"status\":\"error\",\"response\":1,\"response\":null}",
		"{\"status\":\"ok\",\"stat\\u0075s\":7,\"response\":{}}",
		"{\"st\\u0061tus\":\"ok\",\"response\":{}}",
		"{\"status\":\"o\\u006b\",\"response\":{}}",
		"{\"status\":1,\"response\":{}}",
		"{\"status\":\"ok\",\"response\":{},\"status\":[]}",
		"{\"status\":\"ok\"}",
		"{\"response\":{}}",
		"{}",
		"[\"ok\"]",
		"\"ok\"",
		"null",
	};
	char frame[256];
	struct phx_msg m, by_hand;
	struct phx_reply r, want;
	struct phx_error err, want_err;

	for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
		snprintf(frame, sizeof(frame), "[null,\"1\",\"t\",\"phx_reply\",%s]", payloads[i]);
		ck_assert_msg(decode(frame, 0, &m) == PHX_OK, "%s", frame);
		by_hand = (struct phx_msg){ .kind = PHX_TEXT, .ref = m.ref, .topic = m.topic,
					    .event = m.event, .payload = m.payload };
		enum phx_err rc = phx_reply_parse(&m, &r, &err);
		ck_assert_int_eq(rc, phx_reply_parse(&by_hand, &want, &want_err));
		if (rc != PHX_OK) {
			ck_assert_str_eq(err.detail, want_err.detail);
			continue;
		}
		ck_assert_msg(r.status.s == want.status.s && r.status.len == want.status.len &&
			      r.response.s == want.response.s && r.response.len == want.response.len,
			      "%s", payloads[i]);
	}
}
END_TEST

/* A reply's response counts against the nesting limit from the payload,
 * as any payload's values do. */
START_TEST(a_reply_is_held_to_the_payload_nesting_limit)
{
	for (int deep = JSON_SCAN_MAX_DEPTH; deep <= JSON_SCAN_MAX_DEPTH + 1; deep++) {
		static const char head[] = "[null,\"1\",\"t\",\"phx_reply\","
					   "{\"status\":\"ok\",\"response\":";
		size_t n = strlen(head);
		char *frame = malloc(n + 2 * (size_t)deep + 3);
		struct phx_msg m;
		struct phx_reply r;

		memcpy(frame, head, n);
		memset(frame + n, '[', (size_t)deep);
		memset(frame + n + deep, ']', (size_t)deep);
		strcpy(frame + n + 2 * deep, "}]");
		enum phx_err rc = decode(frame, 0, &m);
		if (deep > JSON_SCAN_MAX_DEPTH) {
			ck_assert_int_eq(rc, PHX_ERR_NOT_JSON);
		} else {
			ck_assert_int_eq(rc, PHX_OK);
			ck_assert_int_eq(phx_reply_parse(&m, &r, NULL), PHX_OK);
			ck_assert_uint_eq(r.response.len, 2 * (size_t)deep);
		}
		free(frame);
	}
}
END_TEST

START_TEST(refs_count_up_and_wrap)
{
	struct phx_refgen g = { 0 };
	char buf[PHX_REF_BUFSZ];

	ck_assert_uint_eq(phx_ref_next(&g, buf), 1);
	ck_assert_str_eq(buf, "1");
	phx_ref_next(&g, buf);
	ck_assert_str_eq(buf, "2");
	g.last = UINT64_MAX - 1;
	ck_assert_uint_eq(phx_ref_next(&g, buf), 20);
	ck_assert_str_eq(buf, "18446744073709551615");
	phx_ref_next(&g, buf);
	ck_assert_str_eq(buf, "1");
}
END_TEST

START_TEST(json_put_uint_writes_every_width)
{
	char buf[24];
	uint64_t v = 1;

	ck_assert_uint_eq(json_put_uint(0, buf), 1);
	ck_assert_mem_eq(buf, "0", 1);
	for (int digits = 1; digits <= 19; digits++, v *= 10) {
		char want[24];
		int n = snprintf(want, sizeof(want), "%" PRIu64, v - 1);

		ck_assert_uint_eq(json_put_uint(v - 1, buf), (size_t)n);
		ck_assert_mem_eq(buf, want, (size_t)n);
		n = snprintf(want, sizeof(want), "%" PRIu64, v);
		ck_assert_uint_eq(json_put_uint(v, buf), (size_t)n);
		ck_assert_mem_eq(buf, want, (size_t)n);
	}
	ck_assert_uint_eq(json_put_uint(UINT64_MAX, buf), 20);
	ck_assert_mem_eq(buf, "18446744073709551615", 20);
}
END_TEST

START_TEST(json_unescape_round_trip)
{
	const char *raw = "a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u00e9\\u20ac\\ud83d\\ude00";
	char out[64], again[128];
	size_t n = json_unescape(raw, strlen(raw), out);

	ck_assert_uint_eq(n, 1 + 1 + 1 + 1 + 5 + 1 + 2 + 3 + 4);
	ck_assert_mem_eq(out, "a\"\\/\b\f\n\r\t\0\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", n);
	ck_assert(json_utf8_valid(out, n));
	size_t m = json_escape(out, n, again);
	ck_assert_uint_eq(m, json_escaped_len(out, n));
	again[m] = '\0';
	ck_assert_str_eq(again, "\"a\\\"\\\\/\\b\\f\\n\\r\\t\\u0000\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
}
END_TEST

/* The string scanner and the escaper take eight plain bytes a step and
 * stop at the first special byte of the word: every kind of byte that ends
 * the step, at every offset of a word. */
START_TEST(json_strings_special_byte_at_every_offset)
{
	static const char *specials[] = { "\"", "\\", "\n", "\x01", "\x1f", "\x7f", "\xc3\xa9",
					  "\xe2\x82\xac", "\xf0\x9f\x98\x80", " ", "~",
					  /* pairs whose first byte borrows from the second */
					  "\x1f ", "\"#", "\\]", "\x01\x01" };
	for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
		for (size_t at = 0; at < 40; at++) {	/* two 16-byte steps and a tail */
			char s[64], out[512], quoted[256];
			size_t sl = strlen(specials[k]);
			memset(s, 'a', sizeof(s));
			memcpy(s + at, specials[k], sl);
			size_t len = at + sl + (at % 11);	/* tails of 0 to 10 plain bytes */

			/* jansson is the reference escaper (it leaves '/' alone, as phxd does) */
			json_t *js = json_stringn(s, len);
			ck_assert_ptr_nonnull(js);
			char *ref = json_dumps(js, JSON_ENCODE_ANY);
			for (char *u = strstr(ref, "\\u"); u != NULL; u = strstr(u + 2, "\\u"))
				for (int i = 2; i < 6; i++)	/* phxd writes \u001f, as JSON.stringify */
					u[i] = (char)tolower((unsigned char)u[i]);
			size_t n = json_escape(s, len, out);
			ck_assert_uint_eq(n, json_escaped_len(s, len));
			ck_assert_uint_eq(n, strlen(ref));
			ck_assert_mem_eq(out, ref, n);

			/* its escaped form scans back to the same bytes */
			struct json_cursor c;
			const char *raw;
			size_t raw_len;
			bool escapes;
			json_cursor_init(&c, ref, n);
			ck_assert(json_scan_string(&c, &raw, &raw_len, &escapes));
			ck_assert_ptr_eq(c.p, ref + n);
			char back[256];
			size_t bl = escapes ? json_unescape(raw, raw_len, back) : raw_len;
			ck_assert_mem_eq(escapes ? back : raw, s, len);
			ck_assert_uint_eq(bl, len);
			free(ref);
			json_decref(js);

			/* raw in a string: a quote ends it there, a control character
			 * or a lone backslash is refused, the rest is kept */
			quoted[0] = '"';
			memcpy(quoted + 1, s, len);
			quoted[len + 1] = '"';
			json_cursor_init(&c, quoted, len + 2);
			bool ok = json_scan_string(&c, &raw, &raw_len, &escapes);
			unsigned char b = (unsigned char)specials[k][0];
			if (b == '"') {
				ck_assert(ok);
				ck_assert_uint_eq(raw_len, at);
			} else if (b < 0x20 || b == '\\') {
				ck_assert(!ok);
			} else {
				ck_assert(ok);
				ck_assert_uint_eq(raw_len, len);
				ck_assert(!escapes);
			}
		}
	}
	/* not UTF-8 at every offset: refused by the scanner, U+FFFD on output */
	for (size_t at = 0; at < 48; at++) {
		char s[48], out[256];
		memset(s, 'a', sizeof(s));
		s[at] = (char)0xff;
		size_t n = json_escape(s, 48, out);
		ck_assert_uint_eq(n, 2 + 47 + 3);
		ck_assert_mem_eq(out + 1 + at, "\xef\xbf\xbd", 3);
		char quoted[56] = "\"";
		memcpy(quoted + 1, s, 48);
		quoted[49] = '"';
		struct json_cursor c;
		const char *raw;
		size_t raw_len;
		bool escapes;
		json_cursor_init(&c, quoted, 50);
		ck_assert(!json_scan_string(&c, &raw, &raw_len, &escapes));
		ck_assert_str_eq(c.error, "invalid UTF-8 in string");
	}
	/* a payload loses its raw line breaks, whatever their offset, and
	 * nothing else */
	for (size_t at = 0; at < 40; at++) {
		char s[48], out[48];
		memset(s, ' ', sizeof(s));
		s[0] = '{';
		s[47] = '}';
		s[at + 1] = at % 2 ? '\n' : '\r';
		ck_assert_uint_eq(json_copy_one_line(s, 48, out), 47);
		ck_assert(memchr(out, '\n', 47) == NULL && memchr(out, '\r', 47) == NULL);
		ck_assert_uint_eq(json_copy_one_line(s + at + 2, 46 - at, out), 46 - at);
	}
}
END_TEST

START_TEST(json_members_walk)
{
	static const struct {
		const char *text;
		int members;	/* -1: refused */
	} cases[] = {
		{ "{}", 0 },
		{ " { } ", 0 },
		{ "{\"a\":1}", 1 },
		{ "{ \"a\" : [1,{\"b\":2}] , \"c\\n\":null }", 2 },
		{ "{,}", -1 },
		{ "{\"a\":1,}", -1 },
		{ "{\"a\":1 \"b\":2}", -1 },
		{ "{\"a\" 1}", -1 },
		{ "{1:1}", -1 },
		{ "{\"a\":1", -1 },
		{ "{\"a\":}", -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_cursor c;
		const char *key;
		size_t klen;
		bool esc;
		unsigned n = 0;
		enum json_member m;
		json_cursor_init(&c, cases[i].text, strlen(cases[i].text));
		ck_assert(json_expect(&c, '{'));
		while ((m = json_next_member(&c, &n, &key, &klen, &esc)) == JSON_MEMBER)
			if (!json_skip_value(&c)) {
				m = JSON_MEMBERS_BAD;
				break;
			}
		if (cases[i].members < 0) {
			ck_assert_msg(m == JSON_MEMBERS_BAD, "%s", cases[i].text);
		} else {
			ck_assert_msg(m == JSON_MEMBERS_END, "%s", cases[i].text);
			ck_assert_uint_eq(n, (unsigned)cases[i].members);
		}
	}
}
END_TEST

/* --- the recorded Phoenix 1.7.24 frames ------------------------------------ */

/* The same frame seen by jansson, an independent JSON parser. */
static void
check_against_jansson(const struct fx_frame *fr, const struct phx_msg *m, const char *where)
{
	json_error_t jerr;
	json_t *arr = json_loadb((const char *)fr->data, fr->len, 0, &jerr);
	const struct phx_field fields[] = { m->join_ref, m->ref, m->topic, m->event };

	ck_assert_msg(json_is_array(arr) && json_array_size(arr) == 5, "%s", where);
	for (size_t i = 0; i < 4; i++) {
		json_t *v = json_array_get(arr, i);
		if (json_is_null(v)) {
			ck_assert_msg(fields[i].s == NULL, "%s: field %zu should be null", where, i);
		} else {
			ck_assert_msg(fields[i].s != NULL && fields[i].len == json_string_length(v) &&
				      memcmp(fields[i].s, json_string_value(v), fields[i].len) == 0,
				      "%s: field %zu differs", where, i);
		}
	}
	json_t *payload = json_loadb(m->payload.s, m->payload.len, JSON_DECODE_ANY, &jerr);
	ck_assert_msg(payload != NULL && json_equal(payload, json_array_get(arr, 4)),
		      "%s: payload differs", where);
	json_decref(payload);
	json_decref(arr);
}

/* Builds the client frame from jansson's view of it and encodes it with the
 * codec: the bytes must be the recorded ones. */
static void
check_client_text_reencode(const struct fx_frame *fr, const char *where)
{
	json_t *arr = json_loadb((const char *)fr->data, fr->len, 0, NULL);
	struct phx_msg m = { 0 };
	struct phx_field *slots[] = { &m.join_ref, &m.ref, &m.topic, &m.event };
	char *payload;
	size_t len;

	for (size_t i = 0; i < 4; i++) {
		json_t *v = json_array_get(arr, i);
		if (json_is_string(v))
			*slots[i] = (struct phx_field){ json_string_value(v), json_string_length(v) };
	}
	payload = json_dumps(json_array_get(arr, 4),
			     JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	m.kind = PHX_TEXT;
	m.payload = phx_field_str(payload);
	char *out = encode_alloc(&m, PHX_FROM_CLIENT, &len);
	ck_assert_msg(len == fr->len && memcmp(out, fr->data, len) == 0,
		      "%s: encoded %s, recorded %s", where, out, fr->data);
	free(out);
	free(payload);
	json_decref(arr);
}

static const char *const malformed_files[] = {
	"malformed_not_json", "malformed_json_object", "malformed_short_array",
	"malformed_binary",
};

static bool
is_malformed_file(const char *name)
{
	for (size_t i = 0; i < sizeof(malformed_files) / sizeof(malformed_files[0]); i++)
		if (strcmp(name, malformed_files[i]) == 0)
			return true;
	return false;
}

START_TEST(fixtures_every_frame)
{
	size_t text_frames = 0, binary_frames = 0, replies = 0;

	ck_assert_uint_gt(fx_count, 30);
	for (size_t f = 0; f < fx_count; f++) {
		const struct fx_file *file = &fx_files[f];
		bool v1 = strcmp(file->name, "connect_no_vsn_v1") == 0;

		for (size_t i = 0; i < file->count; i++) {
			const struct fx_frame *fr = &file->frames[i];
			char where[200];
			struct phx_msg m;
			struct phx_error err = { 0 };
			enum phx_err rc;

			snprintf(where, sizeof(where), "%s.jsonl frame %zu", file->name, i + 1);
			if (fr->type == FX_TEXT) {
				rc = phx_decode_text((const char *)fr->data, fr->len, 0, &m, &err);
				if (v1 && fr->data[0] == '{') {
					ck_assert_msg(rc == PHX_ERR_NOT_ARRAY, "%s", where);
					continue;
				}
				if (fr->c2s && is_malformed_file(file->name) && i == 2) {
					ck_assert_msg(rc != PHX_OK, "%s: accepted a malformed frame", where);
					continue;
				}
				ck_assert_msg(rc == PHX_OK, "%s: %s", where, err.detail);
				check_against_jansson(fr, &m, where);
				text_frames++;
				if (fr->c2s) {
					check_client_text_reencode(fr, where);
				} else {
					/* the test server encodes server frames the same way */
					size_t len;
					char *out = encode_alloc(&m, PHX_FROM_SERVER, &len);
					ck_assert_msg(len == fr->len && memcmp(out, fr->data, len) == 0,
						      "%s: re-encoded differently", where);
					free(out);
				}
				if (!fr->c2s && phx_field_eq(m.event, "phx_reply")) {
					struct phx_reply r;
					ck_assert_msg(phx_reply_parse(&m, &r, &err) == PHX_OK, "%s: %s",
						      where, err.detail);
					ck_assert(phx_field_eq(r.status, "ok") ||
						  phx_field_eq(r.status, "error"));
					replies++;
				}
			} else if (fr->type == FX_BINARY) {
				enum phx_origin o = fr->c2s ? PHX_FROM_CLIENT : PHX_FROM_SERVER;
				rc = phx_decode_binary(fr->data, fr->len, o, &m, &err);
				if (strcmp(file->name, "malformed_binary") == 0) {
					ck_assert_int_eq(rc, PHX_ERR_KIND);
					continue;
				}
				ck_assert_msg(rc == PHX_OK, "%s: %s", where, err.detail);
				size_t len;
				char *out = encode_alloc(&m, o, &len);
				ck_assert_msg(len == fr->len && memcmp(out, fr->data, len) == 0,
					      "%s: binary re-encoded differently", where);
				free(out);
				binary_frames++;
			}
		}
	}
	ck_assert_uint_gt(text_frames, 250);
	ck_assert_uint_eq(binary_frames, 6);
	ck_assert_uint_gt(replies, 100);
}
END_TEST

static const struct fx_file *
fx_find(const char *name)
{
	for (size_t i = 0; i < fx_count; i++)
		if (strcmp(fx_files[i].name, name) == 0)
			return &fx_files[i];
	ck_abort_msg("no fixture %s", name);
	return NULL;
}

static void
fx_decode(const char *file, size_t index, struct phx_msg *m)
{
	const struct fx_frame *fr = &fx_find(file)->frames[index];

	if (fr->type == FX_BINARY)
		ck_assert_int_eq(phx_decode_binary(fr->data, fr->len,
						   fr->c2s ? PHX_FROM_CLIENT : PHX_FROM_SERVER, m,
						   NULL), PHX_OK);
	else
		ck_assert_int_eq(phx_decode_text((const char *)fr->data, fr->len, 0, m, NULL),
				 PHX_OK);
}

/* What the fixtures README says each kind of server frame means. */
START_TEST(fixtures_match_the_spec)
{
	struct phx_msg m;
	struct phx_reply r;

	fx_decode("join_unmatched_topic", 1, &m);
	assert_field(m.join_ref, NULL);
	ck_assert_int_eq(phx_reply_parse(&m, &r, NULL), PHX_OK);
	assert_field(r.status, "error");
	assert_field(r.response, "{\"reason\":\"unmatched topic\"}");

	fx_decode("push_to_me", 3, &m);
	assert_field(m.join_ref, "1");
	assert_field(m.ref, NULL);
	assert_field(m.event, "foo");

	fx_decode("broadcast", 3, &m);
	assert_field(m.join_ref, NULL);
	assert_field(m.ref, NULL);
	assert_field(m.event, "broadcast");

	fx_decode("crash_phx_error", 3, &m);
	assert_field(m.event, "phx_error");
	assert_field(m.ref, "1");	/* ref repeats the join_ref */

	fx_decode("duplicate_join_new_join_ref", 4, &m);
	assert_field(m.event, "phx_close");
	assert_field(m.join_ref, "1");

	fx_decode("binary", 3, &m);
	ck_assert_int_eq(m.kind, PHX_BIN_PUSH);
	assert_field(m.event, "bin_push");
	assert_field(m.ref, NULL);
	ck_assert_uint_eq(m.payload.len, 7);

	fx_decode("binary", 4, &m);
	ck_assert_int_eq(m.kind, PHX_BIN_REPLY);
	ck_assert_int_eq(phx_reply_parse(&m, &r, NULL), PHX_OK);
	assert_field(r.status, "ok");
	ck_assert(r.binary);
	ck_assert_mem_eq(r.response.s, "\x00\x01\x02\x7f\x80\xfe\xff", 7);

	fx_decode("binary_empty", 4, &m);
	ck_assert_int_eq(phx_reply_parse(&m, &r, NULL), PHX_OK);
	ck_assert_uint_eq(r.response.len, 0);

	fx_decode("heartbeat", 1, &m);
	assert_field(m.topic, "phoenix");
	assert_field(m.join_ref, NULL);

	fx_decode("too_many_channels", 201, &m);
	ck_assert_int_eq(phx_reply_parse(&m, &r, NULL), PHX_OK);
	assert_field(r.response, "{\"reason\":\"too many channels joined\"}");
}
END_TEST

START_TEST(fixtures_are_all_there)
{
	ck_assert_msg(fx_count == 36, "%zu recordings at PHXD_FIXTURES (%s), 36 expected",
		      (size_t)fx_count, fx_dir() ? fx_dir() : "not a directory");
}
END_TEST

/* ---- websocket client codec (RFC 6455) ------------------------------------- */

START_TEST(ws_accept_is_the_rfc_example)
{
	char out[29];

	/* RFC 6455 1.3 */
	ws_accept_for("dGhlIHNhbXBsZSBub25jZQ==", out);
	ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST

START_TEST(ws_response_fields_and_every_prefix)
{
	static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\n"
				   "upgrade: WebSocket\r\n"
				   "Connection: keep-alive, Upgrade\r\n"
				   "Sec-WebSocket-Accept:s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  \r\n"
				   "Sec-WebSocket-Protocol: phoenix\r\n"
				   "\r\n\x81\x00";
	const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
	size_t head = sizeof(resp) - 1 - 2;
	struct ws_response r;

	for (size_t n = 0; n < head; n++)
		ck_assert_int_eq(ws_response_parse(resp, n, key, &r), 0);
	ck_assert_int_eq(ws_response_parse(resp, sizeof(resp) - 1, key, &r), (long)head);
	ck_assert_int_eq(r.status, 101);
	ck_assert(r.upgrade && r.connection && r.accept_ok && !r.extensions);
	ck_assert_int_eq((int)r.protocol_len, 7);
	ck_assert(ws_protocol_offered("phoenix, base64url.bearer.phx.x", r.protocol, r.protocol_len));
	ck_assert(!ws_protocol_offered("base64url.bearer.phx.x", r.protocol, r.protocol_len));
	ck_assert(!ws_protocol_offered(NULL, r.protocol, r.protocol_len));
	ck_assert_int_eq(ws_response_parse(resp, sizeof(resp) - 1, "AAAAAAAAAAAAAAAAAAAAAA==", &r),
			 (long)head);
	ck_assert(!r.accept_ok);
	static const char *not_http[] = { "SSH-2.0", "HTTP/1.1 1x1 OK\r\n\r\n",
					  "HTTP/1.1 403 No\r\nbad line\r\n\r\n",
					  "HTTP/1.1 403\r\n\n\r\n\r\n" };
	for (size_t i = 0; i < sizeof(not_http) / sizeof(not_http[0]); i++)
		ck_assert_int_eq(ws_response_parse(not_http[i], strlen(not_http[i]), key, &r), -1);
}
END_TEST

START_TEST(ws_frames_round_trip_every_length_form)
{
	static const uint64_t lens[] = { 0, 125, 126, 65535, 65536, (uint64_t)1 << 40 };
	static const uint8_t mask[4] = { 0xde, 0xad, 0xbe, 0xef };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t h[WS_HEADER_MAX];
		size_t n = ws_frame_header(h, WS_BINARY, lens[i], mask);
		struct ws_frame f;
		const char *why = NULL;
		h[1] &= 0x7f;	/* as a server sends it: unmasked */
		for (size_t k = 0; k < n - 4; k++)
			ck_assert_int_eq(ws_frame_parse(h, k, &f, &why), WS_NEED_MORE);
		ck_assert_int_eq(ws_frame_parse(h, n - 4, &f, &why), WS_FRAME_OK);
		ck_assert(f.fin && f.opcode == WS_BINARY && f.len == lens[i] && f.head == n - 4);
	}
}
END_TEST

START_TEST(ws_bad_frames_are_named)
{
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
		{ "\xc1\x00", 2 }, { "\x81\x80", 2 }, { "\x83\x00", 2 }, { "\x09\x00", 2 },
		{ "\x89\x7e", 2 }, { "\x81\x7e\x00\x05", 4 },
		{ "\x81\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 10 },
		{ "\x81\x7f\x00\x00\x00\x00\x00\x00\xff\xff", 10 },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ws_frame f;
		const char *why = NULL;
		ck_assert_int_eq(ws_frame_parse((const uint8_t *)bad[i].bytes, bad[i].len, &f, &why),
				 WS_BAD_FRAME);
		ck_assert_ptr_nonnull(why);
	}
}
END_TEST

START_TEST(ws_mask_twice_is_identity_at_any_offset)
{
	uint8_t src[37], buf[37];
	static const uint8_t mask[4] = { 1, 0x80, 0x7f, 0xff };

	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 7);
	for (size_t n = 0; n <= sizeof(src); n++) {
		ws_mask(buf, src, n, mask);
		for (size_t i = 0; i < n; i++)
			ck_assert_int_eq(buf[i], src[i] ^ mask[i % 4]);
		ws_mask(buf, buf, n, mask);
		ck_assert(memcmp(buf, src, n) == 0);
	}
	ck_assert(ws_close_code_valid(1000) && ws_close_code_valid(4999) && ws_close_code_valid(1012));
	ck_assert(!ws_close_code_valid(1005) && !ws_close_code_valid(1006) &&
		  !ws_close_code_valid(999) && !ws_close_code_valid(5000) && !ws_close_code_valid(1015));
}
END_TEST

static Suite *
codec_suite(void)
{
	Suite *s = suite_create("codec");
	TCase *tc = tcase_create("text");

	tcase_add_test(tc, decode_join_reply);
	tcase_add_test(tc, decode_nulls_and_whitespace);
	tcase_add_test(tc, decode_escaped_fields);
	tcase_add_test(tc, decode_extra_elements);
	tcase_add_loop_test(tc, decode_rejects_bad_text, 0,
			    (int)(sizeof(bad_text) / sizeof(bad_text[0])));
	tcase_add_test(tc, decode_field_size_limits);
	tcase_add_test(tc, decode_deep_nesting_is_refused);
	tcase_add_test(tc, decode_every_prefix_fails_cleanly);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("websocket");
	tcase_add_test(tc, ws_accept_is_the_rfc_example);
	tcase_add_test(tc, ws_response_fields_and_every_prefix);
	tcase_add_test(tc, ws_frames_round_trip_every_length_form);
	tcase_add_test(tc, ws_bad_frames_are_named);
	tcase_add_test(tc, ws_mask_twice_is_identity_at_any_offset);
	suite_add_tcase(s, tc);

	tc = tcase_create("binary");
	tcase_add_test(tc, binary_client_push_round_trip);
	tcase_add_test(tc, binary_server_kinds);
	tcase_add_test(tc, binary_rejects_bad_frames);
	suite_add_tcase(s, tc);

	tc = tcase_create("encode");
	tcase_add_test(tc, encode_text_escapes_like_json_stringify);
	tcase_add_test(tc, encode_fits_the_most_it_announces);
	tcase_add_test(tc, encode_refuses_what_the_wire_cannot_carry);
	tcase_add_test(tc, reply_parse_rejects_malformed);
	tcase_add_test(tc, a_decoded_reply_reads_as_one_made_by_hand);
	tcase_add_test(tc, a_reply_is_held_to_the_payload_nesting_limit);
	tcase_add_test(tc, refs_count_up_and_wrap);
	tcase_add_test(tc, json_put_uint_writes_every_width);
	tcase_add_test(tc, json_unescape_round_trip);
	tcase_add_test(tc, json_members_walk);
	tcase_add_test(tc, json_strings_special_byte_at_every_offset);
	suite_add_tcase(s, tc);

	/* The recordings ship with the source: without them this fails,
	 * it does not shrink. */
	tc = tcase_create("fixtures");
	tcase_add_test(tc, fixtures_are_all_there);
	if (fx_count > 0) {
		tcase_add_test(tc, fixtures_every_frame);
		tcase_add_test(tc, fixtures_match_the_spec);
	}
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	const char *dir = fx_dir();
	SRunner *sr;
	int failed;

	if (dir != NULL)
		fx_count = fx_load_all(dir, &fx_files);
	else
		fprintf(stderr, "test_codec: no recordings at PHXD_FIXTURES\n");
	sr = srunner_create(codec_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	fx_free_all(fx_files, fx_count);
	return failed == 0 ? 0 : 1;
}
