/* SPDX-License-Identifier: MIT */
/*
 * One socket client: bounded incremental reads of request lines, an
 * output queue of shared lines written in batches (one writev per client
 * per loop pass), and its lifetime.
 *
 * Output policy (docs/ipc.md, "Slow readers"): responses are never
 * dropped; while a client's queue costs more than client_buffer_bytes its
 * further requests wait unread, and stream lines are dropped and counted,
 * the count reported on the stream once the queue has drained to half.
 * A client whose queue holds anything it has not read for client_stall_ms,
 * or whose responses alone pass four times the cap, is cut off with a
 * reason.
 */
#include "ipc_int.h"

#include "daemon/log.h"
#include "daemon/xmalloc.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define READ_MIN 4096		/* an idle client's input buffer */
#define READ_MAX 65536		/* the most one read takes */
#define WRITE_BATCH 256		/* lines per writev */
#define LINGER_MS 2000

static void client_flush(struct ipc_client *c);
static void write_out(struct ipc_client *c);
static void process_lines(struct ipc_client *c);
static void client_unref(struct ipc_client *c);

/* Nothing to write, to answer or to keep: a half-closed client is done. */
static bool
idle(const struct ipc_client *c)
{
	return c->out_count == 0 && c->npending == 0 && c->nsubs == 0 && c->nholds == 0;
}

static size_t
out_cap(const struct ipc_client *c)
{
	return c->srv->d->conf->client_buffer;
}

static struct ipc_out_item *
out_at(struct ipc_client *c, size_t i)
{
	return &c->out[(c->out_head + i) % c->out_cap];
}

static size_t
item_cost(const struct ipc_out_item *it)
{
	return it->tag_len + it->line->len + IPC_ITEM_COST;
}

/* When a client's output last moved, stamped once per copy written: the
 * coarse clock costs a quarter of the precise one, and it lags by at most a
 * tick, which a stall of client_stall_ms (100 ms at least) cannot notice.
 * It never runs ahead of phxd_now_ms(), so the stall check cannot wrap. */
