/* push: send an event to a topic; answer when sent, or with the reply. */
#include "ipc.h"

#include "daemon/xmalloc.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

static void
exec_push(struct phxd *d, struct ipc_client *c, json_t *id, json_t *req)
{
	struct phxd_conn *pc = ipc_get_conn(d, c, id, req);
	struct sess_push_args a = { 0 };
	json_t *payload;
	const char *b64;
	json_int_t timeout = 0;
	bool await_reply = false;
	char *text = NULL;

	if (pc == NULL || !ipc_get_string(c, id, req, "topic", true, &a.topic) ||
	    !ipc_get_string(c, id, req, "event", true, &a.event) ||
	    !ipc_get_string(c, id, req, "payload_b64", false, &b64) ||
	    !ipc_get_bool(c, id, req, "await", &await_reply) ||
	    !ipc_get_uint(c, id, req, "timeout_ms", 86400000, &timeout))
		return;
	payload = json_object_get(req, "payload");
	if (b64 != NULL && payload != NULL) {
		ipc_reply_error(c, id, PHXD_E_BAD_REQUEST, "give \"payload\" or \"payload_b64\", not both");
		return;
	}
	if (b64 != NULL) {
		size_t n = strlen(b64);
		text = xmalloc(n + 1);
		int len = lws_b64_decode_string_len(b64, (int)n, text, (int)n + 1);
		if (len < 0 || n % 4 == 1 || strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != n) {
			free(text);
			ipc_reply_error(c, id, PHXD_E_BAD_REQUEST, "\"payload_b64\" is not base64");
			return;
		}
		a.payload = text;
		a.payload_len = (size_t)len;
		a.binary = true;
	} else {
		/* Any JSON value goes, as with phoenix.js; none means {}. */
		text = payload ? json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY) : xstrdup("{}");
		a.payload = text;
		a.payload_len = strlen(text);
	}
	a.await_reply = await_reply;
	a.timeout_ms = (unsigned)timeout;
	session_push(pc->sess, &a, ipc_pending_session_done, ipc_pending_new(c, id));
	free(text);
	phxd_timers_changed(d);
}

const struct ipc_cmd cmd_push = { "push", exec_push };
