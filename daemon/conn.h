/* SPDX-License-Identifier: MIT */
/*
 * conn: one configured connection, a logical connection over as many
 * websockets ("shards") as its topics need. Phoenix 1.7.24+ refuses the
 * 101st channel on a socket; each shard holds at most `cap` topics (the
 * config's max_channels, lowered when a server refuses sooner), a topic
 * refused with "too many channels joined" moves to a shard with room, and
 * a shard left empty closes. Every shard has its own session: heartbeat,
 * back-off and refs. Clients never see shards: the first shard's session
 * answers for every topic (see session.h).
 */
#ifndef PHXD_CONN_H
#define PHXD_CONN_H

#include "config.h"
#include "resolve.h"
#include "session.h"
#include "timerq.h"
#include "transport.h"

#include <stdbool.h>
#include <stdint.h>

struct phxd;

/* One websocket of a connection. */
struct phxd_shard {
	struct phxd_conn *pc;
	uint32_t id;		/* its transport id: index in d->shards */
	uint32_t gen;		/* of its current websocket attempt */
	unsigned index;		/* in pc->shards; 0: the first, never closed */
	struct session *sess;
	struct resolve_req *lookup;	/* name lookup before the websocket */
	bool token_ignored;	/* the server took the socket but not the auth token */
};

struct phxd_conn {
	struct phxd *d;
	struct conn_conf *conf;
	struct session *sess;		/* the first shard's: answers for every topic */
	struct phxd_shard **shards;	/* NULL where one closed */
	size_t nshards;
	unsigned cap;			/* topics per shard; 0: no cap */
	bool started;
	struct tq_timer reap_timer;	/* closes the shards that emptied */
};

struct phxd_conn *conn_new(struct phxd *d, struct conn_conf *conf);
void conn_start(struct phxd_conn *pc);
/* Leaves every topic and closes every websocket (final). */
void conn_stop(struct phxd_conn *pc);
/* Frees pc and its shards; at exit or after conn_stop. */
void conn_free(struct phxd_conn *pc);
/* The same connection with new settings (same name). */
void conn_reconfigure(struct phxd_conn *pc, struct conn_conf *conf);
/* An event of a websocket, for whichever shard it names. */
void conn_transport_event(struct phxd *d, const struct tp_event *ev);

/* Shards open, and shards in all. */
static inline size_t
conn_shards_open(const struct phxd_conn *pc)
{
	size_t n = 0;

	for (size_t i = 0; i < pc->nshards; i++)
		n += pc->shards[i] != NULL && pc->shards[i]->sess->state == SESS_OPEN;
	return n;
}

/* Topics joined, on every shard. */
static inline size_t
conn_topics_joined(const struct phxd_conn *pc)
{
	size_t n = 0;

	for (size_t i = 0; i < pc->nshards; i++)
		n += pc->shards[i] != NULL ? pc->shards[i]->sess->njoined : 0;
	return n;
}

static inline size_t
conn_shard_count(const struct phxd_conn *pc)
{
	size_t n = 0;

	for (size_t i = 0; i < pc->nshards; i++)
		n += pc->shards[i] != NULL;
	return n;
}

/* The state the connection reports: open when every shard is, else that
 * of the first shard that is not. */
static inline enum sess_state
conn_state(const struct phxd_conn *pc)
{
	for (size_t i = 0; i < pc->nshards; i++)
		if (pc->shards[i] != NULL && pc->shards[i]->sess->state != SESS_OPEN)
			return pc->shards[i]->sess->state;
	return SESS_OPEN;
}

/* The shard that holds ch: a session's host is its shard. */
static inline const struct phxd_shard *
conn_shard_of(const struct channel *ch)
{
	return ch->sess->host;
}

#endif
