/* SPDX-License-Identifier: MIT */
/*
 * outbox_db: the outbox's SQLite file. Opening checks and loads it on the
 * calling thread; after that a writer thread owns the connection and runs
 * the writes in batches, one transaction (one sync) each, so that a sync
 * never stalls the libevent thread. Writes made while a batch commits go
 * in the next one: the slower the disk, the larger the batches.
 */
#ifndef PHXD_OUTBOX_DB_H
#define PHXD_OUTBOX_DB_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct outbox_db;

/* One stored push, as the file holds it. */
struct outbox_row {
	int64_t id;
	const char *conn, *topic, *join_payload, *event;
	const void *payload;
	size_t payload_len;
	bool binary;
	int64_t created_ms;
	unsigned attempts;
	bool failed;
	const char *last_error;	/* JSON text, or NULL */
};

/* Runs on the libevent thread for each finished batch: error NULL when it
 * was committed, else why nothing of it was. */
typedef void (*outbox_db_done_fn)(void *arg, const char *error);
typedef void (*outbox_db_row_fn)(void *arg, const struct outbox_row *row);

/* Opens (or creates) path, checks it, and calls each() for every stored
 * push, oldest first. *next_id: the first id never used. threaded false
 * runs each batch at once on the caller's thread (the fuzzer). NULL with
 * err set when the file cannot be used. */
struct outbox_db *outbox_db_open(struct event_base *base, const char *path, bool sync_full,
				 bool threaded, outbox_db_row_fn each, outbox_db_done_fn done,
				 void *arg, int64_t *next_id, char *err, size_t errlen);
/* Waits for the batch with the writer, if any (done() runs). */
void outbox_db_wait(struct outbox_db *db);
/* Commits what is queued, waits for the writer and closes. */
void outbox_db_close(struct outbox_db *db);

/* Queue a write for the next batch (the row is copied). */
void outbox_db_insert(struct outbox_db *db, const struct outbox_row *row);
void outbox_db_remove(struct outbox_db *db, int64_t id);
void outbox_db_set_failed(struct outbox_db *db, int64_t id, unsigned attempts, bool failed,
			  const char *last_error);

/* Hands the queued writes to the writer as one batch: true when it did,
 * false when nothing is queued or the writer is still busy with the last
 * one (done() says when; commit again then). */
bool outbox_db_commit(struct outbox_db *db);
bool outbox_db_queued(const struct outbox_db *db);
/* The writer has a batch. */
bool outbox_db_busy(const struct outbox_db *db);

#endif
