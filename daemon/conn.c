/* SPDX-License-Identifier: MIT */
#include "conn.h"

#include "ipc/ipc.h"
#include "log.h"
#include "outbox.h"
#include "phxd.h"
#include "xmalloc.h"

#include <stdlib.h>
#include <string.h>

static const struct session_ops host_ops;

/* ---- shards ----------------------------------------------------------------- */

static struct phxd_shard *
shard_new(struct phxd_conn *pc)
{
	struct phxd *d = pc->d;
	struct phxd_shard *sh = xcalloc(1, sizeof(*sh));
	size_t slot = 0, index = 0;

	/* Slots of closed shards are taken again: transport ids stay few, and
	 * generations are never reused, so an old socket's events cannot
	 * reach the new shard. */
	while (slot < d->nshard_slots && d->shards[slot] != NULL)
		slot++;
	if (slot == d->nshard_slots) {
		d->shards = xrealloc(d->shards, (d->nshard_slots + 1) * sizeof(*d->shards));
		d->nshard_slots++;
	}
	while (index < pc->nshards && pc->shards[index] != NULL)
		index++;
	if (index == pc->nshards) {
		pc->shards = xrealloc(pc->shards, (pc->nshards + 1) * sizeof(*pc->shards));
		pc->nshards++;
	}
	sh->pc = pc;
	sh->id = (uint32_t)slot;
	sh->index = (unsigned)index;
	d->shards[slot] = sh;
	pc->shards[index] = sh;
	return sh;
}

static void
cancel_lookup(struct phxd_shard *sh)
{
	if (sh->lookup != NULL) {
		resolver_cancel(sh->pc->d->resolver, sh->lookup);
		sh->lookup = NULL;
	}
}

static void
shard_free(struct phxd_shard *sh)
{
	sh->pc->d->shards[sh->id] = NULL;
	sh->pc->shards[sh->index] = NULL;
	cancel_lookup(sh);
	session_free(sh->sess);
	free(sh);
}

/* A websocket more for pc, started if pc is. */
static struct session *
shard_open(struct phxd_conn *pc)
{
	struct phxd_shard *sh = shard_new(pc);

	sh->sess = session_new_shard(pc->sess, sh);
	log_info("%s: websocket %u opened for more topics (max_channels = %u)", pc->conf->name,
		 sh->index, pc->cap);
	if (pc->started)
		session_start(sh->sess);
	return sh->sess;
}

static bool
has_room(const struct phxd_conn *pc, const struct session *s)
{
	return pc->cap == 0 || s->nchans < pc->cap;
}

/* The first shard with room, other than `not`; a new one when none has.
 * While the first shard's session is being made, it is `asking`. */
static struct session *
place(struct phxd_conn *pc, struct session *asking, const struct session *not)
{
	for (size_t i = 0; i < pc->nshards; i++) {
		struct phxd_shard *sh = pc->shards[i];
		struct session *s = sh == NULL ? NULL : sh->sess ? sh->sess : asking;
		if (s != NULL && s != not && has_room(pc, s))
			return s;
	}
	if (pc->sess == NULL) {
		/* session_new() of the first shard is placing the config's
		 * topics: the rest wait for the first shard to exist. */
		return asking;
	}
	return shard_open(pc);
}

static void
reap_empty(struct tq_timer *t, void *arg)
{
	struct phxd_conn *pc = arg;

	(void)t;
	for (size_t i = 1; i < pc->nshards; i++) {
		struct phxd_shard *sh = pc->shards[i];
		if (sh == NULL || sh->sess->nchans > 0)
			continue;
		log_info("%s: websocket %u holds no topic any more; closing it", pc->conf->name,
			 sh->index);
		session_stop(sh->sess);
		shard_free(sh);
	}
	while (pc->nshards > 1 && pc->shards[pc->nshards - 1] == NULL)
		pc->nshards--;
	phxd_notify_status(pc->d);
}

/* ---- session host -------------------------------------------------------------- */

static void
resolved(void *arg, const char *addr, const char *why)
{
	struct phxd_shard *sh = arg;
	struct phxd *d = sh->pc->d;

	sh->lookup = NULL;
	if (addr != NULL) {
		transport_connect(d->tp, sh->id, sh->gen, sh->sess->conf, addr);
		return;
	}
	d->tq.now = phxd_now_ms();
	sh->gen = ++d->next_gen;
	session_on_close(sh->sess, 1006, why, 0);
	phxd_timers_changed(d);
}

static void
host_connect(void *host, struct session *s)
{
	struct phxd_shard *sh = host;
	struct phxd *d = sh->pc->d;

	sh->gen = ++d->next_gen;
	if (s->conf->ip_literal) {
		transport_connect(d->tp, sh->id, sh->gen, s->conf, s->conf->host);
		return;
	}
	/* Retries walk through the addresses a name has. */
	sh->lookup = resolver_lookup(d->resolver, s->conf->host, (unsigned)s->stats.attempts,
				     resolved, sh);
}

static void
host_close(void *host, struct session *s, int code, const char *reason)
{
	struct phxd_shard *sh = host;
	struct phxd *d = sh->pc->d;

	(void)s;
	cancel_lookup(sh);
	transport_close(d->tp, sh->id, sh->gen, code, reason);
	sh->gen = ++d->next_gen;	/* whatever that socket still says is not for us */
}

static void
host_send(void *host, struct session *s, const char *frame, size_t len, bool binary)
{
	struct phxd_shard *sh = host;

	(void)s;
	transport_send(sh->pc->d->tp, sh->id, sh->gen, frame, len, binary);
}

static void
host_message(void *host, struct session *s, const struct phx_msg *m)
{
	struct phxd_shard *sh = host;

	(void)s;
	ipc_publish_message(sh->pc->d->ipc, sh->pc, m);
}

