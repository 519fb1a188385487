/* workqueue.c - a distributed work queue over bollard/store.h.
 *
 *   workqueue (--data-dir D | --endpoints H:P) produce N [TAG]
 *   workqueue (--data-dir D | --endpoints H:P) consume NAME [IDLE_MS]
 *
 * Producers put items under queue/. Consumers claim an item with a txn:
 * "if queue/X still has the mod_revision I saw, delete it" - only one
 * consumer's delete succeeds, so every item is processed exactly once.
 * A consumer first takes what is queued, then watches queue/ for new items
 * (from the revision its listing saw, so nothing falls in between), and
 * exits after IDLE_MS without new items (0: never). It prints
 * "DONE NAME KEY VALUE" per item it processed, "LOST NAME KEY" per item
 * another consumer claimed first. */
#include "common.h"

#define PREFIX "queue/"

struct consumer {
	struct bollard_client *c;
	const char *name;
	struct bollard_watch watch;
	uv_timer_t idle;
	unsigned idle_ms;
};

static void on_idle(uv_timer_t *t);

/* Claim one item (blocking: short, and keeps the example linear). */
static void claim(struct consumer *w, const struct bollard_kv *kv)
{
	struct bollard_compare cmp = {.key = kv->key, .key_len = kv->key_len,
	                              .target = BOLLARD_CMP_MOD, .op = BOLLARD_CMP_EQUAL,
	                              .number = kv->mod_revision};
	struct bollard_op del = {.type = BOLLARD_OP_DELETE, .key = kv->key, .key_len = kv->key_len};
	struct bollard_txn t = {&cmp, 1, &del, 1, NULL, 0};
	struct bollard_result r;

	if (bollard_txn_sync(w->c, &t, &r) != 0)
		return;
	if (r.succeeded) /* ours: process it */
		printf("DONE %s %s %s\n", w->name, kv->key, kv->value);
	else /* another consumer claimed it first */
		printf("LOST %s %s\n", w->name, kv->key);
	fflush(stdout);
	bollard_result_free(&r);
	if (w->idle_ms)
		uv_timer_start(&w->idle, on_idle, w->idle_ms, 0); /* busy: not idle */
}

static void on_watch(struct bollard_watch *wt, int status, const struct bollard_watch_batch *b)
{
	struct consumer *w = wt->data;
	if (status != 0)
		return; /* closing */
	for (size_t i = 0; i < b->n_events; i++)
		if (b->events[i].type == BOLLARD_EVENT_PUT)
			claim(w, &b->events[i].kv);
}

static void closed(struct bollard_client *c, void *data)
{
	(void)c;
	(void)data;
}

static void on_idle(uv_timer_t *t)
{
	struct consumer *w = t->data;
	uv_close((uv_handle_t *)t, NULL);
	bollard_close(w->c, closed, NULL);
}

static int consume(struct consumer *w, uv_loop_t *loop)
{
	struct bollard_range_options ro = {.prefix = true};
	struct bollard_watch_options wo = {.prefix = true};
	struct bollard_result r;
	int rc;

	uv_timer_init(loop, &w->idle);
	w->idle.data = w;
	if (w->idle_ms)
		uv_timer_start(&w->idle, on_idle, w->idle_ms, 0);
	if ((rc = bollard_range_sync(w->c, PREFIX, strlen(PREFIX), &ro, &r)) != 0)
		return rc;
	for (size_t i = 0; i < r.n_kvs; i++)
		claim(w, &r.kvs[i]);
	wo.start_revision = r.header.revision + 1;
	bollard_result_free(&r);
	w->watch.data = w;
	return bollard_watch_start(w->c, &w->watch, PREFIX, strlen(PREFIX), &wo, on_watch);
}

int main(int argc, char **argv)
{
	uv_loop_t *loop = uv_default_loop();
	struct consumer w = {0};
	char *args[8], key[64], val[64];
	int n, rc = 0;

	if (argc > 10 || example_open(&w.c, loop, argc, argv, args, &n) != 0 || n < 2)
		return 2;
	if (!strcmp(args[0], "produce")) {
		for (int i = 0, count = atoi(args[1]); i < count && rc == 0; i++) {
			snprintf(key, sizeof(key), PREFIX "%s-%05d", n > 2 ? args[2] : "item", i);
			snprintf(val, sizeof(val), "job %d", i);
			rc = bollard_put_sync(w.c, key, strlen(key), val, strlen(val), NULL, NULL);
		}
		bollard_close(w.c, closed, NULL);
	} else {
		w.name = args[1];
		w.idle_ms = n > 2 ? (unsigned)atoi(args[2]) : 0;
		if ((rc = consume(&w, loop)) != 0) {
			uv_close((uv_handle_t *)&w.idle, NULL);
			bollard_close(w.c, closed, NULL);
		}
	}
	uv_run(loop, UV_RUN_DEFAULT);
	if (rc)
		fprintf(stderr, "%s: %s\n", argv[0], bollard_strerror(rc));
	return rc || uv_loop_close(loop) != 0;
}
