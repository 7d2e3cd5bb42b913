/* SPDX-License-Identifier: MIT */
#include "outbox.h"

#include "outbox_db.h"

#include "ipc/ipc.h"
#include "log.h"
#include "phxd.h"
#include "strmap.h"
#include "xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/time.h>

/* Pushes of one topic in flight at once: enough to fill a round trip,
 * few enough that a lost socket sends little twice. */
#define WINDOW 128
/* Stored pushes whose send failed (timeout, lost socket) go again this
 * often while their topic is joined; a join sends at once. */
#define RETRY_MS 1000
/* Removals and failures only (nobody waits for them) commit this late,
 * with whatever comes meanwhile: one sync for many deliveries. Lost in a
 * crash, they only mean a push sent again. */
#define LAZY_COMMIT_MS 20

enum msg_state { MSG_STORING, MSG_PENDING, MSG_INFLIGHT, MSG_FAILED };
static const char *const state_names[] = { "storing", "pending", "in_flight", "failed" };

struct ob_topic;

struct outbox_msg {
	TAILQ_ENTRY(outbox_msg) entry;	/* on ob->storing, its topic's queue, or ob->failed */
	struct outbox *ob;
	struct ob_topic *t;		/* while queued */
	int64_t id;
	enum msg_state state;
	bool binary;
	unsigned attempts;
	int64_t created_ms;		/* wall clock */
	char *last_error;		/* JSON text */
	struct sess_req *req;		/* in flight */
	outbox_stored_fn stored;	/* while storing */
	void *arg;
	char *conn, *topic, *join_payload, *event;	/* in text[] */
	char *payload;
	size_t payload_len;
	char text[];
};
TAILQ_HEAD(msg_list, outbox_msg);

/* The stored pushes of one topic, in order. */
struct ob_topic {
	TAILQ_ENTRY(ob_topic) dirty_entry;
	bool dirty;
	struct msg_list queue;		/* pending and in flight */
	unsigned inflight;
	char *conn, *topic, *join_payload;
	size_t key_len;
	char key[];			/* conn NUL topic */
};
TAILQ_HEAD(topic_list, ob_topic);

struct outbox {
	struct phxd *d;
	struct outbox_db *db;
	char *path;
	bool sync_full;
	int64_t next_id;
	struct strmap topics;		/* key -> ob_topic */
	struct strmap by_id;		/* 8 bytes of id -> outbox_msg */
	struct msg_list storing;	/* in the writes queued for the next batch */
	struct msg_list committing;	/* in the batch being committed */
	struct msg_list failed;
	size_t nfailed;
	struct topic_list dirty;	/* to send from, or to let go, after this pass */
	size_t count, bytes;		/* every stored push */
	size_t max_messages, max_bytes;
	struct event *settle_ev, *retry_ev, *commit_ev;
	uint64_t stored_total, delivered_total, failed_total, resent_total;
};

static int64_t
wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- writes ----------------------------------------------------------------------- */

static void
settle_soon(struct outbox *ob)
{
	if (!event_pending(ob->settle_ev, EV_TIMEOUT, NULL))
		event_active(ob->settle_ev, EV_TIMEOUT, 0);
}

/* Hands the queued writes to the writer thread, with the pushes they
 * store; false while it still commits the last batch. */
static bool
flush_writes(struct outbox *ob)
{
	if (outbox_db_busy(ob->db) || !outbox_db_queued(ob->db))
		return false;
	evtimer_del(ob->commit_ev);
	/* before the commit: without a writer thread it answers at once */
	TAILQ_CONCAT(&ob->committing, &ob->storing, entry);
	outbox_db_commit(ob->db);
	return true;
}

static void
db_remove(struct outbox *ob, int64_t id)
{
	outbox_db_remove(ob->db, id);
	settle_soon(ob);
}

static void
db_set_failed(struct outbox *ob, const struct outbox_msg *m, bool failed)
{
	outbox_db_set_failed(ob->db, m->id, m->attempts, failed, m->last_error);
	settle_soon(ob);
}

/* ---- messages and topics ----------------------------------------------------------- */

