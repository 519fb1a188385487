/* replay.c - a driver for fuzz_bbolt.c without libFuzzer.
 *
 *   fuzz-bbolt-replay                  seeds from the writer + deterministic mutations
 *   fuzz-bbolt-replay FILE|DIR...      replay inputs (e.g. a libFuzzer corpus or crash)
 *   fuzz-bbolt-replay --write-seeds DIR  write the seeds as files (tools/fuzz.sh's corpus)
 * Ends with "N passed, N failed" like the unit tests (a crash fails the run). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/bbolt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

static int seed(int which, uint8_t **out, size_t *len)
{
	struct bbolt_writer w;
	char k[32], v[64];
	if (bbolt_writer_init_mem(&w, which == 3 ? 1024 : 0))
		return -1;
	if (which >= 1) {
		bbolt_writer_begin_bucket(&w, "key", 3);
		int n = which == 1 ? 3 : 600;
		for (int i = 0; i < n; i++) {
			int kl = snprintf(k, sizeof(k), "k%05d", i);
			int vl = snprintf(v, sizeof(v), "value-%d", i);
			bbolt_writer_put(&w, k, (size_t)kl, v, (size_t)vl);
		}
		if (which == 2) {
			static uint8_t big[9000];
			memset(big, 'b', sizeof(big));
			bbolt_writer_put(&w, "zbig", 4, big, sizeof(big));
		}
		bbolt_writer_end_bucket(&w, 0);
		bbolt_writer_begin_bucket(&w, "nest", 4);
		bbolt_writer_begin_bucket(&w, "inner", 5);
		bbolt_writer_put(&w, "a", 1, "b", 1);
		bbolt_writer_end_bucket(&w, 1);
		bbolt_writer_end_bucket(&w, 2);
	}
	int rc = bbolt_writer_finish(&w, 5);
	if (rc == 0 && which == 4)
		rc = bbolt_writer_append_trailer(&w);
	if (rc) {
		bbolt_writer_free(&w);
		return -1;
	}
	*out = w.buf;
	*len = w.buf_len;
	w.buf = NULL;
	bbolt_writer_free(&w);
	return 0;
}

#define NSEEDS 5

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
		for (int i = 0; i < NSEEDS; i++) {
			uint8_t *buf;
			size_t len;
			char p[4096];
			if (seed(i, &buf, &len))
				return 1;
			snprintf(p, sizeof(p), "%s/seed-%d", argv[2], i);
			FILE *f = fopen(p, "wb");
			if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
				return 1;
			free(buf);
		}
		printf("%d seeds in %s\n", NSEEDS, argv[2]);
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
	/* Seeds, then mutations of each: flipped bits (mostly in headers and element
	 * arrays), overwritten u32/u64 fields, truncations. */
	long runs = 0;
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (int s = 0; s < NSEEDS; s++) {
		uint8_t *buf, *mut;
		size_t len;
		if (seed(s, &buf, &len)) {
			printf("0 passed, 1 failed\n");
			return 1;
		}
		one(buf, len);
		runs++;
		mut = malloc(len);
		for (int i = 0; i < 4000; i++) {
			memcpy(mut, buf, len);
			size_t l = len;
			for (int f = 0; f < 1 + i % 3; f++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				size_t ps = s == 3 ? 1024 : 4096;
				size_t off = (size_t)(x % (len / ps)) * ps + (size_t)((x >> 32) % 160);
				if (i % 5 == 0 && off + 4 <= len)
					memcpy(mut + off, &x, 4);
				else
					mut[off] ^= (uint8_t)(1u << ((x >> 24) % 8));
			}
			if (i % 17 == 0)
				l = (size_t)((x >> 16) % len);
			one(mut, l);
			runs++;
		}
		free(mut);
		free(buf);
	}
	printf("%ld inputs\n1 passed, 0 failed\n", runs);
	return 0;
}
