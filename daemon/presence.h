/* SPDX-License-Identifier: MIT */
/*
 * presence: a topic's presence list as Phoenix.Presence keeps it, from the
 * presence_state and presence_diff messages the server sends (the
 * phoenix.js Presence.syncState / syncDiff rules). Diffs that arrive
 * before this join's presence_state wait and are applied after it.
 */
#ifndef PHXD_PRESENCE_H
#define PHXD_PRESENCE_H

#include "protocol/phx_codec.h"

#include <jansson.h>
#include <stdbool.h>

struct presence {
	json_t *state;		/* object, or NULL until the first presence_state */
	json_t *early;		/* diffs that came before this join's state */
	bool synced;		/* presence_state seen since the join */
};

/* A new join: the state it brings replaces what was kept. */
void presence_rejoined(struct presence *p);
/* Takes a presence_state or presence_diff message (others are ignored). */
void presence_on_message(struct presence *p, const struct phx_msg *m);
void presence_free(struct presence *p);

#endif
