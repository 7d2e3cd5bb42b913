/* SPDX-License-Identifier: MIT */
/*
 * transport: the libwebsockets service thread. It only moves frames:
 * connect, send, receive, close. The libevent thread talks to it through
 * two queues; one lws_cancel_service() wakes it, one event_active() wakes
 * the libevent thread back, and both only when a queue goes from empty to
 * non-empty, so a burst costs one wake-up each way.
 *
 * Every websocket is named by (id, gen): the daemon bumps gen for each new
 * attempt, so events of an old socket are recognisable and dropped.
 */
#ifndef PHXD_TRANSPORT_H
#define PHXD_TRANSPORT_H

#include "config.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

enum tp_event_kind {
	TP_OPEN,
	TP_FRAME,
	TP_CLOSED,	/* code (1006 when none), reason, http_status (0 when none) */
};

struct tp_event {
	enum tp_event_kind kind;
	uint32_t id, gen;
	int code;
	int http_status;
	bool binary;
	bool no_subprotocol;	/* TP_OPEN: subprotocols were offered, none chosen */
	char reason[128];
	size_t len;
	char data[];		/* TP_FRAME payload */
};

struct transport;

/* on_event runs on the libevent thread for each event, in order; the event
 * is freed after it returns. */
typedef void (*tp_event_fn)(void *ud, const struct tp_event *ev);

/* receive_cap: received bytes waiting for the libevent thread past which
 * the websocket thread stops reading sockets until it catches up. */
struct transport *transport_new(struct event_base *base, tp_event_fn fn, void *ud,
				size_t receive_cap);
void transport_set_receive_cap(struct transport *tp, size_t receive_cap);
/* Grows every 250 ms while the websocket thread's loop runs (any thread). */
unsigned long transport_alive_ticks(struct transport *tp);
/* Creates the lws context and starts the thread; false with a log on failure. */
bool transport_start(struct transport *tp);
/* Opens a websocket for connection c (its settings are copied) to address,
 * the numeric form of c->host (lws must not resolve names: see resolve.h). */
void transport_connect(struct transport *tp, uint32_t id, uint32_t gen, const struct conn_conf *c,
		       const char *address);
/* Queues a frame; frames of one libevent pass go over in one batch. */
void transport_send(struct transport *tp, uint32_t id, uint32_t gen, const char *data, size_t len,
		    bool binary);
void transport_close(struct transport *tp, uint32_t id, uint32_t gen, int code,
		     const char *reason);
/* Stops the thread after it has flushed what is queued (at most `grace_ms`). */
void transport_stop(struct transport *tp, unsigned grace_ms);
void transport_free(struct transport *tp);

#endif
