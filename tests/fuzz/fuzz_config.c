/* SPDX-License-Identifier: MIT */
/*
 * The config parser on any file contents: it loads or it says why, with
 * the file named, and never crashes or overruns its error buffer.
 */
#include "daemon/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	char err[512];
	FILE *f;

	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/tmp/phxd-fuzz-config-%ld.conf", (long)getpid());
	f = fopen(path, "wb");
	if (f == NULL)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	memset(err, 'X', sizeof(err));
	struct phxd_conf *c = config_load(path, err, sizeof(err));
	if (c == NULL) {
		if (memchr(err, '\0', sizeof(err)) == NULL || strncmp(err, path, strlen(path)) != 0)
			abort();
	} else {
		for (size_t i = 0; i < c->nconns; i++)
			if (c->conns[i]->request_path == NULL || c->conns[i]->url_shown == NULL)
				abort();
		config_free(c);
	}
	return 0;
}
