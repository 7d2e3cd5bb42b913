/* SPDX-License-Identifier: MIT */
#include "transport.h"

#include "log.h"
#include "xmalloc.h"

#include "protocol/json_scan.h"

#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

/* What a connect needs: the connection's settings (a reference: a reload
 * may drop the config meanwhile) and the address its name resolved to. */
struct tp_target {
	const struct conn_conf *conf;
	char *address;
};

enum tp_cmd_kind { CMD_CONNECT, CMD_SEND, CMD_CLOSE, CMD_RESUME };
STAILQ_HEAD(tp_cmd_list, tp_cmd);

struct tp_cmd {
	STAILQ_ENTRY(tp_cmd) entry;
	enum tp_cmd_kind kind;
	uint32_t id, gen;
	int code;
	bool binary;
	char reason[124];
	struct tp_target *target;
	size_t len;
	unsigned char buf[];	/* LWS_PRE headroom, then the frame */
};

/* One websocket, owned by the lws thread. */
struct tp_link {
	LIST_ENTRY(tp_link) entry;	/* all links, for the stop and the reaping */
	struct transport *tp;
	uint32_t id, gen;
	struct lws *wsi;
	struct tp_target *target;
	struct tp_cmd_list out;	/* frames to write */
	size_t out_bytes;	/* queued for a server that may not be reading */
	char *rx;
	size_t rx_len, rx_cap;
	bool rx_binary;
	bool established, done, paused;
	bool no_subprotocol;	/* offered subprotocols, the server chose none */
	int close_code;		/* to send; 0 when we do not close */
	char close_reason[124];
	char tls_error[96];	/* why the certificate was refused */
	int peer_code;		/* received in the peer's close frame */
	char peer_reason[124];
};

/*
 * Events travel in slabs: the records of one service pass share a few
 * allocations, freed by the libevent thread once it has run them. No
 * per-frame malloc crosses the threads.
 */
struct tp_slab {
	TAILQ_ENTRY(tp_slab) entry;
	size_t used, cap;
	max_align_t data[];
};

TAILQ_HEAD(tp_slab_list, tp_slab);

#define SLAB_MIN (16u << 10)
#define SLAB_MAX (64u << 10)	/* below glibc's mmap threshold */

static size_t
record_size(size_t len)
{
	size_t n = sizeof(struct tp_event) + len;
	return (n + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
}

struct tls_vhost {
	SLIST_ENTRY(tls_vhost) entry;
	SSL_CTX *ssl_ctx;	/* ours: freed after the lws context */
	char *key;
	struct lws_vhost *vh;
};

struct transport {
	struct event_base *base;
	struct event *wake_ev;		/* lws thread -> libevent */
	struct event *flush_ev;		/* batches transport_send */
	tp_event_fn fn;
	void *ud;

	pthread_t thread;
	bool thread_started;
	struct lws_context *ctx;
	struct lws_vhost *plain_vhost;

	pthread_mutex_t lock;
	struct tp_cmd_list cmds;		/* -> lws thread */
	struct tp_slab_list events;		/* events -> libevent thread */
	size_t ev_bytes;
	size_t receive_cap;		/* ev_bytes past which sockets are not read */
	bool paused;			/* they are not, until the main thread caught up */
	bool stopping;
	uint64_t stop_deadline_us;

	/* libevent thread only: frames not yet handed over */
	struct tp_cmd_list batch;

	/* lws thread only */
	struct tp_slab_list fill;		/* this pass's events */
	size_t fill_bytes;
	LIST_HEAD(, tp_link) links;
	struct tp_link **by_id;
	size_t nby_id;
	struct lws_sorted_usec_list stop_sul;
	struct lws_sorted_usec_list alive_sul;
	unsigned long alive;		/* ticks of the service loop (atomic) */
	bool stop_tick_armed;

	SLIST_HEAD(, tls_vhost) tls_vhosts;
};

#define WRITES_PER_WRITEABLE 32
/* Frames queued for one server before phxd gives up on that socket. */
#define SEND_QUEUE_MAX (64u << 20)

static void target_free(struct tp_target *t);
static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		    size_t len);

