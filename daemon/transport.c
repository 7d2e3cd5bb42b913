/* SPDX-License-Identifier: MIT */
#include "transport.h"

#include "log.h"
#include "tls.h"
#include "utimer.h"
#include "xmalloc.h"

#include "protocol/base64.h"
#include "protocol/json_scan.h"
#include "protocol/ws_codec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Until the websocket is open: TCP connect, TLS, the HTTP upgrade. */
#define OPEN_TIMEOUT_MS 10000
/* After phxd sent its close frame: time for it to leave and for the server
 * to answer, before the socket is dropped anyway. */
#define LINGER_MS 1000
/* Frames queued for one server before phxd gives up on that socket. */
#define SEND_QUEUE_MAX (64u << 20)
/* Bytes read from one socket per callback: other sockets get their turn. */
#define READ_MAX (64u << 10)

/* Frames an open plain socket stages for the end of the pass (see
 * write_frame): a round trip's frame fits many times over; a pass that
 * makes more writes each full stage at once, and a socket holds one page
 * however many it wrote. */
#define STAGE_MAX 4096u

enum link_state {
	L_TLS,		/* waiting for the TLS context */
	L_CONNECTING,	/* TCP, then the TLS handshake */
	L_HANDSHAKE,	/* the upgrade request is out */
	L_OPEN,
	L_CLOSING,	/* our close frame is queued; TP_CLOSED is sent */
};

struct tp_link {
	LIST_ENTRY(tp_link) entry;	/* tp->links, or tp->dead once finished */
	struct transport *tp;
	uint32_t id, gen;
	const struct conn_conf *conf;	/* a reference */
	char *address;
	enum link_state state;
	bool done;		/* TP_CLOSED is queued; only lingering */
	bool dead;		/* to be freed by the reaper */
	bool direct;		/* plain and open: phxd writes, not the bufferevent */
	struct event *read_ev;	/* open: phxd reads, not the bufferevent */
	struct event *writable_ev;	/* TLS: a read waits for the socket to take a write */
	/* read moderation (see moderate_reads) */
	uint64_t rate_start_us;
	size_t rate_bytes;
	struct utimer pause;	/* made when first needed */
	bool dirty;		/* on tp->dirty: output to write this pass */
	TAILQ_ENTRY(tp_link) dirty_entry;
	/* frames ahead of anything in the output buffer, which is then
	 * empty: STAGE_MAX bytes, made when first needed */
	uint8_t *stage;
	size_t stage_len;
	struct tls_wait tls_wait;
	struct bufferevent *bev;
	struct event *timer;
	char key[WS_KEY_SIZE];
	char tls_error[96];	/* why the certificate was refused */
	/* a fragmented message being reassembled */
	char *msg;
	size_t msg_len, msg_cap;
	bool in_msg, msg_binary;
};

LIST_HEAD(tp_link_list, tp_link);

/* An open or close event waiting for its callback. */
struct tp_pending {
	STAILQ_ENTRY(tp_pending) entry;
	struct tp_event ev;
};

struct transport {
	struct event_base *base;
	tp_event_fn fn;
	void *ud;
	struct tls_ctxs *tls;
	struct tp_link_list links;	/* live, lingering included */
	struct tp_link_list dead;
	struct tp_link **by_id;
	size_t nby_id;
	STAILQ_HEAD(, tp_pending) pending;
	struct event *pending_ev;	/* delivers `pending` */
	TAILQ_HEAD(, tp_link) dirty;
	struct event *flush_ev;		/* writes the dirty links */
	struct event *reap_ev;		/* frees `dead` */
	bool stopping;
	struct event *stop_ev;		/* the grace deadline */
	void (*drained)(void *);
	void *drained_arg;
	/* mask keys: the kernel's random bytes, fetched a batch at a time */
	uint8_t rnd[256];	/* getrandom: up to 256 bytes are never cut short */
	size_t rnd_used;
	uint64_t read_pauses;
	uint64_t reads;		/* read callbacks run: the loop's activity */
	/* what an open socket is read into (see direct_read_cb), made when
	 * first needed; busy while its frames are handled */
	uint8_t *scratch;
	bool scratch_busy;
};

static void link_fail(struct tp_link *l, int code, const char *reason, int http_status);
static void check_drained(struct transport *tp);
static void read_directly(struct tp_link *l);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* ---- events --------------------------------------------------------------------- */

static void
deliver_pending(struct transport *tp)
{
	struct tp_pending *p;

	while ((p = STAILQ_FIRST(&tp->pending)) != NULL) {
		STAILQ_REMOVE_HEAD(&tp->pending, entry);
		tp->fn(tp->ud, &p->ev);
		free(p);
	}
}

static void
pending_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	deliver_pending(arg);
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

/* Queues an open or close event; delivered from the next loop callback
 * (or at once by the I/O callbacks), so never inside a transport_* call. */
static struct tp_event *
post(struct tp_link *l, enum tp_event_kind kind)
{
	struct tp_pending *p = xcalloc(1, sizeof(*p));

	p->ev.kind = kind;
	p->ev.id = l->id;
	p->ev.gen = l->gen;
	STAILQ_INSERT_TAIL(&l->tp->pending, p, entry);
	event_active(l->tp->pending_ev, EV_TIMEOUT, 0);
	return &p->ev;
}

/* ---- link lifetime ---------------------------------------------------------------- */

static void
link_unindex(struct tp_link *l)
{
	if (l->id < l->tp->nby_id && l->tp->by_id[l->id] == l)
		l->tp->by_id[l->id] = NULL;
}

/* Tells the session the websocket is gone; the link may linger. */
static void
link_finish(struct tp_link *l, int code, const char *reason, int http_status)
{
	if (l->done)
		return;
	l->done = true;
	link_unindex(l);
	struct tp_event *ev = post(l, TP_CLOSED);
	ev->code = code;
	ev->http_status = http_status;
	copy_reason(ev->reason, sizeof(ev->reason), reason, strlen(reason));
}

