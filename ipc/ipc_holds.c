/* SPDX-License-Identifier: MIT */
/*
 * holds: topics a client keeps joined for as long as its connection lives
 * (join with "hold":"client"). The channel counts its holders by client id;
 * the client keeps (connection name, topic) so that it can let go when it
 * goes, even if a reload replaced the connection meanwhile.
 */
#include "ipc_int.h"

#include "daemon/log.h"
#include "daemon/xmalloc.h"

#include <stdlib.h>
#include <string.h>

static struct ipc_hold *
find_hold(struct ipc_client *c, const char *conn, const char *topic)
{
	struct ipc_hold *h;

	SLIST_FOREACH (h, &c->holds, entry)
		if (strcmp(h->topic, topic) == 0 && strcmp(h->conn, conn) == 0)
			return h;
	return NULL;
}

bool
ipc_hold_add(struct ipc_request *r)
{
	struct ipc_client *c = r->c;
	struct ipc_hold *h;

	if (find_hold(c, r->pc->conf->name, r->topic) != NULL)
		return true;
	if (c->nsubs + c->nholds >= r->d->conf->client_max_subscriptions) {
		ipc_reply_error(r, PHXD_E_LIMIT,
				"this client holds %zu subscriptions and topics already "
				"(client_max_subscriptions)", c->nsubs + c->nholds);
		return false;
	}
	h = xcalloc(1, sizeof(*h));
	h->conn = xstrdup(r->pc->conf->name);
	h->topic = xstrdup(r->topic);
	SLIST_INSERT_HEAD(&c->holds, h, entry);
	c->nholds++;
	return true;
}

static void
hold_free(struct ipc_client *c, struct ipc_hold *h)
{
	SLIST_REMOVE(&c->holds, h, ipc_hold, entry);
	c->nholds--;
	free(h->conn);
	free(h->topic);
	free(h);
}

void
ipc_hold_drop(struct ipc_client *c, const char *conn, const char *topic)
{
	struct ipc_hold *h = find_hold(c, conn, topic);

	if (h != NULL)
		hold_free(c, h);
}

void
ipc_holds_release(struct ipc_client *c, bool sessions_live)
{
	struct phxd *d = c->srv->d;
	struct ipc_hold *h;
	bool left = false;

	while ((h = SLIST_FIRST(&c->holds)) != NULL) {
		struct phxd_conn *pc = sessions_live ? phxd_find_conn(d, h->conn) : NULL;
		struct channel *ch = pc ? session_channel(pc->sess, h->topic) : NULL;

		if (ch != NULL && session_unwant(pc->sess, ch, WANT_CLIENT(c->id)) &&
		    ch->state != CHAN_LEAVING) {
			log_debug("%s: %s: its last holder (pid %ld) went; leaving", h->conn,
				  h->topic, (long)c->pid);
			session_leave(pc->sess, h->topic, NULL, NULL);
			left = true;
		}
		hold_free(c, h);
	}
	if (left)
		phxd_timers_changed(d);
}