static const struct lws_protocols protocols[] = {
	/* 64 KiB reads: many frames per read, and per pass */
	{ "phxd", callback, 0, 65536, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};


/* ---- libevent side -------------------------------------------------------- */

/* Hands a list of commands to the lws thread (the list is emptied). */
static void
push_cmds(struct transport *tp, struct tp_cmd_list *list)
{
	bool was_empty;

	if (STAILQ_EMPTY(list))
		return;
	pthread_mutex_lock(&tp->lock);
	was_empty = STAILQ_EMPTY(&tp->cmds);
	STAILQ_CONCAT(&tp->cmds, list);
	pthread_mutex_unlock(&tp->lock);
	if (was_empty && tp->ctx)
		lws_cancel_service(tp->ctx);
}

static void
flush_batch(struct transport *tp)
{
	push_cmds(tp, &tp->batch);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush_batch(arg);
}

static void
queue_cmd(struct transport *tp, struct tp_cmd *c)
{
	/* Keep order with frames already batched. */
	STAILQ_INSERT_TAIL(&tp->batch, c, entry);
	if (c->kind == CMD_SEND) {
		if (!event_pending(tp->flush_ev, EV_TIMEOUT, NULL))
			event_active(tp->flush_ev, EV_TIMEOUT, 0);
	} else {
		flush_batch(tp);
	}
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct transport *tp = arg;
	struct tp_slab_list slabs = TAILQ_HEAD_INITIALIZER(slabs);
	struct tp_slab *slab;
	bool resume;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&tp->lock);
	TAILQ_CONCAT(&slabs, &tp->events, entry);
	resume = tp->paused;
	tp->paused = false;
	tp->ev_bytes = 0;
	pthread_mutex_unlock(&tp->lock);
	while ((slab = TAILQ_FIRST(&slabs)) != NULL) {
		TAILQ_REMOVE(&slabs, slab, entry);
		for (size_t off = 0; off < slab->used;) {
			struct tp_event *ev = (struct tp_event *)((char *)slab->data + off);
			tp->fn(tp->ud, ev);
			off += record_size(ev->len);
		}
		free(slab);
	}
	if (resume) {
		struct tp_cmd *c = xcalloc(1, sizeof(*c));
		c->kind = CMD_RESUME;
		queue_cmd(tp, c);
	}
}

struct transport *
transport_new(struct event_base *base, tp_event_fn fn, void *ud, size_t receive_cap)
{
	struct transport *tp = xcalloc(1, sizeof(*tp));

	tp->receive_cap = receive_cap;
	tp->base = base;
	tp->fn = fn;
	tp->ud = ud;
	pthread_mutex_init(&tp->lock, NULL);
	STAILQ_INIT(&tp->cmds);
	TAILQ_INIT(&tp->events);
	STAILQ_INIT(&tp->batch);
	TAILQ_INIT(&tp->fill);
	LIST_INIT(&tp->links);
	SLIST_INIT(&tp->tls_vhosts);
	tp->wake_ev = event_new(base, -1, 0, wake_cb, tp);
	tp->flush_ev = event_new(base, -1, 0, flush_cb, tp);
	/* Frames are handed over after everything else of the pass ran
	 * (the daemon's base has 3 priorities; 1 is the default). */
	event_priority_set(tp->flush_ev, 2);
	return tp;
}

void
transport_set_receive_cap(struct transport *tp, size_t receive_cap)
{
	pthread_mutex_lock(&tp->lock);
	tp->receive_cap = receive_cap;
	pthread_mutex_unlock(&tp->lock);
}

void
transport_connect(struct transport *tp, uint32_t id, uint32_t gen, const struct conn_conf *c,
		  const char *address)
{
	struct tp_cmd *cmd = xcalloc(1, sizeof(*cmd));
	struct tp_target *t = xcalloc(1, sizeof(*t));

	t->conf = config_conn_ref(c);
	t->address = xstrdup(address);
	cmd->kind = CMD_CONNECT;
	cmd->id = id;
	cmd->gen = gen;
	cmd->target = t;
	queue_cmd(tp, cmd);
}

void
transport_send(struct transport *tp, uint32_t id, uint32_t gen, const char *data, size_t len,
	       bool binary)
{
	struct tp_cmd *cmd = xmalloc(sizeof(*cmd) + LWS_PRE + len);

	memset(cmd, 0, sizeof(*cmd));
	cmd->kind = CMD_SEND;
	cmd->id = id;
	cmd->gen = gen;
	cmd->binary = binary;
	cmd->len = len;
	memcpy(cmd->buf + LWS_PRE, data, len);
	queue_cmd(tp, cmd);
}

