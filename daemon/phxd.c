/* SPDX-License-Identifier: MIT */
/*
 * phxd: keeps Phoenix Channels connections alive and serves them to local
 * programs over a Unix socket. This file is the daemon's shell: arguments,
 * the libevent loop, signals, systemd notification and reload.
 */
#include "phxd.h"

#include "ipc/ipc.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "notify.h"
#include "outbox.h"
#include "xmalloc.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

/* sysconfdir/phxd/phxd.conf of the build: the path the unit and the man
 * pages name too. */
#define DEFAULT_CONFIG PHXD_CONFIG_DEFAULT
#define STOP_GRACE_MS 2000

uint64_t
phxd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Called after every frame: the libevent timer is moved only when the
 * earliest deadline came nearer. A deadline that went later (a heartbeat
 * or a timeout armed again) is found when the armed one fires; moving it
 * each time cost a clock read per frame and a timerfd_settime per pass.
 */
void
phxd_timers_changed(struct phxd *d)
{
	uint64_t next = tq_next(&d->tq);
	struct timeval tv;

	if (next >= d->tq_armed_at)
		return;
	uint64_t now = phxd_now_ms();
	/* One more millisecond: the clock is in whole milliseconds. The
	 * base's own clock is the coarse one, a tick behind at most: when it
	 * fires early, nothing is due yet and the timer is armed again. */
	uint64_t delay = (next > now ? next - now : 0) + 1;
	tv.tv_sec = (time_t)(delay / 1000);
	tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
	evtimer_add(d->tq_ev, &tv);
	d->tq_armed_at = next;
}

static void
timers_due(evutil_socket_t fd, short what, void *arg)
{
	struct phxd *d = arg;

	(void)fd;
	(void)what;
	d->tq_armed_at = UINT64_MAX;
	tq_run(&d->tq, phxd_now_ms());
	phxd_timers_changed(d);
}

struct phxd_conn *
phxd_find_conn(struct phxd *d, const char *name)
{
	for (size_t i = 0; i < d->nconns; i++)
		if (d->conns[i] != NULL && strcmp(d->conns[i]->conf->name, name) == 0)
			return d->conns[i];
	return NULL;
}

/* Counts once per loop pass, however many changes asked for it: a rejoin of
 * 10,000 topics is 10,000 channel events, one count. */
static void
send_status(evutil_socket_t fd, short what, void *arg)
{
	struct phxd *d = arg;
	size_t up = 0, live = 0, topics = 0, joined = 0;

	(void)fd;
	(void)what;

	for (size_t i = 0; i < d->nconns; i++) {
		struct phxd_conn *pc = d->conns[i];
		if (pc == NULL)
			continue;
		live++;
		up += conn_state(pc) == SESS_OPEN;
		topics += pc->sess->topics->len;
		joined += conn_topics_joined(pc);
	}
	char line[sizeof(d->last_status)];
	snprintf(line, sizeof(line), "STATUS=%zu/%zu connections up, %zu/%zu topics joined, %zu clients",
		 up, live, joined, topics, d->ipc ? ipc_server_client_count(d->ipc) : 0);
	/* systemd keeps the last STATUS=; say it again only when it changed. */
	if (strcmp(line, d->last_status) == 0)
		return;
	memcpy(d->last_status, line, sizeof(line));
	notify_send(d->notify, line);
}

void
phxd_notify_status(struct phxd *d)
{
	if (d->status_ev != NULL && !event_pending(d->status_ev, EV_TIMEOUT, NULL))
		event_active(d->status_ev, EV_TIMEOUT, 0);
}

static void
transport_event(void *ud, const struct tp_event *ev)
{
	struct phxd *d = ud;

	d->tq.now = phxd_now_ms();
	conn_transport_event(d, ev);
	phxd_timers_changed(d);
}

static struct phxd_conn *
conn_add(struct phxd *d, struct conn_conf *conf)
{
	size_t slot = 0;

	/* A slot a reload emptied is taken again. */
	while (slot < d->nconns && d->conns[slot] != NULL)
		slot++;
	if (slot == d->nconns) {
		d->conns = xrealloc(d->conns, (d->nconns + 1) * sizeof(*d->conns));
		d->nconns++;
	}
	return d->conns[slot] = conn_new(d, conf);
}

