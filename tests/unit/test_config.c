/* SPDX-License-Identifier: MIT */
/* daemon/config.c: values, defaults, and a clear file:line: key error for
 * every kind of bad input. */
#include "daemon/config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/phxd-test-config-XXXXXX";

static const char *
write_file(const char *name, const char *text)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static struct phxd_conf *
load(const char *text, char *err, size_t errlen)
{
	const char *path = write_file("phxd.conf", text);
	err[0] = '\0';
	return config_load(path, err, errlen);
}

START_TEST(full_example_parses)
{
	char err[512], conf_text[2048];
	char token[256], auth[256];
	snprintf(token, sizeof(token), "%s", write_file("token", "s3cret\n"));
	snprintf(auth, sizeof(auth), "%s", write_file("auth", "abc"));
	snprintf(conf_text, sizeof(conf_text),
		 "[phxd]\n"
		 "socket = /run/x/phxd.sock\n"
		 "socket_mode = 0600\n"
		 "log_level = debug\n"
		 "\n"
		 "[connection backend]\n"
		 "url = wss://api.example.com:8443/socket?x=1\n"
		 "param.token_file = %s\n"
		 "param.device = sensor 7\n"
		 "header.X-Client = phxd\n"
		 "auth_token_file = %s\n"
		 "heartbeat_interval_ms = 15000\n"
		 "reconnect_after_ms = 10 20 30\n"
		 "rejoin_after_ms = 500\n"
		 "jitter = 0.25\n"
		 "join = rooms:lobby {\"user_id\": 1}\n"
		 "join = notifications:42\n"
		 "[connection second]\n"
		 "url = ws://[::1]/live/websocket\n",
		 token, auth);
	struct phxd_conf *c = load(conf_text, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_str_eq(c->socket, "/run/x/phxd.sock");
	ck_assert_uint_eq(c->socket_mode, 0600);
	ck_assert_int_eq(c->log_level, LOG_LVL_DEBUG);
	ck_assert_uint_eq(c->nconns, 2);
	struct conn_conf *b = config_find_conn(c, "backend");
	ck_assert(b->tls);
	ck_assert_str_eq(b->host, "api.example.com");
	ck_assert_int_eq(b->port, 8443);
	ck_assert_str_eq(b->path, "/socket/websocket");
	ck_assert_str_eq(b->request_path,
			 "/socket/websocket?x=1&token=s3cret&device=sensor%207&vsn=2.0.0");
	ck_assert_str_eq(b->subprotocols, "phoenix, base64url.bearer.phx.YWJj");
	ck_assert_uint_eq(b->nheaders, 1);
	ck_assert_str_eq(b->headers[0].key, "X-Client");
	ck_assert_uint_eq(b->heartbeat_ms, 15000);
	ck_assert_uint_eq(b->nreconnect, 3);
	ck_assert_uint_eq(b->reconnect_ms[2], 30);
	ck_assert_uint_eq(b->nrejoin, 1);
	ck_assert(b->jitter == 0.25);
	ck_assert_uint_eq(b->njoins, 2);
	ck_assert_str_eq(b->joins[0].topic, "rooms:lobby");
	ck_assert_str_eq(b->joins[0].payload, "{\"user_id\":1}");
	ck_assert_str_eq(b->joins[1].payload, "{}");
	struct conn_conf *s = config_find_conn(c, "second");
	ck_assert(!s->tls);
	ck_assert_str_eq(s->host, "::1");
	ck_assert_int_eq(s->port, 80);
	ck_assert_str_eq(s->path, "/live/websocket");
	/* defaults */
	ck_assert_uint_eq(s->heartbeat_ms, 30000);
	ck_assert_uint_eq(s->nreconnect, 10);
	ck_assert_uint_eq(s->reconnect_ms[0], 10);
	ck_assert_uint_eq(s->reconnect_ms[9], 5000);
	ck_assert_uint_eq(s->nrejoin, 4);
	ck_assert_uint_eq(s->join_timeout_ms, 10000);
	ck_assert_uint_eq(s->push_timeout_ms, 10000);
	ck_assert(s->tls_verify);
	ck_assert_ptr_null(s->subprotocols);
	config_free(c);
}
END_TEST

/* Each bad file and the start of the error it must give. */
static const struct {
	const char *text;
	const char *error;
} bad[] = {
	{ "[connection a]\nurl = http://x/socket\n", ":2: url: 'http://x/socket' must start with ws:// or wss://" },
	{ "[connection a]\nurl = ws:///socket\n", ":2: url: 'ws:///socket' has no host" },
	{ "[connection a]\nurl = ws://h:99999/s\n", ":2: url: 'ws://h:99999/s' has a bad port" },
	{ "[connection a]\nurl = ws://h/s\nheartbeat_interval_ms = ten\n", ":3: heartbeat_interval_ms: 'ten' is not an integer" },
	{ "[connection a]\nurl = ws://h/s\nheartbeat_interval_ms = -5\n", ":3: heartbeat_interval_ms:" },
	{ "[connection a]\nurl = ws://h/s\njoin_timeout_ms = 99999999999999999999\n", ":3: join_timeout_ms:" },
	{ "[connection a]\nurl = ws://h/s\nbogus = 1\n", ":3: bogus: unknown key in [connection a]" },
	{ "[phxd]\nsocket = relative.sock\n[connection a]\nurl = ws://h/s\n", ":2: socket: 'relative.sock' is not an absolute path" },
	{ "[phxd]\nsocket_mode = 0999\n[connection a]\nurl = ws://h/s\n", ":2: socket_mode:" },
	{ "[phxd]\nlog_level = loud\n[connection a]\nurl = ws://h/s\n", ":2: log_level: 'loud' is not one of" },
	{ "[phxd]\nwhat = 1\n[connection a]\nurl = ws://h/s\n", ":2: what: unknown key in [phxd]" },
	{ "[elsewhere]\nx = 1\n", ":1: unknown section [elsewhere]" },
	{ "[connection a]\nurl = ws://h/s\n[connection a]\nurl = ws://h/s\n", ":3: [connection a] appears twice" },
	{ "[connection bad name!]\nurl = ws://h/s\n", ":1: connection name 'bad name!'" },
	{ "[connection a]\nurl = ws://h/s\njoin = rooms:x {not json}\n", ":3: join: payload of rooms:x is not a JSON object" },
	{ "[connection a]\nurl = ws://h/s\njoin = rooms:x [1,2]\n", ":3: join: payload of rooms:x is not a JSON object" },
	{ "[connection a]\nurl = ws://h/s\njoin = t\njoin = t\n", ":4: join: t is joined twice" },
	{ "[connection a]\nurl = ws://h/s\nparam.token_file = /nonexistent/token\n", ":3: param.token_file: cannot read /nonexistent/token" },
	{ "[connection a]\nurl = ws://h/s\nauth_token_file = /nonexistent/t\n", ":3: auth_token_file: cannot read /nonexistent/t" },
	{ "[connection a]\nurl = ws://h/s\nheader.Bad Name = x\n", ":3: header.Bad Name: not a valid HTTP header name" },
	{ "[connection a]\nurl = ws://h/s\nreconnect_after_ms = 10 x 30\n", ":3: reconnect_after_ms: 'x' is not a delay" },
	{ "[connection a]\nurl = ws://h/s\nreconnect_after_ms = ,\n", ":3: reconnect_after_ms: needs at least one delay" },
	{ "[connection a]\nurl = ws://h/s\njitter = 2\n", ":3: jitter: '2' is not a number from 0 to 1" },
	{ "[connection a]\nurl = ws://h/s\ntls_verify = maybe\n", ":3: tls_verify: 'maybe' is not yes or no" },
	{ "[connection a]\nurl = ws://h/s\nthis line has no equals\n", ":3: " },
	{ "[connection a]\nheartbeat_interval_ms = 5\n", "[connection a]: url is missing" },
	{ "[connection a]\nurl = ws://h/s\nca_file = /etc/ssl/ca.pem\n", "[connection a]: ca_file/client_cert/client_key need a wss:// url" },
	{ "[connection a]\nurl = ws://h/s\njoin = rooms:\xe9x\n", ":3: join: the topic is not valid UTF-8" },
	{ "[phxd]\nallow_users = no-such-user-phxd\n", "allow_users: no user named 'no-such-user-phxd'" },
	{ "[phxd]\nallow_groups = root no-such-group-phxd\n", "allow_groups: no group named 'no-such-group-phxd'" },
	{ "[phxd]\nclient_max_pending = 0\n", ":2: client_max_pending: '0' is not an integer from 1" },
	{ "[phxd]\nbusy_poll_us = 1001\n", ":2: busy_poll_us: '1001' is not an integer from 0" },
	{ "[phxd]\nbusy_poll_us = soon\n", ":2: busy_poll_us: 'soon' is not an integer" },
	{ "[connection a]\nurl = ws://h/s\nmax_topics = -1\n", ":3: max_topics: '-1' is not an integer" },
	{ "[connection a]\nurl = ws://h/s\nmax_channels = -1\n", ":3: max_channels: '-1' is not an integer" },
	{ "[connection a]\nurl = ws://h/s\nmax_channels = 10000001\n", ":3: max_channels:" },
	{ "[connection a]\nurl = ws://h/s\nmax_channels = many\n", ":3: max_channels: 'many' is not an integer" },
};

START_TEST(bad_input_gives_file_line_key)
{
	char err[512];
	struct phxd_conf *c = load(bad[_i].text, err, sizeof(err));

	ck_assert_msg(c == NULL, "accepted: %s", bad[_i].text);
	ck_assert_msg(strstr(err, bad[_i].error) != NULL, "error '%s' lacks '%s'", err, bad[_i].error);
	ck_assert_msg(strncmp(err, dir, strlen(dir)) == 0, "error '%s' does not name the file", err);
}
END_TEST

START_TEST(long_line_is_an_error_not_a_split)
{
	char err[512], text[1024];
	char payload[400];
	memset(payload, 'a', sizeof(payload) - 1);
	payload[sizeof(payload) - 1] = '\0';
	snprintf(text, sizeof(text), "[connection a]\nurl = ws://h/s\njoin = t {\"k\":\"%s\"}\n", payload);
	struct phxd_conf *c = load(text, err, sizeof(err));
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(err, ":3: line longer than") != NULL, "%s", err);
}
END_TEST