void
transport_close(struct transport *tp, uint32_t id, uint32_t gen, int code, const char *reason)
{
	struct tp_cmd *cmd = xcalloc(1, sizeof(*cmd));

	cmd->kind = CMD_CLOSE;
	cmd->id = id;
	cmd->gen = gen;
	cmd->code = code;
	snprintf(cmd->reason, sizeof(cmd->reason), "%s", reason ? reason : "");
	queue_cmd(tp, cmd);
}

/* ---- lws thread ------------------------------------------------------------ */

/* A new event record of this service pass, with room for len bytes of
 * data. Events of one pass are handed over together (one lock, at most one
 * wake-up), so a read of many frames costs one switch. */
static struct tp_event *
event_record(struct transport *tp, enum tp_event_kind kind, const struct tp_link *l, size_t len)
{
	size_t need = record_size(len);
	struct tp_slab *slab = TAILQ_LAST(&tp->fill, tp_slab_list);
	struct tp_event *ev;

	if (slab == NULL || slab->cap - slab->used < need) {
		size_t cap = slab ? 2 * slab->cap : SLAB_MIN;
		if (cap > SLAB_MAX)
			cap = SLAB_MAX;
		if (cap < need)
			cap = need;
		slab = xmalloc(sizeof(*slab) + cap);
		slab->used = 0;
		slab->cap = cap;
		TAILQ_INSERT_TAIL(&tp->fill, slab, entry);
	}
	ev = (struct tp_event *)((char *)slab->data + slab->used);
	slab->used += need;
	memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->id = l->id;
	ev->gen = l->gen;
	ev->len = len;
	tp->fill_bytes += len;
	return ev;
}

static void
flush_events(struct transport *tp)
{
	bool was_empty;

	if (TAILQ_EMPTY(&tp->fill))
		return;
	pthread_mutex_lock(&tp->lock);
	was_empty = TAILQ_EMPTY(&tp->events);
	TAILQ_CONCAT(&tp->events, &tp->fill, entry);
	tp->ev_bytes += tp->fill_bytes;
	bool high = !tp->paused && tp->ev_bytes >= tp->receive_cap;
	if (high)
		tp->paused = true;
	size_t behind = tp->ev_bytes;
	pthread_mutex_unlock(&tp->lock);
	tp->fill_bytes = 0;
	if (was_empty)
		event_active(tp->wake_ev, EV_READ, 0);
	/* The libevent thread is far behind: stop reading the sockets until
	 * it catches up (it sends CMD_RESUME). */
	if (high) {
		struct tp_link *l;
		log_debug("websocket: %zu received bytes wait for the main thread "
			  "(receive_queue_bytes); pausing reads", behind);
		LIST_FOREACH (l, &tp->links, entry) {
			if (!l->paused && l->wsi && !l->done) {
				l->paused = true;
				lws_rx_flow_control(l->wsi, 0);
			}
		}
	}
}

/* A close reason is the server's bytes: whole UTF-8 characters only. */
static void
copy_reason(char *dst, size_t size, const char *reason, size_t len)
{
	char clean[3 * 128];
	size_t n;

	if (len > 127)
		len = 127;
	n = json_utf8_sanitize(reason, len, clean);
	n = json_utf8_cut(clean, n, size - 1);
	memcpy(dst, clean, n);
	dst[n] = '\0';
}

static struct tp_event *
post_simple(struct tp_link *l, enum tp_event_kind kind, int code, const char *reason,
	    int http_status)
{
	struct tp_event *ev = event_record(l->tp, kind, l, 0);

	ev->code = code;
	ev->http_status = http_status;
	copy_reason(ev->reason, sizeof(ev->reason), reason ? reason : "",
		    reason ? strlen(reason) : 0);
	return ev;
}

static void
link_finish(struct tp_link *l, int code, const char *reason, int http_status)
{
	if (l->done)
		return;
	l->done = true;
	if (l->wsi)
		lws_set_opaque_user_data(l->wsi, NULL);
	l->wsi = NULL;
	post_simple(l, TP_CLOSED, code, reason, http_status);
	if (l->id < l->tp->nby_id && l->tp->by_id[l->id] == l)
		l->tp->by_id[l->id] = NULL;
}

static void
link_free(struct tp_link *l)
{
	struct tp_cmd *c;

	while ((c = STAILQ_FIRST(&l->out)) != NULL) {
		STAILQ_REMOVE_HEAD(&l->out, entry);
		free(c);
	}
	free(l->rx);
	target_free(l->target);
	free(l);
}

