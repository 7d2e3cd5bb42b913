/* SPDX-License-Identifier: MIT */
/*
 * The phxd socket protocol: the one contract between the daemon and every
 * client (phxctl, libphxd, phxd.py). docs/ipc.md is its full text.
 *
 * Newline-delimited JSON over a Unix stream socket. A request is one object
 *   {"id": ID, "op": "push", ...}
 * and gets exactly one response with the same id:
 *   {"id": ID, "ok": true, "result": {...}}
 *   {"id": ID, "ok": false, "error": {"code": "...", "message": "..."}}
 * Streams (subscribe, events) then send lines tagged {"sub": N, ...}.
 *
 * Bump PHXD_IPC_VERSION when a change would break an existing client.
 */
#ifndef PHXD_IPC_H
#define PHXD_IPC_H

#define PHXD_IPC_VERSION 1

#define PHXD_DEFAULT_SOCKET "/run/phxd/phxd.sock"
#define PHXD_SOCKET_ENV "PHXD_SOCKET"

/* Error codes: fixed strings, documented in docs/ipc.md. */
#define PHXD_E_BAD_JSON "bad_json"			/* the line is not JSON */
#define PHXD_E_BAD_REQUEST "bad_request"		/* missing or mistyped field */
#define PHXD_E_UNKNOWN_OP "unknown_op"
#define PHXD_E_UNKNOWN_CONNECTION "unknown_connection"
#define PHXD_E_VERSION "version_mismatch"
#define PHXD_E_LINE_TOO_LONG "line_too_long"
#define PHXD_E_NOT_JOINED "not_joined"
#define PHXD_E_REPLY_ERROR "reply_error"		/* the server replied non-"ok" */
#define PHXD_E_TIMEOUT "timeout"
#define PHXD_E_BUFFER_FULL "buffer_full"
#define PHXD_E_DISCONNECTED "disconnected"
#define PHXD_E_CHANNEL_ERROR "channel_error"
#define PHXD_E_CHANNEL_CLOSED "channel_closed"
#define PHXD_E_LEFT "left"
#define PHXD_E_SHUTTING_DOWN "shutting_down"
#define PHXD_E_TOO_LARGE "too_large"
#define PHXD_E_CONFIG "config_error"
#define PHXD_E_NO_SUCH_SUB "no_such_subscription"
#define PHXD_E_LIMIT "limit_reached"			/* a per-client limit */
#define PHXD_E_TOO_MANY_TOPICS "too_many_topics"	/* max_topics of the connection */
#define PHXD_E_BUSY "busy"				/* max_clients, max_clients_per_uid */
#define PHXD_E_FORBIDDEN "forbidden"			/* allow_users / allow_groups */
#define PHXD_E_OUTBOX "outbox_unavailable"	/* no outbox, or its database fails */
#define PHXD_E_OUTBOX_FULL "outbox_full"	/* outbox_max_messages / _bytes */
#define PHXD_E_NOT_FOUND "not_found"		/* no stored push has that id */
#define PHXD_E_INTERNAL "internal"

#endif