/* Drops the socket; freed from the reaper, never under its own callback. */
static void
link_kill(struct tp_link *l)
{
	if (l->dead)
		return;
	l->dead = true;
	link_unindex(l);
	if (l->dirty) {
		TAILQ_REMOVE(&l->tp->dirty, l, dirty_entry);
		l->dirty = false;
	}
	tls_wait_cancel(&l->tls_wait);
	if (l->bev != NULL)
		bufferevent_disable(l->bev, EV_READ | EV_WRITE);
	if (l->read_ev != NULL)
		event_del(l->read_ev);
	utimer_stop(&l->pause);
	if (l->writable_ev != NULL)
		event_del(l->writable_ev);
	evtimer_del(l->timer);
	LIST_REMOVE(l, entry);
	LIST_INSERT_HEAD(&l->tp->dead, l, entry);
	event_active(l->tp->reap_ev, EV_TIMEOUT, 0);
	if (l->tp->stopping)
		check_drained(l->tp);
}

static void
link_free(struct tp_link *l)
{
	if (l->read_ev != NULL)
		event_free(l->read_ev);
	utimer_free(&l->pause);
	if (l->writable_ev != NULL)
		event_free(l->writable_ev);
	if (l->bev != NULL)
		bufferevent_free(l->bev);
	event_free(l->timer);
	config_conn_free((struct conn_conf *)l->conf);
	free(l->address);
	free(l->msg);
	free(l->stage);
	free(l);
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct transport *tp = arg;
	struct tp_link *l;

	(void)fd;
	(void)what;
	while ((l = LIST_FIRST(&tp->dead)) != NULL) {
		LIST_REMOVE(l, entry);
		link_free(l);
	}
}

/* The websocket failed before or while open: event, then no socket. */
static void
link_fail(struct tp_link *l, int code, const char *reason, int http_status)
{
	link_finish(l, code, reason, http_status);
	link_kill(l);
}

static void
arm(struct tp_link *l, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(l->timer, &tv);
}

/* ---- writing ---------------------------------------------------------------------- */

static void
mask_key(struct transport *tp, uint8_t out[4])
{
	if (tp->rnd_used + 4 > sizeof(tp->rnd)) {
		/* The kernel's CSPRNG; it only blocks before it is seeded at boot. */
		if (getrandom(tp->rnd, sizeof(tp->rnd), 0) != (ssize_t)sizeof(tp->rnd))
			fatal("getrandom");
		tp->rnd_used = 0;
	}
	memcpy(out, tp->rnd + tp->rnd_used, 4);
	tp->rnd_used += 4;
}

/* What the socket has yet to take: staged, then in the output buffer. */
static size_t
queued(struct tp_link *l)
{
	return l->stage_len + evbuffer_get_length(bufferevent_get_output(l->bev));
}

/* Writes the stage; what the kernel does not take goes to the output
 * buffer, and the bufferevent writes it and reports errors. */
