/* SPDX-License-Identifier: MIT */
/* phxctl: options, the command table, connecting. See phxctl.h. */
#include "phxctl.h"

#include "ipc/phxd-ipc.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct ctl_cmd *const commands[] = {
	&cmd_status, &cmd_check, &cmd_join, &cmd_leave, &cmd_push, &cmd_subscribe,
	&cmd_events, &cmd_presence, &cmd_reload, &cmd_metrics, &cmd_outbox,
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* The command options, with the bit a command's entry must have. */
static const struct {
	const char *name;
	unsigned bit;
	const char *help;
} command_options[] = {
	{ "--await", OPT_AWAIT, "push: wait for the server's reply and print it" },
	{ "--binary", OPT_BINARY, "push: PAYLOAD is bytes, sent as a binary frame" },
	{ "--durable", OPT_DURABLE, "push: stored by phxd first, delivered until the server replies" },
	{ "-l, --lines", OPT_LINES, "push: each stdin line (JSON) is one push, pipelined" },
	{ "-n, --count N", OPT_COUNT, "streams: stop after N lines" },
	{ "-e, --event E", OPT_EVENT, "subscribe: only event E (repeatable)" },
	{ "-r, --raw", OPT_RAW, "subscribe: print payloads only" },
	{ "-f, --follow", OPT_FOLLOW, "streams: survive phxd restarts (reconnect, subscribe again)" },
	{ "--join", OPT_JOIN, "subscribe: hold TOPIC joined for as long as the subscription" },
	{ "--openmetrics", OPT_OPENMETRICS, "metrics: OpenMetrics text, not Prometheus" },
};

static void
usage(FILE *out)
{
	fputs("usage: phxctl [-s SOCKET] [-C CONN] [-j] [-q] [-t MS] COMMAND [ARGS]\n\ncommands:\n",
	      out);
	for (size_t i = 0; i < NCOMMANDS; i++) {
		char head[96];
		snprintf(head, sizeof(head), "%s %s", commands[i]->name, commands[i]->args);
		fprintf(out, "  %-34s %s\n", head, commands[i]->summary);
	}
	fputs("\noptions of commands:\n", out);
	for (size_t i = 0; i < sizeof(command_options) / sizeof(command_options[0]); i++)
		fprintf(out, "  %-19s %s\n", command_options[i].name, command_options[i].help);
	fputs("\noptions:\n"
	      "  -s, --socket PATH   the daemon's socket ($" PHXD_SOCKET_ENV ", default "
	      PHXD_DEFAULT_SOCKET ")\n"
	      "  -C, --conn NAME     connection to use (needed when several are configured)\n"
	      "  -j, --json          print the daemon's result (or error) object as JSON\n"
	      "  -q, --quiet         print nothing when it worked (the exit status says it)\n"
	      "  -t, --timeout MS    bound every step, connecting included (exit 4 past it);\n"
	      "                      for push --await, the reply's; for streams, silence\n"
	      "  -V, --version       print the version\n"
	      "  -h, --help          this text\n"
	      "\n"
	      "exit status: 0 ok, 1 the server replied with an error (check: unhealthy),\n"
	      "2 usage error, 3 phxd unreachable, 4 timeout, 5 phxd could not do it\n",
	      out);
}

noreturn void
die_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("phxctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(phxctl --help for usage)\n", stderr);
	exit(EXIT_USAGE);
}

int
ctl_connect(struct ctl *ctl, bool quietly)
{
	int wait = ctl->timeout_ms > 0 ? (int)ctl->timeout_ms : 60000;
	int rc = phxd_connect_timeout(ctl->socket, wait, &ctl->c);

	if (rc == PHXD_OK)
		return EXIT_OK;
	if (quietly)
		;
	else if (rc == PHXD_EUNREACHABLE)
		fprintf(stderr, "phxctl: cannot reach phxd at %s: %s\n", ctl->socket, strerror(errno));
	else if (rc == PHXD_ETIMEOUT)
		fprintf(stderr, "phxctl: phxd at %s did not answer within %d ms\n", ctl->socket,
			wait);
	else
		fprintf(stderr, "phxctl: phxd at %s did not accept us (error %d)\n", ctl->socket, rc);
	return rc == PHXD_EUNREACHABLE ? EXIT_UNREACHABLE
	       : rc == PHXD_ETIMEOUT   ? EXIT_TIMEOUT
				       : EXIT_FAILED;
}

json_t *
ctl_request(const struct ctl *ctl, const char *op)
{
	json_t *req = json_pack("{s:s}", "op", op);

	if (ctl->conn)
		json_object_set_new(req, "conn", json_string(ctl->conn));
	return req;
}

