/* SPDX-License-Identifier: MIT */
/*
 * phxd-bench: measures phxd against the performance budget of the design
 * (client + daemon CPU per push and per received message, await round
 * trip, fan-out latency) and prints a table. It starts phxd-testserver and
 * phxd itself; the test server's own CPU is not counted (it stands for the
 * Phoenix server).
 *
 *   make bench        (or: bench/phxd-bench BUILDDIR)
 *
 * Every loop is bounded; the whole run takes a few seconds.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PUSHES 102400	/* a multiple of the batch */
#define FLOOD 100000
#define ROUND_TRIPS 2000
#define FANOUT_CLIENTS 100
#define FANOUT_MESSAGES 200
#define LINES 100000

static char dir[] = "/tmp/phxd-bench-XXXXXX";
static pid_t ts_pid, phxd_pid;

static noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static noreturn void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("phxd-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (phxd_pid > 0)
		kill(phxd_pid, SIGKILL);
	if (ts_pid > 0)
		kill(ts_pid, SIGKILL);
	exit(1);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU (user + system) of a process, in ns. */
static uint64_t
proc_cpu_ns(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long ut, st;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL || fgets(buf, sizeof(buf), f) == NULL)
		die("cannot read %s", path);
	fclose(f);
	char *p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
				&st) != 2)
		die("cannot parse %s", path);
	return (uint64_t)(ut + st) * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

static uint64_t
self_cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

static pid_t
spawn(char *const argv[], const char *out_path)
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int
unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write: %s", strerror(errno));
		buf += n;
		len -= (size_t)n;
	}
}

/* A buffered line reader. */
struct reader {
	int fd;
	char buf[1 << 20];
	size_t start, len;
};

/* Counts complete lines that arrive within the deadline (ns, absolute). */
static long
read_lines(struct reader *r, long want, uint64_t deadline, void (*each)(const char *, size_t, void *),
	   void *arg)
{
	long got = 0;

	while (got < want) {
		char *nl = memchr(r->buf + r->start, '\n', r->len - r->start);
		if (nl != NULL) {
			size_t n = (size_t)(nl - (r->buf + r->start));
			if (each)
				each(r->buf + r->start, n, arg);
			r->start += n + 1;
			got++;
			continue;
		}
		memmove(r->buf, r->buf + r->start, r->len - r->start);
		r->len -= r->start;
		r->start = 0;
		uint64_t now = now_ns();
		if (now >= deadline)
			break;
		struct pollfd pfd = { r->fd, POLLIN, 0 };
		if (poll(&pfd, 1, (int)((deadline - now) / 1000000 + 1)) <= 0)
			continue;
		ssize_t n = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
		if (n <= 0)
			die("phxd closed the connection");
		r->len += (size_t)n;
	}
	return got;
}

static void
show(const char *line, size_t len, void *arg)
{
	(void)arg;
	if (getenv("BENCH_DEBUG"))
		fprintf(stderr, "%.*s\n", (int)len, line);
}

static void
request(struct reader *r, const char *line)
{
	write_all(r->fd, line, strlen(line));
	if (read_lines(r, 1, now_ns() + 10000000000ull, show, NULL) != 1)
		die("no answer to %s", line);
}

