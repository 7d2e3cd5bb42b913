/* SPDX-License-Identifier: MIT */
/*
 * offload: work that may block (a name lookup, reading TLS files), each
 * job on a short-lived thread of its own, its result handed back to the
 * loop. A job that hangs costs its thread and nothing else: the shared
 * state lives until the last thread is done, even past offload_free.
 */
#ifndef PHXD_OFFLOAD_H
#define PHXD_OFFLOAD_H

#include <event2/event.h>
#include <stdbool.h>
#include <sys/queue.h>

struct offload;

/* Embedded in the caller's job record. */
struct offload_job {
	TAILQ_ENTRY(offload_job) entry;
	void (*run)(struct offload_job *j);	/* on the job's thread */
	void (*done)(struct offload_job *j);	/* on the loop, then free */
	void (*free)(struct offload_job *j);	/* on whichever thread ends it */
	bool cancelled;				/* done will not run */
};

struct offload *offload_new(struct event_base *base, const char *what);
/* Jobs still running finish on their own; their done never runs. */
void offload_free(struct offload *o);
/* Starts j on a thread of its own; 0, or the pthread_create error (j is
 * then the caller's still). */
int offload_start(struct offload *o, struct offload_job *j);
/* j's done will not run (its free still does). */
void offload_cancel(struct offload *o, struct offload_job *j);

#endif
