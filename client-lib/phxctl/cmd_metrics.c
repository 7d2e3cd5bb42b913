/* SPDX-License-Identifier: MIT */
/* metrics: what metrics_listen serves, Prometheus text or OpenMetrics. */
#include "phxctl.h"

#include <stdio.h>
#include <stdlib.h>

static int
run_metrics(struct ctl *ctl, char **args, int nargs)
{
	char *result = NULL;
	int rc;

	(void)args;
	(void)nargs;
	json_t *req = json_pack("{s:s, s:b}", "op", "metrics", "openmetrics", ctl->openmetrics);
	if ((rc = ctl_run(ctl, req, &result)) != EXIT_OK)
		return rc;
	if (ctl_human(ctl)) {
		json_t *r = json_loads(result, 0, NULL);
		fputs(jstr(r, "text"), stdout);
		json_decref(r);
	}
	free(result);
	return EXIT_OK;
}

const struct ctl_cmd cmd_metrics = {
	"metrics", "[--openmetrics]", "counters and gauges, as metrics_listen serves them",
	0, 0, OPT_OPENMETRICS, run_metrics,
};
