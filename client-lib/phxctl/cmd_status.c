/* SPDX-License-Identifier: MIT */
/* status: like systemctl status, the daemon first, then each connection. */
#include "phxctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "config", "join", "2 clients", "config+join+1 client+outbox" */
static const char *
wanted_by(json_t *t, char *buf, size_t size)
{
	json_t *w = json_object_get(t, "wanted_by");
	long long clients = jint(w, "clients");
	size_t n = 0;

	buf[0] = '\0';
	if (json_is_true(json_object_get(w, "config")))
		n += (size_t)snprintf(buf + n, size - n, "config");
	if (json_is_true(json_object_get(w, "runtime")) && n < size)
		n += (size_t)snprintf(buf + n, size - n, "%sjoin", n ? "+" : "");
	if (clients > 0 && n < size)
		n += (size_t)snprintf(buf + n, size - n, "%s%lld client%s", n ? "+" : "", clients,
				      clients == 1 ? "" : "s");
	if (json_is_true(json_object_get(w, "outbox")) && n < size)
		snprintf(buf + n, size - n, "%soutbox", n ? "+" : "");
	return buf[0] ? buf : "-";
}

static void
print_topic(json_t *t)
{
	json_t *ts = json_object_get(t, "stats"), *err = json_object_get(t, "last_error");
	char a[32], replies[48], last[48] = "-", wanted[64];

	printf("    ");
	put_safe(jstr(t, "topic"), 32);
	snprintf(replies, sizeof(replies), "%lld/%lld", jint(ts, "replies_ok"),
		 jint(ts, "replies_error"));
	if (!json_is_null(json_object_get(ts, "last_message_ago_ms")))
		snprintf(last, sizeof(last), "%s ago",
			 fmt_duration(jint(ts, "last_message_ago_ms"), a, sizeof(a)));
	printf(" %-8s %9lld %9lld %14s %-12s %s", jstr(t, "state"), jint(ts, "messages_in"),
	       jint(ts, "pushes_out"), replies, last, wanted_by(t, wanted, sizeof(wanted)));
	if (!json_is_null(err) && err != NULL && strcmp(jstr(t, "state"), "joined") != 0) {
		char *text = json_dumps(err, JSON_COMPACT | JSON_ENCODE_ANY);
		printf("  error: ");
		put_safe(text, 0);
		free(text);
	}
	putchar('\n');
}

/* Only when there are several: one websocket is the usual case. */
static void
print_shards(json_t *c)
{
	json_t *shards = json_object_get(c, "shards"), *sh;
	size_t i, open = 0;

	if (json_array_size(shards) < 2)
		return;
	json_array_foreach (shards, i, sh)
		open += strcmp(jstr(sh, "state"), "open") == 0;
	printf("    Websockets: %zu (%zu open), at most %lld topics each\n", json_array_size(shards),
	       open, jint(c, "max_channels"));
	json_array_foreach (shards, i, sh) {
		if (strcmp(jstr(sh, "state"), "open") == 0)
			continue;
		printf("      #%lld %s, %lld/%lld topics joined", jint(sh, "shard"), jstr(sh, "state"),
		       jint(sh, "joined"), jint(sh, "topics"));
		if (*jstr(sh, "last_error")) {
			printf(": ");
			put_safe(jstr(sh, "last_error"), 0);
		}
		putchar('\n');
	}
}

