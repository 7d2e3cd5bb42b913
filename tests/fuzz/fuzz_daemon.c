/* SPDX-License-Identifier: MIT */
/*
 * The socket server, its commands and the sessions in one process, with a
 * fake Phoenix server and a fake clock. The input is a script of steps:
 *   op (1 byte), length (1 byte), data
 *   0, 8  bytes a socket client writes (client A, client B)
 *   1, 2  a text / binary frame from the server
 *   3     time passes: data[0] * 64 ms
 *   4     the server closes (code 1000 + data[0])
 *   5     the websocket opens
 *   6     the server replies ok to the last frame phxd sent (data: response
 *         as a JSON string); 7: the same with data as the raw response
 *   9     client A half-closes; 10: client A goes away
 * After every step the loop runs and each line phxd wrote must be exactly
 * one JSON object.
 */
#include "tests/fuzz/fuzz_check.h"
#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/phxd.h"
#include "ipc/ipc_int.h"
#include "protocol/json_scan.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


static const char config_text[] =
	"[phxd]\n"
	"log_level = error\n"
	"max_line_bytes = 4096\n"
	"client_buffer_bytes = 65536\n"
	"client_max_subscriptions = 16\n"
	"client_max_pending = 16\n"
	"client_stall_ms = 5000\n"
	"[connection c]\n"
	"url = ws://127.0.0.1:9/socket\n"
	"heartbeat_interval_ms = 1000\n"
	"join_timeout_ms = 500\n"
	"push_timeout_ms = 700\n"
	"push_buffer = 8\n"
	"max_topics = 8\n"
	"jitter = 0\n"
	"join = rooms:a\n"
	"join = presence:p\n";

/* The daemon's clock, as the fuzzer moves it. */
static uint64_t fake_now;

struct fuzz_host {
	struct phxd d;
	struct phxd_conn pc;
	struct phxd_shard shard, *shards[1];
	char last_sent[1024];
	size_t last_len;
	bool last_binary;
	bool connecting;
};

/* The sessions' host is the shard, as in conn.c. */
static struct fuzz_host *
host_of(void *shard)
{
	return (struct fuzz_host *)((char *)shard - offsetof(struct fuzz_host, shard));
}

uint64_t
phxd_now_ms(void)
{
	return fake_now;
}

void
phxd_timers_changed(struct phxd *d)
{
	(void)d;
}

struct phxd_conn *
phxd_find_conn(struct phxd *d, const char *name)
{
	for (size_t i = 0; i < d->nconns; i++)
		if (d->conns[i] != NULL && strcmp(d->conns[i]->conf->name, name) == 0)
			return d->conns[i];
	return NULL;
}

bool
phxd_reload(struct phxd *d, char *err, size_t errlen)
{
	(void)d;
	snprintf(err, errlen, "reload is not fuzzed: \xe9 (a byte that is not UTF-8)");
	return false;
}

void
phxd_notify_status(struct phxd *d)
{
	(void)d;
}

/* No websockets here (fake_ops stand in for them): nothing is ever paused. */
uint64_t
transport_read_pauses(const struct transport *tp)
{
	(void)tp;
	return 0;
}

static void
fake_connect(void *host, struct session *s)
{
	(void)s;
	host_of(host)->connecting = true;
}

static void
fake_close(void *host, struct session *s, int code, const char *reason)
{
	(void)s;
	(void)code;
	(void)reason;
	host_of(host)->connecting = false;
}

static void
fake_send(void *host, struct session *s, const char *frame, size_t len, bool binary)
{
	struct fuzz_host *h = host_of(host);

	(void)s;
	if (len > sizeof(h->last_sent))
		len = sizeof(h->last_sent);
	memcpy(h->last_sent, frame, len);
	h->last_len = len;
	h->last_binary = binary;
}

static void
fake_message(void *host, struct session *s, const struct phx_msg *m)
{
	struct fuzz_host *h = host_of(host);

	(void)s;
	ipc_publish_message(h->d.ipc, &h->pc, m);
}

static void
fake_event(void *host, struct session *s, const struct sess_event *ev)
{
	struct fuzz_host *h = host_of(host);

	(void)s;
	if (h->d.ipc)
		ipc_publish_event(h->d.ipc, &h->shard, ev);
	if (ev->kind == SEV_CHANNEL && ev->chan_state == CHAN_JOINED && h->d.outbox)
		outbox_topic_joined(h->d.outbox, &h->pc, ev->topic);
}

