/* fuzz_bbolt.c - libFuzzer target for the bbolt reader (store/core/bbolt.c).
 *
 * Any input must give 0 or an error code, never a crash, an out-of-bounds read
 * (ASan) or a hang: it is opened (trailer detection as etcd does), fully checked
 * (bbolt_check) and walked (every bucket, nested and inline, every pair).
 *
 * Run it for a bounded time with a clang build:   tools/fuzz.sh bbolt 60
 * The default (gcc) build compiles replay.c around it instead, and the test
 * fuzz-bbolt-replay runs it on seeds made by the writer and their mutations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bbolt.h"
#include "fuzz.h"

static unsigned long long sink;

static void walk(struct bbolt_db *db, const struct bbolt_bucket *b, int nesting)
{
	if (nesting > BBOLT_MAX_NESTING)
		return;
	struct bbolt_cursor *c = malloc(sizeof(*c));
	if (!c)
		return;
	struct bbolt_kv kv;
	bbolt_cursor_init(c, b);
	for (int rc = bbolt_cursor_first(c, &kv); rc == 1; rc = bbolt_cursor_next(c, &kv)) {
		/* Touch every byte the reader hands out. */
		for (size_t i = 0; i < kv.klen; i++)
			sink += kv.key[i];
		for (size_t i = 0; i < kv.vlen; i++)
			sink += kv.val[i];
		struct bbolt_bucket child;
		if (kv.is_bucket && bbolt_bucket_from_kv(db, &kv, &child) == 0)
			walk(db, &child, nesting + 1);
	}
	free(c);
}

static int count_free(uint64_t pgid, void *arg)
{
	(void)arg;
	sink += pgid;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bbolt_db db;
	if (bbolt_open_mem(&db, data, size, BBOLT_TRAILER_AUTO) != 0)
		return 0;
	struct bbolt_stats st;
	(void)bbolt_check(&db, &st);
	(void)bbolt_freelist_foreach(&db, count_free, NULL);
	struct bbolt_bucket root;
	bbolt_root_bucket(&db, &root);
	walk(&db, &root, 0); /* also after a failed check: the walk alone must be safe */
	struct bbolt_bucket b;
	(void)bbolt_bucket_open(&root, "key", 3, &b);
	bbolt_close(&db);
	return 0;
}

/* ---- seeds and mutations for replay.c ---- */

int fuzz_seed(int which, uint8_t **out, size_t *len)
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

/* Flipped bits (mostly in headers and element arrays), overwritten u32/u64
 * fields, truncations. */
size_t fuzz_mutate(int s, int i, uint8_t *mut, size_t len, uint64_t *rng)
{
	uint64_t x = *rng;
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
	*rng = x;
	return l;
}

const int FUZZ_NSEEDS = 5;
const int FUZZ_MUTATIONS = 4000;
