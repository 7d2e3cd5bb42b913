/* SPDX-License-Identifier: MIT */
/*
 * session: the Phoenix Channels client logic of one connection, as plain
 * code. It owns refs, joins and rejoins, heartbeats, back-off, the push
 * buffer, stale-ref filtering and presence. It does no I/O: the host opens
 * and closes websockets, carries frames and runs the timer queue, which is
 * what lets the unit tests drive every rule with a fake clock.
 *
 * The host promises: after ops->close() (or after it reports a close) no
 * event of that websocket reaches the session again.
 *
 * Shards: the sessions of one logical connection (one websocket each,
 * for servers that cap the channels of a socket) share one topic map.
 * Any of them answers for every topic of the connection: a join, leave,
 * push or lookup goes to the session that holds the topic, and a new
 * topic goes where ops->place() says.
 */
#ifndef PHXD_SESSION_H
#define PHXD_SESSION_H

#include "config.h"
#include "presence.h"
#include "strmap.h"
#include "timerq.h"

#include "protocol/phx_codec.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct session;
struct channel;

enum sess_state {
	SESS_IDLE,		/* not started */
	SESS_CONNECTING,	/* websocket handshake under way */
	SESS_OPEN,
	SESS_WAITING,		/* back-off before the next attempt */
	SESS_STOPPED,		/* stopped on request; final */
};

enum chan_state {
	CHAN_WAITING,		/* wanted; the socket is not open */
	CHAN_JOINING,
	CHAN_JOINED,
	CHAN_ERRORED,		/* join failed / timed out / crashed: rejoin pending */
	CHAN_LEAVING,
	CHAN_CLOSED,		/* server sent phx_close: final, not retried */
};

/* How a request ended; the wire names are in session_outcome_name(). */
enum sess_outcome {
	SESS_OK,		/* join ok, leave ok, push sent or replied "ok" */
	SESS_REPLY_ERROR,	/* the server replied with another status */
	SESS_TIMEOUT,
	SESS_BUFFER_FULL,
	SESS_NOT_JOINED,
	SESS_DISCONNECTED,
	SESS_CHANNEL_ERROR,	/* the channel crashed (phx_error) */
	SESS_CHANNEL_CLOSED,	/* the server closed the channel (phx_close) */
	SESS_LEFT,		/* the topic was left while the push waited */
	SESS_SHUTTING_DOWN,
	SESS_TOO_LARGE,		/* a header field longer than the frame allows */
	SESS_TOO_MANY_TOPICS,	/* the connection holds max_topics already */
};

struct sess_result {
	enum sess_outcome outcome;
	const char *status;	/* reply status ("ok", "error", ...) or NULL */
	const char *response;	/* reply response (JSON text or raw bytes) or NULL */
	size_t response_len;
	bool binary;
	const char *message;	/* human detail for failures */
};

typedef void (*sess_done_fn)(void *arg, const struct sess_result *r);

/* State changes for the events stream and logs. */
enum sess_event_kind {
	SEV_CONNECTING,
	SEV_CONNECTED,
	SEV_DISCONNECTED,	/* code, reason, http_status, delay_ms */
	SEV_CHANNEL,		/* topic, chan_state, reason, delay_ms */
};

struct sess_event {
	enum sess_event_kind kind;
	const char *topic;
	enum chan_state chan_state;
	int code;
	int http_status;
	const char *reason;
	uint64_t delay_ms;	/* when the next attempt is scheduled */
	uint64_t attempt;
};

struct session_ops {
	/* Open a websocket for s (host reads s->conf). */
	void (*connect)(void *host, struct session *s);
	/* Close it; the session already treats it as gone. */
	void (*close)(void *host, struct session *s, int code, const char *reason);
	void (*send)(void *host, struct session *s, const char *frame, size_t len, bool binary);
	/* A channel message for subscribers (broadcasts, pushes, presence). */
	void (*message)(void *host, struct session *s, const struct phx_msg *m);
	void (*event)(void *host, struct session *s, const struct sess_event *ev);
	/* Uniform random in [0, 1) for jitter. */
	double (*random)(void *host);
	/* Optional (shards). Which session takes a new topic; NULL: s. */
	struct session *(*place)(void *host, struct session *s);
	/* Optional. The server refused ch on s with "too many channels
	 * joined": true when the host moved ch elsewhere (session_move),
	 * false to retry it here with the rejoin back-off. */
	bool (*cap_refused)(void *host, struct session *s, struct channel *ch);
	/* Optional. s holds one channel fewer (left, or moved away). */
	void (*released)(void *host, struct session *s);
};

