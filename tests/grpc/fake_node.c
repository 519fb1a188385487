/* fake_node.c - an in-memory stand-in for store/node (node.h) so the gRPC
 * server can be driven by real clients (etcdctl, python3-etcd3) without raft
 * or LMDB. Not a store: one flat sorted array, one revision counter, no MVCC
 * history. What it keeps faithful is the threading contract: node_submit
 * queues and answers on the loop thread, node_read_serializable answers on
 * the caller's thread before returning, node_read on either.
 *
 * Test hooks:
 *   Put of a key starting with "__hold__" is answered only 1 s later (a call
 *   waiting in the node while the server shuts down).
 *   $FAKE_SNAPSHOT_BYTES sets the size of the snapshot written (default
 *   1 MiB + 4 KiB, not a multiple of the 32 KiB chunk). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/errors.h"
#include "core/metrics.h"
#include "node/node.h"
#include "rpc.pb-c.h"

struct fkv {
	ProtobufCBinaryData key, value;
	int64_t create, mod, version;
};

struct node {
	uv_loop_t *loop;
	uv_async_t async;
	uv_timer_t hold_timer;
	pthread_mutex_t qmu; /* queue */
	struct node_req *head, *tail;
	struct node_req *held;
	int closing;
	pthread_mutex_t mu; /* store: loop thread and serializable readers */
	struct fkv *kvs;
	size_t n, cap;
	int64_t rev, compact_rev;
	int64_t max_request_bytes, max_txn_ops;
	const char *client_urls;
	void (*close_cb)(struct node *n);
	struct store_metrics metrics; /* the server layer records into it */
};

void node_config_init(struct node_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->name = "default";
	cfg->max_request_bytes = 1536 * 1024;
	cfg->max_txn_ops = 128;
	cfg->advertise_client_urls = "http://localhost:2379";
}

/* ------------------------------------------------------------ the store */

static int bcmp_(ProtobufCBinaryData a, ProtobufCBinaryData b)
{
	size_t m = a.len < b.len ? a.len : b.len;
	int c = m ? memcmp(a.data, b.data, m) : 0;
	if (c)
		return c;
	return a.len < b.len ? -1 : a.len > b.len;
}

