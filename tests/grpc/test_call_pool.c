/* test_call_pool.c - the gRPC server's pool of finished calls (server.c)
 * under AddressSanitizer: a pooled call's memory, and its metadata array's,
 * is poisoned, so a use of a call after its last unref is reported
 * ("use-after-poison") as a use after free() would be, while the pool keeps
 * reusing the memory (taken out again, the call is usable). Each bad access
 * runs in a child process; the parent expects the child to die with ASan's
 * report. Without ASan there is nothing to check: exit 77 (skipped). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/support/alloc.h>

#include "server/server_int.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

#define REQUIRE(x)                                                               \
	do {                                                                     \
		if (!(x)) {                                                      \
			fprintf(stderr, "%s:%d: REQUIRE(%s)\n", __FILE__, __LINE__, #x); \
			exit(1);                                                 \
		}                                                                \
	} while (0)

#ifdef HAVE_ASAN
static volatile long sink;

/* Runs touch(c) in a child; true if ASan stopped it with "use-after-poison". */
static bool child_reports(void (*touch)(struct srv_call *c), struct srv_call *c)
{
	char out[8192];
	size_t got = 0;
	ssize_t r;
	int fds[2], status;
	pid_t pid;

	REQUIRE(pipe(fds) == 0);
	fflush(NULL);
	REQUIRE((pid = fork()) >= 0);
	if (pid == 0) {
		dup2(fds[1], 2);
		close(fds[0]);
		touch(c);
		_exit(0); /* not reported */
	}
	close(fds[1]);
	while (got < sizeof(out) - 1 && (r = read(fds[0], out + got, sizeof(out) - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = '\0';
	close(fds[0]);
	REQUIRE(waitpid(pid, &status, 0) == pid);
	if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && strstr(out, "use-after-poison"))
		return true;
	fprintf(stderr, "child status %d, stderr:\n%s\n", status, out);
	return false;
}

static void read_refs(struct srv_call *c)
{
	sink = atomic_load(&c->refs);
}

static void write_user(struct srv_call *c)
{
	c->user = c;
}

static void read_request(struct srv_call *c)
{
	sink = (long)c->pb_buf[0];
}

static void read_metadata(struct srv_call *c)
{
	sink = (long)c->md.metadata[1].value.refcount;
}
#endif

int main(void)
{
#ifndef HAVE_ASAN
	puts("not built with AddressSanitizer: skipped");
	return 77;
#else
	struct etcd_server s;
	struct srv_call *c, *again;

	memset(&s, 0, sizeof(s));
	pthread_mutex_init(&s.mu, NULL);
	REQUIRE(srv_live_add(&s) == NULL); /* a call is armed: none pooled yet */
	REQUIRE((c = calloc(1, sizeof(*c))) != NULL);
	grpc_metadata_array_init(&c->md);
	c->md.capacity = 4;
	REQUIRE((c->md.metadata = gpr_malloc(4 * sizeof(*c->md.metadata))) != NULL);
	memset(c->md.metadata, 0, 4 * sizeof(*c->md.metadata));
	atomic_init(&c->refs, 0);
	REQUIRE(srv_live_drop(&s, c) == NULL); /* finished: kept in the pool */
	REQUIRE(s.pool == c && s.pool_n == 1);

	REQUIRE(child_reports(read_refs, c));
	REQUIRE(child_reports(write_user, c));
	REQUIRE(child_reports(read_request, c));
	REQUIRE(child_reports(read_metadata, c));
	puts("ok   pooled call: every access reported");

	again = srv_live_add(&s); /* the next call reuses it, usable */
	REQUIRE(again == c && s.pool == NULL);
	atomic_store(&again->refs, 1);
	again->user = NULL;
	again->pb_buf[0] = 1;
	again->md.metadata[1].value = grpc_empty_slice();
	REQUIRE(atomic_load(&again->refs) == 1);
	puts("ok   reused call: usable");

	REQUIRE(srv_live_drop(&s, again) == NULL);
	srv_pool_free(&s); /* unpoisons before it frees */
	REQUIRE(s.pool == NULL);
	puts("ok   pool freed");
	pthread_mutex_destroy(&s.mu);
	return 0;
#endif
}
