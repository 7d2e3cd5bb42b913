/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "strmap.h"
#include "xmalloc.h"

#include "protocol/base64.h"
#include "protocol/json_scan.h"

#include <ctype.h>
#include <errno.h>
#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <ini.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_NAME 64
#define MAX_SECRET_FILE (64 * 1024)
#define MAX_LIST 32

struct parse_state {
	struct phxd_conf *conf;
	struct conn_conf *conn;		/* section being read, or NULL for [phxd] */
	bool in_phxd;
	FILE *fp;
	unsigned line;
	bool line_too_long;
	char err[512];
	/* the current connection's joins so far: a topic joined twice is
	 * found without a scan, whatever their number */
	struct strmap joined;
	size_t joins_cap;
};

enum opt_type { OPT_UINT, OPT_MODE, OPT_STRING, OPT_PATH, OPT_LEVEL, OPT_BOOL, OPT_FRACTION,
		OPT_LIST, OPT_OBSOLETE };

/* An option: where it lives (offset in its struct), its range and default. */
struct opt {
	const char *name;
	enum opt_type type;
	size_t offset;
	size_t count_offset;	/* OPT_LIST: where the length goes */
	unsigned long min, max;
	const char *dflt;
	const char *help;
};

#define G(field) offsetof(struct phxd_conf, field)
#define C(field) offsetof(struct conn_conf, field)

static const struct opt global_opts[] = {
	{ "socket", OPT_PATH, G(socket), 0, 0, 0, NULL, "IPC socket path" },
	{ "socket_mode", OPT_MODE, G(socket_mode), 0, 0, 0777, "0660", "IPC socket permissions" },
	{ "socket_group", OPT_STRING, G(socket_group), 0, 0, 0, NULL, "IPC socket group" },
	{ "log_level", OPT_LEVEL, G(log_level), 0, 0, 0, "info", "error|warn|info|debug" },
	{ "max_line_bytes", OPT_UINT, G(max_line), 0, 1024, 64u << 20, "1048576",
	  "longest IPC request line" },
	{ "client_buffer_bytes", OPT_UINT, G(client_buffer), 0, 65536, 1u << 30, "8388608",
	  "output queued to one IPC client before it is cut off" },
	{ "max_clients", OPT_UINT, G(max_clients), 0, 1, 65536, "1024", "IPC clients at once" },
	/* 0.1's queue between its two threads; there is one loop now */
	{ "receive_queue_bytes", OPT_OBSOLETE, 0, 0, 0, 0, NULL, "no longer used" },
	{ "max_clients_per_uid", OPT_UINT, G(max_clients_per_uid), 0, 1, 65536, "256",
	  "IPC clients of one user at once (root and phxd's own user excepted)" },
	{ "client_max_subscriptions", OPT_UINT, G(client_max_subscriptions), 0, 1, 1000000, "4096",
	  "subscriptions and event streams of one client" },
	{ "client_max_pending", OPT_UINT, G(client_max_pending), 0, 1, 10000000, "10000",
	  "requests of one client awaiting an answer" },
	{ "client_stall_ms", OPT_UINT, G(client_stall_ms), 0, 100, 86400000, "60000",
	  "a client with output waiting that reads none of it this long is cut off" },
	{ "busy_poll_us", OPT_UINT, G(busy_poll_us), 0, 0, 1000, "0",
	  "microseconds phxd polls on after an event before it sleeps (0: it sleeps at once)" },
	{ "allow_users", OPT_STRING, G(allow_users), 0, 0, 0, NULL,
	  "users (names or uids) allowed on the socket, besides root and phxd's own" },
	{ "allow_groups", OPT_STRING, G(allow_groups), 0, 0, 0, NULL,
	  "groups whose members are allowed on the socket" },
	{ "metrics_listen", OPT_STRING, G(metrics_listen), 0, 0, 0, NULL,
	  "ADDRESS:PORT of the HTTP metrics endpoint (off when unset)" },
	{ "metrics_max_topics", OPT_UINT, G(metrics_max_topics), 0, 0, 10000000, "1000",
	  "topics with their own series in the metrics; the rest are counted" },
	{ "outbox", OPT_STRING, G(outbox), 0, 0, 0, NULL,
	  "SQLite file of durable pushes (default $STATE_DIRECTORY/outbox.db; \"off\": none)" },
	{ "outbox_sync", OPT_STRING, G(outbox_sync), 0, 0, 0, "full",
	  "full: a stored push survives power loss; normal: a crash of phxd" },
	{ "outbox_max_messages", OPT_UINT, G(outbox_max_messages), 0, 1, 100000000, "100000",
	  "durable pushes stored at once; more are refused" },
	{ "outbox_max_bytes", OPT_UINT, G(outbox_max_bytes), 0, 4096, 1u << 31, "67108864",
	  "payload bytes of those" },
};

