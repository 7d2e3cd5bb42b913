/* SPDX-License-Identifier: MIT */
#include "outbox_db.h"

#include "log.h"
#include "wakeup.h"
#include "xmalloc.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_VERSION 1

enum op_kind { OP_INSERT, OP_REMOVE, OP_SET_FAILED };

struct db_op {
	enum op_kind kind;
	struct outbox_row row;	/* strings and payload in text */
	char *text;
};

struct batch {
	struct db_op *ops;
	size_t n, cap;
	char error[256];	/* after the writer: "" when committed */
};

struct outbox_db {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *insert, *remove, *set_failed;
	outbox_db_done_fn done;
	void *arg;
	struct batch *queued;	/* libevent thread: writes for the next batch */
	struct batch *busy;	/* with the writer */
	bool threaded;
	/* shared with the writer, under mu */
	pthread_t writer;
	pthread_mutex_t mu;
	pthread_cond_t wake, idle;
	struct batch *todo, *finished;
	bool quit;
	struct wakeup *done_wake;	/* the writer has finished a batch */
};

/* ---- batches ----------------------------------------------------------------------- */

static struct batch *
batch_new(void)
{
	return xcalloc(1, sizeof(struct batch));
}

static void
batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->ops[i].text);
	free(b->ops);
	free(b);
}

static struct db_op *
add_op(struct outbox_db *db, enum op_kind kind)
{
	struct batch *b = db->queued;

	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 64;
		b->ops = xrealloc(b->ops, b->cap * sizeof(*b->ops));
	}
	struct db_op *op = &b->ops[b->n++];
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	return op;
}

static char *
put(char **p, const char *s)
{
	size_t n = strlen(s) + 1;
	char *at = memcpy(*p, s, n);

	*p += n;
	return at;
}

void
outbox_db_insert(struct outbox_db *db, const struct outbox_row *row)
{
	struct db_op *op = add_op(db, OP_INSERT);
	size_t n = strlen(row->conn) + strlen(row->topic) + strlen(row->join_payload) +
		   strlen(row->event) + 4 + row->payload_len;
	char *p = op->text = xmalloc(n + 1);

	op->row = *row;
	op->row.conn = put(&p, row->conn);
	op->row.topic = put(&p, row->topic);
	op->row.join_payload = put(&p, row->join_payload);
	op->row.event = put(&p, row->event);
	op->row.payload = memcpy(p, row->payload, row->payload_len);
	op->row.last_error = NULL;
}

void
outbox_db_remove(struct outbox_db *db, int64_t id)
{
	add_op(db, OP_REMOVE)->row.id = id;
}

void
outbox_db_set_failed(struct outbox_db *db, int64_t id, unsigned attempts, bool failed,
		     const char *last_error)
{
	struct db_op *op = add_op(db, OP_SET_FAILED);

	op->row.id = id;
	op->row.attempts = attempts;
	op->row.failed = failed;
	if (failed && last_error != NULL)
		op->row.last_error = op->text = xstrdup(last_error);
}

bool
outbox_db_queued(const struct outbox_db *db)
{
	return db->queued->n > 0;
}

bool
outbox_db_busy(const struct outbox_db *db)
{
	return db->busy != NULL;
}

/* ---- the writer ------------------------------------------------------------------------ */

static bool
step(struct outbox_db *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE;
}

static bool
run_op(struct outbox_db *db, const struct db_op *op)
{
	const struct outbox_row *r = &op->row;
	sqlite3_stmt *st;

	switch (op->kind) {
	case OP_INSERT:
		st = db->insert;
		sqlite3_bind_int64(st, 1, r->id);
		sqlite3_bind_text(st, 2, r->conn, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, r->topic, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, r->join_payload, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, r->event, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 6, r->payload, (int)r->payload_len, SQLITE_STATIC);
		sqlite3_bind_int(st, 7, r->binary);
		sqlite3_bind_int64(st, 8, r->created_ms);
		return step(db, st);
	case OP_REMOVE:
		sqlite3_bind_int64(db->remove, 1, r->id);
		return step(db, db->remove);
	case OP_SET_FAILED:
		st = db->set_failed;
		sqlite3_bind_int(st, 1, (int)r->attempts);
		sqlite3_bind_int(st, 2, r->failed);
		if (r->last_error)
			sqlite3_bind_text(st, 3, r->last_error, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, r->id);
		return step(db, st);
	}
	return false;
}

/* One transaction: all of the batch, or (error set) none of it. */
static void
run_batch(struct outbox_db *db, struct batch *b)
{
	bool ok = sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;

	for (size_t i = 0; ok && i < b->n; i++)
		ok = run_op(db, &b->ops[i]);
	if (ok && sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) {
		b->error[0] = '\0';
		return;
	}
	snprintf(b->error, sizeof(b->error), "%s", sqlite3_errmsg(db->db));
	if (!sqlite3_get_autocommit(db->db))
		sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
}

