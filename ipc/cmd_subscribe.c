/* SPDX-License-Identifier: MIT */
/* subscribe / unsubscribe: follow the messages of a topic or a pattern. */
#include "ipc.h"

#include <string.h>

static void
exec_subscribe(struct ipc_request *r)
{
	json_t *events = json_object_get(r->body, "events");
	const char *topic = r->topic, *star = strchr(topic, '*');
	size_t i, n = strlen(topic);
	json_t *e;

	if (n == 0 || n > 255 || (star != NULL && star != topic + n - 1)) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST,
				"\"topic\" is a topic, or a prefix ending in '*' (\"rooms:*\", \"*\")");
		return;
	}
	if (events != NULL && !json_is_null(events)) {
		if (!json_is_array(events)) {
			ipc_reply_error(r, PHXD_E_BAD_REQUEST, "\"events\" must be an array of strings");
			return;
		}
		json_array_foreach (events, i, e) {
			if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e)) {
				ipc_reply_error(r, PHXD_E_BAD_REQUEST,
						"\"events\" must be an array of strings");
				return;
			}
		}
	}
	uint64_t sub = ipc_subscribe(r, SUB_MESSAGES, r->pc ? r->pc->conf->name : NULL, topic,
				     json_is_array(events) ? events : NULL);
	if (sub != 0)
		ipc_reply_ok(r, json_pack("{s:I}", "sub", (json_int_t)sub));
}

static void
exec_unsubscribe(struct ipc_request *r)
{
	json_int_t sub = -1;

	if (!ipc_get_uint(r, "sub", INT64_MAX, &sub))
		return;
	if (sub < 0) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST, "\"sub\" is required");
		return;
	}
	if (!ipc_unsubscribe(r->c, (uint64_t)sub)) {
		ipc_reply_error(r, PHXD_E_NO_SUCH_SUB,
				"no subscription %" JSON_INTEGER_FORMAT " on this client", sub);
		return;
	}
	ipc_reply_ok(r, NULL);
}

const struct ipc_cmd cmd_subscribe = { "subscribe", CMD_CONN_FILTER | CMD_TOPIC, exec_subscribe };
const struct ipc_cmd cmd_unsubscribe = { "unsubscribe", 0, exec_unsubscribe };
