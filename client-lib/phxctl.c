/*
 * phxctl: the command line over the phxd socket. Human output by default,
 * --json for the daemon's own objects; streams print one JSON object per
 * line. Exit codes say what happened (see usage()).
 */
#include "ipc/phxd-ipc.h"
#include "protocol/base64.h"

#include <errno.h>
#include <stdarg.h>
#include <stdnoreturn.h>
#include <stdint.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum exit_code {
	EXIT_OK = 0,
	EXIT_REPLY_ERROR = 1,	/* the Phoenix server answered with an error */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,	/* no daemon at the socket */
	EXIT_TIMEOUT = 4,
	EXIT_FAILED = 5,	/* the daemon refused or could not do it */
};

#define MAX_LINE (64u << 20)
#define MAX_STDIN (64u << 20)

struct client {
	int fd;
	char *buf;
	size_t len, cap;
	const char *path;
};

struct opts {
	const char *socket;
	const char *conn;
	bool json;
	bool await_reply;
	bool binary;
	long timeout_ms;	/* -1: not given */
	long count;		/* streams: stop after N lines; -1: forever */
	json_t *events;		/* subscribe --event */
};

static void
usage(FILE *out)
{
	fputs("usage: phxctl [-s SOCKET] [-C CONN] [--json] COMMAND [ARGS]\n"
	      "\n"
	      "commands:\n"
	      "  status                          connections, topics and counters\n"
	      "  join TOPIC [PARAMS]             keep TOPIC joined (PARAMS: a JSON object)\n"
	      "  leave TOPIC                     stop keeping it joined\n"
	      "  push TOPIC EVENT [PAYLOAD|-]    push an event (PAYLOAD: JSON, - reads stdin)\n"
	      "       [--await] [--timeout MS] [--binary]\n"
	      "  subscribe TOPIC|PATTERN [--event E]... [--count N]\n"
	      "                                  print messages, one JSON object per line\n"
	      "  events [--count N]              print connection and channel state changes\n"
	      "  presence TOPIC                  the topic's presence list\n"
	      "  reload                          re-read the configuration\n"
	      "\n"
	      "options:\n"
	      "  -s, --socket PATH   the daemon's socket ($" PHXD_SOCKET_ENV ", default "
	      PHXD_DEFAULT_SOCKET ")\n"
	      "  -C, --conn NAME     connection to use (needed when several are configured)\n"
	      "  -j, --json          print the daemon's JSON response\n"
	      "  -h, --help          this text\n"
	      "\n"
	      "exit status: 0 ok, 1 the server replied with an error, 2 usage error,\n"
	      "3 phxd unreachable, 4 timeout, 5 phxd could not do it\n",
	      out);
}

static noreturn void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static noreturn void
die_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("phxctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(phxctl --help for usage)\n", stderr);
	exit(EXIT_USAGE);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
client_connect(struct client *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	c->path = path;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "phxctl: socket path too long: %s\n", path);
		exit(EXIT_USAGE);
	}
	strcpy(sa.sun_path, path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "phxctl: cannot reach phxd at %s: %s\n", path, strerror(errno));
		exit(EXIT_UNREACHABLE);
	}
}

static void
client_send(struct client *c, json_t *req)
{
	char *text = json_dumps(req, JSON_COMPACT);
	size_t len = strlen(text), off = 0;

	text = realloc(text, len + 2);
	text[len++] = '\n';
	while (off < len) {
		ssize_t n = send(c->fd, text + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "phxctl: lost phxd at %s: %s\n", c->path, strerror(errno));
			exit(EXIT_UNREACHABLE);
		}
		off += (size_t)n;
	}
	free(text);
}

/* The next line as JSON; NULL on timeout (deadline 0: none). Exits when the
 * daemon goes away. */
