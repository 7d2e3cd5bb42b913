/* SPDX-License-Identifier: MIT */
/* phxd-testserver: options, the lws context and its single service loop. */

#include "ts.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct ts_server *signal_server;

void
ts_log(struct ts_server *s, const char *fmt, ...)
{
	va_list ap;

	(void)s;
	fputs("phxd-testserver: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
lws_log_emit(int level, const char *line)
{
	fprintf(stderr, "phxd-testserver: lws: %s", line);
}

static void
conn_link(struct ts_server *s, struct ts_conn *c)
{
	c->prev = NULL;
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	s->conn_count++;
}

static void
conn_unlink(struct ts_server *s, struct ts_conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else if (s->conns == c)
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
	s->conn_count--;
}

static int
write_http_refusal(struct lws *wsi, int status)
{
	char resp[160];
	const char *reason = status == 403 ? "Forbidden"
			   : status == 404 ? "Not Found"
			   : status == 401 ? "Unauthorized"
			   : status == 503 ? "Service Unavailable" : "Error";
	int n = snprintf(resp, sizeof(resp),
			 "HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
			 status, reason);

	/* lws has no way to refuse an upgrade with a bare status and an empty
	 * body; the socket is fresh and the answer small, so one send() does. */
	if (send(lws_get_socket_fd(wsi), resp, (size_t)n, MSG_NOSIGNAL) != n)
		return -1;
	return -1;	/* hang up */
}

static int
callback_phoenix(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		 size_t len)
{
	struct ts_server *s = lws_context_user(lws_get_context(wsi));
	struct ts_conn *c = user;
	int status;

	switch (reason) {
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		ts_control_refuse_expire(s);
		if (s->refusing && s->refuse_mode == TS_REFUSE_CLOSE) {
			s->refused_total++;
			return -1;
		}
		if (!ts_phoenix_accept_upgrade(s, wsi, &status))
			return write_http_refusal(wsi, status);
		return 0;

	case LWS_CALLBACK_ESTABLISHED:
		memset(c, 0, sizeof(*c));
		c->srv = s;
		c->wsi = wsi;
		c->id = ++s->next_conn_id;
		s->connects_total++;
		conn_link(s, c);
		return ts_phoenix_established(c);

	case LWS_CALLBACK_RECEIVE:
		if (c == NULL || c->wsi == NULL)
			return -1;
		return ts_conn_rx(c, in, len);

	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (c == NULL || c->wsi == NULL)
			return 0;
		return ts_conn_writeable(c);

	case LWS_CALLBACK_CLOSED:
		if (c == NULL || c->wsi == NULL)
			return 0;
		c->dead = true;
		conn_unlink(s, c);
		ts_conn_free_queues(c);
		ts_phoenix_closed(c);
		return 0;

	case LWS_CALLBACK_HTTP:
		return ts_control_http(s, c, wsi, in != NULL ? (const char *)in : "/");

	case LWS_CALLBACK_HTTP_WRITEABLE:
		return ts_control_http_writeable(c, wsi);

	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
	case LWS_CALLBACK_CLOSED_HTTP:
		if (c != NULL && c->wsi == NULL) {
			free(c->http_body);
			c->http_body = NULL;
		}
		return 0;

	default:
		return 0;
	}
}

static const struct lws_protocols protocols[] = {
	{ "phoenix", callback_phoenix, sizeof(struct ts_conn), 4096, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void
on_signal(int sig)
{
	(void)sig;
	if (signal_server != NULL) {
		signal_server->stopping = 1;
		lws_cancel_service(signal_server->ctx);
	}
}

static void
usage(FILE *out)
{
	fputs("usage: phxd-testserver [--host ADDR] --port N [options]\n"
	      "\n"
	      "A Phoenix Channels V2 server for tests: endpoint /socket/websocket,\n"
	      "channels rooms:*, rejected:*, load:*, fault controls under /control/.\n"
	      "\n"
	      "  -H, --host ADDR          address to listen on (default 127.0.0.1)\n"
	      "  -p, --port N             port; 0 picks a free one (printed on start)\n"
	      "      --idle-timeout MS    close idle sockets with 1002 (default 60000, 0 off)\n"
	      "      --emulate VERSION    behave as Phoenix VERSION (default 1.7.24)\n"
	      "      --max-channels N     channels per socket (0: no cap; default 100)\n"
	      "      --drop-stale-join-ref  ignore messages with an old join_ref (1.8.3+)\n"
	      "      --drop-null-join-ref   ignore messages without a join_ref (1.8.3-1.8.11)\n"
	      "      --disconnect-code N  close code of a forced disconnect (default 1000)\n"
	      "      --tls-cert FILE      serve wss:// with this certificate (PEM)...\n"
	      "      --tls-key FILE       ...and this key\n"
	      "      --tls-client-ca FILE require client certificates from this CA\n"
	      "      --tally FILE         append the payload of each \"tally\" push to FILE,\n"
	      "                           one line each, before replying (survives restarts)\n"
	      "  -v, --verbose            log connections, bad frames and controls\n"
	      "  -h, --help               this text\n"
	      "  -V, --version            print the version\n",
	      out);
}

static bool
parse_uint(const char *text, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (text[0] == '-' || text[0] == '\0')
		return false;
	errno = 0;
	v = strtoul(text, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return false;
	*out = v;
	return true;
}

/* Sets the quirks of a Phoenix release ("1.7.24", "1.8.3", ...). */
static bool
emulate(struct ts_quirks *q, const char *version)
{
	unsigned major, minor, patch;
	char tail;
	unsigned long v;

	if (sscanf(version, "%u.%u.%u%c", &major, &minor, &patch, &tail) != 3)
		return false;
	v = major * 1000000ul + minor * 1000ul + patch;
	if (v < 1006000ul)
		return false;	/* the V2 serializer came with 1.6 */
	q->max_channels = v >= 1007024ul ? 100 : 0;
	q->drop_stale_join_ref = v >= 1008003ul;
	q->drop_null_join_ref = v >= 1008003ul && v < 1008012ul;
	/* Servers before 1.7.24 were recorded on a Bandit that closed with 1011. */
	q->disconnect_code = v >= 1008008ul ? 1001 : v >= 1007024ul ? 1000 : 1011;
	q->leave_null_join_ref = v >= 1008000ul;
	q->crash_reason = v >= 1008010ul;
	q->checks_auth_token = v >= 1008000ul;
	return true;
}

/*
 * Binds the address once before libwebsockets does, so a taken port or a bad
 * address gets a precise message (lws only reports failure, and leaks on it).
 */
static bool
probe_listen(const char *host, int port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV },
			*res;
	char service[16];
	int rc, fd, one = 1, saved;

	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "phxd-testserver: cannot listen on %s:%d: %s\n", host, port,
			gai_strerror(rc));
		return false;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	rc = -1;
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		rc = bind(fd, res->ai_addr, res->ai_addrlen);
	}
	saved = errno;
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	if (rc != 0) {
		fprintf(stderr, "phxd-testserver: cannot listen on %s:%d: %s\n", host, port,
			strerror(saved));
		return false;
	}
	return true;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "idle-timeout", required_argument, NULL, 'i' },
		{ "emulate", required_argument, NULL, 'e' },
		{ "max-channels", required_argument, NULL, 'm' },
		{ "drop-stale-join-ref", no_argument, NULL, 's' },
		{ "drop-null-join-ref", no_argument, NULL, 'n' },
		{ "disconnect-code", required_argument, NULL, 'd' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "tls-client-ca", required_argument, NULL, 'A' },
		{ "tally", required_argument, NULL, 'T' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct ts_server srv = { 0 };
	struct lws_context_creation_info info;
	unsigned long v;
	bool have_port = false;
	int ch;

	srv.opt.host = "127.0.0.1";
	srv.opt.tally_fd = -1;
	srv.opt.idle_timeout_ms = 60000;
	emulate(&srv.opt.quirks, "1.7.24");

	while ((ch = getopt_long(argc, argv, "H:p:vhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			srv.opt.host = optarg;
			break;
		case 'p':
			if (!parse_uint(optarg, 65535, &v)) {
				fprintf(stderr, "phxd-testserver: --port: '%s' is not a port (0-65535)\n",
					optarg);
				return 2;
			}
			srv.opt.port = (int)v;
			have_port = true;
			break;
		case 'i':
			if (!parse_uint(optarg, 86400000ul, &v)) {
				fprintf(stderr, "phxd-testserver: --idle-timeout: '%s' is not a "
					"number of milliseconds (0-86400000)\n", optarg);
				return 2;
			}
			srv.opt.idle_timeout_ms = (unsigned)v;
			break;
		case 'e':
			if (!emulate(&srv.opt.quirks, optarg)) {
				fprintf(stderr, "phxd-testserver: --emulate: '%s' is not a Phoenix "
					"version (1.6.0 or later, as X.Y.Z)\n", optarg);
				return 2;
			}
			break;
		case 'm':
			if (!parse_uint(optarg, 1000000ul, &v)) {
				fprintf(stderr, "phxd-testserver: --max-channels: '%s' is not a "
					"count (0-1000000)\n", optarg);
				return 2;
			}
			srv.opt.quirks.max_channels = (unsigned)v;
			break;
		case 's':
			srv.opt.quirks.drop_stale_join_ref = true;
			break;
		case 'T':
			/* O_APPEND: what was written before a kill -9 of the
			 * server stays, and restarts add to it */
			srv.opt.tally_fd = open(optarg, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
			if (srv.opt.tally_fd < 0) {
				fprintf(stderr, "phxd-testserver: --tally: %s: %s\n", optarg,
					strerror(errno));
				return 2;
			}
			break;
		case 'n':
			srv.opt.quirks.drop_null_join_ref = true;
			break;
		case 'd':
			if (!parse_uint(optarg, 4999, &v) || v < 1000 || v == 1005 || v == 1006) {
				fprintf(stderr, "phxd-testserver: --disconnect-code: '%s' is not a "
					"close code that can be sent (1000-4999)\n", optarg);
				return 2;
			}
			srv.opt.quirks.disconnect_code = (int)v;
			break;
		case 'C':
			srv.opt.tls_cert = optarg;
			break;
		case 'K':
			srv.opt.tls_key = optarg;
			break;
		case 'A':
			srv.opt.tls_client_ca = optarg;
			break;
		case 'v':
			srv.opt.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("phxd-testserver %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "phxd-testserver: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!have_port) {
		fputs("phxd-testserver: --port is required (0 picks a free port)\n", stderr);
		usage(stderr);
		return 2;
	}

	if (srv.opt.tls_client_ca && srv.opt.tls_cert == NULL) {
		fputs("phxd-testserver: --tls-client-ca needs --tls-cert and --tls-key\n", stderr);
		return 2;
	}
	if ((srv.opt.tls_cert == NULL) != (srv.opt.tls_key == NULL)) {
		fputs("phxd-testserver: --tls-cert and --tls-key go together\n", stderr);
		return 2;
	}
	for (const char *f = srv.opt.tls_cert; f != NULL; f = f == srv.opt.tls_key ? NULL : srv.opt.tls_key) {
		if (access(f, R_OK) != 0) {
			fprintf(stderr, "phxd-testserver: cannot read %s: %s\n", f, strerror(errno));
			return 2;
		}
	}
	if (!probe_listen(srv.opt.host, srv.opt.port))
		return 1;
	lws_set_log_level(srv.opt.verbose ? LLL_ERR | LLL_WARN : LLL_ERR, lws_log_emit);
	memset(&info, 0, sizeof(info));
	info.port = srv.opt.port;
	info.iface = srv.opt.host;
	info.protocols = protocols;
	info.user = &srv;
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
	if (strchr(srv.opt.host, ':') == NULL)
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	info.timeout_secs = 10;
	/* Requests as large as Cowboy takes by default: a request line of
	 * 8000 bytes, header values of 4096 (a bearer token of a few KiB). */
	info.max_http_header_data = 16384;
	info.pt_serv_buf_size = 32768;
	if (srv.opt.tls_cert) {
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = srv.opt.tls_cert;
		info.ssl_private_key_filepath = srv.opt.tls_key;
		if (srv.opt.tls_client_ca) {
			info.ssl_ca_filepath = srv.opt.tls_client_ca;
			info.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
		}
	}

	srv.ctx = lws_create_context(&info);
	if (srv.ctx == NULL) {
		fprintf(stderr, "phxd-testserver: cannot listen on %s:%d\n", srv.opt.host,
			srv.opt.port);
		return 1;
	}
	struct lws_vhost *vh = lws_get_vhost_by_name(srv.ctx, "default");
	int port = vh != NULL ? lws_get_vhost_listen_port(vh) : srv.opt.port;
	if (port <= 0) {
		fprintf(stderr, "phxd-testserver: cannot listen on %s:%d\n", srv.opt.host,
			srv.opt.port);
		lws_context_destroy(srv.ctx);
		return 1;
	}
	signal_server = &srv;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	printf("phxd-testserver: listening on %s://%s%s%s:%d/socket/websocket\n",
	       srv.opt.tls_cert ? "wss" : "ws", strchr(srv.opt.host, ':') ? "[" : "", srv.opt.host,
	       strchr(srv.opt.host, ':') ? "]" : "", port);
	fflush(stdout);

	while (!srv.stopping && lws_service(srv.ctx, 0) >= 0)
		;
	lws_context_destroy(srv.ctx);
	return 0;
}
