/* SPDX-License-Identifier: MIT */
/*
 * bench/floor: the floor for bench/run. A bare libwebsockets client that
 * speaks Phoenix V2 with pre-encoded frames and no client logic at all (no
 * refs to track, no rejoin, no buffer): what any client must at least
 * spend. It does the same work as the other peers and prints one JSON line.
 *
 *   floor PORT fire N | await N | receive N | fanout K RATE M | join T
 * With PHXD_BENCH_TLS set in the environment it speaks wss (any certificate).
 */
#include <libwebsockets.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

#define MAX_CONNS 1100
#define FRAME_MAX 512

enum mode { FIRE, AWAIT, RECEIVE, FANOUT, JOIN };

struct conn {
	struct lws *wsi;
	bool established, join_sent, joined, sender;
	unsigned idx;
	char topic[64];
	char rx[FRAME_MAX * 4];	/* a message in fragments */
	size_t rx_len;
};

static struct {
	enum mode mode;
	long n, k, rate, m;
	struct lws_context *ctx;
	struct conn conns[MAX_CONNS];
	unsigned nconns, established, joined;
	bool done, failed;
	bool tls;		/* PHXD_BENCH_TLS set: wss */
	char why[256];
	/* work */
	long sent, received, replies;
	uint64_t t0, cpu0, t_end, cpu_end;
	long count_before;
	enum { ASK_BEFORE, BEFORE_ASKED, SENDING, ASK_AFTER, AFTER_ASKED } phase;	/* fire */
	uint64_t ping_at;
	struct lat lat;
	lws_sorted_usec_list_t tick;
	char frame[FRAME_MAX];
	char fire[FRAME_MAX];	/* the pre-encoded push */
	size_t fire_len;
} B;

static void
finish(void)
{
	B.t_end = now_ns();
	B.cpu_end = cpu_ns();
	B.done = true;
}

static void
fail(const char *why)
{
	snprintf(B.why, sizeof(B.why), "%s", why);
	B.failed = B.done = true;
}

static void
start_work(void)
{
	B.t0 = now_ns();
	B.cpu0 = cpu_ns();
}

/* Frames are written one per WRITEABLE callback, as libwebsockets wants. */
static int
write_frame(struct lws *wsi, const char *text, size_t len)
{
	unsigned char buf[LWS_PRE + FRAME_MAX];

	memcpy(buf + LWS_PRE, text, len);
	return lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT) < (int)len ? -1 : 0;
}

static void
tick_cb(lws_sorted_usec_list_t *sul)
{
	(void)sul;
	for (unsigned i = 0; i < B.nconns; i++)
		if (B.conns[i].sender)
			lws_callback_on_writable(B.conns[i].wsi);
	if (B.sent < B.m)
		lws_sul_schedule(B.ctx, 0, &B.tick, tick_cb, 1000000 / B.rate);
}

