/* SPDX-License-Identifier: MIT */
/*
 * libphxd: the C client of the phxd socket protocol (docs/ipc.md).
 *
 * Two ways to use it:
 *  - blocking calls (phxd_push, phxd_join, phxd_status, ...), each waiting
 *    for its own response; stream lines that arrive meanwhile go to their
 *    subscription callbacks;
 *  - non-blocking, for programs with their own event loop: watch
 *    phxd_fd() for reading (and for writing while phxd_want_write()),
 *    call phxd_dispatch() when it is ready; phxd_send() queues a request
 *    whose response reaches a callback.
 *
 * Results are JSON text (the "result" member of the response), allocated
 * with malloc: the caller frees them with free(). Functions return
 * PHXD_OK or a negative PHXD_E*; after PHXD_EDAEMON, phxd_error_code()
 * is the daemon's code ("reply_error", "not_joined", ...).
 * The library never exits, never prints and has no global state. A client
 * is not thread-safe: use one per thread, or serialise every call on it.
 *
 * Callbacks may call any function on their client but phxd_disconnect(),
 * blocking calls included (answering a message is the usual case): lines
 * are read first and handled one at a time, and a call made inside a
 * callback takes only its own answer; the stream lines that arrive
 * meanwhile are delivered once the callback has returned. So phxd_wait()
 * inside a callback delivers nothing.
 */
#ifndef LIBPHXD_H
#define LIBPHXD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PHXD_OK 0
#define PHXD_EUNREACHABLE (-1)	/* no daemon at the socket, or it went away */
#define PHXD_ETIMEOUT (-2)	/* no response in time (or the daemon's "timeout") */
#define PHXD_EDAEMON (-3)	/* the daemon answered an error: phxd_error_code() */
#define PHXD_ENOMEM (-4)
#define PHXD_EPROTOCOL (-5)	/* the daemon sent something unreadable */
#define PHXD_EINVAL (-6)	/* bad arguments (a payload that is not JSON, ...) */

struct phxd_client;

/* ---- connecting ---- */

/* Connects to `path` (NULL: $PHXD_SOCKET, else /run/phxd/phxd.sock) and says
 * hello, waiting at most 60 s for phxd's answer. On success *out is a new
 * client, which the caller releases with phxd_disconnect(). On failure *out
 * is NULL and the return value says why: PHXD_EUNREACHABLE (errno set by
 * socket/connect: ENOENT no socket, ECONNREFUSED no daemon, EACCES not
 * allowed), PHXD_ETIMEOUT, PHXD_EINVAL (path too long), PHXD_ENOMEM,
 * PHXD_EDAEMON (refused: busy, forbidden, version_mismatch). */
int phxd_connect(const char *path, struct phxd_client **out);
/* The same, waiting at most timeout_ms (-1: no limit) for phxd's hello;
 * timeout_ms also becomes the client's timeout for blocking calls. */
int phxd_connect_timeout(const char *path, int timeout_ms, struct phxd_client **out);
/* Closes the connection and frees c (NULL is a no-op). Every phxd_send
 * callback still waiting is called first with PHXD_EUNREACHABLE. Not from
 * inside a callback of c. What c held in phxd (subscriptions, topics
 * joined with phxd_hold()) ends with it; phxd_join() joins stay. */
void phxd_disconnect(struct phxd_client *c);

/* ---- errors ---- */

/* The last error: a daemon code (docs/ipc.md: "reply_error", "not_joined",
 * ...) or "unreachable", "timeout", "protocol", "nomem", "invalid"; its
 * message; the daemon's whole error object as JSON (with "status" and
 * "response" for a reply_error), or NULL. The strings belong to c and are
 * valid until its next call. */
const char *phxd_error_code(const struct phxd_client *c);
const char *phxd_error_message(const struct phxd_client *c);
const char *phxd_error_json(const struct phxd_client *c);
/* The last whole response line (JSON, with "id" and "ok"), or NULL; owned
 * by c, valid until its next call. */
const char *phxd_last_response(const struct phxd_client *c);

/* Blocking calls wait this long for their response (default: the connect
 * timeout, 60000 ms; -1 waits forever). */
void phxd_set_timeout(struct phxd_client *c, int timeout_ms);

/* ---- blocking calls ----
 * Each returns PHXD_OK, or PHXD_EDAEMON (phxd_error_code() says which),
 * PHXD_ETIMEOUT (no answer within the timeout, or the daemon's "timeout"),
 * PHXD_EUNREACHABLE (phxd went away: c is dead, only phxd_disconnect() is
 * left), PHXD_EINVAL, PHXD_ENOMEM, PHXD_EPROTOCOL. A `char **` out
 * argument may be NULL; otherwise it receives malloc'ed JSON text that the
 * caller frees, or NULL on failure. `conn` NULL: the only connection. */

/* Any request: `request` is a JSON object with "op" (no "id"). *result:
 * the response's "result". */
int phxd_call(struct phxd_client *c, const char *request, char **result);

/* *result: connections, topics and counters (docs/ipc.md "status"). */
int phxd_status(struct phxd_client *c, const char *conn, char **result);
/* Keeps topic joined, through reconnects, until a leave, whether or not c
 * stays connected. payload: the join parameters, a JSON object text, or
 * NULL. Returns with the first outcome; *response: the server's join reply.
 * A refused join (PHXD_EDAEMON, "reply_error") stays wanted and retried. */
int phxd_join(struct phxd_client *c, const char *conn, const char *topic, const char *payload,
	      char **response);
/* Like phxd_join, but the topic is held only for as long as c is connected:
 * phxd leaves it when c disconnects (or dies) and nobody else wants it. */
int phxd_hold(struct phxd_client *c, const char *conn, const char *topic, const char *payload,
	      char **response);
