/* SPDX-License-Identifier: MIT */
/*
 * bench/peer-libphxd: phxd through libphxd, doing the work of the other
 * peers of bench/run (its own CPU; bench/run adds phxd's). One JSON line.
 *
 *   peer-libphxd SOCKET fire N | notify N | durable N | durable-delivered N | await N |
 *                       receive N | fanout K RATE M
 *
 * Topics (joined by phxd's config): load:bench, rooms:bench, rooms:fan.
 */
#include "client-lib/phxd.h"
#include "stats.h"

#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 1024	/* fire: pushes in flight */
#define MAX_SUBS 1000

static const char *sock;
static long answered, failed, lines;
static struct lat lat;

static void
die(struct phxd_client *c, const char *what)
{
	fprintf(stderr, "peer-libphxd: %s: %s: %s\n", what, c ? phxd_error_code(c) : "",
		c ? phxd_error_message(c) : "");
	exit(1);
}

static struct phxd_client *
connect_or_die(void)
{
	struct phxd_client *c;

	if (phxd_connect(sock, &c) != PHXD_OK)
		die(NULL, "connect");
	return c;
}

static long
server_count(struct phxd_client *c)
{
	char *out = NULL;
	long n;

	if (phxd_push(c, NULL, "load:bench", "count", "{}", 0, PHXD_PUSH_AWAIT, 0, &out) != PHXD_OK)
		die(c, "count");
	n = strtol(strstr(out, ":") + 1, NULL, 10);
	free(out);
	return n;
}

static void
on_answer(void *arg, struct phxd_client *c, int status, const char *result, size_t len)
{
	(void)arg;
	(void)c;
	(void)result;
	(void)len;
	answered++;
	failed += status != PHXD_OK;
}

static void
pump(struct phxd_client *c, int timeout_ms)
{
	struct pollfd pfd = { phxd_fd(c), POLLIN | (phxd_want_write(c) ? POLLOUT : 0), 0 };

	if (poll(&pfd, 1, timeout_ms) > 0 && phxd_dispatch(c) != PHXD_OK)
		die(c, "dispatch");
}

/* n requests, WINDOW of them in flight, until each is answered. */
static void
send_pipelined(struct phxd_client *c, const char *req, long n)
{
	long sent = 0;

	while (sent < n) {
		if (phxd_send(c, req, on_answer, NULL) != PHXD_OK)
			die(c, "send");
		sent++;
		while (sent - answered >= WINDOW)
			pump(c, 10000);
	}
	while (answered < sent)
		pump(c, 10000);
}

static void
fire(long n)
{
	struct phxd_client *c = connect_or_die();
	static const char req[] =
		"{\"op\":\"push\",\"topic\":\"load:bench\",\"event\":\"sink\",\"payload\":{\"n\":1}}";
	long before = server_count(c);
	uint64_t t0 = now_ns(), c0 = cpu_ns();

	send_pipelined(c, req, n);
	while (server_count(c) - before < n)
		;
	print_result(n, now_ns() - t0, cpu_ns() - c0, NULL, max_rss_kib(), failed);
	phxd_disconnect(c);
}

/* The outbox's count of delivered pushes (status.outbox.totals.delivered). */
static long
outbox_delivered(struct phxd_client *c)
{
	char *out = NULL;
	long n = -1;

	if (phxd_status(c, NULL, &out) != PHXD_OK)
		die(c, "status");
	const char *p = strstr(out, "\"delivered\":");
	if (p != NULL)
		n = strtol(p + 12, NULL, 10);
	free(out);
	if (n < 0)
		die(NULL, "no outbox in phxd's status");
	return n;
}

/* Durable pushes, pipelined: until every one is answered "stored", and
 * (delivered) until the server has replied to each. */
