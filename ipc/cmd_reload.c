/* SPDX-License-Identifier: MIT */
/* reload: re-read the config file, as SIGHUP does. */
#include "ipc.h"

static void
exec_reload(struct ipc_request *r)
{
	char err[512];

	if (!phxd_reload(r->d, err, sizeof(err))) {
		ipc_reply_error(r, PHXD_E_CONFIG, "%s", err);
		return;
	}
	ipc_reply_ok(r, json_pack("{s:I}", "reloads", (json_int_t)r->d->reloads));
}

const struct ipc_cmd cmd_reload = { "reload", 0, exec_reload };
