/* SPDX-License-Identifier: MIT */
/*
 * What the ipc_*.c files share among themselves; commands see only ipc.h.
 */
#ifndef PHXD_IPC_INT_H
#define PHXD_IPC_INT_H

#include "ipc.h"

#include "daemon/strmap.h"
#include "daemon/utimer.h"

#include <event2/event.h>
#include <sys/queue.h>
#include <sys/types.h>

/* A line of output, shared by every client it is queued to. */
struct ipc_line {
	unsigned refs;
	size_t len;
	char data[];
};

/* One queued line; `sub` != 0 puts the tag {"sub":N, before it (the line
 * then holds the rest of the object). */
struct ipc_out_item {
	struct ipc_line *line;
	uint64_t sub;
	uint32_t tag_len;
};

/* What a queued line costs its client beyond its bytes (the queue slot,
 * the share of the line's header). */
#define IPC_ITEM_COST 48

struct ipc_sub {
	TAILQ_ENTRY(ipc_sub) in_client;
	TAILQ_ENTRY(ipc_sub) in_index;
	struct ipc_client *client;
	struct sub_head *head;	/* the index list it is on */
	uint64_t id;
	enum ipc_sub_kind kind;
	char *conn;		/* NULL: any */
	char *topic;		/* exact topic, or prefix when pattern */
	size_t topic_len;
	bool pattern;
	char **events;		/* NULL: any */
	size_t nevents;
	uint32_t tag_len;	/* of {"sub":N, */
	uint64_t dropped;	/* lines not queued since the client was last told */
};
TAILQ_HEAD(ipc_sub_list, ipc_sub);

/* The subscriptions of one exact topic, one prefix, or the event streams. */
struct sub_head {
	struct ipc_sub_list subs;
	size_t count;
};

struct ipc_pending {
	TAILQ_ENTRY(ipc_pending) entry;
	struct ipc_client *client;
	json_t *id;
	/* what to call off if the client goes: one or neither */
	struct sess_req *req;
	struct outbox_msg *storing;
};
TAILQ_HEAD(ipc_pending_list, ipc_pending);

/* A topic the client keeps joined while it is connected (ipc_holds.c). */
struct ipc_hold {
	SLIST_ENTRY(ipc_hold) entry;
	char *conn;
	char *topic;
};
SLIST_HEAD(ipc_hold_list, ipc_hold);

#define IPC_TAG_SIZE 32	/* {"sub":, 20 digits, a comma and a NUL */

struct ipc_client {
	TAILQ_ENTRY(ipc_client) entry;
	TAILQ_ENTRY(ipc_client) dirty_entry;
	struct ipc_server *srv;
	int fd;
	int refs;
	uint64_t id;		/* never reused: what a channel knows its holders by */
	uid_t uid;
	gid_t gid;
	pid_t pid;
	struct event *read_ev, *write_ev, *reap_ev;

	/* Request bytes not dispatched yet: in[in_start .. in_start+in_len);
	 * the first scan_off of them are known to hold no newline. */
	char *in;
	size_t in_start, in_len, in_cap, scan_off;
	bool in_full;		/* the last read filled the room it had */

	struct ipc_out_item *out;	/* ring */
	size_t out_head, out_count, out_cap;
	size_t out_head_off;		/* bytes of the head item already written */
	size_t out_bytes;		/* what the queue costs, IPC_ITEM_COST included */
	uint64_t tag_sub;		/* whose tag `tag` holds; 0: none */
	char tag[IPC_TAG_SIZE];
	uint64_t last_progress_ms;	/* the client last read, or had nothing to */

	bool dirty;		/* on srv->dirty: output to write this pass */
	bool dead;		/* gone or cut off: nothing more is read or queued */
	bool eof;		/* the client half-closed: answer, then close */
	bool read_paused;	/* its output is over the cap: requests wait */
	bool drops;		/* a subscription has dropped lines to report */
	bool warned_drops;
	bool spoke;		/* it has sent something */
	uint64_t accepted_ms;

	struct ipc_sub_list subs;
	size_t nsubs;
	struct ipc_pending_list pendings;
	size_t npending;
	struct ipc_hold_list holds;
	size_t nholds;
};
TAILQ_HEAD(ipc_client_list, ipc_client);