static void
durable(long n, bool delivered)
{
	struct phxd_client *c = connect_or_die();
	static const char req[] = "{\"op\":\"push\",\"topic\":\"rooms:bench\",\"event\":"
				  "\"empty_ok\",\"payload\":{\"n\":1},\"durable\":true}";
	long before = outbox_delivered(c);
	uint64_t t0 = now_ns(), c0 = cpu_ns();

	send_pipelined(c, req, n);
	while (delivered && outbox_delivered(c) - before < n)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);	/* status costs phxd */
	print_result(n, now_ns() - t0, cpu_ns() - c0, NULL, max_rss_kib(), failed);
	phxd_disconnect(c);
}

/* Notifications: nothing comes back; the server's count says they went. */
static void
notify(long n)
{
	struct phxd_client *c = connect_or_die();
	long before = server_count(c);
	uint64_t t0 = now_ns(), c0 = cpu_ns();

	for (long i = 0; i < n; i++)
		if (phxd_notify(c, NULL, "load:bench", "sink", "{\"n\":1}", 0, 0) != PHXD_OK)
			die(c, "notify");
	while (server_count(c) - before < n)
		;
	print_result(n, now_ns() - t0, cpu_ns() - c0, NULL, max_rss_kib(), 0);
	phxd_disconnect(c);
}

static void
await_trips(long n)
{
	struct phxd_client *c = connect_or_die();
	uint64_t t0 = now_ns(), c0 = cpu_ns();

	lat_init(&lat, (size_t)n);
	for (long i = 0; i < n; i++) {
		uint64_t t = now_ns();
		char *out = NULL;
		if (phxd_push(c, NULL, "rooms:bench", "ping", "{}", 0, PHXD_PUSH_AWAIT, 0, &out) !=
		    PHXD_OK)
			die(c, "ping");
		free(out);
		lat_add(&lat, now_ns() - t);
	}
	print_result(n, now_ns() - t0, cpu_ns() - c0, &lat, max_rss_kib(), 0);
	phxd_disconnect(c);
}

static void
count_line(void *arg, uint64_t sub, const char *json, size_t len)
{
	(void)arg;
	(void)sub;
	(void)len;
	if (strncmp(json, "{\"type\":\"dropped\"", 17) == 0)
		failed += strtol(strstr(json, "\"count\":") + 8, NULL, 10);
	else
		lines++;
}

static void
receive(long n)
{
	struct phxd_client *c = connect_or_die();
	char flood[128];

	if (phxd_subscribe(c, NULL, "load:bench", NULL, count_line, NULL, NULL) != PHXD_OK)
		die(c, "subscribe");
	snprintf(flood, sizeof(flood), "{\"n\":%ld,\"size\":64}", n);
	uint64_t t0 = now_ns(), c0 = cpu_ns();
	if (phxd_push(c, NULL, "load:bench", "flood", flood, 0, 0, 0, NULL) != PHXD_OK)
		die(c, "flood");
	while (lines + failed < n)
		if (phxd_wait(c, 30000) != PHXD_OK)
			die(c, "wait");
	print_result(n, now_ns() - t0, cpu_ns() - c0, NULL, max_rss_kib(), failed);
	phxd_disconnect(c);
}

static void
fan_line(void *arg, uint64_t sub, const char *json, size_t len)
{
	(void)arg;
	(void)sub;
	if (strncmp(json, "{\"type\":\"dropped\"", 17) == 0) {
		failed += strtol(strstr(json, "\"count\":") + 8, NULL, 10);
		return;
	}
	if (lat_add_copy(&lat, json, len, now_ns()))
		lines++;
}

/* epoll, not poll(2): a reader of a thousand sockets that scanned them
 * all on every wake-up would measure itself more than phxd. */
static void
watch(int ep, struct phxd_client *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, phxd_fd(c), &ev) != 0)
		die(NULL, "epoll_ctl");
}

/*
 * The sender of a fan-out, a process of its own as bench/writes' writer
 * is, so that a push is not held back while the reader of a thousand
 * sockets is busy: it sleeps until a push is due, sends every push due,
 * then takes its answers. Exits 0 once each is answered ok.
 */
