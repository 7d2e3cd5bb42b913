/* SPDX-License-Identifier: MIT */
/*
 * The daemon context: everything the libevent thread owns, passed around
 * explicitly (no globals).
 */
#ifndef PHXD_PHXD_H
#define PHXD_PHXD_H

#include "config.h"
#include "conn.h"
#include "resolve.h"
#include "session.h"
#include "timerq.h"
#include "transport.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

struct ipc_server;
struct metrics_http;
struct outbox;

struct phxd {
	struct event_base *base;
	struct phxd_conf *conf;
	char *config_path;
	char *socket_path;	/* from -s, overrides the config */
	struct transport *tp;
	struct resolver *resolver;
	struct timerq tq;
	struct event *tq_ev;
	uint64_t tq_armed_at;	/* the deadline tq_ev fires at; UINT64_MAX: none */
	struct event *sig_term, *sig_int, *sig_hup, *sig_pipe;
	struct event *watchdog_ev;
	struct event *trim_ev;		/* gives freed memory back after a burst */
	struct ipc_server *ipc;
	struct loop *loop;		/* runs base, busy-polling when configured */
	struct metrics_http *metrics;	/* NULL unless metrics_listen */
	struct outbox *outbox;		/* NULL: none, or it failed to open */
	char outbox_error[512];		/* why it is NULL; "" when none is configured */
	struct phxd_conn **conns;	/* NULL where a reload removed one */
	size_t nconns;
	struct phxd_shard **shards;	/* by transport id; NULL where one closed */
	size_t nshard_slots;
	uint32_t next_gen;		/* every websocket attempt gets its own */
	bool stopping;
	bool log_level_forced;	/* -l given: the config's log_level is ignored */
	uint64_t started_at_ms;	/* wall clock */
	uint64_t reloads;
	struct notifier *notify;	/* NULL without $NOTIFY_SOCKET */
	char last_status[128];	/* the STATUS= systemd has */
	struct event *status_ev;	/* sends STATUS= after the loop pass that changed it */
};

/* Monotonic ms, the clock of d->tq. */
uint64_t phxd_now_ms(void);
/* Re-arms the libevent timer after anything changed the timer queue. */
void phxd_timers_changed(struct phxd *d);
struct phxd_conn *phxd_find_conn(struct phxd *d, const char *name);
/* Reloads the config file; false with err set when it did not parse. */
bool phxd_reload(struct phxd *d, char *err, size_t errlen);
/* Pushes the one-line summary to systemd (STATUS=) when it changed:
 * connection and topic states and the client count. Deferred to the end
 * of the loop pass (lowest priority), so bursts count once. */
void phxd_notify_status(struct phxd *d);

#endif
