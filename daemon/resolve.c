/* SPDX-License-Identifier: MIT */
#include "resolve.h"

#include "log.h"
#include "xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

struct resolve_req {
	TAILQ_ENTRY(resolve_req) entry;
	struct resolver *r;
	char *host;
	unsigned pick;
	resolve_fn fn;		/* NULL once cancelled */
	void *arg;
	char addr[INET6_ADDRSTRLEN];
	char why[160];
	bool ok;
};
TAILQ_HEAD(req_list, resolve_req);

/*
 * Shared with the lookup threads, so it lives until the last of them is
 * done: the daemon may exit while a lookup hangs.
 */
struct resolver {
	pthread_mutex_t lock;
	unsigned refs;		/* the daemon's, and one per running lookup */
	bool closed;
	struct event *done_ev;
	struct req_list running, done;
};

static void
resolver_unref_locked(struct resolver *r)
{
	bool last = --r->refs == 0;

	pthread_mutex_unlock(&r->lock);
	if (last) {
		pthread_mutex_destroy(&r->lock);
		free(r);
	}
}

static void
req_free(struct resolve_req *q)
{
	free(q->host);
	free(q);
}

static void *
lookup_main(void *arg)
{
	struct resolve_req *q = arg;
	struct resolver *r = q->r;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(q->host, NULL, &hints, &res);

	if (rc != 0) {
		snprintf(q->why, sizeof(q->why), "cannot resolve %s: %s", q->host,
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	} else {
		size_t n = 0;
		for (struct addrinfo *a = res; a; a = a->ai_next)
			n++;
		struct addrinfo *a = res;
		for (size_t i = 0; i < q->pick % n; i++)
			a = a->ai_next;
		const void *src = a->ai_family == AF_INET6
					  ? (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr
					  : (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr;
		q->ok = inet_ntop(a->ai_family, src, q->addr, sizeof(q->addr)) != NULL;
		if (!q->ok)
			snprintf(q->why, sizeof(q->why), "cannot resolve %s", q->host);
		freeaddrinfo(res);
	}
	pthread_mutex_lock(&r->lock);
	TAILQ_REMOVE(&r->running, q, entry);
	if (r->closed || q->fn == NULL) {
		req_free(q);
	} else {
		bool first = TAILQ_EMPTY(&r->done);
		TAILQ_INSERT_TAIL(&r->done, q, entry);
		if (first)
			event_active(r->done_ev, EV_READ, 0);
	}
	resolver_unref_locked(r);
	return NULL;
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct resolver *r = arg;
	struct req_list done;
	struct resolve_req *q;

	(void)fd;
	(void)what;
	TAILQ_INIT(&done);
	pthread_mutex_lock(&r->lock);
	TAILQ_CONCAT(&done, &r->done, entry);
	pthread_mutex_unlock(&r->lock);
	while ((q = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, q, entry);
		if (q->fn)
			q->fn(q->arg, q->ok ? q->addr : NULL, q->ok ? NULL : q->why);
		req_free(q);
	}
}

struct resolver *
resolver_new(struct event_base *base)
{
	struct resolver *r = xcalloc(1, sizeof(*r));

	pthread_mutex_init(&r->lock, NULL);
	r->refs = 1;
	TAILQ_INIT(&r->running);
	TAILQ_INIT(&r->done);
	r->done_ev = event_new(base, -1, 0, done_cb, r);
	if (r->done_ev == NULL)
		fatalx("resolve: cannot create an event");
	return r;
}

void
resolver_free(struct resolver *r)
{
	struct resolve_req *q;

	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	r->closed = true;
	while ((q = TAILQ_FIRST(&r->done)) != NULL) {
		TAILQ_REMOVE(&r->done, q, entry);
		req_free(q);
	}
	event_free(r->done_ev);
	r->done_ev = NULL;
	resolver_unref_locked(r);
}

struct resolve_req *
resolver_lookup(struct resolver *r, const char *host, unsigned pick, resolve_fn fn, void *arg)
{
	struct resolve_req *q = xcalloc(1, sizeof(*q));
	pthread_attr_t attr;
	pthread_t thread;
	sigset_t all, old;
	int rc;

	q->r = r;
	q->host = xstrdup(host);
	q->pick = pick;
	q->fn = fn;
	q->arg = arg;
	pthread_mutex_lock(&r->lock);
	r->refs++;
	TAILQ_INSERT_TAIL(&r->running, q, entry);
	pthread_mutex_unlock(&r->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 512u << 10);
	/* Only the libevent thread takes signals. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&thread, &attr, lookup_main, q);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return q;
	pthread_mutex_lock(&r->lock);
	TAILQ_REMOVE(&r->running, q, entry);
	r->refs--;
	pthread_mutex_unlock(&r->lock);
	char why[160];
	snprintf(why, sizeof(why), "cannot start a lookup of %s: %s", host, strerror(rc));
	req_free(q);
	fn(arg, NULL, why);
	return NULL;
}

void
resolver_cancel(struct resolver *r, struct resolve_req *q)
{
	pthread_mutex_lock(&r->lock);
	q->fn = NULL;
	pthread_mutex_unlock(&r->lock);
}