static uint64_t
progress_stamp_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Output is written once a loop pass. Under a wide fan-out a pass often
 * carries one message, so every subscriber costs a write per message;
 * when the last pass wrote to COALESCE_CLIENTS or more and carried more
 * than a line per client (messages come faster than passes), the next
 * waits (a utimer: the base's timers are whole milliseconds) so that the
 * writes carry what came meanwhile: COALESCE_US after it, or as long as
 * that pass took when it took longer (up to COALESCE_MAX_US). Writing
 * then takes at most about half the daemon's time, whatever the fan-out,
 * and a message waits at most about one pass longer than it would have
 * anyway. A pass of one line a client says messages come slower than
 * passes: waiting would only delay the next one.
 */
#define COALESCE_CLIENTS 32
#define COALESCE_US 250
#define COALESCE_MAX_US 2000

static void
mark_dirty(struct ipc_client *c)
{
	struct ipc_server *srv = c->srv;

	if (c->dirty)
		return;
	/* Another dirty client: the flush that writes it is already due. */
	bool due = !TAILQ_EMPTY(&srv->dirty);
	c->dirty = true;
	TAILQ_INSERT_TAIL(&srv->dirty, c, dirty_entry);
	if (due || srv->window.armed || event_pending(srv->flush_ev, EV_TIMEOUT, NULL))
		return;
	uint64_t since = utimer_now_us() - srv->last_flush_us;
	if (since < srv->flush_window_us &&
	    utimer_arm(&srv->window, srv->flush_window_us - since))
		return;
	event_active(srv->flush_ev, EV_TIMEOUT, 0);
}

static void
out_push(struct ipc_client *c, struct ipc_line *l, uint64_t sub, uint32_t tag_len)
{
	if (c->out_count == c->out_cap) {
		size_t ncap = c->out_cap ? 2 * c->out_cap : 16;
		struct ipc_out_item *n = xcalloc(ncap, sizeof(*n));
		for (size_t i = 0; i < c->out_count; i++)
			n[i] = *out_at(c, i);
		free(c->out);
		c->out = n;
		c->out_cap = ncap;
		c->out_head = 0;
	}
	struct ipc_out_item *it = &c->out[(c->out_head + c->out_count) % c->out_cap];
	it->line = l;
	it->sub = sub;
	it->tag_len = tag_len;
	l->refs++;
	c->out_count++;
	c->out_bytes += item_cost(it);
	if (c->out_count == 1)
		c->last_progress_ms = progress_stamp_ms();
	if (!c->read_paused && c->out_bytes > out_cap(c) && !c->dead) {
		c->read_paused = true;
		event_del(c->read_ev);
	}
	mark_dirty(c);
}

static void
out_pop(struct ipc_client *c)
{
	struct ipc_out_item *it = out_at(c, 0);

	c->out_bytes -= item_cost(it);
	ipc_line_unref(it->line);
	c->out_head = (c->out_head + 1) % c->out_cap;
	c->out_count--;
	c->out_head_off = 0;
	/* A queue a burst grew goes back to nothing once it is written. */
	if (c->out_count == 0 && c->out_cap > 256) {
		free(c->out);
		c->out = NULL;
		c->out_cap = 0;
		c->out_head = 0;
	}
}

/* Cut off: the reason goes last, and the client gets it if it reads. */
static void
cut_off(struct ipc_client *c, const char *what)
{
	char text[256];
	int n;

	log_warnx("ipc client pid %ld uid %ld: %s; disconnecting it", (long)c->pid, (long)c->uid,
		  what);
	n = snprintf(text, sizeof(text),
		     "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n",
		     PHXD_E_BUFFER_FULL, what);
	struct ipc_line *l = ipc_line_new((size_t)n);
	memcpy(l->data, text, (size_t)n);
	l->len = (size_t)n;
	out_push(c, l, 0, 0);
	ipc_line_unref(l);
	ipc_client_lost(c, NULL, true);
}

/* Before giving up room, give the kernel what it takes now: a burst can
 * outrun the loop's own writes to a client that reads. */
static bool
has_room(struct ipc_client *c, size_t cost, size_t cap)
{
	if (c->out_bytes + cost <= cap)
		return true;
	/* Not again while the socket is known to be full: a client that
	 * stopped reading would cost a failed writev per line. */
	if (!event_pending(c->write_ev, EV_WRITE, NULL))
		write_out(c);
	return !c->dead && c->out_bytes + cost <= cap;
}

void
ipc_client_send(struct ipc_client *c, struct ipc_line *l)
{
	if (c->dead)
		return;
	if (!has_room(c, l->len + IPC_ITEM_COST, 4 * (size_t)out_cap(c))) {
		if (c->dead)
			return;
		char what[160];
		snprintf(what, sizeof(what),
			 "%zu bytes of responses unread (4 x client_buffer_bytes)", c->out_bytes);
		cut_off(c, what);
		return;
	}
	out_push(c, l, 0, 0);
}

bool
ipc_client_stream(struct ipc_client *c, struct ipc_sub *s, struct ipc_line *l)
{
	if (c->dead)
		return false;
	if (!has_room(c, s->tag_len + l->len + IPC_ITEM_COST, out_cap(c))) {
		if (c->dead)
			return false;
		s->dropped++;
		c->drops = true;
		if (!c->warned_drops) {
			c->warned_drops = true;
			log_warnx("ipc client pid %ld uid %ld reads slower than its subscriptions "
				  "deliver: dropping lines (client_buffer_bytes %zu), counted on "
				  "its stream",
				  (long)c->pid, (long)c->uid, out_cap(c));
		}
		return false;
	}
	out_push(c, l, s->id, s->tag_len);
	return true;
}

/* ---- writing -------------------------------------------------------------- */

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	client_flush(arg);
}

