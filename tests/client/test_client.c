/* test_client.c - bollard/store.h against a real bollard-store, through the
 * public header only.
 *
 *   test-client <path to bollard-store>
 *
 * Every test takes a struct env (a client plus what opened it) and runs once
 * per back end in the table below, with the same assertions: "remote" (a
 * bollard-store process) and "embedded" (a member in this process over its
 * own data dir). Tests that need to kill and restart the store say so with
 * needs_process and run remote only: kill -9 of an embedded store would kill
 * the test itself (the embedded member's restart on its data dir is covered
 * by "embedded-reopen").
 * Prints one line per test and "N passed, N failed" last. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bollard/store.h>

/* ---- the store process ---- */

struct server {
	const char *binary;
	char dir[256], data[300], log[300], client_url[64], peer_url[64], endpoint[80];
	pid_t pid;
};

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &len);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static int server_start(struct server *s)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		char cluster[128];
		snprintf(cluster, sizeof(cluster), "default=%s", s->peer_url);
		dup2(fd, 1);
		dup2(fd, 2);
		setsid();
		execl(s->binary, s->binary, "--data-dir", s->data, "--listen-client-urls",
		      s->client_url, "--advertise-client-urls", s->client_url, "--listen-peer-urls",
		      s->peer_url, "--initial-advertise-peer-urls", s->peer_url, "--initial-cluster",
		      cluster, "--log-level", "warn", (char *)NULL);
		_exit(127);
	}
	s->pid = pid;
	return 0;
}

static void server_kill(struct server *s, int sig)
{
	if (s->pid > 0) {
		kill(s->pid, sig);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* ---- checks ---- */

static int n_checks_failed;
static char fail_text[512];

#define CHECK(cond)                                                                             \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			if (!n_checks_failed++)                                                    \
				snprintf(fail_text, sizeof(fail_text), "%s:%d: %s", __FILE__,      \
				         __LINE__, #cond);                                         \
			return;                                                                    \
		}                                                                                  \
	} while (0)

#define CHECK_RC(expr, want)                                                                    \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_ != (want)) {                                                               \
			if (!n_checks_failed++)                                                    \
				snprintf(fail_text, sizeof(fail_text), "%s:%d: %s = %d (%s), want %d", \
				         __FILE__, __LINE__, #expr, rc_, bollard_strerror(rc_),    \
				         (int)(want));                                             \
			return;                                                                    \
		}                                                                                  \
	} while (0)

#define CHECK_STR(p, len, want) CHECK((len) == strlen(want) && memcmp((p), (want), (len)) == 0)
#define S(str) (str), strlen(str)

/* ---- back ends ---- */

struct env {
	const struct backend *be;
	uv_loop_t loop;
	struct bollard_client *c;
	struct server *srv; /* NULL for back ends without a process */
	const char *data_dir; /* the store's data dir (embedded) */
};

struct backend {
	const char *name;
	int (*open)(struct env *e);
	bool has_process;
};

static int open_remote(struct env *e)
{
	const char *eps[] = {e->srv->endpoint};
	struct bollard_remote_options o = {.dial_timeout_ms = 10000, .request_timeout_ms = 10000};

	return bollard_connect(&e->c, &e->loop, eps, 1, &o);
}

static int open_embedded(struct env *e)
{
	struct bollard_embedded_options o = {.data_dir = e->data_dir, .log_level = "warn"};

	return bollard_open_embedded(&e->c, &e->loop, &o);
}

static const struct backend backends[] = {
	{"remote", open_remote, true},
	{"embedded", open_embedded, false},
};

static void closed(struct bollard_client *c, void *data)
{
	(void)c;
	*(bool *)data = true;
}

static void env_close(struct env *e)
{
	bool done = false;

	bollard_close(e->c, closed, &done);
	while (!done)
		uv_run(&e->loop, UV_RUN_ONCE);
	e->c = NULL;
}

/* Run the loop until *flag or timeout_ms; true if the flag was set. */
static void on_timer(uv_timer_t *t)
{
	(void)t;
}

static bool run_until(struct env *e, const bool *flag, unsigned timeout_ms)
{
	uv_timer_t t;
	uint64_t end;

	uv_update_time(&e->loop);
	end = uv_now(&e->loop) + timeout_ms;
	uv_timer_init(&e->loop, &t);
	uv_timer_start(&t, on_timer, 10, 10);
	while (!*flag && uv_now(&e->loop) < end)
		uv_run(&e->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&e->loop, UV_RUN_NOWAIT);
	return *flag;
}

