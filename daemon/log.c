/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * Lines go through a bounded queue to a writer thread, so a log sink that
 * blocks (a full pipe nobody reads) never stalls the daemon: when the
 * queue is full, lines are dropped and their count is logged once the
 * sink takes lines again. Before log_start() and after log_stop() lines
 * are written directly.
 */
#define LOG_QUEUE_BYTES (256u << 10)

/* Process-wide by nature: stderr is one stream. */
static struct {
	enum log_level level;
	const char *progname;
	bool journal;
	pthread_mutex_t lock;
	pthread_cond_t wake, drained;
	pthread_t writer;
	bool threaded, stopping;
	char *queue;			/* ring of LOG_QUEUE_BYTES */
	size_t head, used;
	unsigned long dropped;
} logger = {
	.level = LOG_LVL_INFO,
	.progname = "phxd",
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.wake = PTHREAD_COND_INITIALIZER,
	.drained = PTHREAD_COND_INITIALIZER,
};

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static const char *const level_words[] = { "error", "warning", "info", "debug" };
static const int syslog_prio[] = { 3, 4, 6, 7 };

/* What starts a line: its priority for journald, which stamps lines
 * itself; elsewhere the time (UTC, ms), the program, its pid and the level. */
static size_t
line_prefix(char *buf, size_t size, enum log_level level)
{
	struct timespec ts;
	struct tm tm;
	int n;

	if (logger.journal) {
		n = snprintf(buf, size, "<%d>", syslog_prio[level]);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld]: %s: ",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			     tm.tm_sec, ts.tv_nsec / 1000000, logger.progname, (long)getpid(),
			     level_words[level]);
	}
	return n < 0 ? 0 : (size_t)n >= size ? size - 1 : (size_t)n;
}

static void
write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;	/* nowhere to say it */
		}
		p += w;
		n -= (size_t)w;
	}
}

/* Under the lock: appends as much of a line as fits, all or nothing. */
static bool
enqueue(const char *line, size_t n)
{
	if (n > LOG_QUEUE_BYTES - logger.used)
		return false;
	size_t tail = (logger.head + logger.used) % LOG_QUEUE_BYTES;
	size_t first = n < LOG_QUEUE_BYTES - tail ? n : LOG_QUEUE_BYTES - tail;
	memcpy(logger.queue + tail, line, first);
	memcpy(logger.queue, line + first, n - first);
	logger.used += n;
	return true;
}

static void *
writer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&logger.lock);
	for (;;) {
		while (logger.used == 0 && logger.dropped == 0 && !logger.stopping)
			pthread_cond_wait(&logger.wake, &logger.lock);
		if (logger.used == 0 && logger.dropped == 0) {
			pthread_cond_broadcast(&logger.drained);
			if (logger.stopping)
				break;
			continue;
		}
		if (logger.dropped > 0 && logger.used == 0) {
			char note[192];
			size_t n = line_prefix(note, sizeof(note), LOG_LVL_WARN);
			snprintf(note + n, sizeof(note) - n,
				 "%lu log lines dropped: the log output was blocked\n",
				 logger.dropped);
			logger.dropped = 0;
			pthread_mutex_unlock(&logger.lock);
			write_all(note, strlen(note));
			pthread_mutex_lock(&logger.lock);
			continue;
		}
		size_t n = logger.used < LOG_QUEUE_BYTES - logger.head ? logger.used
								  : LOG_QUEUE_BYTES - logger.head;
		const char *p = logger.queue + logger.head;
		pthread_mutex_unlock(&logger.lock);
		write_all(p, n);	/* may block: only this thread waits */
		pthread_mutex_lock(&logger.lock);
		logger.head = (logger.head + n) % LOG_QUEUE_BYTES;
		logger.used -= n;
	}
	pthread_mutex_unlock(&logger.lock);
	return NULL;
}

bool
log_start(void)
{
	sigset_t all, old;
	int rc;

	logger.queue = malloc(LOG_QUEUE_BYTES);
	if (logger.queue == NULL)
		return false;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&logger.writer, NULL, writer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		free(logger.queue);
		logger.queue = NULL;
		return false;
	}
	pthread_mutex_lock(&logger.lock);
	logger.threaded = true;
	pthread_mutex_unlock(&logger.lock);
	return true;
}

void
log_stop(unsigned wait_ms)
{
	struct timespec until;
	bool drained;

	if (!logger.threaded)
		return;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += wait_ms / 1000;
	until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&logger.lock);
	logger.stopping = true;
	pthread_cond_signal(&logger.wake);
	while (logger.used > 0 || logger.dropped > 0)
		if (pthread_cond_timedwait(&logger.drained, &logger.lock, &until) != 0)
			break;
	drained = logger.used == 0 && logger.dropped == 0;
	logger.threaded = false;
	pthread_mutex_unlock(&logger.lock);
	/* A writer stuck on a sink that never reads is left to exit(). */
	if (drained) {
		pthread_join(logger.writer, NULL);
		free(logger.queue);
		logger.queue = NULL;
	}
}


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

static void log_vemit(enum log_level level, const char *errstr, const char *fmt, va_list ap)
	LOG_PRINTF(3, 0);

static void
log_vemit(enum log_level level, const char *errstr, const char *fmt, va_list ap)
{
	char msg[2048], line[2200];
	int n;

	if (level > logger.level)
		return;
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		return;
	size_t pre = line_prefix(line, sizeof(line), level);
	n = snprintf(line + pre, sizeof(line) - pre, "%s%s%s\n", msg, errstr ? ": " : "",
		     errstr ? errstr : "");
	if (n < 0)
		return;
	n += (int)pre;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* One write per line keeps lines whole when threads interleave. */
	pthread_mutex_lock(&logger.lock);
	if (!logger.threaded) {
		write_all(line, (size_t)n);
	} else if (enqueue(line, (size_t)n)) {
		pthread_cond_signal(&logger.wake);
	} else {
		logger.dropped++;
	}
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

/* The last words get a second to reach the sink, not forever. */
#define FATAL_FLUSH_MS 1000

void
fatal(const char *fmt, ...)
{
	const char *errstr = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LVL_ERROR, errstr, fmt, ap);
	va_end(ap);
	log_stop(FATAL_FLUSH_MS);
	_exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LVL_ERROR, NULL, fmt, ap);
	va_end(ap);
	log_stop(FATAL_FLUSH_MS);
	_exit(1);
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

void
log_route_libraries(void)
{
	event_set_log_callback(log_libevent);
}
