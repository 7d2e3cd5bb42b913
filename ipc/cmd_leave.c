/* SPDX-License-Identifier: MIT */
/* leave: stop wanting a topic (this client's runtime join and its hold);
 * phxd leaves it when nobody else wants it either. */
#include "ipc.h"

static void
left(void *pending, const struct sess_result *res)
{
	if (res->outcome == SESS_OK)
		ipc_pending_answer_ok(pending, json_pack("{s:s, s:b}", "status", "ok", "left", 1));
	else
		ipc_pending_session_done(pending, res);
}

static void
exec_leave(struct ipc_request *r)
{
	struct session *s = r->pc->sess;
	struct channel *ch = session_channel(s, r->topic);
	struct sess_want mine = { .runtime = true, .client = ipc_client_id(r->c) };
	struct ipc_pending *p;

	if (ch == NULL) {
		ipc_reply_error(r, PHXD_E_NOT_JOINED, "topic is not joined");
		return;
	}
	if ((p = ipc_pending_new(r)) == NULL)
		return;
	ipc_hold_drop(r->c, r->pc->conf->name, r->topic);
	if (ch->state != CHAN_LEAVING && !session_unwant(s, ch, mine)) {
		/* Somebody else still wants it: it stays joined. */
		ipc_pending_answer_ok(p, json_pack("{s:s, s:b, s:o}", "status", "ok", "left", 0,
						   "wanted_by", ipc_wanted_json(ch)));
		return;
	}
	struct sess_req *h = session_leave(s, r->topic, left, p);
	if (h != NULL)
		ipc_pending_track(p, h);
}

const struct ipc_cmd cmd_leave = { "leave", CMD_CONN | CMD_TOPIC | CMD_TIMERS, exec_leave };
