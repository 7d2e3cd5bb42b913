/* SPDX-License-Identifier: MIT */
/* metrics: the families, rendered from the daemon context. */
#include "metrics.h"

#include "loop.h"
#include "phxd.h"
#include "xmalloc.h"

#include "ipc/ipc.h"
#include "protocol/json_scan.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

enum family_type { GAUGE, COUNTER };

struct conn_family {
	const char *name;	/* a counter's without _total */
	enum family_type type;
	const char *help;
	/* false: no sample for this connection */
	bool (*value)(const struct phxd_conn *pc, double *v);
};

struct topic_family {
	const char *name;
	enum family_type type;
	const char *help;
	bool (*value)(const struct channel *ch, uint64_t wall_ms, double *v);
};

/* ---- connection values ----------------------------------------------------- */

#define CONN_VALUE(fn, expr)                                                \
	static bool fn(const struct phxd_conn *pc, double *v)              \
	{                                                                   \
		*v = (double)(expr);                                        \
		return true;                                                \
	}
/* A connection's counters: the sum over its websockets. */
#define CONN_SUM(fn, expr)                                                  \
	static bool fn(const struct phxd_conn *pc, double *v)              \
	{                                                                   \
		uint64_t sum = 0;                                           \
		for (size_t i = 0; i < pc->nshards; i++) {                  \
			const struct session *s;                            \
			if (pc->shards[i] == NULL)                          \
				continue;                                   \
			s = pc->shards[i]->sess;                            \
			sum += (expr);                                      \
		}                                                           \
		*v = (double)sum;                                           \
		return true;                                                \
	}
#define CONN_STAT(fn, field) CONN_SUM(fn, s->stats.field)
CONN_STAT(c_attempts, attempts)
CONN_STAT(c_connects, connects)
CONN_STAT(c_frames_in, frames_in)
CONN_STAT(c_frames_out, frames_out)
CONN_STAT(c_bad_frames, bad_frames)
CONN_STAT(c_stale, stale_dropped)
CONN_STAT(c_unmatched, unmatched_replies)
CONN_STAT(c_delivered, delivered)
CONN_STAT(c_pushes_sent, pushes_sent)
CONN_STAT(c_pushes_failed, pushes_failed)
CONN_STAT(c_hb_timeouts, heartbeat_timeouts)
CONN_STAT(c_hb_acked, heartbeats_acked)
CONN_VALUE(c_up, conn_state(pc) == SESS_OPEN)
CONN_VALUE(c_shards, conn_shard_count(pc))
CONN_VALUE(c_shards_open, conn_shards_open(pc))
CONN_SUM(c_buffered, s->buffered)
CONN_SUM(c_buffered_bytes, s->buffered_bytes)
CONN_VALUE(c_buffer_max, pc->conf->push_buffer)
CONN_VALUE(c_buffer_max_bytes, pc->conf->push_buffer_bytes)
CONN_VALUE(c_outage_attempts, pc->sess->outage ? pc->sess->outage_attempts : 0)

static bool
c_rtt(const struct phxd_conn *pc, double *v)
{
	*v = (double)pc->sess->heartbeat_rtt_ms / 1000.0;
	return pc->sess->heartbeat_rtt_ms >= 0;
}

static bool
c_outage(const struct phxd_conn *pc, double *v)
{
	const struct session *s = pc->sess;

	*v = s->outage ? (double)(s->tq->now - s->outage_since) / 1000.0 : 0;
	return true;
}

static size_t
joined_topics(const struct session *s, size_t *all)
{
	struct strmap_iter it;
	size_t joined = 0;

	*all = 0;
	for (struct strmap_entry *e = strmap_first(s->topics, &it); e;
	     e = strmap_next(s->topics, &it)) {
		(*all)++;
		joined += ((struct channel *)e->value)->state == CHAN_JOINED;
	}
	return joined;
}

static bool
c_topics(const struct phxd_conn *pc, double *v)
{
	size_t all;

	joined_topics(pc->sess, &all);
	*v = (double)all;
	return true;
}

static bool
c_topics_joined(const struct phxd_conn *pc, double *v)
{
	size_t all;

	*v = (double)joined_topics(pc->sess, &all);
	return true;
}

