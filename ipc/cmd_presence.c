/* presence: the presence list of a joined topic, as synced from the server. */
#include "ipc.h"

static void
exec_presence(struct phxd *d, struct ipc_client *c, json_t *id, json_t *req)
{
	struct phxd_conn *pc = ipc_get_conn(d, c, id, req);
	const char *topic;
	struct channel *ch;

	if (pc == NULL || !ipc_get_string(c, id, req, "topic", true, &topic))
		return;
	ch = session_channel(pc->sess, topic);
	if (ch == NULL) {
		ipc_reply_error(c, id, PHXD_E_NOT_JOINED, "topic %s is not joined", topic);
		return;
	}
	ipc_reply_ok(c, id, json_pack("{s:O, s:b}", "presence",
				      ch->presence ? ch->presence : json_object(), "synced",
				      ch->presence_synced));
}

const struct ipc_cmd cmd_presence = { "presence", exec_presence };
