/* ops.c - the public request calls: each builds its etcd request message,
 * names its method (path, response type, retry policy, decoder) and hands
 * it to bc_unary; and the decoders from etcd's responses into struct
 * bollard_result. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"
#include "node/node.h"

/* ---- decoders ---- */

static void copy_kvs(void **arena, struct bollard_result *r, Mvccpb__KeyValue **kvs, size_t n)
{
	r->n_kvs = n;
	if (n == 0)
		return;
	r->kvs = bc_arena_alloc(arena, n * sizeof(*r->kvs));
	for (size_t i = 0; i < n; i++)
		bc_copy_kv(arena, &r->kvs[i], kvs[i]);
}

static void dec_range(void **arena, const Etcdserverpb__RangeResponse *p, struct bollard_result *r)
{
	r->type = BOLLARD_OP_RANGE;
	bc_copy_header(&r->header, p->header);
	copy_kvs(arena, r, p->kvs, p->n_kvs);
	r->count = p->count;
	r->more = p->more;
}

static void dec_put(void **arena, const Etcdserverpb__PutResponse *p, struct bollard_result *r)
{
	r->type = BOLLARD_OP_PUT;
	bc_copy_header(&r->header, p->header);
	if (p->prev_kv)
		copy_kvs(arena, r, (Mvccpb__KeyValue **)&p->prev_kv, 1);
}

static void dec_delete(void **arena, const Etcdserverpb__DeleteRangeResponse *p,
                       struct bollard_result *r)
{
	r->type = BOLLARD_OP_DELETE;
	bc_copy_header(&r->header, p->header);
	copy_kvs(arena, r, p->prev_kvs, p->n_prev_kvs);
	r->count = p->deleted;
}

static int dec_txn_into(void **arena, const Etcdserverpb__TxnResponse *p, struct bollard_result *r)
{
	bc_copy_header(&r->header, p->header);
	r->succeeded = p->succeeded;
	r->n_responses = p->n_responses;
	if (p->n_responses)
		r->responses = bc_arena_alloc(arena, p->n_responses * sizeof(*r->responses));
	for (size_t i = 0; i < p->n_responses; i++) {
		const Etcdserverpb__ResponseOp *op = p->responses[i];
		struct bollard_result *s = &r->responses[i];
		switch (op->response_case) {
		case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
			dec_range(arena, op->response_range, s);
			break;
		case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
			dec_put(arena, op->response_put, s);
			break;
		case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
			dec_delete(arena, op->response_delete_range, s);
			break;
		default:
			return -EPROTO; /* nested txns are not offered */
		}
	}
	return 0;
}

#define DECODER(name, type, body)                                                               \
	static int name(const ProtobufCMessage *m, struct bollard_result *r)                       \
	{                                                                                          \
		const type *p = (const type *)m;                                                   \
		void **arena = &r->internal_;                                                      \
		(void)arena;                                                                       \
		body;                                                                              \
		return 0;                                                                          \
	}

DECODER(decode_range, Etcdserverpb__RangeResponse, dec_range(arena, p, r))
DECODER(decode_put, Etcdserverpb__PutResponse, dec_put(arena, p, r))
DECODER(decode_delete, Etcdserverpb__DeleteRangeResponse, dec_delete(arena, p, r))
DECODER(decode_grant, Etcdserverpb__LeaseGrantResponse, {
	bc_copy_header(&r->header, p->header);
	r->lease_id = p->id;
	r->lease_ttl = p->ttl;
})
DECODER(decode_revoke, Etcdserverpb__LeaseRevokeResponse, bc_copy_header(&r->header, p->header))
DECODER(decode_status, Etcdserverpb__StatusResponse, {
	bc_copy_header(&r->header, p->header);
	r->version = bc_arena_dup(arena, p->version ? p->version : "",
	                          p->version ? strlen(p->version) : 0);
	r->db_size = p->dbsize;
	r->leader = p->leader;
	r->raft_index = p->raftindex;
})

static int decode_txn(const ProtobufCMessage *m, struct bollard_result *r)
{
	return dec_txn_into(&r->internal_, (const Etcdserverpb__TxnResponse *)m, r);
}

int bc_method_decode(const struct bc_method *m, const ProtobufCMessage *pm,
                     struct bollard_result *res)
{
	int err;

	memset(res, 0, sizeof(*res));
	if (!pm)
		return -EPROTO;
	if ((err = m->decode(pm, res)) != 0)
		bollard_result_free(res);
	return err;
}

static const struct bc_method m_range = {"/etcdserverpb.KV/Range",
	&etcdserverpb__range_response__descriptor, true, decode_range, NODE_RANGE, false};
static const struct bc_method m_put = {"/etcdserverpb.KV/Put",
	&etcdserverpb__put_response__descriptor, false, decode_put, NODE_PUT, true};