static void sleep_loop(struct env *e, unsigned ms)
{
	bool never = false;
	run_until(e, &never, ms);
}

/* ---- tests ---- */

static int64_t put(struct env *e, const char *k, const char *v)
{
	struct bollard_result r;
	int64_t rev;

	if (bollard_put_sync(e->c, S(k), S(v), NULL, &r) != 0)
		return -1;
	rev = r.header.revision;
	bollard_result_free(&r);
	return rev;
}

struct async_req {
	struct bollard_req req;
	int status;
	bool done;
};

static void req_done(struct bollard_req *req, int status)
{
	struct async_req *a = req->data;
	a->status = status;
	a->done = true;
}

static void t_range(struct env *e)
{
	struct bollard_result r;
	struct bollard_range_options o = {0};
	int64_t rev1;
	struct async_req a = {.req.data = &a};

	CHECK((rev1 = put(e, "range/a", "1")) > 0);
	CHECK(put(e, "range/b", "2") > rev1);
	CHECK(put(e, "range/c", "3") > rev1);
	CHECK(put(e, "range/a", "4") > rev1);
	CHECK(put(e, "rangez", "x") > rev1);

	/* one key */
	CHECK_RC(bollard_range_sync(e->c, S("range/a"), NULL, &r), 0);
	CHECK(r.n_kvs == 1 && r.count == 1 && !r.more);
	CHECK_STR(r.kvs[0].key, r.kvs[0].key_len, "range/a");
	CHECK_STR(r.kvs[0].value, r.kvs[0].value_len, "4");
	CHECK(r.kvs[0].version == 2 && r.kvs[0].create_revision == rev1);
	CHECK(r.kvs[0].key[r.kvs[0].key_len] == 0);
	bollard_result_free(&r);
	bollard_result_free(&r); /* twice is fine */

	/* prefix; range_end */
	o.prefix = true;
	CHECK_RC(bollard_range_sync(e->c, S("range/"), &o, &r), 0);
	CHECK(r.n_kvs == 3 && r.count == 3);
	CHECK_STR(r.kvs[2].key, r.kvs[2].key_len, "range/c");
	bollard_result_free(&r);
	memset(&o, 0, sizeof(o));
	o.range_end = "range/c";
	o.range_end_len = 7;
	CHECK_RC(bollard_range_sync(e->c, S("range/a"), &o, &r), 0);
	CHECK(r.n_kvs == 2);
	bollard_result_free(&r);

	/* limit */
	memset(&o, 0, sizeof(o));
	o.prefix = true;
	o.limit = 2;
	CHECK_RC(bollard_range_sync(e->c, S("range/"), &o, &r), 0);
	CHECK(r.n_kvs == 2 && r.more && r.count == 3);
	bollard_result_free(&r);

	/* revision: the first value of range/a */
	memset(&o, 0, sizeof(o));
	o.revision = rev1;
	CHECK_RC(bollard_range_sync(e->c, S("range/a"), &o, &r), 0);
	CHECK(r.n_kvs == 1);
	CHECK_STR(r.kvs[0].value, r.kvs[0].value_len, "1");
	bollard_result_free(&r);

	/* keys_only, count_only, serializable */
	memset(&o, 0, sizeof(o));
	o.prefix = true;
	o.keys_only = true;
	CHECK_RC(bollard_range_sync(e->c, S("range/"), &o, &r), 0);
	CHECK(r.n_kvs == 3 && r.kvs[1].value_len == 0);
	bollard_result_free(&r);
	o.keys_only = false;
	o.count_only = true;
	CHECK_RC(bollard_range_sync(e->c, S("range/"), &o, &r), 0);
	CHECK(r.n_kvs == 0 && r.count == 3);
	bollard_result_free(&r);
	o.count_only = false;
	o.serializable = true;
	CHECK_RC(bollard_range_sync(e->c, S("range/"), &o, &r), 0);
	CHECK(r.n_kvs == 3);
	bollard_result_free(&r);

	/* missing key */
	CHECK_RC(bollard_range_sync(e->c, S("range/none"), NULL, &r), 0);
	CHECK(r.n_kvs == 0 && r.count == 0 && r.header.revision >= rev1);
	bollard_result_free(&r);

	/* asynchronous */
	o.serializable = false;
	CHECK_RC(bollard_range(e->c, &a.req, S("range/"), &o, req_done), 0);
	CHECK(!a.done); /* never called from inside the call */
	CHECK(run_until(e, &a.done, 5000));
	CHECK_RC(a.status, 0);
	CHECK(a.req.result.n_kvs == 3);
	CHECK_STR(a.req.result.kvs[1].value, a.req.result.kvs[1].value_len, "2");
	bollard_result_free(&a.req.result);
}