static struct outbox_msg *
msg_new(struct outbox *ob, const char *conn, const char *topic, const char *join_payload,
	const char *event, const void *payload, size_t payload_len)
{
	size_t cl = strlen(conn) + 1, tl = strlen(topic) + 1, jl = strlen(join_payload) + 1,
	       el = strlen(event) + 1;
	struct outbox_msg *m = xcalloc(1, sizeof(*m) + cl + tl + jl + el + payload_len + 1);

	m->ob = ob;
	m->conn = memcpy(m->text, conn, cl);
	m->topic = memcpy(m->conn + cl, topic, tl);
	m->join_payload = memcpy(m->topic + tl, join_payload, jl);
	m->event = memcpy(m->join_payload + jl, event, el);
	m->payload = m->event + el;
	memcpy(m->payload, payload, payload_len);
	m->payload_len = payload_len;
	return m;
}

static void
msg_index(struct outbox *ob, struct outbox_msg *m)
{
	strmap_put(&ob->by_id, (const char *)&m->id, sizeof(m->id), m);
	ob->count++;
	ob->bytes += m->payload_len;
}

static void
msg_free(struct outbox *ob, struct outbox_msg *m)
{
	strmap_del(&ob->by_id, (const char *)&m->id, sizeof(m->id));
	ob->count--;
	ob->bytes -= m->payload_len;
	free(m->last_error);
	free(m);
}

static void
mark_dirty(struct outbox *ob, struct ob_topic *t)
{
	if (!t->dirty) {
		t->dirty = true;
		TAILQ_INSERT_TAIL(&ob->dirty, t, dirty_entry);
	}
	settle_soon(ob);
}

static struct ob_topic *
topic_of(struct outbox *ob, const char *conn, const char *topic, const char *join_payload)
{
	size_t cl = strlen(conn), tl = strlen(topic), klen = cl + 1 + tl;
	char stack_key[512], *key = klen <= sizeof(stack_key) ? stack_key : xmalloc(klen);
	struct ob_topic *t;

	memcpy(key, conn, cl + 1);
	memcpy(key + cl + 1, topic, tl);
	t = strmap_get(&ob->topics, key, klen);
	if (t == NULL) {
		t = xcalloc(1, sizeof(*t) + klen + 1);
		TAILQ_INIT(&t->queue);
		memcpy(t->key, key, klen);
		t->key_len = klen;
		t->conn = t->key;
		t->topic = t->key + cl + 1;
		t->join_payload = xstrdup(join_payload);
		strmap_put(&ob->topics, t->key, klen, t);
	} else if (strcmp(t->join_payload, join_payload) != 0) {
		/* the newest push's: the payload the topic is joined with now */
		free(t->join_payload);
		t->join_payload = xstrdup(join_payload);
	}
	if (key != stack_key)
		free(key);
	return t;
}

static void
enqueue(struct outbox *ob, struct outbox_msg *m)
{
	struct ob_topic *t = topic_of(ob, m->conn, m->topic, m->join_payload);

	m->t = t;
	m->state = MSG_PENDING;
	TAILQ_INSERT_TAIL(&t->queue, m, entry);
	mark_dirty(ob, t);
}

static void
dequeue(struct outbox_msg *m)
{
	TAILQ_REMOVE(&m->t->queue, m, entry);
	mark_dirty(m->ob, m->t);
	m->t = NULL;
}

/* Nothing of t is stored any more: the outbox no longer wants the topic. */
static void
release(struct outbox *ob, struct ob_topic *t)
{
	struct phxd_conn *pc = phxd_find_conn(ob->d, t->conn);
	struct channel *ch = pc ? session_channel(pc->sess, t->topic) : NULL;

	if (ch != NULL && ch->from_outbox && session_unwant(pc->sess, ch, WANT_OUTBOX) &&
	    ch->state != CHAN_LEAVING)
		session_leave(pc->sess, t->topic, NULL, NULL);
	strmap_del(&ob->topics, t->key, t->key_len);
	free(t->join_payload);
	free(t);
}

/* ---- events -------------------------------------------------------------------------- */

struct report {
	const struct outbox_msg *m;
	const char *state;
	const struct sess_result *r;
};

