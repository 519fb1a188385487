/* learner.c - the remote client with a learner first among its endpoints
 * (driven by test_client_learner.py). A learner refuses writes and
 * linearizable reads with "etcdserver: rpc not supported for learner", as
 * etcd 3.4's does, before doing anything with them: the client then tries
 * the next endpoint whatever the call, so none of these fails.
 *
 *   test-learner --endpoints LEARNER,VOTER
 *
 * A put, a linearizable range, a txn and a delete, each synchronous.
 * Prints "N passed, N failed" last and exits non-zero on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bollard/store.h>

#define KEY "learner/a"

static int n_fail;

#define EXPECT(cond, ...)                        \
	do {                                         \
		if (!(cond)) {                           \
			printf("FAIL %s: ", #cond);          \
			printf(__VA_ARGS__);                 \
			n_fail++;                            \
		}                                        \
	} while (0)

int main(int argc, char **argv)
{
	const char *eps[8];
	size_t n_eps = 0;
	char *list;
	struct bollard_client *c;
	struct bollard_result r;
	int rc;

	if (argc != 3 || strcmp(argv[1], "--endpoints") != 0) {
		fprintf(stderr, "usage: test-learner --endpoints H:P,...\n");
		return 2;
	}
	list = strdup(argv[2]);
	for (char *sp, *t = strtok_r(list, ",", &sp); t && n_eps < 8; t = strtok_r(NULL, ",", &sp))
		eps[n_eps++] = t;
	if ((rc = bollard_connect(&c, NULL, eps, n_eps, NULL)) != 0) {
		printf("cannot connect: %s\n0 passed, 1 failed\n", bollard_strerror(rc));
		return 1;
	}

	rc = bollard_put_sync(c, KEY, strlen(KEY), "1", 1, NULL, &r);
	EXPECT(rc == 0, "put: %s\n", bollard_strerror(rc));
	if (rc == 0)
		bollard_result_free(&r);

	rc = bollard_range_sync(c, KEY, strlen(KEY), NULL, &r);
	EXPECT(rc == 0, "range: %s\n", bollard_strerror(rc));
	if (rc == 0) {
		EXPECT(r.n_kvs == 1 && r.kvs[0].value_len == 1 && r.kvs[0].value[0] == '1',
		       "range: %zu keys\n", r.n_kvs);
		bollard_result_free(&r);
	}

	{
		struct bollard_compare cmp = {.key = KEY, .key_len = strlen(KEY),
		                              .target = BOLLARD_CMP_VALUE, .op = BOLLARD_CMP_EQUAL,
		                              .value = "1", .value_len = 1};
		struct bollard_op put = {.type = BOLLARD_OP_PUT, .key = KEY, .key_len = strlen(KEY),
		                         .value = "2", .value_len = 1};
		struct bollard_txn t = {&cmp, 1, &put, 1, NULL, 0};
		rc = bollard_txn_sync(c, &t, &r);
		EXPECT(rc == 0, "txn: %s\n", bollard_strerror(rc));
		if (rc == 0) {
			EXPECT(r.succeeded, "txn: not succeeded\n");
			bollard_result_free(&r);
		}
	}

	rc = bollard_delete_sync(c, KEY, strlen(KEY), NULL, &r);
	EXPECT(rc == 0, "delete: %s\n", bollard_strerror(rc));
	if (rc == 0) {
		EXPECT(r.count == 1, "delete: %lld deleted\n", (long long)r.count);
		bollard_result_free(&r);
	}

	bollard_close(c, NULL, NULL);
	free(list);
	printf("%d passed, %d failed\n", n_fail ? 0 : 1, n_fail ? 1 : 0);
	return n_fail ? 1 : 0;
}