static void t_put_delete(struct env *e)
{
	struct bollard_result r;
	struct bollard_put_options po = {.prev_kv = true};
	struct bollard_delete_options d = {.prev_kv = true, .prefix = true};
	struct async_req a = {.req.data = &a};

	CHECK_RC(bollard_put_sync(e->c, S("pd/k"), S("v1"), &po, &r), 0);
	CHECK(r.n_kvs == 0 && r.type == BOLLARD_OP_PUT); /* nothing before */
	bollard_result_free(&r);
	CHECK_RC(bollard_put_sync(e->c, S("pd/k"), S("v2"), &po, &r), 0);
	CHECK(r.n_kvs == 1);
	CHECK_STR(r.kvs[0].value, r.kvs[0].value_len, "v1");
	bollard_result_free(&r);
	CHECK_RC(bollard_put(e->c, &a.req, S("pd/l"), S("w"), NULL, req_done), 0);
	CHECK(run_until(e, &a.done, 5000));
	CHECK_RC(a.status, 0);
	CHECK(a.req.result.header.revision > 0);
	bollard_result_free(&a.req.result);

	CHECK_RC(bollard_delete_sync(e->c, S("pd/"), &d, &r), 0);
	CHECK(r.count == 2 && r.n_kvs == 2);
	CHECK_STR(r.kvs[0].key, r.kvs[0].key_len, "pd/k");
	CHECK_STR(r.kvs[0].value, r.kvs[0].value_len, "v2");
	CHECK_STR(r.kvs[1].value, r.kvs[1].value_len, "w");
	bollard_result_free(&r);
	CHECK_RC(bollard_delete_sync(e->c, S("pd/k"), NULL, &r), 0);
	CHECK(r.count == 0);
	bollard_result_free(&r);
	CHECK_RC(bollard_delete_sync(e->c, S("pd/k"), NULL, NULL), 0);
}

static void t_txn(struct env *e)
{
	struct bollard_result r;
	int64_t rev;
	struct bollard_compare cmp = {.key = "txn/k", .key_len = 5, .target = BOLLARD_CMP_MOD,
	                              .op = BOLLARD_CMP_EQUAL};
	struct bollard_op ok_ops[] = {
		{.type = BOLLARD_OP_PUT, .key = "txn/k", .key_len = 5, .value = "new", .value_len = 3,
		 .put.prev_kv = true},
		{.type = BOLLARD_OP_RANGE, .key = "txn/", .key_len = 4, .range.prefix = true},
	};
	struct bollard_op fail_ops[] = {
		{.type = BOLLARD_OP_RANGE, .key = "txn/k", .key_len = 5},
		{.type = BOLLARD_OP_DELETE, .key = "txn/other", .key_len = 9},
	};
	struct bollard_txn t = {&cmp, 1, ok_ops, 2, fail_ops, 2};
	struct async_req a = {.req.data = &a};

	CHECK((rev = put(e, "txn/k", "old")) > 0);
	CHECK(put(e, "txn/other", "o") > rev);
	/* CAS that holds */
	cmp.number = rev;
	CHECK_RC(bollard_txn_sync(e->c, &t, &r), 0);
	CHECK(r.succeeded && r.n_responses == 2);
	CHECK(r.responses[0].type == BOLLARD_OP_PUT && r.responses[0].n_kvs == 1);
	CHECK_STR(r.responses[0].kvs[0].value, r.responses[0].kvs[0].value_len, "old");
	CHECK(r.responses[1].type == BOLLARD_OP_RANGE && r.responses[1].n_kvs == 2);
	CHECK_STR(r.responses[1].kvs[0].value, r.responses[1].kvs[0].value_len, "new");
	bollard_result_free(&r);
	/* the same CAS again fails: the failure branch runs */
	CHECK_RC(bollard_txn(e->c, &a.req, &t, req_done), 0);
	CHECK(run_until(e, &a.done, 5000));
	CHECK_RC(a.status, 0);
	CHECK(!a.req.result.succeeded && a.req.result.n_responses == 2);
	CHECK(a.req.result.responses[0].n_kvs == 1);
	CHECK_STR(a.req.result.responses[0].kvs[0].value, a.req.result.responses[0].kvs[0].value_len,
	          "new");
	CHECK(a.req.result.responses[1].type == BOLLARD_OP_DELETE &&
	      a.req.result.responses[1].count == 1);
	bollard_result_free(&a.req.result);
	/* "does not exist yet" (create_revision == 0) and a value compare */
	cmp = (struct bollard_compare){.key = "txn/none", .key_len = 8, .target = BOLLARD_CMP_CREATE,
	                               .op = BOLLARD_CMP_EQUAL, .number = 0};
	CHECK_RC(bollard_txn_sync(e->c, &t, &r), 0);
	CHECK(r.succeeded);
	bollard_result_free(&r);
	cmp = (struct bollard_compare){.key = "txn/k", .key_len = 5, .target = BOLLARD_CMP_VALUE,
	                               .op = BOLLARD_CMP_NOT_EQUAL, .value = "new", .value_len = 3};
	CHECK_RC(bollard_txn_sync(e->c, &t, &r), 0);
	CHECK(!r.succeeded);
	bollard_result_free(&r);
}