static json_t *
client_recv(struct client *c, uint64_t deadline)
{
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		if (nl != NULL) {
			size_t n = (size_t)(nl - c->buf);
			json_error_t jerr;
			json_t *j = json_loadb(c->buf, n, 0, &jerr);
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			if (!json_is_object(j)) {
				fprintf(stderr, "phxctl: phxd sent a line that is not a JSON object\n");
				exit(EXIT_FAILED);
			}
			return j;
		}
		if (c->len >= MAX_LINE) {
			fprintf(stderr, "phxctl: phxd sent a line longer than %u bytes\n", MAX_LINE);
			exit(EXIT_FAILED);
		}
		int wait = -1;
		if (deadline) {
			uint64_t now = now_ms();
			if (now >= deadline)
				return NULL;
			wait = (int)(deadline - now);
		}
		struct pollfd pfd = { c->fd, POLLIN, 0 };
		int r = poll(&pfd, 1, wait);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return NULL;
		if (c->cap - c->len < 65536) {
			c->cap = c->cap ? c->cap * 2 : 131072;
			c->buf = realloc(c->buf, c->cap);
			if (c->buf == NULL) {
				fprintf(stderr, "phxctl: out of memory\n");
				exit(EXIT_FAILED);
			}
		}
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "phxctl: phxd closed the connection%s%s\n", n < 0 ? ": " : "",
				n < 0 ? strerror(errno) : "");
			exit(EXIT_UNREACHABLE);
		}
		c->len += (size_t)n;
	}
}

/* Sends req and waits for the response with its id (1). */
static json_t *
request(struct client *c, json_t *req, long timeout_ms)
{
	uint64_t deadline = timeout_ms > 0 ? now_ms() + (uint64_t)timeout_ms : 0;

	json_object_set_new(req, "id", json_integer(1));
	client_send(c, req);
	for (;;) {
		json_t *resp = client_recv(c, deadline);
		if (resp == NULL) {
			fprintf(stderr, "phxctl: no answer from phxd within %ld ms\n", timeout_ms);
			exit(EXIT_TIMEOUT);
		}
		json_t *id = json_object_get(resp, "id");
		if (json_is_integer(id) && json_integer_value(id) == 1)
			return resp;
		if (json_is_null(id) && json_is_false(json_object_get(resp, "ok")))
			return resp;	/* an error the daemon could not tie to a request */
		json_decref(resp);
	}
}

static void
print_json(json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	puts(text);
	free(text);
	fflush(stdout);
}

/* Prints an error response and gives its exit code. */
static int
report_error(json_t *resp, const struct opts *o)
{
	json_t *err = json_object_get(resp, "error");
	const char *code = json_string_value(json_object_get(err, "code"));
	const char *msg = json_string_value(json_object_get(err, "message"));

	if (o->json)
		print_json(resp);
	else {
		fprintf(stderr, "phxctl: %s: %s\n", code ? code : "error", msg ? msg : "");
		json_t *r = json_object_get(err, "response");
		if (r) {
			char *text = json_dumps(r, JSON_COMPACT | JSON_ENCODE_ANY);
			fprintf(stderr, "response: %s\n", text);
			free(text);
		}
	}
	if (code && strcmp(code, PHXD_E_REPLY_ERROR) == 0)
		return EXIT_REPLY_ERROR;
	if (code && strcmp(code, PHXD_E_TIMEOUT) == 0)
		return EXIT_TIMEOUT;
	if (code && (strcmp(code, PHXD_E_BAD_REQUEST) == 0 ||
		     strcmp(code, PHXD_E_UNKNOWN_CONNECTION) == 0))
		return EXIT_USAGE;
	return EXIT_FAILED;
}

static json_t *
parse_json_arg(const char *text, const char *what)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);

	if (j == NULL) {
		fprintf(stderr, "phxctl: %s is not JSON: %s\n", what, jerr.text);
		exit(EXIT_USAGE);
	}
	return j;
}

static char *
read_stdin(size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);

	while (buf != NULL) {
		size_t r = fread(buf + n, 1, cap - n, stdin);
		n += r;
		if (r == 0)
			break;
		if (n == cap) {
			if (cap >= MAX_STDIN) {
				fprintf(stderr, "phxctl: payload on stdin larger than %u bytes\n", MAX_STDIN);
				exit(EXIT_USAGE);
			}
			cap *= 2;
			buf = realloc(buf, cap);
		}
	}
	if (buf == NULL || ferror(stdin)) {
		fprintf(stderr, "phxctl: cannot read stdin\n");
		exit(EXIT_USAGE);
	}
	*len = n;
	return buf;
}