/* Frees finished links; runs after each service pass, never inside a callback. */
static void
reap_links(struct transport *tp)
{
	struct tp_link *l, *next;

	for (l = LIST_FIRST(&tp->links); l != NULL; l = next) {
		next = LIST_NEXT(l, entry);
		if (l->done) {
			LIST_REMOVE(l, entry);
			link_free(l);
		}
	}
}

/* Says which file is missing or unreadable, which lws does not. */
static bool
tls_files_readable(const struct tp_target *t)
{
	const char *files[] = { t->conf->ca_file, t->conf->client_cert, t->conf->client_key };
	const char *names[] = { "ca_file", "client_cert", "client_key" };

	for (size_t i = 0; i < 3; i++) {
		if (files[i] != NULL && access(files[i], R_OK) != 0) {
			log_warn("%s: cannot set up TLS: %s %s", t->conf->name, names[i], files[i]);
			return false;
		}
	}
	return true;
}

/*
 * The client TLS context of a target, made here rather than by lws: lws
 * shares contexts between vhosts by file *names*, so a rotated file would
 * never be read again, and its errors say only "lib(0)".
 */
static SSL_CTX *
tls_ctx_new(const struct tp_target *t)
{
	SSL_CTX *ctx;
	const char *what = NULL, *file = NULL;
	char err[256];

	if (!tls_files_readable(t))
		return NULL;
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		what = "cannot create a context";
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (t->conf->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, t->conf->ca_file, NULL) != 1) {
			what = "ca_file";
			file = t->conf->ca_file;
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		what = "the system CA store";
		goto fail;
	}
	if (t->conf->client_cert != NULL) {
		if (SSL_CTX_use_certificate_chain_file(ctx, t->conf->client_cert) != 1) {
			what = "client_cert";
			file = t->conf->client_cert;
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, t->conf->client_key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			what = "client_key";
			file = t->conf->client_key;
			goto fail;
		}
	}
	return ctx;
fail:
	ERR_error_string_n(ERR_get_error(), err, sizeof(err));
	log_warnx("%s: cannot set up TLS: %s%s%s: %s", t->conf->name, what, file ? " " : "",
		  file ? file : "", err);
	SSL_CTX_free(ctx);
	return NULL;
}

static struct lws_vhost *
vhost_for(struct transport *tp, const struct tp_target *t)
{
	struct lws_context_creation_info info;
	char *key;
	struct lws_vhost *vh;

	if (!t->conf->tls)
		return tp->plain_vhost;
	xasprintf(&key, "%s|%s|%s|%d|%s", t->conf->ca_file ? t->conf->ca_file : "",
		  t->conf->client_cert ? t->conf->client_cert : "", t->conf->client_key ? t->conf->client_key : "",
		  t->conf->tls_verify, t->conf->tls_stamp ? t->conf->tls_stamp : "");
	struct tls_vhost *v;
	SLIST_FOREACH (v, &tp->tls_vhosts, entry) {
		if (strcmp(v->key, key) == 0) {
			free(key);
			return v->vh;
		}
	}
	SSL_CTX *ssl_ctx = tls_ctx_new(t);
	if (ssl_ctx == NULL) {
		free(key);
		return NULL;
	}
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.provided_client_ssl_ctx = ssl_ctx;
	/* lws keeps the name pointer for the vhost's life: the key is ours
	 * until then. */
	info.vhost_name = key;
	vh = lws_create_vhost(tp->ctx, &info);
	if (vh == NULL) {
		log_warnx("%s: cannot create a websocket vhost for TLS", t->conf->name);
		SSL_CTX_free(ssl_ctx);
		free(key);
		return NULL;
	}
	v = xcalloc(1, sizeof(*v));
	v->key = key;
	v->vh = vh;
	v->ssl_ctx = ssl_ctx;
	SLIST_INSERT_HEAD(&tp->tls_vhosts, v, entry);
	return vh;
}

