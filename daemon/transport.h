/* SPDX-License-Identifier: MIT */
/*
 * transport: the websockets, on the daemon's own loop. RFC 6455 client
 * framing (protocol/ws_codec.h) over bufferevents, plain or OpenSSL; TLS
 * contexts come from tls.h, names are resolved before (resolve.h). It
 * only moves frames: connect, send, receive, close. Frames sent in one
 * loop pass leave in one write.
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
	const char *data;	/* TP_FRAME payload, valid during the call */
};

struct transport;

/* on_event runs on the loop for each event, in order; never inside a
 * transport_* call (events those cause come in a later callback). */
typedef void (*tp_event_fn)(void *ud, const struct tp_event *ev);

struct transport *transport_new(struct event_base *base, tp_event_fn fn, void *ud);
/* Opens a websocket for connection c (its settings are referenced) to
 * address, the numeric form of c->host (see resolve.h). */
void transport_connect(struct transport *tp, uint32_t id, uint32_t gen, const struct conn_conf *c,
		       const char *address);
/* Queues a frame; frames of one loop pass go over in one write. */
void transport_send(struct transport *tp, uint32_t id, uint32_t gen, const char *data, size_t len,
		    bool binary);
void transport_close(struct transport *tp, uint32_t id, uint32_t gen, int code,
		     const char *reason);
/* No new websockets from now on; `drained` runs (once, from the loop) when
 * what is queued for the servers has left, or after grace_ms. */
void transport_stop(struct transport *tp, unsigned grace_ms, void (*drained)(void *arg),
		    void *arg);
/* Closes every socket at once, without events. */
void transport_free(struct transport *tp);
/* How often a streaming websocket was left unread for a moment, so that
 * its frames are read, handled and written on together (read moderation). */
uint64_t transport_read_pauses(const struct transport *tp);
/* Read callbacks run so far: grows whenever a server's socket was read. */
uint64_t transport_reads(const struct transport *tp);

#endif
