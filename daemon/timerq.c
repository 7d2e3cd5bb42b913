/* SPDX-License-Identifier: MIT */
#include "timerq.h"

#include "xmalloc.h"

#include <stdlib.h>

void
tq_init(struct timerq *q)
{
	q->now = 0;
	q->heap = NULL;
	q->len = q->cap = 0;
}

void
tq_free(struct timerq *q)
{
	for (size_t i = 0; i < q->len; i++)
		q->heap[i]->slot = 0;
	free(q->heap);
	q->heap = NULL;
	q->len = q->cap = 0;
}

void
tq_timer_init(struct tq_timer *t, tq_fn fn, void *arg)
{
	t->when = 0;
	t->slot = 0;
	t->fn = fn;
	t->arg = arg;
}

static void
place(struct timerq *q, size_t i, struct tq_timer *t)
{
	q->heap[i] = t;
	t->slot = i + 1;
}

static void
sift_up(struct timerq *q, size_t i)
{
	struct tq_timer *t = q->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (q->heap[parent]->when <= t->when)
			break;
		place(q, i, q->heap[parent]);
		i = parent;
	}
	place(q, i, t);
}

static void
sift_down(struct timerq *q, size_t i)
{
	struct tq_timer *t = q->heap[i];

	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= q->len)
			break;
		if (child + 1 < q->len && q->heap[child + 1]->when < q->heap[child]->when)
			child++;
		if (t->when <= q->heap[child]->when)
			break;
		place(q, i, q->heap[child]);
		i = child;
	}
	place(q, i, t);
}

void
tq_cancel(struct timerq *q, struct tq_timer *t)
{
	size_t i;
	struct tq_timer *last;

	if (t->slot == 0)
		return;
	i = t->slot - 1;
	t->slot = 0;
	last = q->heap[--q->len];
	if (i == q->len)
		return;
	place(q, i, last);
	if (i > 0 && q->heap[(i - 1) / 2]->when > last->when)
		sift_up(q, i);
	else
		sift_down(q, i);
}

void
tq_arm(struct timerq *q, struct tq_timer *t, uint64_t ms)
{
	tq_cancel(q, t);
	t->when = q->now + ms;
	if (q->len == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 64;
		q->heap = xrealloc(q->heap, q->cap * sizeof(*q->heap));
	}
	place(q, q->len++, t);
	sift_up(q, q->len - 1);
}

size_t
tq_run(struct timerq *q, uint64_t now)
{
	size_t fired = 0;

	if (now > q->now)
		q->now = now;
	while (q->len > 0 && q->heap[0]->when <= q->now) {
		struct tq_timer *t = q->heap[0];
		tq_cancel(q, t);
		fired++;
		t->fn(t, t->arg);
	}
	return fired;
}

uint64_t
tq_next(const struct timerq *q)
{
	return q->len ? q->heap[0]->when : UINT64_MAX;
}
