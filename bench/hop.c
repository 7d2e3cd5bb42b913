/* SPDX-License-Identifier: MIT */
/*
 * bench/hop: the floor of phxd's fan-out path, as bench/relay is the floor
 * of a round trip. One process between local clients on a Unix socket and
 * one websocket to the server, joined to one topic, doing only what the
 * path needs: a client's line goes to the server as one frame, unread; a
 * broadcast from the server goes to every subscriber, one write per copy;
 * any other frame (the reply to a push) goes to the client that sent last.
 * One epoll loop, no JSON, no buffering beyond the socket's. Driven by
 * `bench/writes K RATE M SOCKET TOPIC`, its difference to `one write per
 * copy` is what a process in the middle and a server's round trip cost on
 * this machine, whatever that process does.
 *
 *   hop SERVER_PORT TOPIC SOCKET
 *
 * A client's first line "sub" makes it a subscriber (answered "ok");
 * anything else is a Phoenix message for the server, joined as "1".
 * Prints "ready\n" once joined and listening; serves until stdin closes.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "protocol/ws_codec.h"

#define MAX_CLIENTS 1200
#define RX_SIZE (1 << 20)
#define LINE_MAX_BYTES 4096
#define HEARTBEAT_MS 20000	/* the server closes a websocket idle for 60 s */

static const uint8_t MASK[4] = { 0x5a, 0x17, 0xc3, 0x2e };
static const char KEY[] = "cGh4ZC1iZW5jaC1ob3AhIQ==";

struct client {
	struct client *next_dropped;
	int fd;		/* -1 once dropped */
	bool subscriber;
	size_t len;		/* of a line not yet whole */
	char line[LINE_MAX_BYTES];
};

static struct {
	int server;
	int nclients;
	struct client *subs[MAX_CLIENTS];
	int nsubs;
	struct client *sender;	/* who gets the replies */
	struct client *dropped;	/* freed once no event of the batch can name them */
	uint8_t rx[RX_SIZE];
	size_t rx_len;
} H;

static void
die(const char *what)
{
	fprintf(stderr, "hop: %s: %s\n", what, errno ? strerror(errno) : "failed");
	exit(1);
}

#define WRITE_IOV_MAX 2	/* a header and a payload, or a line and its newline */

/* Writes n (at most WRITE_IOV_MAX) pieces whole; false when the peer is
 * gone. */
