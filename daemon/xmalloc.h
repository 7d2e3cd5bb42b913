/* SPDX-License-Identifier: MIT */
/*
 * xmalloc: the daemon's allocation policy. Out of memory is fatal in the
 * daemon (there is no sane way to go on); protocol/ and client-lib/ return
 * errors instead and never use these.
 */
#ifndef PHXD_XMALLOC_H
#define PHXD_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
int xasprintf(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
