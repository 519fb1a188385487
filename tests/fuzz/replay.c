/* replay.c - a driver for the fuzz targets without libFuzzer.
 *
 *   fuzz-T-replay                  seeds + deterministic mutations of each
 *   fuzz-T-replay FILE|DIR...      replay inputs (e.g. a libFuzzer corpus or crash)
 *   fuzz-T-replay --write-seeds DIR  write the seeds as files (tools/fuzz.sh's corpus)
 * Ends with "N passed, N failed" like the unit tests (a crash fails the run).
 * Each target provides its seeds and mutations (fuzz_seed, fuzz_mutate). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* One exact-size heap copy per run, so ASan sees any read past the end. */
static void one(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	LLVMFuzzerTestOneInput(copy, size);
	free(copy);
}

static long replay_path(const char *path)
{
	struct stat st;
	long n = 0;
	if (stat(path, &st) != 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char p[4096];
			snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
			long r = replay_path(p);
			if (r < 0) {
				closedir(d);
				return -1;
			}
			n += r;
		}
		if (d)
			closedir(d);
		return n;
	}
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	size_t got = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
	fclose(f);
	one(buf, got);
	free(buf);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) {
		mkdir(argv[2], 0755);
		int i;
		for (i = 0; i < FUZZ_NSEEDS; i++) {
			uint8_t *buf;
			size_t len;
			char p[4096];
			if (fuzz_seed(i, &buf, &len))
				return 1;
			snprintf(p, sizeof(p), "%s/seed-%d", argv[2], i);
			FILE *f = fopen(p, "wb");
			if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
				return 1;
			free(buf);
		}
		printf("%d seeds in %s\n", i, argv[2]);
		return 0;
	}
	if (argc > 1) {
		long n = 0;
		for (int i = 1; i < argc; i++) {
			long r = replay_path(argv[i]);
			if (r < 0) {
				printf("0 passed, 1 failed\n");
				return 1;
			}
			n += r;
		}
		printf("replayed %ld inputs\n1 passed, 0 failed\n", n);
		return 0;
	}
	/* Seeds, then FUZZ_MUTATIONS mutations of each (the target's). */
	long runs = 0;
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (int s = 0; s < FUZZ_NSEEDS; s++) {
		uint8_t *buf, *mut;
		size_t len;
		if (fuzz_seed(s, &buf, &len)) {
			printf("0 passed, 1 failed\n");
			return 1;
		}
		one(buf, len);
		runs++;
		mut = malloc(len ? len : 1);
		for (int i = 0; i < FUZZ_MUTATIONS; i++) {
			memcpy(mut, buf, len);
			one(mut, fuzz_mutate(s, i, mut, len, &x));
			runs++;
		}
		free(mut);
		free(buf);
	}
	printf("%ld inputs\n1 passed, 0 failed\n", runs);
	return 0;
}
