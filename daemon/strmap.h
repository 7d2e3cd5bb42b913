/* SPDX-License-Identifier: MIT */
/*
 * strmap: string-keyed hash map (chained, power-of-two buckets, grows at
 * load 1). Keys are copied; values are the caller's. Used for topics,
 * in-flight refs and subscriptions, so no lookup scans.
 */
#ifndef PHXD_STRMAP_H
#define PHXD_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

struct strmap_entry {
	struct strmap_entry *next;
	size_t hash;
	void *value;
	size_t klen;
	char key[];
};

struct strmap {
	struct strmap_entry **buckets;
	size_t nbuckets, len;
};

void strmap_init(struct strmap *m);
void strmap_free(struct strmap *m);	/* values are not freed */
void *strmap_get(const struct strmap *m, const char *key, size_t klen);
/* Inserts or replaces; returns the previous value or NULL. */
void *strmap_put(struct strmap *m, const char *key, size_t klen, void *value);
void *strmap_del(struct strmap *m, const char *key, size_t klen);

/* Iteration that tolerates deleting the current entry:
 *   for (it = strmap_first(m, &cur); it; it = strmap_next(m, &cur)) */
struct strmap_iter {
	size_t bucket;
	struct strmap_entry *next;
};
struct strmap_entry *strmap_first(const struct strmap *m, struct strmap_iter *it);
struct strmap_entry *strmap_next(const struct strmap *m, struct strmap_iter *it);

#endif
