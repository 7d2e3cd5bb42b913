/* SPDX-License-Identifier: MIT */
/*
 * phxd-testserver: a scriptable Phoenix Channels V2 peer.
 *
 * One libwebsockets service thread runs everything: the websocket endpoint
 * (ts_phoenix.c: socket and channel semantics), the per-connection output
 * queues (ts_conn.c) and the HTTP fault-control endpoint (ts_control.c).
 */
#ifndef PHXD_TS_H
#define PHXD_TS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "protocol/phx_codec.h"

#define TS_MAX_RX_FRAME (8u * 1024 * 1024)	/* larger client frames close 1009 */
#define TS_MAX_OUTQ (64u * 1024 * 1024)		/* a client this far behind is dropped */
#define TS_MAX_FLOOD_SIZE (16u * 1024 * 1024)

/* Behaviour of the server versions the test server can imitate. */
struct ts_quirks {
	unsigned max_channels;		/* 0: no cap (Phoenix before 1.7.24) */
	bool drop_stale_join_ref;	/* 1.8.3+: messages with an old join_ref ignored */
	bool drop_null_join_ref;	/* 1.8.3 .. 1.8.11: messages without one ignored */
	int disconnect_code;		/* close code of a forced disconnect */
	bool leave_null_join_ref;	/* 1.8+: a phx_leave with a null join_ref leaves */
	bool crash_reason;		/* 1.8.10+: phx_error says {"reason":"channel_crash"} */
	bool checks_auth_token;		/* 1.8+: the bearer subprotocol is read and checked */
};

struct ts_options {
	const char *host;
	int port;
	unsigned idle_timeout_ms;	/* 0 disables; Phoenix default 60000 */
	bool verbose;
	const char *tls_cert, *tls_key;	/* both set: wss:// */
	const char *tls_client_ca;	/* set: clients need a certificate from this CA */
	int tally_fd;			/* --tally: "tally" pushes are appended here; -1: none */
	struct ts_quirks quirks;
};

enum ts_refuse_mode {
	TS_REFUSE_NONE = 0,
	TS_REFUSE_CLOSE,	/* accept the TCP connection and close it at once */
	TS_REFUSE_HTTP,		/* answer the upgrade with an HTTP status */
};

struct ts_conn;

struct ts_server {
	struct ts_options opt;
	struct lws_context *ctx;
	struct ts_conn *conns;		/* every websocket connection */
	unsigned conn_count;
	uint64_t next_conn_id;
	volatile int stopping;

	/* Fault controls, changed through the control endpoint. */
	bool mute_heartbeats;
	unsigned reply_delay_ms;
	enum ts_refuse_mode refuse_mode;
	int refuse_status;		/* HTTP status for TS_REFUSE_HTTP */
	lws_usec_t refuse_until;	/* 0: until told otherwise */
	bool refusing;

	/* Counters reported by /control/stats. */
	uint64_t connects_total;
	uint64_t refused_total;
	uint64_t frames_in;
	uint64_t frames_out;
	uint64_t heartbeats;
};

struct ts_channel {
	struct ts_channel *next;
	char topic[PHX_MAX_FIELD + 1];
	char join_ref[PHX_MAX_FIELD + 1];
	bool join_ref_null;
	bool is_load;		/* load:* channel, else rooms:* */
	bool tracked;		/* presence:* channel: this join is in the presence list */
	char presence_ref[PHX_MAX_FIELD + 32];
	uint64_t sink_count;
};

/* A flood still to be generated; copies what it needs of its channel, which
 * may be gone before the client has read the whole flood. */
struct ts_flood {
	uint64_t next, n;
	size_t size;
	char topic[PHX_MAX_FIELD + 1];
	char join_ref[PHX_MAX_FIELD + 1];
	char reply_ref[PHX_MAX_FIELD + 1];
	bool join_ref_null, reply_ref_null;
};

/* An outgoing frame, or a flood generator (flood != NULL). */
struct ts_out {
	struct ts_out *next;
	lws_usec_t due;		/* delayed replies: not before this time */
	bool binary;
	int write_flags;	/* a fragment: its lws_write flags; 0 for a whole frame */
	size_t len;
	struct ts_flood *flood;
	unsigned char buf[];	/* LWS_PRE headroom then the frame */
};

struct ts_conn {
	struct ts_conn *next, *prev;
	struct ts_server *srv;
	struct lws *wsi;
	uint64_t id;
	int vsn;			/* 1 or 2 */
	char socket_id[128];		/* "user_socket:<user>" */
	json_t *connect_params;		/* object of the query parameters */
	char *auth_token;		/* from the 1.8 subprotocol, or NULL */
	json_t *headers;		/* the request headers the "headers" param names */
	struct ts_channel *channels;
	unsigned channel_count;

	struct ts_out *outq_head, *outq_tail;
	size_t outq_bytes;
	struct ts_out *delayed_head;	/* replies held by the delay fault */
	lws_sorted_usec_list_t delay_sul;

	unsigned char *rx;
	size_t rx_len, rx_cap;

	lws_usec_t last_rx;
	lws_sorted_usec_list_t idle_sul;

	char *http_body;		/* control endpoint: response body still to send */
	size_t http_body_len;

	int close_code;			/* close with this code once the queue is empty */
	unsigned char close_reason[123];	/* and these bytes as the reason */
	size_t close_reason_len;
	bool close_now;			/* ... or before sending anything else */
	bool drop;			/* hang up without a close frame */
	bool dead;
};

/* ts_conn.c */
void ts_conn_queue(struct ts_conn *c, const char *data, size_t len, bool binary,
		   bool is_reply);
/* One message sent as `pieces` websocket fragments (continuation frames). */
void ts_conn_queue_fragments(struct ts_conn *c, const char *data, size_t len, bool binary,
			     unsigned pieces);
void ts_conn_queue_msg(struct ts_conn *c, const struct phx_msg *m, bool is_reply);
void ts_conn_queue_flood(struct ts_conn *c, struct ts_channel *ch, uint64_t n,
			 size_t size, struct phx_field reply_ref);
int ts_conn_writeable(struct ts_conn *c);
void ts_conn_close(struct ts_conn *c, int code, bool now);
void ts_conn_drop(struct ts_conn *c);
void ts_conn_free_queues(struct ts_conn *c);
int ts_conn_rx(struct ts_conn *c, const void *in, size_t len);
void ts_conn_touch(struct ts_conn *c);

/* ts_phoenix.c */
int ts_phoenix_established(struct ts_conn *c);
int ts_phoenix_frame(struct ts_conn *c, const char *data, size_t len, bool binary);
void ts_phoenix_closed(struct ts_conn *c);
bool ts_phoenix_accept_upgrade(struct ts_server *s, struct lws *wsi, int *http_status);

/* ts_control.c */
int ts_control_http(struct ts_server *s, struct ts_conn *pss, struct lws *wsi,
		    const char *path);
int ts_control_http_writeable(struct ts_conn *pss, struct lws *wsi);
void ts_control_refuse_expire(struct ts_server *s);

/* ts_main.c */
void ts_log(struct ts_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
