/* SPDX-License-Identifier: MIT */
/*
 * The websocket client codec on any bytes a server can send: the opening
 * handshake's answer (first byte even) or a stream of frames (odd). Beyond
 * not crashing: a head ends at its blank line and every field points into
 * it; a frame header re-encodes to the same header; masking twice is the
 * identity.
 */
#include "tests/fuzz/fuzz_check.h"
#include "protocol/ws_codec.h"

#include <string.h>

static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";

static void
handshake(const uint8_t *data, size_t size)
{
	struct ws_response r;
	long head = ws_response_parse((const char *)data, size, key, &r);

	CHECK(head <= (long)size);
	if (head <= 0)
		return;
	CHECK(head >= 4 && memcmp(data + head - 4, "\r\n\r\n", 4) == 0);
	CHECK(r.status >= 100 && r.status <= 599);
	if (r.protocol != NULL) {
		CHECK((const uint8_t *)r.protocol >= data &&
		      (const uint8_t *)r.protocol + r.protocol_len <= data + head);
		(void)ws_protocol_offered("phoenix, base64url.bearer.phx.dG9r", r.protocol,
					  r.protocol_len);
	}
}

static void
frames(const uint8_t *data, size_t size)
{
	while (size > 0) {
		struct ws_frame f;
		const char *why = NULL;
		enum ws_parse rc = ws_frame_parse(data, size, &f, &why);
		if (rc == WS_NEED_MORE)
			return;
		if (rc == WS_BAD_FRAME) {
			CHECK(why != NULL);
			return;
		}
		CHECK(f.head == 2 || f.head == 4 || f.head == 10);
		CHECK(f.head <= size);
		if (f.opcode >= WS_CLOSE)
			CHECK(f.fin && f.len <= 125);
		/* the same header, as a client would mask it, unmasked again */
		uint8_t again[WS_HEADER_MAX];
		static const uint8_t mask[4] = { 1, 2, 3, 4 };
		size_t n = ws_frame_header(again, f.opcode, f.len, mask);
		CHECK(n == f.head + 4);
		CHECK((again[1] & 0x7f) == (data[1] & 0x7f));
		CHECK(memcmp(again + 2, data + 2, f.head - 2) == 0);
		if (!f.fin)
			again[0] &= 0x7f;
		CHECK(again[0] == data[0]);
		size_t body = f.len < size - f.head ? (size_t)f.len : size - f.head;
		uint8_t copy[256];
		size_t m = body < sizeof(copy) ? body : sizeof(copy);
		ws_mask(copy, data + f.head, m, mask);
		ws_mask(copy, copy, m, mask);
		CHECK(memcmp(copy, data + f.head, m) == 0);
		if (f.len > size - f.head)
			return;
		data += f.head + f.len;
		size -= f.head + (size_t)f.len;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		frames(data + 1, size - 1);
	else
		handshake(data + 1, size - 1);
	(void)ws_close_code_valid(size);
	return 0;
}