/* After output drained: tell about drops, take requests again, or close a
 * half-closed client that has nothing left to wait for. */
static void
after_progress(struct ipc_client *c)
{
	if (c->dead) {
		if (c->out_count == 0)
			event_active(c->reap_ev, EV_TIMEOUT, 0);
		return;
	}
	if (c->drops && c->out_bytes <= out_cap(c) / 2) {
		c->drops = false;
		c->warned_drops = false;
		ipc_subs_report_drops(c);
	}
	if (c->read_paused && c->out_bytes <= out_cap(c) / 2) {
		c->read_paused = false;
		process_lines(c);
		if (!c->dead && !c->eof && !c->read_paused)
			event_add(c->read_ev, NULL);
	}
	if (c->eof && idle(c))
		ipc_client_lost(c, "half-closed, every request answered", false);
}

/* A stream line's tag: the client's kept one (that of the line at the
 * head of its queue when the write began: a client mostly follows one
 * subscription), or encoded into scratch. */
static const char *
item_tag(const struct ipc_client *c, const struct ipc_out_item *it, char *scratch)
{
	if (it->sub == c->tag_sub)
		return c->tag;
	ipc_encode_tag(it->sub, scratch);
	return scratch;
}

/* Writes what the socket takes now; never runs anything else. */
static void
write_out(struct ipc_client *c)
{
	struct iovec iov[2 * WRITE_BATCH];
	char tags[WRITE_BATCH][IPC_TAG_SIZE];

	const struct ipc_out_item *head = c->out_count > 0 ? out_at(c, 0) : NULL;
	if (head != NULL && head->tag_len && head->sub != c->tag_sub) {
		c->tag_sub = head->sub;
		ipc_encode_tag(c->tag_sub, c->tag);
	}
	while (c->out_count > 0 && c->fd >= 0) {
		int n = 0;
		size_t skip = c->out_head_off;
		for (size_t i = 0; i < c->out_count && i < WRITE_BATCH; i++) {
			struct ipc_out_item *it = out_at(c, i);
			if (it->tag_len) {
				const char *tag = item_tag(c, it, tags[i]);
				if (skip < it->tag_len) {
					iov[n].iov_base = (char *)tag + skip;
					iov[n++].iov_len = it->tag_len - skip;
					skip = 0;
				} else {
					skip -= it->tag_len;
				}
			}
			iov[n].iov_base = it->line->data + skip;
			iov[n++].iov_len = it->line->len - skip;
			skip = 0;
		}
		ssize_t w = writev(c->fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				event_add(c->write_ev, NULL);
				return;
			}
			ipc_client_lost(c, "write error", false);
			/* What it was sent can never arrive. */
			while (c->out_count)
				out_pop(c);
			event_active(c->reap_ev, EV_TIMEOUT, 0);
			return;
		}
		c->last_progress_ms = progress_stamp_ms();
		size_t left = (size_t)w;
		while (left > 0) {
			struct ipc_out_item *it = out_at(c, 0);
			size_t rest = it->tag_len + it->line->len - c->out_head_off;
			if (left < rest) {
				c->out_head_off += left;
				break;
			}
			left -= rest;
			out_pop(c);
		}
	}
}

static void
client_flush(struct ipc_client *c)
{
	write_out(c);
	after_progress(c);
}

void
ipc_client_flush_all(struct ipc_server *srv)
{
	struct ipc_client *c;
	size_t n = 0, lines = 0;
	uint64_t start = utimer_now_us();

	while ((c = TAILQ_FIRST(&srv->dirty)) != NULL) {
		TAILQ_REMOVE(&srv->dirty, c, dirty_entry);
		c->dirty = false;
		c->refs++;
		size_t before = c->out_count;
		client_flush(c);
		lines += before - c->out_count;
		client_unref(c);
		n++;
	}
	srv->last_flush_us = utimer_now_us();
	uint64_t window = srv->last_flush_us - start;	/* as long as it took */
	if (window < COALESCE_US)
		window = COALESCE_US;
	if (window > COALESCE_MAX_US)
		window = COALESCE_MAX_US;
	srv->flush_window_us = n >= COALESCE_CLIENTS && lines > n ? window : 0;
	if (srv->flush_window_us)
		srv->write_windows++;
}