static const struct opt conn_opts[] = {
	{ "url", OPT_STRING, C(url), 0, 0, 0, NULL, "ws:// or wss:// endpoint" },
	{ "auth_token_file", OPT_STRING, C(auth_token), 0, 0, 0, NULL,
	  "Phoenix 1.8 auth token, read from this file" },
	{ "ca_file", OPT_PATH, C(ca_file), 0, 0, 0, NULL, "CA bundle for wss" },
	{ "client_cert", OPT_PATH, C(client_cert), 0, 0, 0, NULL, "client certificate (PEM)" },
	{ "client_key", OPT_PATH, C(client_key), 0, 0, 0, NULL, "client key (PEM)" },
	{ "tls_verify", OPT_BOOL, C(tls_verify), 0, 0, 1, "yes", "verify the server certificate" },
	{ "heartbeat_interval_ms", OPT_UINT, C(heartbeat_ms), 0, 0, 86400000, "30000",
	  "0 disables heartbeats" },
	{ "join_timeout_ms", OPT_UINT, C(join_timeout_ms), 0, 10, 3600000, "10000", NULL },
	{ "push_timeout_ms", OPT_UINT, C(push_timeout_ms), 0, 10, 86400000, "10000", NULL },
	{ "push_buffer", OPT_UINT, C(push_buffer), 0, 0, 10000000, "10000",
	  "pushes waiting for a join" },
	{ "push_buffer_bytes", OPT_UINT, C(push_buffer_bytes), 0, 0, 1u << 30, "67108864",
	  "payload bytes of the pushes waiting for a join" },
	{ "auth_retry_ms", OPT_UINT, C(auth_retry_ms), 0, 0, 86400000, "30000",
	  "least delay after HTTP 401/403" },
	{ "outage_log_interval_ms", OPT_UINT, C(outage_log_ms), 0, 0, 86400000, "60000",
	  "while a connection is down, say so this often (0: only when it starts and ends)" },
	{ "max_message_bytes", OPT_UINT, C(max_message), 0, 1024, 1u << 30, "16777216",
	  "largest incoming websocket message" },
	{ "max_topics", OPT_UINT, C(max_topics), 0, 0, 10000000, "100000",
	  "topics a connection holds; runtime joins past it are refused (0: no limit)" },
	{ "max_channels", OPT_UINT, C(max_channels), 0, 0, 10000000, "100",
	  "topics per websocket; more open more websockets (0: one websocket, no cap)" },
	{ "jitter", OPT_FRACTION, C(jitter), 0, 0, 1, "0.1", "spread of every delay, 0..1" },
	{ "reconnect_after_ms", OPT_LIST, C(reconnect_ms), C(nreconnect), 0, 86400000,
	  "10 50 100 150 200 250 500 1000 2000 5000", NULL },
	{ "rejoin_after_ms", OPT_LIST, C(rejoin_ms), C(nrejoin), 0, 86400000,
	  "1000 2000 5000 10000", NULL },
};

#define NOPTS(t) (sizeof(t) / sizeof((t)[0]))

