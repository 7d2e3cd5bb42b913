/* SPDX-License-Identifier: MIT */
/*
 * phx_codec: Phoenix Channels V2 serializer, both directions, no I/O.
 *
 * Text frame:   [join_ref, ref, topic, event, payload]   (JSON)
 * Binary frames (first byte is the kind, lengths one byte each):
 *   client push     00 jr_len ref_len topic_len event_len jr ref topic event payload
 *   server push     00 jr_len topic_len event_len jr topic event payload
 *   server reply    01 jr_len ref_len topic_len status_len jr ref topic status payload
 *   broadcast       02 topic_len event_len topic event payload
 *
 * Ownership: a decoded phx_msg points into the frame it was decoded from (and
 * into its own store[] for strings that had JSON escapes); it is valid while
 * that frame is. Nothing here allocates or exits.
 */
#ifndef PHXD_PHX_CODEC_H
#define PHXD_PHX_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Header strings (refs, topic, event, status) are at most this long, which is
 * what the binary format can carry. */
#define PHX_MAX_FIELD 255

/* A string field; s == NULL is JSON null (only join_ref and ref may be null). */
struct phx_field {
	const char *s;
	size_t len;
};

enum phx_kind {
	PHX_TEXT = 0,		/* JSON array frame */
	PHX_BIN_PUSH,		/* binary kind 0 (client push or server push) */
	PHX_BIN_REPLY,		/* binary kind 1, server only */
	PHX_BIN_BROADCAST,	/* binary kind 2, server only */
};

/* Which side produced a frame: the binary kind-0 layout depends on it. */
enum phx_origin {
	PHX_FROM_CLIENT,
	PHX_FROM_SERVER,
};

struct phx_msg {
	enum phx_kind kind;
	struct phx_field join_ref;
	struct phx_field ref;
	struct phx_field topic;
	struct phx_field event;		/* "phx_reply" for binary replies */
	struct phx_field status;	/* binary replies; text ones once read */
	struct phx_field payload;	/* JSON text, or raw bytes for binary */
	/* A text phx_reply's payload, read by phx_decode_text while it checks
	 * it, for phx_reply_parse: its response, or why it is not a reply. */
	bool reply_read;
	struct phx_field response;
	const char *reply_fault;
	char store[4 * PHX_MAX_FIELD];	/* unescaped strings live here */
};

enum phx_err {
	PHX_OK = 0,
	PHX_ERR_NOT_JSON,	/* not a valid JSON document */
	PHX_ERR_NOT_ARRAY,	/* valid JSON, but not an array */
	PHX_ERR_ARITY,		/* array with the wrong number of elements */
	PHX_ERR_TYPE,		/* an element of the wrong type */
	PHX_ERR_OVERSIZE,	/* a header string longer than PHX_MAX_FIELD */
	PHX_ERR_TRUNCATED,	/* binary frame shorter than its header says */
	PHX_ERR_KIND,		/* unknown binary kind for this origin */
	PHX_ERR_EMPTY,		/* zero-length frame */
	PHX_ERR_NOT_REPLY,	/* phx_reply payload without status/response */
};

struct phx_error {
	enum phx_err code;
	char detail[96];
};

const char *phx_err_name(enum phx_err code);

/* Decode flags. */
#define PHX_DECODE_STRICT	0u
/* Accept arrays longer than five, ignoring the rest (what the server does). */
#define PHX_DECODE_ALLOW_EXTRA	1u

/* Decodes a text frame. Returns PHX_OK or an error (err may be NULL). */
enum phx_err phx_decode_text(const char *frame, size_t len, unsigned flags,
			     struct phx_msg *out, struct phx_error *err);

/* Decodes a binary frame sent by `origin`. */
enum phx_err phx_decode_binary(const void *frame, size_t len, enum phx_origin origin,
			       struct phx_msg *out, struct phx_error *err);

/*
 * Encoding. The caller fills a phx_msg's fields (store[] is not used) and
 * asks for the exact size first, so it can place the frame where it wants
 * (for instance after headroom for a frame header):
 *   len = phx_encoded_len(&m);  buf = malloc(HEAD + len);
 *   phx_encode(&m, buf + HEAD);
 * For PHX_TEXT the payload must already be valid JSON text; it is copied as is.
 * phx_check_encodable() says whether the header fields fit the frame kind.
 * For PHX_BIN_PUSH, `origin` picks the client layout (with ref) or the server
 * layout (without).
 */
enum phx_err phx_check_encodable(const struct phx_msg *m, enum phx_origin origin,
				 struct phx_error *err);
size_t phx_encoded_len(const struct phx_msg *m, enum phx_origin origin);
/* At least phx_encoded_len(), counted without looking at the bytes of the
 * fields: for a buffer that is reused, so a few bytes too many cost
 * nothing and the count would cost a pass over every field. */
size_t phx_encoded_max(const struct phx_msg *m, enum phx_origin origin);
size_t phx_encode(const struct phx_msg *m, enum phx_origin origin, char *out);

/* A reply as the client sees it: status and response. */
struct phx_reply {
	struct phx_field status;
	struct phx_field response;	/* JSON text, or bytes when binary */
	bool binary;
};

/*
 * Splits a decoded phx_reply message into status and response. For text
 * replies the payload must be an object with a string "status" and a
 * "response"; status escapes are not allowed (Phoenix sends "ok"/"error").
 * A message from phx_decode_text is not read again; one made by hand
 * (reply_read false) is.
 */
enum phx_err phx_reply_parse(const struct phx_msg *m, struct phx_reply *out,
			     struct phx_error *err);

/* True when f holds exactly the C string s. */
bool phx_field_eq(struct phx_field f, const char *s);

/* Makes a field from a NUL-terminated string (NULL gives a JSON null). */
struct phx_field phx_field_str(const char *s);

/* Monotonic message refs as Phoenix clients send them: "1", "2", ... */
struct phx_refgen {
	uint64_t last;
};

/* Writes the next ref into buf (at least PHX_REF_BUFSZ bytes), NUL-terminated;
 * returns its length. */
#define PHX_REF_BUFSZ 21
size_t phx_ref_next(struct phx_refgen *g, char *buf);

#endif