/* A read of 0 bytes means the client shut its sending side: it may still
 * read (printf ... | socat), or be gone entirely. The socket says which. */
static bool
peer_gone(const struct ipc_client *c)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR));
}

void
ipc_client_check_stalls(struct ipc_server *srv, uint64_t now)
{
	struct ipc_client *c;
	unsigned stall = srv->d->conf->client_stall_ms;

	TAILQ_FOREACH (c, &srv->clients, entry) {
		if (!c->dead && c->eof && peer_gone(c)) {
			ipc_client_lost(c, "closed the connection", false);
			continue;
		}
		if (c->dead || c->out_count == 0 || now - c->last_progress_ms < stall)
			continue;
		char what[160];
		snprintf(what, sizeof(what), "read none of its %zu queued bytes for %u ms",
			 c->out_bytes, stall);
		cut_off(c, what);
	}
}

/* ---- reading -------------------------------------------------------------- */

static void
too_long(struct ipc_client *c, size_t max)
{
	struct ipc_request r = { .d = c->srv->d, .c = c, .id = json_null() };

	ipc_reply_error(&r, PHXD_E_LINE_TOO_LONG, "request line longer than %zu bytes", max);
	ipc_client_lost(c, "line too long", true);
}

/* Runs every complete line in the input; each byte is scanned once. */
static void
process_lines(struct ipc_client *c)
{
	size_t max = c->srv->d->conf->max_line;

	c->refs++;
	c->srv->d->tq.now = phxd_now_ms();
	while (!c->dead && !c->read_paused && c->scan_off < c->in_len) {
		char *line = c->in + c->in_start;
		char *nl = memchr(line + c->scan_off, '\n', c->in_len - c->scan_off);
		if (nl == NULL) {
			c->scan_off = c->in_len;
			if (c->in_len > max)
				too_long(c, max);
			break;
		}
		size_t len = (size_t)(nl - line);
		if (len > max) {
			too_long(c, max);
			break;
		}
		size_t n = len;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		/* Blank lines are keep-alives. */
		bool blank = true;
		for (size_t i = 0; i < n && blank; i++)
			blank = line[i] == ' ' || line[i] == '\t';
		c->in_start += len + 1;
		c->in_len -= len + 1;
		c->scan_off = 0;
		if (!blank)
			ipc_dispatch_line(c, line, n);
	}
	if (c->in_len == 0)
		c->in_start = 0;
	client_unref(c);
}

/* Room for the next read: a small buffer for small requests, doubling for
 * long lines (up to a line's limit) and for bursts that fill each read. */
static size_t
input_room(struct ipc_client *c)
{
	size_t limit = c->srv->d->conf->max_line + 2 * READ_MAX;
	size_t need = c->in_len + READ_MIN;

	if (c->in_start > 0 && c->in_start + need > c->in_cap) {
		memmove(c->in, c->in + c->in_start, c->in_len);
		c->in_start = 0;
	}
	if (c->in_full && c->in_cap < READ_MAX)
		need = 2 * c->in_cap;
	if (need > c->in_cap) {
		size_t ncap = 2 * c->in_cap > need ? 2 * c->in_cap : need;
		c->in_cap = ncap < limit ? ncap : limit > need ? limit : need;
		c->in = xrealloc(c->in, c->in_cap);
	}
	size_t room = c->in_cap - c->in_start - c->in_len;
	return room > READ_MAX ? READ_MAX : room;
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_client *c = arg;
	ssize_t n;

	(void)what;
	c->srv->reads++;
	if (c->dead || c->read_paused)
		return;
	size_t room = input_room(c);
	n = read(fd, c->in + c->in_start + c->in_len, room);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		ipc_client_lost(c, "read error", false);
		return;
	}
	if (n == 0) {
		/* Half-closed (printf ... | socat): answer what it asked. */
		c->eof = true;
		event_del(c->read_ev);
		process_lines(c);
		if (!c->dead && (idle(c) ||
				 peer_gone(c)))
			ipc_client_lost(c, "closed the connection", false);
		return;
	}
	c->in_full = (size_t)n == room;
	c->in_len += (size_t)n;
	c->spoke = true;
	process_lines(c);
	/* An idle client keeps a small buffer. */
	if (c->in_len == 0 && c->in_cap > 4 * READ_MIN && !c->in_full) {
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
}