/* ---- the outbox ---------------------------------------------------------------- */

/* The outbox file the config names (or $STATE_DIRECTORY/outbox.db);
 * NULL for none. */
static const char *
outbox_file(const struct phxd_conf *conf, char *buf, size_t size)
{
	const char *state_dir = getenv("STATE_DIRECTORY");

	if (conf->outbox != NULL)
		return strcmp(conf->outbox, "off") == 0 ? NULL : conf->outbox;
	/* systemd's StateDirectory=; the first one when it lists several */
	if (state_dir == NULL || state_dir[0] != '/')
		return NULL;
	snprintf(buf, size, "%.*s/outbox.db", (int)strcspn(state_dir, ":"), state_dir);
	return buf;
}

/* Opens the outbox the config names, when none is open: a broken one is
 * reported and phxd goes on without it (durable pushes are refused with
 * the reason) until a reload finds it fixed. */
static void
open_outbox(struct phxd *d)
{
	char buf[4096];
	const char *path = outbox_file(d->conf, buf, sizeof(buf));

	if (d->outbox != NULL) {
		if (path == NULL || strcmp(path, outbox_path(d->outbox)) != 0)
			log_warnx("reload: a new outbox takes a restart; keeping %s",
				  outbox_path(d->outbox));
		outbox_set_limits(d->outbox, d->conf->outbox_max_messages,
				  d->conf->outbox_max_bytes);
		return;
	}
	d->outbox_error[0] = '\0';
	if (path == NULL)
		return;
	d->outbox = outbox_open(d, path, strcmp(d->conf->outbox_sync, "full") == 0, true,
				d->outbox_error, sizeof(d->outbox_error));
	if (d->outbox == NULL) {
		log_warnx("%s; durable pushes are refused until a reload finds it fixed",
			  d->outbox_error);
		return;
	}
	outbox_set_limits(d->outbox, d->conf->outbox_max_messages, d->conf->outbox_max_bytes);
	outbox_start(d->outbox);
}

/* ---- reload ---------------------------------------------------------------- */

bool
phxd_reload(struct phxd *d, char *err, size_t errlen)
{
	struct phxd_conf *fresh, *old = d->conf;

	fresh = config_load(d->config_path, err, errlen);
	if (fresh == NULL) {
		log_warnx("reload: %s; keeping the running configuration", err);
		return false;
	}
	/* The one part of a reload that can fail after parsing, so first. The
	 * old listener goes first: the new one may want its port. */
	if (!config_str_eq(old->metrics_listen, fresh->metrics_listen)) {
		metrics_http_stop(d->metrics);
		d->metrics = NULL;
		if (fresh->metrics_listen != NULL &&
		    (d->metrics = metrics_http_start(d, fresh->metrics_listen, err, errlen)) == NULL) {
			log_warnx("reload: %s; keeping the running configuration", err);
			char again[256];	/* err says why the reload failed */
			if (old->metrics_listen != NULL &&
			    (d->metrics = metrics_http_start(d, old->metrics_listen, again,
							     sizeof(again))) == NULL)
				log_warnx("metrics: %s", again);
			config_free(fresh);
			return false;
		}
	}
	notify_send(d->notify, "RELOADING=1");
	d->tq.now = phxd_now_ms();
	if (!config_str_eq(old->socket, fresh->socket))
		log_warnx("reload: a new socket path takes a restart; keeping the current one");
	for (size_t i = 0; i < d->nconns; i++) {
		struct phxd_conn *pc = d->conns[i];
		if (pc == NULL)
			continue;
		struct conn_conf *nc = config_find_conn(fresh, pc->conf->name);
		if (nc == NULL) {
			log_info("reload: connection %s removed", pc->conf->name);
			d->conns[i] = NULL;
			conn_stop(pc);
			conn_free(pc);
			continue;
		}
		if (nc->tls && !nc->tls_verify && pc->conf->tls_verify)
			log_warnx("%s: tls_verify = no: the server's certificate is not checked, so "
				  "anyone on the path can pose as %s", nc->name, nc->host);
		conn_reconfigure(pc, nc);
	}
	for (size_t i = 0; i < fresh->nconns; i++) {
		if (phxd_find_conn(d, fresh->conns[i]->name) == NULL) {
			log_info("reload: connection %s added", fresh->conns[i]->name);
			conn_start(conn_add(d, fresh->conns[i]));
		}
	}
	d->conf = fresh;
	if (fresh->busy_poll_us != old->busy_poll_us) {
		loop_set_busy_poll(d->loop, fresh->busy_poll_us);
		log_info("reload: busy_poll_us now %u", fresh->busy_poll_us);
	}
	open_outbox(d);
	if (!d->log_level_forced && fresh->log_level != old->log_level) {
		log_set_level(fresh->log_level);
		log_route_libraries();
		log_info("reload: log level now %s", log_level_name(fresh->log_level));
	}
	config_free(old);
	d->reloads++;
	phxd_timers_changed(d);
	notify_send(d->notify, "READY=1");
	phxd_notify_status(d);
	log_info("configuration reloaded from %s", d->config_path);
	return true;
}

