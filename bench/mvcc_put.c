/* mvcc_put.c - bollard-bench-mvcc: the apply path of a put, alone. Every
 * member runs mvcc_put_ex for every write it applies, so its cost is paid
 * once per member per write; this times it without raft, sockets or fsync:
 * puts over a key space, in write transactions of --batch puts (the node
 * keeps one open across applied batches, store/node), with the key log
 * bound to each as the node binds it (--no-key-log: key_db written at
 * each put), committed without sync as the node's LMDB is. Prints puts/s
 * and microseconds per put.
 *
 *   bollard-bench-mvcc [--keys N] [--puts N] [--batch N] [--val-size N] [--no-key-log]
 *
 * There is no etcd figure beside it: etcd's apply is not callable apart
 * from its server; bench/compare compares the whole write path. */
#include <errno.h>
#include <stdbool.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/errors.h"
#include "core/mvcc.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long arg_long(int argc, char **argv, const char *name, long def)
{
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return strtol(argv[i + 1], NULL, 10);
	return def;
}

static bool arg_flag(int argc, char **argv, const char *name)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return true;
	return false;
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "bollard-bench-mvcc: %s: %s\n", what, bollard_strerror(rc));
	return 1;
}

int main(int argc, char **argv)
{
	long keys = arg_long(argc, argv, "--keys", 1000);
	long puts = arg_long(argc, argv, "--puts", 400000);
	long batch = arg_long(argc, argv, "--batch", 4000);
	long val_size = arg_long(argc, argv, "--val-size", 256);
	bool key_log = !arg_flag(argc, argv, "--no-key-log");
	struct mvcc_key_log log = {0};
	char dir[] = "/tmp/bollard-bench-mvcc-XXXXXX";
	MDB_env *env;
	struct mvcc m;
	struct arena a;
	int rc;

	if (keys < 1 || puts < 1 || batch < 1 || val_size < 0 || val_size > (1 << 20)) {
		fprintf(stderr, "usage: bollard-bench-mvcc [--keys N] [--puts N] [--batch N] "
		                "[--val-size N] [--no-key-log]\n");
		return 2;
	}
	if (mkdtemp(dir) == NULL)
		return fail("mkdtemp", -errno);
	if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_maxdbs(env, MVCC_MAX_DBS)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, (size_t)8 << 30)) != 0 ||
	    (rc = mdb_env_open(env, dir, MDB_NOSYNC | MDB_NOTLS, 0600)) != 0)
		return fail("lmdb", bollard_err_from_lmdb(rc));
	if ((rc = mvcc_open(&m, env)) != 0)
		return fail("mvcc_open", rc);
	if (key_log)
		m.key_log = &log;
	arena_init(&a, 65536);
	uint8_t *val = malloc((size_t)val_size + 1);
	if (val == NULL)
		return fail("value", -ENOMEM);
	memset(val, 'v', (size_t)val_size);

	double t0 = now_s();
	for (long done = 0; done < puts;) {
		MDB_txn *txn;
		struct mvcc_rev_cache rc_cache = {0, false};
		struct mvcc_write_opts opts = {NULL, NULL, &rc_cache};
		if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
			return fail("txn", bollard_err_from_lmdb(rc));
		if (key_log)
			mvcc_key_log_bind(&m, txn);
		for (long i = 0; i < batch && done < puts; i++, done++) {
			char key[32];
			int klen = snprintf(key, sizeof(key), "key-%08ld", done % keys);
			Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
			Etcdserverpb__PutResponse resp;
			req.key = (ProtobufCBinaryData){(size_t)klen, (uint8_t *)key};
			req.value = (ProtobufCBinaryData){(size_t)val_size, val};
			if ((rc = mvcc_put_ex(&m, txn, &a, &req, &resp, &opts)) != 0)
				return fail("put", rc);
			arena_reset(&a);
		}
		if ((rc = mvcc_rev_cache_flush(&m, txn, &rc_cache)) != 0 ||
		    (rc = mvcc_key_log_flush(&m, txn)) != 0 ||
		    (rc = bollard_err_from_lmdb(mdb_txn_commit(txn))) != 0)
			return fail("commit", rc);
	}
	double dt = now_s() - t0;
	printf("mvcc put: %ld puts over %ld keys, %ld per txn, %ld B values, key log %s: %.0f "
	       "puts/s, %.2f us/put\n",
	       puts, keys, batch, val_size, key_log ? "on" : "off", (double)puts / dt,
	       dt * 1e6 / (double)puts);
	mvcc_key_log_free(&log);
	free(val);
	arena_free(&a);
	mdb_env_close(env);
	char path[sizeof(dir) + 16];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
	return 0;
}