static json_t *
response_json(const struct sess_result *r)
{
	json_t *j;

	if (r == NULL || r->response == NULL)
		return json_null();
	if (r->binary)
		return json_pack("{s:o}", "binary_bytes", json_integer((json_int_t)r->response_len));
	j = json_loadb(r->response, r->response_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	return j ? j : ipc_jstrn(r->response, r->response_len);
}

static json_t *
build_report(void *arg)
{
	const struct report *rep = arg;
	const struct outbox_msg *m = rep->m;
	json_t *o = json_pack("{s:s, s:o, s:I, s:o, s:o, s:I, s:s, s:i}", "type", "outbox", "conn",
			      ipc_jstr(m->conn), "at", (json_int_t)wall_ms(), "topic",
			      ipc_jstr(m->topic), "event", ipc_jstr(m->event), "id",
			      (json_int_t)m->id, "state", rep->state, "attempts", (int)m->attempts);

	if (rep->r != NULL && rep->r->status != NULL) {
		json_object_set_new(o, "status", ipc_jstr(rep->r->status));
		json_object_set_new(o, "response", response_json(rep->r));
	}
	return o;
}

static void
report(struct outbox *ob, const struct outbox_msg *m, const char *state,
       const struct sess_result *r)
{
	struct report rep = { m, state, r };

	if (ob->d->ipc != NULL)
		ipc_publish_built(ob->d->ipc, m->conn, "outbox", build_report, &rep);
}

/* ---- delivery ---------------------------------------------------------------------------- */

static void
sent(void *arg, const struct sess_result *r)
{
	struct outbox_msg *m = arg;
	struct outbox *ob = m->ob;

	m->req = NULL;
	m->t->inflight--;
	switch (r->outcome) {
	case SESS_OK:
		ob->delivered_total++;
		report(ob, m, "delivered", r);
		db_remove(ob, m->id);
		dequeue(m);
		msg_free(ob, m);
		return;
	case SESS_REPLY_ERROR: {
		/* Done: the server answered. Kept, visible, until retried. */
		json_t *e = json_pack("{s:o, s:o}", "status", ipc_jstr(r->status), "response",
				      response_json(r));
		free(m->last_error);
		m->last_error = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
		json_decref(e);
		ob->failed_total++;
		report(ob, m, "failed", r);
		dequeue(m);
		m->state = MSG_FAILED;
		TAILQ_INSERT_TAIL(&ob->failed, m, entry);
		ob->nfailed++;
		db_set_failed(ob, m, true);
		return;
	}
	default: {
		/* Not sent, or sent without an answer: again, in order, after the
		 * next join or RETRY_MS. Shutting down: stays stored. */
		json_t *e = ipc_jstr(r->message ? r->message : session_outcome_name(r->outcome));
		free(m->last_error);
		m->last_error = json_dumps(e, JSON_ENCODE_ANY);
		json_decref(e);
		m->state = MSG_PENDING;
		return;
	}
	}
}

/* Sends what t may have in flight, joining the topic first if needed. */
static void
kick(struct outbox *ob, struct ob_topic *t)
{
	struct phxd_conn *pc = phxd_find_conn(ob->d, t->conn);
	struct channel *ch;
	struct outbox_msg *m, *next;

	if (pc == NULL || ob->d->stopping)
		return;	/* a connection the config no longer has: kept for when it is back */
	ch = session_channel(pc->sess, t->topic);
	if (ch == NULL || ch->state == CHAN_CLOSED || !ch->from_outbox) {
		session_join(pc->sess, t->topic, t->join_payload, WANT_OUTBOX, NULL, NULL);
		ch = session_channel(pc->sess, t->topic);
	}
	if (ch == NULL || ch->state != CHAN_JOINED || ch->sess->state != SESS_OPEN)
		return;	/* its join event kicks again */
	for (m = TAILQ_FIRST(&t->queue); m != NULL && t->inflight < WINDOW; m = next) {
		next = TAILQ_NEXT(m, entry);
		if (m->state != MSG_PENDING)
			continue;
		struct sess_push_args a = { .topic = m->topic, .event = m->event,
					    .payload = m->payload, .payload_len = m->payload_len,
					    .binary = m->binary, .await_reply = true };
		m->state = MSG_INFLIGHT;
		t->inflight++;
		if (m->attempts++ > 0)
			ob->resent_total++;
		m->req = session_push(pc->sess, &a, sent, m);
		if (m->state != MSG_INFLIGHT)
			break;	/* refused at once (a full buffer): later */
	}
}

/* The writer's answer for the batch in committing: each push stored, or
 * (error) none. */
static void
committed(void *arg, const char *error)
{
	struct outbox *ob = arg;
	struct outbox_msg *m;
	char why[320];

	snprintf(why, sizeof(why), "the outbox could not store it: %s", error ? error : "");
	while ((m = TAILQ_FIRST(&ob->committing)) != NULL) {
		TAILQ_REMOVE(&ob->committing, m, entry);
		if (error != NULL) {
			struct outbox_result res = { 0, PHXD_E_OUTBOX, why };
			if (m->stored)
				m->stored(m->arg, &res);
			msg_free(ob, m);
			continue;
		}
		struct outbox_result res = { m->id, NULL, NULL };
		ob->stored_total++;
		enqueue(ob, m);
		if (m->stored)
			m->stored(m->arg, &res);
		m->stored = NULL;
	}
	/* what came while the writer was busy */
	settle_soon(ob);
	phxd_timers_changed(ob->d);
}

/* End of a loop pass: commit, answer what was stored, send, let go. */
static void
settle(struct outbox *ob)
{
	struct ob_topic *t;

	/* a push waits for its answer: now, or when the writer is done */
	if (!TAILQ_EMPTY(&ob->storing)) {
		flush_writes(ob);
	} else if (outbox_db_queued(ob->db) && !evtimer_pending(ob->commit_ev, NULL)) {
		struct timeval tv = { 0, LAZY_COMMIT_MS * 1000 };
		evtimer_add(ob->commit_ev, &tv);
	}
	while ((t = TAILQ_FIRST(&ob->dirty)) != NULL) {
		TAILQ_REMOVE(&ob->dirty, t, dirty_entry);
		t->dirty = false;
		if (TAILQ_EMPTY(&t->queue))
			release(ob, t);
		else
			kick(ob, t);
	}
	phxd_timers_changed(ob->d);
	if (!TAILQ_EMPTY(&ob->dirty))
		settle_soon(ob);
}

static void
commit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct outbox *ob = arg;

	(void)fd;
	(void)what;
	/* the writer busy: its answer settles, and this comes again */
	if (!flush_writes(ob))
		settle_soon(ob);
}

