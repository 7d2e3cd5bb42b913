/* SPDX-License-Identifier: MIT */
/* check: exit 0 only when every connection is open and every wanted topic
 * joined; says what is not. For monitoring and ExecCondition=. */
#include "phxctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
check_health(json_t *result, bool quiet)
{
	json_t *conns = json_object_get(result, "connections"), *c, *t;
	size_t i, j, nconns = 0, ntopics = 0, bad = 0;

	json_array_foreach (conns, i, c) {
		nconns++;
		if (strcmp(jstr(c, "state"), "open") != 0) {
			bad++;
			printf("connection ");
			put_safe(jstr(c, "name"), 0);
			printf(" is %s", jstr(c, "state"));
			if (*jstr(c, "last_error")) {
				printf(": ");
				put_safe(jstr(c, "last_error"), 0);
			}
			putchar('\n');
		}
		json_array_foreach (json_object_get(c, "topics"), j, t) {
			if (strcmp(jstr(t, "state"), "leaving") == 0)
				continue;	/* not wanted any more */
			ntopics++;
			if (strcmp(jstr(t, "state"), "joined") == 0)
				continue;
			bad++;
			printf("topic ");
			put_safe(jstr(t, "topic"), 0);
			printf(" on ");
			put_safe(jstr(c, "name"), 0);
			printf(" is %s\n", jstr(t, "state"));
		}
	}
	if (bad == 0 && !quiet)
		printf("ok: %zu connection%s open, %zu topic%s joined\n", nconns, nconns == 1 ? "" : "s",
		       ntopics, ntopics == 1 ? "" : "s");
	return bad == 0 ? EXIT_OK : EXIT_UNHEALTHY;
}

static int
run_check(struct ctl *ctl, char **args, int nargs)
{
	char *result = NULL;
	int rc;

	(void)args;
	(void)nargs;
	if ((rc = ctl_run(ctl, ctl_request(ctl, "status"), &result)) != EXIT_OK)
		return rc;
	json_t *r = json_loads(result, 0, NULL);
	rc = check_health(r, ctl->quiet);
	json_decref(r);
	free(result);
	return rc;
}

const struct ctl_cmd cmd_check = {
	"check", "", "exit 0 when every connection is open and every wanted topic joined",
	0, 0, 0, run_check,
};