static const struct bc_method m_delete = {"/etcdserverpb.KV/DeleteRange",
	&etcdserverpb__delete_range_response__descriptor, false, decode_delete, NODE_DELETE_RANGE, true};
static const struct bc_method m_txn = {"/etcdserverpb.KV/Txn",
	&etcdserverpb__txn_response__descriptor, false, decode_txn, NODE_TXN, true};
static const struct bc_method m_grant = {"/etcdserverpb.Lease/LeaseGrant",
	&etcdserverpb__lease_grant_response__descriptor, true, decode_grant, NODE_LEASE_GRANT, true};
static const struct bc_method m_revoke = {"/etcdserverpb.Lease/LeaseRevoke",
	&etcdserverpb__lease_revoke_response__descriptor, true, decode_revoke, NODE_LEASE_REVOKE, true};
static const struct bc_method m_status = {"/etcdserverpb.Maintenance/Status",
	&etcdserverpb__status_response__descriptor, true, decode_status, NODE_STATUS, false};

/* ---- encoders (into stack messages; buffers only for prefix ends) ---- */

static int bin(ProtobufCBinaryData *b, const void *p, size_t len)
{
	b->data = (uint8_t *)p;
	b->len = p ? len : 0;
	return 0;
}

static void enc_range(Etcdserverpb__RangeRequest *q, const void *key, size_t key_len,
                      const struct bollard_range_options *o, void *endbuf)
{
	static const struct bollard_range_options none;

	if (!o)
		o = &none;
	bin(&q->key, key, key_len);
	bc_range_end(key, key_len, o->prefix, o->range_end, o->range_end_len, endbuf,
	             &q->range_end);
	q->limit = o->limit;
	q->revision = o->revision;
	q->serializable = o->serializable;
	q->keys_only = o->keys_only;
	q->count_only = o->count_only;
}

static void enc_put(Etcdserverpb__PutRequest *q, const void *key, size_t key_len,
                    const void *value, size_t value_len, const struct bollard_put_options *o)
{
	bin(&q->key, key, key_len);
	bin(&q->value, value, value_len);
	if (o) {
		q->prev_kv = o->prev_kv;
		q->lease = o->lease;
		q->ignore_value = o->ignore_value;
		q->ignore_lease = o->ignore_lease;
	}
}

static void enc_delete(Etcdserverpb__DeleteRangeRequest *q, const void *key, size_t key_len,
                       const struct bollard_delete_options *o, void *endbuf)
{
	bin(&q->key, key, key_len);
	if (o) {
		bc_range_end(key, key_len, o->prefix, o->range_end, o->range_end_len, endbuf,
		             &q->range_end);
		q->prev_kv = o->prev_kv;
	}
}

/* Each call below is built once and run either way: req != NULL starts it
 * on the loop, req == NULL blocks (filling out). */
#define RUN(method, msg)                                                                        \
	(c->emb ? bc_emb_unary(c, &(method), &(msg).base, req, cb, out)                            \
	        : bc_unary(c, &(method), grpc_wire_pack(&(msg).base), req, cb, out))

static int do_range(struct bollard_client *c, struct bollard_req *req, bollard_req_cb cb,
                    struct bollard_result *out, const void *key, size_t key_len,
                    const struct bollard_range_options *opts)
{
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	char *end;
	int rc;

	if (!c || (key_len && !key))
		return -EINVAL;
	if (!(end = malloc(key_len + 1)))
		return -ENOMEM;
	enc_range(&q, key, key_len, opts, end);
	rc = RUN(m_range, q);
	free(end);
	return rc;
}

static int do_put(struct bollard_client *c, struct bollard_req *req, bollard_req_cb cb,
                  struct bollard_result *out, const void *key, size_t key_len, const void *value,
                  size_t value_len, const struct bollard_put_options *opts)
{
	Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;

	if (!c || (key_len && !key) || (value_len && !value))
		return -EINVAL;
	enc_put(&q, key, key_len, value, value_len, opts);
	return RUN(m_put, q);
}

static int do_delete(struct bollard_client *c, struct bollard_req *req, bollard_req_cb cb,
                     struct bollard_result *out, const void *key, size_t key_len,
                     const struct bollard_delete_options *opts)
{
	Etcdserverpb__DeleteRangeRequest q = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	char *end;
	int rc;

	if (!c || (key_len && !key))
		return -EINVAL;
	if (!(end = malloc(key_len + 1)))
		return -ENOMEM;
	enc_delete(&q, key, key_len, opts, end);
	rc = RUN(m_delete, q);
	free(end);
	return rc;
}