static const struct conn_family conn_families[] = {
	{ "phxd_connection_up", GAUGE, "1 while every websocket of the connection is open", c_up },
	{ "phxd_connection_websockets", GAUGE,
	  "Websockets the connection has (one per max_channels topics)", c_shards },
	{ "phxd_connection_websockets_open", GAUGE, "Of those, open", c_shards_open },
	{ "phxd_connection_attempts", COUNTER, "Websocket connection attempts", c_attempts },
	{ "phxd_connection_connects", COUNTER, "Websockets opened", c_connects },
	{ "phxd_connection_outage_seconds", GAUGE,
	  "How long the connection has been down (0 while it is up)", c_outage },
	{ "phxd_connection_outage_failed_attempts", GAUGE,
	  "Failed attempts in the current outage", c_outage_attempts },
	{ "phxd_connection_heartbeat_rtt_seconds", GAUGE,
	  "Round trip of the last acknowledged heartbeat", c_rtt },
	{ "phxd_connection_heartbeats_acked", COUNTER, "Heartbeats the server acknowledged",
	  c_hb_acked },
	{ "phxd_connection_heartbeat_timeouts", COUNTER,
	  "Heartbeats not acknowledged in time (each one reconnects)", c_hb_timeouts },
	{ "phxd_connection_frames_received", COUNTER, "Websocket messages received", c_frames_in },
	{ "phxd_connection_frames_sent", COUNTER, "Websocket messages sent", c_frames_out },
	{ "phxd_connection_bad_frames", COUNTER, "Messages from the server that were not valid",
	  c_bad_frames },
	{ "phxd_connection_stale_messages", COUNTER,
	  "Messages of an earlier join or an unknown topic, dropped", c_stale },
	{ "phxd_connection_unmatched_replies", COUNTER, "Replies to no request in flight",
	  c_unmatched },
	{ "phxd_connection_messages_delivered", COUNTER, "Channel messages given to subscribers",
	  c_delivered },
	{ "phxd_connection_pushes_sent", COUNTER, "Pushes sent to the server", c_pushes_sent },
	{ "phxd_connection_pushes_failed", COUNTER,
	  "Pushes that failed (timeout, buffer full, connection lost, ...)", c_pushes_failed },
	{ "phxd_connection_push_buffer_pushes", GAUGE, "Pushes waiting for a join", c_buffered },
	{ "phxd_connection_push_buffer_bytes", GAUGE, "Payload bytes of the pushes waiting",
	  c_buffered_bytes },
	{ "phxd_connection_push_buffer_max_pushes", GAUGE, "push_buffer: the limit of the first",
	  c_buffer_max },
	{ "phxd_connection_push_buffer_max_bytes", GAUGE,
	  "push_buffer_bytes: the limit of the second", c_buffer_max_bytes },
	{ "phxd_connection_topics", GAUGE, "Topics the connection holds", c_topics },
	{ "phxd_connection_topics_joined", GAUGE, "Topics joined now", c_topics_joined },
};

/* ---- topic values ------------------------------------------------------------ */

#define TOPIC_STAT(fn, expr)                                                      \
	static bool fn(const struct channel *ch, uint64_t wall_ms, double *v)     \
	{                                                                         \
		(void)wall_ms;                                                    \
		*v = (double)(expr);                                              \
		return true;                                                      \
	}
TOPIC_STAT(t_joined, ch->state == CHAN_JOINED)
TOPIC_STAT(t_joins, ch->joins)
TOPIC_STAT(t_messages, ch->stats.messages_in)
TOPIC_STAT(t_pushes, ch->stats.pushes_out)
TOPIC_STAT(t_failed, ch->stats.pushes_failed)
TOPIC_STAT(t_buffered, ch->buffered)

static bool
t_last_message(const struct channel *ch, uint64_t wall_ms, double *v)
{
	uint64_t ago = ch->sess->tq->now - ch->stats.last_message_at;

	*v = (double)(wall_ms - ago) / 1000.0;
	return ch->stats.messages_in > 0;
}

static const struct topic_family topic_families[] = {
	{ "phxd_topic_joined", GAUGE, "1 while the topic is joined", t_joined },
	{ "phxd_topic_joins", COUNTER, "Successful joins (rejoins included)", t_joins },
	{ "phxd_topic_messages_received", COUNTER, "Channel messages from the server", t_messages },
	{ "phxd_topic_pushes_sent", COUNTER, "Pushes sent on the topic", t_pushes },
	{ "phxd_topic_pushes_failed", COUNTER, "Pushes on the topic that failed", t_failed },
	{ "phxd_topic_replies", COUNTER, "Replies to pushes, by status", NULL },
	{ "phxd_topic_push_buffer_pushes", GAUGE, "Pushes waiting for the join", t_buffered },
	{ "phxd_topic_last_message_timestamp_seconds", GAUGE,
	  "When the last channel message arrived (Unix time)", t_last_message },
};

/* ---- text --------------------------------------------------------------------- */

/* A label value: valid UTF-8, with \, " and newline escaped. */
static void
add_label_value(struct evbuffer *out, const char *s)
{
	size_t len = strlen(s), clean_len = json_utf8_sanitized_len(s, len);
	char *clean = xmalloc(clean_len + 1);

	json_utf8_sanitize(s, len, clean);
	for (size_t i = 0; i < clean_len; i++) {
		char c = clean[i];
		if (c == '\\' || c == '"')
			evbuffer_add_printf(out, "\\%c", c);
		else if (c == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, &c, 1);
	}
	free(clean);
}

