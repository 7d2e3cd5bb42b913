/* SPDX-License-Identifier: MIT */
/* metrics: the text the metrics endpoint serves, without needing one. */
#include "ipc.h"

#include "daemon/metrics.h"

#include <event2/buffer.h>

static void
exec_metrics(struct ipc_request *r)
{
	struct evbuffer *text = evbuffer_new();
	bool openmetrics = false;
	json_t *body;

	if (!ipc_get_bool(r, "openmetrics", &openmetrics)) {
		evbuffer_free(text);
		return;
	}
	metrics_render(r->d, text, openmetrics);
	body = json_pack("{s:s, s:s%}", "content_type",
			 openmetrics ? METRICS_TYPE_OPENMETRICS : METRICS_TYPE_TEXT, "text",
			 (const char *)evbuffer_pullup(text, -1), evbuffer_get_length(text));
	evbuffer_free(text);
	ipc_reply_ok(r, body);
}

const struct ipc_cmd cmd_metrics = { "metrics", 0, exec_metrics };
