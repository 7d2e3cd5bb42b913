/* SPDX-License-Identifier: MIT */
#include "json_scan.h"

#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static bool scan_value(struct json_cursor *c, int depth);

/* The bytes a string holds as they are. */
static bool
plain_byte(unsigned char ch)
{
	return ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\';
}

/*
 * Length of the run at s of bytes a string holds as they are: printable
 * ASCII but '"' and '\\'. With SSE2 (every x86-64) sixteen bytes a step:
 * a signed compare below 0x20 flags the control characters and every
 * byte above ASCII at once, and the mask gives the first special byte
 * exactly. Otherwise, and for the last 8-15 bytes, eight a step (SWAR):
 * each test flags the high bit of every byte of its kind, and may flag
 * bytes above one (a borrow carries upwards), never below. So on a
 * little-endian CPU the lowest flag is the first special byte, and the
 * run ends exactly there; elsewhere a flagged word falls to the byte
 * loop that also takes the last 0-7 bytes. The run is exact either way.
 */
static inline size_t
plain_run(const char *s, size_t len)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	size_t n = 0;

#if defined(__SSE2__)
	while (len - n >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + n));
		__m128i special = _mm_or_si128(
			_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
				     _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
			_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
		unsigned mask = (unsigned)_mm_movemask_epi8(special);
		if (mask != 0)
			return n + (size_t)__builtin_ctz(mask);
		n += 16;
	}
#endif
	while (len - n >= 8) {
		uint64_t v, quote, bslash, special;
		memcpy(&v, s + n, 8);
		quote = v ^ (ones * '"');
		bslash = v ^ (ones * '\\');
		special = (((v - ones * 0x20) & ~v) |	/* a control character */
			   ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash) |
			   v) & highs;			/* v: not ASCII */
		if (special != 0) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			return n + (size_t)__builtin_ctzll(special) / 8;
#else
			break;
#endif
		}
		n += 8;
	}
	while (n < len && plain_byte((unsigned char)s[n]))
		n++;
	return n;
}

static bool
fail(struct json_cursor *c, const char *why)
{
	c->error = why;
	return false;
}

void
json_cursor_init(struct json_cursor *c, const char *data, size_t len)
{
	c->p = data;
	c->end = data + len;
	c->error = NULL;
}

