/* SPDX-License-Identifier: MIT */
/*
 * tls: client TLS contexts, one per set of TLS settings (CA file, client
 * certificate and key, verification, and the stamp of those files'
 * contents, so a rotated file is read again). Reading the files may hang
 * (a network filesystem): contexts are built on a short-lived thread, and
 * a connection waits for its context without stalling the loop. One build
 * per settings at a time, however many connections wait for it.
 */
#ifndef PHXD_TLS_H
#define PHXD_TLS_H

#include "config.h"

#include <event2/event.h>
#include <openssl/ssl.h>
#include <sys/queue.h>

struct tls_ctxs;
struct tls_entry;

/* A connection waiting for a context. fn gets it (NULL when it could not
 * be built: the reason is logged), on the loop, after tls_ctx_get returned. */
struct tls_wait {
	TAILQ_ENTRY(tls_wait) entry;
	struct tls_entry *e;	/* NULL when not waiting */
	void (*fn)(struct tls_wait *w, SSL_CTX *ctx);
};

struct tls_ctxs *tls_ctxs_new(struct event_base *base);
/* Builds still running finish on their own thread; their results are dropped. */
void tls_ctxs_free(struct tls_ctxs *t);
/* The context for c's settings when it is built. Otherwise NULL, and w->fn
 * is called once it is (w->fn must be set); or NULL and *failed when no
 * build could start (logged). */
SSL_CTX *tls_ctx_get(struct tls_ctxs *t, const struct conn_conf *c, struct tls_wait *w,
		     bool *failed);
void tls_wait_cancel(struct tls_wait *w);

#endif
