/* SPDX-License-Identifier: MIT */
/*
 * phxctl: the command line over the phxd socket, built on libphxd. main
 * (phxctl.c) parses the options, finds the command in its table, checks
 * the arguments and options against what the entry says it takes, and
 * runs it; each command is a file (cmd_*.c). Human output by default,
 * --json for result objects, one JSON object per line for streams.
 */
#ifndef PHXCTL_H
#define PHXCTL_H

#include "client-lib/phxd.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdnoreturn.h>

enum exit_code {
	EXIT_OK = 0,
	EXIT_REPLY_ERROR = 1,	/* the Phoenix server answered with an error */
	EXIT_UNHEALTHY = 1,	/* check: a connection or a wanted topic is down */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,	/* no daemon at the socket */
	EXIT_TIMEOUT = 4,
	EXIT_FAILED = 5,	/* the daemon refused or could not do it */
};

/* Command options: which a command takes is in its table entry. */
#define OPT_AWAIT	0x001
#define OPT_BINARY	0x002
#define OPT_LINES	0x004
#define OPT_COUNT	0x008
#define OPT_EVENT	0x010
#define OPT_RAW		0x020
#define OPT_FOLLOW	0x040
#define OPT_JOIN	0x080
#define OPT_OPENMETRICS	0x100
#define OPT_DURABLE	0x200

#define MAX_EVENTS 64

struct ctl {
	/* global options */
	const char *socket;
	const char *conn;
	bool json;
	bool quiet;		/* -q: nothing on stdout when it worked */
	long timeout_ms;	/* -1: not given */
	/* command options */
	bool await_reply, binary, lines, raw, follow, join, openmetrics, durable;
	long count;		/* streams: stop after N lines; -1: forever */
	const char *events[MAX_EVENTS + 1];	/* NULL-terminated */
	size_t nevents;

	struct phxd_client *c;	/* after ctl_connect() */
};

struct ctl_cmd {
	const char *name;
	const char *args;	/* for usage: "TOPIC [PARAMS]" */
	const char *summary;
	int min_args, max_args;	/* after the command's name */
	unsigned options;	/* OPT_* it takes */
	/* Checks its arguments, connects (ctl_connect) and runs; the exit code. */
	int (*run)(struct ctl *ctl, char **args, int nargs);
};

extern const struct ctl_cmd cmd_status, cmd_check, cmd_join, cmd_leave, cmd_push, cmd_subscribe,
	cmd_events, cmd_presence, cmd_reload, cmd_metrics, cmd_outbox;

/* phxctl.c */
noreturn void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Connects to phxd within --timeout; EXIT_OK, or the exit code after saying
 * why on stderr (unless quietly). */
int ctl_connect(struct ctl *ctl, bool quietly);
/* A request of {"op":op} with "conn" when -C was given; the caller owns it. */
json_t *ctl_request(const struct ctl *ctl, const char *op);
/* Sends req (stolen); *result (freed by the caller) on success. */
int ctl_call(struct ctl *ctl, json_t *req, char **result);
/* Connects, sends req (stolen) and says how it failed: EXIT_OK with
 * *result (freed by the caller), or the exit code. */
int ctl_run(struct ctl *ctl, json_t *req, char **result);
/* After ctl_run: with --json prints the result object and returns false;
 * true when the command should print its own (human) output. */
bool ctl_human(const struct ctl *ctl);

/* output.c */
void print_text(const char *json);
void print_json(json_t *j);
/* --json: the response's "result" (or "error") object, not the envelope. */
void print_member(const char *response, const char *member);
/* Says how a call failed and gives its exit code. */
int report(const struct ctl *ctl, int rc);
/* Control characters are shown as \xNN, not sent to the terminal; padded
 * to width. */
void put_safe(const char *s, int width);
const char *jstr(json_t *o, const char *key);
long long jint(json_t *o, const char *key);
/* 999ms, 12.5s, 3min 20s, 4h 5min, 2d 3h */
const char *fmt_duration(long long ms, char *buf, size_t size);
const char *fmt_bytes(long long n, char *buf, size_t size);

#endif
