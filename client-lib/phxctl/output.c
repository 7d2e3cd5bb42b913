/* SPDX-License-Identifier: MIT */
/* phxctl output: JSON, failures and their exit codes, safe text. */
#include "phxctl.h"

#include "ipc/phxd-ipc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
print_text(const char *json)
{
	puts(json);
	fflush(stdout);
}

void
print_json(json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	print_text(text ? text : "null");
	free(text);
}

void
print_member(const char *response, const char *member)
{
	json_t *r = json_loads(response ? response : "", JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	json_t *m = json_object_get(r, member);

	if (m != NULL)
		print_json(m);
	json_decref(r);
}

int
report(const struct ctl *ctl, int rc)
{
	struct phxd_client *c = ctl->c;
	const char *code = phxd_error_code(c);

	if (rc == PHXD_EUNREACHABLE) {
		fprintf(stderr, "phxctl: %s\n", phxd_error_message(c));
		return EXIT_UNREACHABLE;
	}
	if (ctl->json && phxd_last_response(c) && rc == PHXD_EDAEMON)
		print_member(phxd_last_response(c), "error");
	else
		fprintf(stderr, "phxctl: %s: %s\n", code, phxd_error_message(c));
	if (!ctl->json && phxd_error_json(c)) {
		json_t *err = json_loads(phxd_error_json(c), 0, NULL);
		json_t *resp = json_object_get(err, "response");
		if (resp) {
			char *text = json_dumps(resp, JSON_COMPACT | JSON_ENCODE_ANY);
			fprintf(stderr, "response: %s\n", text);
			free(text);
		}
		json_decref(err);
	}
	if (rc == PHXD_ETIMEOUT)
		return EXIT_TIMEOUT;
	if (rc == PHXD_EINVAL)
		return EXIT_USAGE;
	if (strcmp(code, PHXD_E_REPLY_ERROR) == 0)
		return EXIT_REPLY_ERROR;
	if (strcmp(code, PHXD_E_BAD_REQUEST) == 0 || strcmp(code, PHXD_E_UNKNOWN_CONNECTION) == 0)
		return EXIT_USAGE;
	return EXIT_FAILED;
}

void
put_safe(const char *s, int width)
{
	int n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			n += printf("\\x%02x", *p);
		else
			n += putchar(*p) != EOF;
	}
	for (; n < width; n++)
		putchar(' ');
}

const char *
jstr(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));
	return v ? v : "";
}

long long
jint(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

const char *
fmt_duration(long long ms, char *buf, size_t size)
{
	long long s = ms / 1000;

	if (ms < 1000)
		snprintf(buf, size, "%lldms", ms);
	else if (s < 60)
		snprintf(buf, size, "%.1fs", (double)ms / 1000.0);
	else if (s < 3600)
		snprintf(buf, size, "%lldmin %llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, size, "%lldh %lldmin", s / 3600, s / 60 % 60);
	else
		snprintf(buf, size, "%lldd %lldh", s / 86400, s / 3600 % 24);
	return buf;
}

const char *
fmt_bytes(long long n, char *buf, size_t size)
{
	if (n < 1024)
		snprintf(buf, size, "%lldB", n);
	else if (n < 1024 * 1024)
		snprintf(buf, size, "%.1fK", (double)n / 1024);
	else
		snprintf(buf, size, "%.1fM", (double)n / (1024 * 1024));
	return buf;
}