static void *
writer_main(void *arg)
{
	struct outbox_db *db = arg;

	pthread_mutex_lock(&db->mu);
	for (;;) {
		while (db->todo == NULL && !db->quit)
			pthread_cond_wait(&db->wake, &db->mu);
		if (db->todo == NULL)
			break;
		struct batch *b = db->todo;
		pthread_mutex_unlock(&db->mu);
		run_batch(db, b);
		pthread_mutex_lock(&db->mu);
		db->todo = NULL;
		db->finished = b;
		pthread_cond_signal(&db->idle);
		wakeup_signal(db->done_wake);
	}
	pthread_mutex_unlock(&db->mu);
	return NULL;
}

/* The libevent thread's side of a finished batch. */
static void
finish(struct outbox_db *db)
{
	struct batch *b;

	pthread_mutex_lock(&db->mu);
	b = db->finished;
	db->finished = NULL;
	pthread_mutex_unlock(&db->mu);
	if (b == NULL)
		return;
	db->busy = NULL;
	if (b->error[0])
		log_warnx("outbox %s: a commit failed: %s", db->path, b->error);
	db->done(db->arg, b->error[0] ? b->error : NULL);
	batch_free(b);
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	finish(arg);
}

bool
outbox_db_commit(struct outbox_db *db)
{
	if (db->busy != NULL || db->queued->n == 0)
		return false;
	db->busy = db->queued;
	db->queued = batch_new();
	if (!db->threaded) {
		run_batch(db, db->busy);
		db->finished = db->busy;
		finish(db);
		return true;
	}
	pthread_mutex_lock(&db->mu);
	db->todo = db->busy;
	pthread_cond_signal(&db->wake);
	pthread_mutex_unlock(&db->mu);
	return true;
}

/* ---- open and close ----------------------------------------------------------------------- */

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS outbox ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" conn TEXT NOT NULL, topic TEXT NOT NULL, join_payload TEXT NOT NULL,"
	" event TEXT NOT NULL, payload BLOB NOT NULL, is_binary INTEGER NOT NULL,"
	" created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
	" failed INTEGER NOT NULL DEFAULT 0, last_error TEXT);";

/* The text of a one-row statement's first column; false with err set. */
static bool
one_value(sqlite3 *db, const char *sql, char *out, size_t outlen, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc;

	out[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return false;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (out[0] == '\0' && sqlite3_column_text(st, 0) != NULL)
			snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return false;
	}
	return true;
}

static bool
load(struct outbox_db *db, outbox_db_row_fn each, void *arg, int64_t *next_id, char *err,
     size_t errlen)
{
	char seq[32];
	sqlite3_stmt *st;
	int rc;

	/* AUTOINCREMENT's record of the largest id ever used: ids are never
	 * given twice, not even after the pushes that had them are gone */
	if (!one_value(db->db, "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'", seq,
		       sizeof(seq), err, errlen))
		return false;
	*next_id = strtoll(seq, NULL, 10) + 1;
	if (sqlite3_prepare_v2(db->db,
			       "SELECT id, conn, topic, join_payload, event, payload, is_binary, "
			       "created_ms, attempts, failed, last_error FROM outbox ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db->db));
		return false;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *txt[4];
		for (int i = 0; i < 4; i++) {
			txt[i] = (const char *)sqlite3_column_text(st, 1 + i);
			if (txt[i] == NULL)
				txt[i] = "";
		}
		struct outbox_row row = {
			.id = sqlite3_column_int64(st, 0),
			.conn = txt[0], .topic = txt[1], .join_payload = txt[2], .event = txt[3],
			.payload = sqlite3_column_blob(st, 5),
			.payload_len = (size_t)sqlite3_column_bytes(st, 5),
			.binary = sqlite3_column_int(st, 6) != 0,
			.created_ms = sqlite3_column_int64(st, 7),
			.attempts = (unsigned)sqlite3_column_int(st, 8),
			.failed = sqlite3_column_int(st, 9) != 0,
			.last_error = (const char *)sqlite3_column_text(st, 10),
		};
		if (row.payload == NULL)
			row.payload = "";
		if (row.id >= *next_id)
			*next_id = row.id + 1;
		each(arg, &row);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db->db));
		return false;
	}
	return true;
}

static bool
prepare(struct outbox_db *db, char *err, size_t errlen)
{
	static const struct {
		size_t offset;
		const char *sql;
	} stmts[] = {
		{ offsetof(struct outbox_db, insert),
		  "INSERT INTO outbox (id, conn, topic, join_payload, event, payload, is_binary, "
		  "created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)" },
		{ offsetof(struct outbox_db, remove), "DELETE FROM outbox WHERE id = ?1" },
		{ offsetof(struct outbox_db, set_failed),
		  "UPDATE outbox SET attempts = ?1, failed = ?2, last_error = ?3 WHERE id = ?4" },
	};

	for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
		sqlite3_stmt **st = (sqlite3_stmt **)((char *)db + stmts[i].offset);
		if (sqlite3_prepare_v3(db->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, st,
				       NULL) != SQLITE_OK) {
			snprintf(err, errlen, "%s", sqlite3_errmsg(db->db));
			return false;
		}
	}
	return true;
}