static void
host_event(void *host, struct session *s, const struct sess_event *ev)
{
	struct phxd_shard *sh = host;
	struct phxd *d = sh->pc->d;

	(void)s;
	if (d->ipc)
		ipc_publish_event(d->ipc, sh, ev);
	if (ev->kind == SEV_CHANNEL && ev->chan_state == CHAN_JOINED && d->outbox != NULL)
		outbox_topic_joined(d->outbox, sh->pc, ev->topic);
	if (ev->kind != SEV_CONNECTING)
		phxd_notify_status(d);
}

static double
host_random(void *host)
{
	(void)host;
	return drand48();
}

static struct session *
host_place(void *host, struct session *s)
{
	struct phxd_shard *sh = host;

	return place(sh->pc, s, NULL);
}

/* The server holds fewer channels per socket than pc->cap: it has `joined`
 * of ours on this one, which is its cap. */
static bool
host_cap_refused(void *host, struct session *s, struct channel *ch)
{
	struct phxd_shard *sh = host;
	struct phxd_conn *pc = sh->pc;
	unsigned joined = s->njoined;

	/* Refused with nothing joined: no other socket would do better. */
	if (joined == 0)
		return false;
	if (pc->cap == 0 || joined < pc->cap) {
		log_warnx("%s: the server holds %u channels per websocket; placing %u per websocket "
			  "(max_channels = %u)", pc->conf->name, joined, joined, pc->conf->max_channels);
		pc->cap = joined;
	}
	log_info("%s: %s refused on websocket %u (too many channels joined); moving it",
		 pc->conf->name, ch->topic, sh->index);
	session_move(ch, place(pc, NULL, s));
	return true;
}

static void
host_released(void *host, struct session *s)
{
	struct phxd_shard *sh = host;

	if (sh->index != 0 && s->nchans == 0)
		tq_arm(&sh->pc->d->tq, &sh->pc->reap_timer, 0);
}

static const struct session_ops host_ops = {
	.connect = host_connect,
	.close = host_close,
	.send = host_send,
	.message = host_message,
	.event = host_event,
	.random = host_random,
	.place = host_place,
	.cap_refused = host_cap_refused,
	.released = host_released,
};

void
conn_transport_event(struct phxd *d, const struct tp_event *ev)
{
	struct phxd_shard *sh = ev->id < d->nshard_slots ? d->shards[ev->id] : NULL;

	if (sh == NULL || ev->gen != sh->gen)
		return;
	switch (ev->kind) {
	case TP_OPEN:
		if (ev->no_subprotocol && !sh->token_ignored)
			log_warnx("%s: the server did not take the auth token (it chose no websocket "
				  "subprotocol: Phoenix before 1.8, or auth_token not enabled there)",
				  sh->pc->conf->name);
		sh->token_ignored = ev->no_subprotocol;
		session_on_open(sh->sess);
		break;
	case TP_FRAME:
		session_on_frame(sh->sess, ev->data, ev->len, ev->binary);
		break;
	case TP_CLOSED:
		sh->gen = ++d->next_gen;
		session_on_close(sh->sess, ev->code, ev->reason, ev->http_status);
		break;
	}
}

/* ---- the connection --------------------------------------------------------------- */

struct phxd_conn *
conn_new(struct phxd *d, struct conn_conf *conf)
{
	struct phxd_conn *pc = xcalloc(1, sizeof(*pc));

	if (conf->tls && !conf->tls_verify)
		log_warnx("%s: tls_verify = no: the server's certificate is not checked, so anyone "
			  "on the path can pose as %s", conf->name, conf->host);
	pc->d = d;
	pc->conf = conf;
	pc->cap = conf->max_channels;
	tq_timer_init(&pc->reap_timer, reap_empty, pc);
	struct phxd_shard *first = shard_new(pc);
	first->sess = session_new(conf, &host_ops, first, &d->tq);
	pc->sess = first->sess;
	/* The first shard took every config topic while it was being made;
	 * those past its share go on to the next shards, in config order. */
	struct channel *ch, *next;
	unsigned kept = 0;
	for (ch = TAILQ_FIRST(&pc->sess->chans); ch != NULL; ch = next) {
		next = TAILQ_NEXT(ch, link);
		if (pc->cap == 0 || ++kept <= pc->cap)
			continue;
		session_move(ch, place(pc, NULL, pc->sess));
	}
	return pc;
}

void
conn_start(struct phxd_conn *pc)
{
	pc->started = true;
	for (size_t i = 0; i < pc->nshards; i++)
		if (pc->shards[i] != NULL)
			session_start(pc->shards[i]->sess);
}

void
conn_stop(struct phxd_conn *pc)
{
	tq_cancel(&pc->d->tq, &pc->reap_timer);
	for (size_t i = 0; i < pc->nshards; i++)
		if (pc->shards[i] != NULL)
			session_stop(pc->shards[i]->sess);
}

void
conn_free(struct phxd_conn *pc)
{
	tq_cancel(&pc->d->tq, &pc->reap_timer);
	/* The first shard's session owns the topic map: last. */
	for (size_t i = pc->nshards; i-- > 0;)
		if (pc->shards[i] != NULL)
			shard_free(pc->shards[i]);
	free(pc->shards);
	free(pc);
}

void
conn_reconfigure(struct phxd_conn *pc, struct conn_conf *conf)
{
	pc->conf = conf;
	/* A new max_channels applies to placements from now on; a cap the
	 * server taught is learnt again if it still holds. */
	pc->cap = conf->max_channels;
	for (size_t i = pc->nshards; i-- > 0;)
		if (pc->shards[i] != NULL)
			session_reconfigure(pc->shards[i]->sess, conf);
}
