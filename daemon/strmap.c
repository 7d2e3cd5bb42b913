/* SPDX-License-Identifier: MIT */
#include "strmap.h"

#include "xmalloc.h"

#include <stdlib.h>
#include <string.h>

static size_t
hash_bytes(const char *s, size_t n)
{
	size_t h = (size_t)14695981039346656037ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= (size_t)1099511628211ull;
	}
	return h;
}

void
strmap_init(struct strmap *m)
{
	m->nbuckets = 16;
	m->len = 0;
	m->buckets = xcalloc(m->nbuckets, sizeof(*m->buckets));
}

void
strmap_free(struct strmap *m)
{
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct strmap_entry *e = m->buckets[i], *next;
		for (; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(m->buckets);
	m->buckets = NULL;
	m->nbuckets = m->len = 0;
}

static struct strmap_entry **
find(const struct strmap *m, const char *key, size_t klen, size_t hash)
{
	struct strmap_entry **pp = &m->buckets[hash & (m->nbuckets - 1)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->hash == hash && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0)
			break;
	return pp;
}

void *
strmap_get(const struct strmap *m, const char *key, size_t klen)
{
	struct strmap_entry **pp = find(m, key, klen, hash_bytes(key, klen));

	return *pp ? (*pp)->value : NULL;
}

static void
grow(struct strmap *m)
{
	size_t n = m->nbuckets * 2;
	struct strmap_entry **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < m->nbuckets; i++) {
		struct strmap_entry *e = m->buckets[i], *next;
		for (; e != NULL; e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
}

void *
strmap_put(struct strmap *m, const char *key, size_t klen, void *value)
{
	size_t hash = hash_bytes(key, klen);
	struct strmap_entry **pp = find(m, key, klen, hash), *e;
	void *old;

	if (*pp != NULL) {
		old = (*pp)->value;
		(*pp)->value = value;
		return old;
	}
	e = xmalloc(sizeof(*e) + klen + 1);
	e->next = NULL;
	e->hash = hash;
	e->value = value;
	e->klen = klen;
	memcpy(e->key, key, klen);
	e->key[klen] = '\0';
	*pp = e;
	if (++m->len > m->nbuckets)
		grow(m);
	return NULL;
}

void *
strmap_del(struct strmap *m, const char *key, size_t klen)
{
	struct strmap_entry **pp = find(m, key, klen, hash_bytes(key, klen)), *e = *pp;
	void *value;

	if (e == NULL)
		return NULL;
	*pp = e->next;
	value = e->value;
	free(e);
	m->len--;
	return value;
}

static struct strmap_entry *
advance(const struct strmap *m, struct strmap_iter *it, struct strmap_entry *e)
{
	while (e == NULL && ++it->bucket < m->nbuckets)
		e = m->buckets[it->bucket];
	it->next = e ? e->next : NULL;
	return e;
}

struct strmap_entry *
strmap_first(const struct strmap *m, struct strmap_iter *it)
{
	it->bucket = 0;
	if (m->nbuckets == 0)
		return NULL;
	return advance(m, it, m->buckets[0]);
}

struct strmap_entry *
strmap_next(const struct strmap *m, struct strmap_iter *it)
{
	return advance(m, it, it->next);
}
