/* validate.c - etcd's checks before raft (see validate.h), after
 * etcdserver/api/v3rpc/key.go: empty keys, ignore_value/ignore_lease misuse,
 * the txn op limit, and puts that collide with another put or a delete of
 * the same branch (nested txns included). */
#include "core/validate.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/errors.h"
#include "core/mvcc.h"

int validate_range(const Etcdserverpb__RangeRequest *req)
{
	return req->key.len == 0 ? BOLLARD_EEMPTY_KEY : 0;
}

int validate_put(const Etcdserverpb__PutRequest *req)
{
	if (req->key.len == 0)
		return BOLLARD_EEMPTY_KEY;
	/* Not etcd's: refuse a key the store cannot hold before it costs a
	 * log entry. */
	if (req->key.len > MVCC_MAX_KEY_LEN)
		return BOLLARD_EKEY_TOO_LONG;
	if (req->ignore_value && req->value.len != 0)
		return BOLLARD_EVALUE_PROVIDED;
	if (req->ignore_lease && req->lease != 0)
		return BOLLARD_ELEASE_PROVIDED;
	return 0;
}

int validate_delete_range(const Etcdserverpb__DeleteRangeRequest *req)
{
	return req->key.len == 0 ? BOLLARD_EEMPTY_KEY : 0;
}

static int validate_txn_ops(const Etcdserverpb__TxnRequest *req, int64_t max_ops);

static int validate_op(const Etcdserverpb__RequestOp *op, int64_t max_ops)
{
	switch (op->request_case) {
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
		return validate_range(op->request_range);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
		return validate_put(op->request_put);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
		return validate_delete_range(op->request_delete_range);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
		if (op->request_txn == NULL)
			return BOLLARD_EKEY_NOT_FOUND;
		return validate_txn_ops(op->request_txn, max_ops);
	default:
		/* etcd answers an empty op with "key not found". */
		return BOLLARD_EKEY_NOT_FOUND;
	}
}

/* etcd's checkTxnRequest: the op limit shrinks by each level's op count. */
static int validate_txn_ops(const Etcdserverpb__TxnRequest *req, int64_t max_ops)
{
	size_t opc = req->n_compare;
	if (opc < req->n_success)
		opc = req->n_success;
	if (opc < req->n_failure)
		opc = req->n_failure;
	if ((int64_t)opc > max_ops)
		return BOLLARD_ETOO_MANY_OPS;
	for (size_t i = 0; i < req->n_compare; i++)
		if (req->compare[i]->key.len == 0)
			return BOLLARD_EEMPTY_KEY;
	for (size_t i = 0; i < req->n_success; i++) {
		int rc = validate_op(req->success[i], max_ops - (int64_t)opc);
		if (rc != 0)
			return rc;
	}
	for (size_t i = 0; i < req->n_failure; i++) {
		int rc = validate_op(req->failure[i], max_ops - (int64_t)opc);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ---- duplicate keys (etcd's checkIntervals) ------------------------------- */

/* A set of keys, or of delete intervals [key, end) (end empty: the key alone),
 * borrowed from the request. Txns are small (max_txn_ops): linear scans. */
struct ivset {
	ProtobufCBinaryData *key, *end;
	size_t n, cap;
};

static int ivset_add(struct ivset *s, ProtobufCBinaryData key, ProtobufCBinaryData end)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		ProtobufCBinaryData *k = realloc(s->key, cap * sizeof(*k));
		if (k == NULL)
			return -ENOMEM;
		s->key = k;
		ProtobufCBinaryData *e = realloc(s->end, cap * sizeof(*e));
		if (e == NULL)
			return -ENOMEM;
		s->end = e;
		s->cap = cap;
	}
	s->key[s->n] = key;
	s->end[s->n] = end;
	s->n++;
	return 0;
}

static void ivset_free(struct ivset *s)
{
	free(s->key);
	free(s->end);
	*s = (struct ivset){0};
}

static int bcmp_(ProtobufCBinaryData a, ProtobufCBinaryData b)
{
	size_t n = a.len < b.len ? a.len : b.len;
	int c = n ? memcmp(a.data, b.data, n) : 0;
	if (c != 0)
		return c;
	return a.len < b.len ? -1 : a.len > b.len;
}

static bool puts_has(const struct ivset *s, ProtobufCBinaryData k)
{
	for (size_t i = 0; i < s->n; i++)
		if (bcmp_(s->key[i], k) == 0)
			return true;
	return false;
}

/* Does a delete interval hold key k? As in etcd, range_end is taken
 * literally: "\0" (from-key) makes [key, "\0"), which holds no nonempty key. */
static bool dels_hit(const struct ivset *s, ProtobufCBinaryData k)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->end[i].len == 0) {
			if (bcmp_(s->key[i], k) == 0)
				return true;
		} else if (bcmp_(s->key[i], k) <= 0 && bcmp_(k, s->end[i]) < 0) {
			return true;
		}
	}
	return false;
}

