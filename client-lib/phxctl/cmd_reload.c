/* SPDX-License-Identifier: MIT */
/* reload: phxd re-reads its configuration, as on SIGHUP. */
#include "phxctl.h"

#include <stdio.h>
#include <stdlib.h>

static int
run_reload(struct ctl *ctl, char **args, int nargs)
{
	char *result = NULL;
	int rc;

	(void)args;
	(void)nargs;
	if ((rc = ctl_run(ctl, json_pack("{s:s}", "op", "reload"), &result)) != EXIT_OK)
		return rc;
	if (ctl_human(ctl))
		puts("ok");
	free(result);
	return EXIT_OK;
}

const struct ctl_cmd cmd_reload = {
	"reload", "", "re-read the configuration", 0, 0, 0, run_reload,
};