/* ---- signals and systemd ------------------------------------------------------ */

static void
drained(void *arg)
{
	struct phxd *d = arg;

	event_base_loopbreak(d->base);
}

static void
shutdown_now(struct phxd *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	log_info("%s: leaving topics and closing connections", why);
	notify_send(d->notify, "STOPPING=1");
	d->tq.now = phxd_now_ms();
	ipc_server_close_listener(d->ipc);
	for (size_t i = 0; i < d->nconns; i++)
		if (d->conns[i] != NULL)
			conn_stop(d->conns[i]);
	/* The loop runs on until the leaves and close frames have left. */
	transport_stop(d->tp, STOP_GRACE_MS, drained, d);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct phxd *d = arg;
	char err[512];

	(void)what;
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		shutdown_now(d, sig == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	case SIGHUP:
		log_info("SIGHUP: reloading %s", d->config_path);
		phxd_reload(d, err, sizeof(err));
		break;
	default:
		break;
	}
}

/* The watchdog hears from phxd while its loop runs: every socket, timer
 * and client is served there, and nothing that may hang (name lookups,
 * TLS files, disk syncs) runs on it. */
static void
watchdog_ping(evutil_socket_t fd, short what, void *arg)
{
	struct phxd *d = arg;

	(void)fd;
	(void)what;
	notify_send(d->notify, "WATCHDOG=1");
}

/* Bursts leave freed memory in the heap (the trim threshold is high so
 * that a burst does not trim and regrow it every few batches); once it is
 * over, what is free goes back to the system. A burst's peak that stayed
 * under the limit would otherwise stay whole: so the limit is a fraction
 * of the 2 MiB a burst may leave behind (bench/README.md), and a trim
 * that finds nothing to give back costs a walk of the free lists. */
#define TRIM_EVERY_MS 2000
#define TRIM_ABOVE (512u << 10)

static void
trim_memory(evutil_socket_t fd, short what, void *arg)
{
	struct mallinfo2 mi = mallinfo2();

	(void)fd;
	(void)what;
	(void)arg;
	if (mi.fordblks > TRIM_ABOVE)
		malloc_trim(0);
}

static void
usage(FILE *out)
{
	fputs("usage: phxd [-c FILE] [-s SOCKET] [-f] [-l LEVEL] [--check-config] [-V]\n"
	      "\n"
	      "Keeps Phoenix Channels connections alive and serves them over a Unix socket.\n"
	      "\n"
	      "  -c, --config FILE    configuration file (default " DEFAULT_CONFIG ")\n"
	      "  -s, --socket PATH    IPC socket (default: the config's socket, else\n"
	      "                       $RUNTIME_DIRECTORY/phxd.sock, else /run/phxd/phxd.sock)\n"
	      "  -f, --foreground     stay in the foreground (phxd never forks; accepted\n"
	      "                       for scripts written for daemons that do)\n"
	      "  -l, --log-level L    error, warn, info or debug (overrides the config)\n"
	      "      --check-config   validate the configuration and exit\n"
	      "  -V, --version        print the version\n"
	      "  -h, --help           this text\n",
	      out);
}