/* Txn: every sub-message lives in one calloc'd block freed after packing. */
struct txn_buf {
	Etcdserverpb__Compare *cmp;
	Etcdserverpb__Compare **cmpp;
	Etcdserverpb__RequestOp *ops;
	Etcdserverpb__RequestOp **opsp;
	Etcdserverpb__RangeRequest *rr;
	Etcdserverpb__PutRequest *pr;
	Etcdserverpb__DeleteRangeRequest *dr;
	char **ends;
	size_t n_ops;
};

static void txn_buf_free(struct txn_buf *b)
{
	for (size_t i = 0; b->ends && i < b->n_ops; i++)
		free(b->ends[i]);
	free(b->cmp);
	free(b->cmpp);
	free(b->ops);
	free(b->opsp);
	free(b->rr);
	free(b->pr);
	free(b->dr);
	free(b->ends);
}

static int enc_op(struct txn_buf *b, size_t i, const struct bollard_op *op)
{
	Etcdserverpb__RequestOp *q = &b->ops[i];

	etcdserverpb__request_op__init(q);
	b->opsp[i] = q;
	if (op->key_len && !op->key)
		return -EINVAL;
	if (!(b->ends[i] = malloc(op->key_len + 1)))
		return -ENOMEM;
	switch (op->type) {
	case BOLLARD_OP_RANGE:
		etcdserverpb__range_request__init(&b->rr[i]);
		enc_range(&b->rr[i], op->key, op->key_len, &op->range, b->ends[i]);
		q->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
		q->request_range = &b->rr[i];
		return 0;
	case BOLLARD_OP_PUT:
		etcdserverpb__put_request__init(&b->pr[i]);
		enc_put(&b->pr[i], op->key, op->key_len, op->value, op->value_len, &op->put);
		q->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
		q->request_put = &b->pr[i];
		return 0;
	case BOLLARD_OP_DELETE:
		etcdserverpb__delete_range_request__init(&b->dr[i]);
		enc_delete(&b->dr[i], op->key, op->key_len, &op->del, b->ends[i]);
		q->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
		q->request_delete_range = &b->dr[i];
		return 0;
	}
	return -EINVAL;
}

static int enc_compare(Etcdserverpb__Compare *q, const struct bollard_compare *k)
{
	etcdserverpb__compare__init(q);
	if ((k->key_len && !k->key) || (unsigned)k->op > BOLLARD_CMP_NOT_EQUAL)
		return -EINVAL;
	bin(&q->key, k->key, k->key_len);
	bin(&q->range_end, k->range_end, k->range_end_len);
	q->result = (Etcdserverpb__Compare__CompareResult)k->op;
	q->target = (Etcdserverpb__Compare__CompareTarget)k->target;
	switch (k->target) {
	case BOLLARD_CMP_VERSION:
		q->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
		q->version = k->number;
		return 0;
	case BOLLARD_CMP_CREATE:
		q->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
		q->create_revision = k->number;
		return 0;
	case BOLLARD_CMP_MOD:
		q->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
		q->mod_revision = k->number;
		return 0;
	case BOLLARD_CMP_VALUE:
		q->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
		bin(&q->value, k->value, k->value_len);
		return 0;
	case BOLLARD_CMP_LEASE:
		q->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
		q->lease = k->number;
		return 0;
	}
	return -EINVAL;
}

static int do_txn(struct bollard_client *c, struct bollard_req *req, bollard_req_cb cb,
                  struct bollard_result *out, const struct bollard_txn *t)
{
	Etcdserverpb__TxnRequest q = ETCDSERVERPB__TXN_REQUEST__INIT;
	struct txn_buf b;
	size_t n;
	int rc = 0;

	if (!c || !t || (t->n_compares && !t->compares) || (t->n_success && !t->success) ||
	    (t->n_failure && !t->failure))
		return -EINVAL;
	memset(&b, 0, sizeof(b));
	n = b.n_ops = t->n_success + t->n_failure;
	b.cmp = calloc(t->n_compares + 1, sizeof(*b.cmp));
	b.cmpp = calloc(t->n_compares + 1, sizeof(*b.cmpp));
	b.ops = calloc(n + 1, sizeof(*b.ops));
	b.opsp = calloc(n + 1, sizeof(*b.opsp));
	b.rr = calloc(n + 1, sizeof(*b.rr));
	b.pr = calloc(n + 1, sizeof(*b.pr));
	b.dr = calloc(n + 1, sizeof(*b.dr));
	b.ends = calloc(n + 1, sizeof(*b.ends));
	if (!b.cmp || !b.cmpp || !b.ops || !b.opsp || !b.rr || !b.pr || !b.dr || !b.ends) {
		txn_buf_free(&b);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->n_compares && rc == 0; i++) {
		b.cmpp[i] = &b.cmp[i];
		rc = enc_compare(&b.cmp[i], &t->compares[i]);
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = enc_op(&b, i, i < t->n_success ? &t->success[i] : &t->failure[i - t->n_success]);
	if (rc == 0) {
		q.n_compare = t->n_compares;
		q.compare = b.cmpp;
		q.n_success = t->n_success;
		q.success = b.opsp;
		q.n_failure = t->n_failure;
		q.failure = b.opsp + t->n_success;
		rc = RUN(m_txn, q);
	}
	txn_buf_free(&b);
	return rc;
}

static int do_grant(struct bollard_client *c, struct bollard_req *req, bollard_req_cb cb,
                    struct bollard_result *out, int64_t ttl, int64_t id)
{
	Etcdserverpb__LeaseGrantRequest q = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;

