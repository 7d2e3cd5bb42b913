/* SPDX-License-Identifier: MIT */
/* Per-connection output queue, delayed replies, receive reassembly. */
#include "ts.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "protocol/json_scan.h"

/* Frames written per WRITEABLE callback before yielding to other clients. */
#define TS_WRITE_BATCH 64

static struct ts_out *
out_new(size_t len)
{
	struct ts_out *o = calloc(1, sizeof(*o) + LWS_PRE + len);

	if (o == NULL)
		abort();	/* a test tool: out of memory is fatal */
	o->len = len;
	return o;
}

static void
outq_append(struct ts_conn *c, struct ts_out *o)
{
	o->next = NULL;
	if (c->outq_tail != NULL)
		c->outq_tail->next = o;
	else
		c->outq_head = o;
	c->outq_tail = o;
	c->outq_bytes += o->len;
	if (c->outq_bytes > TS_MAX_OUTQ && !c->drop) {
		ts_log(c->srv, "conn %llu: %zu bytes unread, dropping it",
		       (unsigned long long)c->id, c->outq_bytes);
		ts_conn_drop(c);
		return;
	}
	lws_callback_on_writable(c->wsi);
}

static void
delay_fire(lws_sorted_usec_list_t *sul)
{
	struct ts_conn *c = lws_container_of(sul, struct ts_conn, delay_sul);
	lws_usec_t now = lws_now_usecs();

	while (c->delayed_head != NULL && c->delayed_head->due <= now) {
		struct ts_out *o = c->delayed_head;
		c->delayed_head = o->next;
		outq_append(c, o);
	}
	if (c->delayed_head != NULL)
		lws_sul_schedule(c->srv->ctx, 0, &c->delay_sul, delay_fire,
				 c->delayed_head->due - now);
}

static void
delay_insert(struct ts_conn *c, struct ts_out *o)
{
	struct ts_out **pp = &c->delayed_head;

	o->due = lws_now_usecs() + (lws_usec_t)c->srv->reply_delay_ms * 1000;
	while (*pp != NULL && (*pp)->due <= o->due)
		pp = &(*pp)->next;
	o->next = *pp;
	*pp = o;
	if (c->delayed_head == o)
		lws_sul_schedule(c->srv->ctx, 0, &c->delay_sul, delay_fire,
				 o->due - lws_now_usecs());
}

void
ts_conn_queue(struct ts_conn *c, const char *data, size_t len, bool binary,
	      bool is_reply)
{
	struct ts_out *o;

	if (c->dead || c->drop || c->close_now)
		return;
	o = out_new(len);
	o->binary = binary;
	memcpy(o->buf + LWS_PRE, data, len);
	if (is_reply && c->srv->reply_delay_ms > 0)
		delay_insert(c, o);
	else
		outq_append(c, o);
}

void
ts_conn_queue_fragments(struct ts_conn *c, const char *data, size_t len, bool binary,
			unsigned pieces)
{
	size_t step = pieces > 1 ? (len + pieces - 1) / pieces : len;

	if (c->dead || c->drop || c->close_now)
		return;
	for (size_t off = 0; off < len || off == 0;) {
		size_t n = len - off < step ? len - off : step;
		struct ts_out *o = out_new(n);
		bool first = off == 0, last = off + n >= len;
		o->binary = binary;
		o->write_flags = (first ? (binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT)
					: LWS_WRITE_CONTINUATION) |
				 (last ? 0 : LWS_WRITE_NO_FIN);
		memcpy(o->buf + LWS_PRE, data + off, n);
		outq_append(c, o);
		off += n;
		if (last)
			break;
	}
}

/* V1 frames are JSON objects; keys sorted as the Phoenix server writes them. */
static size_t
v1_encode(const struct phx_msg *m, char *out)
{
	size_t n = 0;
#define PUT(lit) do { memcpy(out + n, lit, sizeof(lit) - 1); n += sizeof(lit) - 1; } while (0)
	PUT("{\"event\":");
	n += json_escape(m->event.s, m->event.len, out + n);
	PUT(",\"payload\":");
	memcpy(out + n, m->payload.s, m->payload.len);
	n += m->payload.len;
	PUT(",\"ref\":");
	if (m->ref.s == NULL)
		PUT("null");
	else
		n += json_escape(m->ref.s, m->ref.len, out + n);
	PUT(",\"topic\":");
	n += json_escape(m->topic.s, m->topic.len, out + n);
	PUT("}");
#undef PUT
	return n;
}