/* PHXD_BENCH_ONLY=receive (say) runs one measure, for profiling. */
static bool
wanted(const char *name)
{
	const char *only = getenv("PHXD_BENCH_ONLY");
	return only == NULL || strcmp(only, name) == 0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void
row(const char *what, double value, const char *unit, const char *budget, bool ok)
{
	printf("| %-44s | %10.1f %-4s | %-12s | %-4s |\n", what, value, unit, budget,
	       ok ? "ok" : "over");
}

struct joined_ctx {
	int joined;
};

static void
count_joined(const char *line, size_t len, void *arg)
{
	struct joined_ctx *jc = arg;
	const char *p = line, *end = line + len;

	while ((p = memmem(p, (size_t)(end - p), "\"state\":\"joined\"", 16)) != NULL) {
		jc->joined++;
		p += 16;
	}
}

struct fan_ctx {
	uint64_t *lat;
	size_t n;
	uint64_t *sent_at;
};

static void
fan_line(const char *line, size_t len, void *arg)
{
	struct fan_ctx *fc = arg;
	const char *p = memmem(line, len, "\"seq\":", 6);

	if (p == NULL)
		return;
	long seq = strtol(p + 6, NULL, 10);
	if (seq >= 0 && seq < FANOUT_MESSAGES)
		fc->lat[fc->n++] = now_ns() - fc->sent_at[seq];
}

int
main(int argc, char **argv)
{
	const char *build = argc > 1 ? argv[1] : ".";
	char ts_bin[512], phxd_bin[512], path[600], conf[600], sock[600];
	int port = 0;

	signal(SIGPIPE, SIG_IGN);
	if (mkdtemp(dir) == NULL)
		die("mkdtemp: %s", strerror(errno));
	snprintf(ts_bin, sizeof(ts_bin), "%s/phxd-testserver", build);
	snprintf(phxd_bin, sizeof(phxd_bin), "%s/phxd", build);

	/* the test server on a free port */
	snprintf(path, sizeof(path), "%s/testserver.out", dir);
	char *ts_argv[] = { ts_bin, "--port", "0", "--max-channels", "0", NULL };
	ts_pid = spawn(ts_argv, path);
	for (int i = 0; i < 100 && port == 0; i++) {
		usleep(20000);
		FILE *f = fopen(path, "r");
		char line[256];
		if (f && fgets(line, sizeof(line), f)) {
			char *c = strrchr(line, ':');
			if (c)
				port = atoi(c + 1);
		}
		if (f)
			fclose(f);
	}
	if (port == 0)
		die("phxd-testserver did not start (%s)", ts_bin);

	snprintf(conf, sizeof(conf), "%s/phxd.conf", dir);
	snprintf(sock, sizeof(sock), "%s/phxd.sock", dir);
	FILE *f = fopen(conf, "w");
	fprintf(f, "[phxd]\nlog_level = warn\nclient_buffer_bytes = 268435456\n"
		   "[connection bench]\nurl = ws://127.0.0.1:%d/socket\npush_buffer = 200000\n"
		   "join = rooms:bench\njoin = load:bench\njoin = rooms:fan\n", port);
	fclose(f);
	snprintf(path, sizeof(path), "%s/phxd.log", dir);
	char *phxd_argv[] = { phxd_bin, "-c", conf, "-s", sock, NULL };
	phxd_pid = spawn(phxd_argv, path);

	struct reader *r = calloc(1, sizeof(*r));
	for (int i = 0; i < 200 && (r->fd = unix_connect(sock)) < 0; i++)
		usleep(20000);
	if (r->fd < 0)
		die("phxd did not start (%s)", phxd_bin);
	/* wait for the joins */
	for (int i = 0;; i++) {
		struct joined_ctx jc = { 0 };
		write_all(r->fd, "{\"id\":0,\"op\":\"status\"}\n", 23);
		if (read_lines(r, 1, now_ns() + 5000000000ull, count_joined, &jc) != 1)
			die("no status from phxd");
		if (jc.joined == 3)
			break;
		if (i == 200)
			die("topics not joined");
		usleep(20000);
	}

	printf("phxd-bench: %d pushes, %d received messages, %d round trips, %d x %d fan-out\n\n",
	       PUSHES, FLOOD, ROUND_TRIPS, FANOUT_CLIENTS, FANOUT_MESSAGES);
	printf("| %-44s | %-15s | %-12s | %-4s |\n", "measure (client + daemon)", "phxd", "budget", "");
	printf("|%s|%s|%s|%s|\n", "----------------------------------------------",
	       "-----------------", "--------------", "------");

	/* 1. fire-and-forget pushes, pipelined */
	if (wanted("push")) {
		_Static_assert(PUSHES % 256 == 0, "whole batches");
		const char *line = "{\"id\":1,\"op\":\"push\",\"topic\":\"load:bench\",\"event\":\"sink\","
				   "\"payload\":{\"n\":1}}\n";
		size_t len = strlen(line), batch = 256;
		char *buf = malloc(len * batch);
		for (size_t i = 0; i < batch; i++)
			memcpy(buf + i * len, line, len);
		uint64_t cpu0 = proc_cpu_ns(phxd_pid) + self_cpu_ns(), t0 = now_ns();
		long answered = 0;
		for (long sent = 0; sent < PUSHES; sent += (long)batch) {
			write_all(r->fd, buf, len * batch);
			answered += read_lines(r, sent + (long)batch - answered - 4096 > 0
							  ? sent + (long)batch - answered - 4096 : 0,
					       now_ns() + 10000000000ull, NULL, NULL);
		}
		answered += read_lines(r, PUSHES - answered, now_ns() + 30000000000ull, NULL, NULL);
		uint64_t wall = now_ns() - t0, cpu = proc_cpu_ns(phxd_pid) + self_cpu_ns() - cpu0;
		if (answered != PUSHES)
			die("only %ld of %d pushes answered", answered, PUSHES);
		row("CPU per push (fire)", (double)cpu / PUSHES / 1000.0, "us", "<= 6 us",
		    (double)cpu / PUSHES <= 6000.0);
		row("push throughput", (double)PUSHES / ((double)wall / 1e9) / 1000.0, "k/s", "", true);
		free(buf);
	}

	/* 2. received messages, one subscriber */
	if (wanted("receive")) {
		struct reader *s = calloc(1, sizeof(*s));
		s->fd = unix_connect(sock);
		request(s, "{\"id\":1,\"op\":\"subscribe\",\"topic\":\"load:bench\"}\n");
		char flood[256];
		snprintf(flood, sizeof(flood),
			 "{\"id\":2,\"op\":\"push\",\"topic\":\"load:bench\",\"event\":\"flood\","
			 "\"payload\":{\"n\":%d,\"size\":64}}\n", FLOOD);
		uint64_t cpu0 = proc_cpu_ns(phxd_pid) + self_cpu_ns(), t0 = now_ns();
		request(r, flood);
		long got = read_lines(s, FLOOD, now_ns() + 60000000000ull, NULL, NULL);
		uint64_t wall = now_ns() - t0, cpu = proc_cpu_ns(phxd_pid) + self_cpu_ns() - cpu0;
		if (got != FLOOD)
			die("only %ld of %d messages arrived", got, FLOOD);
		row("CPU per received message (1 subscriber)", (double)cpu / FLOOD / 1000.0, "us",
		    "<= 8 us", (double)cpu / FLOOD <= 8000.0);
		row("receive throughput", (double)FLOOD / ((double)wall / 1e9) / 1000.0, "k/s", "", true);
		close(s->fd);
		free(s);
	}

	/* 3. await round trips */
	if (wanted("await")) {
		static uint64_t rtt[ROUND_TRIPS];
		const char *line = "{\"id\":3,\"op\":\"push\",\"topic\":\"rooms:bench\",\"event\":\"ping\","
				   "\"await\":true}\n";
		for (int i = 0; i < ROUND_TRIPS; i++) {
			uint64_t t0 = now_ns();
			request(r, line);
			rtt[i] = now_ns() - t0;
		}
		qsort(rtt, ROUND_TRIPS, sizeof(rtt[0]), cmp_u64);
		row("await round trip p50", (double)rtt[ROUND_TRIPS / 2] / 1000.0, "us", "<= 100 us",
		    rtt[ROUND_TRIPS / 2] <= 100000);
		row("await round trip p99", (double)rtt[ROUND_TRIPS * 99 / 100] / 1000.0, "us", "", true);
	}

	/* 4. fan-out to 100 subscribers */
	if (wanted("fanout")) {
		static struct reader subs[FANOUT_CLIENTS];
		static uint64_t sent_at[FANOUT_MESSAGES];
		static uint64_t lat[FANOUT_CLIENTS * FANOUT_MESSAGES];
		struct fan_ctx fc = { lat, 0, sent_at };
		for (int i = 0; i < FANOUT_CLIENTS; i++) {
			subs[i].fd = unix_connect(sock);
			if (subs[i].fd < 0)
				die("cannot connect subscriber %d", i);
			request(&subs[i], "{\"id\":1,\"op\":\"subscribe\",\"topic\":\"rooms:fan\"}\n");
		}
		for (int m = 0; m < FANOUT_MESSAGES; m++) {
			char line[256];
			snprintf(line, sizeof(line),
				 "{\"id\":4,\"op\":\"push\",\"topic\":\"rooms:fan\",\"event\":\"broadcast\","
				 "\"payload\":{\"seq\":%d}}\n", m);
			sent_at[m] = now_ns();
			write_all(r->fd, line, strlen(line));
			for (int i = 0; i < FANOUT_CLIENTS; i++)
				if (read_lines(&subs[i], 1, now_ns() + 5000000000ull, fan_line, &fc) != 1)
					die("subscriber %d missed message %d", i, m);
			read_lines(r, 1, now_ns() + 5000000000ull, NULL, NULL);
		}
		qsort(lat, fc.n, sizeof(lat[0]), cmp_u64);
		row("fan-out to 100 subscribers, p50", (double)lat[fc.n / 2] / 1000.0, "us", "", true);
		row("fan-out to 100 subscribers, p99", (double)lat[fc.n * 99 / 100] / 1000.0, "us",
		    "< 1000 us", lat[fc.n * 99 / 100] < 1000000);
		for (int i = 0; i < FANOUT_CLIENTS; i++)
			close(subs[i].fd);
	}

	/* 5. a shell pipe into phxctl push -l */
	if (wanted("lines")) {
		char phxctl_bin[512];
		int in[2];
		snprintf(phxctl_bin, sizeof(phxctl_bin), "%s/phxctl", build);
		if (pipe(in) != 0)
			die("pipe: %s", strerror(errno));
		uint64_t cpu0 = proc_cpu_ns(phxd_pid), t0 = now_ns();
		pid_t pid = fork();
		if (pid == 0) {
			dup2(in[0], 0);
			close(in[0]);
			close(in[1]);
			execl(phxctl_bin, phxctl_bin, "-q", "-s", sock, "push", "-l", "load:bench", "sink",
			      (char *)NULL);
			_exit(127);
		}
		close(in[0]);
		char line[64];
		FILE *w = fdopen(in[1], "w");
		for (int i = 0; i < LINES; i++) {
			int n = snprintf(line, sizeof(line), "{\"n\":%d}\n", i);
			fwrite(line, 1, (size_t)n, w);
		}
		fclose(w);
		int status;
		struct rusage ru;
		if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
			die("phxctl push -l failed (status %d)", status);
		uint64_t wall = now_ns() - t0;
		uint64_t cpu = proc_cpu_ns(phxd_pid) - cpu0 +
			       (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
			       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
		row("phxctl push -l from a pipe, throughput",
		    (double)LINES / ((double)wall / 1e9) / 1000.0, "k/s", ">= 10 k/s",
		    (double)LINES / ((double)wall / 1e9) >= 10000.0);
		row("phxctl push -l, CPU per line (+ phxd)", (double)cpu / LINES / 1000.0, "us", "",
		    true);
	}

	printf("\nCPU counts phxd and this client, not the test server (it stands for Phoenix).\n");
	kill(phxd_pid, SIGTERM);
	waitpid(phxd_pid, NULL, 0);
	kill(ts_pid, SIGTERM);
	waitpid(ts_pid, NULL, 0);
	close(r->fd);
	free(r);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return 0;
}
