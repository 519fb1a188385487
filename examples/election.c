/* election.c - leader election over bollard/store.h.
 *
 *   election (--data-dir D | --endpoints H:P) NAME [HOLD_MS]
 *
 * A candidate holds a lease (kept alive) and campaigns with a txn: "if
 * election/leader does not exist, put it = NAME with my lease". The winner
 * prints "LEADER NAME" and leads for HOLD_MS (0: until killed), then exits
 * without resigning, like a crash: its lease ends within the TTL and the
 * key goes with it. A loser prints "FOLLOWER NAME" and watches the key;
 * when it is deleted, it campaigns again. */
#include "common.h"

#define KEY "election/leader"
#define TTL 2

struct candidate {
	uv_loop_t *loop;
	struct bollard_client *c;
	const char *name;
	int64_t lease;
	unsigned hold_ms;
	struct bollard_req req;
	struct bollard_watch watch;
	struct bollard_keepalive ka;
	uv_timer_t hold;
	bool quitting;
};

static void campaign(struct candidate *k);

static void closed(struct bollard_client *c, void *data)
{
	(void)c;
	(void)data;
}

static void quit(struct candidate *k)
{
	if (k->quitting)
		return;
	k->quitting = true;
	uv_close((uv_handle_t *)&k->hold, NULL);
	bollard_close(k->c, closed, NULL); /* stops the keep-alive and the watch */
}

static void on_hold(uv_timer_t *t)
{
	struct candidate *k = t->data;
	printf("EXIT %s\n", k->name);
	fflush(stdout);
	quit(k);
}

static void on_watch(struct bollard_watch *w, int status, const struct bollard_watch_batch *b)
{
	struct candidate *k = w->data;
	if (status != 0) { /* the watch ended: cancelled below, or closing */
		if (status == -ECANCELED && !k->quitting)
			campaign(k);
		return;
	}
	for (size_t i = 0; i < b->n_events; i++)
		if (b->events[i].type == BOLLARD_EVENT_DELETE) {
			bollard_watch_cancel(w); /* then campaign from the last callback */
			return;
		}
}

static void on_campaign(struct bollard_req *req, int status)
{
	struct candidate *k = req->data;
	struct bollard_result *r = &req->result;

	if (status != 0) {
		fprintf(stderr, "%s: campaign: %s\n", k->name, bollard_strerror(status));
		quit(k);
		return;
	}
	if (r->succeeded) {
		printf("LEADER %s\n", k->name);
		if (k->hold_ms)
			uv_timer_start(&k->hold, on_hold, k->hold_ms, 0);
	} else {
		/* failure branch: a range of the key, whose owner leads */
		const struct bollard_result *g = &r->responses[0];
		struct bollard_watch_options o = {.start_revision = r->header.revision + 1};
		printf("FOLLOWER %s (leader: %s)\n", k->name, g->n_kvs ? g->kvs[0].value : "?");
		k->watch.data = k;
		if (bollard_watch_start(k->c, &k->watch, KEY, strlen(KEY), &o, on_watch) != 0)
			quit(k);
	}
	fflush(stdout);
	bollard_result_free(r);
}

static void campaign(struct candidate *k)
{
	struct bollard_compare cmp = {.key = KEY, .key_len = strlen(KEY),
	                              .target = BOLLARD_CMP_CREATE, .op = BOLLARD_CMP_EQUAL};
	struct bollard_op put = {.type = BOLLARD_OP_PUT, .key = KEY, .key_len = strlen(KEY),
	                         .value = k->name, .value_len = strlen(k->name),
	                         .put.lease = k->lease};
	struct bollard_op get = {.type = BOLLARD_OP_RANGE, .key = KEY, .key_len = strlen(KEY)};
	struct bollard_txn t = {&cmp, 1, &put, 1, &get, 1};

	k->req.data = k;
	if (bollard_txn(k->c, &k->req, &t, on_campaign) != 0)
		quit(k);
}

static void on_keepalive(struct bollard_keepalive *ka, int status)
{
	struct candidate *k = ka->data;
	if (status != -ECANCELED) { /* lease lost: we are nobody */
		fprintf(stderr, "%s: lease lost: %s\n", k->name, bollard_strerror(status));
		quit(k);
	}
}

int main(int argc, char **argv)
{
	struct candidate k = {.loop = uv_default_loop()};
	struct bollard_result r;
	char *args[8];
	int n;

	if (argc > 9 || example_open(&k.c, k.loop, argc, argv, args, &n) != 0 || n < 1)
		return 2;
	k.name = args[0];
	k.hold_ms = n > 1 ? (unsigned)atoi(args[1]) : 0;
	if (bollard_lease_grant_sync(k.c, TTL, 0, &r) != 0)
		return 1;
	k.lease = r.lease_id;
	bollard_result_free(&r);
	k.ka.data = &k;
	bollard_keepalive_start(k.c, &k.ka, k.lease, on_keepalive);
	uv_timer_init(k.loop, &k.hold);
	k.hold.data = &k;
	campaign(&k);
	uv_run(k.loop, UV_RUN_DEFAULT);
	return uv_loop_close(k.loop) == 0 ? 0 : 1;
}