static void
do_connect(struct transport *tp, struct tp_cmd *cmd)
{
	struct tp_link *l = xcalloc(1, sizeof(*l));
	struct lws_client_connect_info ci;
	struct tp_target *t = cmd->target;

	cmd->target = NULL;
	l->tp = tp;
	l->id = cmd->id;
	l->gen = cmd->gen;
	l->target = t;
	STAILQ_INIT(&l->out);
	LIST_INSERT_HEAD(&tp->links, l, entry);
	if (cmd->id >= tp->nby_id) {
		size_t n = cmd->id + 16;
		tp->by_id = xrealloc(tp->by_id, n * sizeof(*tp->by_id));
		memset(tp->by_id + tp->nby_id, 0, (n - tp->nby_id) * sizeof(*tp->by_id));
		tp->nby_id = n;
	}
	if (tp->by_id[cmd->id] != NULL && tp->by_id[cmd->id] != l) {
		/* An older socket of this connection: it is no longer wanted. */
		struct tp_link *old = tp->by_id[cmd->id];
		if (old->wsi)
			lws_set_timeout(old->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		link_finish(old, 1000, "replaced", 0);
	}
	tp->by_id[cmd->id] = l;

	memset(&ci, 0, sizeof(ci));
	ci.context = tp->ctx;
	ci.vhost = vhost_for(tp, t);
	if (ci.vhost == NULL) {
		link_finish(l, 1015, "TLS setup failed", 0);
		return;
	}
	ci.address = t->address;
	ci.port = t->conf->port;
	ci.path = t->conf->request_path;
	ci.host = t->conf->host_header;
	ci.protocol = t->conf->subprotocols;
	ci.local_protocol_name = "phxd";
	ci.opaque_user_data = l;
	ci.pwsi = &l->wsi;
	if (t->conf->tls) {
		ci.ssl_connection = LCCSCF_USE_SSL;
		if (!t->conf->tls_verify)
			ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
					     LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
					     LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
		else if (t->conf->ip_literal)
			/* lws checks the Host header cut at its first ':' as a DNS
			 * name ("[" for [::1]:4000); the address is checked against
			 * the certificate's IP entries in the verify callback. */
			ci.ssl_connection |= LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
	}
	if (lws_client_connect_via_info(&ci) == NULL && !l->done)
		link_finish(l, 1006, "cannot start the connection", 0);
}

static struct tp_link *
link_of(struct transport *tp, const struct tp_cmd *cmd)
{
	struct tp_link *l = cmd->id < tp->nby_id ? tp->by_id[cmd->id] : NULL;

	return l != NULL && l->gen == cmd->gen && !l->done ? l : NULL;
}

static void
run_commands(struct transport *tp)
{
	struct tp_cmd_list cmds = STAILQ_HEAD_INITIALIZER(cmds);
	struct tp_cmd *cmd;
	bool stopping;

	pthread_mutex_lock(&tp->lock);
	STAILQ_CONCAT(&cmds, &tp->cmds);
	stopping = tp->stopping;
	pthread_mutex_unlock(&tp->lock);

	while ((cmd = STAILQ_FIRST(&cmds)) != NULL) {
		struct tp_link *l;
		STAILQ_REMOVE_HEAD(&cmds, entry);
		switch (cmd->kind) {
		case CMD_CONNECT:
			if (!stopping)
				do_connect(tp, cmd);
			break;
		case CMD_SEND:
			l = link_of(tp, cmd);
			if (l == NULL || !l->established || l->close_code)
				break;
			if (l->out_bytes + cmd->len > SEND_QUEUE_MAX) {
				/* The server stopped reading: drop the socket rather
				 * than grow; the session reconnects and fails what
				 * awaited a reply. */
				log_warnx("%s: more than %u bytes queued for a server that does not "
					  "read; closing", l->target->conf->name, SEND_QUEUE_MAX);
				l->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION;
				snprintf(l->close_reason, sizeof(l->close_reason), "send queue full");
				lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK, 2);
				lws_callback_on_writable(l->wsi);
				break;
			}
			l->out_bytes += cmd->len;
			STAILQ_INSERT_TAIL(&l->out, cmd, entry);
			lws_callback_on_writable(l->wsi);
			cmd = NULL;
			break;
		case CMD_CLOSE:
			l = link_of(tp, cmd);
			if (l == NULL)
				break;
			if (l->established && l->wsi) {
				l->close_code = cmd->code;
				memcpy(l->close_reason, cmd->reason, sizeof(l->close_reason));
				lws_callback_on_writable(l->wsi);
			} else {
				if (l->wsi)
					lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK,
							LWS_TO_KILL_ASYNC);
				link_finish(l, cmd->code, cmd->reason, 0);
			}
			break;
		case CMD_RESUME:
			log_debug("websocket: the main thread caught up; resuming reads");
			LIST_FOREACH (l, &tp->links, entry) {
				if (l->paused && l->wsi && !l->done) {
					l->paused = false;
					lws_rx_flow_control(l->wsi, 1);
				}
			}
			break;
		}
		if (cmd) {
			if (cmd->target)
				target_free(cmd->target);
			free(cmd);
		}
	}
}

