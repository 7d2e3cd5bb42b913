/* SPDX-License-Identifier: MIT */
#include "offload.h"

#include "log.h"
#include "wakeup.h"
#include "xmalloc.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

TAILQ_HEAD(job_list, offload_job);

struct offload {
	pthread_mutex_t lock;
	unsigned refs;		/* the daemon's, and one per running job */
	bool closed;
	struct wakeup *done_wake;	/* signalled when done goes non-empty */
	struct job_list done;
};

/* What a job's thread starts with. */
struct job_start {
	struct offload *o;
	struct offload_job *j;
};

static void
unref_locked(struct offload *o)
{
	bool last = --o->refs == 0;

	pthread_mutex_unlock(&o->lock);
	if (last) {
		pthread_mutex_destroy(&o->lock);
		free(o);
	}
}

static void *
job_main(void *arg)
{
	struct job_start start = *(struct job_start *)arg;
	struct offload *o = start.o;
	struct offload_job *j = start.j;

	free(arg);
	j->run(j);
	pthread_mutex_lock(&o->lock);
	if (o->closed || j->cancelled) {
		j->free(j);
	} else {
		bool first = TAILQ_EMPTY(&o->done);
		TAILQ_INSERT_TAIL(&o->done, j, entry);
		if (first)
			wakeup_signal(o->done_wake);
	}
	unref_locked(o);
	return NULL;
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct offload *o = arg;
	struct job_list done = TAILQ_HEAD_INITIALIZER(done);
	struct offload_job *j;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&o->lock);
	TAILQ_CONCAT(&done, &o->done, entry);
	pthread_mutex_unlock(&o->lock);
	while ((j = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, j, entry);
		if (!j->cancelled)
			j->done(j);
		j->free(j);
	}
}

struct offload *
offload_new(struct event_base *base, const char *what)
{
	struct offload *o = xcalloc(1, sizeof(*o));

	pthread_mutex_init(&o->lock, NULL);
	o->refs = 1;
	TAILQ_INIT(&o->done);
	o->done_wake = wakeup_new(base, done_cb, o);
	if (o->done_wake == NULL)
		fatal("%s: cannot create a wake-up", what);
	return o;
}

void
offload_free(struct offload *o)
{
	struct offload_job *j;

	if (o == NULL)
		return;
	pthread_mutex_lock(&o->lock);
	o->closed = true;
	while ((j = TAILQ_FIRST(&o->done)) != NULL) {
		TAILQ_REMOVE(&o->done, j, entry);
		j->free(j);
	}
	wakeup_free(o->done_wake);
	o->done_wake = NULL;
	unref_locked(o);
}

int
offload_start(struct offload *o, struct offload_job *j)
{
	struct job_start *start = xmalloc(sizeof(*start));
	pthread_attr_t attr;
	pthread_t thread;
	sigset_t all, old;
	int rc;

	start->o = o;
	start->j = j;
	j->cancelled = false;
	pthread_mutex_lock(&o->lock);
	o->refs++;
	pthread_mutex_unlock(&o->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 512u << 10);
	/* Only the loop thread takes signals. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&thread, &attr, job_main, start);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return 0;
	free(start);
	pthread_mutex_lock(&o->lock);
	o->refs--;
	pthread_mutex_unlock(&o->lock);
	return rc;
}

void
offload_cancel(struct offload *o, struct offload_job *j)
{
	pthread_mutex_lock(&o->lock);
	j->cancelled = true;
	pthread_mutex_unlock(&o->lock);
}
