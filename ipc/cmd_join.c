/* SPDX-License-Identifier: MIT */
/* join: keep a topic joined (through reconnects) until left. */
#include "ipc.h"

#include <stdlib.h>

static void
exec_join(struct ipc_request *r)
{
	json_t *payload = json_object_get(r->body, "payload");
	struct ipc_pending *p;
	char *text;

	if (payload != NULL && !json_is_object(payload) && !json_is_null(payload)) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST, "\"payload\" must be an object");
		return;
	}
	if ((p = ipc_pending_new(r)) == NULL)
		return;
	text = payload && json_is_object(payload) ? json_dumps(payload, JSON_COMPACT) : NULL;
	struct sess_req *h = session_join(r->pc->sess, r->topic, text, false,
					  ipc_pending_session_done, p);
	if (h != NULL)
		ipc_pending_track(p, r->pc->sess, h);
	free(text);
}

const struct ipc_cmd cmd_join = { "join", CMD_CONN | CMD_TOPIC | CMD_TIMERS, exec_join };
