/* SPDX-License-Identifier: MIT */
#include "tls.h"

#include "log.h"
#include "xmalloc.h"

#include <errno.h>
#include <openssl/err.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Settings that make a context: main thread only. */
struct tls_entry {
	TAILQ_ENTRY(tls_entry) entry;
	char *key;
	SSL_CTX *ctx;		/* NULL while building */
	TAILQ_HEAD(, tls_wait) waiters;
};

/* One build, shared with its thread. */
struct tls_job {
	TAILQ_ENTRY(tls_job) entry;
	struct tls_ctxs *t;
	struct tls_entry *e;	/* main thread's; NULL once dropped */
	char *name, *ca_file, *client_cert, *client_key;
	SSL_CTX *ctx;
};

/* Lives until its last build thread is done: the daemon may exit while
 * one hangs on a file. */
struct tls_ctxs {
	pthread_mutex_t lock;
	unsigned refs;
	bool closed;
	struct event *done_ev;
	TAILQ_HEAD(, tls_job) running, done;
	TAILQ_HEAD(, tls_entry) entries;	/* main thread only */
};

static void
ctxs_unref_locked(struct tls_ctxs *t)
{
	bool last = --t->refs == 0;

	pthread_mutex_unlock(&t->lock);
	if (last) {
		pthread_mutex_destroy(&t->lock);
		free(t);
	}
}

static void
job_free(struct tls_job *j)
{
	SSL_CTX_free(j->ctx);
	free(j->name);
	free(j->ca_file);
	free(j->client_cert);
	free(j->client_key);
	free(j);
}

/* Says which file is missing or unreadable, which OpenSSL does not. */
static bool
files_readable(const struct tls_job *j)
{
	const char *files[] = { j->ca_file, j->client_cert, j->client_key };
	const char *names[] = { "ca_file", "client_cert", "client_key" };

	for (size_t i = 0; i < 3; i++) {
		if (files[i] != NULL && access(files[i], R_OK) != 0) {
			log_warn("%s: cannot set up TLS: %s %s", j->name, names[i], files[i]);
			return false;
		}
	}
	return true;
}

static SSL_CTX *
build(const struct tls_job *j)
{
	SSL_CTX *ctx;
	const char *what = NULL, *file = NULL;
	char err[256];

	if (!files_readable(j))
		return NULL;
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		what = "cannot create a context";
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (j->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, j->ca_file, NULL) != 1) {
			what = "ca_file";
			file = j->ca_file;
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		what = "the system CA store";
		goto fail;
	}
	if (j->client_cert != NULL) {
		if (SSL_CTX_use_certificate_chain_file(ctx, j->client_cert) != 1) {
			what = "client_cert";
			file = j->client_cert;
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, j->client_key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			what = "client_key";
			file = j->client_key;
			goto fail;
		}
	}
	return ctx;
fail:
	ERR_error_string_n(ERR_get_error(), err, sizeof(err));
	log_warnx("%s: cannot set up TLS: %s%s%s: %s", j->name, what, file ? " " : "",
		  file ? file : "", err);
	SSL_CTX_free(ctx);
	return NULL;
}

static void *
build_main(void *arg)
{
	struct tls_job *j = arg;
	struct tls_ctxs *t = j->t;

	j->ctx = build(j);
	ERR_clear_error();	/* the queue is per thread, and the thread ends */
	pthread_mutex_lock(&t->lock);
	TAILQ_REMOVE(&t->running, j, entry);
	if (t->closed) {
		job_free(j);
	} else {
		bool first = TAILQ_EMPTY(&t->done);
		TAILQ_INSERT_TAIL(&t->done, j, entry);
		if (first)
			event_active(t->done_ev, EV_READ, 0);
	}
	ctxs_unref_locked(t);
	return NULL;
}

static void
entry_settle(struct tls_ctxs *t, struct tls_entry *e, SSL_CTX *ctx)
{
	struct tls_wait *w;

	e->ctx = ctx;
	if (ctx == NULL)	/* the next connection tries again */
		TAILQ_REMOVE(&t->entries, e, entry);
	while ((w = TAILQ_FIRST(&e->waiters)) != NULL) {
		TAILQ_REMOVE(&e->waiters, w, entry);
		w->e = NULL;
		w->fn(w, ctx);
	}
	if (ctx == NULL) {
		free(e->key);
		free(e);
	}
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tls_ctxs *t = arg;
	TAILQ_HEAD(, tls_job) done = TAILQ_HEAD_INITIALIZER(done);
	struct tls_job *j;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&t->lock);
	TAILQ_CONCAT(&done, &t->done, entry);
	pthread_mutex_unlock(&t->lock);
	while ((j = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, j, entry);
		if (j->e != NULL) {
			SSL_CTX *ctx = j->ctx;
			j->ctx = NULL;
			entry_settle(t, j->e, ctx);
		}
		job_free(j);
	}
}

