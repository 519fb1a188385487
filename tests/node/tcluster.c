/* tcluster.c - a 3-member cluster for the node tests (see tcluster.h). */
#include "tcluster.h"

#include "node/node_int.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

void tcluster_config(struct tcluster *c)
{
	signal(SIGPIPE, SIG_IGN); /* raft's writes to a member that closed first */
	memset(c, 0, sizeof(*c));
	for (int i = 0; i < TCLUSTER_N; i++) {
		struct tmember *m = &c->m[i];
		m->index = i;
		snprintf(m->name, sizeof(m->name), "m%d", i);
		snprintf(m->peer_url, sizeof(m->peer_url), "http://127.0.0.1:%d", th_free_port());
		snprintf(m->client_url, sizeof(m->client_url), "http://127.0.0.1:%d",
		         th_free_port());
		snprintf(c->initial_cluster + strlen(c->initial_cluster),
		         sizeof(c->initial_cluster) - strlen(c->initial_cluster), "%s%s=%s",
		         i ? "," : "", m->name, m->peer_url);
	}
	for (int i = 0; i < TCLUSTER_N; i++) {
		struct tmember *m = &c->m[i];
		char dir[300];
		snprintf(dir, sizeof(dir), "%s/%s", th_tmpdir(), m->name);
		REQUIRE(mkdir(dir, 0700) == 0);
		tnode_config(&m->t, dir);
		m->t.cfg.name = m->name;
		m->t.cfg.initial_cluster = c->initial_cluster;
		m->t.cfg.listen_peer_urls = m->peer_url;
		m->t.cfg.initial_advertise_peer_urls = m->peer_url;
		m->t.cfg.advertise_client_urls = m->client_url;
		m->t.cfg.heartbeat_ms = 100;
		m->t.cfg.election_ms = 1000;
	}
}

static void closed_cb(struct node *n)
{
	(void)n;
}

/* The sends cut_send did not make fail now (raft hears of a send's end
 * after the send returned, never inside it). */
struct tcut {
	struct raft_io_send *req;
	raft_io_send_cb cb;
	struct tcut *next;
};

static void cuts_fail(struct tmember *m)
{
	struct tcut *t = m->cuts;
	m->cuts = NULL;
	while (t != NULL) {
		struct tcut *next = t->next;
		t->cb(t->req, RAFT_NOCONNECTION);
		free(t);
		t = next;
	}
}

static void ctl_cb(uv_async_t *a)
{
	struct tmember *m = a->data;
	cuts_fail(m);
	if (m->on_ctl)
		m->on_ctl(m);
	if (atomic_load(&m->want_close)) {
		uv_close((uv_handle_t *)&m->ctl, NULL);
		node_close(m->t.node, closed_cb);
	}
}

static void *member_thread(void *arg)
{
	struct tmember *m = arg;
	uv_run(&m->t.loop, UV_RUN_DEFAULT);
	return NULL;
}

/* The cluster whose members' sends go through cut_send (one at a time:
 * each test runs in a process of its own). */
static struct tcluster *the_cluster;

static int cut_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *msg,
                    raft_io_send_cb cb)
{
	struct tcluster *c = the_cluster;
	struct tmember *from = NULL;
	for (int i = 0; i < TCLUSTER_N; i++)
		if (&c->m[i].t.node->io == io)
			from = &c->m[i];
	if (from == NULL)
		th_abort();
	/* closing: its ctl handle is going (sends go; the others are closing) */
	for (int j = 0; j < TCLUSTER_N && !atomic_load(&from->want_close); j++)
		if (c->m[j].t.node->raft_id == msg->server_id &&
		    (atomic_load(&c->cut[from->index][j]) ||
		     (c->lose && c->lose(from->index, j, msg)))) {
			struct tcut *t = malloc(sizeof(*t));
			REQUIRE(t != NULL);
			*t = (struct tcut){req, cb, from->cuts}; /* failed in reverse: no order */
			from->cuts = t;
			uv_async_send(&from->ctl);
			return 0;
		}
	return from->send(io, req, msg, cb);
}

void tcluster_cut(struct tcluster *c, int i, int j, bool cut)
{
	atomic_store(&c->cut[i][j], cut);
	atomic_store(&c->cut[j][i], cut);
}

void tcluster_isolate(struct tcluster *c, int i, bool cut)
{
	for (int j = 0; j < TCLUSTER_N; j++)
		if (j != i)
			tcluster_cut(c, i, j, cut);
}

int tcluster_start(struct tcluster *c)
{
	int l = -1;
	the_cluster = c;
	for (int i = 0; i < TCLUSTER_N; i++) {
		struct tmember *m = &c->m[i];
		tnode_create(&m->t);
		m->send = m->t.node->io.send;
		m->t.node->io.send = cut_send;
		if (c->on_create)
			c->on_create(m);
		REQUIRE(node_start(m->t.node) == 0);
		uv_async_init(&m->t.loop, &m->ctl, ctl_cb);
		m->ctl.data = m;
	}
	for (int i = 0; i < TCLUSTER_N; i++) {
		REQUIRE(pthread_create(&c->m[i].th, NULL, member_thread, &c->m[i]) == 0);
		c->m[i].running = true;
	}
	for (int k = 0; k < 300 && (l = tcluster_leader(c)) < 0; k++)
		usleep(100000);
	REQUIRE(l >= 0);
	return l;
}

struct status_call {
	struct node_req req;
	Etcdserverpb__StatusRequest msg;
	atomic_bool done;
	uint64_t leader, member;
};

static void status_cb(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct status_call *s = (struct status_call *)req;
	if (err == 0) {
		Etcdserverpb__StatusResponse *r = etcdserverpb__status_response__unpack(NULL, len, resp);
		if (r != NULL && r->header != NULL) {
			s->leader = r->leader;
			s->member = r->header->member_id;
		}
		etcdserverpb__status_response__free_unpacked(r, NULL);
	}
	free(resp);
	atomic_store(&s->done, true);
}

static bool status_done(void *arg)
{
	return atomic_load(&((struct status_call *)arg)->done);
}

int tcluster_leader(struct tcluster *c)
{
	uint64_t leader = 0;
	int l = -1;
	for (int i = 0; i < TCLUSTER_N; i++) {
		struct status_call s = {.req = {.op = NODE_STATUS, .cb = status_cb}};
		if (!c->m[i].running || atomic_load(&c->m[i].want_close))
			continue;
		etcdserverpb__status_request__init(&s.msg);
		s.req.msg = &s.msg.base;
		node_submit(c->m[i].t.node, &s.req);
		REQUIRE(th_wait_for(status_done, &s, 20000));
		if (s.leader == 0) /* knows none (cut off, or an election) */
			continue;
		if (leader != 0 && s.leader != leader)
			return -1; /* a stale leader, or one not yet heard of */
		leader = s.leader;
		if (s.leader == s.member)
			l = i;
	}
	return l;
}

void tcluster_ctl(struct tmember *m)
{
	uv_async_send(&m->ctl);
}

void tcluster_close(struct tcluster *c)
{
	for (int i = 0; i < TCLUSTER_N; i++) {
		atomic_store(&c->m[i].want_close, true);
		uv_async_send(&c->m[i].ctl);
	}
	for (int i = 0; i < TCLUSTER_N; i++)
		pthread_join(c->m[i].th, NULL);
	for (int i = 0; i < TCLUSTER_N; i++) {
		node_destroy(c->m[i].t.node);
		c->m[i].t.node = NULL;
		CHECK_INT(uv_loop_close(&c->m[i].t.loop), 0);
	}
}