static char *
default_socket(const struct phxd_conf *conf)
{
	const char *rt = getenv("RUNTIME_DIRECTORY");
	char *path;

	if (conf->socket)
		return xstrdup(conf->socket);
	if (rt != NULL && rt[0] == '/') {
		/* systemd may list several directories; the first is ours. */
		size_t n = strcspn(rt, ":");
		xasprintf(&path, "%.*s/phxd.sock", (int)n, rt);
		return path;
	}
	return xstrdup(PHXD_DEFAULT_SOCKET);
}

/* The loop polls on while this grows: a server or a client was read. */
static uint64_t
reads_so_far(void *arg)
{
	struct phxd *d = arg;

	return transport_reads(d->tp) + ipc_server_reads(d->ipc);
}

/* Frees whatever main() got to set up; the loop has stopped. */
static void
teardown(struct phxd *d)
{
	d->stopping = true;	/* requests still arriving are answered so */
	/* before the sessions: what it has in flight is theirs */
	outbox_close(d->outbox);
	d->outbox = NULL;
	for (size_t i = 0; i < d->nconns; i++)
		if (d->conns[i] != NULL)
			conn_free(d->conns[i]);
	free(d->conns);
	d->conns = NULL;
	d->nconns = 0;
	free(d->shards);
	d->shards = NULL;
	d->nshard_slots = 0;
	metrics_http_stop(d->metrics);
	/* clients accepted just before the stop may take 100 ms in all to speak */
	ipc_server_free(d->ipc, 100);
	transport_free(d->tp);
	resolver_free(d->resolver);
	tq_free(&d->tq);
	if (d->tq_ev)
		event_free(d->tq_ev);
	if (d->sig_term)
		event_free(d->sig_term);
	if (d->sig_int)
		event_free(d->sig_int);
	if (d->sig_hup)
		event_free(d->sig_hup);
	if (d->watchdog_ev)
		event_free(d->watchdog_ev);
	if (d->status_ev)
		event_free(d->status_ev);
	if (d->trim_ev)
		event_free(d->trim_ev);
	notify_flush(d->notify);
	notify_free(d->notify);
	loop_free(d->loop);
	if (d->base)
		event_base_free(d->base);
	config_free(d->conf);
	free(d->config_path);
	free(d->socket_path);
	libevent_global_shutdown();
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct phxd d = { 0 };
	const char *config_path = DEFAULT_CONFIG;
	bool check_only = false;
	enum log_level level = LOG_LVL_INFO;
	char err[512];
	int opt;
	struct timeval tv;

	log_init(LOG_LVL_INFO, "phxd");
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":c:s:fl:Vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 's':
			if (optarg[0] == '\0') {
				fprintf(stderr, "phxd: -s needs a path\n");
				return 2;
			}
			d.socket_path = xstrdup(optarg);
			break;
		case 'f':
			break;
		case 'l':
			if (!log_level_parse(optarg, &level)) {
				fprintf(stderr, "phxd: unknown log level '%s' (error, warn, info, debug)\n",
					optarg);
				return 2;
			}
			d.log_level_forced = true;
			break;
		case 'C':
			check_only = true;
			break;
		case 'V':
			puts("phxd " PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "phxd: option %s needs a value\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		default:
			fprintf(stderr, "phxd: unknown option %s\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "phxd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	d.config_path = xstrdup(config_path);
	d.conf = config_load(config_path, err, sizeof(err));
	if (d.conf == NULL) {
		fprintf(stderr, "phxd: %s\n", err);
		goto fail;
	}
	if (check_only) {
		size_t joins = 0;
		for (size_t i = 0; i < d.conf->nconns; i++)
			joins += d.conf->conns[i]->njoins;
		printf("%s: OK (%zu connection%s, %zu topic%s)\n", config_path, d.conf->nconns,
		       d.conf->nconns == 1 ? "" : "s", joins, joins == 1 ? "" : "s");
		teardown(&d);
		return 0;
	}
	log_set_level(d.log_level_forced ? level : d.conf->log_level);
	log_route_libraries();
	if (!log_start())
		fatalx("cannot start the log writer");
	signal(SIGPIPE, SIG_IGN);
	/* Bursts allocate and free a lot at once; without this glibc trims and
	 * regrows the heap (brk, mprotect) every few batches. trim_memory()
	 * gives it back once the burst is over. One arena for every thread:
	 * glibc never trims the top of a thread's own arena. */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_TOP_PAD, 1 << 20);
	mallopt(M_ARENA_MAX, 1);
	srand48((long)phxd_now_ms() ^ (long)getpid());
	gettimeofday(&tv, NULL);
	d.started_at_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;

	/* No evthread_use_pthreads(): the threads hand results back through
	 * daemon/wakeup.h, and nothing else touches the loop from outside.
	 * Not EVENT_BASE_FLAG_PRECISE_TIMER: with it every loop pass costs a
	 * timerfd_settime. Waits finer than a millisecond are utimers
	 * (daemon/utimer.h), a timerfd each. */
	d.base = event_base_new();
	if (d.base == NULL || event_base_priority_init(d.base, 3) != 0)
		fatalx("cannot create the event loop");
	tq_init(&d.tq);
	d.tq.now = phxd_now_ms();
	d.tq_ev = evtimer_new(d.base, timers_due, &d);
	d.tq_armed_at = UINT64_MAX;
	d.trim_ev = event_new(d.base, -1, EV_PERSIST, trim_memory, &d);
	if (d.trim_ev == NULL || event_priority_set(d.trim_ev, 2) != 0)
		fatalx("cannot create the trim event");
	struct timeval trim_every = { TRIM_EVERY_MS / 1000, (TRIM_EVERY_MS % 1000) * 1000 };
	event_add(d.trim_ev, &trim_every);
	d.notify = notify_open(d.base);
	d.status_ev = event_new(d.base, -1, 0, send_status, &d);
	if (d.status_ev == NULL || event_priority_set(d.status_ev, 2) != 0)
		fatalx("cannot create the status event");
	d.tp = transport_new(d.base, transport_event, &d);
	d.resolver = resolver_new(d.base);
	for (size_t i = 0; i < d.conf->nconns; i++)
		conn_add(&d, d.conf->conns[i]);
	open_outbox(&d);

	/* Signals first: a client may see the socket, and a supervisor may
	 * signal, the moment it exists. */
	d.sig_term = evsignal_new(d.base, SIGTERM, on_signal, &d);
	d.sig_int = evsignal_new(d.base, SIGINT, on_signal, &d);
	d.sig_hup = evsignal_new(d.base, SIGHUP, on_signal, &d);
	event_add(d.sig_term, NULL);
	event_add(d.sig_int, NULL);
	event_add(d.sig_hup, NULL);

	if (d.socket_path == NULL)
		d.socket_path = default_socket(d.conf);
	/* Metrics before the socket: once clients can connect, all is up. */
	if (d.conf->metrics_listen != NULL) {
		d.metrics = metrics_http_start(&d, d.conf->metrics_listen, err, sizeof(err));
		if (d.metrics == NULL) {
			log_warnx("%s", err);
			goto fail;
		}
	}
	d.ipc = ipc_server_new(&d, d.socket_path);
	if (d.ipc == NULL)
		goto fail;
	d.loop = loop_new(d.base, reads_so_far, &d);
	loop_set_busy_poll(d.loop, d.conf->busy_poll_us);

	uint64_t wd_usec = 0;
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
		struct timeval half = { (time_t)(wd_usec / 2 / 1000000),
					(suseconds_t)(wd_usec / 2 % 1000000) };
		d.watchdog_ev = event_new(d.base, -1, EV_PERSIST, watchdog_ping, &d);
		event_add(d.watchdog_ev, &half);
		log_debug("watchdog: pinging every %llu ms", (unsigned long long)(wd_usec / 2000));
	}

	for (size_t i = 0; i < d.nconns; i++)
		conn_start(d.conns[i]);
	phxd_timers_changed(&d);
	log_info("phxd %s ready: %zu connection%s, socket %s", PACKAGE_VERSION, d.nconns,
		 d.nconns == 1 ? "" : "s", ipc_server_activated(d.ipc) ? "(activated)" : d.socket_path);
	notify_send(d.notify, "READY=1");
	phxd_notify_status(&d);

	if (!loop_run(d.loop))
		log_warnx("the event loop failed");

	teardown(&d);
	log_info("stopped");
	log_stop(STOP_GRACE_MS);
	return 0;

fail:
	teardown(&d);
	log_stop(STOP_GRACE_MS);
	return 1;
}