int
ctl_call(struct ctl *ctl, json_t *req, char **result)
{
	char *text = json_dumps(req, JSON_COMPACT);
	int rc;

	json_decref(req);
	if (text == NULL)
		die_usage("an argument is not UTF-8");
	rc = phxd_call(ctl->c, text, result);
	free(text);
	return rc;
}

int
ctl_run(struct ctl *ctl, json_t *req, char **result)
{
	int rc = ctl_connect(ctl, false);

	*result = NULL;
	if (rc != EXIT_OK) {
		json_decref(req);
		return rc;
	}
	rc = ctl_call(ctl, req, result);
	return rc == PHXD_OK ? EXIT_OK : report(ctl, rc);
}

bool
ctl_human(const struct ctl *ctl)
{
	if (ctl->json)
		print_member(phxd_last_response(ctl->c), "result");
	return !ctl->json && !ctl->quiet;
}

static long
number(const char *opt, const char *arg, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || *end || end == arg || v < lo || v > hi)
		die_usage("%s wants a number from %ld to %ld, not '%s'", opt, lo, hi, arg);
	return v;
}

static const struct ctl_cmd *
find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i]->name, name) == 0)
			return commands[i];
	return NULL;
}

static const char *
option_name(unsigned bit)
{
	for (size_t i = 0; i < sizeof(command_options) / sizeof(command_options[0]); i++)
		if (command_options[i].bit == bit)
			return command_options[i].name;
	return "?";
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "conn", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "await", no_argument, NULL, 'a' },
		{ "binary", no_argument, NULL, 'b' },
		{ "lines", no_argument, NULL, 'l' },
		{ "count", required_argument, NULL, 'n' },
		{ "event", required_argument, NULL, 'e' },
		{ "raw", no_argument, NULL, 'r' },
		{ "follow", no_argument, NULL, 'f' },
		{ "join", no_argument, NULL, 'J' },
		{ "openmetrics", no_argument, NULL, 'O' },
		{ "durable", no_argument, NULL, 'D' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl ctl = { .timeout_ms = -1, .count = -1 };
	unsigned given = 0;	/* command options seen */
	const struct ctl_cmd *cmd;
	int opt, rc;

	ctl.socket = getenv(PHXD_SOCKET_ENV);
	if (ctl.socket == NULL || ctl.socket[0] == '\0')
		ctl.socket = PHXD_DEFAULT_SOCKET;
	opterr = 0;
	/* GNU getopt permutes: options may follow the command ("push T E --await"). */
	while ((opt = getopt_long(argc, argv, ":s:C:jqt:hVln:e:rf", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': ctl.socket = optarg; break;
		case 'C': ctl.conn = optarg; break;
		case 'j': ctl.json = true; break;
		case 'q': ctl.quiet = true; break;
		case 't': ctl.timeout_ms = number("--timeout", optarg, 1, 86400000); break;
		case 'h': usage(stdout); return EXIT_OK;
		case 'V': puts("phxctl " PACKAGE_VERSION); return EXIT_OK;
		case 'a': ctl.await_reply = true; given |= OPT_AWAIT; break;
		case 'b': ctl.binary = true; given |= OPT_BINARY; break;
		case 'l': ctl.lines = true; given |= OPT_LINES; break;
		case 'n': ctl.count = number("--count", optarg, 1, LONG_MAX); given |= OPT_COUNT; break;
		case 'e':
			if (ctl.nevents == MAX_EVENTS)
				die_usage("at most %d --event options", MAX_EVENTS);
			ctl.events[ctl.nevents++] = optarg;
			given |= OPT_EVENT;
			break;
		case 'r': ctl.raw = true; given |= OPT_RAW; break;
		case 'f': ctl.follow = true; given |= OPT_FOLLOW; break;
		case 'J': ctl.join = true; given |= OPT_JOIN; break;
		case 'O': ctl.openmetrics = true; given |= OPT_OPENMETRICS; break;
		case 'D': ctl.durable = true; given |= OPT_DURABLE; break;
		case ':': die_usage("option %s needs a value", argv[optind - 1]);
		default: die_usage("unknown option %s", argv[optind - 1]);
		}
	}
	char **args = argv + optind;
	int nargs = argc - optind;
	if (nargs == 0)
		die_usage("a command is needed");
	if ((cmd = find_command(args[0])) == NULL)
		die_usage("unknown command '%s'", args[0]);
	if (given & ~cmd->options) {
		unsigned bit = given & ~cmd->options;
		die_usage("%s is not an option of %s", option_name(bit & -bit), cmd->name);
	}
	if (nargs - 1 < cmd->min_args || nargs - 1 > cmd->max_args)
		die_usage("usage: phxctl %s %s", cmd->name, cmd->args);
	rc = cmd->run(&ctl, args + 1, nargs - 1);
	phxd_disconnect(ctl.c);
	return rc;
}
