/* subscribe / unsubscribe: follow the messages of a topic or a pattern. */
#include "ipc.h"

#include <string.h>

static void
exec_subscribe(struct phxd *d, struct ipc_client *c, json_t *id, json_t *req)
{
	const char *conn, *topic;
	json_t *events = json_object_get(req, "events");
	size_t i;
	json_t *e;

	if (!ipc_get_string(c, id, req, "conn", false, &conn) ||
	    !ipc_get_string(c, id, req, "topic", true, &topic))
		return;
	if (conn != NULL && phxd_find_conn(d, conn) == NULL) {
		ipc_reply_error(c, id, PHXD_E_UNKNOWN_CONNECTION, "no connection named '%s'", conn);
		return;
	}
	if (strlen(topic) == 0 || strlen(topic) > 255 ||
	    (strchr(topic, '*') != NULL && strchr(topic, '*') != topic + strlen(topic) - 1)) {
		ipc_reply_error(c, id, PHXD_E_BAD_REQUEST,
				"\"topic\" is a topic, or a prefix ending in '*' (\"rooms:*\", \"*\")");
		return;
	}
	if (events != NULL && !json_is_null(events)) {
		if (!json_is_array(events)) {
			ipc_reply_error(c, id, PHXD_E_BAD_REQUEST, "\"events\" must be an array of strings");
			return;
		}
		json_array_foreach (events, i, e) {
			if (!json_is_string(e)) {
				ipc_reply_error(c, id, PHXD_E_BAD_REQUEST,
						"\"events\" must be an array of strings");
				return;
			}
		}
	}
	uint64_t sub = ipc_subscribe(c, SUB_MESSAGES, conn, topic,
				     json_is_array(events) ? events : NULL);
	ipc_reply_ok(c, id, json_pack("{s:I}", "sub", (json_int_t)sub));
}

static void
exec_unsubscribe(struct phxd *d, struct ipc_client *c, json_t *id, json_t *req)
{
	json_int_t sub = -1;

	(void)d;
	if (!ipc_get_uint(c, id, req, "sub", INT64_MAX, &sub))
		return;
	if (sub < 0) {
		ipc_reply_error(c, id, PHXD_E_BAD_REQUEST, "\"sub\" is required");
		return;
	}
	if (!ipc_unsubscribe(c, (uint64_t)sub)) {
		ipc_reply_error(c, id, PHXD_E_NO_SUCH_SUB, "no subscription %" JSON_INTEGER_FORMAT
				" on this client", sub);
		return;
	}
	ipc_reply_ok(c, id, NULL);
}

const struct ipc_cmd cmd_subscribe = { "subscribe", exec_subscribe };
const struct ipc_cmd cmd_unsubscribe = { "unsubscribe", exec_unsubscribe };
