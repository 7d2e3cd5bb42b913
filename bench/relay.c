/* SPDX-License-Identifier: MIT */
/*
 * bench/relay: the floor of any hop. It copies bytes between each client
 * it accepts on 127.0.0.1 and a connection of its own to the server, and
 * does nothing else: one epoll loop, a read and a write per wake-up, no
 * parsing. Run the floor's client through it and the difference to the
 * floor is what a process in the middle costs on this machine (two more
 * wake-ups per round trip), whatever it does.
 *
 *   relay SERVER_PORT
 *
 * Prints "PORT\n" once it listens; serves until its stdin closes.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PAIRS 64
#define BUF_SIZE 65536

/* One direction of a pair: what is read from `from` is written to `to`. */
struct pair;
struct pipe_half {
	int from, to;
	struct pair *pair;
	char buf[BUF_SIZE];
};

struct pair {
	struct pipe_half up, down;	/* client to server, server to client */
	int open;
};

static void
die(const char *what)
{
	fprintf(stderr, "relay: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int
tcp_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		die("socket");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static struct sockaddr_in
loopback(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* An event carries the half to serve, or the listener's or stdin's tag. */
static void
watch(int ep, int fd, uint32_t events, void *half)
{
	struct epoll_event ev = { .events = events, .data.ptr = half };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		die("epoll_ctl");
}

static void
close_pair(struct pair *p)
{
	close(p->up.from);
	close(p->down.from);
	p->open = 0;
}

/* Reads what there is and writes it through, blocking until it is taken:
 * a side that reads slowly holds up the loop, which is the backpressure a
 * benchmark (one pair at a time) needs and all the relay does. */
static int
relay_half(struct pipe_half *h)
{
	ssize_t n = read(h->from, h->buf, sizeof(h->buf));

	if (n <= 0)
		return n == 0 || (errno != EAGAIN && errno != EINTR) ? -1 : 0;
	for (size_t off = 0; off < (size_t)n;) {
		ssize_t w = write(h->to, h->buf + off, (size_t)n - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += (size_t)w;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static struct pair pairs[MAX_PAIRS];
	static char listener_tag, stdin_tag;

	if (argc != 2 || atoi(argv[1]) <= 0) {
		fprintf(stderr, "usage: relay SERVER_PORT\n");
		return 2;
	}
	int server_port = atoi(argv[1]);
	int lfd = tcp_socket(), one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = loopback(0);
	socklen_t alen = sizeof(a);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 16) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) != 0)
		die("listen");
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	watch(ep, lfd, EPOLLIN, &listener_tag);
	watch(ep, 0, EPOLLIN, &stdin_tag);
	printf("%d\n", ntohs(a.sin_port));
	fflush(stdout);

	for (;;) {
		struct epoll_event evs[16];
		int n = epoll_wait(ep, evs, 16, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;
			if (tag == &stdin_tag)
				return 0;
			if (tag == &listener_tag) {
				int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
				if (c < 0)
					continue;
				struct pair *p = NULL;
				for (int j = 0; j < MAX_PAIRS && p == NULL; j++)
					if (!pairs[j].open)
						p = &pairs[j];
				int s = tcp_socket();
				struct sockaddr_in to = loopback(server_port);
				if (p == NULL || connect(s, (struct sockaddr *)&to, sizeof(to)) != 0) {
					close(c);
					close(s);
					continue;
				}
				setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				*p = (struct pair){ .up = { .from = c, .to = s, .pair = p },
						    .down = { .from = s, .to = c, .pair = p },
						    .open = 1 };
				watch(ep, c, EPOLLIN, &p->up);
				watch(ep, s, EPOLLIN, &p->down);
				continue;
			}
			struct pipe_half *h = tag;
			struct pair *p = h->pair;
			if (p->open && relay_half(h) < 0)
				close_pair(p);	/* closing drops both from the epoll set */
		}
	}
}