static size_t lower_bound(struct node *n, ProtobufCBinaryData k)
{
	size_t lo = 0, hi = n->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (bcmp_(n->kvs[mid].key, k) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int in_range(ProtobufCBinaryData k, ProtobufCBinaryData key, ProtobufCBinaryData end)
{
	if (end.len == 0)
		return bcmp_(k, key) == 0;
	if (bcmp_(k, key) < 0)
		return 0;
	if (end.len == 1 && end.data[0] == 0)
		return 1;
	return bcmp_(k, end) < 0;
}

static ProtobufCBinaryData bdup(ProtobufCBinaryData b)
{
	ProtobufCBinaryData d = {b.len, malloc(b.len ? b.len : 1)};
	if (b.len)
		memcpy(d.data, b.data, b.len);
	return d;
}

static Mvccpb__KeyValue *kv_msg(const struct fkv *e, int keys_only)
{
	Mvccpb__KeyValue *m = malloc(sizeof(*m));
	mvccpb__key_value__init(m);
	m->key = e->key;
	if (!keys_only)
		m->value = e->value;
	m->create_revision = e->create;
	m->mod_revision = e->mod;
	m->version = e->version;
	return m;
}

static Etcdserverpb__ResponseHeader *hdr(struct node *n)
{
	Etcdserverpb__ResponseHeader *h = malloc(sizeof(*h));
	etcdserverpb__response_header__init(h);
	h->cluster_id = node_cluster_id(n);
	h->member_id = node_member_id(n);
	h->revision = n->rev;
	h->raft_term = 2;
	return h;
}

static Etcdserverpb__RangeResponse *do_range(struct node *n, const Etcdserverpb__RangeRequest *r)
{
	Etcdserverpb__RangeResponse *resp = malloc(sizeof(*resp));
	etcdserverpb__range_response__init(resp);
	resp->kvs = calloc(n->n + 1, sizeof(*resp->kvs));
	for (size_t i = lower_bound(n, r->key); i < n->n; i++) {
		if (!in_range(n->kvs[i].key, r->key, r->range_end))
			break;
		resp->count++;
		if (r->count_only || (r->limit && (int64_t)resp->n_kvs >= r->limit)) {
			if (!r->count_only)
				resp->more = 1;
			continue;
		}
		resp->kvs[resp->n_kvs++] = kv_msg(&n->kvs[i], r->keys_only);
	}
	resp->header = hdr(n);
	return resp;
}

static Etcdserverpb__PutResponse *do_put(struct node *n, const Etcdserverpb__PutRequest *r,
                                         int64_t rev)
{
	Etcdserverpb__PutResponse *resp = malloc(sizeof(*resp));
	size_t i = lower_bound(n, r->key);
	etcdserverpb__put_response__init(resp);
	if (i < n->n && bcmp_(n->kvs[i].key, r->key) == 0) {
		if (r->prev_kv)
			resp->prev_kv = kv_msg(&n->kvs[i], 0); /* borrowed value... */
		if (resp->prev_kv)
			resp->prev_kv->value = bdup(n->kvs[i].value), resp->prev_kv->key = bdup(r->key);
		free(n->kvs[i].value.data);
		n->kvs[i].value = bdup(r->value);
		n->kvs[i].mod = rev;
		n->kvs[i].version++;
	} else {
		if (n->n == n->cap) {
			n->cap = n->cap ? 2 * n->cap : 16;
			n->kvs = realloc(n->kvs, n->cap * sizeof(*n->kvs));
		}
		memmove(&n->kvs[i + 1], &n->kvs[i], (n->n - i) * sizeof(*n->kvs));
		n->kvs[i] = (struct fkv){bdup(r->key), bdup(r->value), rev, rev, 1};
		n->n++;
	}
	n->rev = rev;
	resp->header = hdr(n);
	return resp;
}

static Etcdserverpb__DeleteRangeResponse *do_delete(struct node *n,
                                                    const Etcdserverpb__DeleteRangeRequest *r,
                                                    int64_t rev)
{
	Etcdserverpb__DeleteRangeResponse *resp = malloc(sizeof(*resp));
	size_t i = lower_bound(n, r->key), j = i;
	etcdserverpb__delete_range_response__init(resp);
	resp->prev_kvs = calloc(n->n + 1, sizeof(*resp->prev_kvs));
	while (j < n->n && in_range(n->kvs[j].key, r->key, r->range_end)) {
		if (r->prev_kv) { /* hand the memory over */
			resp->prev_kvs[resp->n_prev_kvs++] = kv_msg(&n->kvs[j], 0);
		} else {
			free(n->kvs[j].key.data);
			free(n->kvs[j].value.data);
		}
		j++;
	}
	resp->deleted = (int64_t)(j - i);
	memmove(&n->kvs[i], &n->kvs[j], (n->n - j) * sizeof(*n->kvs));
	n->n -= j - i;
	if (resp->deleted)
		n->rev = rev;
	resp->header = hdr(n);
	return resp;
}

static int compare_ok(struct node *n, const Etcdserverpb__Compare *c)
{
	size_t i = lower_bound(n, c->key);
	const struct fkv *e = i < n->n && bcmp_(n->kvs[i].key, c->key) == 0 ? &n->kvs[i] : NULL;
	int64_t have = 0, want = 0;
	int cmp;

	switch (c->target) {
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE:
		if (!e)
			return 0;
		cmp = bcmp_(e->value, c->value);
		goto result;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
		have = e ? e->version : 0, want = c->version;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
		have = e ? e->create : 0, want = c->create_revision;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
		have = e ? e->mod : 0, want = c->mod_revision;
		break;
	default:
		return 0;
	}
	cmp = have < want ? -1 : have > want;
result:
	switch (c->result) {
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL: return cmp == 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER: return cmp > 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS: return cmp < 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL: return cmp != 0;
	default: return 0;
	}
}

static Etcdserverpb__TxnResponse *do_txn(struct node *n, const Etcdserverpb__TxnRequest *r)
{
	Etcdserverpb__TxnResponse *resp = malloc(sizeof(*resp));
	int64_t rev = n->rev + 1;
	size_t nops;
	Etcdserverpb__RequestOp **ops;

	etcdserverpb__txn_response__init(resp);
	resp->succeeded = 1;
	for (size_t i = 0; i < r->n_compare; i++)
		if (!compare_ok(n, r->compare[i]))
			resp->succeeded = 0;
	nops = resp->succeeded ? r->n_success : r->n_failure;
	ops = resp->succeeded ? r->success : r->failure;
	resp->responses = calloc(nops + 1, sizeof(*resp->responses));
	for (size_t i = 0; i < nops; i++) {
		Etcdserverpb__ResponseOp *o = malloc(sizeof(*o));
		etcdserverpb__response_op__init(o);
		switch (ops[i]->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			o->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
			o->response_range = do_range(n, ops[i]->request_range);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
			o->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
			o->response_put = do_put(n, ops[i]->request_put, rev);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
			o->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
			o->response_delete_range = do_delete(n, ops[i]->request_delete_range, rev);
			break;
		default:
			break;
		}
		resp->responses[resp->n_responses++] = o;
	}
	resp->header = hdr(n);
	return resp;
}

/* Pack and free what the do_* built: everything is one malloc per object,
 * values inside KeyValues are copies (put prev_kv, delete prev_kvs) or
 * borrowed from the store (range). */
static void free_kvs(Mvccpb__KeyValue **kvs, size_t n, int owned)
{
	for (size_t i = 0; i < n; i++) {
		if (owned) {
			free(kvs[i]->key.data);
			free(kvs[i]->value.data);
		}
		free(kvs[i]);
	}
	free(kvs);
}

static void free_resp(ProtobufCMessage *m)
{
	if (m->descriptor == &etcdserverpb__range_response__descriptor) {
		Etcdserverpb__RangeResponse *r = (void *)m;
		free_kvs(r->kvs, r->n_kvs, 0);
		free(r->header);
	} else if (m->descriptor == &etcdserverpb__put_response__descriptor) {
		Etcdserverpb__PutResponse *r = (void *)m;
		if (r->prev_kv) {
			free(r->prev_kv->key.data);
			free(r->prev_kv->value.data);
			free(r->prev_kv);
		}
		free(r->header);
	} else if (m->descriptor == &etcdserverpb__delete_range_response__descriptor) {
		Etcdserverpb__DeleteRangeResponse *r = (void *)m;
		free_kvs(r->prev_kvs, r->n_prev_kvs, 1);
		free(r->header);
	} else if (m->descriptor == &etcdserverpb__txn_response__descriptor) {
		Etcdserverpb__TxnResponse *r = (void *)m;
		for (size_t i = 0; i < r->n_responses; i++) {
			Etcdserverpb__ResponseOp *o = r->responses[i];
			if (o->response_case != ETCDSERVERPB__RESPONSE_OP__RESPONSE__NOT_SET)
				free_resp((ProtobufCMessage *)o->response_range);
			free(o);
		}
		free(r->responses);
		free(r->header);
	} else {
		return; /* stack-allocated simple responses */
	}
	free(m);
}

static void answer(struct node_req *req, ProtobufCMessage *m, int heap)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	protobuf_c_message_pack(m, buf);
	if (heap)
		free_resp(m);
	req->cb(req, 0, buf, len);
}

static void handle(struct node *n, struct node_req *req)
{
	Etcdserverpb__ResponseHeader h;

	pthread_mutex_lock(&n->mu);
	etcdserverpb__response_header__init(&h);
	h.cluster_id = node_cluster_id(n);
	h.member_id = node_member_id(n);
	h.revision = n->rev;
	h.raft_term = 2;
	switch (req->op) {
	case NODE_RANGE:
		answer(req, (ProtobufCMessage *)do_range(n, (const void *)req->msg), 1);
		break;
	case NODE_PUT:
		answer(req, (ProtobufCMessage *)do_put(n, (const void *)req->msg, n->rev + 1), 1);
		break;
	case NODE_DELETE_RANGE:
		answer(req, (ProtobufCMessage *)do_delete(n, (const void *)req->msg, n->rev + 1), 1);
		break;
	case NODE_TXN:
		answer(req, (ProtobufCMessage *)do_txn(n, (const void *)req->msg), 1);
		break;
	case NODE_COMPACT: {
		const Etcdserverpb__CompactionRequest *r = (const void *)req->msg;
		Etcdserverpb__CompactionResponse resp = ETCDSERVERPB__COMPACTION_RESPONSE__INIT;
		if (r->revision > n->rev) {
			pthread_mutex_unlock(&n->mu);
			req->cb(req, BOLLARD_EFUTURE_REV, NULL, 0);
			return;
		}
		if (r->revision <= n->compact_rev) {
			pthread_mutex_unlock(&n->mu);
			req->cb(req, BOLLARD_ECOMPACTED, NULL, 0);
			return;
		}
		n->compact_rev = r->revision;
		resp.header = &h;
		answer(req, &resp.base, 0);
		break;
	}
	case NODE_STATUS: {
		Etcdserverpb__StatusResponse resp = ETCDSERVERPB__STATUS_RESPONSE__INIT;
		resp.header = &h;
		resp.version = "3.4.23";
		resp.dbsize = 1 << 20;
		resp.dbsizeinuse = 1 << 19;
		resp.leader = node_member_id(n);
		resp.raftindex = resp.raftappliedindex = (uint64_t)n->rev + 3;
		resp.raftterm = 2;
		answer(req, &resp.base, 0);
		break;
	}
	case NODE_HASH: {
		Etcdserverpb__HashResponse resp = ETCDSERVERPB__HASH_RESPONSE__INIT;
		resp.header = &h;
		resp.hash = 0x12345678u ^ (uint32_t)n->rev;
		answer(req, &resp.base, 0);
		break;
	}
	case NODE_HASH_KV: {
		Etcdserverpb__HashKVResponse resp = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
		resp.header = &h;
		resp.hash = 0x9abcdef0u ^ (uint32_t)n->rev;
		resp.compact_revision = n->compact_rev;
		answer(req, &resp.base, 0);
		break;
	}
	case NODE_DEFRAGMENT: {
		Etcdserverpb__DefragmentResponse resp = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
		resp.header = &h;
		answer(req, &resp.base, 0);
		break;
	}
	case NODE_ALARM: {
		Etcdserverpb__AlarmResponse resp = ETCDSERVERPB__ALARM_RESPONSE__INIT;
		resp.header = &h;
		answer(req, &resp.base, 0);
		break;
	}
	case NODE_MEMBER_LIST: {
		Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
		Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT, *mp = &m;
		char *peer = "http://localhost:2380", *client = (char *)n->client_urls;
		m.id = node_member_id(n);
		m.name = "default";
		m.n_peerurls = 1;
		m.peerurls = &peer;
		m.n_clienturls = 1;
		m.clienturls = &client;
		resp.header = &h;
		resp.n_members = 1;
		resp.members = &mp;
		answer(req, &resp.base, 0);
		break;
	}
	case NODE_MOVE_LEADER:
		pthread_mutex_unlock(&n->mu);
		req->cb(req, BOLLARD_EBAD_LEADER_TRANSFEREE, NULL, 0);
		return;
	case NODE_AUTH: /* no auth store in the fake */
		pthread_mutex_unlock(&n->mu);
		req->cb(req, BOLLARD_EAUTH_NOT_ENABLED, NULL, 0);
		return;
	default:
		pthread_mutex_unlock(&n->mu);
		req->cb(req, BOLLARD_EINTERNAL, NULL, 0);
		return;
	}
	pthread_mutex_unlock(&n->mu);
}

/* ---------------------------------------------------------------- queue */

static int is_hold(const struct node_req *req)
{
	const Etcdserverpb__PutRequest *p = (const void *)req->msg;
	return req->op == NODE_PUT && p->key.len >= 8 && memcmp(p->key.data, "__hold__", 8) == 0;
}

static void on_hold_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	while (n->held) {
		struct node_req *r = n->held;
		n->held = r->next_;
		handle(n, r);
	}
}

