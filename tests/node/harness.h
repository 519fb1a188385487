/* harness.h - the node tests' runner and helpers: each test runs in a child
 * process of its own with a fresh temporary data dir; a real node runs on a
 * libuv loop in the test's thread (no gRPC). Ends with "N passed, N failed". */
#ifndef BOLLARD_TESTS_NODE_HARNESS_H
#define BOLLARD_TESTS_NODE_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "node/node.h"
#include "rpc.pb-c.h"

extern int th_failures;
void th_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void th_abort(void) __attribute__((noreturn));

#define CHECK(c)                                                                         \
	do {                                                                              \
		if (!(c))                                                                     \
			th_fail(__FILE__, __LINE__, "CHECK(%s)", #c);                             \
	} while (0)
#define CHECK_INT(a, b)                                                                  \
	do {                                                                              \
		long long a_ = (long long)(a), b_ = (long long)(b);                           \
		if (a_ != b_)                                                                 \
			th_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, a_, #b, \
			        b_);                                                          \
	} while (0)
#define REQUIRE(c)                                                                       \
	do {                                                                              \
		if (!(c)) {                                                                   \
			th_fail(__FILE__, __LINE__, "REQUIRE(%s)", #c);                           \
			th_abort();                                                               \
		}                                                                             \
	} while (0)

struct th_test {
	const char *name;
	void (*fn)(void);
};
#define TEST(name) static void test_##name(void)
#define TEST_ENTRY(name) {#name, test_##name}
int th_main(int argc, char **argv, const struct th_test *tests, size_t n);

/* A node on its own loop, in dir (created by th_tmpdir). */
struct tnode {
	uv_loop_t loop;
	struct node *node;
	struct node_config cfg;
	char dir[256];
	char data_dir[300];
	bool closed;
};

/* A fresh temporary directory (removed at the end of the test). */
const char *th_tmpdir(void);
void tnode_config(struct tnode *t, const char *dir);
/* uv_loop_init + node_create (t's loop, t's configuration); REQUIREs
 * success. The node is not started (node_start). */
void tnode_create(struct tnode *t);
/* tnode_create + node_start. */
void tnode_open(struct tnode *t);
void tnode_close(struct tnode *t);

/* Submit one request and run the loop until it completes. Returns the
 * error; on success resp and len hold the packed response (free()). */
int tnode_do(struct tnode *t, enum node_op op, const ProtobufCMessage *msg, uint8_t **resp,
             size_t *len);

/* Conveniences on top of tnode_do. */
int tnode_put(struct tnode *t, const char *key, const char *val, int64_t *rev);
/* Value of key into buf ("" if absent); returns count or <0 error. */
int tnode_get(struct tnode *t, const char *key, char *buf, size_t len, int64_t *rev);

/* Keys <prefix><from..to-1> (4 digits) put with values v<i> / checked
 * (a failure names the first wrong key). */
void tnode_put_n(struct tnode *t, const char *prefix, int from, int to);
void tnode_check_n(struct tnode *t, const char *prefix, int from, int to);
/* Copy a file, holes kept (LMDB's data file is as large as its map, and
 * sparse), into to's existing file if there is one (same inode). */
void th_copy_file(const char *from, const char *to);

/* A free TCP port on 127.0.0.1 (for a member's peer URL). */
int th_free_port(void);
/* From a thread other than the members' loops: poll cond(arg) every
 * millisecond for up to ms; returns it. */
bool th_wait_for(bool (*cond)(void *), void *arg, unsigned ms);

/* Run the loop until *flag or timeout_ms; returns *flag. */
bool tnode_run_until(struct tnode *t, const bool *flag, unsigned timeout_ms);

#endif
