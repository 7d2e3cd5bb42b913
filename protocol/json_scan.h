/* SPDX-License-Identifier: MIT */
/*
 * json_scan: strict, allocation-free JSON validation and string helpers.
 *
 * The codec never builds a tree for a frame: it validates the payload once and
 * keeps its bytes as a span, so the daemon can splice them into other messages
 * without re-encoding. Grammar is RFC 8259; strings must be valid UTF-8.
 */
#ifndef PHXD_JSON_SCAN_H
#define PHXD_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Nesting deeper than this is rejected: the scanner recurses. It is above
 * what a socket client can send (jansson stops at 2048) plus the frame and
 * reply wrapping, so a server that echoes a client's value never exceeds it. */
#define JSON_SCAN_MAX_DEPTH 4096

enum json_kind {
	JSON_KIND_NONE = 0,
	JSON_KIND_OBJECT,
	JSON_KIND_ARRAY,
	JSON_KIND_STRING,
	JSON_KIND_NUMBER,
	JSON_KIND_TRUE,
	JSON_KIND_FALSE,
	JSON_KIND_NULL,
};

struct json_cursor {
	const char *p;
	const char *end;
	const char *error;	/* static text, set when a call fails */
};

void json_cursor_init(struct json_cursor *c, const char *data, size_t len);

/* Skips JSON white space. */
void json_skip_ws(struct json_cursor *c);

/* Peeks at the kind of the value at the cursor (after white space). */
enum json_kind json_peek(struct json_cursor *c);

/* Validates one value and moves past it. Returns false and sets c->error. */
bool json_skip_value(struct json_cursor *c);
/* The same for a value nested `depth` levels inside the one being
 * validated, which counts against the same nesting limit. */
bool json_skip_nested(struct json_cursor *c, int depth);

/* Consumes the single character ch (after white space). */
bool json_expect(struct json_cursor *c, char ch);

/*
 * Walks the members of an object, one call each, after json_expect(c, '{')
 * and with *n = 0: JSON_MEMBER with the next key (escaped, as
 * json_scan_string gives it; the cursor is then at its value, which the
 * caller must consume), JSON_MEMBERS_END past the closing '}', or
 * JSON_MEMBERS_BAD (c->error set when the scanner failed).
 */
enum json_member { JSON_MEMBER, JSON_MEMBERS_END, JSON_MEMBERS_BAD };
enum json_member json_next_member(struct json_cursor *c, unsigned *n, const char **key,
				  size_t *key_len, bool *has_escapes);

/*
 * Parses a string at the cursor. *raw and *raw_len receive the bytes between
 * the quotes (still escaped); *has_escapes tells whether they must be decoded
 * with json_unescape() before use.
 */
bool json_scan_string(struct json_cursor *c, const char **raw, size_t *raw_len,
		      bool *has_escapes);

/*
 * Decodes the escaped body of a validated string into out (room for at least
 * raw_len bytes; the result is never longer). Returns the decoded length.
 */
size_t json_unescape(const char *raw, size_t raw_len, char *out);

/* Bytes json_escape() writes for s, quotes included. */
size_t json_escaped_len(const char *s, size_t len);

/* The most json_escape() can write for len bytes (a control byte becomes
 * six): room enough without the pass json_escaped_len() makes, where a
 * buffer is reused and its size matters less than the time. */
static inline size_t
json_escaped_max(size_t len)
{
	return 2 + 6 * len;
}

/*
 * Writes s as a quoted JSON string the way JSON.stringify and the Phoenix
 * server do: UTF-8 kept raw, only '"', '\\' and control characters escaped.
 * A byte that is not part of valid UTF-8 becomes U+FFFD, so the output is
 * always valid JSON whatever s holds. Returns the number of bytes written
 * (json_escaped_len()).
 */
size_t json_escape(const char *s, size_t len, char *out);

/* Writes v in decimal, no NUL: what a ref, an id or a count costs on every
 * message, without printf. Returns the bytes written (at most 20). */
size_t json_put_uint(uint64_t v, char *out);

/* s with every byte that is not part of valid UTF-8 replaced by U+FFFD:
 * the length first, then the copy (out has room for the length). */
size_t json_utf8_sanitized_len(const char *s, size_t len);
size_t json_utf8_sanitize(const char *s, size_t len, char *out);

/* The longest prefix of s not above max bytes that does not end inside a
 * UTF-8 sequence (for s valid UTF-8). */
size_t json_utf8_cut(const char *s, size_t len, size_t max);

/* Copies validated JSON text without its CR and LF bytes (white space
 * between tokens), so it fits on one line of a newline-delimited stream.
 * Returns the bytes written (at most len). */
size_t json_copy_one_line(const char *json, size_t len, char *out);

/* True when the whole buffer is exactly one JSON value (white space allowed). */
bool json_validate(const char *data, size_t len, const char **error);

/* True when s is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool json_utf8_valid(const char *s, size_t len);

#endif