/* A watch that records every event as "P key=value@rev" / "D key@rev". */
struct recorder {
	struct bollard_watch w;
	char log[64][96];
	size_t n;
	int64_t revs[64];
	int final;
	bool ended;
	size_t progress;
};

static void rec_cb(struct bollard_watch *w, int status, const struct bollard_watch_batch *b)
{
	struct recorder *r = w->data;

	if (status != 0) {
		r->final = status;
		r->ended = true;
		return;
	}
	if (b->progress)
		r->progress++;
	for (size_t i = 0; i < b->n_events && r->n < 64; i++) {
		const struct bollard_event *ev = &b->events[i];
		if (ev->type == BOLLARD_EVENT_PUT)
			snprintf(r->log[r->n], sizeof(r->log[0]), "P %s=%s@%lld%s%s", ev->kv.key,
			         ev->kv.value, (long long)ev->kv.mod_revision, ev->prev_kv ? " prev=" : "",
			         ev->prev_kv ? ev->prev_kv->value : "");
		else
			snprintf(r->log[r->n], sizeof(r->log[0]), "D %s@%lld%s%s", ev->kv.key,
			         (long long)ev->kv.mod_revision, ev->prev_kv ? " prev=" : "",
			         ev->prev_kv ? ev->prev_kv->value : "");
		r->revs[r->n++] = ev->kv.mod_revision;
	}
}

static bool rec_wait(struct env *e, struct recorder *r, size_t n)
{
	for (int i = 0; i < 500 && r->n < n && !r->ended; i++)
		sleep_loop(e, 10);
	return r->n >= n;
}

static void t_watch(struct env *e)
{
	struct recorder *r = calloc(1, sizeof(*r));
	struct bollard_watch_options o = {.prefix = true, .prev_kv = true};
	int64_t r0, r1, r2, r3;
	char want[96];

	r->w.data = r;
	/* history first: the watch starts at r1 and must see r1..r3, not r0 */
	CHECK((r0 = put(e, "w/a", "0")) > 0);
	CHECK((r1 = put(e, "w/a", "1")) > r0);
	CHECK(put(e, "wz", "outside") > r1);
	CHECK((r2 = put(e, "w/b", "2")) > r1);
	CHECK_RC(bollard_delete_sync(e->c, S("w/a"), NULL, NULL), 0);
	r3 = r2 + 1;
	o.start_revision = r1;
	CHECK_RC(bollard_watch_start(e->c, &r->w, S("w/"), &o, rec_cb), 0);
	CHECK(rec_wait(e, r, 3));
	snprintf(want, sizeof(want), "P w/a=1@%lld prev=0", (long long)r1);
	CHECK(!strcmp(r->log[0], want));
	snprintf(want, sizeof(want), "P w/b=2@%lld", (long long)r2);
	CHECK(!strcmp(r->log[1], want));
	snprintf(want, sizeof(want), "D w/a@%lld prev=1", (long long)r3);
	CHECK(!strcmp(r->log[2], want));
	/* live events */
	CHECK(put(e, "w/c", "3") > r3);
	CHECK(put(e, "wz", "outside again") > r3);
	CHECK(put(e, "w/c", "4") > r3);
	CHECK(rec_wait(e, r, 5));
	sleep_loop(e, 100);
	CHECK(r->n == 5);
	CHECK(!strncmp(r->log[3], "P w/c=3@", 8) && !strncmp(r->log[4], "P w/c=4@", 8));
	CHECK(strstr(r->log[4], "prev=3"));
	CHECK_RC(bollard_watch_cancel(&r->w), 0);
	CHECK(bollard_watch_cancel(&r->w) == -EINVAL);
	CHECK(put(e, "w/c", "5") > 0);
	CHECK(run_until(e, &r->ended, 3000));
	CHECK_RC(r->final, -ECANCELED);
	CHECK(r->n == 5);
	free(r);
}

