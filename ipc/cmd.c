/* The command table: one file per command, each exporting its entry. */
#include "ipc.h"

#include <string.h>

extern const struct ipc_cmd cmd_hello, cmd_status, cmd_join, cmd_leave, cmd_push, cmd_subscribe,
	cmd_unsubscribe, cmd_events, cmd_presence, cmd_reload;

static const struct ipc_cmd *const cmd_table[] = {
	&cmd_hello, &cmd_status, &cmd_join, &cmd_leave, &cmd_push, &cmd_subscribe,
	&cmd_unsubscribe, &cmd_events, &cmd_presence, &cmd_reload,
};

const struct ipc_cmd *
ipc_cmd_find(const char *name)
{
	for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++)
		if (strcmp(cmd_table[i]->name, name) == 0)
			return cmd_table[i];
	return NULL;
}
