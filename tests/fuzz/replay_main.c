/* SPDX-License-Identifier: MIT */
/*
 * Runs a fuzz target over files, without libFuzzer: how every seed and
 * every input that ever crashed stays a regression test in `make check`,
 * in the plain and the sanitizer build alike.
 *   replay-X [FILE|DIR...]     (default: its corpus in tests/fuzz/corpus)
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned runs;

static int
run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
		perror(path);
		return 1;
	}
	rewind(f);
	buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		return 1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	free(buf);
	runs++;
	return 0;
}

static int
run_path(const char *path)
{
	struct stat st;
	struct dirent *e;
	DIR *dir;
	int rc = 0;

	if (stat(path, &st) != 0) {
		perror(path);
		return 1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path);
	if ((dir = opendir(path)) == NULL) {
		perror(path);
		return 1;
	}
	while ((e = readdir(dir)) != NULL) {
		char sub[4096];
		if (e->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		rc |= run_path(sub);
	}
	closedir(dir);
	return rc;
}

int
main(int argc, char **argv)
{
	int rc = 0;

	/* With no argument: the corpus this program was built for. */
	if (argc < 2)
		rc = run_path(CORPUS);
	for (int i = 1; i < argc; i++)
		rc |= run_path(argv[i]);
	/* The closing line the test summary counts: one check per input. */
	printf("%u passed, %d failed\n", rc ? 0 : runs, rc ? 1 : 0);
	return rc || runs == 0;
}
