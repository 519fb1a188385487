/* apply.c - the raft state machine's pure half (see apply.h): the requests
 * of a committed batch apply one after the other in the caller's LMDB write
 * transaction. A request that fails with an etcd error leaves nothing behind
 * while the others of the batch still apply, without a nested transaction
 * (LMDB has none with MDB_WRITEMAP; bbolt, under etcd, has none either):
 * as etcd's applier, every request checks everything that can refuse it
 * before its first write (mvcc's put_check/txn_check, leasedb, alarm, auth
 * and compaction do), so an etcd error always comes before any write, and
 * any other error (LMDB, memory, a refusal after a write: BOLLARD_EINTERNAL)
 * stops the apply loop. Also home of the apply-time policies etcd keeps
 * beside MVCC: the NOSPACE alarm (applierV3Capped) and the lease check of
 * puts. */
#include "core/apply.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/alarm.h"
#include "core/auth.h"
#include "core/errors.h"
#include "core/leasedb.h"
#include "core/pbwire.h"

/* The transaction a lease check reads from. */
struct lease_check_ctx {
	const struct mvcc *m;
	MDB_txn *txn;
};

/* The lease a put attaches must exist (in this transaction: a lease
 * granted earlier in the same batch counts). */
static int apply_lease_check(void *ud, int64_t lease)
{
	const struct lease_check_ctx *c = ud;
	return leasedb_get(c->m, c->txn, lease, NULL);
}

/* Does the txn put anything, in any branch or nested txn? (etcd's quota
 * counts top-level puts only; nested ones would slip past the cap.) */
static bool txn_has_put(const Etcdserverpb__TxnRequest *t)
{
	for (int b = 0; b < 2; b++) {
		size_t n = b ? t->n_failure : t->n_success;
		Etcdserverpb__RequestOp **ops = b ? t->failure : t->success;
		for (size_t i = 0; i < n; i++) {
			if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
				return true;
			if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
			    ops[i]->request_txn != NULL && txn_has_put(ops[i]->request_txn))
				return true;
		}
	}
	return false;
}

static void fill_header(Etcdserverpb__ResponseHeader *h, const struct apply_header *hdr)
{
	h->cluster_id = hdr->cluster_id;
	h->member_id = hdr->member_id;
	h->raft_term = hdr->raft_term;
}

static int pack_msg(const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *p = malloc(n ? n : 1);
	if (p == NULL)
		return -ENOMEM;
	protobuf_c_message_pack(msg, p);
	*out = p;
	*len = n;
	return 0;
}

/* A PutResponse without prev_kv, the answer to nearly every put, packed by
 * hand: the bytes protobuf-c's generic packer gives (which walks the
 * descriptors for the size, then again to pack), in a quarter of its
 * instructions. */
static int pack_put_plain(const Etcdserverpb__PutResponse *r, uint8_t **out, size_t *len)
{
	const Etcdserverpb__ResponseHeader *h = r->header;
	uint8_t hb[4 * 11], *p;
	uint8_t *he = pbwire_put_varint_field(hb, 1, h->cluster_id);
	he = pbwire_put_varint_field(he, 2, h->member_id);
	he = pbwire_put_varint_field(he, 3, (uint64_t)h->revision);
	he = pbwire_put_varint_field(he, 4, h->raft_term);
	size_t hn = (size_t)(he - hb);
	*len = 1 + pbwire_varint_size(hn) + hn;
	if ((p = malloc(*len)) == NULL)
		return -ENOMEM;
	memcpy(pbwire_put_len_head(p, 1, hn), hb, hn);
	*out = p;
	return 0;
}

static int pack_resp(const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
	if (msg->descriptor == &etcdserverpb__put_response__descriptor) {
		const Etcdserverpb__PutResponse *r = (const Etcdserverpb__PutResponse *)msg;
		if (r->prev_kv == NULL && r->header != NULL && r->base.n_unknown_fields == 0)
			return pack_put_plain(r, out, len);
	}
	return pack_msg(msg, out, len);
}