static void on_async(uv_async_t *a)
{
	struct node *n = a->data;
	struct node_req *r;

	pthread_mutex_lock(&n->qmu);
	r = n->head;
	n->head = n->tail = NULL;
	pthread_mutex_unlock(&n->qmu);
	while (r) {
		struct node_req *next = r->next_;
		if (n->closing) {
			r->cb(r, BOLLARD_ESTOPPED, NULL, 0);
		} else if (is_hold(r)) {
			r->next_ = n->held;
			n->held = r;
			uv_timer_start(&n->hold_timer, on_hold_timer, 1000, 0);
		} else {
			handle(n, r);
		}
		r = next;
	}
}

int node_create(struct node **out, uv_loop_t *loop, const struct node_config *cfg, char *errbuf,
                size_t errlen)
{
	struct node *n = calloc(1, sizeof(*n));
	(void)errbuf;
	(void)errlen;
	n->loop = loop;
	n->max_request_bytes = cfg->max_request_bytes;
	n->max_txn_ops = cfg->max_txn_ops;
	n->client_urls = cfg->advertise_client_urls;
	n->rev = 1;
	store_metrics_init(&n->metrics);
	pthread_mutex_init(&n->qmu, NULL);
	pthread_mutex_init(&n->mu, NULL);
	uv_async_init(loop, &n->async, on_async);
	n->async.data = n;
	uv_timer_init(loop, &n->hold_timer);
	n->hold_timer.data = n;
	*out = n;
	return 0;
}

