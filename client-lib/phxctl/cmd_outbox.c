/* SPDX-License-Identifier: MIT */
/* outbox: list the durable pushes phxd holds; retry or drop one. */
#include "phxctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
print_list(json_t *result)
{
	json_t *msgs = json_object_get(result, "messages"), *m;
	json_t *age = json_object_get(result, "oldest_pending_age_ms");
	char a[32], b[32];
	size_t i;

	printf("%s: %lld pending, %lld failed, %s (at most %lld pushes, %s)", jstr(result, "path"),
	       jint(result, "pending"), jint(result, "failed"),
	       fmt_bytes(jint(result, "bytes"), a, sizeof(a)), jint(result, "max_messages"),
	       fmt_bytes(jint(result, "max_bytes"), b, sizeof(b)));
	if (json_is_integer(age))
		printf("; oldest pending %s ago", fmt_duration(json_integer_value(age), a, sizeof(a)));
	putchar('\n');
	if (json_array_size(msgs) == 0)
		return;
	printf("%10s %-9s %8s %-12s %-28s %-20s %s\n", "ID", "STATE", "ATTEMPTS", "CONN", "TOPIC",
	       "EVENT", "LAST ERROR");
	json_array_foreach (msgs, i, m) {
		json_t *err = json_object_get(m, "last_error");
		printf("%10lld %-9s %8lld ", jint(m, "id"), jstr(m, "state"), jint(m, "attempts"));
		put_safe(jstr(m, "conn"), 12);
		putchar(' ');
		put_safe(jstr(m, "topic"), 28);
		putchar(' ');
		put_safe(jstr(m, "event"), 20);
		putchar(' ');
		if (err != NULL) {
			char *text = json_dumps(err, JSON_COMPACT | JSON_ENCODE_ANY);
			put_safe(text ? text : "", 0);
			free(text);
		} else {
			putchar('-');
		}
		putchar('\n');
	}
}

static int
run_outbox(struct ctl *ctl, char **args, int nargs)
{
	const char *action = nargs > 0 ? args[0] : "list";
	json_t *req = json_pack("{s:s, s:s}", "op", "outbox", "action", action);
	char *result = NULL;
	int rc;

	if (strcmp(action, "list") == 0) {
		if (nargs > 1)
			die_usage("usage: phxctl outbox [list | retry ID | drop ID]");
	} else if (strcmp(action, "retry") == 0 || strcmp(action, "drop") == 0) {
		char *end;
		long long id = nargs == 2 ? strtoll(args[1], &end, 10) : 0;
		if (nargs != 2 || *end != '\0' || id < 1)
			die_usage("usage: phxctl outbox %s ID (a stored push's id)", action);
		json_object_set_new(req, "push_id", json_integer(id));
	} else {
		json_decref(req);
		die_usage("unknown outbox action '%s' (list, retry ID, drop ID)", action);
	}
	if ((rc = ctl_run(ctl, req, &result)) != EXIT_OK)
		return rc;
	if (ctl_human(ctl)) {
		json_t *r = json_loads(result, 0, NULL);
		if (strcmp(action, "list") == 0)
			print_list(r);
		else
			printf("%lld %s\n", jint(r, "push_id"), jstr(r, "status"));
		json_decref(r);
	}
	free(result);
	return EXIT_OK;
}

const struct ctl_cmd cmd_outbox = {
	"outbox", "[list | retry ID | drop ID]", "the durable pushes phxd holds", 0, 2, 0,
	run_outbox,
};