/* ---- lifetime ------------------------------------------------------------- */

static void
client_free(struct ipc_client *c)
{
	struct ipc_server *srv = c->srv;

	while (c->out_count)
		out_pop(c);
	free(c->out);
	if (c->dirty)
		TAILQ_REMOVE(&srv->dirty, c, dirty_entry);
	TAILQ_REMOVE(&srv->clients, c, entry);
	srv->nclients--;
	ipc_listen_client_gone(srv, c->uid);
	if (!srv->d->stopping)
		phxd_notify_status(srv->d);
	event_free(c->read_ev);
	event_free(c->write_ev);
	event_free(c->reap_ev);
	free(c->in);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

static void
client_unref(struct ipc_client *c)
{
	if (--c->refs == 0)
		client_free(c);
}

/* Runs from the loop, never under a caller: what the client asked for is
 * cancelled, its subscriptions end, its socket closes. */
static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_client *c = arg;
	struct ipc_pending *p;

	(void)fd;
	(void)what;
	if (c->fd < 0)
		return;	/* reaped already; pending answers hold the struct */
	c->refs++;
	while ((p = TAILQ_FIRST(&c->pendings)) != NULL) {
		TAILQ_REMOVE(&c->pendings, p, entry);
		c->npending--;
		if (p->req)
			session_cancel(p->req);
		if (p->storing)
			outbox_forget(p->storing);
		json_decref(p->id);
		free(p);
		c->refs--;
	}
	ipc_subs_drop_client(c);
	ipc_holds_release(c, true);
	event_del(c->read_ev);
	event_del(c->write_ev);
	close(c->fd);
	c->fd = -1;
	while (c->out_count)
		out_pop(c);
	c->refs--;	/* the one the server held */
	client_unref(c);
}

void
ipc_client_lost(struct ipc_client *c, const char *why, bool linger)
{
	struct timeval delay = { LINGER_MS / 1000, (LINGER_MS % 1000) * 1000 };

	if (c->dead)
		return;
	c->dead = true;
	if (why)
		log_debug("ipc client pid %ld: %s", (long)c->pid, why);
	event_del(c->read_ev);
	/* A client cut off lingers, so it can still read what it was sent
	 * and the reason at its end; the reap comes when that is written. */
	if (linger && c->out_count > 0)
		event_add(c->reap_ev, &delay);
	else
		event_active(c->reap_ev, EV_TIMEOUT, 0);
}

struct ipc_client *
ipc_client_new(struct ipc_server *srv, int fd, uid_t uid, gid_t gid, pid_t pid)
{
	struct ipc_client *c = xcalloc(1, sizeof(*c));
	struct event_base *base = srv->d->base;

	c->srv = srv;
	c->fd = fd;
	c->refs = 1;
	c->id = ++srv->next_client_id;
	c->uid = uid;
	c->gid = gid;
	c->pid = pid;
	c->accepted_ms = phxd_now_ms();
	c->read_ev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, c);
	c->write_ev = event_new(base, fd, EV_WRITE, write_cb, c);
	c->reap_ev = evtimer_new(base, reap_cb, c);
	if (c->read_ev == NULL || c->write_ev == NULL || c->reap_ev == NULL)
		fatalx("ipc: out of memory for a client");
	TAILQ_INIT(&c->subs);
	TAILQ_INIT(&c->pendings);
	SLIST_INIT(&c->holds);
	TAILQ_INSERT_TAIL(&srv->clients, c, entry);
	srv->nclients++;
	event_add(c->read_ev, NULL);
	phxd_notify_status(srv->d);
	return c;
}