static size_t
v1_encoded_len(const struct phx_msg *m)
{
	return sizeof("{\"event\":,\"payload\":,\"ref\":,\"topic\":}") - 1 +
	       json_escaped_len(m->event.s, m->event.len) + m->payload.len +
	       (m->ref.s == NULL ? 4 : json_escaped_len(m->ref.s, m->ref.len)) +
	       json_escaped_len(m->topic.s, m->topic.len);
}

static struct ts_out *
encode_msg(const struct ts_conn *c, const struct phx_msg *m)
{
	struct ts_out *o;

	if (c->vsn == 1) {
		if (m->kind != PHX_TEXT)
			return NULL;	/* V1 has no binary frames */
		o = out_new(v1_encoded_len(m));
		v1_encode(m, (char *)o->buf + LWS_PRE);
		return o;
	}
	o = out_new(phx_encoded_len(m, PHX_FROM_SERVER));
	phx_encode(m, PHX_FROM_SERVER, (char *)o->buf + LWS_PRE);
	o->binary = m->kind != PHX_TEXT;
	return o;
}

void
ts_conn_queue_msg(struct ts_conn *c, const struct phx_msg *m, bool is_reply)
{
	struct ts_out *o;

	if (c->dead || c->drop || c->close_now)
		return;
	o = encode_msg(c, m);
	if (o == NULL)
		return;
	if (is_reply && c->srv->reply_delay_ms > 0)
		delay_insert(c, o);
	else
		outq_append(c, o);
}

void
ts_conn_queue_flood(struct ts_conn *c, struct ts_channel *ch, uint64_t n, size_t size,
		    struct phx_field reply_ref)
{
	struct ts_out *o;

	if (c->dead || c->drop || c->close_now)
		return;
	o = out_new(0);
	o->flood = calloc(1, sizeof(*o->flood));
	if (o->flood == NULL)
		abort();
	o->flood->n = n;
	o->flood->size = size;
	memcpy(o->flood->topic, ch->topic, sizeof(ch->topic));
	memcpy(o->flood->join_ref, ch->join_ref, sizeof(ch->join_ref));
	o->flood->join_ref_null = ch->join_ref_null;
	o->flood->reply_ref_null = reply_ref.s == NULL;
	if (reply_ref.s != NULL)
		memcpy(o->flood->reply_ref, reply_ref.s, reply_ref.len);
	/* The generator takes its place in the queue; its frames are made as
	 * the client reads, so a large flood costs no memory up front. */
	outq_append(c, o);
}

static struct phx_field
opt_field(const char *s, bool is_null)
{
	return is_null ? (struct phx_field){ NULL, 0 } : phx_field_str(s);
}

/* Makes the next frame of a flood generator, or its final reply. */
static struct ts_out *
flood_step(struct ts_conn *c, struct ts_flood *f, bool *final)
{
	struct phx_msg m = { 0 };
	struct ts_out *o;
	char *payload;
	int hdr;

	m.kind = PHX_TEXT;
	m.join_ref = opt_field(f->join_ref, f->join_ref_null);
	m.topic = phx_field_str(f->topic);
	if (f->next < f->n) {
		payload = malloc(f->size + 64);
		if (payload == NULL)
			abort();
		hdr = snprintf(payload, 64, "{\"i\":%llu,\"payload\":\"",
			       (unsigned long long)f->next);
		memset(payload + hdr, 'x', f->size);
		memcpy(payload + hdr + f->size, "\"}", 2);
		m.event = phx_field_str("flood_msg");
		m.payload.s = payload;
		m.payload.len = (size_t)hdr + f->size + 2;
		o = encode_msg(c, &m);
		free(payload);
		f->next++;
		*final = false;
		return o;
	}
	*final = true;
	char resp[96];
	snprintf(resp, sizeof(resp), "{\"response\":{\"sent\":%llu},\"status\":\"ok\"}",
		 (unsigned long long)f->n);
	m.ref = opt_field(f->reply_ref, f->reply_ref_null);
	m.event = phx_field_str("phx_reply");
	m.payload = phx_field_str(resp);
	return encode_msg(c, &m);
}

static int
send_close(struct ts_conn *c, int code)
{
	lws_close_reason(c->wsi, (enum lws_close_status)code, c->close_reason, c->close_reason_len);
	return -1;
}