struct sess_push;
struct sess_waiter;
TAILQ_HEAD(sess_push_list, sess_push);
TAILQ_HEAD(sess_waiter_list, sess_waiter);
TAILQ_HEAD(channel_list, channel);

struct channel {
	struct session *sess;
	TAILQ_ENTRY(channel) link;	/* on sess->chans */
	char *topic;
	size_t topic_len;
	char *payload;			/* join payload, JSON text */
	enum chan_state state;
	bool from_config;		/* wanted: the config lists it */
	bool runtime;			/* wanted: a join request, until a leave */
	bool from_outbox;		/* wanted: durable pushes wait for it */
	uint32_t nholders, holders_cap;	/* wanted: IPC clients, while connected */
	uint64_t *holders;		/* their ids */
	char join_ref[PHX_REF_BUFSZ];	/* current join; "" before the first */
	char leave_ref[PHX_REF_BUFSZ];
	struct tq_timer join_timer;	/* join (or leave) reply timeout */
	struct tq_timer rejoin_timer;
	unsigned rejoin_tries;
	uint64_t joins;			/* successful joins */
	char *last_error;		/* JSON text of the last join error / reason */
	char *join_response;		/* JSON text of the last ok join reply */
	struct sess_push_list buffer;	/* pushes waiting for the join, oldest first */
	unsigned buffered;
	struct sess_push_list inflight;	/* pushes sent and awaiting a reply */
	struct chan_stats {
		uint64_t messages_in;	/* delivered to subscribers */
		uint64_t pushes_out;	/* sent to the server */
		uint64_t replies_ok, replies_error;
		uint64_t pushes_failed;	/* timed out, refused, lost with the socket */
		uint64_t last_message_at;	/* ms on the timer clock; 0: none yet */
	} stats;
	/* callers waiting for the join / the leave */
	struct sess_waiter_list join_waiters, leave_waiters;
	struct presence presence;
};

struct sess_stats {
	uint64_t connects;		/* websocket opened */
	uint64_t reconnects;		/* opened after the first */
	uint64_t attempts;
	uint64_t frames_in, frames_out;
	uint64_t bad_frames;
	uint64_t stale_dropped;		/* messages with an old join_ref */
	uint64_t unmatched_replies;
	uint64_t delivered;
	uint64_t pushes_sent, pushes_failed;
	uint64_t heartbeat_timeouts;
	uint64_t heartbeats_acked;
};

struct session {
	const struct conn_conf *conf;
	const struct session_ops *ops;
	void *host;
	struct timerq *tq;

	enum sess_state state;
	bool stopping;
	struct phx_refgen refs;
	/* topic -> struct channel, of every shard of the connection: the
	 * first session's own_topics */
	struct strmap *topics;
	struct strmap own_topics;
	struct channel_list chans;	/* the channels this websocket holds */
	unsigned nchans;
	unsigned njoined;		/* of them, those joined (set_state) */
	struct strmap inflight;		/* ref -> struct sess_wait */
	unsigned buffered;		/* pushes waiting in channel buffers */
	size_t buffered_bytes;		/* and their payload bytes */

	unsigned reconnect_tries;
	struct tq_timer reconnect_timer;
	struct tq_timer heartbeat_timer;
	char heartbeat_ref[PHX_REF_BUFSZ];	/* pending heartbeat, "" if none */
	uint64_t heartbeat_sent_at;
	int64_t heartbeat_rtt_ms;	/* of the last acknowledged one; -1: none yet */
	bool acked_since_open;

	uint64_t opened_at, closed_at;	/* ms on the timer clock */
	/* An outage: from the first failure after being open (or at start)
	 * to the next open. Logged when it starts, every
	 * outage_log_interval_ms while it lasts, and when it ends. */
	bool outage;
	uint64_t outage_since;
	uint64_t outage_attempts;	/* failed attempts in it */
	uint64_t outage_logged_at;
	uint64_t next_attempt_at;
	int last_close_code;
	int last_http_status;
	char last_error[160];

