/* SPDX-License-Identifier: MIT */
/*
 * The listener: the socket (activated by systemd, or created here without
 * stealing a live daemon's or deleting what is not a stale socket), the
 * accept loop, and who may connect: peer credentials checked against
 * allow_users / allow_groups, clients counted per uid.
 */
#include "ipc_int.h"

#include "daemon/log.h"
#include "daemon/xmalloc.h"

#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define ACCEPTS_PER_WAKEUP 64
#define MAX_PEER_GROUPS 256

/* Answers a refused client with one line and hangs up. */
static void
refuse(int fd, const char *code, const char *message)
{
	char line[256];
	int n = snprintf(line, sizeof(line),
			 "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n",
			 code, message);
	ssize_t w = write(fd, line, (size_t)n);

	(void)w;
	close(fd);
}

static size_t
uid_count(struct ipc_server *srv, uid_t uid)
{
	return (size_t)(uintptr_t)strmap_get(&srv->per_uid, (const char *)&uid, sizeof(uid));
}

static void
uid_count_set(struct ipc_server *srv, uid_t uid, size_t n)
{
	if (n == 0)
		strmap_del(&srv->per_uid, (const char *)&uid, sizeof(uid));
	else
		strmap_put(&srv->per_uid, (const char *)&uid, sizeof(uid), (void *)(uintptr_t)n);
}

void
ipc_listen_client_gone(struct ipc_server *srv, uid_t uid)
{
	uid_count_set(srv, uid, uid_count(srv, uid) - 1);
}

static bool
privileged(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/* allow_users / allow_groups, resolved by the config: is this peer in? */
static bool
peer_allowed(const struct phxd_conf *conf, int fd, uid_t uid, gid_t gid)
{
	gid_t groups[MAX_PEER_GROUPS];
	socklen_t glen = sizeof(groups);
	size_t ngroups = 0;

	if (privileged(uid) || (conf->nallow_uids == 0 && conf->nallow_gids == 0))
		return true;
	for (size_t i = 0; i < conf->nallow_uids; i++)
		if (conf->allow_uids[i] == uid)
			return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0)
		ngroups = glen / sizeof(gid_t);
	for (size_t i = 0; i < conf->nallow_gids; i++) {
		if (conf->allow_gids[i] == gid)
			return true;
		for (size_t j = 0; j < ngroups; j++)
			if (conf->allow_gids[i] == groups[j])
				return true;
	}
	return false;
}

static void
accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_server *srv = arg;

	(void)fd;
	(void)what;
	event_add(srv->accept_ev, NULL);
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct ipc_server *srv = arg;
	const struct phxd_conf *conf = srv->d->conf;

	(void)what;
	srv->reads++;
	for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors: pause instead of spinning. */
				log_warn("ipc: accept (pausing for 1 s)");
				struct timeval tv = { 1, 0 };
				event_del(srv->accept_ev);
				evtimer_add(srv->accept_pause_ev, &tv);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
				   errno != ECONNABORTED) {
				log_warn("ipc: accept");
			}
			return;
		}
		struct ucred cred = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
		socklen_t clen = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
			log_warn("ipc: SO_PEERCRED");
			close(fd);
			continue;
		}
		if (!peer_allowed(conf, fd, cred.uid, cred.gid)) {
			log_warnx("ipc: client pid %ld uid %ld refused: not in allow_users or "
				  "allow_groups", (long)cred.pid, (long)cred.uid);
			refuse(fd, PHXD_E_FORBIDDEN, "this user may not use phxd (allow_users, "
			       "allow_groups)");
			continue;
		}
		if (srv->nclients >= conf->max_clients) {
			log_warnx("ipc: client refused: max_clients (%u) reached", conf->max_clients);
			refuse(fd, PHXD_E_BUSY, "too many clients (max_clients)");
			continue;
		}
		size_t mine = uid_count(srv, cred.uid);
		if (!privileged(cred.uid) && mine >= conf->max_clients_per_uid) {
			log_warnx("ipc: client pid %ld refused: uid %ld has max_clients_per_uid (%u)",
				  (long)cred.pid, (long)cred.uid, conf->max_clients_per_uid);
			refuse(fd, PHXD_E_BUSY, "too many clients of this user (max_clients_per_uid)");
			continue;
		}
		uid_count_set(srv, cred.uid, mine + 1);
		ipc_client_new(srv, fd, cred.uid, cred.gid, cred.pid);
		log_debug("ipc: client pid %ld uid %ld connected", (long)cred.pid, (long)cred.uid);
	}
}

static int
listen_activated(void)
{
	int n = sd_listen_fds(1);

	if (n <= 0)
		return -1;
	for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0)
			return fd;
	log_warnx("ipc: %d activated sockets, none a listening Unix stream socket", n);
	return -1;
}

/* Clears the way for bind: only a socket nobody listens on is removed. */
static bool
clear_stale(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int probe, saved;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? true : (log_warn("ipc: %s", path), false);
	if (!S_ISSOCK(st.st_mode)) {
		log_warnx("ipc: %s exists and is not a socket; not touching it", path);
		return false;
	}
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0) {
		log_warn("ipc: socket");
		return false;
	}
	if (connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0) {
		close(probe);
		log_warnx("ipc: %s is in use by a running phxd", path);
		return false;
	}
	saved = errno;
	close(probe);
	if (saved != ECONNREFUSED) {
		errno = saved;
		log_warn("ipc: %s is a socket phxd cannot probe", path);
		return false;
	}
	if (unlink(path) != 0) {
		log_warn("ipc: removing the stale socket %s", path);
		return false;
	}
	return true;
}