/* Frames written in one go leave as few segments as they fill: corked
 * while the batch is written, flushed as soon as it is (no delay added). */
static void
cork(struct tp_link *l, int on)
{
	int fd = lws_get_socket_fd(l->wsi);

	if (fd >= 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

static int
write_some(struct tp_link *l)
{
	struct tp_cmd *first = STAILQ_FIRST(&l->out);
	bool batch = first != NULL && STAILQ_NEXT(first, entry) != NULL;
	int rc = 0;

	if (batch)
		cork(l, 1);
	for (int i = 0; i < WRITES_PER_WRITEABLE && !STAILQ_EMPTY(&l->out); i++) {
		struct tp_cmd *c = STAILQ_FIRST(&l->out);
		int n = lws_write(l->wsi, c->buf + LWS_PRE, c->len,
				  c->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
		if (n < (int)c->len) {
			rc = -1;
			break;
		}
		STAILQ_REMOVE_HEAD(&l->out, entry);
		l->out_bytes -= c->len;
		free(c);
		if (lws_send_pipe_choked(l->wsi))
			break;
	}
	if (batch)
		cork(l, 0);
	if (rc == 0 && (!STAILQ_EMPTY(&l->out) || l->close_code))
		lws_callback_on_writable(l->wsi);
	return rc;
}

static int
receive(struct tp_link *l, struct lws *wsi, const void *in, size_t len)
{
	if (lws_is_first_fragment(wsi)) {
		l->rx_len = 0;
		l->rx_binary = lws_frame_is_binary(wsi);
	}
	if (l->close_code)
		return 0;	/* closing: the rest is not wanted */
	if (l->rx_len + len > l->target->conf->max_message) {
		/* Close from WRITEABLE: returning -1 here, mid-message, upsets
		 * the lws 4.1 parser (it overruns its rx buffer). */
		log_warnx("%s: incoming message larger than max_message_bytes (%u); closing",
			  l->target->conf->name, l->target->conf->max_message);
		l->close_code = LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE;
		snprintf(l->close_reason, sizeof(l->close_reason), "message too big");
		l->rx_len = 0;
		lws_callback_on_writable(wsi);
		return 0;
	}
	bool complete = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
	if (complete && l->rx_len == 0) {
		/* the whole message in one piece: straight into the slab */
		struct tp_event *ev = event_record(l->tp, TP_FRAME, l, len);
		ev->binary = l->rx_binary;
		memcpy(ev->data, in, len);
		return 0;
	}
	if (l->rx_len + len > l->rx_cap) {
		l->rx_cap = l->rx_len + len > 2 * l->rx_cap ? l->rx_len + len : 2 * l->rx_cap;
		l->rx = xrealloc(l->rx, l->rx_cap);
	}
	memcpy(l->rx + l->rx_len, in, len);
	l->rx_len += len;
	if (!complete)
		return 0;
	struct tp_event *ev = event_record(l->tp, TP_FRAME, l, l->rx_len);
	ev->binary = l->rx_binary;
	memcpy(ev->data, l->rx, l->rx_len);
	l->rx_len = 0;
	return 0;
}

/* The leaf certificate of a server addressed by IP must name that IP.
 * Returns what lws wants: 0 to accept, 1 to fail the handshake. */
static int
verify_ip(struct tp_link *l, X509_STORE_CTX *ctx, int preverify_ok)
{
	X509 *cert;

	if (l != NULL && !preverify_ok)
		snprintf(l->tls_error, sizeof(l->tls_error), "%s",
			 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	if (l == NULL || !l->target->conf->tls_verify || !l->target->conf->ip_literal || !preverify_ok ||
	    X509_STORE_CTX_get_error_depth(ctx) != 0)
		return 0;
	cert = X509_STORE_CTX_get_current_cert(ctx);
	if (cert != NULL && X509_check_ip_asc(cert, l->target->address, 0) == 1)
		return 0;
	log_warnx("%s: the server's certificate does not name the address %s", l->target->conf->name,
		  l->target->address);
	snprintf(l->tls_error, sizeof(l->tls_error), "the certificate does not name %s",
		 l->target->address);
	X509_STORE_CTX_set_error(ctx, X509_V_ERR_IP_ADDRESS_MISMATCH);
	return 1;
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct transport *tp = lws_context_user(lws_get_context(wsi));
	struct tp_link *l = lws_get_opaque_user_data(wsi);

	(void)user;
	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		run_commands(tp);
		return 0;
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
		unsigned char **p = in, *end = *p + len;
		if (l == NULL)
			return 0;
		for (size_t i = 0; i < l->target->conf->nheaders; i++) {
			const struct conf_kv *h = &l->target->conf->headers[i];
			char name[256];	/* header names are shorter than a config line */
			snprintf(name, sizeof(name), "%s:", h->key);
			if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
							(const unsigned char *)h->value,
							(int)strlen(h->value), p, end))
				return -1;
		}
		return 0;
	}
	case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
		return verify_ip(l, user, (int)len);
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (l == NULL || l->done)
			return -1;
		l->established = true;
		post_simple(l, TP_OPEN, 0, NULL, 0)->no_subprotocol = l->no_subprotocol;
		return 0;
	case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
		/* The response headers, still there: a server that ignores the
		 * auth token (Phoenix before 1.8) chooses no subprotocol. */
		if (l != NULL)
			l->no_subprotocol = l->target->conf->subprotocols != NULL &&
					    lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL) <= 0;
		return 0;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
		if (l == NULL)
			return 0;
		int status = (int)lws_http_client_http_response(wsi);
		char why[128];
		if (status >= 300)
			snprintf(why, sizeof(why), "handshake answered HTTP %d", status);
		else if (l->tls_error[0])
			/* lws says "error:00000001:lib(0)"; the verify step knew */
			snprintf(why, sizeof(why), "TLS: %s", l->tls_error);
		else
			snprintf(why, sizeof(why), "%s", in ? (const char *)in : "connection failed");
		link_finish(l, 1006, why, status >= 300 ? status : 0);
		return 0;
	}
	case LWS_CALLBACK_CLIENT_RECEIVE:
		/* A socket we gave up on is being killed; never -1 mid-message. */
		if (l == NULL || l->done)
			return 0;
		return receive(l, wsi, in, len);
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (l == NULL || l->done)
			return -1;
		if (!STAILQ_EMPTY(&l->out) && write_some(l) < 0)
			return -1;
		if (l->close_code && STAILQ_EMPTY(&l->out)) {
			lws_close_reason(wsi, (enum lws_close_status)l->close_code,
					 (unsigned char *)l->close_reason, strlen(l->close_reason));
			link_finish(l, l->close_code, l->close_reason, 0);
			return -1;
		}
		return 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (l != NULL && len >= 2) {
			const unsigned char *b = in;
			l->peer_code = b[0] << 8 | b[1];
			copy_reason(l->peer_reason, sizeof(l->peer_reason), (const char *)in + 2,
				    len - 2);
		}
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		/* Some failures (a TLS handshake the server ends, say) destroy
		 * the wsi without CLIENT_CONNECTION_ERROR: never keep a pointer
		 * to a wsi that is gone. */
		if (l != NULL && !l->done)
			link_finish(l, 1006, l->established ? "connection lost" : "connection failed", 0);
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (l != NULL) {
			char why[160];
			if (l->peer_code)
				snprintf(why, sizeof(why), "server closed with %d%s%s", l->peer_code,
					 l->peer_reason[0] ? ": " : "", l->peer_reason);
			else
				snprintf(why, sizeof(why), "connection lost");
			link_finish(l, l->peer_code ? l->peer_code : 1006, why, 0);
		}
		return 0;
	default:
		return 0;
	}
}