static bool
fail(struct parse_state *ps, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool
fail(struct parse_state *ps, const char *key, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (ps->err[0] != '\0')
		return false;	/* keep the first error */
	n = snprintf(ps->err, sizeof(ps->err), "%s:%u: %s%s", ps->conf->path, ps->line,
		     key ? key : "", key ? ": " : "");
	/* A long path fills the buffer; snprintf says what it would have taken. */
	if (n < 0 || (size_t)n >= sizeof(ps->err) - 1)
		return false;
	va_start(ap, fmt);
	vsnprintf(ps->err + n, sizeof(ps->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

static bool
parse_ulong(const char *text, int base, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	while (isspace((unsigned char)*text))
		text++;
	if (*text == '-' || *text == '+' || *text == '\0')
		return false;
	errno = 0;
	v = strtoul(text, &end, base);
	if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static char *
read_small_file(const char *path, char *why, size_t whylen)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (f == NULL) {
		snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	buf = xmalloc(MAX_SECRET_FILE + 1);
	n = fread(buf, 1, MAX_SECRET_FILE + 1, f);
	if (ferror(f) || n > MAX_SECRET_FILE) {
		snprintf(why, whylen, "%s: %s", path,
			 ferror(f) ? strerror(errno) : "larger than 64 KiB");
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	/* Files written by echo end with a newline that is not part of it. */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	if (strlen(buf) != n) {
		snprintf(why, whylen, "%s contains a NUL byte", path);
		free(buf);
		return NULL;
	}
	return buf;
}

static bool
set_opt(struct parse_state *ps, void *base, const struct opt *o, const char *value)
{
	char *field = (char *)base + o->offset;
	unsigned long v;

	switch (o->type) {
	case OPT_OBSOLETE:
		/* an old file still loads */
		log_warnx("line %u: %s is no longer used; ignored", ps->line, o->name);
		return true;
	case OPT_UINT:
		if (!parse_ulong(value, 10, o->min, o->max, &v))
			return fail(ps, o->name, "'%s' is not an integer from %lu to %lu", value,
				    o->min, o->max);
		*(unsigned *)field = (unsigned)v;
		return true;
	case OPT_MODE:
		if (!parse_ulong(value, 8, 0, 0777, &v))
			return fail(ps, o->name, "'%s' is not an octal mode (0000 to 0777)", value);
		*(mode_t *)field = (mode_t)v;
		return true;
	case OPT_PATH:
		if (value[0] != '/')
			return fail(ps, o->name, "'%s' is not an absolute path", value);
		/* fall through */
	case OPT_STRING:
		if (value[0] == '\0')
			return fail(ps, o->name, "empty value");
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return true;
	case OPT_LEVEL:
		if (!log_level_parse(value, (enum log_level *)field))
			return fail(ps, o->name, "'%s' is not one of error, warn, info, debug",
				    value);
		return true;
	case OPT_BOOL:
		if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 ||
		    strcmp(value, "1") == 0 || strcmp(value, "on") == 0)
			*(bool *)field = true;
		else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0 ||
			 strcmp(value, "0") == 0 || strcmp(value, "off") == 0)
			*(bool *)field = false;
		else
			return fail(ps, o->name, "'%s' is not yes or no", value);
		return true;
	case OPT_FRACTION: {
		char *end;
		double d;
		errno = 0;
		d = strtod(value, &end);
		if (errno != 0 || end == value || *end != '\0' || !(d >= 0.0 && d <= 1.0))
			return fail(ps, o->name, "'%s' is not a number from 0 to 1", value);
		*(double *)field = d;
		return true;
	}
	case OPT_LIST: {
		unsigned list[MAX_LIST];
		size_t n = 0;
		char *copy = xstrdup(value), *save = NULL;
		for (char *tok = strtok_r(copy, " \t,", &save); tok != NULL;
		     tok = strtok_r(NULL, " \t,", &save)) {
			if (n == MAX_LIST) {
				free(copy);
				return fail(ps, o->name, "more than %d delays", MAX_LIST);
			}
			if (!parse_ulong(tok, 10, o->min, o->max, &v)) {
				fail(ps, o->name, "'%s' is not a delay from %lu to %lu ms", tok,
				     o->min, o->max);
				free(copy);
				return false;
			}
			list[n++] = (unsigned)v;
		}
		free(copy);
		if (n == 0)
			return fail(ps, o->name, "needs at least one delay in ms");
		free(*(unsigned **)field);
		*(unsigned **)field = xmemdup(list, n * sizeof(unsigned));
		*(size_t *)((char *)base + o->count_offset) = n;
		return true;
	}
	}
	return false;
}

static void
apply_defaults(void *base, const struct opt *opts, size_t n)
{
	struct phxd_conf scratch_conf = { .path = "(defaults)" };
	struct parse_state ps = { .conf = &scratch_conf };

	for (size_t i = 0; i < n; i++)
		if (opts[i].dflt != NULL && !set_opt(&ps, base, &opts[i], opts[i].dflt))
			abort();	/* a default outside its own range */
}

void
config_conn_defaults(struct conn_conf *c)
{
	c->refs = 1;
	apply_defaults(c, conn_opts, NOPTS(conn_opts));
}

static void
kv_add(struct conf_kv **list, size_t *n, const char *key, size_t klen, char *value)
{
	for (size_t i = 0; i < *n; i++) {
		if (strlen((*list)[i].key) == klen && memcmp((*list)[i].key, key, klen) == 0) {
			free((*list)[i].value);
			(*list)[i].value = value;
			return;
		}
	}
	*list = xrealloc(*list, (*n + 1) * sizeof(**list));
	(*list)[*n].key = xstrndup(key, klen);
	(*list)[*n].value = value;
	(*n)++;
}

static bool
valid_header_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
			return false;
	return true;
}

static bool
valid_header_value(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* join = TOPIC [JSON object], or join_file = TOPIC PATH (the object in a
 * file: a payload longer than a config line). */
static bool
parse_join(struct parse_state *ps, const char *key, const char *value, bool from_file)
{
	struct conn_conf *c = ps->conn;
	const char *sp = value;
	size_t tlen;
	char *payload, *text = NULL, why[300];
	json_error_t jerr;
	json_t *j;

	while (*sp && !isspace((unsigned char)*sp))
		sp++;
	tlen = (size_t)(sp - value);
	if (tlen == 0 || tlen > 255)
		return fail(ps, key, "a topic of 1 to 255 bytes is needed");
	if (!json_utf8_valid(value, tlen))
		return fail(ps, key, "the topic is not valid UTF-8");
	while (isspace((unsigned char)*sp))
		sp++;
	if (from_file) {
		if (*sp == '\0')
			return fail(ps, key, "TOPIC PATH: the file of the join payload is missing");
		if ((text = read_small_file(sp, why, sizeof(why))) == NULL)
			return fail(ps, key, "%s", why);
		sp = text;
	}
	if (*sp == '\0') {
		payload = xstrdup("{}");
	} else {
		j = json_loads(sp, JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_object(j)) {
			json_decref(j);
			free(text);
			return fail(ps, key, "payload of %.*s is not a JSON object: %s", (int)tlen,
				    value, j ? "another JSON type" : jerr.text);
		}
		payload = json_dumps(j, JSON_COMPACT);
		json_decref(j);
	}
	free(text);
	if (strmap_get(&ps->joined, value, tlen) != NULL) {
		free(payload);
		return fail(ps, key, "%.*s is joined twice", (int)tlen, value);
	}
	if (c->njoins == ps->joins_cap) {
		ps->joins_cap = ps->joins_cap ? 2 * ps->joins_cap : 16;
		c->joins = xrealloc(c->joins, ps->joins_cap * sizeof(*c->joins));
	}
	strmap_put(&ps->joined, value, tlen, c);
	c->joins[c->njoins].topic = xstrndup(value, tlen);
	c->joins[c->njoins].payload = payload;
	c->njoins++;
	return true;
}

/* header.NAME = VALUE, or header.NAME_file = PATH (a secret, or a value
 * longer than a config line: a bearer token). */
static bool
parse_header(struct parse_state *ps, const char *key, const char *value)
{
	struct conn_conf *c = ps->conn;
	const char *name = key + 7;
	size_t nlen = strlen(name);
	char *text, why[300];

	if (nlen > 5 && strcmp(name + nlen - 5, "_file") == 0) {
		if ((text = read_small_file(value, why, sizeof(why))) == NULL)
			return fail(ps, key, "%s", why);
		nlen -= 5;
	} else {
		text = xstrdup(value);
	}
	char *hname = xstrndup(name, nlen);
	bool ok = valid_header_name(hname);
	free(hname);
	if (!ok) {
		free(text);
		return fail(ps, key, "not a valid HTTP header name");
	}
	if (!valid_header_value(text)) {
		free(text);
		return fail(ps, key, "control characters in a header value");
	}
	kv_add(&c->headers, &c->nheaders, name, nlen, text);
	return true;
}

static bool
conn_key(struct parse_state *ps, const char *name, const char *value)
{
	struct conn_conf *c = ps->conn;
	char why[300];

	if (strncmp(name, "param.", 6) == 0) {
		const char *key = name + 6;
		size_t klen = strlen(key);
		if (klen == 0)
			return fail(ps, name, "a parameter name is needed after 'param.'");
		if (klen > 5 && strcmp(key + klen - 5, "_file") == 0) {
			char *secret = read_small_file(value, why, sizeof(why));
			if (secret == NULL)
				return fail(ps, name, "%s", why);
			kv_add(&c->params, &c->nparams, key, klen - 5, secret);
		} else {
			kv_add(&c->params, &c->nparams, key, klen, xstrdup(value));
		}
		return true;
	}
	if (strncmp(name, "header.", 7) == 0)
		return parse_header(ps, name, value);
	if (strcmp(name, "join") == 0 || strcmp(name, "join_file") == 0)
		return parse_join(ps, name, value, name[4] == '_');
	for (size_t i = 0; i < NOPTS(conn_opts); i++) {
		if (strcmp(name, conn_opts[i].name) != 0)
			continue;
		if (strcmp(name, "url") == 0 && !config_parse_url(c, value, why, sizeof(why)))
			return fail(ps, name, "%s", why);
		if (strcmp(name, "auth_token_file") == 0) {
			char *token = read_small_file(value, why, sizeof(why));
			if (token == NULL)
				return fail(ps, name, "%s", why);
			free(c->auth_token);
			c->auth_token = token;
			return true;
		}
		return set_opt(ps, c, &conn_opts[i], value);
	}
	return fail(ps, name, "unknown key in [connection %s]", c->name);
}

static int
config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_state *ps = user;
	struct phxd_conf *conf = ps->conf;

	if (ps->err[0] != '\0')
		return 0;
	if (ps->line_too_long)
		return fail(ps, NULL, "line longer than %d bytes", INI_MAX_LINE - 1);
	if (strcmp(section, "phxd") == 0) {
		for (size_t i = 0; i < NOPTS(global_opts); i++)
			if (strcmp(name, global_opts[i].name) == 0)
				return set_opt(ps, conf, &global_opts[i], value);
		return fail(ps, name, "unknown key in [phxd]");
	}
	if (strncmp(section, "connection ", 11) == 0) {
		const char *cname = section + 11;
		if (ps->conn == NULL || strcmp(ps->conn->name, cname) != 0)
			return fail(ps, NULL, "internal: section [%s] not opened", section);
		return conn_key(ps, name, value);
	}
	return fail(ps, NULL, "unknown section [%s] (want [phxd] or [connection NAME])", section);
}

static bool
valid_conn_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MAX_NAME)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

/*
 * Reads one line for inih, counting lines and noticing those longer than
 * inih's fixed buffer (which would otherwise be split silently). Section
 * headers are handled here too, so empty sections still exist.
 */
static char *
config_ini_reader(char *buf, int size, void *stream)
{
	struct parse_state *ps = stream;
	size_t n;
	char *p;

	if (fgets(buf, size, ps->fp) == NULL)
		return NULL;
	ps->line++;
	n = strlen(buf);
	ps->line_too_long = false;
	if (n > 0 && buf[n - 1] != '\n' && !feof(ps->fp)) {
		int ch;
		ps->line_too_long = true;
		while ((ch = fgetc(ps->fp)) != EOF && ch != '\n')
			;
		fail(ps, NULL, "line longer than %d bytes", size - 2);
		return buf;
	}
	for (p = buf; isspace((unsigned char)*p); p++)
		;
	if (*p == '[' && ps->err[0] == '\0') {
		char *end = strchr(p, ']');
		if (end == NULL) {
			fail(ps, NULL, "section header without ']'");
			return buf;
		}
		*end = '\0';
		const char *section = p + 1;
		*end = ']';
		char name[256];
		snprintf(name, sizeof(name), "%.*s", (int)(end - p - 1), p + 1);
		(void)section;
		if (strcmp(name, "phxd") == 0) {
			if (ps->in_phxd)
				fail(ps, NULL, "[phxd] appears twice");
			ps->in_phxd = true;
			ps->conn = NULL;
		} else if (strncmp(name, "connection ", 11) == 0) {
			const char *cname = name + 11;
			if (!valid_conn_name(cname)) {
				fail(ps, NULL, "connection name '%s' must be 1-64 of A-Z a-z 0-9 . _ -",
				     cname);
			} else if (config_find_conn(ps->conf, cname) != NULL) {
				fail(ps, NULL, "[connection %s] appears twice", cname);
			} else {
				struct conn_conf *c = xcalloc(1, sizeof(*c));
				c->name = xstrdup(cname);
				config_conn_defaults(c);
				ps->conf->conns = xrealloc(ps->conf->conns,
							   (ps->conf->nconns + 1) * sizeof(c));
				ps->conf->conns[ps->conf->nconns++] = c;
				ps->conn = c;
				strmap_free(&ps->joined);
				strmap_init(&ps->joined);
				ps->joins_cap = 0;
			}
		} else {
			fail(ps, NULL, "unknown section [%s] (want [phxd] or [connection NAME])", name);
		}
	}
	return buf;
}

static void
url_encode_into(char **dst, size_t *len, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);

	*dst = xrealloc(*dst, *len + 3 * n + 1);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			(*dst)[(*len)++] = (char)ch;
		} else {
			(*dst)[(*len)++] = '%';
			(*dst)[(*len)++] = hex[ch >> 4];
			(*dst)[(*len)++] = hex[ch & 15];
		}
	}
	(*dst)[*len] = '\0';
}

