/* SPDX-License-Identifier: MIT */
/* What the C peers of bench/run share: clocks, latencies, the result line. */
#ifndef PHXD_BENCH_STATS_H
#define PHXD_BENCH_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint64_t now_ns(void);		/* CLOCK_MONOTONIC, as every peer's */
void sleep_until_ns(uint64_t t);	/* until now_ns() >= t */
uint64_t cpu_ns(void);		/* this process, user + system */
struct rusage;
uint64_t rusage_cpu_ns(const struct rusage *ru);	/* its user + system */
long max_rss_kib(void);

struct lat {
	uint64_t *v;
	size_t n, cap;
	struct fan_msg *msgs;	/* a fan-out's, by seq (lat_init_fanout) */
	long m;
};
void lat_init(struct lat *l, size_t cap);
void lat_add(struct lat *l, uint64_t ns);
void lat_free(struct lat *l);

/*
 * A fan-out latency runs from when a message was due (its place in the
 * RATE schedule), not from when its sender got to it: a sender behind
 * schedule sends every message due at once, so a backlog anywhere shows
 * as latency instead of quietly lowering the rate (coordinated
 * omission). Every fan-out peer does the same.
 */
uint64_t due_ns(uint64_t t0, long seq, long rate);	/* when message seq is due */

/*
 * A fan-out's latencies are also taken apart per message: when its first
 * copy arrived (the path to the subscribers: the sender's, a hop's and a
 * server's wake-ups), and how long its last copy came after the first
 * (the write pass, and the reader's pace through its sockets). The
 * result line gets the p99 of each over the messages. Each copy's
 * payload carries "t":DUE and "seq":SEQ, in either order (a server may
 * sort the keys).
 */
struct fan_msg {
	uint64_t first_ns, first_at, last_at;
};
void lat_init_fanout(struct lat *l, size_t cap, long m);
/* One copy, its len bytes at s, that came at at; false if it carries
 * no "t" (not a stamped copy: nothing is added). */
bool lat_add_copy(struct lat *l, const char *s, size_t len, uint64_t at);

/* {"n":N,"wall_ns":..,"cpu_ns":..,"p50_ns":..,"p99_ns":..,"max_ns":..,
 *  "rss_kib":..,"dropped":..} on stdout, and for a fan-out
 *  "first_p99_ns":..,"spread_p99_ns":.. */
void print_result(long n, uint64_t wall_ns, uint64_t cpu, struct lat *l, long rss_kib,
		  long dropped);
/* The same with one more field, key: value. */
void print_result_with(long n, uint64_t wall_ns, uint64_t cpu, struct lat *l, long rss_kib,
		       long dropped, const char *key, uint64_t value);

#endif