static void
fan_sender(long rate, long m)
{
	struct phxd_client *sender = connect_or_die();
	uint64_t t0 = now_ns();
	long sent = 0;

	while (sent < m) {
		sleep_until_ns(due_ns(t0, sent, rate));
		/* every push that is due, stamped with when it was due (stats.h) */
		for (uint64_t now = now_ns(); sent < m && now >= due_ns(t0, sent, rate); sent++) {
			char req[160];
			snprintf(req, sizeof(req),
				 "{\"op\":\"push\",\"topic\":\"rooms:fan\",\"event\":\"broadcast\","
				 "\"payload\":{\"t\":%" PRIu64 ",\"seq\":%ld}}",
				 due_ns(t0, sent, rate), sent);
			if (phxd_send(sender, req, on_answer, NULL) != PHXD_OK)
				die(sender, "send");
		}
		pump(sender, 0);
	}
	for (uint64_t since = now_ns(); answered < m && now_ns() - since < 30000000000ull;)
		pump(sender, 100);
	_exit(answered == m && failed == 0 ? 0 : 1);
}

static void
fanout(long k, long rate, long m)
{
	static struct phxd_client *subs[MAX_SUBS];
	struct epoll_event ready[256];
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (k > MAX_SUBS)
		die(NULL, "too many subscribers");
	if (ep < 0)
		die(NULL, "epoll_create1");
	lat_init_fanout(&lat, (size_t)(k * m), m);
	for (long i = 0; i < k; i++) {
		subs[i] = connect_or_die();
		if (phxd_subscribe(subs[i], NULL, "rooms:fan", NULL, fan_line, NULL, NULL) != PHXD_OK)
			die(subs[i], "subscribe");
		watch(ep, subs[i]);
	}
	uint64_t t0 = now_ns(), c0 = cpu_ns();
	pid_t pid = fork();
	if (pid < 0)
		die(NULL, "fork");
	if (pid == 0)
		fan_sender(rate, m);
	while (lines + failed < k * m && now_ns() - t0 < 60000000000ull) {
		struct timespec ts = { 1, 0 };
		int n = epoll_pwait2(ep, ready, (int)(sizeof(ready) / sizeof(ready[0])), &ts, NULL);
		if (n < 0)
			die(NULL, "epoll_pwait2");
		for (int i = 0; i < n; i++)
			if (phxd_dispatch(ready[i].data.ptr) != PHXD_OK)
				die(ready[i].data.ptr, "dispatch");
	}
	uint64_t wall = now_ns() - t0, cpu = cpu_ns() - c0;
	struct rusage ru;
	int status;
	if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die(NULL, "the sender's pushes were not all answered ok");
	print_result(k * m, wall, cpu + rusage_cpu_ns(&ru), &lat, max_rss_kib(), k * m - lines);
	for (long i = 0; i < k; i++)
		phxd_disconnect(subs[i]);
	close(ep);
}

int
main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: peer-libphxd SOCKET fire N | await N | receive N | "
				"fanout K RATE M\n");
		return 2;
	}
	sock = argv[1];
	long n = atol(argv[3]);
	if (strcmp(argv[2], "fire") == 0)
		fire(n);
	else if (strcmp(argv[2], "notify") == 0)
		notify(n);
	else if (strcmp(argv[2], "durable") == 0 || strcmp(argv[2], "durable-delivered") == 0)
		durable(n, strcmp(argv[2], "durable-delivered") == 0);
	else if (strcmp(argv[2], "await") == 0)
		await_trips(n);
	else if (strcmp(argv[2], "receive") == 0)
		receive(n);
	else if (strcmp(argv[2], "fanout") == 0 && argc == 6)
		fanout(n, atol(argv[4]), atol(argv[5]));
	else
		return 2;
	return 0;
}