static int
listen_path(struct phxd *d, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, saved;
	mode_t old_mask;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		log_warn("ipc: socket path %s", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	if (!clear_stale(path, &sa))
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		log_warn("ipc: socket");
		return -1;
	}
	/* bind creates the node with the mode the umask leaves: no chmod on a
	 * path that could be swapped meanwhile. */
	old_mask = umask((mode_t)(~d->conf->socket_mode & 0777));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		saved = errno;
		umask(old_mask);
		close(fd);
		errno = saved;
		log_warn("ipc: bind %s", path);
		return -1;
	}
	umask(old_mask);
	if (d->conf->socket_group) {
		struct group *g = getgrnam(d->conf->socket_group);
		/* lchown: never follow a link someone put in its place. */
		if (g == NULL || lchown(path, (uid_t)-1, g->gr_gid) != 0)
			log_warnx("ipc: cannot give %s to group %s", path, d->conf->socket_group);
	}
	if (listen(fd, SOMAXCONN) != 0) {
		log_warn("ipc: listen %s", path);
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	ipc_client_flush_all(arg);
}

static void
window_over(void *arg)
{
	ipc_client_flush_all(arg);
}

static void
stall_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	ipc_client_check_stalls(arg, phxd_now_ms());
}

struct ipc_server *
ipc_server_new(struct phxd *d, const char *path)
{
	struct ipc_server *srv = xcalloc(1, sizeof(*srv));
	struct timeval second = { 1, 0 };

	srv->d = d;
	srv->listen_fd = listen_activated();
	if (srv->listen_fd >= 0) {
		srv->activated = true;
		evutil_make_socket_nonblocking(srv->listen_fd);
		log_info("ipc: using the socket passed by systemd");
	} else {
		srv->listen_fd = listen_path(d, path);
		if (srv->listen_fd < 0) {
			free(srv);
			return NULL;
		}
		srv->path = xstrdup(path);
	}
	TAILQ_INIT(&srv->clients);
	TAILQ_INIT(&srv->dirty);
	strmap_init(&srv->per_uid);
	ipc_subs_init(srv);
	srv->accept_ev = event_new(d->base, srv->listen_fd, EV_READ | EV_PERSIST, accept_cb, srv);
	srv->accept_pause_ev = evtimer_new(d->base, accept_resume, srv);
	/* Output is written after the callbacks that were ready when it was
	 * first queued: at the default priority (1 of the base's 3) that is
	 * the end of the same pass, where the lowest priority would cost the
	 * loop another turn, a second epoll_wait, on every answer. */
	srv->flush_ev = event_new(d->base, -1, 0, flush_cb, srv);
	if (!utimer_init(&srv->window, d->base, 2, window_over, srv))
		log_warn("ipc: timerfd_create; wide fan-outs are written without a pause");
	srv->stall_ev = event_new(d->base, -1, EV_PERSIST, stall_cb, srv);
	event_add(srv->accept_ev, NULL);
	event_add(srv->stall_ev, &second);
	return srv;
}

void
ipc_server_close_listener(struct ipc_server *srv)
{
	if (srv->listen_fd < 0)
		return;
	event_del(srv->accept_ev);
	event_del(srv->accept_pause_ev);
	/* An activated socket stays with systemd, which queues clients for
	 * the next start. */
	if (!srv->activated) {
		close(srv->listen_fd);
		unlink(srv->path);
	}
	srv->listen_fd = -1;
}

size_t
ipc_server_client_count(const struct ipc_server *srv)
{
	return srv->nclients;
}

json_t *
ipc_server_stats(const struct ipc_server *srv)
{
	size_t pending = 0, subs = 0, queued = 0, peak = 0;
	const struct ipc_client *c;

	TAILQ_FOREACH (c, &srv->clients, entry) {
		pending += c->npending;
		subs += c->nsubs;
		queued += c->out_bytes;
		if (c->out_bytes > peak)
			peak = c->out_bytes;
	}
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "clients", (json_int_t)srv->nclients,
			 "pending", (json_int_t)pending, "subscriptions", (json_int_t)subs,
			 "queued_bytes", (json_int_t)queued, "largest_queue_bytes", (json_int_t)peak,
			 "client_buffer_bytes", (json_int_t)srv->d->conf->client_buffer,
			 "write_windows", (json_int_t)srv->write_windows);
}

bool
ipc_server_activated(const struct ipc_server *srv)
{
	return srv->activated;
}

uint64_t
ipc_server_reads(const struct ipc_server *srv)
{
	return srv->reads;
}

void
ipc_server_free(struct ipc_server *srv, unsigned hear_out_ms)
{
	struct ipc_client *c;

	if (srv == NULL)
		return;
	ipc_server_close_listener(srv);
	uint64_t wait_until = phxd_now_ms() + hear_out_ms;
	while ((c = TAILQ_FIRST(&srv->clients)) != NULL)
		ipc_client_destroy(c, wait_until);
	ipc_subs_free(srv);
	strmap_free(&srv->per_uid);
	event_free(srv->accept_ev);
	event_free(srv->accept_pause_ev);
	event_free(srv->flush_ev);
	utimer_free(&srv->window);
	event_free(srv->stall_ev);
	free(srv->path);
	free(srv);
}