int node_start(struct node *n)
{
	(void)n;
	return 0;
}

bool node_submit_quiet(struct node *n, struct node_req *req)
{
	req->next_ = NULL;
	pthread_mutex_lock(&n->qmu);
	if (n->tail)
		n->tail->next_ = req;
	else
		n->head = req;
	n->tail = req;
	pthread_mutex_unlock(&n->qmu);
	return true;
}

void node_wake(struct node *n)
{
	uv_async_send(&n->async);
}

void node_submit(struct node *n, struct node_req *req)
{
	if (node_submit_quiet(n, req))
		node_wake(n);
}

void node_read_serializable(struct node *n, struct node_req *req)
{
	handle(n, req);
}

void node_read(struct node *n, struct node_req *req)
{
	if (((const Etcdserverpb__RangeRequest *)req->msg)->serializable)
		handle(n, req); /* as the read thread would: not the loop */
	else
		node_submit(n, req);
}

int node_snapshot_to_fd(struct node *n, int fd, uint64_t *size)
{
	const char *env = getenv("FAKE_SNAPSHOT_BYTES");
	uint64_t total = env ? strtoull(env, NULL, 10) : (1 << 20) + 4096;
	uint8_t buf[4096];
	uint64_t done = 0;
	(void)n;
	while (done < total) {
		size_t k = total - done < sizeof(buf) ? (size_t)(total - done) : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = (uint8_t)((done + i) * 2654435761u >> 13);
		if (write(fd, buf, k) != (ssize_t)k)
			return -errno;
		done += k;
	}
	*size = total;
	return 0;
}