static void
append(char **dst, size_t *len, const char *s)
{
	size_t n = strlen(s);

	*dst = xrealloc(*dst, *len + n + 1);
	memcpy(*dst + *len, s, n + 1);
	*len += n;
}

/* The url as status and logs show it: query values may be secrets. */
static char *
redact_url(const char *url)
{
	const char *q = strchr(url, '?');
	char *out;
	size_t len;

	if (q == NULL)
		return xstrdup(url);
	len = (size_t)(q - url) + 1;
	out = xstrndup(url, len);
	for (const char *p = q + 1; *p;) {
		size_t n = strcspn(p, "&"), k = strcspn(p, "=&");
		char *part = xstrndup(p, k);
		append(&out, &len, part);
		free(part);
		if (k < n)
			append(&out, &len, "=REDACTED");
		p += n;
		if (*p == '&') {
			append(&out, &len, "&");
			p++;
		}
	}
	return out;
}

/* Which contents the TLS files have now, so that a reload after a
 * certificate was rotated reconnects with the new one. */
static char *
tls_stamp(const struct conn_conf *c)
{
	const char *files[] = { c->ca_file, c->client_cert, c->client_key };
	char *out = xstrdup(""), part[96];
	size_t len = 0;

	for (size_t i = 0; i < 3; i++) {
		struct stat st;
		if (files[i] == NULL || stat(files[i], &st) != 0)
			snprintf(part, sizeof(part), "-|");
		else
			snprintf(part, sizeof(part), "%lu:%ld.%09ld:%lld|", (unsigned long)st.st_ino,
				 (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_size);
		append(&out, &len, part);
	}
	return out;
}

/* The request path and subprotocols, from the url, params and token. */
static void
finish_conn(struct conn_conf *c)
{
	char *path = NULL;
	size_t len = 0;

	append(&path, &len, c->path);
	append(&path, &len, "?");
	if (c->query[0] != '\0') {
		append(&path, &len, c->query);
		append(&path, &len, "&");
	}
	for (size_t i = 0; i < c->nparams; i++) {
		url_encode_into(&path, &len, c->params[i].key);
		append(&path, &len, "=");
		url_encode_into(&path, &len, c->params[i].value);
		append(&path, &len, "&");
	}
	append(&path, &len, "vsn=2.0.0");
	free(c->request_path);
	c->request_path = path;
	free(c->url_shown);
	c->url_shown = redact_url(c->url);
	free(c->tls_stamp);
	c->tls_stamp = tls_stamp(c);
	/* RFC 7230: an IPv6 literal is bracketed in Host, port or not. */
	bool ipv6 = strchr(c->host, ':') != NULL;
	bool default_port = (c->tls && c->port == 443) || (!c->tls && c->port == 80);
	free(c->host_header);
	if (default_port)
		xasprintf(&c->host_header, "%s%s%s", ipv6 ? "[" : "", c->host, ipv6 ? "]" : "");
	else
		xasprintf(&c->host_header, "%s%s%s:%d", ipv6 ? "[" : "", c->host, ipv6 ? "]" : "",
			  c->port);
	unsigned char addr[sizeof(struct in6_addr)];
	c->ip_literal = inet_pton(AF_INET, c->host, addr) == 1 || inet_pton(AF_INET6, c->host, addr) == 1;

	free(c->subprotocols);
	c->subprotocols = NULL;
	if (c->auth_token != NULL) {
		/* As phoenix.js 1.8: btoa(token) without padding. */
		size_t n = strlen(c->auth_token);
		char *enc = xmalloc(BASE64_ENCODED_SIZE(n));
		base64_encode(c->auth_token, n, false, enc);
		xasprintf(&c->subprotocols, "phoenix, base64url.bearer.phx.%s", enc);
		free(enc);
	}
}

bool
config_parse_url(struct conn_conf *c, const char *url, char *err, size_t errlen)
{
	const char *p, *host, *hend, *rest;
	char *path;
	bool tls;
	unsigned long port;

	if (strncmp(url, "ws://", 5) == 0) {
		tls = false;
		p = url + 5;
	} else if (strncmp(url, "wss://", 6) == 0) {
		tls = true;
		p = url + 6;
	} else {
		snprintf(err, errlen, "'%s' must start with ws:// or wss://", url);
		return false;
	}
	if (*p == '[') {
		host = p + 1;
		hend = strchr(host, ']');
		if (hend == NULL) {
			snprintf(err, errlen, "'%s': IPv6 address without ']'", url);
			return false;
		}
		rest = hend + 1;
	} else {
		host = p;
		hend = host + strcspn(host, ":/?#");
		rest = hend;
	}
	if (hend == host) {
		snprintf(err, errlen, "'%s' has no host", url);
		return false;
	}
	port = tls ? 443 : 80;
	if (*rest == ':') {
		char digits[8];
		size_t n = strcspn(rest + 1, "/?#");
		if (n == 0 || n >= sizeof(digits)) {
			snprintf(err, errlen, "'%s' has a bad port", url);
			return false;
		}
		memcpy(digits, rest + 1, n);
		digits[n] = '\0';
		if (!parse_ulong(digits, 10, 1, 65535, &port)) {
			snprintf(err, errlen, "'%s' has a bad port", url);
			return false;
		}
		rest += 1 + n;
	}
	if (*rest == '#' || strchr(rest, '#') != NULL) {
		snprintf(err, errlen, "'%s': a websocket url has no fragment", url);
		return false;
	}
	for (const char *q = url; *q; q++) {
		if ((unsigned char)*q <= 0x20 || *q == 0x7f) {
			snprintf(err, errlen, "'%s' contains spaces or control characters", url);
			return false;
		}
	}
	size_t plen = strcspn(rest, "?");
	path = xstrndup(*rest == '/' ? rest : "/", *rest == '/' ? plen : 1);
	/* Like phoenix.js, "/socket" means the endpoint "/socket/websocket". */
	size_t L = strlen(path);
	if (!(L >= 10 && strcmp(path + L - 10, "/websocket") == 0)) {
		char *full;
		xasprintf(&full, "%s%swebsocket", path, path[L - 1] == '/' ? "" : "/");
		free(path);
		path = full;
	}
	free(c->host);
	free(c->path);
	free(c->query);
	c->tls = tls;
	c->host = xstrndup(host, (size_t)(hend - host));
	c->port = (int)port;
	c->path = path;
	c->query = xstrdup(rest[plen] == '?' ? rest + plen + 1 : "");
	return true;
}

struct conn_conf *
config_find_conn(const struct phxd_conf *c, const char *name)
{
	for (size_t i = 0; i < c->nconns; i++)
		if (strcmp(c->conns[i]->name, name) == 0)
			return c->conns[i];
	return NULL;
}

/* Names and numbers of allow_users / allow_groups, looked up now so that
 * accepting a client never waits on NSS. */
static void
resolve_access(struct phxd_conf *conf, char *err, size_t errlen)
{
	for (int groups = 0; groups < 2; groups++) {
		const char *list = groups ? conf->allow_groups : conf->allow_users;
		char *copy, *save = NULL;
		if (list == NULL)
			continue;
		copy = xstrdup(list);
		for (char *tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
			unsigned long id;
			bool numeric = parse_ulong(tok, 10, 0, (uid_t)-2, &id);
			if (!numeric) {
				struct passwd *pw = groups ? NULL : getpwnam(tok);
				struct group *gr = groups ? getgrnam(tok) : NULL;
				if (pw == NULL && gr == NULL) {
					snprintf(err, errlen, "%s: %s: no %s named '%s'", conf->path,
						 groups ? "allow_groups" : "allow_users",
						 groups ? "group" : "user", tok);
					free(copy);
					return;
				}
				id = groups ? gr->gr_gid : pw->pw_uid;
			}
			if (groups) {
				conf->allow_gids = xrealloc(conf->allow_gids,
							    (conf->nallow_gids + 1) * sizeof(gid_t));
				conf->allow_gids[conf->nallow_gids++] = (gid_t)id;
			} else {
				conf->allow_uids = xrealloc(conf->allow_uids,
							    (conf->nallow_uids + 1) * sizeof(uid_t));
				conf->allow_uids[conf->nallow_uids++] = (uid_t)id;
			}
		}
		free(copy);
	}
}

bool
config_parse_listen(const char *listen, char *addr, size_t addrlen, unsigned short *port)
{
	const char *colon, *host = listen;
	size_t hostlen;
	unsigned char probe[sizeof(struct in6_addr)];
	unsigned long p;

	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (close == NULL || close[1] != ':')
			return false;
		host = listen + 1;
		hostlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL)
			return false;
		hostlen = (size_t)(colon - listen);
	}
	if (hostlen == 0 || hostlen >= addrlen)
		return false;
	memcpy(addr, host, hostlen);
	addr[hostlen] = '\0';
	if (inet_pton(listen[0] == '[' ? AF_INET6 : AF_INET, addr, probe) != 1)
		return false;
	if (!parse_ulong(colon + 1, 10, 1, 65535, &p))
		return false;
	*port = (unsigned short)p;
	return true;
}