static void
stop_tick(lws_sorted_usec_list_t *sul)
{
	struct transport *tp = lws_container_of(sul, struct transport, stop_sul);

	lws_sul_schedule(tp->ctx, 0, &tp->stop_sul, stop_tick, 50 * LWS_US_PER_MS);
}

static bool
should_exit(struct transport *tp)
{
	bool stopping;
	uint64_t deadline;

	pthread_mutex_lock(&tp->lock);
	stopping = tp->stopping;
	deadline = tp->stop_deadline_us;
	pthread_mutex_unlock(&tp->lock);
	if (!stopping)
		return false;
	/* lws_service() may sleep long; a tick keeps the deadline honest. */
	if (!tp->stop_tick_armed) {
		tp->stop_tick_armed = true;
		stop_tick(&tp->stop_sul);
	}
	struct tp_link *l;
	LIST_FOREACH (l, &tp->links, entry)
		if (!l->done && (uint64_t)lws_now_usecs() < deadline)
			return false;
	return true;
}

/* Proof of life for the watchdog: the service loop runs this every 250 ms
 * however quiet the sockets are. */
static void
alive_tick(lws_sorted_usec_list_t *sul)
{
	struct transport *tp = lws_container_of(sul, struct transport, alive_sul);

	__atomic_add_fetch(&tp->alive, 1, __ATOMIC_RELAXED);
	lws_sul_schedule(tp->ctx, 0, &tp->alive_sul, alive_tick, 250 * LWS_US_PER_MS);
}

