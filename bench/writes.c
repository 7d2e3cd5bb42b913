/* SPDX-License-Identifier: MIT */
/*
 * bench/writes: the floor of a fan-out over Unix sockets. A writer sends
 * M lines at RATE per second, one write() per subscriber per line, to K
 * socketpairs; a reader process waits on them all with epoll, as the
 * libphxd peer does. What the writer spends per copy is what phxd
 * cannot go below when messages arrive one at a time (one write per
 * client batch, a batch of one). With one subscriber it is also what a
 * wake-up costs: a process waiting on a socket, woken by another's
 * write. Prints one JSON line: cpu_ns is the writer's, reader_cpu_ns
 * the reader's, the latencies the reader's.
 *
 * Given bench/hop's socket and topic, the same lines take phxd's path
 * instead: the writer pushes each to the server through the hop, as a
 * broadcast, and waits for the replies; the K subscribers are the hop's,
 * which writes each broadcast to each of them.
 *
 *   writes K RATE M [HOP_SOCKET TOPIC]
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

#define MAX_SUBS 1100

static void
die(const char *what)
{
	fprintf(stderr, "writes: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void
writer(const int *fds, long k, long rate, long m)
{
	uint64_t t0 = now_ns();

	/* each line stamped with when it was due (stats.h) */
	for (long seq = 0; seq < m; seq++) {
		uint64_t due = due_ns(t0, seq, rate);
		sleep_until_ns(due);
		char line[192];
		int n = snprintf(line, sizeof(line),
				 "{\"sub\":1,\"topic\":\"rooms:fan\",\"event\":\"broadcast\","
				 "\"payload\":{\"t\":%" PRIu64 ",\"seq\":%ld}}\n", due, seq);
		for (long i = 0; i < k; i++)
			if (write(fds[i], line, (size_t)n) != n)
				die("write");
	}
	_exit(0);
}

static int
connect_hop(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		die(path);
	}
	strcpy(sa.sun_path, path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		die(path);
	return fd;
}

/* Lines (replies) in what a read of fd finds, -1 at its end. */
static long
read_lines(int fd, int flags)
{
	char buf[65536];
	ssize_t n = recv(fd, buf, sizeof(buf), flags);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	long lines = 0;
	for (char *p = buf; (p = memchr(p, '\n', (size_t)(buf + n - p))) != NULL; p++)
		lines++;
	return lines;
}

/* Sends a line whole, taking in replies while the hop is busy: blocked in
 * a write while the hop is blocked writing it a reply, the sender and the
 * hop would wait for each other for ever. */
static long
send_line(int fd, const char *line, size_t len)
{
	long replies = 0, got;

	for (size_t off = 0; off < len;) {
		ssize_t w = send(fd, line + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			die("write");
		struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			die("poll");
		if ((got = read_lines(fd, MSG_DONTWAIT)) < 0)
			die("the hop closed");
		replies += got;
	}
	if ((got = read_lines(fd, MSG_DONTWAIT)) < 0)
		die("the hop closed");
	return replies + got;
}

/* The writer through bench/hop: each line a Phoenix broadcast, pushed as
 * phxd's sender pushes it, its reply awaited. */
static void
hop_writer(const char *path, const char *topic, long rate, long m)
{
	int fd = connect_hop(path);
	uint64_t t0 = now_ns();
	long replies = 0, got;

	for (long seq = 0; seq < m; seq++) {
		uint64_t due = due_ns(t0, seq, rate);
		sleep_until_ns(due);
		char line[256];
		int n = snprintf(line, sizeof(line),
				 "[\"1\",\"%ld\",\"%s\",\"broadcast\",{\"t\":%" PRIu64 ",\"seq\":%ld}]\n",
				 seq + 2, topic, due, seq);
		replies += send_line(fd, line, (size_t)n);
	}
	while (replies < m && (got = read_lines(fd, 0)) >= 0)
		replies += got;
	_exit(replies == m ? 0 : 1);
}

/* A subscriber of the hop's, once the hop has it. */
static int
hop_subscriber(const char *path)
{
	int fd = connect_hop(path);
	char ok[3];

	if (write(fd, "sub\n", 4) != 4 || recv(fd, ok, 3, MSG_WAITALL) != 3 ||
	    memcmp(ok, "ok\n", 3) != 0)
		die("subscribe");
	return fd;
}

int
main(int argc, char **argv)
{
	static int w[MAX_SUBS], r[MAX_SUBS];
	static char buf[65536];
	struct epoll_event ready[256];

	if (argc != 4 && argc != 6) {
		fprintf(stderr, "usage: writes K RATE M [HOP_SOCKET TOPIC]\n");
		return 2;
	}
	const char *hop = argc == 6 ? argv[4] : NULL, *topic = argc == 6 ? argv[5] : NULL;
	long k = atol(argv[1]), rate = atol(argv[2]), m = atol(argv[3]);
	if (k < 1 || k > MAX_SUBS || rate < 1 || m < 1) {
		fprintf(stderr, "writes: K from 1 to %d, RATE and M positive\n", MAX_SUBS);
		return 2;
	}
	for (long i = 0; i < k; i++) {
		int sv[2] = { -1, -1 };
		if (hop != NULL)
			sv[1] = hop_subscriber(hop);
		else if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
			die("socketpair");
		w[i] = sv[0];
		r[i] = sv[1];
	}
	struct lat lat;
	lat_init_fanout(&lat, (size_t)(k * m), m);
	uint64_t t0 = now_ns();
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		for (long i = 0; i < k; i++)
			close(r[i]);
		if (hop != NULL)
			hop_writer(hop, topic, rate, m);
		writer(w, k, rate, m);
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	for (long i = 0; i < k; i++) {
		if (w[i] >= 0)
			close(w[i]);
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = r[i] };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, r[i], &ev) != 0)
			die("epoll_ctl");
	}
	long lines = 0, open = k;
	uint64_t reader_c0 = cpu_ns();
	/* a hop's subscribers stay open: the run ends with the last copy */
	while (open > 0 && lines < k * m) {
		int nready = epoll_wait(ep, ready, (int)(sizeof(ready) / sizeof(ready[0])), 60000);
		if (nready <= 0)
			break;
		for (int i = 0; i < nready; i++) {
			int fd = ready[i].data.fd;
			ssize_t n = read(fd, buf, sizeof(buf) - 1);
			if (n <= 0) {
				close(fd);	/* and out of the epoll set */
				open--;
				continue;
			}
			buf[n] = '\0';
			uint64_t at = now_ns();
			/* each small write is one segment, and a read takes whole ones */
			for (char *line = buf, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1)
				lines += lat_add_copy(&lat, line, (size_t)(nl - line), at);
		}
	}
	uint64_t reader_cpu = cpu_ns() - reader_c0;
	struct rusage ru;
	int status;
	if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "writes: the writer failed\n");
		return 1;
	}
	uint64_t cpu = rusage_cpu_ns(&ru);
	print_result_with(k * m, now_ns() - t0, cpu, &lat, ru.ru_maxrss, k * m - lines,
			  "reader_cpu_ns", reader_cpu);
	lat_free(&lat);
	return 0;
}
