/* SPDX-License-Identifier: MIT */
#include "tls.h"

#include "log.h"
#include "offload.h"
#include "xmalloc.h"

#include <openssl/err.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Settings that make a context: loop thread only. */
struct tls_entry {
	TAILQ_ENTRY(tls_entry) entry;
	char *key;		/* the files' names, then their stamp */
	size_t names_len;	/* of the names part */
	SSL_CTX *ctx;		/* NULL while building */
	TAILQ_HEAD(, tls_wait) waiters;
};

/* One build: the files' names are copied for its thread. */
struct tls_job {
	struct offload_job job;
	struct tls_ctxs *t;
	struct tls_entry *e;
	char *name, *ca_file, *client_cert, *client_key;
	SSL_CTX *ctx;
};

struct tls_ctxs {
	struct offload *jobs;
	TAILQ_HEAD(, tls_entry) entries;
};

#define JOB(j) ((struct tls_job *)((char *)(j) - offsetof(struct tls_job, job)))

static void
job_free(struct offload_job *oj)
{
	struct tls_job *j = JOB(oj);

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

static void
build_job(struct offload_job *oj)
{
	struct tls_job *j = JOB(oj);

	j->ctx = build(j);
	ERR_clear_error();	/* the queue is per thread, and the thread ends */
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
built(struct offload_job *oj)
{
	struct tls_job *j = JOB(oj);
	SSL_CTX *ctx = j->ctx;

	j->ctx = NULL;
	entry_settle(j->t, j->e, ctx);
}

struct tls_ctxs *
tls_ctxs_new(struct event_base *base)
{
	struct tls_ctxs *t = xcalloc(1, sizeof(*t));

	/* No cleanup at exit: a build may still run on its thread then (a
	 * file that hangs), and OpenSSL's atexit handler would free what it
	 * uses under it. The first init call decides. */
	OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT, NULL);
	t->jobs = offload_new(base, "tls");
	TAILQ_INIT(&t->entries);
	return t;
}

void
tls_ctxs_free(struct tls_ctxs *t)
{
	struct tls_entry *e;

	if (t == NULL)
		return;
	offload_free(t->jobs);	/* builds still running are dropped */
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
	free(t);
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
	int rc;

	j->job.run = build_job;
	j->job.done = built;
	j->job.free = job_free;
	j->t = t;
	j->e = e;
	j->name = xstrdup(c->name);
	j->ca_file = dup_or_null(c->ca_file);
	j->client_cert = dup_or_null(c->client_cert);
	j->client_key = dup_or_null(c->client_key);
	if ((rc = offload_start(t->jobs, &j->job)) == 0)
		return true;
	log_warnx("%s: cannot set up TLS: no thread to read the files: %s", c->name, strerror(rc));
	job_free(&j->job);
	return false;
}

/* The same files with other contents (rotated, then reloaded): their
 * context is not handed out again, so it goes (the sockets made with it
 * hold references of their own). Without this every rotation would keep
 * a context, with its CA store, for the daemon's life. */
static void
drop_rotated(struct tls_ctxs *t, const char *key, size_t names_len)
{
	struct tls_entry *e, *next;

	for (e = TAILQ_FIRST(&t->entries); e != NULL; e = next) {
		next = TAILQ_NEXT(e, entry);
		if (e->ctx == NULL || e->names_len != names_len ||
		    memcmp(e->key, key, names_len) != 0)
			continue;	/* another's, or still being built for its waiters */
		log_debug("tls: a context for files that changed since is let go (%.*s)",
			  (int)names_len, e->key);
		TAILQ_REMOVE(&t->entries, e, entry);
		SSL_CTX_free(e->ctx);
		free(e->key);
		free(e);
	}
}

SSL_CTX *
tls_ctx_get(struct tls_ctxs *t, const struct conn_conf *c, struct tls_wait *w, bool *failed)
{
	struct tls_entry *e;
	char *key;

	*failed = false;
	int names_len = xasprintf(&key, "%s|%s|%s|", c->ca_file ? c->ca_file : "",
				  c->client_cert ? c->client_cert : "",
				  c->client_key ? c->client_key : "");
	char *stamped;
	xasprintf(&stamped, "%s%s", key, c->tls_stamp ? c->tls_stamp : "");
	free(key);
	key = stamped;
	TAILQ_FOREACH (e, &t->entries, entry)
		if (strcmp(e->key, key) == 0)
			break;
	if (e != NULL) {
		free(key);
		if (e->ctx != NULL)
			return e->ctx;
	} else {
		drop_rotated(t, key, (size_t)names_len);
		e = xcalloc(1, sizeof(*e));
		e->key = key;
		e->names_len = (size_t)names_len;
		TAILQ_INIT(&e->waiters);
		TAILQ_INSERT_TAIL(&t->entries, e, entry);
		if (!start_build(t, e, c)) {
			TAILQ_REMOVE(&t->entries, e, entry);
			free(e->key);
			free(e);
			*failed = true;
			return NULL;
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