static void
write_stage(struct tp_link *l)
{
	size_t off = 0;

	while (off < l->stage_len) {
		ssize_t n = write(bufferevent_getfd(l->bev), l->stage + off, l->stage_len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (off < l->stage_len) {
		if (evbuffer_add(bufferevent_get_output(l->bev), l->stage + off,
				 l->stage_len - off) != 0)
			fatalx("websocket: out of memory");
		bufferevent_enable(l->bev, EV_WRITE);
	}
	l->stage_len = 0;
}

/*
 * An open plain socket with nothing waiting in its output buffer stages
 * its frames in one flat buffer that flush_cb writes with one write(2):
 * the evbuffer's reserve, commit, drain and callbacks cost more than the
 * frame on a round trip. Anything else, and a frame larger than the
 * stage, goes to the output buffer, behind what was staged.
 */
static void
write_frame(struct tp_link *l, enum ws_opcode op, const void *data, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(l->bev);
	uint8_t mask[4];

	mask_key(l->tp, mask);
	if (l->direct && !l->dirty) {
		l->dirty = true;
		TAILQ_INSERT_TAIL(&l->tp->dirty, l, dirty_entry);
		event_active(l->tp->flush_ev, EV_TIMEOUT, 0);
	}
	if (l->direct && WS_HEADER_MAX + len <= STAGE_MAX) {
		if (l->stage_len + WS_HEADER_MAX + len > STAGE_MAX)
			write_stage(l);	/* full: out now, ahead of this frame */
		if (evbuffer_get_length(out) == 0) {
			if (l->stage == NULL)
				l->stage = xmalloc(STAGE_MAX);
			uint8_t *p = l->stage + l->stage_len;
			size_t head = ws_frame_header(p, op, len, mask);
			ws_mask(p + head, data, len, mask);
			l->stage_len += head + len;
			return;
		}
	}
	if (l->stage_len > 0)
		write_stage(l);	/* nothing goes to the output buffer ahead of it */
	struct evbuffer_iovec v;
	if (evbuffer_reserve_space(out, (ev_ssize_t)(WS_HEADER_MAX + len), &v, 1) < 1)
		fatalx("websocket: out of memory");
	size_t head = ws_frame_header(v.iov_base, op, len, mask);
	ws_mask((uint8_t *)v.iov_base + head, data, len, mask);
	v.iov_len = head + len;
	evbuffer_commit_space(out, &v, 1);
}

static void
write_close(struct tp_link *l, int code, const char *reason)
{
	uint8_t body[125];
	size_t n = 0;

	if (ws_close_code_valid((unsigned)code)) {
		size_t rlen = strlen(reason);
		/* whole characters, within the control frame's 125 bytes */
		rlen = json_utf8_cut(reason, rlen > 123 ? 123 : rlen, 123);
		body[0] = (uint8_t)(code >> 8);
		body[1] = (uint8_t)code;
		memcpy(body + 2, reason, rlen);
		n = 2 + rlen;
	}
	write_frame(l, WS_CLOSE, body, n);
}

static void
linger(struct tp_link *l)
{
	l->state = L_CLOSING;
	if (!l->tp->stopping)	/* then the grace of the stop is the limit */
		arm(l, LINGER_MS);
}

/* Our close frame is queued: the session hears now, the socket goes once
 * the frame left and the server answered (or LINGER_MS passed). */
static void
link_close(struct tp_link *l, int code, const char *reason)
{
	write_close(l, code, reason);
	link_finish(l, code, reason, 0);
	linger(l);
}

/* False, and the socket dropped, when the server stopped reading: phxd
 * does not grow without bound; the session reconnects and fails what
 * awaited a reply. */
static bool
room_for(struct tp_link *l, size_t len)
{
	if (queued(l) + len <= SEND_QUEUE_MAX)
		return true;
	log_warnx("%s: more than %u bytes queued for a server that does not read; closing",
		  l->conf->name, SEND_QUEUE_MAX);
	link_fail(l, 1008, "send queue full", 0);
	return false;
}

/* ---- reading ---------------------------------------------------------------------- */

static void
protocol_error(struct tp_link *l, const char *why)
{
	log_warnx("%s: the server broke the websocket protocol (%s); closing", l->conf->name, why);
	link_close(l, 1002, "protocol error");
}

static void
deliver_frame(struct tp_link *l, const char *data, size_t len, bool binary)
{
	struct tp_event ev = {
		.kind = TP_FRAME, .id = l->id, .gen = l->gen, .binary = binary,
		.len = len, .data = data,
	};

	deliver_pending(l->tp);	/* the open comes before its frames */
	l->tp->fn(l->tp->ud, &ev);
}

static void
too_big(struct tp_link *l)
{
	log_warnx("%s: incoming message larger than max_message_bytes (%u); closing", l->conf->name,
		  l->conf->max_message);
	link_close(l, 1009, "message too big");
}

static void
on_close_frame(struct tp_link *l, const uint8_t *p, size_t len)
{
	char reason[128], why[160];
	unsigned code = 0;

	if (len == 1) {
		protocol_error(l, "a close frame of one byte");
		return;
	}
	if (len >= 2) {
		code = (unsigned)p[0] << 8 | p[1];
		if (!ws_close_code_valid(code)) {
			protocol_error(l, "an invalid close code");
			return;
		}
	}
	copy_reason(reason, sizeof(reason), len > 2 ? (const char *)p + 2 : "", len > 2 ? len - 2 : 0);
	if (code)
		snprintf(why, sizeof(why), "server closed with %u%s%s", code, reason[0] ? ": " : "",
			 reason);
	else
		snprintf(why, sizeof(why), "server closed");
	/* The answer echoes the code (RFC 6455 5.5.1). */
	write_close(l, code ? (int)code : 1000, "");
	link_finish(l, code ? (int)code : 1005, why, 0);
	linger(l);
}

/* One complete frame, header already consumed; false once the link stops
 * reading (closed, or closed by the session in the callback). */
static bool
on_frame(struct tp_link *l, const struct ws_frame *f, const uint8_t *p)
{
	size_t len = (size_t)f->len;

	switch (f->opcode) {
	case WS_TEXT:
	case WS_BINARY:
		if (l->in_msg) {
			protocol_error(l, "a new message inside a fragmented one");
			return false;
		}
		if (f->fin) {
			deliver_frame(l, (const char *)p, len, f->opcode == WS_BINARY);
			return !l->done;
		}
		l->in_msg = true;
		l->msg_binary = f->opcode == WS_BINARY;
		l->msg_len = 0;
		/* fall through */
	case WS_CONT:
		if (!l->in_msg) {
			protocol_error(l, "a continuation without a message");
			return false;
		}
		if (l->msg_len + len > l->msg_cap) {
			size_t cap = 2 * l->msg_cap > l->msg_len + len ? 2 * l->msg_cap : l->msg_len + len;
			l->msg = xrealloc(l->msg, cap);
			l->msg_cap = cap;
		}
		memcpy(l->msg + l->msg_len, p, len);
		l->msg_len += len;
		if (!f->fin)
			return true;
		l->in_msg = false;
		deliver_frame(l, l->msg, l->msg_len, l->msg_binary);
		if (l->msg_cap > READ_MAX) {	/* a big message does not pin its buffer */
			free(l->msg);
			l->msg = NULL;
			l->msg_cap = 0;
		}
		return !l->done;
	case WS_PING:
		/* a server that pings and never reads does not grow us either */
		if (!room_for(l, len))
			return false;
		write_frame(l, WS_PONG, p, len);
		return true;
	case WS_PONG:
		return true;
	case WS_CLOSE:
		on_close_frame(l, p, len);
		return false;
	}
	return true;
}

/*
 * Handles the whole frames at the start of buf[0..n) and returns the bytes
 * they took. *stop: the link reads no more (closed, or a bad frame).
 * Otherwise *need is what the next frame needs from where they end.
 */
static size_t
frames_at(struct tp_link *l, const uint8_t *buf, size_t n, size_t *need, bool *stop)
{
	size_t used = 0;

	*need = 0;
	*stop = false;
	while (!*stop) {
		struct ws_frame f;
		const char *why = NULL;
		enum ws_parse rc = ws_frame_parse(buf + used, n - used, &f, &why);
		if (rc == WS_NEED_MORE) {
			*need = n - used + 1;	/* some of the header */
			break;
		}
		if (rc == WS_BAD_FRAME) {
			protocol_error(l, why);
			*stop = true;
			break;
		}
		bool data = f.opcode == WS_TEXT || f.opcode == WS_BINARY || f.opcode == WS_CONT;
		if (data && f.len + (l->in_msg && f.opcode == WS_CONT ? l->msg_len : 0) >
				    l->conf->max_message) {
			too_big(l);
			*stop = true;
			break;
		}
		if (n - used - f.head < f.len) {
			*need = f.head + (size_t)f.len;	/* at most max_message */
			break;
		}
		*stop = !on_frame(l, &f, buf + used + f.head);
		used += f.head + (size_t)f.len;
	}
	return used;
}

/*
 * Frames are handled where they lie, in the input buffer's first chunk,
 * and drained together; one that spans chunks is first made contiguous.
 */
static void
read_frames(struct tp_link *l)
{
	struct evbuffer *in = bufferevent_get_input(l->bev);

	while (l->state == L_OPEN && !l->done) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			return;
		size_t n = v.iov_len, need;
		bool stop;
		size_t used = frames_at(l, v.iov_base, n, &need, &stop);
		if (used > 0)
			evbuffer_drain(in, used);
		if (stop)
			return;
		size_t avail = evbuffer_get_length(in);
		if (avail < need || avail == n - used)
			return;	/* the rest is on its way */
		if (need < WS_HEADER_MAX && avail >= need)
			need = avail < WS_HEADER_MAX ? avail : WS_HEADER_MAX;
		if (evbuffer_pullup(in, (ev_ssize_t)need) == NULL)
			fatalx("websocket: out of memory");
	}
}

static void
handshake_done(struct tp_link *l, const struct ws_response *r)
{
	const struct conn_conf *c = l->conf;

	if (r->status != 101) {
		char why[64];
		snprintf(why, sizeof(why), "handshake answered HTTP %d", r->status);
		link_fail(l, 1006, why, r->status >= 300 ? r->status : 0);
	} else if (!r->upgrade || !r->connection) {
		link_fail(l, 1006, "handshake: the answer is not a websocket upgrade", 0);
	} else if (!r->accept_ok) {
		link_fail(l, 1006, "handshake: wrong Sec-WebSocket-Accept", 0);
	} else if (r->protocol != NULL &&
		   !ws_protocol_offered(c->subprotocols, r->protocol, r->protocol_len)) {
		link_fail(l, 1006, "handshake: the server chose a subprotocol phxd did not offer", 0);
	} else if (r->extensions) {
		link_fail(l, 1006, "handshake: the server chose an extension phxd did not offer", 0);
	} else {
		l->state = L_OPEN;
		evtimer_del(l->timer);
		if (!c->tls && evbuffer_get_length(bufferevent_get_output(l->bev)) == 0) {
			l->direct = true;
			bufferevent_disable(l->bev, EV_WRITE);
		}
		read_directly(l);
		/* Phoenix before 1.8 ignores the auth token: it chooses no
		 * subprotocol. */
		post(l, TP_OPEN)->no_subprotocol = c->subprotocols != NULL && r->protocol == NULL;
	}
}

static void
read_handshake(struct tp_link *l)
{
	struct evbuffer *in = bufferevent_get_input(l->bev);
	size_t avail = evbuffer_get_length(in);
	if (avail == 0)
		return;
	size_t look = avail < PHXD_HANDSHAKE_MAX ? avail : PHXD_HANDSHAKE_MAX;
	const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
	struct ws_response r;

	long head = ws_response_parse(buf, look, l->key, &r);
	if (head < 0) {
		link_fail(l, 1006, "handshake: the server's answer is not HTTP", 0);
	} else if (head == 0) {
		if (avail >= PHXD_HANDSHAKE_MAX)
			link_fail(l, 1006, "handshake: the server's answer is too long", 0);
	} else {
		handshake_done(l, &r);	/* r points into the head: drained after */
		evbuffer_drain(in, (size_t)head);
	}
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct tp_link *l = arg;

	l->tp->reads++;
	if (l->dead)
		return;
	if (l->state == L_HANDSHAKE)
		read_handshake(l);
	if (l->state == L_OPEN && !l->done)
		read_frames(l);
	if (l->state == L_CLOSING || l->done) {
		/* What the server still says is not wanted. */
		struct evbuffer *in = bufferevent_get_input(bev);
		evbuffer_drain(in, evbuffer_get_length(in));
	}
	deliver_pending(l->tp);
}

/*
 * Read moderation. Read at every segment, a server streaming small frames
 * wakes phxd every few messages, and each wake-up costs more than the
 * frames it brings (on a VM, a halted vCPU woken through the host). Once a
 * link has brought MODERATE_BYTES within MODERATE_WINDOW_US and its socket
 * is drained, it is not read again for MODERATE_PAUSE_US: the kernel
 * gathers what comes meanwhile, and one read, one parse pass and one write
 * per client carry it all. Only what follows 16 KiB within a millisecond
 * (a stream of about 16 MB/s, or one large message) waits, and at most the
 * pause; a quieter link is read as soon as bytes come.
 * The pause is a utimer: the base's timers are whole milliseconds.
 */
#define MODERATE_BYTES (16u << 10)
#define MODERATE_WINDOW_US 1000
#define MODERATE_PAUSE_US 250

static void direct_read_cb(evutil_socket_t fd, short what, void *arg);

/* Reads again, after a pause or a wait for writability. */
static void
resume_reads(struct tp_link *l)
{
	event_add(l->read_ev, NULL);
	direct_read_cb(bufferevent_getfd(l->bev), EV_READ, l);
}

static void
pause_over(void *arg)
{
	struct tp_link *l = arg;

	if (l->writable_ev != NULL && event_pending(l->writable_ev, EV_WRITE, NULL))
		return;	/* writable_cb reads */
	resume_reads(l);
}

/* After a read of n bytes that drained the socket: pause the link's reads
 * when it is streaming. Without a timerfd (fd exhaustion) it is not
 * paused, only read as before. */
static void
moderate_reads(struct tp_link *l, size_t n)
{
	uint64_t now = utimer_now_us();

	if (now - l->rate_start_us >= MODERATE_WINDOW_US) {
		l->rate_start_us = now;
		l->rate_bytes = 0;
	}
	l->rate_bytes += n;
	if (l->rate_bytes < MODERATE_BYTES)
		return;
	l->rate_start_us = now;
	l->rate_bytes = 0;
	if (l->pause.ev == NULL && !utimer_init(&l->pause, l->tp->base, 1, pause_over, l))
		return;
	if (utimer_arm(&l->pause, MODERATE_PAUSE_US)) {
		event_del(l->read_ev);
		l->tp->read_pauses++;
	}
}

uint64_t
transport_read_pauses(const struct transport *tp)
{
	return tp->read_pauses;
}

uint64_t
transport_reads(const struct transport *tp)
{
	return tp->reads;
}

/* How a direct read ended. */
enum read_end {
	READ_MORE,	/* the room is full: more may be waiting */
	READ_DRAINED,	/* all there was is read */
	READ_EOF,
	READ_ERROR,
	READ_WANTS_WRITE,	/* TLS must write first (a key update's answer) */
};

static size_t
read_plain(int fd, struct iovec *iov, int nv, enum read_end *end)
{
	size_t room = 0;
	for (int i = 0; i < nv; i++)
		room += iov[i].iov_len;
	ssize_t n = readv(fd, iov, nv);
	if (n > 0)
		*end = (size_t)n < room ? READ_DRAINED : READ_MORE;
	else if (n == 0)
		*end = READ_EOF;
	else
		*end = errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? READ_DRAINED
										  : READ_ERROR;
	return n > 0 ? (size_t)n : 0;
}

/* SSL_read until OpenSSL wants more from the socket: with read-ahead on,
 * one read(2) brings many records, and each SSL_read gives one. */
static size_t
read_tls(SSL *ssl, struct iovec *iov, int nv, enum read_end *end)
{
	size_t got = 0;

	ERR_clear_error();
	*end = READ_MORE;
	for (int i = 0; i < nv; i++) {
		size_t filled = 0;
		while (filled < iov[i].iov_len) {
			size_t want = iov[i].iov_len - filled;
			int r = SSL_read(ssl, (char *)iov[i].iov_base + filled,
					 want > INT_MAX ? INT_MAX : (int)want);
			if (r > 0) {
				filled += (size_t)r;
				continue;
			}
			switch (SSL_get_error(ssl, r)) {
			case SSL_ERROR_WANT_READ: *end = READ_DRAINED; break;
			case SSL_ERROR_WANT_WRITE: *end = READ_WANTS_WRITE; break;
			case SSL_ERROR_ZERO_RETURN: *end = READ_EOF; break;
			default: *end = READ_ERROR; ERR_clear_error(); break;
			}
			return got + filled;
		}
		got += filled;
	}
	return got;
}

static void
writable_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	resume_reads(arg);
}

