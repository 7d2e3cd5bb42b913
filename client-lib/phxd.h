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
 * The library never exits and never prints; it is not thread-safe (use a
 * client per thread).
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

/* Connects to `path` (NULL: $PHXD_SOCKET, else /run/phxd/phxd.sock) and says
 * hello. On failure *out is NULL and the return value says why
 * (PHXD_EUNREACHABLE with errno set, or PHXD_ETIMEOUT). */
int phxd_connect(const char *path, struct phxd_client **out);
/* The same, waiting at most timeout_ms (-1: no limit) for phxd's hello,
 * which becomes the client's timeout for blocking calls (phxd_connect: 60 s). */
int phxd_connect_timeout(const char *path, int timeout_ms, struct phxd_client **out);
void phxd_disconnect(struct phxd_client *c);

/* The last error: a daemon code or "unreachable", "timeout", "protocol",
 * "nomem", "invalid"; its message; the daemon's whole error object as JSON
 * (with "status" and "response" for a reply_error), or NULL. Valid until
 * the next call. */
const char *phxd_error_code(const struct phxd_client *c);
const char *phxd_error_message(const struct phxd_client *c);
const char *phxd_error_json(const struct phxd_client *c);
/* The last whole response line (JSON), or NULL. */
const char *phxd_last_response(const struct phxd_client *c);

/* Blocking calls wait this long for their response (default 60000 ms;
 * -1 waits forever). */
void phxd_set_timeout(struct phxd_client *c, int timeout_ms);

/* ---- blocking calls ---- */

/* Any request: `request` is a JSON object with "op" (no "id"). */
int phxd_call(struct phxd_client *c, const char *request, char **result);

int phxd_status(struct phxd_client *c, const char *conn, char **result);
/* payload: JSON object text or NULL. *response: the server's join reply. */
int phxd_join(struct phxd_client *c, const char *conn, const char *topic, const char *payload,
	      char **response);
int phxd_leave(struct phxd_client *c, const char *conn, const char *topic);

#define PHXD_PUSH_AWAIT 1u	/* wait for the server's reply */
#define PHXD_PUSH_BINARY 2u	/* payload is bytes (payload_len) for a binary frame */
/* Pushes event to topic. payload: JSON text (NULL: {}), or bytes with
 * PHXD_PUSH_BINARY. timeout_ms 0: the connection's default. With
 * PHXD_PUSH_AWAIT, *response (if response is not NULL) gets the reply's
 * response as JSON. */
int phxd_push(struct phxd_client *c, const char *conn, const char *topic, const char *event,
	      const char *payload, size_t payload_len, unsigned flags, unsigned timeout_ms,
	      char **response);

/* ---- streams ---- */

/* Called with each stream line (a JSON object without its "sub"). */
typedef void (*phxd_line_fn)(void *arg, uint64_t sub, const char *json, size_t len);

/* topic: a topic, or a prefix ending in '*'; events: NULL-terminated list or
 * NULL for all; conn NULL: every connection. */
int phxd_subscribe(struct phxd_client *c, const char *conn, const char *topic,
		   const char *const *events, phxd_line_fn fn, void *arg, uint64_t *sub);
int phxd_events(struct phxd_client *c, const char *conn, phxd_line_fn fn, void *arg,
		uint64_t *sub);
int phxd_unsubscribe(struct phxd_client *c, uint64_t sub);
/* Waits up to timeout_ms (0: not at all; -1: no limit) for stream lines and
 * delivers them to their callbacks. Returns PHXD_OK once some were
 * delivered, PHXD_ETIMEOUT when the time is up with none. */
int phxd_wait(struct phxd_client *c, int timeout_ms);

/* ---- non-blocking ---- */

/* status is PHXD_OK or PHXD_EDAEMON (then see phxd_error_code() inside the
 * callback); result is the response's "result" JSON, or NULL. Each callback
 * is called exactly once: when phxd goes away, or at phxd_disconnect(),
 * with PHXD_EUNREACHABLE. */
typedef void (*phxd_reply_fn)(void *arg, struct phxd_client *c, int status, const char *result,
			      size_t len);

int phxd_fd(const struct phxd_client *c);
/* Queues a request (JSON object with "op"); fn is called from phxd_dispatch. */
int phxd_send(struct phxd_client *c, const char *request, phxd_reply_fn fn, void *arg);
bool phxd_want_write(const struct phxd_client *c);
/* Writes what is queued and reads what is there, calling callbacks. */
int phxd_dispatch(struct phxd_client *c);

#ifdef __cplusplus
}
#endif

#endif
