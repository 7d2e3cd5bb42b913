/* SPDX-License-Identifier: MIT */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void
sleep_until_ns(uint64_t t)
{
	uint64_t now;

	while ((now = now_ns()) < t) {
		struct timespec ts = { (time_t)((t - now) / 1000000000ull),
				       (long)((t - now) % 1000000000ull) };
		nanosleep(&ts, NULL);
	}
}

uint64_t
due_ns(uint64_t t0, long seq, long rate)
{
	return t0 + (uint64_t)seq * 1000000000ull / (uint64_t)rate;
}

uint64_t
cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t
rusage_cpu_ns(const struct rusage *ru)
{
	return (uint64_t)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000000000ull +
	       (uint64_t)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) * 1000ull;
}

long
max_rss_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

void
lat_init(struct lat *l, size_t cap)
{
	l->v = calloc(cap ? cap : 1, sizeof(*l->v));
	l->n = 0;
	l->cap = cap;
	l->msgs = NULL;
	l->m = 0;
	if (l->v == NULL)
		abort();
}

void
lat_add(struct lat *l, uint64_t ns)
{
	if (l->n < l->cap)
		l->v[l->n++] = ns;
}

void
lat_free(struct lat *l)
{
	free(l->v);
	free(l->msgs);
	l->v = NULL;
	l->msgs = NULL;
}

void
lat_init_fanout(struct lat *l, size_t cap, long m)
{
	lat_init(l, cap);
	l->msgs = calloc(m > 0 ? (size_t)m : 1, sizeof(*l->msgs));
	l->m = m;
	if (l->msgs == NULL)
		abort();
}

bool
lat_add_copy(struct lat *l, const char *s, size_t len, uint64_t at)
{
	const char *t = memmem(s, len, "\"t\":", 4);

	if (t == NULL)
		return false;
	uint64_t due = strtoull(t + 4, NULL, 10);
	lat_add(l, at - due);
	const char *q = memmem(s, len, "\"seq\":", 6);
	long seq = q != NULL ? strtol(q + 6, NULL, 10) : -1;
	if (seq < 0 || seq >= l->m)
		return true;
	struct fan_msg *f = &l->msgs[seq];
	if (f->first_at == 0) {
		f->first_at = at;
		f->first_ns = at - due;
	}
	f->last_at = at;
	return true;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Over the messages that arrived: the p99 of their first copies'
 * latencies and of their spreads (struct fan_msg). */
static void
print_messages(struct lat *l)
{
	uint64_t *first = calloc((size_t)l->m, sizeof(*first));
	uint64_t *spread = calloc((size_t)l->m, sizeof(*spread));
	size_t n = 0;

	if (first == NULL || spread == NULL)
		abort();
	for (long i = 0; i < l->m; i++) {
		if (l->msgs[i].first_at == 0)
			continue;
		first[n] = l->msgs[i].first_ns;
		spread[n++] = l->msgs[i].last_at - l->msgs[i].first_at;
	}
	if (n > 0) {
		qsort(first, n, sizeof(*first), cmp_u64);
		qsort(spread, n, sizeof(*spread), cmp_u64);
		printf(",\"first_p99_ns\":%llu,\"spread_p99_ns\":%llu",
		       (unsigned long long)first[n * 99 / 100],
		       (unsigned long long)spread[n * 99 / 100]);
	}
	free(first);
	free(spread);
}

void
print_result(long n, uint64_t wall_ns, uint64_t cpu, struct lat *l, long rss_kib, long dropped)
{
	print_result_with(n, wall_ns, cpu, l, rss_kib, dropped, NULL, 0);
}

void
print_result_with(long n, uint64_t wall_ns, uint64_t cpu, struct lat *l, long rss_kib,
		  long dropped, const char *key, uint64_t value)
{
	printf("{\"n\":%ld,\"wall_ns\":%llu,\"cpu_ns\":%llu,\"rss_kib\":%ld,\"dropped\":%ld", n,
	       (unsigned long long)wall_ns, (unsigned long long)cpu, rss_kib, dropped);
	if (key != NULL)
		printf(",\"%s\":%llu", key, (unsigned long long)value);
	if (l != NULL && l->n > 0) {
		qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
		printf(",\"p50_ns\":%llu,\"p99_ns\":%llu,\"max_ns\":%llu",
		       (unsigned long long)l->v[l->n / 2],
		       (unsigned long long)l->v[l->n * 99 / 100], (unsigned long long)l->v[l->n - 1]);
	}
	if (l != NULL && l->m > 0)
		print_messages(l);
	printf("}\n");
	fflush(stdout);
}