static int apply_alarm(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                       const Etcdserverpb__AlarmRequest *req, Etcdserverpb__AlarmResponse *resp)
{
	int rc = 0;
	bool changed;
	switch (req->action) {
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET:
		rc = alarm_list(m, txn, req->alarm, a, &resp->alarms, &resp->n_alarms);
		break;
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE:
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE: {
		bool on = req->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
		rc = on ? alarm_activate(m, txn, req->memberid, req->alarm, &changed)
		        : alarm_deactivate(m, txn, req->memberid, req->alarm, &changed);
		/* etcd answers an activation with the alarm, new or not, and a
		 * deactivation with the alarm only if it was raised. */
		if (rc != 0 || (!on && !changed))
			break;
		Etcdserverpb__AlarmMember *am = arena_alloc(a, sizeof(*am));
		resp->alarms = arena_alloc(a, sizeof(*resp->alarms));
		if (am == NULL || resp->alarms == NULL)
			return -ENOMEM;
		*am = (Etcdserverpb__AlarmMember)ETCDSERVERPB__ALARM_MEMBER__INIT;
		am->memberid = req->memberid;
		am->alarm = req->alarm;
		resp->alarms[0] = am;
		resp->n_alarms = 1;
		break;
	}
	default:
		break;
	}
	return rc;
}

static Etcdserverpb__ResponseHeader *header_new(struct arena *a, int64_t rev)
{
	Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof(*h));
	if (h != NULL) {
		*h = (Etcdserverpb__ResponseHeader)ETCDSERVERPB__RESPONSE_HEADER__INIT;
		h->revision = rev;
	}
	return h;
}

/* The response messages one request may produce. */
union any_resp {
	Etcdserverpb__PutResponse put;
	Etcdserverpb__DeleteRangeResponse del;
	Etcdserverpb__TxnResponse txn;
	Etcdserverpb__CompactionResponse compaction;
	Etcdserverpb__AlarmResponse alarm;
	Etcdserverpb__LeaseGrantResponse grant;
	Etcdserverpb__LeaseRevokeResponse revoke;
	Etcdserverpb__LeaseCheckpointResponse checkpoint;
};

/* What a lease request changed, for the hooks once it is committed. */
struct lease_event {
	int64_t id, ttl;
};

static int apply_lease(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                       const struct apply_opts *o, const Bollard__Request *req, union any_resp *r,
                       ProtobufCMessage **msg, Etcdserverpb__ResponseHeader **h,
                       struct lease_event *ev)
{
	int64_t rev = 0;
	int rc = 0;
	switch (req->op_case) {
	case BOLLARD__REQUEST__OP_LEASE_GRANT: {
		struct lease_rec rec;
		if (alarm_active(m, txn, ETCDSERVERPB__ALARM_TYPE__NOSPACE))
			return BOLLARD_ENO_SPACE; /* etcd's applierV3Capped */
		if ((rc = leasedb_grant(m, txn, req->lease_grant, o->min_lease_ttl, &rec)) != 0)
			return rc;
		r->grant = (Etcdserverpb__LeaseGrantResponse)ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;
		r->grant.id = ev->id = rec.id;
		r->grant.ttl = ev->ttl = rec.ttl;
		*msg = &r->grant.base;
		*h = r->grant.header = header_new(a, mvcc_current_rev(m, txn));
		break;
	}
	case BOLLARD__REQUEST__OP_LEASE_REVOKE:
		if ((rc = leasedb_revoke(m, txn, a, req->lease_revoke->id, &rev)) != 0)
			return rc;
		ev->id = req->lease_revoke->id;
		r->revoke = (Etcdserverpb__LeaseRevokeResponse)ETCDSERVERPB__LEASE_REVOKE_RESPONSE__INIT;
		*msg = &r->revoke.base;
		*h = r->revoke.header = header_new(a, rev);
		break;
	default: {
		const Etcdserverpb__LeaseCheckpointRequest *cp = req->lease_checkpoint;
		for (size_t i = 0; i < cp->n_checkpoints && rc == 0; i++)
			if (cp->checkpoints[i] != NULL)
				rc = leasedb_checkpoint(m, txn, cp->checkpoints[i]->id,
				                        cp->checkpoints[i]->remaining_ttl);
		if (rc != 0)
			return rc;
		r->checkpoint =
			(Etcdserverpb__LeaseCheckpointResponse)ETCDSERVERPB__LEASE_CHECKPOINT_RESPONSE__INIT;
		*msg = &r->checkpoint.base;
		*h = r->checkpoint.header = header_new(a, mvcc_current_rev(m, txn));
		break;
	}
	}
	return *h ? 0 : -ENOMEM;
}

