/* SPDX-License-Identifier: MIT */
/*
 * metrics_http: GET /metrics over HTTP (evhttp on the main loop). Prometheus
 * asks for OpenMetrics in its Accept header and gets it; anything else gets
 * the Prometheus text format. Requests are small and bounded: headers of
 * 8 KiB, no body, 10 s to send them, GET and HEAD only.
 */
#include "metrics.h"

#include "log.h"
#include "phxd.h"
#include "xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics_http {
	struct phxd *d;
	struct evhttp *http;
};

static bool
wants_openmetrics(struct evhttp_request *req)
{
	const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");

	return accept != NULL && strstr(accept, "application/openmetrics-text") != NULL;
}

static void
serve_metrics(struct evhttp_request *req, void *arg)
{
	struct metrics_http *m = arg;
	struct evbuffer *body;
	bool om;

	om = wants_openmetrics(req);
	body = evbuffer_new();
	if (body == NULL) {
		evhttp_send_error(req, HTTP_SERVUNAVAIL, "out of memory");
		return;
	}
	metrics_render(m->d, body, om);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  om ? METRICS_TYPE_OPENMETRICS : METRICS_TYPE_TEXT);
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void
serve_other(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, HTTP_NOTFOUND, "phxd serves /metrics only");
}

struct metrics_http *
metrics_http_start(struct phxd *d, const char *listen, char *err, size_t errlen)
{
	struct metrics_http *m;
	char addr[INET6_ADDRSTRLEN];
	unsigned short port;

	if (!config_parse_listen(listen, addr, sizeof(addr), &port)) {
		snprintf(err, errlen, "metrics_listen '%s': want ADDRESS:PORT (e.g. 127.0.0.1:9464 "
			 "or [::1]:9464)", listen);
		return NULL;
	}
	m = xcalloc(1, sizeof(*m));
	m->d = d;
	m->http = evhttp_new(d->base);
	if (m->http == NULL)
		fatalx("metrics: out of memory");
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(m->http, 8192);
	evhttp_set_max_body_size(m->http, 0);
	evhttp_set_timeout(m->http, 10);
	evhttp_set_cb(m->http, "/metrics", serve_metrics, m);
	evhttp_set_gencb(m->http, serve_other, m);
	if (evhttp_bind_socket(m->http, addr, port) != 0) {
		snprintf(err, errlen, "metrics_listen %s: cannot listen there (%s)", listen,
			 strerror(errno));
		metrics_http_stop(m);
		return NULL;
	}
	log_info("metrics: serving http://%s/metrics", listen);
	return m;
}

void
metrics_http_stop(struct metrics_http *m)
{
	if (m == NULL)
		return;
	evhttp_free(m->http);
	free(m);
}
