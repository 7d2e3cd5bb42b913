/* SPDX-License-Identifier: MIT */
/*
 * metrics: phxd's counters and gauges as Prometheus text (0.0.4) or
 * OpenMetrics 1.0, and the opt-in HTTP endpoint that serves them
 * (metrics_listen, on the main loop with evhttp).
 */
#ifndef PHXD_METRICS_H
#define PHXD_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct phxd;
struct metrics_http;

#define METRICS_TYPE_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_TYPE_OPENMETRICS "application/openmetrics-text; version=1.0.0; charset=utf-8"

/* Appends every family to out. The two formats differ in how a counter's
 * family is named (OpenMetrics: without _total) and in the closing # EOF. */
void metrics_render(struct phxd *d, struct evbuffer *out, bool openmetrics);

/* Listens on "ADDR:PORT" (an IPv4 address or a bracketed IPv6 one) and
 * serves GET /metrics. NULL with err set when it cannot bind. */
struct metrics_http *metrics_http_start(struct phxd *d, const char *listen, char *err,
					size_t errlen);
void metrics_http_stop(struct metrics_http *m);

#endif