START_TEST(no_connection_is_a_valid_config)
{
	char err[512];
	struct phxd_conf *c = load("", err, sizeof(err));

	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_uint_eq(c->nconns, 0);
	config_free(c);
	c = load("[phxd]\nlog_level = warn\n", err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_uint_eq(c->nconns, 0);
	config_free(c);
}
END_TEST

/* Tens of thousands of joins: each kept, in order, with its payload; a
 * topic joined twice is found however far apart the two lines are, and
 * only within one connection (another may join the same topic). */
#define MANY_JOINS 30000

static char *
many_joins_text(const char *last_line)
{
	size_t cap = 64 + MANY_JOINS * 48 + 256, len = 0;
	char *text = malloc(cap);

	ck_assert_ptr_nonnull(text);
	len += (size_t)snprintf(text + len, cap - len, "[connection a]\nurl = ws://h/s\n");
	for (int i = 0; i < MANY_JOINS; i++)
		len += (size_t)snprintf(text + len, cap - len, "join = load:t%d {\"i\":%d}\n", i, i);
	snprintf(text + len, cap - len, "%s", last_line);
	return text;
}

START_TEST(many_joins_kept_in_order_duplicates_found)
{
	char err[512], want[64];
	char *text = many_joins_text("[connection b]\nurl = ws://h/s\njoin = load:t0\n");
	struct phxd_conf *c = load(text, err, sizeof(err));

	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_uint_eq(c->conns[0]->njoins, MANY_JOINS);
	for (int i = 0; i < MANY_JOINS; i += 997) {
		snprintf(want, sizeof(want), "load:t%d", i);
		ck_assert_str_eq(c->conns[0]->joins[i].topic, want);
		snprintf(want, sizeof(want), "{\"i\":%d}", i);
		ck_assert_str_eq(c->conns[0]->joins[i].payload, want);
	}
	ck_assert_uint_eq(c->conns[1]->njoins, 1);
	config_free(c);
	free(text);

	text = many_joins_text("join = load:t0 {\"again\":true}\n");
	ck_assert_ptr_null(load(text, err, sizeof(err)));
	snprintf(want, sizeof(want), ":%d: join: load:t0 is joined twice", MANY_JOINS + 3);
	ck_assert_msg(strstr(err, want) != NULL, "error '%s' lacks '%s'", err, want);
	free(text);
}
END_TEST

/* A path longer than the error buffer: the message is cut, never overrun. */
START_TEST(long_path_error_is_bounded)
{
	char path[1024], err[512];
	size_t n = (size_t)snprintf(path, sizeof(path), "%s", dir);

	for (int i = 0; i < 3; i++) {
		path[n++] = '/';
		memset(path + n, 'd', 200);
		n += 200;
		path[n] = '\0';
		ck_assert_int_eq(mkdir(path, 0700), 0);
	}
	snprintf(path + n, sizeof(path) - n, "/phxd.conf");
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("[connection a]\nurl = ws://h/s\njitter = \xe9\xe9\xe9\n", f);
	fclose(f);
	memset(err, 'X', sizeof(err));
	ck_assert_ptr_null(config_load(path, err, sizeof(err)));
	ck_assert_ptr_nonnull(memchr(err, '\0', sizeof(err)));
	ck_assert_msg(strncmp(err, path, strlen(err) > 600 ? 600 : strlen(err)) == 0, "%s", err);
}
END_TEST

START_TEST(url_query_values_are_redacted_for_display)
{
	char err[512];
	struct phxd_conf *c = load("[connection a]\nurl = wss://h:4000/socket?token=s3cret&flag&v=2\n",
				   err, sizeof(err));

	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_str_eq(c->conns[0]->url_shown, "wss://h:4000/socket?token=REDACTED&flag&v=REDACTED");
	ck_assert_ptr_nonnull(strstr(c->conns[0]->request_path, "token=s3cret"));
	config_free(c);
}
END_TEST

START_TEST(host_header_and_address_literals)
{
	static const struct { const char *url, *host_header; bool literal; } cases[] = {
		{ "ws://[::1]/live", "[::1]", true },
		{ "ws://[::1]:4000/live", "[::1]:4000", true },
		{ "wss://api.example.com/socket", "api.example.com", false },
		{ "wss://api.example.com:80/socket", "api.example.com:80", false },
		{ "ws://127.0.0.1:4000/socket", "127.0.0.1:4000", true },
	};
	char err[512], text[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[connection a]\nurl = %s\n", cases[i].url);
		struct phxd_conf *c = load(text, err, sizeof(err));
		ck_assert_msg(c != NULL, "%s", err);
		ck_assert_str_eq(c->conns[0]->host_header, cases[i].host_header);
		ck_assert_int_eq(c->conns[0]->ip_literal, cases[i].literal);
		config_free(c);
	}
}
END_TEST

START_TEST(allow_lists_resolve_names_and_numbers)
{
	char err[512];
	struct phxd_conf *c = load("[phxd]\nallow_users = root 4242\nallow_groups = 0 root\n", err,
				   sizeof(err));

	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_uint_eq(c->nallow_uids, 2);
	ck_assert_uint_eq(c->allow_uids[0], 0);
	ck_assert_uint_eq(c->allow_uids[1], 4242);
	ck_assert_uint_eq(c->nallow_gids, 2);
	ck_assert_uint_eq(c->allow_gids[0], 0);
	ck_assert_uint_eq(c->allow_gids[1], 0);
	config_free(c);
}
END_TEST

/* A rotated certificate (same path, new contents) needs a new connection. */
START_TEST(rotated_tls_file_needs_reconnect)
{
	char err[512], text[512], ca[256];
	snprintf(ca, sizeof(ca), "%s", write_file("ca.pem", "first"));
	snprintf(text, sizeof(text), "[connection a]\nurl = wss://h/s\nca_file = %s\n", ca);
	struct phxd_conf *a = load(text, err, sizeof(err));
	ck_assert_msg(a != NULL, "%s", err);
	struct phxd_conf *same = load(text, err, sizeof(err));
	ck_assert(!config_conn_needs_reconnect(a->conns[0], same->conns[0]));
	write_file("ca.pem", "second, longer");
	struct phxd_conf *b = load(text, err, sizeof(err));
	ck_assert(config_conn_needs_reconnect(a->conns[0], b->conns[0]));
	config_free(a);
	config_free(same);
	config_free(b);
}
END_TEST

START_TEST(missing_file)
{
	char err[256];
	ck_assert_ptr_null(config_load("/nonexistent/phxd.conf", err, sizeof(err)));
	ck_assert_str_eq(err, "/nonexistent/phxd.conf: No such file or directory");
}
END_TEST

START_TEST(reconnect_needed_only_for_socket_settings)
{
	char err[512];
	struct phxd_conf *a = load("[connection a]\nurl = ws://h/s\nparam.x = 1\njoin = t\n", err, sizeof(err));
	struct phxd_conf *b = load("[connection a]\nurl = ws://h/s\nparam.x = 1\njoin = u\nheartbeat_interval_ms = 5000\n", err, sizeof(err));
	struct phxd_conf *c = load("[connection a]\nurl = ws://h/s\nparam.x = 2\n", err, sizeof(err));
	ck_assert(!config_conn_needs_reconnect(a->conns[0], b->conns[0]));
	ck_assert(config_conn_needs_reconnect(a->conns[0], c->conns[0]));
	config_free(a);
	config_free(b);
	config_free(c);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	SRunner *sr;
	int failed;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	tcase_add_test(tc, full_example_parses);
	tcase_add_loop_test(tc, bad_input_gives_file_line_key, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, long_line_is_an_error_not_a_split);
	tcase_add_test(tc, missing_file);
	tcase_add_test(tc, no_connection_is_a_valid_config);
	tcase_add_test(tc, many_joins_kept_in_order_duplicates_found);
	tcase_add_test(tc, long_path_error_is_bounded);
	tcase_add_test(tc, url_query_values_are_redacted_for_display);
	tcase_add_test(tc, allow_lists_resolve_names_and_numbers);
	tcase_add_test(tc, host_header_and_address_literals);
	tcase_add_test(tc, rotated_tls_file_needs_reconnect);
	tcase_add_test(tc, reconnect_needed_only_for_socket_settings);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	/* one process: the tests share the temporary directory */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		failed++;
	return failed ? 1 : 0;
}