static long
number_after(const char *s, size_t len, const char *key)
{
	const char *p = memmem(s, len, key, strlen(key));
	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static void
on_message(struct conn *c, const char *s, size_t len)
{
	bool reply = memmem(s, len, "\"phx_reply\"", 11) != NULL;

	if (!c->joined) {
		if (!reply || !memmem(s, len, "\"ok\"", 4)) {
			fail("join refused");
			return;
		}
		c->joined = true;
		B.joined++;
		if (B.mode == JOIN && B.joined == (unsigned)B.n)
			finish();
		if (B.mode != JOIN && B.joined == B.nconns) {
			if (B.mode != FIRE)
				start_work();
			if (B.mode == FANOUT)
				lws_sul_schedule(B.ctx, 0, &B.tick, tick_cb, 1);
			for (unsigned i = 0; i < B.nconns; i++)
				lws_callback_on_writable(B.conns[i].wsi);
		}
		return;
	}
	switch (B.mode) {
	case FIRE:
		/* the server's count of sinks before and after the pushes */
		if (reply && B.phase == BEFORE_ASKED) {
			B.count_before = number_after(s, len, "\"received\":");
			B.phase = SENDING;
			start_work();
			lws_callback_on_writable(c->wsi);
		} else if (reply && B.phase == AFTER_ASKED) {
			if (number_after(s, len, "\"received\":") - B.count_before >= B.n) {
				finish();
			} else {
				B.phase = ASK_AFTER;	/* not all arrived yet */
				lws_callback_on_writable(c->wsi);
			}
		}
		break;
	case AWAIT:
		lat_add(&B.lat, now_ns() - B.ping_at);
		if (++B.replies == B.n)
			finish();
		else
			lws_callback_on_writable(c->wsi);
		break;
	case RECEIVE:
		if (!reply && ++B.received == B.n)
			finish();
		break;
	case FANOUT:
		if (!c->sender && !reply) {
			lat_add_copy(&B.lat, s, len, now_ns());
			if (++B.received == B.k * B.m)
				finish();
		}
		break;
	case JOIN:
		break;
	}
}

static void
write_work(struct conn *c)
{
	int n;

	switch (B.mode) {
	case FIRE:
		if (B.phase == ASK_BEFORE || B.phase == ASK_AFTER) {
			n = snprintf(B.frame, sizeof(B.frame),
				     "[\"1\",\"c\",\"%s\",\"count\",{}]", c->topic);
			write_frame(c->wsi, B.frame, (size_t)n);
			B.phase++;
			return;
		}
		if (B.phase != SENDING)
			return;
		/* pre-encoded, as many as the socket takes */
		while (B.sent < B.n && !lws_send_pipe_choked(c->wsi)) {
			write_frame(c->wsi, B.fire, B.fire_len);
			B.sent++;
		}
		if (B.sent == B.n)
			B.phase = ASK_AFTER;
		lws_callback_on_writable(c->wsi);
		return;
	case AWAIT:
		n = snprintf(B.frame, sizeof(B.frame), "[\"1\",\"%ld\",\"%s\",\"ping\",{}]",
			     B.replies + 2, c->topic);
		B.ping_at = now_ns();
		write_frame(c->wsi, B.frame, (size_t)n);
		return;
	case RECEIVE:
		if (B.sent++ == 0) {
			n = snprintf(B.frame, sizeof(B.frame),
				     "[\"1\",\"f\",\"%s\",\"flood\",{\"n\":%ld,\"size\":64}]", c->topic,
				     B.n);
			write_frame(c->wsi, B.frame, (size_t)n);
		}
		return;
	case FANOUT:
		/* each broadcast stamped with when it was due (stats.h); one
		 * frame per callback, so a sender behind asks for the next */
		if (c->sender && B.sent < B.m && now_ns() >= due_ns(B.t0, B.sent, B.rate)) {
			n = snprintf(B.frame, sizeof(B.frame),
				     "[\"1\",\"b\",\"%s\",\"broadcast\",{\"t\":%" PRIu64
				     ",\"seq\":%ld}]", c->topic, due_ns(B.t0, B.sent, B.rate), B.sent);
			B.sent++;
			write_frame(c->wsi, B.frame, (size_t)n);
			if (B.sent < B.m && now_ns() >= due_ns(B.t0, B.sent, B.rate))
				lws_callback_on_writable(c->wsi);
		}
		return;
	case JOIN:
		return;
	}
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct conn *c = lws_get_opaque_user_data(wsi);
	char frame[FRAME_MAX];
	int n;

	(void)user;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		c->established = true;
		B.established++;
		lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		fail(in ? (const char *)in : "connection error");
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (!B.done)
			fail("connection closed");
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (B.mode == JOIN) {
			/* every join pipelined on the one connection */
			if (B.sent < B.n) {
				n = snprintf(frame, sizeof(frame),
					     "[\"%ld\",\"%ld\",\"load:j%ld\",\"phx_join\",{}]", B.sent + 1,
					     B.sent + 1, B.sent);
				write_frame(wsi, frame, (size_t)n);
				if (++B.sent < B.n)
					lws_callback_on_writable(wsi);
			}
			return 0;
		}
		if (!c->joined) {
			if (!c->join_sent) {
				n = snprintf(frame, sizeof(frame), "[\"1\",\"1\",\"%s\",\"phx_join\",{}]",
					     c->topic);
				c->join_sent = true;
				write_frame(wsi, frame, (size_t)n);
			}
			return 0;
		}
		write_work(c);
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (c->rx_len + len > sizeof(c->rx)) {
			fail("a message larger than the floor reads");
			return -1;
		}
		memcpy(c->rx + c->rx_len, in, len);
		c->rx_len += len;
		if (!lws_is_final_fragment(wsi))
			return 0;
		if (B.mode == JOIN) {
			if (memmem(c->rx, c->rx_len, "\"ok\"", 4) && ++B.joined == (unsigned)B.n)
				finish();
		} else {
			on_message(c, c->rx, c->rx_len);
		}
		c->rx_len = 0;
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols protocols[] = {
	{ "floor", callback, 0, 65536, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

static void
connect_one(unsigned i, int port, const char *topic, bool sender)
{
	struct lws_client_connect_info ci = { 0 };
	struct conn *c = &B.conns[i];

	c->idx = i;
	c->sender = sender;
	snprintf(c->topic, sizeof(c->topic), "%s", topic);
	ci.context = B.ctx;
	ci.address = "127.0.0.1";
	ci.port = port;
	ci.path = "/socket/websocket?vsn=2.0.0";
	ci.host = "127.0.0.1";
	ci.origin = "127.0.0.1";
	ci.local_protocol_name = "floor";
	if (B.tls)	/* bench/run's own certificate, made for the run */
		ci.ssl_connection = LCCSCF_USE_SSL | LCCSCF_ALLOW_SELFSIGNED |
				    LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
	ci.opaque_user_data = c;
	ci.pwsi = &c->wsi;
	if (lws_client_connect_via_info(&ci) == NULL)
		fail("cannot start a connection");
}

int
main(int argc, char **argv)
{
	struct lws_context_creation_info info = { 0 };
	char topic[64];
	int port;

	if (argc < 4) {
		fprintf(stderr, "usage: floor PORT fire N | await N | receive N | "
				"fanout K RATE M | join T\n");
		return 2;
	}
	port = atoi(argv[1]);
	B.n = atol(argv[3]);
	lws_set_log_level(LLL_ERR, NULL);
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	B.tls = getenv("PHXD_BENCH_TLS") != NULL;
	if (B.tls)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.timeout_secs = 30;
	B.ctx = lws_create_context(&info);
	if (B.ctx == NULL)
		return 1;
	if (strcmp(argv[2], "fire") == 0 || strcmp(argv[2], "receive") == 0) {
		B.mode = argv[2][0] == 'f' ? FIRE : RECEIVE;
		snprintf(topic, sizeof(topic), "load:floor-%d", (int)getpid());
		B.nconns = 1;
		connect_one(0, port, topic, false);
		B.fire_len = (size_t)snprintf(B.fire, sizeof(B.fire),
					      "[\"1\",\"2\",\"%s\",\"sink\",{\"n\":1}]", topic);
	} else if (strcmp(argv[2], "await") == 0) {
		B.mode = AWAIT;
		lat_init(&B.lat, (size_t)B.n);
		snprintf(topic, sizeof(topic), "rooms:floor-%d", (int)getpid());
		B.nconns = 1;
		connect_one(0, port, topic, false);
	} else if (strcmp(argv[2], "fanout") == 0 && argc == 6) {
		B.mode = FANOUT;
		B.k = B.n;
		B.rate = atol(argv[4]);
		B.m = atol(argv[5]);
		if (B.k + 1 > MAX_CONNS || B.rate <= 0)
			return 2;
		lat_init_fanout(&B.lat, (size_t)(B.k * B.m), B.m);
		snprintf(topic, sizeof(topic), "rooms:fan-floor-%d", (int)getpid());
		B.nconns = (unsigned)B.k + 1;
		for (unsigned i = 0; i < B.nconns; i++)
			connect_one(i, port, topic, i == B.k);
	} else if (strcmp(argv[2], "join") == 0) {
		B.mode = JOIN;
		B.nconns = 1;
		connect_one(0, port, "unused", false);
		B.conns[0].joined = true;
		start_work();
	} else {
		return 2;
	}
	uint64_t deadline = now_ns() + 120ull * 1000000000ull;
	while (!B.done && now_ns() < deadline)
		lws_service(B.ctx, 0);
	if (!B.done)
		fail("did not finish within 120 s");
	if (B.failed) {
		fprintf(stderr, "floor: %s\n", B.why);
		lws_context_destroy(B.ctx);
		return 1;
	}
	long n = B.mode == FANOUT ? B.k * B.m : B.n;
	print_result(n, B.t_end - B.t0, B.cpu_end - B.cpu0, &B.lat, max_rss_kib(), 0);
	lws_context_destroy(B.ctx);
	return 0;
}