static int check_intervals(Etcdserverpb__RequestOp **ops, size_t nops, struct ivset *puts,
                           struct ivset *dels);

/* Check one nested txn's branches against this level's puts and deletes. */
static int check_nested(const Etcdserverpb__TxnRequest *t, struct ivset *puts, struct ivset *dels)
{
	struct ivset pthen = {0}, dthen = {0}, pelse = {0}, delse = {0};
	int rc = check_intervals(t->success, t->n_success, &pthen, &dthen);
	if (rc == 0)
		rc = check_intervals(t->failure, t->n_failure, &pelse, &delse);
	for (size_t i = 0; rc == 0 && i < pthen.n; i++) {
		if (puts_has(puts, pthen.key[i]) || dels_hit(dels, pthen.key[i]))
			rc = BOLLARD_EDUPLICATE_KEY;
		else
			rc = ivset_add(puts, pthen.key[i], pthen.end[i]);
	}
	for (size_t i = 0; rc == 0 && i < pelse.n; i++) {
		/* then and else exclude each other: the same key in both is fine. */
		if ((puts_has(puts, pelse.key[i]) && !puts_has(&pthen, pelse.key[i])) ||
		    dels_hit(dels, pelse.key[i]))
			rc = BOLLARD_EDUPLICATE_KEY;
		else
			rc = ivset_add(puts, pelse.key[i], pelse.end[i]);
	}
	for (size_t i = 0; rc == 0 && i < dthen.n; i++)
		rc = ivset_add(dels, dthen.key[i], dthen.end[i]);
	for (size_t i = 0; rc == 0 && i < delse.n; i++)
		rc = ivset_add(dels, delse.key[i], delse.end[i]);
	ivset_free(&pthen);
	ivset_free(&dthen);
	ivset_free(&pelse);
	ivset_free(&delse);
	return rc;
}

/* Fill puts and dels with the keys one branch writes (nested txns included),
 * failing on a put that meets another put or a delete. */
static int check_intervals(Etcdserverpb__RequestOp **ops, size_t nops, struct ivset *puts,
                           struct ivset *dels)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < nops; i++) {
		const Etcdserverpb__DeleteRangeRequest *d = ops[i]->request_delete_range;
		if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE &&
		    d != NULL)
			rc = ivset_add(dels, d->key, d->range_end);
	}
	for (size_t i = 0; rc == 0 && i < nops; i++) {
		const Etcdserverpb__TxnRequest *t = ops[i]->request_txn;
		if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN && t != NULL)
			rc = check_nested(t, puts, dels);
	}
	for (size_t i = 0; rc == 0 && i < nops; i++) {
		const Etcdserverpb__PutRequest *p = ops[i]->request_put;
		if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT || p == NULL)
			continue;
		if (puts_has(puts, p->key) || dels_hit(dels, p->key))
			rc = BOLLARD_EDUPLICATE_KEY;
		else
			rc = ivset_add(puts, p->key, (ProtobufCBinaryData){0, NULL});
	}
	return rc;
}

static int check_branch(Etcdserverpb__RequestOp **ops, size_t nops)
{
	struct ivset puts = {0}, dels = {0};
	int rc = check_intervals(ops, nops, &puts, &dels);
	ivset_free(&puts);
	ivset_free(&dels);
	return rc;
}

int validate_txn(const Etcdserverpb__TxnRequest *req, int64_t max_txn_ops)
{
	int rc = validate_txn_ops(req, max_txn_ops);
	if (rc == 0)
		rc = check_branch(req->success, req->n_success);
	if (rc == 0)
		rc = check_branch(req->failure, req->n_failure);
	return rc;
}
