/* reload: re-read the config file, as SIGHUP does. */
#include "ipc.h"

static void
exec_reload(struct phxd *d, struct ipc_client *c, json_t *id, json_t *req)
{
	char err[512];

	(void)req;
	if (!phxd_reload(d, err, sizeof(err))) {
		ipc_reply_error(c, id, PHXD_E_CONFIG, "%s", err);
		return;
	}
	ipc_reply_ok(c, id, json_pack("{s:I}", "reloads", (json_int_t)d->reloads));
}

const struct ipc_cmd cmd_reload = { "reload", exec_reload };
