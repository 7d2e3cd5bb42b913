/* SPDX-License-Identifier: MIT */
#include "xmalloc.h"

#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *
xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		fatalx("out of memory allocating %zu bytes", size);
	return p;
}

/*
 * glibc before 2.41 serves calloc from its arenas only, never from the
 * per-thread cache that malloc and free use: a small zeroed record costs
 * five times a malloc, and each one freed fills the cache calloc will not
 * take from. Small blocks are malloc'd and cleared here; large ones keep
 * calloc, which gets fresh pages already zero.
 */
#define XCALLOC_SMALL 1024

void *
xcalloc(size_t n, size_t size)
{
	void *p;

	n = n ? n : 1;
	size = size ? size : 1;
	if (n > SIZE_MAX / size)
		fatalx("allocating %zu x %zu bytes overflows", n, size);
	if (n <= XCALLOC_SMALL / size) {
		p = xmalloc(n * size);
		memset(p, 0, n * size);
		return p;
	}
	p = calloc(n, size);
	if (p == NULL)
		fatalx("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

void *
xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);

	if (q == NULL)
		fatalx("out of memory reallocating %zu bytes", size);
	return q;
}

char *
xstrdup(const char *s)
{
	return xmemdup(s, strlen(s) + 1);
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void *
xmemdup(const void *p, size_t n)
{
	void *q = xmalloc(n);

	if (n)
		memcpy(q, p, n);
	return q;
}

int
xasprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(out, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("out of memory formatting a string");
	return n;
}
