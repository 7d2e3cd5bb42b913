/* SPDX-License-Identifier: MIT */
/* leave: stop wanting a topic; phxd leaves it unless somebody else wants it,
 * which is said on stderr. */
#include "phxctl.h"

#include <stdio.h>
#include <stdlib.h>

static void
say_kept(const char *topic, json_t *result)
{
	json_t *w = json_object_get(result, "wanted_by");
	long long clients = jint(w, "clients");

	fputs("phxctl: ", stderr);
	fputs(topic, stderr);
	fputs(" stays joined: wanted by", stderr);
	if (json_is_true(json_object_get(w, "config")))
		fputs(" the config", stderr);
	if (json_is_true(json_object_get(w, "runtime")))
		fputs(" a join", stderr);
	if (clients > 0)
		fprintf(stderr, " %lld client%s holding it", clients, clients == 1 ? "" : "s");
	if (json_is_true(json_object_get(w, "outbox")))
		fputs(" durable pushes waiting for it", stderr);
	fputc('\n', stderr);
}

static int
run_leave(struct ctl *ctl, char **args, int nargs)
{
	char *result = NULL;
	int rc;

	(void)nargs;
	json_t *req = ctl_request(ctl, "leave");
	json_object_set_new(req, "topic", json_string(args[0]));
	if ((rc = ctl_run(ctl, req, &result)) != EXIT_OK)
		return rc;
	json_t *r = json_loads(result, 0, NULL);
	if (json_is_false(json_object_get(r, "left")) && !ctl->quiet)
		say_kept(args[0], r);
	if (ctl_human(ctl))
		puts("ok");
	json_decref(r);
	free(result);
	return EXIT_OK;
}

const struct ctl_cmd cmd_leave = {
	"leave", "TOPIC", "stop keeping TOPIC joined", 1, 1, 0, run_leave,
};
