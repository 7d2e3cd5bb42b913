/* SPDX-License-Identifier: MIT */
/* presence: the topic's presence list, as phxd tracks it. */
#include "phxctl.h"

#include <stdlib.h>

static int
run_presence(struct ctl *ctl, char **args, int nargs)
{
	char *result = NULL;
	int rc;

	(void)nargs;
	json_t *req = ctl_request(ctl, "presence");
	json_object_set_new(req, "topic", json_string(args[0]));
	if ((rc = ctl_run(ctl, req, &result)) != EXIT_OK)
		return rc;
	if (ctl_human(ctl)) {
		json_t *r = json_loads(result, 0, NULL);
		print_json(json_object_get(r, "presence"));
		json_decref(r);
	}
	free(result);
	return EXIT_OK;
}

const struct ctl_cmd cmd_presence = {
	"presence", "TOPIC", "the topic's presence list", 1, 1, 0, run_presence,
};
