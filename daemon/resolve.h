/* SPDX-License-Identifier: MIT */
/*
 * resolve: name lookups off the loop. getaddrinfo blocks, and a lookup on
 * the loop would stall every websocket and client; phxd resolves host
 * names first, one short-lived thread per lookup (getaddrinfo, so
 * /etc/hosts, NSS and resolv.conf apply), and hands the transport a
 * numeric address. Results come back on the loop.
 */
#ifndef PHXD_RESOLVE_H
#define PHXD_RESOLVE_H

#include <event2/event.h>
#include <stdbool.h>

struct resolver;
struct resolve_req;

/* addr is a numeric address (NULL on failure, with why); runs on the
 * libevent thread, never for a cancelled request. */
typedef void (*resolve_fn)(void *arg, const char *addr, const char *why);

struct resolver *resolver_new(struct event_base *base);
/* Lookups still running finish on their own; their results are dropped. */
void resolver_free(struct resolver *r);
/* Looks up host; `pick` chooses among several addresses (attempt number,
 * so that retries walk through them). NULL when no thread could start,
 * after calling fn with the reason. */
struct resolve_req *resolver_lookup(struct resolver *r, const char *host, unsigned pick,
				    resolve_fn fn, void *arg);
void resolver_cancel(struct resolver *r, struct resolve_req *q);

#endif