static bool
write_all(int fd, const struct iovec *iov, int n)
{
	struct iovec v[WRITE_IOV_MAX];
	size_t left = 0;

	if (n > WRITE_IOV_MAX)
		abort();

	memcpy(v, iov, sizeof(*iov) * (size_t)n);
	for (int i = 0; i < n; i++)
		left += v[i].iov_len;
	while (left > 0) {
		ssize_t w = writev(fd, v, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		left -= (size_t)w;
		for (int i = 0; i < n && w > 0; i++) {
			size_t take = (size_t)w < v[i].iov_len ? (size_t)w : v[i].iov_len;
			v[i].iov_base = (char *)v[i].iov_base + take;
			v[i].iov_len -= take;
			w -= (ssize_t)take;
		}
	}
	return true;
}

/* One masked frame; the payload is masked in place. */
static void
send_frame(enum ws_opcode op, char *payload, size_t len)
{
	uint8_t head[WS_HEADER_MAX];
	size_t hlen = ws_frame_header(head, op, len, MASK);

	ws_mask((uint8_t *)payload, (const uint8_t *)payload, len, MASK);
	if (!write_all(H.server, (struct iovec[]){ { head, hlen }, { payload, len } }, 2))
		die("write to the server");
}

/* The next whole frame in rx: its payload, or NULL when there is none yet. */
static char *
next_frame(size_t *at, struct ws_frame *f)
{
	const char *why;
	enum ws_parse r = ws_frame_parse(H.rx + *at, H.rx_len - *at, f, &why);

	if (r == WS_BAD_FRAME) {
		fprintf(stderr, "hop: the server sent a bad frame: %s\n", why);
		exit(1);
	}
	if (r == WS_NEED_MORE || H.rx_len - *at - f->head < f->len)
		return NULL;
	char *payload = (char *)H.rx + *at + f->head;
	*at += f->head + (size_t)f->len;
	return payload;
}

static void
read_server(void)
{
	ssize_t n = read(H.server, H.rx + H.rx_len, sizeof(H.rx) - H.rx_len);

	if (n <= 0) {
		if (n < 0 && errno == EINTR)
			return;
		die("the server closed the websocket");
	}
	H.rx_len += (size_t)n;
}

static void
drop_client(struct client *c)
{
	for (int i = 0; i < H.nsubs; i++)
		if (H.subs[i] == c)
			H.subs[i] = H.subs[--H.nsubs];
	H.nclients--;
	if (H.sender == c)
		H.sender = NULL;
	close(c->fd);		/* and out of the epoll set */
	c->fd = -1;
	c->next_dropped = H.dropped;
	H.dropped = c;
}

static void
route(const char *p, size_t len)
{
	static const char bcast[] = "[null,null,";
	struct iovec v[2] = { { (void *)p, len }, { "\n", 1 } };

	if (len >= sizeof(bcast) - 1 && memcmp(p, bcast, sizeof(bcast) - 1) == 0) {
		for (int i = 0; i < H.nsubs;)
			if (write_all(H.subs[i]->fd, v, 2))
				i++;
			else
				drop_client(H.subs[i]);	/* the last takes its place */
	} else if (len > 5 && memcmp(p, "[\"1\",", 5) == 0 && H.sender != NULL) {
		if (!write_all(H.sender->fd, v, 2))
			drop_client(H.sender);
	}			/* else the heartbeat's reply */
}

static void
serve_server(void)
{
	struct ws_frame f;
	size_t at = 0;
	char *p;

	read_server();
	while ((p = next_frame(&at, &f)) != NULL) {
		if (f.opcode == WS_TEXT && f.fin)
			route(p, (size_t)f.len);
		else if (f.opcode == WS_PING)
			send_frame(WS_PONG, p, (size_t)f.len);
		else if (f.opcode == WS_CLOSE)
			die("the server closed the websocket");
	}
	memmove(H.rx, H.rx + at, H.rx_len - at);
	H.rx_len -= at;
	if (H.rx_len == sizeof(H.rx))
		die("a frame larger than the buffer");
}

static void
serve_client(struct client *c)
{
	if (c->fd < 0)
		return;
	ssize_t n = read(c->fd, c->line + c->len, sizeof(c->line) - c->len);

	if (n <= 0) {
		if (n < 0 && errno == EINTR)
			return;
		drop_client(c);
		return;
	}
	c->len += (size_t)n;
	char *start = c->line, *end = c->line + c->len, *nl;
	while ((nl = memchr(start, '\n', (size_t)(end - start))) != NULL) {
		if (nl - start == 3 && memcmp(start, "sub", 3) == 0 && !c->subscriber) {
			c->subscriber = true;
			H.subs[H.nsubs++] = c;
			if (!write_all(c->fd, (struct iovec[]){ { "ok\n", 3 } }, 1)) {
				drop_client(c);
				return;
			}
		} else {
			H.sender = c;
			send_frame(WS_TEXT, start, (size_t)(nl - start));
		}
		start = nl + 1;
	}
	c->len = (size_t)(end - start);
	memmove(c->line, start, c->len);
	if (c->len == sizeof(c->line)) {
		fprintf(stderr, "hop: a client's line is longer than %d bytes\n", LINE_MAX_BYTES);
		drop_client(c);
	}
}

/* The opening handshake and the join, before serving anyone. */
static void
connect_server(int port, const char *topic)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	H.server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (H.server < 0 || connect(H.server, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("connect");
	setsockopt(H.server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	char req[512];
	int n = snprintf(req, sizeof(req),
			 "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
			 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", port, KEY);
	if (!write_all(H.server, (struct iovec[]){ { req, (size_t)n } }, 1))
		die("write to the server");
	struct ws_response resp;
	long head;
	while ((head = ws_response_parse((char *)H.rx, H.rx_len, KEY, &resp)) == 0)
		read_server();
	if (head < 0 || resp.status != 101 || !resp.accept_ok)
		die("the server refused the websocket");
	memmove(H.rx, H.rx + head, H.rx_len - (size_t)head);
	H.rx_len -= (size_t)head;

	char join[256];
	n = snprintf(join, sizeof(join), "[\"1\",\"1\",\"%s\",\"phx_join\",{}]", topic);
	send_frame(WS_TEXT, join, (size_t)n);
	struct ws_frame f;
	size_t at = 0;
	char *p;
	while ((p = next_frame(&at, &f)) == NULL)
		read_server();
	if (memmem(p, (size_t)f.len, "\"status\":\"ok\"", 13) == NULL)
		die("the join was refused");
	memmove(H.rx, H.rx + at, H.rx_len - at);
	H.rx_len -= at;
}

int
main(int argc, char **argv)
{
	static char listener_tag, stdin_tag, server_tag;

	if (argc != 4 || atoi(argv[1]) <= 0 || strlen(argv[2]) > 128) {
		fprintf(stderr, "usage: hop SERVER_PORT TOPIC SOCKET\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);	/* a subscriber gone is dropped, not fatal */
	connect_server(atoi(argv[1]), argv[2]);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(argv[3]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "hop: the socket path is too long\n");
		return 2;
	}
	strcpy(sa.sun_path, argv[3]);
	unlink(argv[3]);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 256) != 0)
		die("listen");
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event ev = { .events = EPOLLIN };
	ev.data.ptr = &listener_tag;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.ptr = &stdin_tag;
	epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
	ev.data.ptr = &server_tag;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, H.server, &ev) != 0)
		die("epoll_ctl");
	printf("ready\n");
	fflush(stdout);

	for (unsigned beat = 0;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, HEARTBEAT_MS);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		if (n == 0) {
			char hb[64];
			int len = snprintf(hb, sizeof(hb), "[null,\"h%u\",\"phoenix\",\"heartbeat\",{}]",
					   beat++);
			send_frame(WS_TEXT, hb, (size_t)len);
		}
		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;
			if (tag == &stdin_tag) {
				unlink(argv[3]);
				return 0;
			} else if (tag == &server_tag) {
				serve_server();
			} else if (tag == &listener_tag) {
				int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
				struct client *c;
				if (fd < 0)
					continue;
				if (H.nclients == MAX_CLIENTS || (c = calloc(1, sizeof(*c))) == NULL) {
					close(fd);
					continue;
				}
				c->fd = fd;
				H.nclients++;
				struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0)
					die("epoll_ctl");
			} else {
				serve_client(tag);
			}
		}
		for (struct client *c; (c = H.dropped) != NULL; free(c))
			H.dropped = c->next_dropped;
	}
}