	struct sess_stats stats;
	char *scratch;			/* encode buffer */
	size_t scratch_cap;
};

struct session *session_new(const struct conn_conf *conf, const struct session_ops *ops,
			    void *host, struct timerq *tq);
/* Another websocket of first's connection: same settings and host ops,
 * the same topic map, no topic of its own yet. */
struct session *session_new_shard(struct session *first, void *host);
/* Fails whatever is pending. A first session is freed after its shards. */
void session_free(struct session *s);
/* Moves ch, with its wants, waiters and buffered pushes, to session `to`
 * (a shard of the same connection) and joins it there. */
void session_move(struct channel *ch, struct session *to);

void session_start(struct session *s);
/* Leaves every topic, closes with 1000, answers pending requests with
 * SESS_SHUTTING_DOWN. Final. */
void session_stop(struct session *s);
/* New settings for the same connection. Reconnects when the websocket
 * settings changed; leaves its topics the config no longer lists; the
 * first session of a connection also joins the topics it added. The
 * host reconfigures the first session last. */
void session_reconfigure(struct session *s, const struct conn_conf *conf);
/* Drops the websocket and connects again now (also used by the heartbeat). */
void session_reconnect(struct session *s, const char *reason);

/* Transport events. */
void session_on_open(struct session *s);
void session_on_close(struct session *s, int code, const char *reason, int http_status);
void session_on_frame(struct session *s, const char *data, size_t len, bool binary);

/*
 * Requests. `done` is called exactly once, possibly before returning, unless
 * the request is cancelled. The returned handle is NULL when `done` has
 * already run (or none was given); otherwise it is valid until `done` runs
 * or session_cancel() is called.
 */
struct sess_req;

/* Who wants a topic joined. A topic stays joined, through every reconnect,
 * while anybody does. */
struct sess_want {
	bool config;		/* the config lists it */
	bool runtime;		/* a join request; until a leave */
	bool outbox;		/* durable pushes wait for it; until they are sent */
	uint64_t client;	/* an IPC client, while it is connected; 0: none */
};
#define WANT_CONFIG ((struct sess_want){ .config = true })
#define WANT_RUNTIME ((struct sess_want){ .runtime = true })
#define WANT_CLIENT(id) ((struct sess_want){ .client = (id) })
#define WANT_OUTBOX ((struct sess_want){ .outbox = true })

/* Adds `want` to topic and joins it if it was not. Sharing: there is one
 * join per topic per connection; a second request shares the first. */
struct sess_req *session_join(struct session *s, const char *topic, const char *payload,
			      struct sess_want want, sess_done_fn done, void *arg);
/* Drops `want` (each of its members) from ch. True when nobody wants ch
 * any longer: the caller then leaves it with session_leave(). */
bool session_unwant(struct session *s, struct channel *ch, struct sess_want want);
bool session_wanted(const struct channel *ch);
/* Leaves topic now, whoever wants it. */
struct sess_req *session_leave(struct session *s, const char *topic, sess_done_fn done,
			       void *arg);

struct sess_push_args {
	const char *topic;
	const char *event;
	const char *payload;	/* JSON text, or bytes when binary */
	size_t payload_len;
	bool binary;
	bool await_reply;	/* else done() fires once the frame is sent */
	unsigned timeout_ms;	/* 0: the connection's push_timeout_ms */
};
struct sess_req *session_push(struct session *s, const struct sess_push_args *a,
			      sess_done_fn done, void *arg);
/* The caller went away: `done` will not run. A join or leave stays wanted;
 * a push not sent yet is still sent, one sent already forgets its reply. */
void session_cancel(struct sess_req *r);

struct channel *session_channel(const struct session *s, const char *topic);
const char *session_state_name(enum sess_state st);
const char *chan_state_name(enum chan_state st);
const char *session_outcome_name(enum sess_outcome o);
/* The delay before attempt number `tries` (0-based) of a back-off list. */
uint64_t session_backoff(const unsigned *list, size_t n, unsigned tries, double jitter,
			 double random01);

#endif