/* Reads into the input buffer's own chunks. */
static size_t
read_to_input(struct tp_link *l, int fd, SSL *ssl, enum read_end *end)
{
	struct evbuffer *in = bufferevent_get_input(l->bev);
	struct evbuffer_iovec v[2];
	struct iovec iov[2];

	evbuffer_unfreeze(in, 0);	/* its end is the bufferevent's alone */
	int nv = evbuffer_reserve_space(in, READ_MAX, v, 2);
	if (nv < 1)
		fatalx("websocket: out of memory");
	for (int i = 0; i < nv; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len;
	}
	size_t n = ssl ? read_tls(ssl, iov, nv, end) : read_plain(fd, iov, nv, end);
	size_t left = n;
	for (int i = 0; i < nv; i++) {
		v[i].iov_len = left < v[i].iov_len ? left : v[i].iov_len;
		left -= v[i].iov_len;
	}
	evbuffer_commit_space(in, v, nv);
	evbuffer_freeze(in, 0);
	return n;
}

/* Back into the input buffer: what the scratch buffer held past its last
 * whole frame, to be read again with what follows. */
static void
keep_input(struct tp_link *l, const uint8_t *p, size_t len)
{
	struct evbuffer *in = bufferevent_get_input(l->bev);

	evbuffer_unfreeze(in, 0);
	if (evbuffer_add(in, p, len) != 0)
		fatalx("websocket: out of memory");
	evbuffer_freeze(in, 0);
}

