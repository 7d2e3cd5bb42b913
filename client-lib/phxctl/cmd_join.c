/* SPDX-License-Identifier: MIT */
/* join: keep a topic joined until a leave; prints the server's join reply. */
#include "phxctl.h"

#include <stdio.h>
#include <stdlib.h>

static int
run_join(struct ctl *ctl, char **args, int nargs)
{
	const char *params = nargs == 2 ? args[1] : NULL;
	char *response = NULL;
	int rc;

	if (params != NULL) {
		json_error_t jerr;
		json_t *p = json_loads(params, 0, &jerr);
		if (!json_is_object(p))
			die_usage("PARAMS must be a JSON object%s%s", p ? "" : ": ", p ? "" : jerr.text);
		json_decref(p);
	}
	if ((rc = ctl_connect(ctl, false)) != EXIT_OK)
		return rc;
	if ((rc = phxd_join(ctl->c, ctl->conn, args[0], params, &response)) != PHXD_OK)
		return report(ctl, rc);
	if (ctl->json)
		print_member(phxd_last_response(ctl->c), "result");
	else if (!ctl->quiet)
		print_text(response ? response : "ok");
	free(response);
	return EXIT_OK;
}

const struct ctl_cmd cmd_join = {
	"join", "TOPIC [PARAMS]", "keep TOPIC joined (PARAMS: a JSON object) until a leave",
	1, 2, 0, run_join,
};
