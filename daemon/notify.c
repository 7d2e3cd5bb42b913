/* SPDX-License-Identifier: MIT */
/* notify: see notify.h. */
#include "notify.h"

#include "log.h"
#include "xmalloc.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define RETRY_MS 200

/* What waits for the socket: the state change, and the last STATUS=. */
enum kept { KEPT_STATE, KEPT_STATUS, NKEPT };

struct notifier {
	int fd;
	struct sockaddr_un addr;
	socklen_t addr_len;
	struct event *retry_ev;
	char *kept[NKEPT];
	bool warned;
};

static void retry(evutil_socket_t fd, short what, void *arg);

struct notifier *
notify_open(struct event_base *base)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct notifier *n;
	size_t len;

	if (path == NULL || path[0] == '\0')
		return NULL;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(n->addr.sun_path)) {
		log_warnx("NOTIFY_SOCKET=%s is not a socket path; not notifying systemd", path);
		return NULL;
	}
	n = xcalloc(1, sizeof(*n));
	n->addr.sun_family = AF_UNIX;
	memcpy(n->addr.sun_path, path, len);
	if (path[0] == '@')
		n->addr.sun_path[0] = '\0';	/* abstract namespace */
	n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (n->fd < 0) {
		log_warn("notify socket");
		free(n);
		return NULL;
	}
	n->retry_ev = evtimer_new(base, retry, n);
	if (n->retry_ev == NULL)
		fatalx("notify: out of memory");
	return n;
}

/* 1 sent, 0 not now (the queue is full), -1 failed for good. */
static int
try_send(struct notifier *n, const char *msg)
{
	ssize_t r = sendto(n->fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL,
			   (struct sockaddr *)&n->addr, n->addr_len);

	if (r >= 0)
		return 1;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOBUFS)
		return 0;
	if (!n->warned)
		log_warn("notifying systemd");
	n->warned = true;
	return -1;
}

static void
retry(evutil_socket_t fd, short what, void *arg)
{
	struct notifier *n = arg;
	bool left = false;

	(void)fd;
	(void)what;
	for (int k = 0; k < NKEPT; k++) {
		if (n->kept[k] == NULL)
			continue;
		if (try_send(n, n->kept[k]) == 0) {
			left = true;
			break;	/* in order: a STATUS= must not pass a READY=1 */
		}
		free(n->kept[k]);
		n->kept[k] = NULL;
	}
	if (left) {
		struct timeval tv = { 0, RETRY_MS * 1000 };
		evtimer_add(n->retry_ev, &tv);
	}
}

void
notify_send(struct notifier *n, const char *msg)
{
	bool watchdog = strcmp(msg, "WATCHDOG=1") == 0;
	enum kept k = strncmp(msg, "STATUS=", 7) == 0 ? KEPT_STATUS : KEPT_STATE;

	if (n == NULL)
		return;
	if (n->kept[KEPT_STATE] == NULL && (k == KEPT_STATE || n->kept[KEPT_STATUS] == NULL) &&
	    try_send(n, msg) != 0)
		return;
	if (watchdog)
		return;
	if (!evtimer_pending(n->retry_ev, NULL)) {
		struct timeval tv = { 0, RETRY_MS * 1000 };
		log_debug("notify: the manager's queue is full; sending %s later", msg);
		evtimer_add(n->retry_ev, &tv);
	}
	/* the newest of its kind wins */
	free(n->kept[k]);
	n->kept[k] = xstrdup(msg);
}

void
notify_flush(struct notifier *n)
{
	if (n != NULL)
		retry(-1, 0, n);
}

void
notify_free(struct notifier *n)
{
	if (n == NULL)
		return;
	for (int k = 0; k < NKEPT; k++)
		free(n->kept[k]);
	event_free(n->retry_ev);
	close(n->fd);
	free(n);
}
