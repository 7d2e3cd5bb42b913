/* SPDX-License-Identifier: MIT */
#include "ws_codec.h"

#include "base64.h"

#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void
ws_accept_for(const char *key, char out[29])
{
	char buf[WS_KEY_SIZE + sizeof(WS_GUID)];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	size_t n = strnlen(key, WS_KEY_SIZE - 1);

	memcpy(buf, key, n);
	memcpy(buf + n, WS_GUID, sizeof(WS_GUID) - 1);
	if (EVP_Digest(buf, n + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(), NULL) != 1 ||
	    mdlen != 20) {
		out[0] = '\0';	/* matches no server's answer */
		return;
	}
	base64_encode(md, 20, true, out);
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Does the comma-separated list v[0..n) hold `token` (any case)? */
static bool
list_has(const char *v, size_t n, const char *token)
{
	size_t tlen = strlen(token);

	for (size_t i = 0; i < n;) {
		while (i < n && (is_space(v[i]) || v[i] == ','))
			i++;
		size_t start = i;
		while (i < n && v[i] != ',')
			i++;
		size_t end = i;
		while (end > start && is_space(v[end - 1]))
			end--;
		if (end - start == tlen && strncasecmp(v + start, token, tlen) == 0)
			return true;
	}
	return false;
}

static bool
name_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

long
ws_response_parse(const char *buf, size_t len, const char *key, struct ws_response *r)
{
	const char *end = NULL;
	char accept[29];

	/* Not HTTP as soon as the first bytes say so, whatever follows. */
	static const char proto[] = "HTTP/1.";
	if (memcmp(buf, proto, len < 7 ? len : 7) != 0)
		return -1;
	for (size_t i = 0; i + 3 < len; i++) {
		if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
			end = buf + i + 4;
			break;
		}
	}
	if (end == NULL)
		return 0;
	memset(r, 0, sizeof(*r));
	/* "HTTP/1.x NNN reason" */
	if (end - buf < 12 || buf[8] != ' ' || buf[9] < '1' || buf[9] > '5' || buf[10] < '0' ||
	    buf[10] > '9' || buf[11] < '0' || buf[11] > '9' || (buf[12] != ' ' && buf[12] != '\r'))
		return -1;
	r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	ws_accept_for(key, accept);

	const char *p = memchr(buf, '\n', (size_t)(end - buf)) + 1;
	while (p < end - 2) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL || eol == p || eol[-1] != '\r')
			return -1;
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (colon == NULL || colon == p)
			return -1;
		size_t nlen = (size_t)(colon - p);
		const char *v = colon + 1, *vend = eol - 1;
		while (v < vend && is_space(*v))
			v++;
		while (vend > v && is_space(vend[-1]))
			vend--;
		size_t vlen = (size_t)(vend - v);
		if (name_is(p, nlen, "upgrade"))
			r->upgrade = vlen == 9 && strncasecmp(v, "websocket", 9) == 0;
		else if (name_is(p, nlen, "connection"))
			r->connection = list_has(v, vlen, "upgrade");
		else if (name_is(p, nlen, "sec-websocket-accept"))
			r->accept_ok = accept[0] != '\0' && vlen == 28 && memcmp(v, accept, 28) == 0;
		else if (name_is(p, nlen, "sec-websocket-protocol")) {
			r->protocol = v;
			r->protocol_len = vlen;
		} else if (name_is(p, nlen, "sec-websocket-extensions"))
			r->extensions = true;
		p = eol + 1;
	}
	return end - buf;
}

bool
ws_protocol_offered(const char *offered, const char *proto, size_t len)
{
	char token[256];

	if (offered == NULL || len == 0 || len >= sizeof(token) || memchr(proto, ',', len))
		return false;
	memcpy(token, proto, len);
	token[len] = '\0';
	return list_has(offered, strlen(offered), token);
}

enum ws_parse
ws_frame_parse(const uint8_t *buf, size_t len, struct ws_frame *f, const char **why)
{
	if (len < 2)
		return WS_NEED_MORE;
	f->fin = buf[0] & 0x80;
	f->opcode = (enum ws_opcode)(buf[0] & 0x0f);
	uint8_t len7 = buf[1] & 0x7f;
	if (buf[0] & 0x70) {
		*why = "reserved bits set";
		return WS_BAD_FRAME;
	}
	if (buf[1] & 0x80) {
		*why = "masked frame from the server";
		return WS_BAD_FRAME;
	}
	switch (f->opcode) {
	case WS_CONT:
	case WS_TEXT:
	case WS_BINARY:
		break;
	case WS_CLOSE:
	case WS_PING:
	case WS_PONG:
		if (!f->fin || len7 > 125) {
			*why = "fragmented or long control frame";
			return WS_BAD_FRAME;
		}
		break;
	default:
		*why = "unknown opcode";
		return WS_BAD_FRAME;
	}
	if (len7 < 126) {
		f->len = len7;
		f->head = 2;
	} else if (len7 == 126) {
		if (len < 4)
			return WS_NEED_MORE;
		f->len = (uint64_t)buf[2] << 8 | buf[3];
		f->head = 4;
		if (f->len < 126) {
			*why = "length not in its shortest form";
			return WS_BAD_FRAME;
		}
	} else {
		if (len < 10)
			return WS_NEED_MORE;
		f->len = 0;
		for (int i = 0; i < 8; i++)
			f->len = f->len << 8 | buf[2 + i];
		f->head = 10;
		if (f->len >> 63) {
			*why = "length with its top bit set";
			return WS_BAD_FRAME;
		}
		if (f->len < 65536) {
			*why = "length not in its shortest form";
			return WS_BAD_FRAME;
		}
	}
	return WS_FRAME_OK;
}

size_t
ws_frame_header(uint8_t out[WS_HEADER_MAX], enum ws_opcode op, uint64_t len, const uint8_t mask[4])
{
	size_t n;

	out[0] = 0x80 | (uint8_t)op;
	if (len < 126) {
		out[1] = 0x80 | (uint8_t)len;
		n = 2;
	} else if (len < 65536) {
		out[1] = 0x80 | 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	memcpy(out + n, mask, 4);
	return n + 4;
}

void
ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4])
{
	uint32_t m32;
	uint64_t m64;
	size_t i = 0;

	memcpy(&m32, mask, 4);
	m64 = (uint64_t)m32 << 32 | m32;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, src + i, 8);
		w ^= m64;
		memcpy(dst + i, &w, 8);
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ mask[i & 3];
}

bool
ws_close_code_valid(unsigned code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	       (code >= 3000 && code <= 4999);
}
