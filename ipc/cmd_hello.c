/* SPDX-License-Identifier: MIT */
/* hello: version check and what this daemon offers. */
#include "ipc.h"

static void
exec_hello(struct ipc_request *r)
{
	json_int_t version = PHXD_IPC_VERSION;
	json_t *names;

	if (!ipc_get_uint(r, "version", 1000000, &version))
		return;
	if (version != PHXD_IPC_VERSION) {
		ipc_reply_error_with(r, PHXD_E_VERSION, json_pack("{s:i}", "version", PHXD_IPC_VERSION),
				     "this phxd speaks version %d, not %" JSON_INTEGER_FORMAT,
				     PHXD_IPC_VERSION, version);
		return;
	}
	names = json_array();
	for (size_t i = 0; i < r->d->nconns; i++)
		if (r->d->conns[i] != NULL)
			json_array_append_new(names, ipc_jstr(r->d->conns[i]->conf->name));
	ipc_reply_ok(r, json_pack("{s:i, s:s, s:o}", "version", PHXD_IPC_VERSION, "daemon",
				  "phxd " PACKAGE_VERSION, "connections", names));
}

const struct ipc_cmd cmd_hello = { "hello", 0, exec_hello };