static void
settle_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	settle(arg);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct outbox *ob = arg;
	struct strmap_iter it;

	(void)fd;
	(void)what;
	for (struct strmap_entry *e = strmap_first(&ob->topics, &it); e;
	     e = strmap_next(&ob->topics, &it)) {
		struct ob_topic *t = e->value;
		if (t->inflight < WINDOW && !TAILQ_EMPTY(&t->queue))
			mark_dirty(ob, t);
	}
}

void
outbox_topic_joined(struct outbox *ob, const struct phxd_conn *pc, const char *topic)
{
	size_t cl = strlen(pc->conf->name), tl = strlen(topic);
	char key[512];
	struct ob_topic *t;

	if (ob == NULL || cl + 1 + tl > sizeof(key))
		return;	/* a name that long waits for the retry tick */
	memcpy(key, pc->conf->name, cl + 1);
	memcpy(key + cl + 1, topic, tl);
	if ((t = strmap_get(&ob->topics, key, cl + 1 + tl)) != NULL)
		mark_dirty(ob, t);
}

/* ---- storing ----------------------------------------------------------------------------- */

static void
refuse(outbox_stored_fn stored, void *arg, const char *code, const char *message)
{
	struct outbox_result res = { 0, code, message };

	if (stored)
		stored(arg, &res);
}

struct outbox_msg *
outbox_store(struct outbox *ob, const struct outbox_push *p, outbox_stored_fn stored, void *arg)
{
	char why[256];
	struct outbox_msg *m;

	if (ob->count + 1 > ob->max_messages || ob->bytes + p->payload_len > ob->max_bytes) {
		snprintf(why, sizeof(why),
			 "the outbox is full: %zu pushes, %zu bytes stored (outbox_max_messages = %zu, "
			 "outbox_max_bytes = %zu)", ob->count, ob->bytes, ob->max_messages,
			 ob->max_bytes);
		refuse(stored, arg, PHXD_E_OUTBOX_FULL, why);
		return NULL;
	}
	int64_t now = wall_ms();
	m = msg_new(ob, p->pc->conf->name, p->topic, p->join_payload, p->event, p->payload,
		    p->payload_len);
	m->id = ob->next_id++;
	m->binary = p->binary;
	m->created_ms = now;
	m->state = MSG_STORING;
	m->stored = stored;
	m->arg = arg;
	struct outbox_row row = { .id = m->id, .conn = m->conn, .topic = m->topic,
				  .join_payload = m->join_payload, .event = m->event,
				  .payload = m->payload, .payload_len = m->payload_len,
				  .binary = m->binary, .created_ms = now };
	outbox_db_insert(ob->db, &row);
	TAILQ_INSERT_TAIL(&ob->storing, m, entry);
	msg_index(ob, m);
	settle_soon(ob);
	return m;
}

void
outbox_forget(struct outbox_msg *m)
{
	m->stored = NULL;
}

/* ---- operator actions ----------------------------------------------------------------------- */

