/* SPDX-License-Identifier: MIT */
#include "presence.h"

#define PRESENCE_EARLY_MAX 256

static bool
meta_has_ref(json_t *metas, json_t *ref)
{
	size_t i;
	json_t *m;

	json_array_foreach (metas, i, m)
		if (json_equal(json_object_get(m, "phx_ref"), ref))
			return true;
	return false;
}

static void
apply_diff(json_t *state, json_t *diff)
{
	json_t *joins = json_object_get(diff, "joins"), *leaves = json_object_get(diff, "leaves");
	const char *key;
	json_t *val;

	json_object_foreach (joins, key, val) {
		json_t *cur = json_object_get(state, key);
		json_t *fresh = json_deep_copy(val);
		json_t *metas = json_object_get(fresh, "metas");
		if (!json_is_array(metas)) {
			json_decref(fresh);
			continue;
		}
		if (cur != NULL) {
			/* Metas we had and the join does not repeat come first. */
			json_t *merged = json_array(), *m;
			size_t i;
			json_array_foreach (json_object_get(cur, "metas"), i, m)
				if (!meta_has_ref(metas, json_object_get(m, "phx_ref")))
					json_array_append(merged, m);
			json_array_extend(merged, metas);
			json_object_set_new(fresh, "metas", merged);
		}
		json_object_set_new(state, key, fresh);
	}
	json_object_foreach (leaves, key, val) {
		json_t *cur = json_object_get(state, key), *kept, *m;
		json_t *gone = json_object_get(val, "metas");
		size_t i;
		if (cur == NULL || !json_is_array(gone))
			continue;
		kept = json_array();
		json_array_foreach (json_object_get(cur, "metas"), i, m)
			if (!meta_has_ref(gone, json_object_get(m, "phx_ref")))
				json_array_append(kept, m);
		if (json_array_size(kept) == 0) {
			json_decref(kept);
			json_object_del(state, key);
		} else {
			json_object_set_new(cur, "metas", kept);
		}
	}
}

void
presence_rejoined(struct presence *p)
{
	p->synced = false;
	if (p->early)
		json_array_clear(p->early);
	else
		p->early = json_array();
}

void
presence_on_message(struct presence *p, const struct phx_msg *m)
{
	json_t *payload;
	bool state = phx_field_eq(m->event, "presence_state");

	if (m->kind != PHX_TEXT || (!state && !phx_field_eq(m->event, "presence_diff")))
		return;
	payload = json_loadb(m->payload.s, m->payload.len, 0, NULL);
	if (!json_is_object(payload)) {
		json_decref(payload);
		return;
	}
	if (p->early == NULL)
		p->early = json_array();
	if (state) {
		size_t i;
		json_t *diff;
		json_decref(p->state);
		p->state = payload;
		p->synced = true;
		json_array_foreach (p->early, i, diff)
			apply_diff(p->state, diff);
		json_array_clear(p->early);
		return;
	}
	/* presence_diff: before this join's presence_state it waits. */
	if (p->synced) {
		if (p->state == NULL)
			p->state = json_object();
		apply_diff(p->state, payload);
	} else if (json_array_size(p->early) < PRESENCE_EARLY_MAX) {
		json_array_append(p->early, payload);
	}
	json_decref(payload);
}

void
presence_free(struct presence *p)
{
	json_decref(p->state);
	json_decref(p->early);
	p->state = p->early = NULL;
}