struct phxd_conf *
config_load(const char *path, char *err, size_t errlen)
{
	struct phxd_conf *conf = xcalloc(1, sizeof(*conf));
	struct parse_state ps = { .conf = conf };
	int rc;

	conf->path = xstrdup(path);
	apply_defaults(conf, global_opts, NOPTS(global_opts));
	ps.fp = fopen(path, "r");
	if (ps.fp == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		config_free(conf);
		return NULL;
	}
	rc = ini_parse_stream(config_ini_reader, &ps, config_ini_handler, &ps);
	fclose(ps.fp);
	strmap_free(&ps.joined);
	if (ps.err[0] == '\0' && rc != 0) {
		ps.line = rc > 0 ? (unsigned)rc : ps.line;
		fail(&ps, NULL, "not a 'key = value' line");
	}
	for (size_t i = 0; ps.err[0] == '\0' && i < conf->nconns; i++) {
		struct conn_conf *c = conf->conns[i];
		if (c->url == NULL) {
			snprintf(ps.err, sizeof(ps.err), "%s: [connection %s]: url is missing", path,
				 c->name);
			break;
		}
		if (!c->tls && (c->ca_file || c->client_cert || c->client_key)) {
			snprintf(ps.err, sizeof(ps.err),
				 "%s: [connection %s]: ca_file/client_cert/client_key need a wss:// url",
				 path, c->name);
			break;
		}
		if ((c->client_cert == NULL) != (c->client_key == NULL)) {
			snprintf(ps.err, sizeof(ps.err),
				 "%s: [connection %s]: client_cert and client_key go together", path,
				 c->name);
			break;
		}
		finish_conn(c);
		size_t size = strlen(c->request_path) + strlen(c->host_header) +
			      (c->subprotocols ? strlen(c->subprotocols) : 0) + 512;
		for (size_t h = 0; h < c->nheaders; h++)
			size += strlen(c->headers[h].key) + strlen(c->headers[h].value) + 4;
		if (size > PHXD_HANDSHAKE_MAX) {
			snprintf(ps.err, sizeof(ps.err),
				 "%s: [connection %s]: the websocket handshake would take %zu bytes "
				 "(params, headers, token); at most %u fit", path, c->name, size,
				 PHXD_HANDSHAKE_MAX);
			break;
		}
	}
	if (ps.err[0] == '\0' && conf->metrics_listen != NULL) {
		char addr[INET6_ADDRSTRLEN];
		unsigned short port;
		if (!config_parse_listen(conf->metrics_listen, addr, sizeof(addr), &port))
			snprintf(ps.err, sizeof(ps.err),
				 "%s: metrics_listen: '%s' is not ADDRESS:PORT (127.0.0.1:9464, "
				 "[::1]:9464)", path, conf->metrics_listen);
	}
	if (ps.err[0] == '\0' && conf->outbox != NULL && conf->outbox[0] != '/' &&
	    strcmp(conf->outbox, "off") != 0)
		snprintf(ps.err, sizeof(ps.err), "%s: outbox: '%s' is not an absolute path or off",
			 path, conf->outbox);
	if (ps.err[0] == '\0' && strcmp(conf->outbox_sync, "full") != 0 &&
	    strcmp(conf->outbox_sync, "normal") != 0)
		snprintf(ps.err, sizeof(ps.err), "%s: outbox_sync: '%s' is not full or normal", path,
			 conf->outbox_sync);
	if (ps.err[0] == '\0')
		resolve_access(conf, ps.err, sizeof(ps.err));
	if (ps.err[0] != '\0') {
		snprintf(err, errlen, "%s", ps.err);
		config_free(conf);
		return NULL;
	}
	return conf;
}