unsigned long
transport_alive_ticks(struct transport *tp)
{
	return __atomic_load_n(&tp->alive, __ATOMIC_RELAXED);
}

static void *
thread_main(void *arg)
{
	struct transport *tp = arg;

	alive_tick(&tp->alive_sul);
	while (!should_exit(tp)) {
		if (lws_service(tp->ctx, 0) < 0)
			break;
		flush_events(tp);
		reap_links(tp);
	}
	struct tp_link *l;
	LIST_FOREACH (l, &tp->links, entry)
		if (!l->done)
			link_finish(l, 1001, "phxd stopping", 0);
	flush_events(tp);
	reap_links(tp);
	return NULL;
}

bool
transport_start(struct transport *tp)
{
	struct lws_context_creation_info info;
	sigset_t all, old;
	int rc;

	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.user = tp;
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.timeout_secs = 10;
	info.connect_timeout_secs = 10;
	/* The handshake is built here: long params and headers (a bearer
	 * token of a few KiB) must fit. */
	info.pt_serv_buf_size = PHXD_HANDSHAKE_MAX;
	tp->ctx = lws_create_context(&info);
	if (tp->ctx == NULL) {
		log_warnx("cannot create the websocket context");
		return false;
	}
	info.vhost_name = "plain";
	/* No TLS context for plain ws:// (each wss:// target gets its own
	 * vhost): building one costs more than the rest of the start. */
	info.options &= ~(uint64_t)LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	tp->plain_vhost = lws_create_vhost(tp->ctx, &info);
	if (tp->plain_vhost == NULL) {
		log_warnx("cannot create the websocket client vhost");
		return false;
	}
	/* Only the libevent thread takes signals. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&tp->thread, NULL, thread_main, tp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_warnx("cannot start the websocket thread: %s", strerror(rc));
		return false;
	}
	tp->thread_started = true;
	/* Commands queued before the context existed. */
	flush_batch(tp);
	lws_cancel_service(tp->ctx);
	return true;
}

void
transport_stop(struct transport *tp, unsigned grace_ms)
{
	if (!tp->thread_started)
		return;
	flush_batch(tp);
	pthread_mutex_lock(&tp->lock);
	tp->stopping = true;
	tp->stop_deadline_us = (uint64_t)lws_now_usecs() + (uint64_t)grace_ms * 1000;
	pthread_mutex_unlock(&tp->lock);
	lws_cancel_service(tp->ctx);
	pthread_join(tp->thread, NULL);
	tp->thread_started = false;
}

static void
target_free(struct tp_target *t)
{
	if (t == NULL)
		return;
	config_conn_free(t->conf);
	free(t->address);
	free(t);
}

static void
free_cmds(struct tp_cmd_list *list)
{
	struct tp_cmd *c;

	while ((c = STAILQ_FIRST(list)) != NULL) {
		STAILQ_REMOVE_HEAD(list, entry);
		target_free(c->target);
		free(c);
	}
}

void
transport_free(struct transport *tp)
{
	struct tp_slab *slab;

	if (tp == NULL)
		return;
	transport_stop(tp, 0);
	if (tp->ctx)
		lws_context_destroy(tp->ctx);
	free_cmds(&tp->cmds);
	free_cmds(&tp->batch);
	while ((slab = TAILQ_FIRST(&tp->events)) != NULL) {
		TAILQ_REMOVE(&tp->events, slab, entry);
		free(slab);
	}
	struct tls_vhost *v;
	while ((v = SLIST_FIRST(&tp->tls_vhosts)) != NULL) {
		SLIST_REMOVE_HEAD(&tp->tls_vhosts, entry);
		SSL_CTX_free(v->ssl_ctx);
		free(v->key);
		free(v);
	}
	free(tp->by_id);
	event_free(tp->wake_ev);
	event_free(tp->flush_ev);
	pthread_mutex_destroy(&tp->lock);
	free(tp);
}
