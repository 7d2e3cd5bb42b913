#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Process-wide by nature: stderr is one stream. */
static struct {
	enum log_level level;
	const char *progname;
	bool journal;
	pthread_mutex_t lock;
} logger = { LOG_LVL_INFO, "phxd", false, PTHREAD_MUTEX_INITIALIZER };

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static const int syslog_prio[] = { 3, 4, 6, 7 };

void
log_init(enum log_level level, const char *progname)
{
	logger.level = level;
	logger.progname = progname;
	logger.journal = getenv("JOURNAL_STREAM") != NULL;
}

void
log_set_level(enum log_level level)
{
	logger.level = level;
}

enum log_level
log_get_level(void)
{
	return logger.level;
}

bool
log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	if (strcmp(name, "warning") == 0) {
		*out = LOG_LVL_WARN;
		return true;
	}
	return false;
}

const char *
log_level_name(enum log_level level)
{
	return level_names[level];
}

static void
log_vemit(enum log_level level, const char *errstr, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	if (level > logger.level)
		return;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	/* One write per line keeps lines whole when threads interleave. */
	pthread_mutex_lock(&logger.lock);
	if (logger.journal)
		fprintf(stderr, "<%d>%s%s%s\n", syslog_prio[level], line, errstr ? ": " : "",
			errstr ? errstr : "");
	else
		fprintf(stderr, "%s: %s%s%s%s\n", logger.progname,
			level == LOG_LVL_ERROR ? "error: " : level == LOG_LVL_WARN ? "warning: " : "",
			line, errstr ? ": " : "", errstr ? errstr : "");
	pthread_mutex_unlock(&logger.lock);
}

#define LOG_FN(name, level, with_errno)                                   \
	void name(const char *fmt, ...)                                   \
	{                                                                 \
		const char *errstr = with_errno ? strerror(errno) : NULL; \
		va_list ap;                                               \
		va_start(ap, fmt);                                        \
		log_vemit(level, errstr, fmt, ap);                        \
		va_end(ap);                                               \
	}

LOG_FN(log_warn, LOG_LVL_WARN, true)
LOG_FN(log_warnx, LOG_LVL_WARN, false)
LOG_FN(log_error, LOG_LVL_ERROR, false)
LOG_FN(log_info, LOG_LVL_INFO, false)
LOG_FN(log_debug, LOG_LVL_DEBUG, false)

void
fatal(const char *fmt, ...)
{
	const char *errstr = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LVL_ERROR, errstr, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LVL_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

static void
log_libevent(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_ERR)
		log_error("libevent: %s", msg);
	else if (severity == EVENT_LOG_WARN)
		log_warnx("libevent: %s", msg);
	else
		log_debug("libevent: %s", msg);
}

static void
log_lws(int level, const char *line)
{
	size_t n = strlen(line);

	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (level & LLL_ERR)
		log_warnx("websocket: %.*s", (int)n, line);
	else
		log_debug("websocket: %.*s", (int)n, line);
}

void
log_route_libraries(void)
{
	event_set_log_callback(log_libevent);
	/* lws errors are mostly connection failures we report ourselves. */
	lws_set_log_level(LLL_ERR | (logger.level >= LOG_LVL_DEBUG ? LLL_WARN : 0), log_lws);
}