/* Fire the hook of a committed lease request. */
static void lease_notify(const struct apply_opts *o, const Bollard__Request *req,
                         const struct lease_event *ev)
{
	switch (req->op_case) {
	case BOLLARD__REQUEST__OP_LEASE_GRANT:
		if (o->lease_granted)
			o->lease_granted(o->ud, ev->id, ev->ttl);
		break;
	case BOLLARD__REQUEST__OP_LEASE_REVOKE:
		if (o->lease_revoked)
			o->lease_revoked(o->ud, ev->id);
		break;
	case BOLLARD__REQUEST__OP_LEASE_CHECKPOINT:
		for (size_t i = 0; o->lease_checkpointed && i < req->lease_checkpoint->n_checkpoints; i++)
			if (req->lease_checkpoint->checkpoints[i] != NULL)
				o->lease_checkpointed(o->ud, req->lease_checkpoint->checkpoints[i]->id,
				                      req->lease_checkpoint->checkpoints[i]->remaining_ttl);
		break;
	default:
		break;
	}
}

/* Whether the NOSPACE alarm is raised and auth is on, read once for a run
 * of key-value writes of a batch instead of once per request: those never
 * change either. Every other request forgets them (apply_batch_ex). */
struct apply_cache {
	signed char nospace; /* -1: not read yet */
	signed char auth_on;
	/* The current revision across a run of puts and txns, stored once at
	 * its end (mvcc_rev_cache_flush before any other request). */
	struct mvcc_rev_cache revs;
};

static bool uses_rev_cache(const Bollard__Request *req)
{
	return req->op_case == BOLLARD__REQUEST__OP_PUT || req->op_case == BOLLARD__REQUEST__OP_TXN;
}

static void cache_forget(struct apply_cache *c)
{
	c->nospace = c->auth_on = -1;
}

static bool cache_nospace(struct apply_cache *c, const struct mvcc *m, MDB_txn *txn)
{
	if (c->nospace < 0)
		c->nospace = alarm_active(m, txn, ETCDSERVERPB__ALARM_TYPE__NOSPACE);
	return c->nospace;
}

/* Does the request need auth's check? Not when auth is off (as
 * auth_check_request itself finds, reading the flag every time). */
static bool cache_auth(struct apply_cache *c, const struct mvcc *m, MDB_txn *txn)
{
	if (c->auth_on < 0)
		c->auth_on = auth_enabled(m, txn);
	return c->auth_on;
}

static bool is_kv_write(const Bollard__Request *req)
{
	return req->op_case == BOLLARD__REQUEST__OP_PUT ||
	       req->op_case == BOLLARD__REQUEST__OP_DELETE_RANGE ||
	       req->op_case == BOLLARD__REQUEST__OP_TXN;
}

