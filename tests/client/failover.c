/* failover.c - a writer and a watcher through the remote client while the
 * member they are connected to is killed (driven by test_failover.py).
 *
 *   test-failover --endpoints H:P,H:P,H:P [--before N] [--after N]
 *
 * Protocol on stdout/stdin with the driver:
 *   -> "CONNECTED <member id hex>"  the member the client talks to
 *   -> "KILL"                       after N acknowledged writes (writes go on)
 *   <- "killed"                     the driver has kill -9'ed that member
 * then the writers go on until N more writes were acknowledged after the
 * kill, stop, and the program checks:
 *   - every acknowledged write is in the store, at the revision its answer
 *     gave; a write that failed as never sent (-ENOTCONN) is absent; a write
 *     whose outcome is unknown (-ECONNRESET, -ETIMEDOUT) is reported, present
 *     or not;
 *   - the watcher (started before the first write) received every put under
 *     the prefix exactly once, in revision order, and nothing else.
 * Prints "N passed, N failed" last (one test) and exits non-zero on failure.
 *
 * Threads: two writer threads make blocking puts (each its own keys, so up
 * to two writes are in flight when the member dies); the watcher runs on the
 * loop thread; a thread reads the driver's "killed". */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bollard/store.h>

#define N_WRITERS 2
#define MAX_WRITES 20000
#define PREFIX "fo/"
#define TEST_LIMIT_MS 100000 /* writers stop by then whatever happened */

enum outcome { W_ACKED, W_NOT_SENT, W_UNKNOWN, W_OTHER };

struct write {
	char key[32];
	enum outcome o;
	int err;
	int64_t rev; /* acked: the revision of the put */
};

struct writer {
	int id;
	pthread_t th;
	struct write w[MAX_WRITES];
	size_t n;
};

static struct bollard_client *client;
static atomic_long acked, acked_after_kill;
static atomic_bool killed, stop_writing, kill_announced;
static long n_before = 100, n_after = 100;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&out_mu);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
	pthread_mutex_unlock(&out_mu);
}

static void *writer_main(void *arg)
{
	struct writer *wr = arg;
	char val[32];

	while (!atomic_load(&stop_writing) && wr->n < MAX_WRITES) {
		struct write *w = &wr->w[wr->n];
		struct bollard_result r;
		int rc;

		snprintf(w->key, sizeof(w->key), PREFIX "%d/%06zu", wr->id, wr->n);
		snprintf(val, sizeof(val), "v%zu", wr->n);
		rc = bollard_put_sync(client, w->key, strlen(w->key), val, strlen(val), NULL, &r);
		w->err = rc;
		if (rc == 0) {
			w->o = W_ACKED;
			w->rev = r.header.revision;
			bollard_result_free(&r);
			if (atomic_fetch_add(&acked, 1) + 1 == n_before &&
			    !atomic_exchange(&kill_announced, true))
				say("KILL\n");
			if (atomic_load(&killed) && atomic_fetch_add(&acked_after_kill, 1) + 1 >= n_after)
				atomic_store(&stop_writing, true);
		} else if (rc == -ENOTCONN) {
			w->o = W_NOT_SENT;
		} else if (rc == -EPROTO || rc == -EINVAL || rc == -ENOMEM || rc == -ECANCELED) {
			w->o = W_OTHER; /* never expected */
		} else {
			/* -ECONNRESET, -ETIMEDOUT, and the server's own failover
			 * answers (leader changed, request timed out, ...) */
			w->o = W_UNKNOWN;
		}
		if (rc != 0)
			say("# write %s: %s\n", w->key, bollard_strerror(rc));
		wr->n++;
	}
	return NULL;
}

static void *stdin_main(void *arg)
{
	char line[64];
	(void)arg;
	while (fgets(line, sizeof(line), stdin))
		if (!strncmp(line, "killed", 6)) {
			atomic_store(&killed, true);
			break;
		}
	return NULL;
}

/* ---- the watcher (loop thread) ---- */

struct event {
	char *key;
	int64_t rev;
};

static struct event *events;
static size_t n_events, cap_events;
static int watch_status = 1; /* 1: running */
static int64_t watch_last_rev;
static long n_batches;

