/* SPDX-License-Identifier: MIT */
/* join: keep a topic joined (through reconnects) until left, or for as long
 * as the asking client stays connected ("hold":"client"). */
#include "ipc.h"

#include <stdlib.h>
#include <string.h>

static void
exec_join(struct ipc_request *r)
{
	json_t *payload = json_object_get(r->body, "payload");
	const char *hold = NULL;
	struct sess_want want = WANT_RUNTIME;
	struct ipc_pending *p;
	char *text;

	if (payload != NULL && !json_is_object(payload) && !json_is_null(payload)) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST, "\"payload\" must be an object");
		return;
	}
	if (!ipc_get_string(r, "hold", false, &hold))
		return;
	if (hold != NULL && strcmp(hold, "client") != 0 && strcmp(hold, "daemon") != 0) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST,
				"\"hold\" is \"client\" (while this connection lives) or "
				"\"daemon\" (until a leave)");
		return;
	}
	if (hold != NULL && strcmp(hold, "client") == 0) {
		if (!ipc_hold_add(r))
			return;
		want = WANT_CLIENT(ipc_client_id(r->c));
	}
	if ((p = ipc_pending_new(r)) == NULL) {
		if (want.client)
			ipc_hold_drop(r->c, r->pc->conf->name, r->topic);
		return;
	}
	text = payload && json_is_object(payload) ? json_dumps(payload, JSON_COMPACT) : NULL;
	struct sess_req *h = session_join(r->pc->sess, r->topic, text, want,
					  ipc_pending_session_done, p);
	if (h != NULL)
		ipc_pending_track(p, h);
	free(text);
}

const struct ipc_cmd cmd_join = { "join", CMD_CONN | CMD_TOPIC | CMD_TIMERS, exec_join };