static void
kv_free(struct conf_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

const struct conn_conf *
config_conn_ref(const struct conn_conf *c)
{
	__atomic_add_fetch(&((struct conn_conf *)c)->refs, 1, __ATOMIC_RELAXED);
	return c;
}

void
config_conn_free(const struct conn_conf *cc)
{
	struct conn_conf *c = (struct conn_conf *)cc;

	if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	free(c->name);
	free(c->url);
	free(c->url_shown);
	free(c->tls_stamp);
	free(c->host_header);
	free(c->host);
	free(c->path);
	free(c->query);
	free(c->request_path);
	free(c->subprotocols);
	kv_free(c->params, c->nparams);
	kv_free(c->headers, c->nheaders);
	free(c->auth_token);
	free(c->ca_file);
	free(c->client_cert);
	free(c->client_key);
	free(c->reconnect_ms);
	free(c->rejoin_ms);
	for (size_t i = 0; i < c->njoins; i++) {
		free(c->joins[i].topic);
		free(c->joins[i].payload);
	}
	free(c->joins);
	free(c);
}

void
config_free(struct phxd_conf *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nconns; i++)
		config_conn_free(c->conns[i]);
	free(c->conns);
	free(c->path);
	free(c->socket);
	free(c->socket_group);
	free(c->allow_users);
	free(c->allow_groups);
	free(c->metrics_listen);
	free(c->outbox);
	free(c->outbox_sync);
	free(c->allow_uids);
	free(c->allow_gids);
	free(c);
}

bool
config_str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
kv_eq(const struct conf_kv *a, size_t na, const struct conf_kv *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!config_str_eq(a[i].key, b[i].key) || !config_str_eq(a[i].value, b[i].value))
			return false;
	return true;
}

bool
config_conn_needs_reconnect(const struct conn_conf *a, const struct conn_conf *b)
{
	return !config_str_eq(a->url, b->url) || !config_str_eq(a->request_path, b->request_path) ||
	       !config_str_eq(a->subprotocols, b->subprotocols) ||
	       !kv_eq(a->headers, a->nheaders, b->headers, b->nheaders) ||
	       !config_str_eq(a->ca_file, b->ca_file) || !config_str_eq(a->client_cert, b->client_cert) ||
	       !config_str_eq(a->client_key, b->client_key) || a->tls_verify != b->tls_verify ||
	       !config_str_eq(a->tls_stamp, b->tls_stamp) ||
	       a->max_message != b->max_message;
}