/* Drops what c wanted of topic (a join, a hold). phxd leaves it when nobody
 * else (the config, another client's hold) still wants it; otherwise it
 * stays joined and phxd_last_response() says "left":false and who wants it. */
int phxd_leave(struct phxd_client *c, const char *conn, const char *topic);

#define PHXD_PUSH_AWAIT 1u	/* wait for the server's reply */
#define PHXD_PUSH_BINARY 2u	/* payload is bytes (payload_len) for a binary frame */
/* Stored by phxd's outbox before the answer, and delivered (again after
 * outages and restarts of phxd) until the server replies; not with
 * PHXD_PUSH_AWAIT or a timeout. *response gets the stored push's id
 * (decimal); deliveries are "outbox" lines on phxd_events() streams. */
#define PHXD_PUSH_DURABLE 4u
/* Pushes event to topic. payload: JSON text (NULL: {}), or payload_len
 * bytes with PHXD_PUSH_BINARY (copied; the caller keeps its buffer).
 * timeout_ms 0: the connection's push_timeout_ms. Without PHXD_PUSH_AWAIT
 * it returns once phxd has handed the frame to the websocket. With it,
 * *response gets the reply's response, the JSON text the server sent
 * ({"binary":"BASE64"} for a binary reply); a reply of another status is
 * PHXD_EDAEMON "reply_error" with the status and response in
 * phxd_error_json(). A payload over several lines goes out on one. */
int phxd_push(struct phxd_client *c, const char *conn, const char *topic, const char *event,
	      const char *payload, size_t payload_len, unsigned flags, unsigned timeout_ms,
	      char **response);

/* A push that phxd does not answer (a notification): returns once it is
 * queued (waiting, within the timeout, only while more than 1 MiB is
 * unsent). Whether it went out is not told: a failure, whatever it is,
 * reaches the events streams (phxd_events()) as a "push_failed" line. The
 * cheapest way to fire many pushes. flags: PHXD_PUSH_BINARY or 0;
 * PHXD_EINVAL for a payload that is not JSON on one line. */
int phxd_notify(struct phxd_client *c, const char *conn, const char *topic, const char *event,
		const char *payload, size_t payload_len, unsigned flags);

/* ---- streams ---- */

/* Called with each stream line: a JSON object without its "sub" (docs/ipc.md
 * "message lines", "event lines", "dropped"). json is NUL-terminated, owned
 * by the library and valid during the call only. */
typedef void (*phxd_line_fn)(void *arg, uint64_t sub, const char *json, size_t len);

/* Subscribes to topic (exact, or a prefix ending in '*'; "*" is every
 * topic) on conn (NULL: every connection), for the events named in the
 * NULL-terminated `events` (NULL: all). fn gets each line from then on;
 * *sub (may be NULL) the subscription's id. It does not join the topic:
 * a topic nobody joined sends nothing. */
int phxd_subscribe(struct phxd_client *c, const char *conn, const char *topic,
		   const char *const *events, phxd_line_fn fn, void *arg, uint64_t *sub);
/* Connection and channel state changes of conn (NULL: all). */
int phxd_events(struct phxd_client *c, const char *conn, phxd_line_fn fn, void *arg,
		uint64_t *sub);
/* Ends a subscription; its callback is not called again. PHXD_EDAEMON
 * "no_such_subscription" when c has none of that id. */
int phxd_unsubscribe(struct phxd_client *c, uint64_t sub);
/* Waits up to timeout_ms (0: not at all; -1: no limit) for stream lines and
 * delivers them to their callbacks. Returns PHXD_OK once some were
 * delivered, PHXD_ETIMEOUT when the time is up with none,
 * PHXD_EUNREACHABLE when phxd went away. */
int phxd_wait(struct phxd_client *c, int timeout_ms);

/* ---- non-blocking ---- */

/* The answer to phxd_send / phxd_send_stream. status is PHXD_OK, or
 * PHXD_EDAEMON / PHXD_ETIMEOUT (then phxd_error_code() inside the callback
 * says which), or PHXD_EUNREACHABLE when phxd went away or at
 * phxd_disconnect(). result: the response's "result" JSON, or NULL; owned
 * by the library, valid during the call only. Each callback is called
 * exactly once. */
typedef void (*phxd_reply_fn)(void *arg, struct phxd_client *c, int status, const char *result,
			      size_t len);

/* The socket, for poll/epoll/libevent. Owned by c: do not read, write or
 * close it. */
int phxd_fd(const struct phxd_client *c);
/* Queues a request (a JSON object with "op", no "id") and writes what the
 * socket takes now; fn (required) is called from phxd_dispatch() or a
 * blocking call when the answer comes. Returns PHXD_OK, PHXD_EINVAL (not a
 * request), PHXD_ENOMEM, or PHXD_EUNREACHABLE (fn is then not called). */
int phxd_send(struct phxd_client *c, const char *request, phxd_reply_fn fn, void *arg);
/* The same for a request that opens a stream ("subscribe", "events"): when
 * it is answered, line_fn is registered for the stream before fn is
 * called, so no line is missed. Both callbacks are required. */
int phxd_send_stream(struct phxd_client *c, const char *request, phxd_line_fn line_fn,
		     void *line_arg, phxd_reply_fn fn, void *arg);
/* True while queued requests wait for the socket: watch it for writing. */
bool phxd_want_write(const struct phxd_client *c);
/* Writes what is queued and reads what is there (never blocks), calling
 * callbacks. PHXD_OK, or PHXD_EUNREACHABLE when phxd went away (every
 * waiting callback has been called), PHXD_ENOMEM. */
int phxd_dispatch(struct phxd_client *c);

#ifdef __cplusplus
}
#endif

#endif