/*
 * The part of a frame the input buffer may hold for a read to go to the
 * scratch buffer: it is moved to the scratch's front, and the read goes
 * after it. A longer part (a large message arriving) stays where it is,
 * and the read goes to the input buffer, which grows to hold it.
 */
#define CARRY_MAX (4u << 10)

/* Reads into the transport's scratch buffer behind what the input buffer
 * held (*carried), which it empties. */
static size_t
read_to_scratch(struct tp_link *l, int fd, SSL *ssl, size_t *carried, enum read_end *end)
{
	struct transport *tp = l->tp;
	struct evbuffer *in = bufferevent_get_input(l->bev);

	if (tp->scratch == NULL)
		tp->scratch = xmalloc(READ_MAX);
	*carried = evbuffer_get_length(in);
	if (*carried > 0 && evbuffer_remove(in, tp->scratch, *carried) != (int)*carried)
		fatalx("websocket: input buffer lost bytes");
	struct iovec iov = {tp->scratch + *carried, READ_MAX - *carried};
	return ssl ? read_tls(ssl, &iov, 1, end) : read_plain(fd, &iov, 1, end);
}

/* What read_cb does for an open link, on the scratch buffer's len bytes
 * (direct_read_cb has counted the read): what follows its last whole
 * frame goes back to the input buffer, unless the link no longer reads. */
static void
scratch_frames(struct tp_link *l, size_t len)
{
	struct transport *tp = l->tp;
	size_t need, used;
	bool stop;

	tp->scratch_busy = true;
	used = frames_at(l, tp->scratch, len, &need, &stop);
	tp->scratch_busy = false;
	if (used < len && l->state == L_OPEN && !l->done)
		keep_input(l, tp->scratch + used, len - used);
	deliver_pending(tp);
}