	if (!c)
		return -EINVAL;
	q.ttl = ttl;
	q.id = id;
	return RUN(m_grant, q);
}

static int do_revoke(struct bollard_client *c, struct bollard_req *req, bollard_req_cb cb,
                     struct bollard_result *out, int64_t id)
{
	Etcdserverpb__LeaseRevokeRequest q = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;

	if (!c)
		return -EINVAL;
	q.id = id;
	return RUN(m_revoke, q);
}

static int do_status(struct bollard_client *c, struct bollard_req *req, bollard_req_cb cb,
                     struct bollard_result *out)
{
	Etcdserverpb__StatusRequest q = ETCDSERVERPB__STATUS_REQUEST__INIT;

	if (!c)
		return -EINVAL;
	return RUN(m_status, q);
}

/* ---- the public calls ---- */

#define ASYNC_CHECK()                                                                           	do {                                                                                       		if (!req || !cb)                                                                   			return -EINVAL;                                                            	} while (0)

int bollard_range(struct bollard_client *c, struct bollard_req *req, const void *key,
                  size_t key_len, const struct bollard_range_options *opts, bollard_req_cb cb)
{
	ASYNC_CHECK();
	return do_range(c, req, cb, NULL, key, key_len, opts);
}

int bollard_put(struct bollard_client *c, struct bollard_req *req, const void *key,
                size_t key_len, const void *value, size_t value_len,
                const struct bollard_put_options *opts, bollard_req_cb cb)
{
	ASYNC_CHECK();
	return do_put(c, req, cb, NULL, key, key_len, value, value_len, opts);
}

int bollard_delete(struct bollard_client *c, struct bollard_req *req, const void *key,
                   size_t key_len, const struct bollard_delete_options *opts, bollard_req_cb cb)
{
	ASYNC_CHECK();
	return do_delete(c, req, cb, NULL, key, key_len, opts);
}

int bollard_txn(struct bollard_client *c, struct bollard_req *req, const struct bollard_txn *txn,
                bollard_req_cb cb)
{
	ASYNC_CHECK();
	return do_txn(c, req, cb, NULL, txn);
}

int bollard_lease_grant(struct bollard_client *c, struct bollard_req *req, int64_t ttl, int64_t id,
                        bollard_req_cb cb)
{
	ASYNC_CHECK();
	return do_grant(c, req, cb, NULL, ttl, id);
}

int bollard_lease_revoke(struct bollard_client *c, struct bollard_req *req, int64_t id,
                         bollard_req_cb cb)
{
	ASYNC_CHECK();
	return do_revoke(c, req, cb, NULL, id);
}

int bollard_status(struct bollard_client *c, struct bollard_req *req, bollard_req_cb cb)
{
	ASYNC_CHECK();
	return do_status(c, req, cb, NULL);
}

int bollard_range_sync(struct bollard_client *c, const void *key, size_t key_len,
                       const struct bollard_range_options *opts, struct bollard_result *out)
{
	return do_range(c, NULL, NULL, out, key, key_len, opts);
}

int bollard_put_sync(struct bollard_client *c, const void *key, size_t key_len, const void *value,
                     size_t value_len, const struct bollard_put_options *opts,
                     struct bollard_result *out)
{
	return do_put(c, NULL, NULL, out, key, key_len, value, value_len, opts);
}

int bollard_delete_sync(struct bollard_client *c, const void *key, size_t key_len,
                        const struct bollard_delete_options *opts, struct bollard_result *out)
{
	return do_delete(c, NULL, NULL, out, key, key_len, opts);
}

int bollard_txn_sync(struct bollard_client *c, const struct bollard_txn *txn,
                     struct bollard_result *out)
{
	return do_txn(c, NULL, NULL, out, txn);
}

int bollard_lease_grant_sync(struct bollard_client *c, int64_t ttl, int64_t id,
                             struct bollard_result *out)
{
	return do_grant(c, NULL, NULL, out, ttl, id);
}

int bollard_lease_revoke_sync(struct bollard_client *c, int64_t id, struct bollard_result *out)
{
	return do_revoke(c, NULL, NULL, out, id);
}

int bollard_status_sync(struct bollard_client *c, struct bollard_result *out)
{
	return do_status(c, NULL, NULL, out);
}