int64_t node_max_request_bytes(const struct node *n)
{
	return n->max_request_bytes;
}

int64_t node_max_txn_ops(const struct node *n)
{
	return n->max_txn_ops;
}

uint64_t node_member_id(const struct node *n)
{
	(void)n;
	return 0x8e9e05c52164694dull;
}

uint64_t node_cluster_id(const struct node *n)
{
	(void)n;
	return 0xcdf818194e3a8c32ull;
}

static void on_closed(uv_handle_t *h)
{
	struct node *n = h->data;
	if (h == (uv_handle_t *)&n->async && n->close_cb)
		n->close_cb(n);
}

void node_close(struct node *n, void (*cb)(struct node *n))
{
	n->closing = 1;
	on_async(&n->async);
	while (n->held) {
		struct node_req *r = n->held;
		n->held = r->next_;
		r->cb(r, BOLLARD_ESTOPPED, NULL, 0);
	}
	n->close_cb = cb;
	uv_close((uv_handle_t *)&n->hold_timer, NULL);
	uv_close((uv_handle_t *)&n->async, on_closed);
}

void node_destroy(struct node *n)
{
	for (size_t i = 0; i < n->n; i++) {
		free(n->kvs[i].key.data);
		free(n->kvs[i].value.data);
	}
	free(n->kvs);
	pthread_mutex_destroy(&n->qmu);
	pthread_mutex_destroy(&n->mu);
	free(n);
}

/* Clusters: the fake is a single member and never forwards. */
void node_set_forwarder(struct node *n, const struct node_forwarder *ops)
{
	(void)n;
	(void)ops;
}

/* No peers: peer TLS is off. */
bool node_peer_tls(const struct node *n)
{
	(void)n;
	return false;
}

bool node_joining(const struct node *n)
{
	(void)n;
	return false;
}

void node_join_waits_cancel(struct node *n)
{
	(void)n;
}

void node_set_peer_grpc(struct node *n, node_peer_grpc_cb cb, void *data)
{
	(void)n;
	(void)cb;
	(void)data;
}

int node_peer_dial(struct node *n, const char *address, node_peer_dial_cb cb, void *data)
{
	(void)n;
	(void)address;
	(void)cb;
	(void)data;
	return -ECANCELED;
}

void node_forward_done(struct node *n, void *ctx, int err, uint8_t *resp, size_t len)
{
	(void)n;
	(void)ctx;
	(void)err;
	(void)len;
	free(resp);
}

struct store_metrics *node_metrics(struct node *n)
{
	return &n->metrics;
}

int node_metrics_render(struct node *n, struct metrics_buf *b)
{
	store_metrics_render(&n->metrics, b);
	return b->err ? -ENOMEM : 0;
}

bool node_healthy(struct node *n)
{
	return !n->closing;
}

bool node_leader_known(struct node *n)
{
	(void)n;
	return true; /* the fake is its own leader */
}

bool node_learner_known(struct node *n)
{
	(void)n;
	return false;
}

uint64_t node_clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Auth: the fake has no auth store; nobody is identified, all is allowed. */
int node_auth_resolve(struct node *n, const char *token, const char *cert_cn, char **user,
                      uint64_t *rev)
{
	(void)n;
	(void)token;
	(void)cert_cn;
	*user = NULL;
	*rev = 0;
	return 0;
}

int node_auth_check_admin(struct node *n, const char *user, uint64_t rev)
{
	(void)n;
	(void)user;
	(void)rev;
	return 0;
}