static const struct session_ops fake_ops = {
	.connect = fake_connect,
	.close = fake_close,
	.send = fake_send,
	.message = fake_message,
	.event = fake_event,
};

/* A socket client's side: what phxd wrote, checked line by line. */
struct peer {
	int fd;
	char buf[1 << 16];
	size_t len;
};

static void
check_lines(struct peer *p)
{
	for (;;) {
		ssize_t n = read(p->fd, p->buf + p->len, sizeof(p->buf) - p->len);
		if (n <= 0)
			break;
		p->len += (size_t)n;
		char *nl;
		while ((nl = memchr(p->buf, '\n', p->len)) != NULL) {
			size_t line = (size_t)(nl - p->buf);
			const char *why = NULL;
			/* RFC 8259, as strict as the codec (jansson refuses integers
			 * past 64 bits, which phxd passes on as the server sent them) */
			if (line == 0 || p->buf[0] != '{' || !json_validate(p->buf, line, &why)) {
				fprintf(stderr, "not one JSON object: %.*s (%s)\n", (int)line, p->buf,
					why ? why : "not an object");
				abort();
			}
			memmove(p->buf, nl + 1, p->len - line - 1);
			p->len -= line + 1;
		}
		/* A line longer than the buffer would be a line phxd never ends. */
		CHECK(p->len < sizeof(p->buf));
	}
}