static void
add_header(struct evbuffer *out, const char *name, enum family_type type, const char *help,
	   bool openmetrics)
{
	/* Prometheus text names a counter by its sample (_total); OpenMetrics
	 * by its family. */
	const char *suffix = type == COUNTER && !openmetrics ? "_total" : "";

	evbuffer_add_printf(out, "# HELP %s%s %s.\n# TYPE %s%s %s\n", name, suffix, help, name,
			    suffix, type == COUNTER ? "counter" : "gauge");
}

static void
add_value(struct evbuffer *out, double v)
{
	evbuffer_add_printf(out, " %.17g\n", v);
}

static void
add_global(struct evbuffer *out, const char *name, enum family_type type, const char *help,
	   double v, bool openmetrics)
{
	add_header(out, name, type, help, openmetrics);
	evbuffer_add_printf(out, "%s%s", name, type == COUNTER ? "_total" : "");
	add_value(out, v);
}

static uint64_t
wall_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static void
render_ipc(struct phxd *d, struct evbuffer *out, bool openmetrics)
{
	static const struct {
		const char *key, *name;
		enum family_type type;
		const char *help;
	} ipc_families[] = {
		{ "clients", "phxd_ipc_clients", GAUGE, "Clients connected to the socket" },
		{ "pending", "phxd_ipc_pending_requests", GAUGE, "Requests awaiting an answer" },
		{ "subscriptions", "phxd_ipc_subscriptions", GAUGE,
		  "Subscriptions and event streams" },
		{ "queued_bytes", "phxd_ipc_queued_bytes", GAUGE, "Output queued to clients" },
		{ "largest_queue_bytes", "phxd_ipc_largest_queue_bytes", GAUGE,
		  "Output queued to the client with the most" },
		{ "client_buffer_bytes", "phxd_ipc_client_buffer_bytes", GAUGE,
		  "client_buffer_bytes: what one client's queue may hold" },
		{ "write_windows", "phxd_ipc_write_windows", COUNTER,
		  "Write passes to many clients after which output was held to be written together" },
	};
	json_t *stats;

	if (d->ipc == NULL)
		return;
	stats = ipc_server_stats(d->ipc);
	for (size_t i = 0; i < sizeof(ipc_families) / sizeof(ipc_families[0]); i++)
		add_global(out, ipc_families[i].name, ipc_families[i].type, ipc_families[i].help,
			   (double)json_integer_value(json_object_get(stats, ipc_families[i].key)),
			   openmetrics);
	json_decref(stats);
}

/* From outbox_summary(), so that status and metrics say the same. */
static void
render_outbox(struct phxd *d, struct evbuffer *out, bool openmetrics)
{
	static const struct {
		const char *key, *name;
		enum family_type type;
		const char *help;
	} outbox_values[] = {
		{ "pending", "phxd_outbox_pending", GAUGE, "Durable pushes stored, not delivered yet" },
		{ "failed", "phxd_outbox_failed", GAUGE,
		  "Durable pushes the server answered with an error, kept until retried or dropped" },
		{ "bytes", "phxd_outbox_bytes", GAUGE, "Payload bytes of the stored pushes" },
		{ "stored", "phxd_outbox_stored", COUNTER, "Durable pushes stored" },
		{ "delivered", "phxd_outbox_delivered", COUNTER,
		  "Durable pushes the server replied ok to" },
		{ "resent", "phxd_outbox_resent", COUNTER,
		  "Sends of a stored push after its first (lost socket, timeout, restart)" },
	};
	json_t *s, *v;

	add_global(out, "phxd_outbox_up", GAUGE, "1 while the outbox database is open",
		   d->outbox != NULL, openmetrics);
	if (d->outbox == NULL)
		return;
	s = outbox_summary(d->outbox);
	for (size_t i = 0; i < sizeof(outbox_values) / sizeof(outbox_values[0]); i++) {
		v = json_object_get(s, outbox_values[i].key);
		if (v == NULL)
			v = json_object_get(json_object_get(s, "totals"), outbox_values[i].key);
		add_global(out, outbox_values[i].name, outbox_values[i].type, outbox_values[i].help,
			   (double)json_integer_value(v), openmetrics);
	}
	v = json_object_get(s, "oldest_pending_age_ms");
	add_global(out, "phxd_outbox_oldest_pending_age_seconds", GAUGE,
		   "Age of the oldest stored push not delivered yet (0: none)",
		   json_is_integer(v) ? (double)json_integer_value(v) / 1000.0 : 0, openmetrics);
	json_decref(s);
}