int
ts_conn_writeable(struct ts_conn *c)
{
	int budget = TS_WRITE_BATCH;

	if (c->drop) {
		struct linger lg = { 1, 0 };
		int fd = lws_get_socket_fd(c->wsi);

		/* Reset the TCP connection: no close frame, like a crashed server. */
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		shutdown(fd, SHUT_RDWR);
		return -1;
	}
	if (c->close_now)
		return send_close(c, c->close_code);

	while (c->outq_head != NULL && budget-- > 0) {
		struct ts_out *o = c->outq_head;
		struct ts_out *frame = o;
		bool final;

		if (budget < TS_WRITE_BATCH - 1 && lws_send_pipe_choked(c->wsi))
			break;
		if (o->flood != NULL) {
			frame = flood_step(c, o->flood, &final);
			if (final) {
				/* that was the reply: retire the generator */
				c->outq_head = o->next;
				if (c->outq_head == NULL)
					c->outq_tail = NULL;
				free(o->flood);
				free(o);
			}
			if (frame == NULL)
				continue;
		} else {
			c->outq_head = o->next;
			if (c->outq_head == NULL)
				c->outq_tail = NULL;
			c->outq_bytes -= o->len;
		}
		int n = lws_write(c->wsi, frame->buf + LWS_PRE, frame->len,
				  frame->write_flags ? (enum lws_write_protocol)frame->write_flags
				  : frame->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
		free(frame);
		if (n < 0)
			return -1;
		c->srv->frames_out++;
	}
	if (c->outq_head != NULL) {
		lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (c->close_code != 0)
		return send_close(c, c->close_code);
	return 0;
}

void
ts_conn_close(struct ts_conn *c, int code, bool now)
{
	if (c->dead || c->drop)
		return;
	c->close_code = code;
	c->close_now = now;
	lws_callback_on_writable(c->wsi);
}

void
ts_conn_drop(struct ts_conn *c)
{
	if (c->dead)
		return;
	c->drop = true;
	lws_callback_on_writable(c->wsi);
}

void
ts_conn_free_queues(struct ts_conn *c)
{
	struct ts_out *o, *next;

	for (o = c->outq_head; o != NULL; o = next) {
		next = o->next;
		free(o->flood);
		free(o);
	}
	for (o = c->delayed_head; o != NULL; o = next) {
		next = o->next;
		free(o);
	}
	c->outq_head = c->outq_tail = c->delayed_head = NULL;
	c->outq_bytes = 0;
	lws_sul_cancel(&c->delay_sul);
	lws_sul_cancel(&c->idle_sul);
	free(c->rx);
	c->rx = NULL;
	c->rx_len = c->rx_cap = 0;
}

static void
idle_check(lws_sorted_usec_list_t *sul)
{
	struct ts_conn *c = lws_container_of(sul, struct ts_conn, idle_sul);
	lws_usec_t limit = (lws_usec_t)c->srv->opt.idle_timeout_ms * 1000;
	lws_usec_t idle = lws_now_usecs() - c->last_rx;

	if (idle >= limit) {
		/* What Bandit sends when the websocket idle timeout expires. */
		ts_conn_close(c, 1002, true);
		return;
	}
	lws_sul_schedule(c->srv->ctx, 0, &c->idle_sul, idle_check, limit - idle);
}

void
ts_conn_touch(struct ts_conn *c)
{
	c->last_rx = lws_now_usecs();
	if (c->srv->opt.idle_timeout_ms > 0 && c->idle_sul.list.owner == NULL)
		lws_sul_schedule(c->srv->ctx, 0, &c->idle_sul, idle_check,
				 (lws_usec_t)c->srv->opt.idle_timeout_ms * 1000);
}

int
ts_conn_rx(struct ts_conn *c, const void *in, size_t len)
{
	bool first = lws_is_first_fragment(c->wsi);
	bool last = lws_is_final_fragment(c->wsi) &&
		    lws_remaining_packet_payload(c->wsi) == 0;

	ts_conn_touch(c);
	if (first && lws_remaining_packet_payload(c->wsi) == 0 && last) {
		/* the common case: a whole frame in one piece */
		c->srv->frames_in++;
		return ts_phoenix_frame(c, in, len, lws_frame_is_binary(c->wsi));
	}
	if (first)
		c->rx_len = 0;
	if (c->rx_len + len > TS_MAX_RX_FRAME) {
		ts_conn_close(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, true);
		return 0;
	}
	if (c->rx_len + len > c->rx_cap) {
		size_t cap = c->rx_cap ? c->rx_cap : 4096;
		while (cap < c->rx_len + len)
			cap *= 2;
		unsigned char *p = realloc(c->rx, cap);
		if (p == NULL)
			abort();
		c->rx = p;
		c->rx_cap = cap;
	}
	memcpy(c->rx + c->rx_len, in, len);
	c->rx_len += len;
	if (!last)
		return 0;
	c->srv->frames_in++;
	return ts_phoenix_frame(c, (const char *)c->rx, c->rx_len,
				lws_frame_is_binary(c->wsi));
}
