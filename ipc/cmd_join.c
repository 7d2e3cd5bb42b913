/* join: keep a topic joined (through reconnects) until left. */
#include "ipc.h"

#include <stdlib.h>

static void
exec_join(struct phxd *d, struct ipc_client *c, json_t *id, json_t *req)
{
	struct phxd_conn *pc = ipc_get_conn(d, c, id, req);
	const char *topic;
	json_t *payload;
	char *text;

	if (pc == NULL || !ipc_get_string(c, id, req, "topic", true, &topic))
		return;
	payload = json_object_get(req, "payload");
	if (payload != NULL && !json_is_object(payload) && !json_is_null(payload)) {
		ipc_reply_error(c, id, PHXD_E_BAD_REQUEST, "\"payload\" must be an object");
		return;
	}
	text = payload && json_is_object(payload) ? json_dumps(payload, JSON_COMPACT) : NULL;
	session_join(pc->sess, topic, text, false, ipc_pending_session_done,
		     ipc_pending_new(c, id));
	free(text);
	phxd_timers_changed(d);
}

const struct ipc_cmd cmd_join = { "join", exec_join };