static void
print_status(json_t *result)
{
	size_t i, j;
	json_t *c, *t;

	json_array_foreach (json_object_get(result, "connections"), i, c) {
		printf("%s  %s  %s\n", json_string_value(json_object_get(c, "name")),
		       json_string_value(json_object_get(c, "state")),
		       json_string_value(json_object_get(c, "url")));
		printf("  connects %lld, reconnects %lld",
		       (long long)json_integer_value(json_object_get(c, "connects")),
		       (long long)json_integer_value(json_object_get(c, "reconnects")));
		const char *le = json_string_value(json_object_get(c, "last_error"));
		if (le && *le)
			printf(", last error: %s", le);
		if (json_object_get(c, "last_http_status"))
			printf(" (HTTP %lld)",
			       (long long)json_integer_value(json_object_get(c, "last_http_status")));
		if (json_object_get(c, "retry_in_ms"))
			printf(", retry in %lld ms",
			       (long long)json_integer_value(json_object_get(c, "retry_in_ms")));
		putchar('\n');
		json_array_foreach (json_object_get(c, "topics"), j, t) {
			printf("  %-32s %s", json_string_value(json_object_get(t, "topic")),
			       json_string_value(json_object_get(t, "state")));
			json_t *err = json_object_get(t, "last_error");
			if (!json_is_null(err)) {
				char *text = json_dumps(err, JSON_COMPACT | JSON_ENCODE_ANY);
				printf("  last error: %s", text);
				free(text);
			}
			putchar('\n');
		}
	}
}

