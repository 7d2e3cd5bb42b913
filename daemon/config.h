/* SPDX-License-Identifier: MIT */
/*
 * config: the phxd.conf file (INI, libinih). Options are described by
 * tables (name, type, range, default); a reload parses into a fresh
 * struct phxd_conf and the caller swaps only when it parsed cleanly.
 */
#ifndef PHXD_CONFIG_H
#define PHXD_CONFIG_H

#include "log.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct conf_kv {
	char *key;
	char *value;
};

struct conf_join {
	char *topic;
	char *payload;		/* JSON object text, "{}" when none */
};

/*
 * One [connection]. Reference-counted: each websocket holds one for its
 * life, so a reload can drop the config it came from.
 */
/* The largest websocket handshake request phxd builds (the transport's
 * buffer): path with params, headers, token. Checked when the file is read. */
#define PHXD_HANDSHAKE_MAX (64u << 10)

struct conn_conf {
	unsigned refs;
	char *name;
	char *url;
	char *url_shown;	/* url with query values redacted, for status and logs */
	/* url parts */
	bool tls;
	char *host;
	int port;
	char *path;		/* without the query */
	char *query;		/* from the url, may be "" */
	char *request_path;	/* path?query&params&vsn=2.0.0, URL-encoded */
	char *subprotocols;	/* "phoenix, base64url.bearer.phx.T" or NULL */
	char *host_header;	/* host[:port], IPv6 literals bracketed */
	bool ip_literal;	/* the host is an address, not a name */

	struct conf_kv *params;	/* connect params (param.* and param.*_file) */
	size_t nparams;
	struct conf_kv *headers;
	size_t nheaders;
	char *auth_token;	/* Phoenix 1.8 token, from auth_token_file */
	char *ca_file, *client_cert, *client_key;
	char *tls_stamp;	/* identity of those files' contents when read */
	bool tls_verify;

	unsigned heartbeat_ms;
	unsigned join_timeout_ms;
	unsigned push_timeout_ms;
	unsigned push_buffer;	/* pushes waiting for a join, per connection */
	unsigned push_buffer_bytes;	/* and their payload bytes */
	unsigned auth_retry_ms;	/* after HTTP 401/403 */
	unsigned outage_log_ms;	/* "still down" every this long; 0: never */
	unsigned max_message;	/* bytes of one incoming websocket message */
	unsigned max_channels;	/* topics per websocket (shard); 0: no cap */
	unsigned max_topics;	/* topics joined at run time stop here; 0: no limit */
	double jitter;		/* 0..1: each delay is scaled by 1 +- jitter */
	unsigned *reconnect_ms;
	size_t nreconnect;
	unsigned *rejoin_ms;
	size_t nrejoin;
	struct conf_join *joins;
	size_t njoins;
};

struct phxd_conf {
	char *path;
	char *socket;
	mode_t socket_mode;
	char *socket_group;
	enum log_level log_level;
	unsigned max_line;		/* bytes of one IPC request line */
	unsigned client_buffer;		/* bytes queued to one IPC client */
	unsigned max_clients;
	unsigned max_clients_per_uid;
	unsigned client_max_subscriptions;
	unsigned client_max_pending;	/* requests awaiting an answer, per client */
	unsigned client_stall_ms;	/* a client that reads nothing this long is cut off */
	unsigned busy_poll_us;		/* polling after an event before sleeping; 0: none */
	char *allow_users;		/* space-separated names or uids; NULL: anyone */
	char *allow_groups;
	char *metrics_listen;		/* ADDRESS:PORT; NULL: no metrics endpoint */
	unsigned metrics_max_topics;
	char *outbox;			/* path; NULL: $STATE_DIRECTORY/outbox.db or none */
	char *outbox_sync;		/* "full" or "normal" */
	unsigned outbox_max_messages;
	unsigned outbox_max_bytes;
	uid_t *allow_uids;		/* resolved when the file is read */
	size_t nallow_uids;
	gid_t *allow_gids;
	size_t nallow_gids;
	struct conn_conf **conns;
	size_t nconns;
};

/* Parses `path`. On failure returns NULL and writes "file:line: key: why"
 * into err. */
struct phxd_conf *config_load(const char *path, char *err, size_t errlen);
void config_free(struct phxd_conf *c);
struct conn_conf *config_find_conn(const struct phxd_conf *c, const char *name);
/* True when two connections need a new websocket to go from a to b (url,
 * params, headers, token, TLS); timers and joins can change in place. */
bool config_conn_needs_reconnect(const struct conn_conf *a, const struct conn_conf *b);
/* Two optional settings are the same (both unset, or equal strings). */
bool config_str_eq(const char *a, const char *b);
/* Parses "ws[s]://host[:port]/path[?query]" into c's url parts. */
bool config_parse_url(struct conn_conf *c, const char *url, char *err, size_t errlen);
/* "1.2.3.4:PORT" or "[::1]:PORT" (numeric addresses only) into its parts. */
bool config_parse_listen(const char *listen, char *addr, size_t addrlen, unsigned short *port);
/* Fills a connection with every default; for tests and config_load. */
void config_conn_defaults(struct conn_conf *c);
/* Another reference (any thread); config_conn_free drops one. */
const struct conn_conf *config_conn_ref(const struct conn_conf *c);
void config_conn_free(const struct conn_conf *c);

#endif