/*
 * An open socket is read here rather than by the bufferevent. libevent
 * 2.1's evbuffer_read does a FIONREAD ioctl and then takes at most 4 KiB,
 * and its OpenSSL bufferevent takes one TLS record per loop pass, each in
 * two read(2)s (header, body): a stream cost a loop pass per 4 KiB, or
 * per message over TLS. Here one readv of up to READ_MAX, or SSL_reads
 * with read-ahead until OpenSSL wants more; EOF and errors go to the
 * bufferevent's event callback, as if it had read them. TLS writes stay
 * with the bufferevent.
 * The read goes to one scratch buffer for the whole transport, where its
 * frames are handled: an input buffer read into whole would take and give
 * back a READ_MAX chunk of the heap for each read. Only a link that no
 * longer reads, a large message arriving, or a read made while the
 * scratch's frames are being handled, is read into the input buffer.
 */
static void
direct_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tp_link *l = arg;
	struct transport *tp = l->tp;
	enum read_end end;
	SSL *ssl = l->conf->tls ? bufferevent_openssl_get_ssl(l->bev) : NULL;
	size_t n, carried = 0;

	(void)what;
	tp->reads++;
	if (l->dead)
		return;
	bool scratch = l->state == L_OPEN && !l->done && !tp->scratch_busy &&
		       evbuffer_get_length(bufferevent_get_input(l->bev)) <= CARRY_MAX;
	if (scratch)
		n = read_to_scratch(l, fd, ssl, &carried, &end);
	else
		n = read_to_input(l, fd, ssl, &end);
	if (end == READ_WANTS_WRITE) {
		/* Reading again must wait until the socket takes what OpenSSL
		 * has to write. */
		event_del(l->read_ev);
		if (l->writable_ev == NULL)
			l->writable_ev = event_new(tp->base, fd, EV_WRITE, writable_cb, l);
		if (l->writable_ev == NULL || event_add(l->writable_ev, NULL) != 0)
			fatalx("websocket: out of memory");
	}
	if (n > 0 && end == READ_DRAINED)
		moderate_reads(l, n);
	if (scratch && n > 0)
		scratch_frames(l, carried + n);
	else if (scratch && carried > 0)
		keep_input(l, tp->scratch, carried);
	else if (n > 0)
		read_cb(l->bev, l);
	if (end == READ_EOF)
		event_cb(l->bev, BEV_EVENT_EOF | BEV_EVENT_READING, l);
	else if (end == READ_ERROR)
		event_cb(l->bev, BEV_EVENT_ERROR | BEV_EVENT_READING, l);
	else if (end == READ_MORE && ssl != NULL && SSL_has_pending(ssl) && !l->dead)
		event_active(l->read_ev, EV_READ, 0);	/* read ahead: the socket may be drained */
}

static void
read_directly(struct tp_link *l)
{
	bufferevent_disable(l->bev, EV_READ);
	if (l->conf->tls)
		SSL_set_read_ahead(bufferevent_openssl_get_ssl(l->bev), 1);
	l->read_ev = event_new(l->tp->base, bufferevent_getfd(l->bev), EV_READ | EV_PERSIST,
			       direct_read_cb, l);
	if (l->read_ev == NULL || event_add(l->read_ev, NULL) != 0)
		fatalx("websocket: out of memory");
	/* OpenSSL may hold records the socket no longer shows */
	if (l->conf->tls)
		event_active(l->read_ev, EV_READ, 0);
}

/* Everything queued has left: a stopping daemon does not wait for the
 * server's answer to its close. */
static void
written(struct tp_link *l)
{
	if (l->state == L_CLOSING && l->tp->stopping)
		link_kill(l);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct tp_link *l = arg;

	if (l->direct)	/* it finished what a direct write left: direct again */
		bufferevent_disable(bev, EV_WRITE);
	written(l);
}

/*
 * An open plain socket is written here, at the end of the pass that
 * queued its frames, without arming a write event first: its stage with
 * one write, or its output buffer with writev. Only what the kernel does
 * not take is left to the bufferevent, which also reports the errors.
 */
static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct transport *tp = arg;
	struct tp_link *l;

	(void)fd;
	(void)what;
	while ((l = TAILQ_FIRST(&tp->dirty)) != NULL) {
		TAILQ_REMOVE(&tp->dirty, l, dirty_entry);
		l->dirty = false;
		struct evbuffer *out = bufferevent_get_output(l->bev);
		if (l->stage_len > 0) {
			write_stage(l);
		} else {
			evutil_socket_t s = bufferevent_getfd(l->bev);
			/* A bufferevent keeps its output's front frozen but for
			 * its own writes; this is one of them. */
			evbuffer_unfreeze(out, 1);
			while (evbuffer_get_length(out) > 0 && evbuffer_write(out, s) > 0)
				;
			evbuffer_freeze(out, 1);
			if (evbuffer_get_length(out) > 0)
				bufferevent_enable(l->bev, EV_WRITE);
		}
		if (evbuffer_get_length(out) == 0)
			written(l);
	}
}

/* ---- connecting ------------------------------------------------------------------- */