/* Streams: prints each line of the subscription (without its tag). */
static int
stream(struct client *c, json_t *req, const struct opts *o)
{
	json_t *resp = request(c, req, 10000);
	json_int_t sub;
	long seen = 0;

	if (!json_is_true(json_object_get(resp, "ok")))
		return report_error(resp, o);
	sub = json_integer_value(json_object_get(json_object_get(resp, "result"), "sub"));
	json_decref(resp);
	while (o->count < 0 || seen < o->count) {
		uint64_t deadline = o->timeout_ms > 0 ? now_ms() + (uint64_t)o->timeout_ms : 0;
		json_t *line = client_recv(c, deadline);
		if (line == NULL) {
			fprintf(stderr, "phxctl: nothing within %ld ms\n", o->timeout_ms);
			return EXIT_TIMEOUT;
		}
		json_t *tag = json_object_get(line, "sub");
		if (json_is_integer(tag) && json_integer_value(tag) == sub) {
			json_object_del(line, "sub");
			print_json(line);
			seen++;
		} else if (json_is_false(json_object_get(line, "ok"))) {
			int rc = report_error(line, o);
			json_decref(line);
			return rc;
		}
		json_decref(line);
	}
	return EXIT_OK;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "conn", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "await", no_argument, NULL, 'a' },
		{ "binary", no_argument, NULL, 'b' },
		{ "timeout", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'n' },
		{ "event", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .timeout_ms = -1, .count = -1 };
	struct client c = { .fd = -1 };
	int opt;
	char *end;

	o.socket = getenv(PHXD_SOCKET_ENV);
	if (o.socket == NULL || o.socket[0] == '\0')
		o.socket = PHXD_DEFAULT_SOCKET;
	o.events = json_array();
	opterr = 0;
	/* GNU getopt permutes: options may follow the command ("push T E --await"). */
	while ((opt = getopt_long(argc, argv, ":s:C:jh", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': o.socket = optarg; break;
		case 'C': o.conn = optarg; break;
		case 'j': o.json = true; break;
		case 'a': o.await_reply = true; break;
		case 'b': o.binary = true; break;
		case 't':
			errno = 0;
			o.timeout_ms = strtol(optarg, &end, 10);
			if (errno || *end || o.timeout_ms <= 0 || o.timeout_ms > 86400000)
				die_usage("--timeout wants milliseconds (1 to 86400000), not '%s'", optarg);
			break;
		case 'n':
			errno = 0;
			o.count = strtol(optarg, &end, 10);
			if (errno || *end || o.count <= 0)
				die_usage("--count wants a positive number, not '%s'", optarg);
			break;
		case 'e': json_array_append_new(o.events, json_string(optarg)); break;
		case 'h': usage(stdout); return EXIT_OK;
		case ':': die_usage("option %s needs a value", argv[optind - 1]);
		default: die_usage("unknown option %s", argv[optind - 1]);
		}
	}
	char **args = argv + optind;
	int nargs = argc - optind;
	if (nargs == 0)
		die_usage("a command is needed");

	const char *cmd = args[0];
	json_t *req = json_object();
	if (o.conn)
		json_object_set_new(req, "conn", json_string(o.conn));
#define NEED(n, what)                                                        \
	if (nargs != (n))                                                        \
		die_usage("usage: phxctl %s", what)
	if (strcmp(cmd, "status") == 0) {
		NEED(1, "status");
		json_object_set_new(req, "op", json_string("status"));
	} else if (strcmp(cmd, "join") == 0) {
		if (nargs != 2 && nargs != 3)
			die_usage("usage: phxctl %s", "join TOPIC [PARAMS]");
		json_object_set_new(req, "op", json_string("join"));
		json_object_set_new(req, "topic", json_string(args[1]));
		if (nargs == 3) {
			json_t *p = parse_json_arg(args[2], "PARAMS");
			if (!json_is_object(p))
				die_usage("PARAMS must be a JSON object");
			json_object_set_new(req, "payload", p);
		}
	} else if (strcmp(cmd, "leave") == 0) {
		NEED(2, "leave TOPIC");
		json_object_set_new(req, "op", json_string("leave"));
		json_object_set_new(req, "topic", json_string(args[1]));
	} else if (strcmp(cmd, "push") == 0) {
		if (nargs != 3 && nargs != 4)
			die_usage("usage: phxctl %s", "push TOPIC EVENT [PAYLOAD|-] [--await]");
		json_object_set_new(req, "op", json_string("push"));
		json_object_set_new(req, "topic", json_string(args[1]));
		json_object_set_new(req, "event", json_string(args[2]));
		if (nargs == 4) {
			size_t len;
			char *text;
			if (strcmp(args[3], "-") == 0) {
				text = read_stdin(&len);
			} else {
				text = strdup(args[3]);
				len = strlen(text);
			}
			if (o.binary) {
				char *b = malloc(BASE64_ENCODED_SIZE(len));
				if (b == NULL) {
					fprintf(stderr, "phxctl: out of memory\n");
					return EXIT_FAILED;
				}
				base64_encode(text, len, true, b);
				json_object_set_new(req, "payload_b64", json_string(b));
				free(b);
			} else {
				json_error_t jerr;
				json_t *p = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
				if (p == NULL) {
					free(text);
					die_usage("PAYLOAD is not JSON: %s", jerr.text);
				}
				json_object_set_new(req, "payload", p);
			}
			free(text);
		}
		if (o.await_reply)
			json_object_set_new(req, "await", json_true());
		if (o.timeout_ms > 0)
			json_object_set_new(req, "timeout_ms", json_integer(o.timeout_ms));
	} else if (strcmp(cmd, "subscribe") == 0) {
		NEED(2, "subscribe TOPIC|PATTERN [--event E]... [--count N]");
		json_object_set_new(req, "op", json_string("subscribe"));
		json_object_set_new(req, "topic", json_string(args[1]));
		if (json_array_size(o.events))
			json_object_set(req, "events", o.events);
	} else if (strcmp(cmd, "events") == 0) {
		NEED(1, "events [--count N]");
		json_object_set_new(req, "op", json_string("events"));
	} else if (strcmp(cmd, "presence") == 0) {
		NEED(2, "presence TOPIC");
		json_object_set_new(req, "op", json_string("presence"));
		json_object_set_new(req, "topic", json_string(args[1]));
	} else if (strcmp(cmd, "reload") == 0) {
		NEED(1, "reload");
		json_object_set_new(req, "op", json_string("reload"));
	} else {
		die_usage("unknown command '%s'", cmd);
	}

	client_connect(&c, o.socket);
	int rc;
	if (strcmp(cmd, "subscribe") == 0 || strcmp(cmd, "events") == 0) {
		rc = stream(&c, req, &o);
	} else {
		/* The daemon enforces the push timeout; wait a little longer. */
		long wait = o.timeout_ms > 0 ? o.timeout_ms + 5000 : 60000;
		json_t *resp = request(&c, req, wait);
		if (!json_is_true(json_object_get(resp, "ok"))) {
			rc = report_error(resp, &o);
		} else {
			json_t *result = json_object_get(resp, "result");
			rc = EXIT_OK;
			if (o.json)
				print_json(resp);
			else if (strcmp(cmd, "status") == 0)
				print_status(result);
			else if (strcmp(cmd, "push") == 0 && !o.await_reply)
				puts("sent");
			else if (json_object_get(result, "response"))
				print_json(json_object_get(result, "response"));
			else if (json_object_get(result, "presence"))
				print_json(json_object_get(result, "presence"));
			else
				puts("ok");
		}
		json_decref(resp);
	}
	json_decref(req);
	json_decref(o.events);
	close(c.fd);
	free(c.buf);
	return rc;
}
