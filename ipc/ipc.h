/*
 * ipc: the socket server of the daemon (libevent thread). It accepts
 * clients, reads bounded request lines, dispatches them to the command
 * table, writes one response per request and fans server messages and
 * state events out to subscribers, encoding each once.
 *
 * Client lifetime: a client is reference-counted; a command that answers
 * later holds a reference (ipc_pending), so a client that went away is
 * only marked dead and freed when the last answer is dropped.
 */
#ifndef PHXD_IPC_SERVER_H
#define PHXD_IPC_SERVER_H

#include "daemon/phxd.h"
#include "phxd-ipc.h"

#include <jansson.h>
#include <stdbool.h>

struct ipc_server;
struct ipc_client;

/* Opens the listener: an activated socket (sd_listen_fds) when there is one,
 * else `path`. False with a log on failure. */
struct ipc_server *ipc_server_new(struct phxd *d, const char *path);
void ipc_server_free(struct ipc_server *srv);
/* Stops accepting (shutdown) and answers nothing more. */
void ipc_server_close_listener(struct ipc_server *srv);
size_t ipc_server_client_count(const struct ipc_server *srv);
bool ipc_server_activated(const struct ipc_server *srv);

/* Fan-out from sessions. */
void ipc_publish_message(struct ipc_server *srv, const struct phxd_conn *pc,
			 const struct phx_msg *m);
void ipc_publish_event(struct ipc_server *srv, const struct phxd_conn *pc,
		       const struct sess_event *ev);

/* ---- for the commands (ipc/cmd_*.c) ---- */

struct ipc_cmd {
	const char *name;
	/* `req` is the whole request object; answer exactly once, now or
	 * later through an ipc_pending. */
	void (*exec)(struct phxd *d, struct ipc_client *c, json_t *id, json_t *req);
};

const struct ipc_cmd *ipc_cmd_find(const char *name);

/* result is stolen. */
void ipc_reply_ok(struct ipc_client *c, json_t *id, json_t *result);
void ipc_reply_error(struct ipc_client *c, json_t *id, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Error with extra members (stolen) merged into the error object. */
void ipc_reply_error_with(struct ipc_client *c, json_t *id, const char *code, json_t *extra,
			  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* An answer to give later. */
struct ipc_pending;
struct ipc_pending *ipc_pending_new(struct ipc_client *c, json_t *id);
void ipc_pending_ok(struct ipc_pending *p, json_t *result);	/* frees p */
void ipc_pending_error(struct ipc_pending *p, const char *code, json_t *extra, const char *msg);
/* Answers a pending request from a session result (join, leave, push). */
void ipc_pending_session_done(void *pending, const struct sess_result *r);

/* Request field helpers: false after replying bad_request. */
bool ipc_get_string(struct ipc_client *c, json_t *id, json_t *req, const char *key,
		    bool required, const char **out);
bool ipc_get_uint(struct ipc_client *c, json_t *id, json_t *req, const char *key,
		  json_int_t max, json_int_t *out);
bool ipc_get_bool(struct ipc_client *c, json_t *id, json_t *req, const char *key, bool *out);
/* The connection named by "conn", or the only one; NULL after replying. */
struct phxd_conn *ipc_get_conn(struct phxd *d, struct ipc_client *c, json_t *id, json_t *req);
/* The server's code for a session outcome. */
const char *ipc_outcome_code(enum sess_outcome o);

/* Subscriptions. */
enum ipc_sub_kind { SUB_MESSAGES, SUB_EVENTS };
/* conn NULL: every connection; topic ending in '*' is a prefix pattern;
 * events NULL: every event. Returns the subscription id. */
uint64_t ipc_subscribe(struct ipc_client *c, enum ipc_sub_kind kind, const char *conn,
		       const char *topic, json_t *events);
bool ipc_unsubscribe(struct ipc_client *c, uint64_t sub);

/* An event line's object (cmd_events.c); the caller owns it. */
json_t *ipc_event_json(const struct phxd_conn *pc, const struct sess_event *ev);

#endif