/* At exit: requests the client already sent are answered (shutting_down),
 * rather than lost when closing over unread input resets the connection.
 * Bounded: at most two request lines' worth is read. */
static void
answer_unread(struct ipc_client *c, uint64_t wait_until_ms)
{
	size_t budget = 2 * (size_t)c->srv->d->conf->max_line;
	uint64_t now = phxd_now_ms();

	/* Accepted a moment ago and silent: its request is likely on the way. */
	if (!c->spoke && !c->eof && now - c->accepted_ms < 1000 && now < wait_until_ms) {
		struct pollfd pfd = { c->fd, POLLIN, 0 };
		(void)poll(&pfd, 1, (int)(wait_until_ms - now));
	}

	while (!c->dead && !c->eof && !c->read_paused && budget > 0) {
		size_t room = input_room(c);
		ssize_t n = read(c->fd, c->in + c->in_start + c->in_len, room);
		if (n <= 0)
			break;
		c->in_len += (size_t)n;
		budget -= (size_t)n < budget ? (size_t)n : budget;
		process_lines(c);
	}
}

void
ipc_client_destroy(struct ipc_client *c, uint64_t wait_until_ms)
{
	struct ipc_pending *p;

	/* At exit: what is queued goes as far as the socket takes it now. */
	if (!c->dead && c->fd >= 0) {
		answer_unread(c, wait_until_ms);
		client_flush(c);
	}
	while ((p = TAILQ_FIRST(&c->pendings)) != NULL) {
		TAILQ_REMOVE(&c->pendings, p, entry);
		json_decref(p->id);
		free(p);
	}
	ipc_subs_drop_client(c);
	ipc_holds_release(c, false);
	client_free(c);
}

struct phxd *
ipc_client_daemon(const struct ipc_client *c)
{
	return c->srv->d;
}

uint64_t
ipc_client_id(const struct ipc_client *c)
{
	return c->id;
}

/* ---- pending answers ------------------------------------------------------ */

struct ipc_pending *
ipc_pending_new(struct ipc_request *r)
{
	struct ipc_client *c = r->c;
	struct ipc_pending *p;

	if (c->npending >= r->d->conf->client_max_pending) {
		ipc_reply_error(r, PHXD_E_LIMIT, "%zu requests of this client await an answer "
				"(client_max_pending)", c->npending);
		return NULL;
	}
	p = xcalloc(1, sizeof(*p));
	p->client = c;
	p->id = json_incref(r->id);
	TAILQ_INSERT_TAIL(&c->pendings, p, entry);
	c->npending++;
	c->refs++;
	return p;
}

void
ipc_pending_track(struct ipc_pending *p, struct sess_req *h)
{
	p->req = h;
}

void
ipc_pending_track_store(struct ipc_pending *p, struct outbox_msg *m)
{
	p->storing = m;
}

/* Sends the answer of p and frees it. */
void
ipc_pending_answer(struct ipc_pending *p, struct ipc_line *l)
{
	struct ipc_client *c = p->client;

	TAILQ_REMOVE(&c->pendings, p, entry);
	c->npending--;
	json_decref(p->id);
	free(p);
	ipc_client_send(c, l);
	ipc_line_unref(l);
	if (c->eof && !c->dead && idle(c))
		ipc_client_lost(c, "half-closed, every request answered", false);
	client_unref(c);
}
