/* SPDX-License-Identifier: MIT */
/* What the C peers of bench/run share: clocks, latencies, the result line. */
#ifndef PHXD_BENCH_STATS_H
#define PHXD_BENCH_STATS_H

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
};
void lat_init(struct lat *l, size_t cap);
void lat_add(struct lat *l, uint64_t ns);

/*
 * A fan-out latency runs from when a message was due (its place in the
 * RATE schedule), not from when its sender got to it: a sender behind
 * schedule sends every message due at once, so a backlog anywhere shows
 * as latency instead of quietly lowering the rate (coordinated
 * omission). Every fan-out peer does the same.
 */
uint64_t due_ns(uint64_t t0, long seq, long rate);	/* when message seq is due */

/* {"n":N,"wall_ns":..,"cpu_ns":..,"p50_ns":..,"p99_ns":..,"max_ns":..,
 *  "rss_kib":..,"dropped":..} on stdout */
void print_result(long n, uint64_t wall_ns, uint64_t cpu, struct lat *l, long rss_kib,
		  long dropped);
/* The same with one more field, key: value. */
void print_result_with(long n, uint64_t wall_ns, uint64_t cpu, struct lat *l, long rss_kib,
		       long dropped, const char *key, uint64_t value);

#endif
