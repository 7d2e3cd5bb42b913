/* SPDX-License-Identifier: MIT */
/*
 * log: the one logging API of the daemon. Thread-safe (the lookup, TLS
 * and outbox threads log too). Lines go to stderr; under systemd (JOURNAL_STREAM set)
 * each line carries a <N> syslog priority prefix that journald understands.
 * Logging never blocks its caller once log_start() ran.
 */
#ifndef PHXD_LOG_H
#define PHXD_LOG_H

#include <stdbool.h>
#include <stdnoreturn.h>

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

void log_init(enum log_level level, const char *progname);
/* From here on lines go through a bounded queue to a writer thread: a
 * blocked sink costs dropped (and counted) lines, never a stalled caller. */
bool log_start(void);
/* Writes what is queued, waiting at most wait_ms for a blocked sink. */
void log_stop(unsigned wait_ms);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info", "debug"; false when unknown. */
bool log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);
/* Routes libevent's own messages through this API. */
void log_route_libraries(void);

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);	/* appends strerror(errno) */
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
noreturn void fatal(const char *fmt, ...) LOG_PRINTF(1, 2);	/* with errno */
noreturn void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2);

#endif