static void
peer_open(struct ipc_server *srv, struct peer *p)
{
	int sv[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	p->fd = sv[0];
	p->len = 0;
	ipc_client_new(srv, sv[1], 1000, 1000, 1);
}

/* The server's answer to the last frame phxd sent: same join_ref, ref and
 * topic, a phx_reply with status ok and `response` (JSON text). */
static void
reply_to_last(struct fuzz_host *h, const char *response, size_t rlen)
{
	struct phx_msg m;
	char frame[2048];
	int n;

	if (h->last_binary || h->last_len == 0 ||
	    phx_decode_text(h->last_sent, h->last_len, PHX_DECODE_STRICT, &m, NULL) != PHX_OK ||
	    m.ref.s == NULL)
		return;
	n = snprintf(frame, sizeof(frame), "[%s%.*s%s,\"%.*s\",\"%.*s\",\"phx_reply\","
		     "{\"status\":\"ok\",\"response\":%.*s}]",
		     m.join_ref.s ? "\"" : "", m.join_ref.s ? (int)m.join_ref.len : 4,
		     m.join_ref.s ? m.join_ref.s : "null", m.join_ref.s ? "\"" : "", (int)m.ref.len,
		     m.ref.s, (int)m.topic.len, m.topic.s, (int)rlen, response);
	if (n > 0 && (size_t)n < sizeof(frame))
		session_on_frame(h->pc.sess, frame, (size_t)n, false);
}

static void
run_loop(struct fuzz_host *h, struct peer *peers, size_t npeers)
{
	for (int i = 0; i < 3; i++)
		event_base_loop(h->d.base, EVLOOP_NONBLOCK);
	for (size_t i = 0; i < npeers; i++)
		if (peers[i].fd >= 0)
			check_lines(&peers[i]);
}

static void
remove_outbox(const char *path)
{
	char side[80];

	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char conf_path[64], sock_path[64], outbox_path[64];
	struct fuzz_host *h = calloc(1, sizeof(*h));
	struct phxd_conn *conns[1];
	struct peer peers[2];
	char err[512];

	CHECK(h != NULL);
	if (conf_path[0] == '\0') {
		FILE *f;
		snprintf(conf_path, sizeof(conf_path), "/tmp/phxd-fuzz-%ld.conf", (long)getpid());
		snprintf(sock_path, sizeof(sock_path), "/tmp/phxd-fuzz-%ld.sock", (long)getpid());
		/* in memory where there is a tmpfs: its syncs cost nothing */
		snprintf(outbox_path, sizeof(outbox_path), "%s/phxd-fuzz-%ld.db",
			 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (long)getpid());
		f = fopen(conf_path, "w");
		CHECK(f != NULL);
		fputs(config_text, f);
		fclose(f);
		log_init(LOG_LVL_ERROR, "phxd-fuzz");
		/* as phxd does: a client that hung up is an error, not a signal */
		signal(SIGPIPE, SIG_IGN);
	}
	fake_now = 1000000;
	h->d.conf = config_load(conf_path, err, sizeof(err));
	CHECK(h->d.conf != NULL);
	h->d.base = event_base_new();
	CHECK(h->d.base != NULL && event_base_priority_init(h->d.base, 3) == 0);
	tq_init(&h->d.tq);
	h->d.tq.now = fake_now;
	h->pc.d = &h->d;
	h->pc.conf = h->d.conf->conns[0];
	h->pc.sess = session_new(h->pc.conf, &fake_ops, &h->shard, &h->d.tq);
	h->pc.cap = h->pc.conf->max_channels;
	/* one websocket: conn.c's shards need the real transport */
	h->shard = (struct phxd_shard){ .pc = &h->pc, .sess = h->pc.sess };
	h->shards[0] = &h->shard;
	h->pc.shards = h->shards;
	h->pc.nshards = 1;
	conns[0] = &h->pc;
	h->d.conns = conns;
	h->d.nconns = 1;
	h->d.ipc = ipc_server_new(&h->d, sock_path);
	CHECK(h->d.ipc != NULL);
	/* A fresh outbox each run, so that a run depends on its input alone;
	 * a small one, so that inputs can fill it. */
	remove_outbox(outbox_path);
	h->d.outbox = outbox_open(&h->d, outbox_path, false, false, err, sizeof(err));
	CHECK(h->d.outbox != NULL);
	outbox_set_limits(h->d.outbox, 16, 4096);
	session_start(h->pc.sess);
	peer_open(h->d.ipc, &peers[0]);
	peer_open(h->d.ipc, &peers[1]);

	for (size_t i = 0; i + 2 <= size;) {
		uint8_t op = data[i], len = data[i + 1];
		const char *arg = (const char *)data + i + 2;
		if (i + 2 + len > size)
			len = (uint8_t)(size - i - 2);
		i += 2 + (size_t)len;
		h->d.tq.now = fake_now;
		switch (op % 11) {
		case 0:
		case 8: {
			struct peer *p = &peers[op % 11 == 8];
			if (p->fd >= 0 && len > 0 && write(p->fd, arg, len) < 0)
				CHECK(errno == EAGAIN || errno == EPIPE || errno == ECONNRESET);
			break;
		}
		case 1:
		case 2:
			session_on_frame(h->pc.sess, arg, len, op % 11 == 2);
			break;
		case 3:
			fake_now += (uint64_t)(len ? (uint8_t)arg[0] : 1) * 64;
			tq_run(&h->d.tq, fake_now);
			ipc_client_check_stalls(h->d.ipc, fake_now);
			break;
		case 4:
			h->connecting = false;
			session_on_close(h->pc.sess, 1000 + (len ? (uint8_t)arg[0] : 0), "closed", 0);
			break;
		case 5:
			if (h->connecting) {
				h->connecting = false;
				session_on_open(h->pc.sess);
			}
			break;
		case 6: {
			char quoted[6 * 255 + 2];	/* every byte may become \u00XX */
			size_t qlen = json_escape(arg, len, quoted);
			reply_to_last(h, quoted, qlen);
			break;
		}
		case 7:
			reply_to_last(h, arg, len);
			break;
		case 9:
			if (peers[0].fd >= 0)
				shutdown(peers[0].fd, SHUT_WR);
			break;
		case 10:
			if (peers[0].fd >= 0) {
				close(peers[0].fd);
				peers[0].fd = -1;
			}
			break;
		}
		run_loop(h, peers, 2);
	}

	outbox_close(h->d.outbox);
	h->d.outbox = NULL;
	remove_outbox(outbox_path);
	session_stop(h->pc.sess);
	run_loop(h, peers, 2);
	session_free(h->pc.sess);
	ipc_server_free(h->d.ipc, 0);	/* the clock is fake: no waiting */
	for (size_t i = 0; i < 2; i++)
		if (peers[i].fd >= 0)
			close(peers[i].fd);
	tq_free(&h->d.tq);
	event_base_free(h->d.base);
	config_free(h->d.conf);
	free(h);
	return 0;
}
