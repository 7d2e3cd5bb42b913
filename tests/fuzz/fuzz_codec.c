/* SPDX-License-Identifier: MIT */
/*
 * The frame decoder and the JSON helpers, on any bytes a server can send.
 * Beyond not crashing, what decodes must re-encode to a frame that decodes
 * to the same fields, every string helper must give valid output, and the
 * validator must agree with jansson.
 */
#include "tests/fuzz/fuzz_check.h"
#include "protocol/json_scan.h"
#include "protocol/phx_codec.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static bool
same_field(struct phx_field a, struct phx_field b)
{
	if (a.s == NULL || b.s == NULL)
		return a.s == b.s;
	return a.len == b.len && memcmp(a.s, b.s, a.len) == 0;
}

/* A decoded message encodes, within the size it announced, to a frame that
 * decodes to the same fields. */
static void
round_trip(const struct phx_msg *m, enum phx_origin origin)
{
	struct phx_msg again;

	if (phx_check_encodable(m, origin, NULL) != PHX_OK)
		return;
	size_t len = phx_encoded_len(m, origin);
	CHECK(len <= phx_encoded_max(m, origin));
	char *buf = malloc(len + 1);
	CHECK(buf != NULL);
	CHECK(phx_encode(m, origin, buf) == len);
	enum phx_err rc = m->kind == PHX_TEXT
				  ? phx_decode_text(buf, len, PHX_DECODE_STRICT, &again, NULL)
				  : phx_decode_binary(buf, len, origin, &again, NULL);
	CHECK(rc == PHX_OK);
	CHECK(again.kind == m->kind);
	CHECK(same_field(again.join_ref, m->join_ref));
	CHECK(same_field(again.topic, m->topic));
	CHECK(same_field(again.event, m->event));
	if (m->kind != PHX_TEXT)
		CHECK(same_field(again.payload, m->payload));
	free(buf);
}

static void
string_helpers(const char *s, size_t n)
{
	const char *why;
	size_t elen = json_escaped_len(s, n);
	CHECK(elen <= json_escaped_max(n));
	char *esc = malloc(elen);
	CHECK(esc != NULL);
	CHECK(json_escape(s, n, esc) == elen);
	CHECK(json_validate(esc, elen, &why));
	free(esc);

	size_t clen = json_utf8_sanitized_len(s, n);
	char *clean = malloc(clen + 1);
	CHECK(clean != NULL);
	CHECK(json_utf8_sanitize(s, n, clean) == clen);
	CHECK(json_utf8_valid(clean, clen));
	size_t cut = json_utf8_cut(clean, clen, n / 2);
	CHECK(cut <= (clen < n / 2 ? clen : n / 2));
	CHECK(json_utf8_valid(clean, cut));
	free(clean);

	if (json_validate(s, n, &why)) {
		char *one = malloc(n + 1);
		CHECK(one != NULL);
		size_t olen = json_copy_one_line(s, n, one);
		CHECK(memchr(one, '\n', olen) == NULL && memchr(one, '\r', olen) == NULL);
		CHECK(json_validate(one, olen, &why));
		free(one);
	}
}

/* The validator accepts what jansson accepts, and rejects the rest but where
 * jansson's limits are not the grammar's: its depth (2048, below ours), its
 * number range, and NUL in a key. A raw NUL byte ends jansson's input ("2\0"
 * loads as 2) where the grammar has none, so such input is not compared. */
static void
validator_agrees_with_jansson(const char *s, size_t n)
{
	const char *why;
	json_error_t err;

	if (memchr(s, '\0', n) != NULL)
		return;
	json_t *j = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	bool ours = json_validate(s, n, &why);

	if (j != NULL) {
		CHECK(ours);
		json_decref(j);
		return;
	}
	enum json_error_code code = json_error_code(&err);
	CHECK(!ours || code == json_error_stack_overflow || code == json_error_numeric_overflow ||
	      code == json_error_null_byte_in_key || code == json_error_out_of_memory);
}

/* The reply the decoder read on its way is the one its payload reads as
 * on a message made by hand: the same outcome, the same status and
 * response. */
static void
reply_reads_alike(const struct phx_msg *m)
{
	struct phx_msg by_hand = { .kind = PHX_TEXT, .ref = m->ref, .topic = m->topic,
				   .event = m->event, .payload = m->payload };
	struct phx_reply r, want;
	struct phx_error err, want_err;
	enum phx_err rc = phx_reply_parse(m, &r, &err);

	CHECK(rc == phx_reply_parse(&by_hand, &want, &want_err));
	if (rc != PHX_OK) {
		CHECK(strcmp(err.detail, want_err.detail) == 0);
		return;
	}
	CHECK(r.response.s != NULL);
	CHECK(r.status.s == want.status.s && r.status.len == want.status.len);
	CHECK(r.response.s == want.response.s && r.response.len == want.response.len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct phx_msg m;
	struct phx_reply r;

	if (phx_decode_text((const char *)data, size, PHX_DECODE_STRICT, &m, NULL) == PHX_OK) {
		round_trip(&m, PHX_FROM_SERVER);
		if (phx_field_eq(m.event, "phx_reply"))
			reply_reads_alike(&m);
	}
	phx_decode_text((const char *)data, size, PHX_DECODE_ALLOW_EXTRA, &m, NULL);
	for (int origin = PHX_FROM_CLIENT; origin <= PHX_FROM_SERVER; origin++) {
		if (phx_decode_binary(data, size, (enum phx_origin)origin, &m, NULL) == PHX_OK) {
			round_trip(&m, (enum phx_origin)origin);
			if (m.kind == PHX_BIN_REPLY)
				phx_reply_parse(&m, &r, NULL);
		}
	}
	string_helpers((const char *)data, size);
	validator_agrees_with_jansson((const char *)data, size);
	return 0;
}