struct ka_state {
	struct bollard_keepalive ka;
	int final;
	bool ended;
};

static void ka_cb(struct bollard_keepalive *ka, int status)
{
	struct ka_state *s = ka->data;
	s->final = status;
	s->ended = true;
}

static void t_lease(struct env *e)
{
	struct async_req a = {.req.data = &a};
	struct bollard_put_options po = {0};
	struct bollard_result r;
	struct ka_state s = {.ka.data = &s}, s2 = {.ka.data = &s2};
	int64_t id;

	CHECK_RC(bollard_lease_grant(e->c, &a.req, 2, 0, req_done), 0);
	CHECK(run_until(e, &a.done, 5000));
	CHECK_RC(a.status, 0);
	id = a.req.result.lease_id;
	CHECK(id > 0 && a.req.result.lease_ttl == 2);
	bollard_result_free(&a.req.result);
	po.lease = id;
	CHECK_RC(bollard_put_sync(e->c, S("lease/k"), S("v"), &po, NULL), 0);

	/* kept alive past its TTL */
	CHECK_RC(bollard_keepalive_start(e->c, &s.ka, id, ka_cb), 0);
	sleep_loop(e, 3500);
	CHECK(!s.ended);
	CHECK(s.ka.n_refreshed >= 3 && s.ka.ttl == 2);
	CHECK_RC(bollard_range_sync(e->c, S("lease/k"), NULL, &r), 0);
	CHECK(r.n_kvs == 1 && r.kvs[0].lease == id);
	bollard_result_free(&r);
	CHECK_RC(bollard_keepalive_stop(&s.ka), 0);
	CHECK(run_until(e, &s.ended, 3000));
	CHECK_RC(s.final, -ECANCELED);

	/* revoke: the key goes */
	CHECK_RC(bollard_lease_revoke_sync(e->c, id, NULL), 0);
	CHECK_RC(bollard_range_sync(e->c, S("lease/k"), NULL, &r), 0);
	CHECK(r.n_kvs == 0);
	bollard_result_free(&r);
	CHECK_RC(bollard_lease_revoke_sync(e->c, id, NULL), BOLLARD_ELEASE_NOT_FOUND);

	/* keeping a dead lease alive reports it */
	CHECK_RC(bollard_keepalive_start(e->c, &s2.ka, id, ka_cb), 0);
	CHECK(run_until(e, &s2.ended, 5000));
	CHECK_RC(s2.final, BOLLARD_ELEASE_NOT_FOUND);

	/* a lease granted with an id, then expiring without keep-alive */
	CHECK_RC(bollard_lease_grant_sync(e->c, 1, 4242, &r), 0);
	CHECK(r.lease_id == 4242);
	bollard_result_free(&r);
	CHECK_RC(bollard_lease_grant_sync(e->c, 1, 4242, NULL), BOLLARD_ELEASE_EXIST);
	po.lease = 4242;
	CHECK_RC(bollard_put_sync(e->c, S("lease/short"), S("v"), &po, NULL), 0);
	for (int i = 0; i < 60; i++) {
		CHECK_RC(bollard_range_sync(e->c, S("lease/short"), NULL, &r), 0);
		size_t n = r.n_kvs;
		bollard_result_free(&r);
		if (n == 0)
			break;
		CHECK(i < 59);
		sleep_loop(e, 100);
	}
}

static void t_status(struct env *e)
{
	struct bollard_result r;
	struct async_req a = {.req.data = &a};

	CHECK_RC(bollard_status_sync(e->c, &r), 0);
	CHECK(r.version && r.version[0]);
	CHECK(r.header.member_id != 0 && r.header.revision > 0 && r.db_size > 0);
	CHECK(r.leader == r.header.member_id && r.raft_index > 0);
	bollard_result_free(&r);
	CHECK_RC(bollard_status(e->c, &a.req, req_done), 0);
	CHECK(run_until(e, &a.done, 5000));
	CHECK_RC(a.status, 0);
	CHECK(a.req.result.header.member_id != 0);
	bollard_result_free(&a.req.result);
}

