/* SPDX-License-Identifier: MIT */
/* status: the state of every connection and topic, with counters. */
#include "ipc.h"

#include <string.h>
#include <sys/time.h>

static json_t *
error_json(const char *text)
{
	json_t *j;

	if (text == NULL)
		return json_null();
	j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	return j ? j : ipc_jstr(text);
}

json_t *
ipc_wanted_json(const struct channel *ch)
{
	return json_pack("{s:b, s:b, s:I, s:b}", "config", ch->from_config, "runtime", ch->runtime,
			 "clients", (json_int_t)ch->nholders, "outbox", ch->from_outbox);
}

static json_t *
channel_json(const struct channel *ch)
{
	const struct chan_stats *st = &ch->stats;
	uint64_t now = ch->sess->tq->now;
	json_t *o;

	o = json_pack("{s:o, s:s, s:s?, s:I, s:I, s:o, s:b, s:I}", "topic", ipc_jstr(ch->topic),
		      "state", chan_state_name(ch->state), "join_ref",
		      ch->join_ref[0] ? ch->join_ref : NULL, "joins", (json_int_t)ch->joins,
		      "rejoin_attempts", (json_int_t)ch->rejoin_tries, "last_error",
		      error_json(ch->last_error), "from_config", ch->from_config, "buffered",
		      (json_int_t)ch->buffered);
	json_object_set_new(o, "wanted_by", ipc_wanted_json(ch));
	json_object_set_new(o, "stats",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}", "messages_in",
				      (json_int_t)st->messages_in, "pushes_out",
				      (json_int_t)st->pushes_out, "replies_ok",
				      (json_int_t)st->replies_ok, "replies_error",
				      (json_int_t)st->replies_error, "pushes_failed",
				      (json_int_t)st->pushes_failed, "last_message_ago_ms",
				      st->messages_in ? json_integer((json_int_t)(now - st->last_message_at))
						      : json_null()));
	return o;
}

/* The websocket's own view; the connection's fields are the first's. */
static void
add_socket_fields(json_t *o, const struct session *s)
{
	if (s->last_http_status)
		json_object_set_new(o, "last_http_status", json_integer(s->last_http_status));
	if (s->state == SESS_WAITING)
		json_object_set_new(o, "retry_in_ms",
				    json_integer((json_int_t)(s->next_attempt_at > s->tq->now
								      ? s->next_attempt_at - s->tq->now
								      : 0)));
	if (s->state == SESS_OPEN)
		json_object_set_new(o, "connected_for_ms",
				    json_integer((json_int_t)(s->tq->now - s->opened_at)));
	if (s->heartbeat_rtt_ms >= 0)
		json_object_set_new(o, "heartbeat_rtt_ms", json_integer(s->heartbeat_rtt_ms));
}

static json_t *
shard_json(const struct phxd_shard *sh)
{
	const struct session *s = sh->sess;
	const struct channel *ch;
	unsigned joined = 0;
	json_t *o;

	TAILQ_FOREACH(ch, &s->chans, link)
		joined += ch->state == CHAN_JOINED;
	o = json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:i, s:o}", "shard", (json_int_t)sh->index,
		      "state", session_state_name(s->state), "topics", (json_int_t)s->nchans,
		      "joined", (json_int_t)joined, "connects", (json_int_t)s->stats.connects,
		      "reconnects", (json_int_t)s->stats.reconnects, "last_close_code",
		      s->last_close_code, "last_error", ipc_jstr(s->last_error));
	add_socket_fields(o, s);
	return o;
}

static void
sum_stats(struct sess_stats *sum, const struct sess_stats *st)
{
	sum->connects += st->connects;
	sum->reconnects += st->reconnects;
	sum->attempts += st->attempts;
	sum->frames_in += st->frames_in;
	sum->frames_out += st->frames_out;
	sum->bad_frames += st->bad_frames;
	sum->stale_dropped += st->stale_dropped;
	sum->unmatched_replies += st->unmatched_replies;
	sum->delivered += st->delivered;
	sum->pushes_sent += st->pushes_sent;
	sum->pushes_failed += st->pushes_failed;
	sum->heartbeat_timeouts += st->heartbeat_timeouts;
	sum->heartbeats_acked += st->heartbeats_acked;
}

