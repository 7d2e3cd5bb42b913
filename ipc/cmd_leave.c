/* leave: stop keeping a topic joined. */
#include "ipc.h"

static void
exec_leave(struct phxd *d, struct ipc_client *c, json_t *id, json_t *req)
{
	struct phxd_conn *pc = ipc_get_conn(d, c, id, req);
	const char *topic;

	if (pc == NULL || !ipc_get_string(c, id, req, "topic", true, &topic))
		return;
	session_leave(pc->sess, topic, ipc_pending_session_done, ipc_pending_new(c, id));
	phxd_timers_changed(d);
}

const struct ipc_cmd cmd_leave = { "leave", exec_leave };