/* Inlined into every token step below: the scanner calls it before each. */
static inline void
skip_ws(struct json_cursor *c)
{
	/* Most tokens follow the last with no white space at all. */
	if (c->p < c->end && (unsigned char)*c->p > ' ')
		return;
	while (c->p < c->end &&
	       (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

void
json_skip_ws(struct json_cursor *c)
{
	skip_ws(c);
}

static inline enum json_kind
peek(struct json_cursor *c)
{
	skip_ws(c);
	if (c->p >= c->end)
		return JSON_KIND_NONE;
	switch (*c->p) {
	case '{': return JSON_KIND_OBJECT;
	case '[': return JSON_KIND_ARRAY;
	case '"': return JSON_KIND_STRING;
	case 't': return JSON_KIND_TRUE;
	case 'f': return JSON_KIND_FALSE;
	case 'n': return JSON_KIND_NULL;
	default:
		if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9'))
			return JSON_KIND_NUMBER;
		return JSON_KIND_NONE;
	}
}

static inline bool
expect(struct json_cursor *c, char ch)
{
	skip_ws(c);
	if (c->p >= c->end || *c->p != ch)
		return false;
	c->p++;
	return true;
}

enum json_kind
json_peek(struct json_cursor *c)
{
	return peek(c);
}

bool
json_expect(struct json_cursor *c, char ch)
{
	return expect(c, ch);
}

enum json_member
json_next_member(struct json_cursor *c, unsigned *n, const char **key, size_t *key_len,
		 bool *has_escapes)
{
	skip_ws(c);
	if (c->p < c->end && *c->p == '}') {
		c->p++;
		return JSON_MEMBERS_END;
	}
	if (*n > 0 && !expect(c, ','))
		return JSON_MEMBERS_BAD;
	if (!json_scan_string(c, key, key_len, has_escapes) || !expect(c, ':'))
		return JSON_MEMBERS_BAD;
	skip_ws(c);
	(*n)++;
	return JSON_MEMBER;
}

/* Length of the UTF-8 sequence at s (1..4), or 0 when it is not valid. */
static size_t
utf8_seq_len(const unsigned char *s, const unsigned char *end)
{
	unsigned char b = s[0];
	size_t n;
	unsigned int cp;

	if (b < 0x80)
		return 1;
	if (b >= 0xc2 && b <= 0xdf) {
		n = 2;
		cp = b & 0x1f;
	} else if (b >= 0xe0 && b <= 0xef) {
		n = 3;
		cp = b & 0x0f;
	} else if (b >= 0xf0 && b <= 0xf4) {
		n = 4;
		cp = b & 0x07;
	} else
		return 0;
	if ((size_t)(end - s) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

bool
json_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *end = p + len;

	while (p < end) {
		if (*p < 0x80) {
			p++;
			continue;
		}
		size_t n = utf8_seq_len(p, end);
		if (n == 0)
			return false;
		p += n;
	}
	return true;
}

static int
hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static bool
read_hex4(const char *p, const char *end, unsigned int *out)
{
	unsigned int v = 0;

	if (end - p < 4)
		return false;
	for (int i = 0; i < 4; i++) {
		int h = hex_value(p[i]);
		if (h < 0)
			return false;
		v = (v << 4) | (unsigned int)h;
	}
	*out = v;
	return true;
}

/* A string from c->p, where the scan of its plain bytes stopped, to its
 * end: escapes, bytes above ASCII, and the errors. Kept out of line so
 * that the common string, plain to its closing quote, costs only the
 * scan. */
static bool __attribute__((noinline))
scan_string_rest(struct json_cursor *c, const char *start, const char **raw,
		 size_t *raw_len, bool *has_escapes)
{
	bool escapes = false;

	while (c->p < c->end) {
		c->p += plain_run(c->p, (size_t)(c->end - c->p));
		if (c->p >= c->end)
			break;
		unsigned char ch = (unsigned char)*c->p;

		if (ch == '"') {
			*raw = start;
			*raw_len = (size_t)(c->p - start);
			*has_escapes = escapes;
			c->p++;
			return true;
		}
		if (ch < 0x20)
			return fail(c, "control character in string");
		if (ch == '\\') {
			escapes = true;
			if (c->end - c->p < 2)
				return fail(c, "unterminated string");
			switch (c->p[1]) {
			case '"': case '\\': case '/': case 'b':
			case 'f': case 'n': case 'r': case 't':
				c->p += 2;
				break;
			case 'u': {
				unsigned int u, lo;
				if (!read_hex4(c->p + 2, c->end, &u))
					return fail(c, "bad \\u escape");
				c->p += 6;
				if (u >= 0xdc00 && u <= 0xdfff)
					return fail(c, "lone low surrogate in string");
				if (u >= 0xd800 && u <= 0xdbff) {
					if (c->end - c->p < 6 || c->p[0] != '\\' ||
					    c->p[1] != 'u' ||
					    !read_hex4(c->p + 2, c->end, &lo) ||
					    lo < 0xdc00 || lo > 0xdfff)
						return fail(c, "lone high surrogate in string");
					c->p += 6;
				}
				break;
			}
			default:
				return fail(c, "bad escape in string");
			}
			continue;
		}
		size_t n = utf8_seq_len((const unsigned char *)c->p,
					(const unsigned char *)c->end);
		if (n == 0)
			return fail(c, "invalid UTF-8 in string");
		c->p += n;
	}
	return fail(c, "unterminated string");
}

bool
json_scan_string(struct json_cursor *c, const char **raw, size_t *raw_len,
		 bool *has_escapes)
{
	const char *start, *p;

	skip_ws(c);
	if (c->p >= c->end || *c->p != '"')
		return fail(c, "expected a string");
	start = ++c->p;
	p = start + plain_run(start, (size_t)(c->end - start));
	if (p < c->end && *p == '"') {
		*raw = start;
		*raw_len = (size_t)(p - start);
		*has_escapes = false;
		c->p = p + 1;
		return true;
	}
	c->p = p;
	return scan_string_rest(c, start, raw, raw_len, has_escapes);
}

static size_t
put_utf8(unsigned int cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

size_t
json_unescape(const char *raw, size_t raw_len, char *out)
{
	const char *p = raw, *end = raw + raw_len;
	size_t n = 0;

	while (p < end) {
		if (*p != '\\') {
			out[n++] = *p++;
			continue;
		}
		char e = p[1];
		p += 2;
		switch (e) {
		case 'b': out[n++] = '\b'; break;
		case 'f': out[n++] = '\f'; break;
		case 'n': out[n++] = '\n'; break;
		case 'r': out[n++] = '\r'; break;
		case 't': out[n++] = '\t'; break;
		case 'u': {
			unsigned int u = 0, lo = 0;
			read_hex4(p, end, &u);
			p += 4;
			if (u >= 0xd800 && u <= 0xdbff) {
				read_hex4(p + 2, end, &lo);
				p += 6;
				u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
			}
			n += put_utf8(u, out + n);
			break;
		}
		default: out[n++] = e; break;	/* '"', '\\', '/' */
		}
	}
	return n;
}

static const char hex_digits[] = "0123456789abcdef";

/* U+FFFD, what an invalid byte of a string becomes on output. */
static const char replacement[3] = { (char)0xef, (char)0xbf, (char)0xbd };

/* Length of the valid UTF-8 sequence at s, 0 when the byte starts none. */
static size_t
valid_seq(const char *s, const char *end)
{
	return utf8_seq_len((const unsigned char *)s, (const unsigned char *)end);
}

/* Copies the character at s (or U+FFFD when s starts no valid UTF-8
 * sequence) to out + *n; returns the bytes of s it took. */
static size_t
put_char(const char *s, size_t len, char *out, size_t *n)
{
	size_t seq = (unsigned char)s[0] < 0x80 ? 1 : valid_seq(s, s + len);

	if (seq == 0) {
		memcpy(out + *n, replacement, sizeof(replacement));
		*n += sizeof(replacement);
		return 1;
	}
	memcpy(out + *n, s, seq);
	*n += seq;
	return seq;
}

size_t
json_escaped_len(const char *s, size_t len)
{
	size_t n = 2;

	for (size_t i = 0; i < len;) {
		size_t plain = plain_run(s + i, len - i);
		n += plain;
		i += plain;
		if (i == len)
			break;
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x80) {
			size_t seq = valid_seq(s + i, s + len);
			n += seq ? seq : sizeof(replacement);
			i += seq ? seq : 1;
			continue;
		}
		if (ch == '"' || ch == '\\' || ch == '\b' || ch == '\f' ||
		    ch == '\n' || ch == '\r' || ch == '\t')
			n += 2;
		else if (ch < 0x20)
			n += 6;
		else
			n += 1;
		i++;
	}
	return n;
}

size_t
json_put_uint(uint64_t v, char *out)
{
	char digits[20];
	size_t n = 0, len = 0;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		out[len++] = digits[--n];
	return len;
}

size_t
json_escape(const char *s, size_t len, char *out)
{
	size_t n = 0;

	out[n++] = '"';
	for (size_t i = 0; i < len;) {
		size_t plain = plain_run(s + i, len - i);
		memcpy(out + n, s + i, plain);
		n += plain;
		i += plain;
		if (i == len)
			break;
		unsigned char ch = (unsigned char)s[i];
		char short_esc = 0;

		if (ch >= 0x80) {
			i += put_char(s + i, len - i, out, &n);
			continue;
		}
		i++;
		switch (ch) {
		case '"': short_esc = '"'; break;
		case '\\': short_esc = '\\'; break;
		case '\b': short_esc = 'b'; break;
		case '\f': short_esc = 'f'; break;
		case '\n': short_esc = 'n'; break;
		case '\r': short_esc = 'r'; break;
		case '\t': short_esc = 't'; break;
		default: break;
		}
		if (short_esc) {
			out[n++] = '\\';
			out[n++] = short_esc;
		} else if (ch < 0x20) {
			memcpy(out + n, "\\u00", 4);
			out[n + 4] = hex_digits[ch >> 4];
			out[n + 5] = hex_digits[ch & 0xf];
			n += 6;
		} else
			out[n++] = (char)ch;
	}
	out[n++] = '"';
	return n;
}

size_t
json_utf8_sanitized_len(const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len;) {
		size_t seq = (unsigned char)s[i] < 0x80 ? 1 : valid_seq(s + i, s + len);
		n += seq ? seq : sizeof(replacement);
		i += seq ? seq : 1;
	}
	return n;
}

size_t
json_utf8_sanitize(const char *s, size_t len, char *out)
{
	size_t n = 0;

	for (size_t i = 0; i < len;)
		i += put_char(s + i, len - i, out, &n);
	return n;
}

size_t
json_utf8_cut(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	/* Back off over continuation bytes to a character boundary. */
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	return max;
}

size_t
json_copy_one_line(const char *json, size_t len, char *out)
{
	size_t n = 0;

	if (memchr(json, '\n', len) == NULL && memchr(json, '\r', len) == NULL) {
		memcpy(out, json, len);
		return len;
	}
	/* In valid JSON a raw CR or LF can only be white space between tokens
	 * (strings must escape them), so dropping them keeps the value. */
	for (size_t i = 0; i < len; i++)
		if (json[i] != '\n' && json[i] != '\r')
			out[n++] = json[i];
	return n;
}

static bool
is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool
scan_number(struct json_cursor *c)
{
	if (c->p < c->end && *c->p == '-')
		c->p++;
	if (c->p >= c->end || !is_digit(*c->p))
		return fail(c, "bad number");
	if (*c->p == '0')
		c->p++;
	else
		while (c->p < c->end && is_digit(*c->p))
			c->p++;
	if (c->p < c->end && *c->p == '.') {
		c->p++;
		if (c->p >= c->end || !is_digit(*c->p))
			return fail(c, "bad number");
		while (c->p < c->end && is_digit(*c->p))
			c->p++;
	}
	if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
		c->p++;
		if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
			c->p++;
		if (c->p >= c->end || !is_digit(*c->p))
			return fail(c, "bad number");
		while (c->p < c->end && is_digit(*c->p))
			c->p++;
	}
	return true;
}

static bool
scan_literal(struct json_cursor *c, const char *word, size_t len)
{
	if ((size_t)(c->end - c->p) < len || memcmp(c->p, word, len) != 0)
		return fail(c, "bad literal");
	c->p += len;
	return true;
}

static bool
scan_container(struct json_cursor *c, int depth, char close, bool object)
{
	c->p++;	/* the opening bracket */
	if (expect(c, close))
		return true;
	for (;;) {
		if (object) {
			const char *raw;
			size_t raw_len;
			bool esc;

			if (peek(c) != JSON_KIND_STRING)
				return fail(c, "expected an object key");
			if (!json_scan_string(c, &raw, &raw_len, &esc))
				return false;
			if (!expect(c, ':'))
				return fail(c, "expected ':' after object key");
		}
		if (!scan_value(c, depth + 1))
			return false;
		if (expect(c, ','))
			continue;
		if (expect(c, close))
			return true;
		return fail(c, object ? "expected ',' or '}'" : "expected ',' or ']'");
	}
}

static bool
scan_value(struct json_cursor *c, int depth)
{
	const char *raw;
	size_t raw_len;
	bool esc;

	if (depth > JSON_SCAN_MAX_DEPTH)
		return fail(c, "nesting too deep");
	switch (peek(c)) {
	case JSON_KIND_OBJECT: return scan_container(c, depth, '}', true);
	case JSON_KIND_ARRAY: return scan_container(c, depth, ']', false);
	case JSON_KIND_STRING: return json_scan_string(c, &raw, &raw_len, &esc);
	case JSON_KIND_NUMBER: return scan_number(c);
	case JSON_KIND_TRUE: return scan_literal(c, "true", 4);
	case JSON_KIND_FALSE: return scan_literal(c, "false", 5);
	case JSON_KIND_NULL: return scan_literal(c, "null", 4);
	case JSON_KIND_NONE:
	default:
		return fail(c, c->p >= c->end ? "unexpected end of input"
					      : "unexpected character");
	}
}

bool
json_skip_value(struct json_cursor *c)
{
	return scan_value(c, 0);
}

bool
json_skip_nested(struct json_cursor *c, int depth)
{
	return scan_value(c, depth);
}

bool
json_validate(const char *data, size_t len, const char **error)
{
	struct json_cursor c;

	json_cursor_init(&c, data, len);
	if (!json_skip_value(&c)) {
		*error = c.error;
		return false;
	}
	json_skip_ws(&c);
	if (c.p != c.end) {
		*error = "trailing data after JSON value";
		return false;
	}
	return true;
}