static json_t *
conn_json(const struct phxd_conn *pc)
{
	const struct session *s = pc->sess;
	const struct phxd_shard *first = pc->shards[0];
	struct sess_stats total = { 0 }, *st = &total;
	json_t *topics = json_array(), *shards = json_array(), *o;
	struct strmap_iter it;
	size_t buffered = 0, buffered_bytes = 0;

	for (struct strmap_entry *e = strmap_first(s->topics, &it); e;
	     e = strmap_next(s->topics, &it)) {
		const struct channel *ch = e->value;
		json_t *t = channel_json(ch);
		json_object_set_new(t, "shard", json_integer(conn_shard_of(ch)->index));
		json_array_append_new(topics, t);
	}
	for (size_t i = 0; i < pc->nshards; i++) {
		if (pc->shards[i] == NULL)
			continue;
		sum_stats(&total, &pc->shards[i]->sess->stats);
		buffered += pc->shards[i]->sess->buffered;
		buffered_bytes += pc->shards[i]->sess->buffered_bytes;
		json_array_append_new(shards, shard_json(pc->shards[i]));
	}
	o = json_pack("{s:o, s:o, s:s, s:I, s:I, s:I, s:i, s:o, s:I, s:o}", "name",
		      ipc_jstr(pc->conf->name), "url", ipc_jstr(pc->conf->url_shown), "state",
		      session_state_name(conn_state(pc)), "connects", (json_int_t)st->connects,
		      "reconnects", (json_int_t)st->reconnects, "attempts", (json_int_t)st->attempts,
		      "last_close_code", s->last_close_code, "last_error", ipc_jstr(s->last_error),
		      "buffered_pushes", (json_int_t)buffered, "topics", topics);
	if (pc->conf->auth_token != NULL)
		json_object_set_new(o, "auth_token_ignored", json_boolean(first->token_ignored));
	add_socket_fields(o, s);
	if (s->outage)
		json_object_set_new(o, "outage",
				    json_pack("{s:I, s:I}", "down_for_ms",
					      (json_int_t)(s->tq->now - s->outage_since),
					      "failed_attempts", (json_int_t)s->outage_attempts));
	json_object_set_new(o, "max_channels", json_integer(pc->cap));
	json_object_set_new(o, "shards", shards);
	json_object_set_new(o, "push_buffer",
			    json_pack("{s:I, s:I, s:I, s:I}", "pushes", (json_int_t)buffered,
				      "max_pushes", (json_int_t)pc->conf->push_buffer, "bytes",
				      (json_int_t)buffered_bytes, "max_bytes",
				      (json_int_t)pc->conf->push_buffer_bytes));
	json_object_set_new(o, "stats",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "frames_in",
				      (json_int_t)st->frames_in, "frames_out",
				      (json_int_t)st->frames_out, "bad_frames",
				      (json_int_t)st->bad_frames, "stale_dropped",
				      (json_int_t)st->stale_dropped, "unmatched_replies",
				      (json_int_t)st->unmatched_replies, "delivered",
				      (json_int_t)st->delivered, "pushes_sent",
				      (json_int_t)st->pushes_sent, "pushes_failed",
				      (json_int_t)st->pushes_failed, "heartbeat_timeouts",
				      (json_int_t)st->heartbeat_timeouts, "heartbeats_acked",
				      (json_int_t)st->heartbeats_acked));
	return o;
}

static void
exec_status(struct ipc_request *r)
{
	struct phxd *d = r->d;
	json_t *conns = json_array();
	struct timeval tv;

	for (size_t i = 0; i < d->nconns; i++) {
		struct phxd_conn *pc = d->conns[i];
		if (pc == NULL || (r->pc != NULL && pc != r->pc))
			continue;
		json_array_append_new(conns, conn_json(pc));
	}
	gettimeofday(&tv, NULL);
	json_t *outbox = d->outbox ? outbox_summary(d->outbox)
		       : d->outbox_error[0] ? json_pack("{s:o}", "error", ipc_jstr(d->outbox_error))
					    : json_null();
	ipc_reply_ok(r, json_pack("{s:s, s:I, s:I, s:o, s:o, s:o}", "daemon", "phxd " PACKAGE_VERSION,
				  "uptime_ms",
				  (json_int_t)((uint64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000 -
					       d->started_at_ms),
				  "reloads", (json_int_t)d->reloads, "ipc", ipc_server_stats(d->ipc),
				  "outbox", outbox, "connections", conns));
}

const struct ipc_cmd cmd_status = { "status", CMD_CONN_FILTER, exec_status };