struct tls_ctxs *
tls_ctxs_new(struct event_base *base)
{
	struct tls_ctxs *t = xcalloc(1, sizeof(*t));

	pthread_mutex_init(&t->lock, NULL);
	t->refs = 1;
	TAILQ_INIT(&t->running);
	TAILQ_INIT(&t->done);
	TAILQ_INIT(&t->entries);
	t->done_ev = event_new(base, -1, 0, done_cb, t);
	if (t->done_ev == NULL)
		fatalx("tls: cannot create an event");
	return t;
}

void
tls_ctxs_free(struct tls_ctxs *t)
{
	struct tls_entry *e;
	struct tls_job *j;

	if (t == NULL)
		return;
	while ((e = TAILQ_FIRST(&t->entries)) != NULL) {
		struct tls_wait *w;
		TAILQ_REMOVE(&t->entries, e, entry);
		while ((w = TAILQ_FIRST(&e->waiters)) != NULL) {
			TAILQ_REMOVE(&e->waiters, w, entry);
			w->e = NULL;
		}
		SSL_CTX_free(e->ctx);
		free(e->key);
		free(e);
	}
	pthread_mutex_lock(&t->lock);
	t->closed = true;
	TAILQ_FOREACH (j, &t->running, entry)
		j->e = NULL;
	while ((j = TAILQ_FIRST(&t->done)) != NULL) {
		TAILQ_REMOVE(&t->done, j, entry);
		job_free(j);
	}
	event_free(t->done_ev);
	t->done_ev = NULL;
	ctxs_unref_locked(t);
}

static char *
dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static bool
start_build(struct tls_ctxs *t, struct tls_entry *e, const struct conn_conf *c)
{
	struct tls_job *j = xcalloc(1, sizeof(*j));
	pthread_attr_t attr;
	pthread_t thread;
	sigset_t all, old;
	int rc;

	j->t = t;
	j->e = e;
	j->name = xstrdup(c->name);
	j->ca_file = dup_or_null(c->ca_file);
	j->client_cert = dup_or_null(c->client_cert);
	j->client_key = dup_or_null(c->client_key);
	pthread_mutex_lock(&t->lock);
	TAILQ_INSERT_TAIL(&t->running, j, entry);
	t->refs++;
	pthread_mutex_unlock(&t->lock);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Only the loop thread takes signals. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&thread, &attr, build_main, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return true;
	log_warnx("%s: cannot set up TLS: no thread to read the files: %s", c->name, strerror(rc));
	pthread_mutex_lock(&t->lock);
	TAILQ_REMOVE(&t->running, j, entry);
	t->refs--;
	pthread_mutex_unlock(&t->lock);
	job_free(j);
	return false;
}

SSL_CTX *
tls_ctx_get(struct tls_ctxs *t, const struct conn_conf *c, struct tls_wait *w)
{
	struct tls_entry *e;
	char *key;

	xasprintf(&key, "%s|%s|%s|%s", c->ca_file ? c->ca_file : "",
		  c->client_cert ? c->client_cert : "", c->client_key ? c->client_key : "",
		  c->tls_stamp ? c->tls_stamp : "");
	TAILQ_FOREACH (e, &t->entries, entry)
		if (strcmp(e->key, key) == 0)
			break;
	if (e != NULL) {
		free(key);
		if (e->ctx != NULL)
			return e->ctx;
	} else {
		e = xcalloc(1, sizeof(*e));
		e->key = key;
		TAILQ_INIT(&e->waiters);
		TAILQ_INSERT_TAIL(&t->entries, e, entry);
		if (!start_build(t, e, c)) {
			/* answered on the loop, like any other build */
			struct tls_job *j = xcalloc(1, sizeof(*j));
			j->e = e;
			pthread_mutex_lock(&t->lock);
			bool first = TAILQ_EMPTY(&t->done);
			TAILQ_INSERT_TAIL(&t->done, j, entry);
			pthread_mutex_unlock(&t->lock);
			if (first)
				event_active(t->done_ev, EV_READ, 0);
		}
	}
	w->e = e;
	TAILQ_INSERT_TAIL(&e->waiters, w, entry);
	return NULL;
}

void
tls_wait_cancel(struct tls_wait *w)
{
	if (w->e == NULL)
		return;
	TAILQ_REMOVE(&w->e->waiters, w, entry);
	w->e = NULL;
}