/* Apply one request in txn; *msg and *h get its response and its header. */
static int apply_one(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                     const struct apply_opts *o, struct apply_cache *c,
                     const Bollard__Request *req, union any_resp *r,
                     ProtobufCMessage **msg, Etcdserverpb__ResponseHeader **h,
                     struct lease_event *ev, struct auth_event *aev)
{
	struct lease_check_ctx lc = {m, txn};
	const struct mvcc_write_opts write_opts = {
		.lease_check = apply_lease_check, .ud = &lc, .rev_cache = &c->revs};
	const struct auth_info ai = {req->auth_user, req->auth_revision};
	int rc;
	if (req->op_case != BOLLARD__REQUEST__OP__NOT_SET && req->put == NULL)
		return BOLLARD_EBAD_REQUEST; /* every op is a message pointer */
	if (!is_kv_write(req))
		cache_forget(c);
	if (cache_auth(c, m, txn) && (rc = auth_check_request(m, txn, a, &ai, req)) != 0)
		return rc;
	switch (req->op_case) {
	case BOLLARD__REQUEST__OP_PUT:
		if (cache_nospace(c, m, txn))
			return BOLLARD_ENO_SPACE;
		rc = mvcc_put_ex(m, txn, a, req->put, &r->put, &write_opts);
		*msg = &r->put.base;
		*h = r->put.header;
		return rc;
	case BOLLARD__REQUEST__OP_DELETE_RANGE:
		rc = mvcc_delete_range(m, txn, a, req->delete_range, &r->del);
		*msg = &r->del.base;
		*h = r->del.header;
		return rc;
	case BOLLARD__REQUEST__OP_TXN:
		if (txn_has_put(req->txn) && cache_nospace(c, m, txn))
			return BOLLARD_ENO_SPACE;
		rc = mvcc_txn_ex(m, txn, a, req->txn, &r->txn, &write_opts);
		*msg = &r->txn.base;
		*h = r->txn.header;
		return rc;
	case BOLLARD__REQUEST__OP_COMPACTION:
		rc = mvcc_compact(m, txn, req->compaction->revision);
		if (rc != 0)
			return rc;
		r->compaction = (Etcdserverpb__CompactionResponse)ETCDSERVERPB__COMPACTION_RESPONSE__INIT;
		r->compaction.header = header_new(a, mvcc_current_rev(m, txn));
		*msg = &r->compaction.base;
		*h = r->compaction.header;
		return *h ? 0 : -ENOMEM;
	case BOLLARD__REQUEST__OP_ALARM:
		r->alarm = (Etcdserverpb__AlarmResponse)ETCDSERVERPB__ALARM_RESPONSE__INIT;
		rc = apply_alarm(m, txn, a, req->alarm, &r->alarm);
		if (rc != 0)
			return rc;
		r->alarm.header = header_new(a, mvcc_current_rev(m, txn));
		*msg = &r->alarm.base;
		*h = r->alarm.header;
		return *h ? 0 : -ENOMEM;
	case BOLLARD__REQUEST__OP_LEASE_GRANT:
	case BOLLARD__REQUEST__OP_LEASE_REVOKE:
	case BOLLARD__REQUEST__OP_LEASE_CHECKPOINT:
		return apply_lease(m, txn, a, o, req, r, msg, h, ev);
	case BOLLARD__REQUEST__OP_AUTH:
		return auth_apply(m, txn, a, &ai, req->auth, o->index, msg, h, aev);
	default:
		return BOLLARD_EBAD_REQUEST;
	}
}

int apply_batch(const struct mvcc *m, MDB_txn *txn, const struct apply_header *hdr,
                const Bollard__Batch *batch, struct apply_result *results)
{
	return apply_batch_ex(m, txn, hdr, batch, results, NULL);
}

int apply_batch_ex(const struct mvcc *m, MDB_txn *txn, const struct apply_header *hdr,
                   const Bollard__Batch *batch, struct apply_result *results,
                   const struct apply_opts *opts)
{
	static const struct apply_opts defaults = {.min_lease_ttl = APPLY_DEFAULT_MIN_LEASE_TTL};
	const struct apply_opts *o = opts ? opts : &defaults;
	struct arena a;
	size_t i;
	struct apply_cache cache;
	int rc = 0;
	arena_init(&a, 16384);
	cache_forget(&cache);
	cache.revs = (struct mvcc_rev_cache){0, false};
	for (i = 0; i < batch->n_requests; i++) {
		const Bollard__Request *req = batch->requests[i];
		struct apply_result *res = &results[i];
		*res = (struct apply_result){.request_id = req->id};
		arena_reset(&a);

		union any_resp r;
		memset(&r, 0, sizeof(r));
		ProtobufCMessage *msg = NULL;
		Etcdserverpb__ResponseHeader *h = NULL;
		struct lease_event ev = {0, 0};
		struct auth_event aev;
		if (!uses_rev_cache(req) && (rc = mvcc_rev_cache_flush(m, txn, &cache.revs)) != 0)
			break;
		rc = apply_one(m, txn, &a, o, &cache, req, &r, &msg, &h, &ev, &aev);
		if (!is_kv_write(req))
			cache_forget(&cache); /* it may have changed them */
		if (rc == 0) {
			fill_header(h, hdr);
			rc = pack_resp(msg, &res->resp, &res->len);
		}
		if (rc == 0) {
			lease_notify(o, req, &ev);
			if (req->op_case == BOLLARD__REQUEST__OP_AUTH && o->auth_applied)
				o->auth_applied(o->ud, &aev);
			continue;
		}
		if (!bollard_err_is_request(rc))
			break;
		res->err = rc; /* refused before its first write: nothing to undo */
		rc = 0;
	}
	arena_free(&a);
	if (rc == 0)
		rc = mvcc_rev_cache_flush(m, txn, &cache.revs);
	if (rc != 0) {
		for (size_t j = 0; j <= i && j < batch->n_requests; j++) {
			free(results[j].resp);
			results[j].resp = NULL;
			results[j].len = 0;
		}
	}
	return rc;
}