static struct outbox_msg *
find(const struct outbox *ob, int64_t id)
{
	return strmap_get(&ob->by_id, (const char *)&id, sizeof(id));
}

bool
outbox_retry(struct outbox *ob, int64_t id)
{
	struct outbox_msg *m = find(ob, id);

	if (m == NULL || m->state == MSG_STORING)
		return m != NULL;
	if (m->state == MSG_FAILED) {
		TAILQ_REMOVE(&ob->failed, m, entry);
		ob->nfailed--;
		free(m->last_error);
		m->last_error = NULL;
		db_set_failed(ob, m, false);
		enqueue(ob, m);	/* after what its topic has waiting */
	} else {
		mark_dirty(ob, m->t);
	}
	return true;
}

bool
outbox_drop(struct outbox *ob, int64_t id)
{
	struct outbox_msg *m = find(ob, id);

	if (m == NULL)
		return false;
	switch (m->state) {
	case MSG_STORING:
		return false;	/* not stored yet: its id is not known to anyone */
	case MSG_FAILED:
		TAILQ_REMOVE(&ob->failed, m, entry);
		ob->nfailed--;
		break;
	case MSG_INFLIGHT:
		/* sent already: its reply is forgotten */
		session_cancel(m->req);
		m->t->inflight--;
		/* fall through */
	case MSG_PENDING:
		dequeue(m);
		break;
	}
	db_remove(ob, m->id);
	msg_free(ob, m);
	return true;
}

/* ---- views ---------------------------------------------------------------------------------- */

json_t *
outbox_summary(const struct outbox *ob)
{
	int64_t oldest = 0, now = wall_ms();
	size_t failed = ob->nfailed;
	struct strmap_iter it;
	const struct outbox_msg *m;

	/* a queue is in the order its pushes were stored (a retried one
	 * excepted): its head is its oldest */
	for (struct strmap_entry *e = strmap_first(&ob->topics, &it); e;
	     e = strmap_next(&ob->topics, &it)) {
		m = TAILQ_FIRST(&((struct ob_topic *)e->value)->queue);
		if (m != NULL && (oldest == 0 || m->created_ms < oldest))
			oldest = m->created_ms;
	}
	json_t *o = json_pack("{s:o, s:s, s:I, s:I, s:I, s:I, s:I}", "path", ipc_jstr(ob->path),
			      "sync", ob->sync_full ? "full" : "normal", "pending",
			      (json_int_t)(ob->count - failed), "failed", (json_int_t)failed, "bytes",
			      (json_int_t)ob->bytes, "max_messages", (json_int_t)ob->max_messages,
			      "max_bytes", (json_int_t)ob->max_bytes);
	json_object_set_new(o, "oldest_pending_age_ms",
			    oldest ? json_integer((json_int_t)(now > oldest ? now - oldest : 0))
				   : json_null());
	json_object_set_new(o, "totals",
			    json_pack("{s:I, s:I, s:I, s:I}", "stored",
				      (json_int_t)ob->stored_total, "delivered",
				      (json_int_t)ob->delivered_total, "failed",
				      (json_int_t)ob->failed_total, "resent",
				      (json_int_t)ob->resent_total));
	return o;
}

static int
by_id(const void *a, const void *b)
{
	const struct outbox_msg *x = *(const struct outbox_msg *const *)a,
				*y = *(const struct outbox_msg *const *)b;

	return x->id < y->id ? -1 : x->id > y->id;
}

json_t *
outbox_list(const struct outbox *ob, size_t limit)
{
	struct outbox_msg **all = xmalloc((ob->count + 1) * sizeof(*all));
	json_t *list = json_array();
	struct strmap_iter it;
	size_t n = 0;

	for (struct strmap_entry *e = strmap_first(&ob->by_id, &it); e;
	     e = strmap_next(&ob->by_id, &it))
		all[n++] = e->value;
	qsort(all, n, sizeof(*all), by_id);
	for (size_t i = 0; i < n && i < limit; i++) {
		const struct outbox_msg *m = all[i];
		json_t *o = json_pack("{s:I, s:o, s:o, s:o, s:s, s:i, s:I, s:I}", "id",
				      (json_int_t)m->id, "conn", ipc_jstr(m->conn), "topic",
				      ipc_jstr(m->topic), "event", ipc_jstr(m->event), "state",
				      state_names[m->state], "attempts", (int)m->attempts, "bytes",
				      (json_int_t)m->payload_len, "created_at",
				      (json_int_t)m->created_ms);
		if (m->last_error != NULL) {
			json_t *e = json_loads(m->last_error, JSON_DECODE_ANY, NULL);
			json_object_set_new(o, "last_error", e ? e : ipc_jstr(m->last_error));
		}
		json_array_append_new(list, o);
	}
	free(all);
	return list;
}