static void t_errors(struct env *e)
{
	struct bollard_range_options o = {.revision = 1000000};
	struct bollard_result r = {.count = 7};
	struct bollard_client *dead;
	struct bollard_remote_options ro = {.dial_timeout_ms = 300};
	char ep[32];
	const char *eps[] = {ep};

	CHECK_RC(bollard_put_sync(e->c, "", 0, S("v"), NULL, &r), BOLLARD_EEMPTY_KEY);
	CHECK(r.count == 0); /* zeroed on error */
	CHECK(!strcmp(bollard_strerror(BOLLARD_EEMPTY_KEY), "etcdserver: key is not provided"));
	CHECK_RC(bollard_range_sync(e->c, S("k"), &o, NULL), BOLLARD_EFUTURE_REV);
	CHECK(!strcmp(bollard_strerror(BOLLARD_EFUTURE_REV),
	              "etcdserver: mvcc: required revision is a future revision"));
	CHECK_RC(bollard_lease_revoke_sync(e->c, 99999, NULL), BOLLARD_ELEASE_NOT_FOUND);
	CHECK(!strcmp(bollard_strerror(BOLLARD_ELEASE_NOT_FOUND),
	              "etcdserver: requested lease not found"));
	CHECK(!strcmp(bollard_strerror(-ENOTCONN), strerror(ENOTCONN)));
	CHECK(!strcmp(bollard_strerror(0), "success"));
	CHECK_RC(bollard_range(e->c, NULL, S("k"), NULL, NULL), -EINVAL);
	CHECK_RC(bollard_connect(&dead, NULL, NULL, 0, NULL), -EINVAL);
	CHECK_RC(bollard_open_embedded(&dead, &e->loop, NULL), -EINVAL);
	CHECK(dead == NULL);
	CHECK_RC(bollard_open_embedded(&dead, &e->loop,
	                               &(struct bollard_embedded_options){.data_dir = ""}), -EINVAL);

	/* nobody listening: -ENOTCONN after the dial timeout; no loop needed */
	snprintf(ep, sizeof(ep), "127.0.0.1:%d", free_port());
	CHECK_RC(bollard_connect(&dead, NULL, eps, 1, &ro), 0);
	CHECK_RC(bollard_put_sync(dead, S("k"), S("v"), NULL, NULL), -ENOTCONN);
	CHECK_RC(bollard_range(dead, &(struct bollard_req){0}, S("k"), NULL, req_done), -EINVAL);
	bollard_close(dead, NULL, NULL);
}

/* kill -9 and restart on the same data dir and port: the watch resumes
 * after its last delivered revision (no loss, no duplicate) and a blocking
 * put issued while the store is down succeeds once it is back. */
static void t_restart(struct env *e)
{
	struct recorder *r = calloc(1, sizeof(*r));
	struct bollard_watch_options o = {.prefix = true};
	char k[32];
	int64_t first = 0;

	r->w.data = r;
	CHECK_RC(bollard_watch_start(e->c, &r->w, S("rs/"), &o, rec_cb), 0);
	sleep_loop(e, 200); /* created */
	for (int i = 0; i < 5; i++) {
		snprintf(k, sizeof(k), "rs/%d", i);
		int64_t rev = put(e, k, "before");
		CHECK(rev > 0);
		if (!first)
			first = rev;
	}
	CHECK(rec_wait(e, r, 5));
	server_kill(e->srv, SIGKILL);
	sleep_loop(e, 300); /* the watch sees the stream die and starts reconnecting */
	CHECK_RC(server_start(e->srv), 0);
	/* blocks until the store answers (dial timeout 10 s) */
	for (int i = 5; i < 10; i++) {
		snprintf(k, sizeof(k), "rs/%d", i);
		CHECK(put(e, k, "after") > 0);
	}
	CHECK(rec_wait(e, r, 10));
	sleep_loop(e, 300);
	CHECK(r->n == 10);
	for (size_t i = 0; i < r->n; i++)
		CHECK(r->revs[i] == first + (int64_t)i); /* in order, none lost, none twice */
	CHECK(strstr(r->log[9], "rs/9=after"));
	CHECK_RC(bollard_watch_cancel(&r->w), 0);
	CHECK(run_until(e, &r->ended, 3000));
	free(r);
}

