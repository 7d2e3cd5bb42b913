/* SPDX-License-Identifier: MIT */
/*
 * outbox: durable pushes. A push with "durable" is stored in an SQLite
 * database (WAL, outbox_db.c) and answered once committed; the pushes of
 * one loop pass, or of every pass while the last commit ran, commit
 * together. Each stored push is then delivered, in order per topic,
 * as an awaited push once its topic is joined (the outbox keeps the topic
 * wanted until its queue is empty): a reply of any status ends it (an
 * error reply is kept as failed, visible until retried or dropped); a
 * timeout, a lost socket or a crash of phxd sends it again. At least once:
 * a push the server took whose reply, or its removal from the database,
 * was lost is sent again.
 */
#ifndef PHXD_OUTBOX_H
#define PHXD_OUTBOX_H

#include "conn.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct phxd;
struct outbox;

/* Opens (or creates) the database and loads what it holds. NULL with err
 * set when it cannot; phxd then refuses durable pushes with that reason.
 * threaded: commits run on a writer thread (phxd); else at once, on this
 * thread (the fuzzer: each run the same). */
struct outbox *outbox_open(struct phxd *d, const char *path, bool sync_full, bool threaded,
			   char *err, size_t errlen);
/* Commits what is pending and closes. Stored pushes stay stored. */
void outbox_close(struct outbox *ob);
void outbox_set_limits(struct outbox *ob, size_t max_messages, size_t max_bytes);
const char *outbox_path(const struct outbox *ob);
/* Once the connections exist: wants the topics of stored pushes (before
 * it returns). */
void outbox_start(struct outbox *ob);

/* How a durable push was taken: stored (id) or refused (code, message). */
struct outbox_result {
	int64_t id;		/* 0 when refused */
	const char *code;	/* NULL when stored */
	const char *message;
};
typedef void (*outbox_stored_fn)(void *arg, const struct outbox_result *r);

struct outbox_push {
	struct phxd_conn *pc;
	const char *topic;
	const char *join_payload;	/* to join the topic again after a restart */
	const char *event;
	const char *payload;
	size_t payload_len;
	bool binary;
};
struct outbox_msg;
/* Stores a push; `stored` runs once, when the write is committed (at the
 * end of the loop pass) or refused (possibly before returning: then the
 * result is NULL). The handle is for outbox_forget. */
struct outbox_msg *outbox_store(struct outbox *ob, const struct outbox_push *p,
				outbox_stored_fn stored, void *arg);
/* The caller went away: `stored` will not run. The push stays stored. */
void outbox_forget(struct outbox_msg *m);

/* A topic of pc was joined: its stored pushes go. */
void outbox_topic_joined(struct outbox *ob, const struct phxd_conn *pc, const char *topic);

/* operator actions: false when no stored push has that id */
bool outbox_retry(struct outbox *ob, int64_t id);
bool outbox_drop(struct outbox *ob, int64_t id);
/* {"path","pending","failed","bytes","oldest_age_ms","sync",...} */
json_t *outbox_summary(const struct outbox *ob);
/* The stored pushes, oldest first, at most limit: [{id,conn,topic,...}] */
json_t *outbox_list(const struct outbox *ob, size_t limit);

#endif
