/* SPDX-License-Identifier: MIT */
/* events: a stream of connection and channel state changes. */
#include "ipc.h"

#include <sys/time.h>

static json_int_t
wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (json_int_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

json_t *
ipc_event_json(const struct phxd_shard *sh, const struct sess_event *ev)
{
	json_t *o = json_pack("{s:s, s:o, s:I}", "type",
			      ev->kind == SEV_CHANNEL ? "channel" : "connection", "conn",
			      ipc_jstr(sh->pc->conf->name), "at", wall_ms());

	/* Which websocket, for a connection with several */
	if (ev->kind != SEV_CHANNEL)
		json_object_set_new(o, "shard", json_integer(sh->index));

	switch (ev->kind) {
	case SEV_CONNECTING:
		json_object_set_new(o, "state", json_string("connecting"));
		json_object_set_new(o, "attempt", json_integer((json_int_t)ev->attempt));
		break;
	case SEV_CONNECTED:
		json_object_set_new(o, "state", json_string("connected"));
		break;
	case SEV_DISCONNECTED:
		json_object_set_new(o, "state", json_string("disconnected"));
		json_object_set_new(o, "code", json_integer(ev->code));
		if (ev->http_status)
			json_object_set_new(o, "http_status", json_integer(ev->http_status));
		json_object_set_new(o, "retry_in_ms", json_integer((json_int_t)ev->delay_ms));
		break;
	case SEV_CHANNEL:
		json_object_set_new(o, "topic", ipc_jstr(ev->topic));
		json_object_set_new(o, "state", json_string(chan_state_name(ev->chan_state)));
		if (ev->chan_state == CHAN_ERRORED)
			json_object_set_new(o, "retry_in_ms", json_integer((json_int_t)ev->delay_ms));
		break;
	}
	if (ev->reason)
		json_object_set_new(o, "reason", ipc_jstr(ev->reason));
	return o;
}

static void
exec_events(struct ipc_request *r)
{
	uint64_t sub = ipc_subscribe(r, SUB_EVENTS, r->pc ? r->pc->conf->name : NULL, NULL, NULL);

	if (sub != 0)
		ipc_reply_ok(r, json_pack("{s:I}", "sub", (json_int_t)sub));
}

const struct ipc_cmd cmd_events = { "events", CMD_CONN_FILTER, exec_events };
