/* SPDX-License-Identifier: MIT */
/* presence: the presence list of a joined topic, as synced from the server. */
#include "ipc.h"

static void
exec_presence(struct ipc_request *r)
{
	struct channel *ch = session_channel(r->pc->sess, r->topic);

	if (ch == NULL) {
		ipc_reply_error(r, PHXD_E_NOT_JOINED, "topic %s is not joined", r->topic);
		return;
	}
	ipc_reply_ok(r, json_pack("{s:o, s:b}", "presence",
				  ch->presence.state ? json_incref(ch->presence.state) : json_object(),
				  "synced", ch->presence.synced));
}

const struct ipc_cmd cmd_presence = { "presence", CMD_CONN | CMD_TOPIC, exec_presence };
