/* fuzz_bbolt.c - libFuzzer target for the bbolt reader (store/core/bbolt.c).
 *
 * Any input must give 0 or an error code, never a crash, an out-of-bounds read
 * (ASan) or a hang: it is opened (trailer detection as etcd does), fully checked
 * (bbolt_check) and walked (every bucket, nested and inline, every pair).
 *
 * Run it for a bounded time with a clang build:   tools/fuzz.sh bbolt 60
 * The default (gcc) build compiles replay.c around it instead, and the test
 * fuzz-bbolt-replay runs it on seeds made by the writer and their mutations. */
#include <stdlib.h>
#include <string.h>

#include "core/bbolt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