static void watch_cb(struct bollard_watch *w, int status, const struct bollard_watch_batch *b)
{
	(void)w;
	if (status != 0) {
		watch_status = status;
		return;
	}
	n_batches++;
	for (size_t i = 0; i < b->n_events; i++) {
		if (n_events == cap_events) {
			cap_events = cap_events ? cap_events * 2 : 1024;
			events = realloc(events, cap_events * sizeof(*events));
		}
		events[n_events].key = strndup(b->events[i].kv.key, b->events[i].kv.key_len);
		events[n_events].rev = b->events[i].kv.mod_revision;
		n_events++;
		watch_last_rev = b->events[i].kv.mod_revision;
	}
}

static void on_tick(uv_timer_t *t)
{
	(void)t; /* wakes uv_run(UV_RUN_ONCE) */
}

static int n_fail;
#define EXPECT(cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			if (n_fail++ < 20)                                                         \
				say("FAIL " __VA_ARGS__);                                          \
		}                                                                                  \
	} while (0)

static int cmp_rev(const void *a, const void *b)
{
	int64_t x = ((const struct write *)a)->rev, y = ((const struct write *)b)->rev;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static struct writer writers[N_WRITERS];
	const char *eps_arg = NULL, *eps[8];
	size_t n_eps = 0;
	struct bollard_remote_options ro = {.dial_timeout_ms = 5000, .request_timeout_ms = 10000};
	struct bollard_watch w = {0};
	struct bollard_watch_options wo = {.prefix = true};
	struct bollard_result st, all;
	struct bollard_range_options ao = {.prefix = true};
	uv_loop_t loop;
	uv_timer_t tick;
	pthread_t in_th;
	char *epcopy;
	uint64_t t_start;
	long n_acked = 0, n_unknown = 0, n_unknown_present = 0, n_not_sent = 0;
	int rc;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--endpoints"))
			eps_arg = argv[i + 1];
		else if (!strcmp(argv[i], "--before"))
			n_before = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--after"))
			n_after = atol(argv[i + 1]);
	}
	if (!eps_arg) {
		fprintf(stderr, "usage: test-failover --endpoints H:P,... [--before N] [--after N]\n");
		return 2;
	}
	epcopy = strdup(eps_arg);
	for (char *sp, *t = strtok_r(epcopy, ",", &sp); t && n_eps < 8; t = strtok_r(NULL, ",", &sp))
		eps[n_eps++] = t;
	uv_loop_init(&loop);
	if ((rc = bollard_connect(&client, &loop, eps, n_eps, &ro)) != 0 ||
	    (rc = bollard_status_sync(client, &st)) != 0) {
		say("cannot connect: %s\n0 passed, 1 failed\n", bollard_strerror(rc));
		return 1;
	}
	/* Every change after this revision, exactly once. */
	wo.start_revision = st.header.revision + 1;
	say("CONNECTED %" PRIx64 "\n", st.header.member_id);
	bollard_result_free(&st);
	if ((rc = bollard_watch_start(client, &w, PREFIX, strlen(PREFIX), &wo, watch_cb)) != 0) {
		say("watch: %s\n0 passed, 1 failed\n", bollard_strerror(rc));
		return 1;
	}
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, on_tick, 50, 50);
	t_start = uv_now(&loop);
	pthread_create(&in_th, NULL, stdin_main, NULL);
	pthread_detach(in_th);
	for (int i = 0; i < N_WRITERS; i++) {
		writers[i].id = i;
		pthread_create(&writers[i].th, NULL, writer_main, &writers[i]);
	}
	/* The loop runs the watcher while the writers write. */
	while (!atomic_load(&stop_writing) && watch_status == 1 &&
	       uv_now(&loop) - t_start < TEST_LIMIT_MS)
		uv_run(&loop, UV_RUN_ONCE);
	atomic_store(&stop_writing, true);
	for (int i = 0; i < N_WRITERS; i++)
		pthread_join(writers[i].th, NULL);

	/* What the store holds now (linearizable, through the new member). */
	if ((rc = bollard_range_sync(client, PREFIX, strlen(PREFIX), &ao, &all)) != 0) {
		say("final range: %s\n0 passed, 1 failed\n", bollard_strerror(rc));
		return 1;
	}
	/* The watcher catches up to the newest put of the prefix. */
	{
		int64_t max_rev = 0;
		uint64_t waited = 0;
		for (size_t i = 0; i < all.n_kvs; i++)
			if (all.kvs[i].mod_revision > max_rev)
				max_rev = all.kvs[i].mod_revision;
		while (watch_status == 1 && watch_last_rev < max_rev && waited < 30000) {
			uv_run(&loop, UV_RUN_ONCE);
			waited += 50; /* at most one tick per turn */
		}
		EXPECT(watch_status == 1, "the watch ended: %s\n", bollard_strerror(watch_status));
		EXPECT(watch_last_rev >= max_rev, "watcher at revision %" PRId64 ", store at %" PRId64 "\n",
		       watch_last_rev, max_rev);
	}

	/* Writes against the store's content. */
	for (int t = 0; t < N_WRITERS; t++) {
		struct writer *wr = &writers[t];
		for (size_t i = 0; i < wr->n; i++) {
			struct write *wt = &wr->w[i];
			const struct bollard_kv *kv = NULL;
			for (size_t j = 0; j < all.n_kvs; j++)
				if (!strcmp(all.kvs[j].key, wt->key))
					kv = &all.kvs[j];
			switch (wt->o) {
			case W_ACKED:
				n_acked++;
				EXPECT(kv && kv->mod_revision == wt->rev,
				       "acknowledged write %s (revision %" PRId64 ") is %s\n", wt->key,
				       wt->rev, kv ? "at another revision" : "missing");
				break;
			case W_NOT_SENT:
				n_not_sent++;
				EXPECT(!kv, "write %s failed as never sent, but is in the store\n", wt->key);
				break;
			case W_UNKNOWN:
				n_unknown++;
				n_unknown_present += kv != NULL;
				say("# write %s: outcome unknown (%s): %s\n", wt->key,
				    bollard_strerror(wt->err), kv ? "applied" : "not applied");
				break;
			case W_OTHER:
				EXPECT(0, "write %s failed: %s\n", wt->key, bollard_strerror(wt->err));
				break;
			}
		}
	}
	/* Every key in the store was written by a writer (acked or unknown). */
	EXPECT((long)all.n_kvs == n_acked + n_unknown_present,
	       "store holds %zu keys, writers account for %ld\n", all.n_kvs,
	       n_acked + n_unknown_present);

	/* The watcher: strictly increasing revisions (no duplicate, in order),
	 * and exactly the store's puts. */
	for (size_t i = 1; i < n_events; i++)
		EXPECT(events[i].rev > events[i - 1].rev,
		       "event %zu (%s@%" PRId64 ") after %s@%" PRId64 ": out of order or twice\n", i,
		       events[i].key, events[i].rev, events[i - 1].key, events[i - 1].rev);
	EXPECT(n_events == all.n_kvs, "watcher saw %zu events, the store holds %zu keys\n", n_events,
	       all.n_kvs);
	{
		struct write *byrev = calloc(all.n_kvs + 1, sizeof(*byrev));
		for (size_t j = 0; j < all.n_kvs; j++) {
			snprintf(byrev[j].key, sizeof(byrev[j].key), "%s", all.kvs[j].key);
			byrev[j].rev = all.kvs[j].mod_revision;
		}
		qsort(byrev, all.n_kvs, sizeof(*byrev), cmp_rev);
		for (size_t j = 0; j < all.n_kvs && j < n_events; j++)
			EXPECT(byrev[j].rev == events[j].rev && !strcmp(byrev[j].key, events[j].key),
			       "event %zu is %s@%" PRId64 ", the store's put %zu is %s@%" PRId64 "\n", j,
			       events[j].key, events[j].rev, j, byrev[j].key, byrev[j].rev);
		free(byrev);
	}
	say("# %ld writes acknowledged (%ld after the kill), %ld outcome unknown (%ld applied), "
	    "%ld never sent; watcher: %zu events in %ld batches, exactly once in revision order: %s\n",
	    n_acked, atomic_load(&acked_after_kill), n_unknown, n_unknown_present, n_not_sent,
	    n_events, n_batches, n_fail ? "NO" : "yes");
	EXPECT(atomic_load(&killed), "the driver never reported the kill\n");
	EXPECT(atomic_load(&acked_after_kill) >= n_after, "only %ld writes acknowledged after the kill\n",
	       atomic_load(&acked_after_kill));

	bollard_result_free(&all);
	bollard_watch_cancel(&w);
	uv_close((uv_handle_t *)&tick, NULL);
	bollard_close(client, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	for (size_t i = 0; i < n_events; i++)
		free(events[i].key);
	free(events);
	free(epcopy);
	say("%d passed, %d failed\n", n_fail ? 0 : 1, n_fail ? 1 : 0);
	return n_fail ? 1 : 0;
}