/* Blocking calls from several threads at once (while the loop thread
 * waits): every write lands once. */
struct writer {
	struct env *e;
	int id, failed;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	char k[32];

	for (int i = 0; i < 50; i++) {
		snprintf(k, sizeof(k), "thr/%d/%02d", w->id, i);
		if (bollard_put_sync(w->e->c, S(k), S("v"), NULL, NULL) != 0)
			w->failed++;
	}
	return NULL;
}

static void t_threads(struct env *e)
{
	pthread_t th[4];
	struct writer w[4];
	struct bollard_range_options o = {.prefix = true, .count_only = true};
	struct bollard_result r;

	for (int i = 0; i < 4; i++) {
		w[i] = (struct writer){e, i, 0};
		CHECK(pthread_create(&th[i], NULL, writer_main, &w[i]) == 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 4; i++)
		CHECK(w[i].failed == 0);
	CHECK_RC(bollard_range_sync(e->c, S("thr/"), &o, &r), 0);
	CHECK(r.count == 200);
	bollard_result_free(&r);
}

/* Embedded: close and open again on the same data dir; the data and the
 * revision history are there (a watch replays from an old revision); then
 * a client without a loop (blocking calls only) on it. */
static void t_reopen(struct env *e)
{
	struct recorder *r = calloc(1, sizeof(*r));
	struct bollard_watch_options o = {0};
	struct bollard_embedded_options eo = {.data_dir = e->data_dir, .log_level = "warn"};
	struct bollard_client *c2;
	struct bollard_result res;
	int64_t rev;

	r->w.data = r;
	CHECK((rev = put(e, "reopen/k", "before")) > 0);
	env_close(e);
	CHECK_RC(e->be->open(e), 0);
	CHECK_RC(bollard_range_sync(e->c, S("reopen/k"), NULL, &res), 0);
	CHECK(res.n_kvs == 1 && res.kvs[0].mod_revision == rev && res.header.revision >= rev);
	bollard_result_free(&res);
	o.start_revision = rev;
	CHECK_RC(bollard_watch_start(e->c, &r->w, S("reopen/k"), &o, rec_cb), 0);
	CHECK(rec_wait(e, r, 1));
	CHECK(!strncmp(r->log[0], "P reopen/k=before@", 18));
	CHECK_RC(bollard_watch_cancel(&r->w), 0);
	CHECK(run_until(e, &r->ended, 3000));
	free(r);
	/* the data dir is locked while open: a second store on it fails */
	CHECK(bollard_open_embedded(&c2, NULL, &eo) < 0 && c2 == NULL);
	env_close(e);
	CHECK_RC(bollard_open_embedded(&c2, NULL, &eo), 0);
	CHECK_RC(bollard_put_sync(c2, S("reopen/k"), S("loopless"), NULL, NULL), 0);
	CHECK_RC(bollard_range(c2, &(struct bollard_req){0}, S("k"), NULL, req_done), -EINVAL);
	bollard_close(c2, NULL, NULL);
	CHECK_RC(e->be->open(e), 0);
	CHECK_RC(bollard_range_sync(e->c, S("reopen/k"), NULL, &res), 0);
	CHECK(res.n_kvs == 1);
	CHECK_STR(res.kvs[0].value, res.kvs[0].value_len, "loopless");
	bollard_result_free(&res);
}

/* Embedded: a member of a two-member cluster whose peer never starts has
 * no leader, so requests cannot complete: blocking and asynchronous calls
 * fail with -ETIMEDOUT after request_timeout_ms, and the client still
 * closes cleanly while the node holds the abandoned requests. */
static void t_emb_timeout(struct env *e)
{
	char dir[400], cluster[200], client_url[64], peer[64];
	struct bollard_embedded_options o = {.data_dir = dir, .log_level = "error",
	                                      .initial_cluster = cluster,
	                                      .listen_peer_urls = peer,
	                                      .initial_advertise_peer_urls = peer,
	                                      .listen_client_urls = client_url,
	                                      .request_timeout_ms = 400};
	struct bollard_client *c;
	struct async_req a = {.req.data = &a};
	struct timespec t0, t1;
	bool done = false;
	double ms;

	snprintf(dir, sizeof(dir), "%s-timeout", e->data_dir);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", free_port());
	snprintf(client_url, sizeof(client_url), "http://127.0.0.1:%d", free_port());
	snprintf(cluster, sizeof(cluster), "t1=%s,t2=http://127.0.0.1:%d", peer, free_port());
	o.name = "t1";
	CHECK_RC(bollard_open_embedded(&c, &e->loop, &o), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_RC(bollard_put_sync(c, S("to/k"), S("v"), NULL, NULL), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	CHECK(ms >= 390 && ms < 5000);
	CHECK_RC(bollard_range_sync(c, S("to/k"), NULL, NULL), -ETIMEDOUT);
	CHECK_RC(bollard_put(c, &a.req, S("to/k"), S("v"), NULL, req_done), 0);
	CHECK(run_until(e, &a.done, 5000));
	CHECK_RC(a.status, -ETIMEDOUT);
	bollard_close(c, closed, &done);
	CHECK(run_until(e, &done, 10000));
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- runner ---- */

struct test {
	const char *name;
	void (*fn)(struct env *e);
	bool needs_process;
	const char *only; /* this back end only */
};

static const struct test tests[] = {
	{"range", t_range, false},
	{"put-delete-prev-kv", t_put_delete, false},
	{"txn-cas", t_txn, false},
	{"watch", t_watch, false},
	{"lease", t_lease, false},
	{"status", t_status, false},
	{"errors", t_errors, false},
	{"threads", t_threads, false},
	{"restart-resume", t_restart, true},
	{"embedded-reopen", t_reopen, false, "embedded"},
	{"embedded-timeout", t_emb_timeout, false, "embedded"},
};

static int wait_ready(struct env *e)
{
	/* A linearizable read answers once the member has a leader. */
	return bollard_range_sync(e->c, S("health"), NULL, NULL);
}

int main(int argc, char **argv)
{
	int passed = 0, failed = 0;
	struct server srv;

	if (argc < 2) {
		fprintf(stderr, "usage: %s <bollard-store>\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	for (size_t b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
		const struct backend *be = &backends[b];
		struct env e = {.be = be};
		int rc;

		memset(&srv, 0, sizeof(srv));
		srv.binary = argv[1];
		snprintf(srv.dir, sizeof(srv.dir), "%s/bollard-client-XXXXXX",
		         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(srv.dir)) {
			perror("mkdtemp");
			return 1;
		}
		snprintf(srv.data, sizeof(srv.data), "%s/data", srv.dir);
		snprintf(srv.log, sizeof(srv.log), "%s/server.log", srv.dir);
		snprintf(srv.client_url, sizeof(srv.client_url), "http://127.0.0.1:%d", free_port());
		snprintf(srv.peer_url, sizeof(srv.peer_url), "http://127.0.0.1:%d", free_port());
		snprintf(srv.endpoint, sizeof(srv.endpoint), "%.60s", srv.client_url + 7);
		uv_loop_init(&e.loop);
		e.data_dir = srv.data;
		if (be->has_process) {
			e.srv = &srv;
			if ((rc = server_start(&srv)) != 0) {
				fprintf(stderr, "cannot start %s: %s\n", srv.binary, strerror(-rc));
				return 1;
			}
		}
		if ((rc = be->open(&e)) != 0 || (rc = wait_ready(&e)) != 0) {
			fprintf(stderr, "%s: cannot open: %s\n", be->name, bollard_strerror(rc));
			server_kill(&srv, SIGKILL);
			return 1;
		}
		for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
			struct timespec t0, t1;
			if ((tests[i].needs_process && !be->has_process) ||
			    (tests[i].only && strcmp(tests[i].only, be->name) != 0))
				continue;
			n_checks_failed = 0;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			tests[i].fn(&e);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
			            (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
			if (n_checks_failed) {
				failed++;
				printf("FAIL %s/%s (%.0f ms): %s\n", be->name, tests[i].name, ms, fail_text);
			} else {
				passed++;
				printf("ok   %s/%s (%.0f ms)\n", be->name, tests[i].name, ms);
			}
			fflush(stdout);
		}
		if (e.c)
			env_close(&e);
		uv_run(&e.loop, UV_RUN_DEFAULT);
		if (uv_loop_close(&e.loop) != 0) {
			printf("FAIL %s: handles left on the loop\n", be->name);
			failed++;
		}
		server_kill(&srv, SIGTERM);
		if (failed == 0)
			nftw(srv.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		else
			printf("kept %s\n", srv.dir);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
