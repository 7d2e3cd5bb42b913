/* SPDX-License-Identifier: MIT */
#include "resolve.h"

#include "log.h"
#include "offload.h"
#include "xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct resolve_req {
	struct offload_job job;
	struct resolver *r;
	char *host;
	unsigned pick;
	resolve_fn fn;
	void *arg;
	char addr[INET6_ADDRSTRLEN];
	char why[160];
	bool ok;
};

struct resolver {
	struct offload *jobs;
};

#define REQ(j) ((struct resolve_req *)((char *)(j) - offsetof(struct resolve_req, job)))

static void
lookup(struct offload_job *j)
{
	struct resolve_req *q = REQ(j);
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(q->host, NULL, &hints, &res);

	if (rc != 0) {
		snprintf(q->why, sizeof(q->why), "cannot resolve %s: %s", q->host,
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return;
	}
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

static void
looked_up(struct offload_job *j)
{
	struct resolve_req *q = REQ(j);

	q->fn(q->arg, q->ok ? q->addr : NULL, q->ok ? NULL : q->why);
}

static void
req_free(struct offload_job *j)
{
	struct resolve_req *q = REQ(j);

	free(q->host);
	free(q);
}

struct resolver *
resolver_new(struct event_base *base)
{
	struct resolver *r = xcalloc(1, sizeof(*r));

	r->jobs = offload_new(base, "resolve");
	return r;
}

void
resolver_free(struct resolver *r)
{
	if (r == NULL)
		return;
	offload_free(r->jobs);
	free(r);
}

struct resolve_req *
resolver_lookup(struct resolver *r, const char *host, unsigned pick, resolve_fn fn, void *arg)
{
	struct resolve_req *q = xcalloc(1, sizeof(*q));
	int rc;

	q->job.run = lookup;
	q->job.done = looked_up;
	q->job.free = req_free;
	q->r = r;
	q->host = xstrdup(host);
	q->pick = pick;
	q->fn = fn;
	q->arg = arg;
	if ((rc = offload_start(r->jobs, &q->job)) == 0)
		return q;
	char why[160];
	snprintf(why, sizeof(why), "cannot start a lookup of %s: %s", host, strerror(rc));
	req_free(&q->job);
	fn(arg, NULL, why);
	return NULL;
}

void
resolver_cancel(struct resolver *r, struct resolve_req *q)
{
	offload_cancel(r->jobs, &q->job);
}