static void
conn_labels(struct evbuffer *out, const char *name, enum family_type type,
	    const struct phxd_conn *pc)
{
	evbuffer_add_printf(out, "%s%s{connection=\"", name, type == COUNTER ? "_total" : "");
	add_label_value(out, pc->conf->name);
	evbuffer_add(out, "\"", 1);
}

static void
topic_labels(struct evbuffer *out, const char *name, enum family_type type,
	     const struct phxd_conn *pc, const struct channel *ch)
{
	conn_labels(out, name, type, pc);
	evbuffer_add(out, ",topic=\"", 8);
	add_label_value(out, ch->topic);
	evbuffer_add(out, "\"", 1);
}

/* One family's series: the first metrics_max_topics topics, the same ones
 * (in the same order) for every family. Returns the topics left out. */
static size_t
render_topic_family(struct phxd *d, struct evbuffer *out, const struct topic_family *tf,
		    uint64_t wall, bool openmetrics)
{
	size_t cap = d->conf->metrics_max_topics, seen = 0;

	add_header(out, tf->name, tf->type, tf->help, openmetrics);
	for (size_t i = 0; i < d->nconns; i++) {
		const struct phxd_conn *pc = d->conns[i];
		struct strmap_iter it;
		if (pc == NULL)
			continue;
		for (struct strmap_entry *e = strmap_first(pc->sess->topics, &it); e;
		     e = strmap_next(pc->sess->topics, &it)) {
			const struct channel *ch = e->value;
			double v;
			if (seen++ >= cap)
				continue;
			if (tf->value != NULL) {
				if (!tf->value(ch, wall, &v))
					continue;
				topic_labels(out, tf->name, tf->type, pc, ch);
				evbuffer_add(out, "}", 1);
				add_value(out, v);
				continue;
			}
			/* replies: one series per status */
			topic_labels(out, tf->name, tf->type, pc, ch);
			evbuffer_add(out, ",status=\"ok\"}", 13);
			add_value(out, (double)ch->stats.replies_ok);
			topic_labels(out, tf->name, tf->type, pc, ch);
			evbuffer_add(out, ",status=\"error\"}", 16);
			add_value(out, (double)ch->stats.replies_error);
		}
	}
	return seen > cap ? seen - cap : 0;
}

static void
render_topics(struct phxd *d, struct evbuffer *out, bool openmetrics)
{
	uint64_t wall = wall_now_ms();
	size_t omitted = 0;

	for (size_t f = 0; f < sizeof(topic_families) / sizeof(topic_families[0]); f++)
		omitted = render_topic_family(d, out, &topic_families[f], wall, openmetrics);
	add_global(out, "phxd_metrics_topics_omitted", GAUGE,
		   "Topics left out of the phxd_topic_ families (metrics_max_topics)",
		   (double)omitted, openmetrics);
}

void
metrics_render(struct phxd *d, struct evbuffer *out, bool openmetrics)
{
	add_header(out, "phxd_build_info", GAUGE, "The running phxd", openmetrics);
	evbuffer_add_printf(out, "phxd_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	add_global(out, "phxd_start_time_seconds", GAUGE, "When phxd started (Unix time)",
		   (double)d->started_at_ms / 1000.0, openmetrics);
	add_global(out, "phxd_reloads", COUNTER, "Configuration reloads", (double)d->reloads,
		   openmetrics);
	add_global(out, "phxd_websocket_read_pauses", COUNTER,
		   "Times a streaming websocket was left unread for 250 us to gather its frames",
		   (double)transport_read_pauses(d->tp), openmetrics);
	add_global(out, "phxd_busy_poll_catches", COUNTER,
		   "Events caught while busy-polling (busy_poll_us): wake-ups saved",
		   d->loop ? (double)loop_poll_catches(d->loop) : 0, openmetrics);
	add_global(out, "phxd_busy_poll_seconds", COUNTER,
		   "Time spent busy-polling, handling what it caught included",
		   d->loop ? (double)loop_poll_us(d->loop) / 1e6 : 0, openmetrics);
	render_ipc(d, out, openmetrics);
	render_outbox(d, out, openmetrics);
	for (size_t f = 0; f < sizeof(conn_families) / sizeof(conn_families[0]); f++) {
		const struct conn_family *cf = &conn_families[f];
		add_header(out, cf->name, cf->type, cf->help, openmetrics);
		for (size_t i = 0; i < d->nconns; i++) {
			double v;
			if (d->conns[i] == NULL || !cf->value(d->conns[i], &v))
				continue;
			conn_labels(out, cf->name, cf->type, d->conns[i]);
			evbuffer_add(out, "}", 1);
			add_value(out, v);
		}
	}
	render_topics(d, out, openmetrics);
	if (openmetrics)
		evbuffer_add(out, "# EOF\n", 6);
}
