/* SPDX-License-Identifier: MIT */
#include "fixtures.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

const char *
fx_dir(void)
{
	const char *dir = getenv("PHXD_FIXTURES");
	struct stat st;

	/* run by hand: the recordings in the source tree */
	if (dir == NULL || dir[0] == '\0')
		dir = PHXD_FIXTURES_DEFAULT;

	if (dir == NULL || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return NULL;
	return dir;
}

static unsigned char *
hex_decode(const char *hex, size_t *len)
{
	size_t n = strlen(hex) / 2;
	unsigned char *out = malloc(n + 1);

	for (size_t i = 0; i < n; i++) {
		unsigned int b;
		sscanf(hex + 2 * i, "%2x", &b);
		out[i] = (unsigned char)b;
	}
	*len = n;
	return out;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fx_file *)a)->name, ((const struct fx_file *)b)->name);
}

static void
load_file(const char *path, struct fx_file *f)
{
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	while (fp != NULL && (n = getline(&line, &cap, fp)) > 0) {
		json_t *o = json_loads(line, 0, NULL);
		const char *dir, *type, *data;
		struct fx_frame *fr;

		if (o == NULL)
			continue;
		f->frames = realloc(f->frames, (f->count + 1) * sizeof(*f->frames));
		fr = &f->frames[f->count++];
		memset(fr, 0, sizeof(*fr));
		dir = json_string_value(json_object_get(o, "dir"));
		type = json_string_value(json_object_get(o, "type"));
		fr->c2s = dir != NULL && strcmp(dir, "c2s") == 0;
		fr->code = (int)json_integer_value(json_object_get(o, "code"));
		if (strcmp(type, "binary") == 0) {
			fr->type = FX_BINARY;
			fr->data = hex_decode(json_string_value(json_object_get(o, "hex")), &fr->len);
		} else {
			fr->type = strcmp(type, "text") == 0 ? FX_TEXT
				 : strcmp(type, "close") == 0 ? FX_CLOSE : FX_HTTP;
			data = json_string_value(json_object_get(o, "data"));
			fr->len = json_string_length(json_object_get(o, "data"));
			fr->data = malloc(fr->len + 1);
			memcpy(fr->data, data ? data : "", fr->len);
			fr->data[fr->len] = '\0';
		}
		json_decref(o);
	}
	free(line);
	if (fp != NULL)
		fclose(fp);
}

size_t
fx_load_all(const char *dir, struct fx_file **files)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t count = 0;

	*files = NULL;
	while (d != NULL && (e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		char path[4096];

		if (len < 7 || strcmp(e->d_name + len - 6, ".jsonl") != 0)
			continue;
		*files = realloc(*files, (count + 1) * sizeof(**files));
		memset(&(*files)[count], 0, sizeof(**files));
		snprintf((*files)[count].name, sizeof((*files)[count].name), "%.*s",
			 (int)(len - 6), e->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		load_file(path, &(*files)[count]);
		count++;
	}
	if (d != NULL)
		closedir(d);
	qsort(*files, count, sizeof(**files), name_cmp);
	return count;
}

void
fx_free_all(struct fx_file *files, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		for (size_t j = 0; j < files[i].count; j++)
			free(files[i].frames[j].data);
		free(files[i].frames);
	}
	free(files);
}
