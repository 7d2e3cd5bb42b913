/* SPDX-License-Identifier: MIT */
/* Loader for the recorded Phoenix transcripts (JSON Lines, one frame each). */
#ifndef PHXD_TEST_FIXTURES_H
#define PHXD_TEST_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>

enum fx_type { FX_TEXT, FX_BINARY, FX_CLOSE, FX_HTTP };

struct fx_frame {
	bool c2s;
	enum fx_type type;
	unsigned char *data;	/* text (NUL-terminated) or decoded hex */
	size_t len;
	int code;		/* close code or HTTP status */
};

struct fx_file {
	char name[128];
	struct fx_frame *frames;
	size_t count;
};

/* The folder with the recordings, or NULL when it is not there. */
const char *fx_dir(void);

/* Loads every *.jsonl of the folder; returns the number of files. */
size_t fx_load_all(const char *dir, struct fx_file **files);
void fx_free_all(struct fx_file *files, size_t count);

#endif
