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
	if ((rc = ctl_connect(ctl, false)) != EXIT_OK)
		return rc;
	if ((rc = ctl_call(ctl, json_pack("{s:s}", "op", "reload"), &result)) != PHXD_OK)
		return report(ctl, rc);
	if (ctl->json)
		print_member(phxd_last_response(ctl->c), "result");
	else if (!ctl->quiet)
		puts("ok");
	free(result);
	return EXIT_OK;
}

const struct ctl_cmd cmd_reload = {
	"reload", "", "re-read the configuration", 0, 0, 0, run_reload,
};