const char *
outbox_path(const struct outbox *ob)
{
	return ob->path;
}

void
outbox_set_limits(struct outbox *ob, size_t max_messages, size_t max_bytes)
{
	ob->max_messages = max_messages;
	ob->max_bytes = max_bytes;
}

/* ---- open and close --------------------------------------------------------------------------- */

static void
load_row(void *arg, const struct outbox_row *row)
{
	struct outbox *ob = arg;
	struct outbox_msg *m = msg_new(ob, row->conn, row->topic, row->join_payload, row->event,
				       row->payload, row->payload_len);

	m->id = row->id;
	m->binary = row->binary;
	m->created_ms = row->created_ms;
	m->attempts = row->attempts;
	if (row->last_error != NULL)
		m->last_error = xstrdup(row->last_error);
	msg_index(ob, m);
	if (row->failed) {
		m->state = MSG_FAILED;
		TAILQ_INSERT_TAIL(&ob->failed, m, entry);
		ob->nfailed++;
	} else {
		enqueue(ob, m);
	}
}

struct outbox *
outbox_open(struct phxd *d, const char *path, bool sync_full, bool threaded, char *err,
	    size_t errlen)
{
	struct outbox *ob = xcalloc(1, sizeof(*ob));

	ob->d = d;
	ob->path = xstrdup(path);
	ob->sync_full = sync_full;
	ob->max_messages = ob->max_bytes = SIZE_MAX;
	strmap_init(&ob->topics);
	strmap_init(&ob->by_id);
	TAILQ_INIT(&ob->storing);
	TAILQ_INIT(&ob->committing);
	TAILQ_INIT(&ob->failed);
	TAILQ_INIT(&ob->dirty);
	ob->settle_ev = event_new(d->base, -1, 0, settle_cb, ob);
	ob->retry_ev = event_new(d->base, -1, EV_PERSIST, retry_cb, ob);
	ob->commit_ev = evtimer_new(d->base, commit_cb, ob);
	/* after the pass's requests, with the frames they made */
	event_priority_set(ob->settle_ev, 2);
	ob->db = outbox_db_open(d->base, path, sync_full, threaded, load_row, committed, ob,
				&ob->next_id, err, errlen);
	if (ob->db == NULL) {
		/* nothing is delivered from a database that did not open */
		TAILQ_INIT(&ob->dirty);
		outbox_close(ob);
		return NULL;
	}
	struct timeval tv = { RETRY_MS / 1000, (RETRY_MS % 1000) * 1000 };
	evtimer_add(ob->retry_ev, &tv);
	log_info("outbox %s: %zu stored push%s", path, ob->count, ob->count == 1 ? "" : "es");
	return ob;
}

void
outbox_start(struct outbox *ob)
{
	struct strmap_iter it;

	for (struct strmap_entry *e = strmap_first(&ob->topics, &it); e;
	     e = strmap_next(&ob->topics, &it))
		mark_dirty(ob, e->value);
	/* now: from the first request on, the topics are wanted */
	settle(ob);
}

void
outbox_close(struct outbox *ob)
{
	struct strmap_iter it;

	if (ob == NULL)
		return;
	/* everything queued is committed, and each caller answered */
	if (ob->db != NULL) {
		do
			outbox_db_wait(ob->db);
		while (flush_writes(ob));
		outbox_db_close(ob->db);
	}
	for (struct strmap_entry *e = strmap_first(&ob->by_id, &it); e;
	     e = strmap_next(&ob->by_id, &it)) {
		struct outbox_msg *m = e->value;
		if (m->req != NULL)
			session_cancel(m->req);
		free(m->last_error);
		free(m);
	}
	for (struct strmap_entry *e = strmap_first(&ob->topics, &it); e;
	     e = strmap_next(&ob->topics, &it)) {
		struct ob_topic *t = e->value;
		free(t->join_payload);
		free(t);
	}
	strmap_free(&ob->by_id);
	strmap_free(&ob->topics);
	if (ob->settle_ev)
		event_free(ob->settle_ev);
	if (ob->retry_ev)
		event_free(ob->retry_ev);
	if (ob->commit_ev)
		event_free(ob->commit_ev);
	free(ob->path);
	free(ob);
}
