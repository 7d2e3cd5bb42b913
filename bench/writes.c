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
 *   writes K RATE M
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
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

int
main(int argc, char **argv)
{
	static int w[MAX_SUBS], r[MAX_SUBS];
	static char buf[65536];
	struct epoll_event ready[256];

	if (argc != 4) {
		fprintf(stderr, "usage: writes K RATE M\n");
		return 2;
	}
	long k = atol(argv[1]), rate = atol(argv[2]), m = atol(argv[3]);
	if (k < 1 || k > MAX_SUBS || rate < 1 || m < 1) {
		fprintf(stderr, "writes: K from 1 to %d, RATE and M positive\n", MAX_SUBS);
		return 2;
	}
	for (long i = 0; i < k; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
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
		writer(w, k, rate, m);
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	for (long i = 0; i < k; i++) {
		close(w[i]);
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = r[i] };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, r[i], &ev) != 0)
			die("epoll_ctl");
	}
	long lines = 0, open = k;
	uint64_t reader_c0 = cpu_ns();
	while (open > 0) {
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