static void
send_upgrade(struct tp_link *l)
{
	const struct conn_conf *c = l->conf;
	struct evbuffer *out = bufferevent_get_output(l->bev);
	uint8_t raw[16];

	for (int i = 0; i < 4; i++)
		mask_key(l->tp, raw + 4 * i);
	base64_encode(raw, sizeof(raw), true, l->key);
	evbuffer_add_printf(out,
			    "GET %s HTTP/1.1\r\n"
			    "Host: %s\r\n"
			    "Upgrade: websocket\r\n"
			    "Connection: Upgrade\r\n"
			    "Sec-WebSocket-Key: %s\r\n"
			    "Sec-WebSocket-Version: 13\r\n",
			    c->request_path, c->host_header, l->key);
	if (c->subprotocols != NULL)
		evbuffer_add_printf(out, "Sec-WebSocket-Protocol: %s\r\n", c->subprotocols);
	for (size_t i = 0; i < c->nheaders; i++)
		evbuffer_add_printf(out, "%s: %s\r\n", c->headers[i].key, c->headers[i].value);
	evbuffer_add(out, "\r\n", 2);
	l->state = L_HANDSHAKE;
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct tp_link *l = arg;
	char why[160];

	if (l->dead)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;
		(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		send_upgrade(l);
		return;
	}
	if (l->state == L_CLOSING || l->done) {
		link_kill(l);
		return;
	}
	if (l->state == L_CONNECTING) {
		unsigned long e = l->conf->tls ? bufferevent_get_openssl_error(bev) : 0;
		int err = EVUTIL_SOCKET_ERROR();
		if (l->tls_error[0])
			snprintf(why, sizeof(why), "TLS: %s", l->tls_error);
		else if (e != 0)
			snprintf(why, sizeof(why), "TLS: %s", ERR_reason_error_string(e) ?
							       ERR_reason_error_string(e) : "handshake failed");
		else if ((what & BEV_EVENT_ERROR) && err != 0)
			snprintf(why, sizeof(why), "connection failed: %s", evutil_socket_error_to_string(err));
		else
			snprintf(why, sizeof(why), "connection failed");
		while (l->conf->tls && bufferevent_get_openssl_error(bev) != 0)
			;
		link_fail(l, 1006, why, 0);
	} else if (l->state == L_HANDSHAKE) {
		link_fail(l, 1006, "connection lost during the handshake", 0);
	} else {
		link_fail(l, 1006, "connection lost", 0);
	}
	deliver_pending(l->tp);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tp_link *l = arg;

	(void)fd;
	(void)what;
	switch (l->state) {
	case L_TLS:
		link_fail(l, 1006, "TLS setup timed out (reading the TLS files hangs)", 0);
		break;
	case L_CONNECTING:
		link_fail(l, 1006, "connection timed out", 0);
		break;
	case L_HANDSHAKE:
		link_fail(l, 1006, "handshake timed out", 0);
		break;
	case L_OPEN:
		break;
	case L_CLOSING:
		link_kill(l);
		break;
	}
	deliver_pending(l->tp);
}

/* Records why a certificate was refused (OpenSSL's own error at the end
 * of the handshake says only "certificate verify failed"). */
static int
verify_cb(int ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tp_link *l = ssl ? SSL_get_app_data(ssl) : NULL;
	int err = X509_STORE_CTX_get_error(store);

	if (ok || l == NULL || l->tls_error[0])
		return ok;
	if (err == X509_V_ERR_IP_ADDRESS_MISMATCH) {
		log_warnx("%s: the server's certificate does not name the address %s", l->conf->name,
			  l->address);
		snprintf(l->tls_error, sizeof(l->tls_error), "the certificate does not name %s",
			 l->address);
	} else {
		snprintf(l->tls_error, sizeof(l->tls_error), "%s", X509_verify_cert_error_string(err));
	}
	return ok;
}

static SSL *
ssl_for(struct tp_link *l, SSL_CTX *ctx)
{
	const struct conn_conf *c = l->conf;
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		return NULL;
	SSL_set_app_data(ssl, l);
	if (!c->ip_literal)
		SSL_set_tlsext_host_name(ssl, c->host);
	if (!c->tls_verify) {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
		return ssl;
	}
	SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_cb);
	X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
	int ok = c->ip_literal ? X509_VERIFY_PARAM_set1_ip_asc(param, l->address)
			       : X509_VERIFY_PARAM_set1_host(param, c->host, 0);
	if (ok != 1) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

static bool
parse_address(const char *address, int port, struct sockaddr_storage *ss, int *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, address, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		return true;
	}
	if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return true;
	}
	return false;
}