static void
print_connection(json_t *c)
{
	char a[32], b[32];
	json_t *st = json_object_get(c, "stats"), *pb = json_object_get(c, "push_buffer");
	json_t *outage = json_object_get(c, "outage"), *t;
	bool open = strcmp(jstr(c, "state"), "open") == 0;
	size_t i;

	printf("\n%s ", open ? "*" : "o");
	put_safe(jstr(c, "name"), 0);
	printf(" - %s - %s\n", jstr(c, "state"), jstr(c, "url"));
	if (open) {
		printf("    Up: %s", fmt_duration(jint(c, "connected_for_ms"), a, sizeof(a)));
		if (json_object_get(c, "heartbeat_rtt_ms"))
			printf(", heartbeat rtt %lldms", jint(c, "heartbeat_rtt_ms"));
	} else if (outage) {
		printf("    Down: %s, %lld failed attempt%s",
		       fmt_duration(jint(outage, "down_for_ms"), a, sizeof(a)),
		       jint(outage, "failed_attempts"), jint(outage, "failed_attempts") == 1 ? "" : "s");
		if (json_object_get(c, "retry_in_ms"))
			printf(", next in %s", fmt_duration(jint(c, "retry_in_ms"), a, sizeof(a)));
	} else {
		printf("    Not connected");
	}
	printf("; %lld connect%s, %lld reconnect%s\n", jint(c, "connects"),
	       jint(c, "connects") == 1 ? "" : "s", jint(c, "reconnects"),
	       jint(c, "reconnects") == 1 ? "" : "s");
	if (*jstr(c, "last_error")) {
		printf("    Last error: ");
		put_safe(jstr(c, "last_error"), 0);
		if (json_object_get(c, "last_http_status"))
			printf(" (HTTP %lld)", jint(c, "last_http_status"));
		putchar('\n');
	}
	print_shards(c);
	printf("    Frames: %lld in, %lld out; %lld delivered, %lld pushes sent, %lld failed\n",
	       jint(st, "frames_in"), jint(st, "frames_out"), jint(st, "delivered"),
	       jint(st, "pushes_sent"), jint(st, "pushes_failed"));
	printf("    Push buffer: %lld/%lld pushes, %s/%s\n", jint(pb, "pushes"),
	       jint(pb, "max_pushes"), fmt_bytes(jint(pb, "bytes"), a, sizeof(a)),
	       fmt_bytes(jint(pb, "max_bytes"), b, sizeof(b)));
	if (json_array_size(json_object_get(c, "topics")) == 0)
		return;
	printf("    %-32s %-8s %9s %9s %14s %-12s %s\n", "TOPIC", "STATE", "MSGS IN", "PUSHES",
	       "REPLIES OK/ERR", "LAST MSG", "WANTED BY");
	json_array_foreach (json_object_get(c, "topics"), i, t)
		print_topic(t);
}

static void
print_outbox(json_t *ob)
{
	json_t *age = json_object_get(ob, "oldest_pending_age_ms");
	char a[32];

	if (!json_is_object(ob))
		return;
	if (json_object_get(ob, "error")) {
		printf("    Outbox: unavailable: ");
		put_safe(jstr(ob, "error"), 0);
		putchar('\n');
		return;
	}
	printf("    Outbox: %lld pending, %lld failed, %s", jint(ob, "pending"), jint(ob, "failed"),
	       fmt_bytes(jint(ob, "bytes"), a, sizeof(a)));
	if (json_is_integer(age))
		printf("; oldest %s", fmt_duration(json_integer_value(age), a, sizeof(a)));
	putchar('\n');
}

static void
print_status(json_t *result)
{
	json_t *ipc = json_object_get(result, "ipc"), *conns = json_object_get(result, "connections");
	char a[32], b[32], m[32];
	size_t i, up = 0;
	json_t *c;

	json_array_foreach (conns, i, c)
		up += strcmp(jstr(c, "state"), "open") == 0;
	printf("%s %s - up %s, %lld reload%s\n", up == json_array_size(conns) ? "*" : "o",
	       jstr(result, "daemon"), fmt_duration(jint(result, "uptime_ms"), a, sizeof(a)),
	       jint(result, "reloads"), jint(result, "reloads") == 1 ? "" : "s");
	printf("    Connections: %zu/%zu open\n", up, json_array_size(conns));
	printf("    Clients: %lld (%lld requests pending, %lld subscriptions), queued %s, "
	       "fullest %s of %s\n",
	       jint(ipc, "clients"), jint(ipc, "pending"), jint(ipc, "subscriptions"),
	       fmt_bytes(jint(ipc, "queued_bytes"), a, sizeof(a)),
	       fmt_bytes(jint(ipc, "largest_queue_bytes"), b, sizeof(b)),
	       fmt_bytes(jint(ipc, "client_buffer_bytes"), m, sizeof(m)));
	print_outbox(json_object_get(result, "outbox"));
	json_array_foreach (conns, i, c)
		print_connection(c);
}

static int
run_status(struct ctl *ctl, char **args, int nargs)
{
	char *result = NULL;
	int rc;

	(void)args;
	(void)nargs;
	if ((rc = ctl_run(ctl, ctl_request(ctl, "status"), &result)) != EXIT_OK)
		return rc;
	if (ctl_human(ctl)) {
		json_t *r = json_loads(result, 0, NULL);
		print_status(r);
		json_decref(r);
	}
	free(result);
	return EXIT_OK;
}

const struct ctl_cmd cmd_status = {
	"status", "", "connections, topics and counters", 0, 0, 0, run_status,
};