struct ipc_server {
	struct phxd *d;
	int listen_fd;
	bool activated;
	char *path;		/* unlinked at exit when phxd created it */
	struct event *accept_ev, *accept_pause_ev;
	struct event *flush_ev;	/* writes every dirty client once a pass */
	/* The wait before a pass under a wide fan-out is a fraction of a
	 * millisecond, finer than the base's timers. Unmade: not delayed. */
	struct utimer window;
	uint64_t last_flush_us;	/* when it last ran (CLOCK_MONOTONIC) */
	uint64_t flush_window_us;	/* how long after it the next waits */
	uint64_t write_windows;	/* passes that set one */
	struct event *stall_ev;	/* cuts off clients that stopped reading */
	struct ipc_client_list clients, dirty;
	size_t nclients;
	struct strmap per_uid;	/* uid -> clients connected */
	uint64_t next_sub;
	uint64_t next_client_id;
	struct strmap exact;	/* topic -> sub_head */
	struct strmap prefixes;	/* pattern prefix -> sub_head */
	unsigned prefix_lens[PHX_MAX_FIELD + 2];	/* patterns per prefix length */
	struct sub_head events;
	uint64_t reads;		/* client read callbacks run: the loop's activity */
};

/* ipc_encode.c: lines */
struct ipc_line *ipc_line_new(size_t cap);
void ipc_line_unref(struct ipc_line *l);
/* o as one line (o is not stolen); never NULL. */
struct ipc_line *ipc_line_json(json_t *o);
/* {"id":ID,"ok":OK,"result"|"error":BODY} where BODY gets a member
 * "response" holding raw (validated JSON text) when raw is not NULL.
 * body is stolen. */
struct ipc_line *ipc_encode_reply(json_t *id, bool ok, json_t *body, const char *raw,
				  size_t raw_len);
/* {"id":ID,"ok":true,"result":{"status":STATUS}}, with "response":RAW when
 * raw is not NULL: the answer of most requests, without a tree when the
 * id is an integer. */
struct ipc_line *ipc_encode_status(json_t *id, const char *status, const char *raw,
				   size_t raw_len);
/* The rest of a message line after its {"sub":N, tag. */
struct ipc_line *ipc_encode_message(const char *conn, const struct phx_msg *m);
/* The rest of an object line after its tag: o without its '{'. */
struct ipc_line *ipc_encode_tail(json_t *o);
/* Writes the tag of subscription `sub` into buf (IPC_TAG_SIZE bytes); its
 * length. */
size_t ipc_encode_tag(uint64_t sub, char *buf);

/* ipc_client.c */
struct ipc_client *ipc_client_new(struct ipc_server *srv, int fd, uid_t uid, gid_t gid,
				  pid_t pid);
/* Queues a response line; never dropped (a client whose queue passes four
 * times client_buffer_bytes is cut off instead). */
void ipc_client_send(struct ipc_client *c, struct ipc_line *l);
/* Queues a stream line of s; false when the client's queue is full and
 * the line was dropped (counted on s, reported on the stream later). */
bool ipc_client_stream(struct ipc_client *c, struct ipc_sub *s, struct ipc_line *l);
void ipc_client_lost(struct ipc_client *c, const char *why, bool linger);
/* Queues the answer l of p (l is stolen) and frees p. */
void ipc_pending_answer(struct ipc_pending *p, struct ipc_line *l);
void ipc_client_flush_all(struct ipc_server *srv);
void ipc_client_check_stalls(struct ipc_server *srv, uint64_t now);
/* Frees a client at daemon exit, writing what the socket takes now. */
/* At exit. A client accepted just before and silent so far may still be
 * sending its first request: it is waited for until wait_until_ms (the
 * phxd_now_ms clock), to be answered shutting_down. */
void ipc_client_destroy(struct ipc_client *c, uint64_t wait_until_ms);

/* ipc_subs.c */
void ipc_subs_init(struct ipc_server *srv);
void ipc_subs_free(struct ipc_server *srv);
/* Drops every subscription of c. */
void ipc_subs_drop_client(struct ipc_client *c);
/* Queues a {"type":"dropped"} line for each subscription of c that lost
 * lines. */
void ipc_subs_report_drops(struct ipc_client *c);

/* ipc_holds.c */
/* Lets go of every topic c holds; sessions_live false at exit, when the
 * sessions are stopping anyway. */
void ipc_holds_release(struct ipc_client *c, bool sessions_live);

/* ipc_listen.c */
void ipc_listen_client_gone(struct ipc_server *srv, uid_t uid);

#endif
