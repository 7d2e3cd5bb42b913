/* SPDX-License-Identifier: MIT */
/* leave: stop keeping a topic joined. */
#include "ipc.h"

static void
exec_leave(struct ipc_request *r)
{
	struct ipc_pending *p = ipc_pending_new(r);

	if (p == NULL)
		return;
	struct sess_req *h = session_leave(r->pc->sess, r->topic, ipc_pending_session_done, p);
	if (h != NULL)
		ipc_pending_track(p, r->pc->sess, h);
}

const struct ipc_cmd cmd_leave = { "leave", CMD_CONN | CMD_TOPIC | CMD_TIMERS, exec_leave };
