/* SPDX-License-Identifier: MIT */
/*
 * bench/wake: what one wake-up costs on this machine, the unit every hop
 * pays. A writer process sends its clock over a socketpair every GAP_US;
 * a reader blocked in read() wakes for each, as phxd does for each event
 * that comes after a quiet moment. Prints one JSON line: cpu_ns is the
 * reader's (a wake-up and a read each), the latencies from the write to
 * the reader running.
 *
 *   wake N GAP_US
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

static void
die(const char *what)
{
	fprintf(stderr, "wake: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void
writer(int fd, long n, long gap_us)
{
	struct timespec gap = { gap_us / 1000000, (gap_us % 1000000) * 1000 };

	for (long i = 0; i < n; i++) {
		nanosleep(&gap, NULL);
		uint64_t t = now_ns();
		if (write(fd, &t, sizeof(t)) != (ssize_t)sizeof(t))
			die("write");
	}
	_exit(0);
}

int
main(int argc, char **argv)
{
	int sv[2], status;

	if (argc != 3) {
		fprintf(stderr, "usage: wake N GAP_US\n");
		return 2;
	}
	long n = atol(argv[1]), gap_us = atol(argv[2]);
	if (n < 1 || gap_us < 1) {
		fprintf(stderr, "wake: N and GAP_US positive\n");
		return 2;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		die("socketpair");
	struct lat lat;
	lat_init(&lat, (size_t)n);
	uint64_t t0 = now_ns(), c0 = cpu_ns();
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(sv[1]);
		writer(sv[0], n, gap_us);
	}
	close(sv[0]);
	long got = 0;
	for (;;) {
		uint64_t t;
		ssize_t r = read(sv[1], &t, sizeof(t));
		if (r == 0)
			break;
		if (r < 0 && errno == EINTR)
			continue;
		/* each 8-byte write is one segment, and a read takes whole ones */
		if (r != (ssize_t)sizeof(t))
			die("read");
		lat_add(&lat, now_ns() - t);
		got++;
	}
	uint64_t cpu = cpu_ns() - c0;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "wake: the writer failed\n");
		return 1;
	}
	print_result(n, now_ns() - t0, cpu, &lat, max_rss_kib(), n - got);
	free(lat.v);
	return 0;
}
