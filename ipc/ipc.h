/* SPDX-License-Identifier: MIT */
/*
 * ipc: the socket server of the daemon (libevent thread). It accepts
 * clients (ipc_listen.c), reads bounded request lines and writes each
 * client's output in batches (ipc_client.c), dispatches requests to the
 * command table (cmd.c, one file per command), and fans server messages
 * and state events out to subscribers (ipc_subs.c), encoding each line
 * once (ipc_encode.c).
 *
 * Client lifetime: a client is reference-counted; a request that answers
 * later holds a reference (ipc_pending), so a client that went away is
 * only marked dead and freed from the loop when the last one is dropped.
 */
#ifndef PHXD_IPC_SERVER_H
#define PHXD_IPC_SERVER_H

#include "daemon/outbox.h"
#include "daemon/phxd.h"
#include "phxd-ipc.h"

#include <jansson.h>
#include <stdbool.h>

struct ipc_server;
struct ipc_client;

/* Opens the listener: an activated socket (sd_listen_fds) when there is one,
 * else `path`. NULL with a log on failure. */
struct ipc_server *ipc_server_new(struct phxd *d, const char *path);
/* Answers what clients have already sent (shutting_down), giving those
 * accepted a moment before and silent so far up to hear_out_ms in all to
 * say their first request, then closes them. */
void ipc_server_free(struct ipc_server *srv, unsigned hear_out_ms);
/* Stops accepting (shutdown) and answers nothing more. */
void ipc_server_close_listener(struct ipc_server *srv);
size_t ipc_server_client_count(const struct ipc_server *srv);
/* Clients, their pending requests, subscriptions and queued output. */
json_t *ipc_server_stats(const struct ipc_server *srv);
bool ipc_server_activated(const struct ipc_server *srv);
/* Accepts and client reads so far: grows whenever a client was read. */
uint64_t ipc_server_reads(const struct ipc_server *srv);

/* Fan-out from sessions. */
void ipc_publish_message(struct ipc_server *srv, const struct phxd_conn *pc,
			 const struct phx_msg *m);
void ipc_publish_event(struct ipc_server *srv, const struct phxd_shard *sh,
		       const struct sess_event *ev);
/* An event line of `kind` for conn's event streams; build() makes its
 * object (returned, then owned by the caller) only if somebody listens. */
void ipc_publish_built(struct ipc_server *srv, const char *conn, const char *kind,
		       json_t *(*build)(void *arg), void *arg);

/* ---- for the commands (ipc/cmd_*.c) ---- */

/* One request being dispatched; what the command's flags asked for is
 * resolved before exec runs. */
struct ipc_request {
	struct phxd *d;
	struct ipc_client *c;
	json_t *id;		/* borrowed; JSON null when the request had none */
	json_t *body;		/* the whole request object */
	struct phxd_conn *pc;	/* CMD_CONN: the connection; CMD_CONN_FILTER: it or NULL */
	const char *topic;	/* CMD_TOPIC */
	/* A push without "id": never answered; a failure, whatever it is,
	 * goes to the events stream as push_failed. */
	bool notification;
};

/* What a command needs resolved before it runs. */
#define CMD_CONN	0x1	/* "conn", or the only connection */
#define CMD_CONN_FILTER	0x2	/* optional "conn"; unknown names are an error */
#define CMD_TOPIC	0x4	/* a required string "topic" */
#define CMD_TIMERS	0x8	/* may arm session timers: re-arm the loop's after */

struct ipc_cmd {
	const char *name;
	unsigned flags;
	/* Answers exactly once, now or later through an ipc_pending. */
	void (*exec)(struct ipc_request *r);
};

const struct ipc_cmd *ipc_cmd_find(const char *name);
/* Parses and runs one request line of a client. */
void ipc_dispatch_line(struct ipc_client *c, const char *line, size_t len);

/* result is stolen. */
void ipc_reply_ok(struct ipc_request *r, json_t *result);
void ipc_reply_error(struct ipc_request *r, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* With extra members (stolen) merged into the error object. */
void ipc_reply_error_with(struct ipc_request *r, const char *code, json_t *extra,
			  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* An answer to give later; NULL after replying when the client has
 * client_max_pending requests waiting already. */
struct ipc_pending;
struct ipc_pending *ipc_pending_new(struct ipc_request *r);
/* Hands the session's request handle to the pending answer, so that it can
 * be cancelled when its client goes away. */
void ipc_pending_track(struct ipc_pending *p, struct sess_req *h);
/* The same for a durable push being stored. */
void ipc_pending_track_store(struct ipc_pending *p, struct outbox_msg *m);
/* Answers a pending request with an error and frees it. */
void ipc_pending_answer_error(struct ipc_pending *p, const char *code, const char *message);
/* Answers a pending request from a session result (join, leave, push) and
 * frees it: the session's done callback. */
void ipc_pending_session_done(void *pending, const struct sess_result *res);
/* Answers a pending request with result (stolen) and frees it. */
void ipc_pending_answer_ok(struct ipc_pending *p, json_t *result);

/* Request field helpers: false after replying bad_request. */
bool ipc_get_string(struct ipc_request *r, const char *key, bool required, const char **out);
bool ipc_get_uint(struct ipc_request *r, const char *key, json_int_t max, json_int_t *out);
bool ipc_get_bool(struct ipc_request *r, const char *key, bool *out);
/* The server's code for a session outcome. */
const char *ipc_outcome_code(enum sess_outcome o);

/* A JSON string of any bytes: invalid UTF-8 becomes U+FFFD. Never NULL. */
json_t *ipc_jstr(const char *s);
json_t *ipc_jstrn(const char *s, size_t len);

/* Subscriptions. */
enum ipc_sub_kind { SUB_MESSAGES, SUB_EVENTS };
/* conn NULL: every connection; topic ending in '*' is a prefix pattern;
 * events NULL: every event. Returns the subscription id, or 0 after
 * replying when the client holds client_max_subscriptions already. */
uint64_t ipc_subscribe(struct ipc_request *r, enum ipc_sub_kind kind, const char *conn,
		       const char *topic, json_t *events);
bool ipc_unsubscribe(struct ipc_client *c, uint64_t sub);

/* Client holds (join with "hold":"client"). Records that r's client holds
 * r->topic of r->pc; false after replying limit_reached. */
bool ipc_hold_add(struct ipc_request *r);
/* Forgets that c holds the topic (a leave), without releasing it. */
void ipc_hold_drop(struct ipc_client *c, const char *conn, const char *topic);
uint64_t ipc_client_id(const struct ipc_client *c);

/* Who wants ch joined: {"config":B,"runtime":B,"clients":N} (cmd_status.c). */
json_t *ipc_wanted_json(const struct channel *ch);

/* cmd_push.c: runs line if it is a plain push; false to take the general
 * path (nothing was answered). */
bool ipc_push_fast(struct ipc_client *c, const char *line, size_t len);
/* The connection of that name, or the only one when name is NULL; NULL
 * when there is no such connection (or several and no name). */
struct phxd_conn *ipc_find_conn(struct phxd *d, const char *name);
struct phxd *ipc_client_daemon(const struct ipc_client *c);

/* {"type":"push_failed",...} on the events streams: a notification push
 * (no "id") that failed. conn, topic, event: as far as they are known. */
void ipc_publish_push_failed(struct ipc_server *srv, const char *conn, const char *topic,
			     const char *event, const char *code, const char *message);

/* An event line's object (cmd_events.c); the caller owns it. */
json_t *ipc_event_json(const struct phxd_shard *sh, const struct sess_event *ev);

#endif
