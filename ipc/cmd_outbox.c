/* SPDX-License-Identifier: MIT */
/* outbox: the durable pushes phxd holds; retry or drop one by id. */
#include "ipc.h"

#include <string.h>

#define LIST_DEFAULT 1000
#define LIST_MAX 100000

static bool
get_id(struct ipc_request *r, json_int_t *id)
{
	json_t *v = json_object_get(r->body, "push_id");

	if (!json_is_integer(v) || json_integer_value(v) < 1) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST,
				"\"push_id\" (the stored push's id, a positive integer) is required");
		return false;
	}
	*id = json_integer_value(v);
	return true;
}

static void
exec_outbox(struct ipc_request *r)
{
	struct outbox *ob = r->d->outbox;
	const char *action = "list";
	json_int_t limit = LIST_DEFAULT, id;

	if (!ipc_get_string(r, "action", false, &action) ||
	    !ipc_get_uint(r, "limit", LIST_MAX, &limit))
		return;
	if (action == NULL)
		action = "list";
	if (strcmp(action, "list") != 0 && strcmp(action, "retry") != 0 &&
	    strcmp(action, "drop") != 0) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST, "\"action\" is list, retry or drop");
		return;
	}
	if (ob == NULL) {
		ipc_reply_error(r, PHXD_E_OUTBOX, "%s",
				r->d->outbox_error[0] ? r->d->outbox_error
						      : "no outbox is configured (outbox in [phxd])");
		return;
	}
	if (strcmp(action, "list") == 0) {
		if (json_object_get(r->body, "limit") == NULL)
			limit = LIST_DEFAULT;
		json_t *o = outbox_summary(ob);
		json_object_set_new(o, "messages", outbox_list(ob, (size_t)limit));
		ipc_reply_ok(r, o);
		return;
	}
	if (!get_id(r, &id))
		return;
	bool found = strcmp(action, "retry") == 0 ? outbox_retry(ob, id) : outbox_drop(ob, id);
	if (!found) {
		ipc_reply_error(r, PHXD_E_NOT_FOUND, "no stored push has id %lld", (long long)id);
		return;
	}
	ipc_reply_ok(r, json_pack("{s:I, s:s}", "push_id", id, "status",
				  strcmp(action, "retry") == 0 ? "pending" : "dropped"));
}

const struct ipc_cmd cmd_outbox = { "outbox", CMD_TIMERS, exec_outbox };