int apply_range(const struct mvcc *m, MDB_txn *txn, const struct apply_header *hdr,
                const Etcdserverpb__RangeRequest *req, uint8_t **resp, size_t *len)
{
	struct arena a;
	Etcdserverpb__RangeResponse r;
	arena_init(&a, 16384);
	*resp = NULL;
	*len = 0;
	int rc = mvcc_range(m, txn, &a, req, &r);
	if (rc == 0) {
		fill_header(r.header, hdr);
		rc = pack_msg(&r.base, resp, len);
	}
	arena_free(&a);
	return rc;
}

int apply_encode_batch(const Bollard__Batch *batch, void *(*alloc_fn)(size_t), uint8_t **out,
                       size_t *len)
{
	size_t n = bollard__batch__get_packed_size(batch);
	uint8_t *p = alloc_fn(n ? n : 1);
	if (p == NULL)
		return -ENOMEM;
	bollard__batch__pack(batch, p);
	*out = p;
	*len = n;
	return 0;
}

/* A request that is a plain put, the common case, is sized and packed by
 * hand: protobuf-c's generic walk costs as much as the rest of a put's
 * proposal. Anything else (or a message with unknown fields kept from the
 * client's bytes) goes to protobuf-c. Fields in number order, zeros left
 * out (proto3), as protobuf-c writes them. */
static bool req_plain_put(const Bollard__Request *r)
{
	return r->op_case == BOLLARD__REQUEST__OP_PUT && r->put != NULL &&
	       r->base.n_unknown_fields == 0 && r->put->base.n_unknown_fields == 0;
}

static size_t put_req_size(const Etcdserverpb__PutRequest *p)
{
	return pbwire_len_field_size(1, p->key.len) + pbwire_len_field_size(2, p->value.len) +
	       pbwire_varint_field_size(3, (uint64_t)p->lease) +
	       pbwire_varint_field_size(4, p->prev_kv != 0) +
	       pbwire_varint_field_size(5, p->ignore_value != 0) +
	       pbwire_varint_field_size(6, p->ignore_lease != 0);
}

static size_t req_size(const Bollard__Request *r)
{
	if (!req_plain_put(r))
		return bollard__request__get_packed_size(r);
	size_t put = put_req_size(r->put);
	return pbwire_varint_field_size(1, r->id) + 1 + pbwire_varint_size(put) + put +
	       pbwire_len_field_size(21, r->auth_user ? strlen(r->auth_user) : 0) +
	       pbwire_varint_field_size(22, r->auth_revision) +
	       pbwire_varint_field_size(23, r->origin);
}

static size_t req_pack(const Bollard__Request *r, uint8_t *out)
{
	if (!req_plain_put(r))
		return bollard__request__pack(r, out);
	const Etcdserverpb__PutRequest *p = r->put;
	uint8_t *o = pbwire_put_varint_field(out, 1, r->id);
	o = pbwire_put_len_head(o, 2, put_req_size(p)); /* present though empty */
	o = pbwire_put_len_field(o, 1, p->key.data, p->key.len);
	o = pbwire_put_len_field(o, 2, p->value.data, p->value.len);
	o = pbwire_put_varint_field(o, 3, (uint64_t)p->lease);
	o = pbwire_put_varint_field(o, 4, p->prev_kv != 0);
	o = pbwire_put_varint_field(o, 5, p->ignore_value != 0);
	o = pbwire_put_varint_field(o, 6, p->ignore_lease != 0);
	if (r->auth_user)
		o = pbwire_put_len_field(o, 21, r->auth_user, strlen(r->auth_user));
	o = pbwire_put_varint_field(o, 22, r->auth_revision);
	o = pbwire_put_varint_field(o, 23, r->origin);
	return (size_t)(o - out);
}

size_t apply_batch_size(const Bollard__Batch *batch, size_t *sizes)
{
	size_t total = 0;
	for (size_t i = 0; i < batch->n_requests; i++) {
		sizes[i] = req_size(batch->requests[i]);
		total += 1 + pbwire_varint_size(sizes[i]) + sizes[i];
	}
	return total;
}

void apply_batch_pack(const Bollard__Batch *batch, const size_t *sizes, uint8_t *out)
{
	for (size_t i = 0; i < batch->n_requests; i++) {
		out = pbwire_put_len_head(out, 1, sizes[i]); /* Batch.requests */
		out += req_pack(batch->requests[i], out);
	}
}