static void
dial(struct tp_link *l, SSL_CTX *ctx)
{
	struct transport *tp = l->tp;
	struct sockaddr_storage ss;
	int sslen;

	l->state = L_CONNECTING;
	if (!parse_address(l->address, l->conf->port, &ss, &sslen)) {
		link_fail(l, 1006, "cannot start the connection: not a numeric address", 0);
		return;
	}
	if (ctx != NULL) {
		SSL *ssl = ssl_for(l, ctx);
		if (ssl == NULL) {
			link_fail(l, 1015, "TLS setup failed", 0);
			return;
		}
		l->bev = bufferevent_openssl_socket_new(tp->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
							BEV_OPT_CLOSE_ON_FREE);
		if (l->bev == NULL)
			SSL_free(ssl);
	} else {
		l->bev = bufferevent_socket_new(tp->base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	if (l->bev == NULL) {
		link_fail(l, 1006, "cannot start the connection", 0);
		return;
	}
	bufferevent_setcb(l->bev, read_cb, write_cb, event_cb, l);
	bufferevent_set_max_single_read(l->bev, READ_MAX);
	bufferevent_enable(l->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(l->bev, (struct sockaddr *)&ss, sslen) != 0) {
		char why[128];
		snprintf(why, sizeof(why), "cannot start the connection: %s", strerror(errno));
		link_fail(l, 1006, why, 0);
	}
}

static void
tls_ready(struct tls_wait *w, SSL_CTX *ctx)
{
	struct tp_link *l = (struct tp_link *)((char *)w - offsetof(struct tp_link, tls_wait));

	if (ctx == NULL)
		link_fail(l, 1015, "TLS setup failed", 0);
	else
		dial(l, ctx);
	deliver_pending(l->tp);
}

void
transport_connect(struct transport *tp, uint32_t id, uint32_t gen, const struct conn_conf *c,
		  const char *address)
{
	if (tp->stopping)
		return;
	if (id >= tp->nby_id) {
		size_t n = tp->nby_id ? tp->nby_id : 16;
		while (n <= id)
			n *= 2;
		tp->by_id = xrealloc(tp->by_id, n * sizeof(*tp->by_id));
		memset(tp->by_id + tp->nby_id, 0, (n - tp->nby_id) * sizeof(*tp->by_id));
		tp->nby_id = n;
	}
	if (tp->by_id[id] != NULL)
		link_fail(tp->by_id[id], 1000, "replaced", 0);

	struct tp_link *l = xcalloc(1, sizeof(*l));
	l->tp = tp;
	l->id = id;
	l->gen = gen;
	l->conf = config_conn_ref(c);
	l->address = xstrdup(address);
	l->timer = evtimer_new(tp->base, timer_cb, l);
	l->tls_wait.fn = tls_ready;
	LIST_INSERT_HEAD(&tp->links, l, entry);
	tp->by_id[id] = l;
	arm(l, OPEN_TIMEOUT_MS);
	if (!c->tls) {
		dial(l, NULL);
		return;
	}
	l->state = L_TLS;
	bool failed;
	SSL_CTX *ctx = tls_ctx_get(tp->tls, c, &l->tls_wait, &failed);
	if (ctx != NULL)
		dial(l, ctx);
	else if (failed)
		link_fail(l, 1015, "TLS setup failed", 0);
}

static struct tp_link *
link_of(struct transport *tp, uint32_t id, uint32_t gen)
{
	struct tp_link *l = id < tp->nby_id ? tp->by_id[id] : NULL;

	return l != NULL && l->gen == gen && !l->done ? l : NULL;
}

void
transport_send(struct transport *tp, uint32_t id, uint32_t gen, const char *data, size_t len,
	       bool binary)
{
	struct tp_link *l = link_of(tp, id, gen);

	if (l == NULL || l->state != L_OPEN || !room_for(l, len))
		return;
	write_frame(l, binary ? WS_BINARY : WS_TEXT, data, len);
}

void
transport_close(struct transport *tp, uint32_t id, uint32_t gen, int code, const char *reason)
{
	struct tp_link *l = link_of(tp, id, gen);

	if (l == NULL)
		return;
	if (l->state == L_OPEN)
		link_close(l, code, reason ? reason : "");
	else
		link_fail(l, code, reason ? reason : "", 0);
}

/* ---- the transport ---------------------------------------------------------------- */

struct transport *
transport_new(struct event_base *base, tp_event_fn fn, void *ud)
{
	struct transport *tp = xcalloc(1, sizeof(*tp));

	tp->base = base;
	tp->fn = fn;
	tp->ud = ud;
	tp->rnd_used = sizeof(tp->rnd);
	LIST_INIT(&tp->links);
	LIST_INIT(&tp->dead);
	STAILQ_INIT(&tp->pending);
	tp->pending_ev = event_new(base, -1, 0, pending_cb, tp);
	tp->reap_ev = event_new(base, -1, 0, reap_cb, tp);
	TAILQ_INIT(&tp->dirty);
	/* at the default priority: after the pass's other callbacks, in
	 * the same loop iteration */
	tp->flush_ev = event_new(base, -1, 0, flush_cb, tp);
	/* The dead are freed after everything else of the pass ran (the
	 * daemon's base has 3 priorities; 1 is the default). */
	event_priority_set(tp->reap_ev, 2);
	tp->tls = tls_ctxs_new(base);
	return tp;
}

static void
drained_now(struct transport *tp)
{
	void (*fn)(void *) = tp->drained;

	tp->drained = NULL;
	if (tp->stop_ev)
		evtimer_del(tp->stop_ev);
	if (fn)
		fn(tp->drained_arg);
}

/* Stopping: done once no socket has anything left to send. */
static void
check_drained(struct transport *tp)
{
	struct tp_link *l;

	if (tp->drained == NULL)
		return;
	LIST_FOREACH (l, &tp->links, entry)
		if (l->bev != NULL && l->state == L_CLOSING && queued(l) > 0)
			return;
	drained_now(tp);
}

static void
stop_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drained_now(arg);
}

void
transport_stop(struct transport *tp, unsigned grace_ms, void (*drained)(void *arg), void *arg)
{
	struct tp_link *l, *next;
	struct timeval tv = { grace_ms / 1000, (grace_ms % 1000) * 1000 };

	tp->stopping = true;
	tp->drained = drained;
	tp->drained_arg = arg;
	/* Sockets not yet open have nothing to say. */
	for (l = LIST_FIRST(&tp->links); l != NULL; l = next) {
		next = LIST_NEXT(l, entry);
		if (l->state < L_OPEN)
			link_fail(l, 1001, "phxd stopping", 0);
		else if (l->state == L_OPEN)
			link_close(l, 1001, "phxd stopping");
		else
			evtimer_del(l->timer);
	}
	if (tp->stop_ev == NULL)
		tp->stop_ev = evtimer_new(tp->base, stop_deadline, tp);
	evtimer_add(tp->stop_ev, &tv);
	check_drained(tp);
}

void
transport_free(struct transport *tp)
{
	struct tp_link *l;
	struct tp_pending *p;

	if (tp == NULL)
		return;
	while ((l = LIST_FIRST(&tp->links)) != NULL) {
		LIST_REMOVE(l, entry);
		tls_wait_cancel(&l->tls_wait);
		link_free(l);
	}
	while ((l = LIST_FIRST(&tp->dead)) != NULL) {
		LIST_REMOVE(l, entry);
		link_free(l);
	}
	while ((p = STAILQ_FIRST(&tp->pending)) != NULL) {
		STAILQ_REMOVE_HEAD(&tp->pending, entry);
		free(p);
	}
	tls_ctxs_free(tp->tls);
	free(tp->scratch);
	free(tp->by_id);
	event_free(tp->pending_ev);
	event_free(tp->flush_ev);
	event_free(tp->reap_ev);
	if (tp->stop_ev)
		event_free(tp->stop_ev);
	free(tp);
}
