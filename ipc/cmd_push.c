/* SPDX-License-Identifier: MIT */
/* push: send an event to a topic; answer when sent, or with the reply. */
#include "ipc.h"

#include "daemon/xmalloc.h"
#include "protocol/base64.h"

#include <stdlib.h>
#include <string.h>

static void
exec_push(struct ipc_request *r)
{
	struct sess_push_args a = { .topic = r->topic };
	json_t *payload = json_object_get(r->body, "payload");
	const char *b64;
	json_int_t timeout = 0;
	bool await_reply = false;
	struct ipc_pending *p;
	char *text;

	if (!ipc_get_string(r, "event", true, &a.event) ||
	    !ipc_get_string(r, "payload_b64", false, &b64) || !ipc_get_bool(r, "await", &await_reply) ||
	    !ipc_get_uint(r, "timeout_ms", 86400000, &timeout))
		return;
	if (b64 != NULL && payload != NULL) {
		ipc_reply_error(r, PHXD_E_BAD_REQUEST, "give \"payload\" or \"payload_b64\", not both");
		return;
	}
	if (b64 != NULL) {
		size_t n = strlen(b64);
		text = xmalloc(BASE64_DECODED_SIZE(n));
		if (!base64_decode(b64, n, text, &a.payload_len)) {
			free(text);
			ipc_reply_error(r, PHXD_E_BAD_REQUEST,
					"\"payload_b64\" is not base64 (standard alphabet, padding optional)");
			return;
		}
		a.binary = true;
	} else {
		/* Any JSON value goes, as with phoenix.js; none means {}. */
		text = payload ? json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY) : xstrdup("{}");
		a.payload_len = strlen(text);
	}
	a.payload = text;
	a.await_reply = await_reply;
	a.timeout_ms = (unsigned)timeout;
	if ((p = ipc_pending_new(r)) != NULL) {
		struct sess_req *h = session_push(r->pc->sess, &a, ipc_pending_session_done, p);
		if (h != NULL)
			ipc_pending_track(p, r->pc->sess, h);
	}
	free(text);
}

const struct ipc_cmd cmd_push = { "push", CMD_CONN | CMD_TOPIC | CMD_TIMERS, exec_push };
