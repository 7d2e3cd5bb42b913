/* SPDX-License-Identifier: MIT */
/*
 * ws_codec: the client side of RFC 6455, without I/O: the opening
 * handshake's request and response, frame headers, masking. Everything
 * here reads bytes a server sent, so every length is checked and nothing
 * is read past `len`. No allocation.
 */
#ifndef PHXD_WS_CODEC_H
#define PHXD_WS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
	WS_CONT = 0x0,
	WS_TEXT = 0x1,
	WS_BINARY = 0x2,
	WS_CLOSE = 0x8,
	WS_PING = 0x9,
	WS_PONG = 0xa,
};

/* A client key: 16 random bytes, base64 (24 characters and a NUL). */
#define WS_KEY_SIZE 25
/* The largest frame header (2 + 8 length + 4 mask). */
#define WS_HEADER_MAX 14

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)), 28 + NUL. */
void ws_accept_for(const char *key, char out[29]);

struct ws_response {
	int status;		/* the status line's code */
	bool upgrade;		/* Upgrade: websocket */
	bool connection;	/* Connection: names upgrade */
	bool accept_ok;		/* Sec-WebSocket-Accept matches the key */
	const char *protocol;	/* Sec-WebSocket-Protocol's value (in buf), or NULL */
	size_t protocol_len;
	bool extensions;	/* Sec-WebSocket-Extensions present: none was offered */
};

/*
 * Parses a handshake response in buf[0..len). Returns the length of the
 * head (through the blank line) once it is all there, 0 while it is not,
 * -1 when it is not HTTP. Fields are filled only on a positive return.
 */
long ws_response_parse(const char *buf, size_t len, const char *key, struct ws_response *r);

/* True when the server's choice `proto` is one of the comma-separated
 * `offered` names. */
bool ws_protocol_offered(const char *offered, const char *proto, size_t len);

struct ws_frame {
	bool fin;
	enum ws_opcode opcode;
	uint64_t len;		/* payload bytes */
	size_t head;		/* header bytes, before the payload */
};

enum ws_parse {
	WS_NEED_MORE = 0,
	WS_FRAME_OK = 1,
	WS_BAD_FRAME = -1,	/* a protocol error: close with 1002 */
};

/*
 * Reads a frame header a server sent from buf[0..len). A server's frames
 * are never masked and use no extension bits; control frames are final
 * and short; opcodes are the six above. `why` names the fault.
 */
enum ws_parse ws_frame_parse(const uint8_t *buf, size_t len, struct ws_frame *f,
			     const char **why);

/* Writes a client frame header (masked with `mask`) and returns its length. */
size_t ws_frame_header(uint8_t out[WS_HEADER_MAX], enum ws_opcode op, uint64_t len,
		       const uint8_t mask[4]);

/* dst = src ^ mask, the mask's phase starting at 0 (dst may be src). */
void ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4]);

/* A close code a peer may send (RFC 6455 7.4): 1000-1003, 1007-1011,
 * 1012-1014 as registered since, 3000-4999. */
bool ws_close_code_valid(unsigned code);

#endif