static bool
setup(struct outbox_db *db, bool sync_full, char *err, size_t errlen)
{
	char mode[32], check[256], version[32];

	/* One phxd per database: a second one is told at once. */
	if (!one_value(db->db, "PRAGMA locking_mode = EXCLUSIVE", mode, sizeof(mode), err,
		       errlen) ||
	    !one_value(db->db, "PRAGMA journal_mode = WAL", mode, sizeof(mode), err, errlen))
		return false;
	if (strcmp(mode, "wal") != 0) {
		snprintf(err, errlen, "cannot use write-ahead logging (journal mode %s)", mode);
		return false;
	}
	/* the log is cut back after a checkpoint: a burst does not leave its
	 * size on disk */
	if (!one_value(db->db, "PRAGMA journal_size_limit = 4194304", mode, sizeof(mode), err,
		       errlen) ||
	    !one_value(db->db, sync_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
		       mode, sizeof(mode), err, errlen) ||
	    !one_value(db->db, "PRAGMA quick_check", check, sizeof(check), err, errlen))
		return false;
	if (strcmp(check, "ok") != 0) {
		snprintf(err, errlen, "the database is damaged: %.160s", check);
		return false;
	}
	if (!one_value(db->db, "PRAGMA user_version", version, sizeof(version), err, errlen))
		return false;
	if (atoi(version) > SCHEMA_VERSION) {
		snprintf(err, errlen, "written by a newer phxd (schema %s, this one knows %d)",
			 version, SCHEMA_VERSION);
		return false;
	}
	if (sqlite3_exec(db->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db->db, "PRAGMA user_version = 1", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db->db));
		return false;
	}
	return prepare(db, err, errlen);
}

static void
db_free(struct outbox_db *db)
{
	sqlite3_finalize(db->insert);
	sqlite3_finalize(db->remove);
	sqlite3_finalize(db->set_failed);
	if (db->db != NULL)
		sqlite3_close(db->db);
	wakeup_free(db->done_wake);
	if (db->queued != NULL)
		batch_free(db->queued);
	pthread_mutex_destroy(&db->mu);
	pthread_cond_destroy(&db->wake);
	pthread_cond_destroy(&db->idle);
	free(db->path);
	free(db);
}

struct outbox_db *
outbox_db_open(struct event_base *base, const char *path, bool sync_full, bool threaded,
	       outbox_db_row_fn each, outbox_db_done_fn done, void *arg, int64_t *next_id,
	       char *err, size_t errlen)
{
	struct outbox_db *db = xcalloc(1, sizeof(*db));
	char why[256] = "";
	int rc;

	db->path = xstrdup(path);
	db->done = done;
	db->arg = arg;
	db->threaded = threaded;
	db->queued = batch_new();
	pthread_mutex_init(&db->mu, NULL);
	pthread_cond_init(&db->wake, NULL);
	pthread_cond_init(&db->idle, NULL);
	if (threaded && (db->done_wake = wakeup_new(base, done_cb, db)) == NULL) {
		snprintf(err, errlen, "outbox %s: cannot create a wake-up for its writer: %s", path,
			 strerror(errno));
		db_free(db);
		return NULL;
	}
	rc = sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
						 SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		int e = db->db ? sqlite3_system_errno(db->db) : 0;
		snprintf(why, sizeof(why), "%s%s%s%s", db->db ? sqlite3_errmsg(db->db) : "no memory",
			 e ? " (" : "", e ? strerror(e) : "", e ? ")" : "");
	} else {
		sqlite3_extended_result_codes(db->db, 1);
		if (setup(db, sync_full, why, sizeof(why)) &&
		    load(db, each, arg, next_id, why, sizeof(why))) {
			if (!threaded || (rc = pthread_create(&db->writer, NULL, writer_main, db)) == 0)
				return db;
			snprintf(why, sizeof(why), "cannot start its writer thread: %s", strerror(rc));
			db->threaded = false;
		}
	}
	snprintf(err, errlen, "outbox %s: %s", path, why);
	db->threaded = false;
	db_free(db);
	return NULL;
}

void
outbox_db_wait(struct outbox_db *db)
{
	if (db->busy == NULL)
		return;
	pthread_mutex_lock(&db->mu);
	while (db->finished == NULL)
		pthread_cond_wait(&db->idle, &db->mu);
	pthread_mutex_unlock(&db->mu);
	finish(db);
}

void
outbox_db_close(struct outbox_db *db)
{
	if (db == NULL)
		return;
	/* what is with the writer, then what is queued: both committed */
	do
		outbox_db_wait(db);
	while (outbox_db_commit(db));
	if (db->threaded) {
		pthread_mutex_lock(&db->mu);
		db->quit = true;
		pthread_cond_signal(&db->wake);
		pthread_mutex_unlock(&db->mu);
		pthread_join(db->writer, NULL);
	}
	db_free(db);
}
