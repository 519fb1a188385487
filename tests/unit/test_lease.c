/* test_lease.c - leases: the lessor with a fake clock (expiry queue,
 * keep-alive, promote/demote, pile-up spreading, checkpoints) and the durable
 * half through apply_batch_ex (grant IDs and TTL rules, attach/detach of
 * keys, revoke in one revision, checkpoints, persistence, hooks). */
#include <stdlib.h>

#include "core/apply.h"
#include "core/lease.h"
#include "core/leasedb.h"
#include "fixture.h"
#include "unit.h"

static const struct apply_header HDR = {.cluster_id = 1, .member_id = 2, .raft_term = 3};

/* ---- lessor (fake clock) -------------------------------------------------- */

TEST(ttl_rules)
{
	int64_t t;
	CHECK_INT(lease_min_ttl(1000, 100), 2); /* etcd defaults: ceil(1.5 s) */
	CHECK_INT(lease_min_ttl(5000, 500), 8); /* ceil(7.5 s) */
	CHECK_INT(lease_clamp_ttl(1, 2, &t), 0);
	CHECK_INT(t, 2);
	CHECK_INT(lease_clamp_ttl(-5, 2, &t), 0);
	CHECK_INT(t, 2);
	CHECK_INT(lease_clamp_ttl(60, 2, &t), 0);
	CHECK_INT(t, 60);
	CHECK_INT(lease_clamp_ttl(LEASE_MAX_TTL, 2, &t), 0);
	CHECK_INT(lease_clamp_ttl(LEASE_MAX_TTL + 1, 2, &t), BOLLARD_ELEASE_TTL_TOO_LARGE);
}

TEST(expiry_queue)
{
	struct lessor l;
	int64_t ids[8];
	lessor_init(&l);
	lessor_promote(&l, 0, 0);
	REQUIRE_INT(lessor_add(&l, 1, 10, 0, 1000), 0);
	REQUIRE_INT(lessor_add(&l, 2, 5, 0, 1000), 0);
	REQUIRE_INT(lessor_add(&l, 3, 20, 0, 1000), 0);
	CHECK_INT(lessor_add(&l, 2, 7, 0, 1000), BOLLARD_ELEASE_EXIST);
	CHECK_INT(lessor_next_due(&l), 6000);
	CHECK_INT(lessor_expired(&l, 5999, ids, 8), 0);
	REQUIRE_INT(lessor_expired(&l, 6000, ids, 8), 1);
	CHECK_INT(ids[0], 2);
	/* Not offered again until the retry interval passed. */
	CHECK_INT(lessor_expired(&l, 6001, ids, 8), 0);
	CHECK_INT(lessor_remaining(&l, lessor_get(&l, 1), 6000), 5);
	REQUIRE_INT(lessor_expired(&l, 6000 + LEASE_EXPIRED_RETRY_MS, ids, 8), 1);
	CHECK_INT(ids[0], 2); /* retried: its revoke never arrived */
	REQUIRE_INT(lessor_expired(&l, 11000, ids, 8), 1);
	CHECK_INT(ids[0], 1);
	CHECK_INT(lessor_remove(&l, 2), 0);
	CHECK_INT(lessor_remove(&l, 2), BOLLARD_ELEASE_NOT_FOUND);
	CHECK(lessor_get(&l, 2) == NULL);
	/* The cap on one call. */
	for (int64_t i = 10; i < 20; i++)
		REQUIRE_INT(lessor_add(&l, i, 2, 0, 0), 0);
	CHECK_INT(lessor_expired(&l, 100000, ids, 8), 8);
	CHECK_INT(lessor_expired(&l, 100000, ids, 8), 4); /* 2 more, plus 1 and 3 */
	lessor_free(&l);
}

TEST(keepalive)
{
	struct lessor l;
	int64_t ttl, ids[4];
	bool cp;
	lessor_init(&l);
	REQUIRE_INT(lessor_add(&l, 7, 10, 0, 0), 0);
	/* Not primary: nothing expires, renew refused. */
	CHECK_INT(lessor_renew(&l, 7, 0, &ttl, &cp), BOLLARD_ENOT_LEADER);
	CHECK_INT(lessor_expired(&l, 1u << 30, ids, 4), 0);
	CHECK_INT(lessor_remaining(&l, lessor_get(&l, 7), 12345), 10);
	lessor_promote(&l, 0, 0);
	CHECK_INT(lessor_renew(&l, 8, 0, &ttl, &cp), BOLLARD_ELEASE_NOT_FOUND);
	for (uint64_t now = 5000; now <= 50000; now += 5000) {
		REQUIRE_INT(lessor_renew(&l, 7, now, &ttl, &cp), 0);
		CHECK_INT(ttl, 10);
		CHECK_INT(lessor_expired(&l, now + 9999, ids, 4), 0);
	}
	CHECK_INT(lessor_remaining(&l, lessor_get(&l, 7), 51500), 8);
	/* Past its expiry it cannot be renewed: the revoke is on its way. */
	CHECK_INT(lessor_renew(&l, 7, 60000, &ttl, &cp), BOLLARD_ELEASE_NOT_FOUND);
	CHECK_INT(lessor_expired(&l, 60000, ids, 4), 1);
	lessor_free(&l);
}

TEST(promote_extends_and_demote_stops)
{
	struct lessor l;
	int64_t ids[4];
	lessor_init(&l);
	/* Reloaded after a restart: not primary yet. */
	REQUIRE_INT(lessor_add(&l, 1, 5, 0, 0), 0);
	REQUIRE_INT(lessor_add(&l, 2, 60, 30, 0), 0); /* checkpointed at 30 s left */
	lessor_promote(&l, 100000, 1000);
	/* Remaining TTLs restart from the promotion, plus the extension. */
	CHECK_INT(lessor_get(&l, 1)->expiry_ms, 100000 + 1000 + 5000);
	CHECK_INT(lessor_get(&l, 2)->expiry_ms, 100000 + 1000 + 30000);
	CHECK_INT(lessor_expired(&l, 105999, ids, 4), 0);
	CHECK_INT(lessor_expired(&l, 106000, ids, 4), 1);
	lessor_demote(&l);
	CHECK_INT(lessor_expired(&l, 1u << 30, ids, 4), 0);
	CHECK(lessor_next_due(&l) == LEASE_FOREVER);
	lessor_promote(&l, 200000, 0);
	CHECK_INT(lessor_next_due(&l), 205000);
	lessor_free(&l);
}

TEST(promote_spreads_a_pile_up)
{
	struct lessor l;
	enum { N = 3000 };
	static int64_t ids[N];
	lessor_init(&l);
	for (int64_t i = 1; i <= N; i++)
		REQUIRE_INT(lessor_add(&l, i, 10, 0, 0), 0);
	lessor_promote(&l, 0, 0);
	/* All would expire at 10 s; at most 3/4 of the revoke rate per second
	 * (plus one window's edge) may now expire in any one second. */
	size_t total = 0, worst = 0;
	for (uint64_t t = 10000; total < N && t < 30000; t += 1000) {
		size_t n = lessor_expired(&l, t, ids, N);
		for (size_t i = 0; i < n; i++) /* revoked */
			REQUIRE_INT(lessor_remove(&l, ids[i]), 0);
		total += n;
		if (n > worst)
			worst = n;
	}
	CHECK_INT(total, N);
	CHECK(worst <= (3 * LEASE_REVOKE_RATE) / 4 + 1);
	lessor_free(&l);
}

TEST(checkpoints_due)
{
	struct lessor l;
	int64_t ids[4], rem[4];
	bool cp;
	int64_t ttl;
	lessor_init(&l);
	lessor_promote(&l, 0, 0);
	REQUIRE_INT(lessor_add(&l, 1, 600, 0, 0), 0); /* 10 minutes */
	REQUIRE_INT(lessor_add(&l, 2, 60, 0, 0), 0);  /* shorter than the interval */
	const uint64_t iv = 300000;
	CHECK_INT(lessor_checkpoints_due(&l, 0, iv, ids, rem, 4), 0); /* schedules */
	CHECK_INT(lessor_checkpoints_due(&l, 299999, iv, ids, rem, 4), 0);
	REQUIRE_INT(lessor_checkpoints_due(&l, 300000, iv, ids, rem, 4), 1);
	CHECK_INT(ids[0], 1);
	CHECK_INT(rem[0], 300);
	REQUIRE_INT(lessor_checkpoint(&l, 1, 300), 0);
	CHECK_INT(lessor_checkpoint(&l, 9, 1), BOLLARD_ELEASE_NOT_FOUND);
	/* A new leader starts from the checkpoint, not the full TTL. */
	lessor_demote(&l);
	lessor_promote(&l, 1000000, 0);
	CHECK_INT(lessor_get(&l, 1)->expiry_ms, 1000000 + 300000);
	/* Renewing clears it (and tells the caller to propagate that). */
	REQUIRE_INT(lessor_renew(&l, 1, 1000000, &ttl, &cp), 0);
	CHECK(cp);
	CHECK_INT(lessor_get(&l, 1)->remaining_ttl, 0);
	CHECK_INT(lessor_get(&l, 1)->expiry_ms, 1000000 + 600000);
	lessor_free(&l);
}

/* ---- durable leases through apply ---------------------------------------- */

struct seen {
	int64_t granted[16], revoked[16];
	int n_granted, n_revoked, n_cp;
};

static void on_grant(void *ud, int64_t id, int64_t ttl)
{
	struct seen *s = ud;
	(void)ttl;
	s->granted[s->n_granted++] = id;
}

static void on_revoke(void *ud, int64_t id)
{
	struct seen *s = ud;
	s->revoked[s->n_revoked++] = id;
}

static void on_cp(void *ud, int64_t id, int64_t rem)
{
	struct seen *s = ud;
	(void)id;
	(void)rem;
	s->n_cp++;
}

/* Apply one request; returns its error, and its packed response unpacked
 * with desc into *out (caller frees) when out is not NULL. */
static int apply1(struct fx *f, Bollard__Request *r, struct seen *s, int64_t min_ttl,
                  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	Bollard__Request *rp[1] = {r};
	Bollard__Batch b = BOLLARD__BATCH__INIT;
	struct apply_result res;
	struct apply_opts o = {.min_lease_ttl = min_ttl, .lease_granted = on_grant,
	                       .lease_revoked = on_revoke, .lease_checkpointed = on_cp, .ud = s};
	b.n_requests = 1;
	b.requests = rp;
	MDB_txn *txn = fx_wtxn(f);
	REQUIRE_INT(apply_batch_ex(&f->m, txn, &HDR, &b, &res, &o), 0);
	fx_commit(txn);
	if (res.err == 0 && out != NULL) {
		*out = protobuf_c_message_unpack(desc, NULL, res.len, res.resp);
		REQUIRE(*out != NULL);
	}
	free(res.resp);
	return res.err;
}

static int grant(struct fx *f, struct seen *s, int64_t id, int64_t ttl, int64_t *got_id,
                 int64_t *got_ttl)
{
	Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	Bollard__Request r = BOLLARD__REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	g.id = id;
	g.ttl = ttl;
	r.op_case = BOLLARD__REQUEST__OP_LEASE_GRANT;
	r.lease_grant = &g;
	int rc = apply1(f, &r, s, 2, &etcdserverpb__lease_grant_response__descriptor, &m);
	if (rc == 0) {
		Etcdserverpb__LeaseGrantResponse *gr = (void *)m;
		if (got_id)
			*got_id = gr->id;
		if (got_ttl)
			*got_ttl = gr->ttl;
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return rc;
}

static int revoke(struct fx *f, struct seen *s, int64_t id, int64_t *rev)
{
	Etcdserverpb__LeaseRevokeRequest q = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
	Bollard__Request r = BOLLARD__REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	q.id = id;
	r.op_case = BOLLARD__REQUEST__OP_LEASE_REVOKE;
	r.lease_revoke = &q;
	int rc = apply1(f, &r, s, 2, &etcdserverpb__lease_revoke_response__descriptor, &m);
	if (rc == 0) {
		if (rev)
			*rev = ((Etcdserverpb__LeaseRevokeResponse *)m)->header->revision;
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return rc;
}

static int put_lease(struct fx *f, struct seen *s, const char *k, int64_t lease)
{
	Bollard__Request r = BOLLARD__REQUEST__INIT;
	r.op_case = BOLLARD__REQUEST__OP_PUT;
	r.put = op_put(f, k, "v")->request_put;
	r.put->lease = lease;
	return apply1(f, &r, s, 2, NULL, NULL);
}

static size_t keys_of(struct fx *f, int64_t id, const char *want0)
{
	ProtobufCBinaryData *keys;
	size_t n;
	MDB_txn *txn = fx_rtxn(f);
	REQUIRE_INT(leasedb_keys(&f->m, txn, &f->a, id, &keys, &n), 0);
	if (want0 != NULL && n > 0)
		CHECK_BYTES(keys[0], want0);
	mdb_txn_abort(txn);
	return n;
}

TEST(grant_ids_and_ttl_rules)
{
	struct fx f, g;
	struct seen s = {0}, s2 = {0};
	int64_t id1, id2, ttl, other;
	fx_open(&f);
	fx_open(&g);
	REQUIRE_INT(grant(&f, &s, 0, 1, &id1, &ttl), 0);
	CHECK(id1 > 0);
	CHECK_INT(ttl, 2); /* raised to the minimum */
	REQUIRE_INT(grant(&f, &s, 0, 100, &id2, &ttl), 0);
	CHECK(id2 > 0 && id2 != id1);
	CHECK_INT(ttl, 100);
	/* The same log on another member assigns the same IDs. */
	REQUIRE_INT(grant(&g, &s2, 0, 1, &other, NULL), 0);
	CHECK_INT(other, id1);
	REQUIRE_INT(grant(&g, &s2, 0, 1, &other, NULL), 0);
	CHECK_INT(other, id2);
	/* Client-chosen IDs; duplicates; too large TTLs. */
	REQUIRE_INT(grant(&f, &s, 42, 10, &other, NULL), 0);
	CHECK_INT(other, 42);
	CHECK_INT(grant(&f, &s, 42, 10, NULL, NULL), BOLLARD_ELEASE_EXIST);
	CHECK_INT(grant(&f, &s, id1, 10, NULL, NULL), BOLLARD_ELEASE_EXIST);
	CHECK_INT(grant(&f, &s, 43, LEASE_MAX_TTL + 1, NULL, NULL), BOLLARD_ELEASE_TTL_TOO_LARGE);
	CHECK_INT(s.n_granted, 3); /* only the successful grants */
	CHECK_INT(s.granted[2], 42);
	/* A grant does not change the revision. */
	CHECK_INT(fx_rev(&f), 1);
	/* Survives a reopen. */
	fx_reopen(&f);
	struct lease_rec rec;
	MDB_txn *txn = fx_rtxn(&f);
	CHECK_INT(leasedb_get(&f.m, txn, 42, &rec), 0);
	CHECK_INT(rec.ttl, 10);
	CHECK_INT(leasedb_get(&f.m, txn, 43, NULL), BOLLARD_ELEASE_NOT_FOUND);
	mdb_txn_abort(txn);
	fx_close(&g);
	fx_close(&f);
}

TEST(attach_detach_and_revoke_in_one_revision)
{
	struct fx f;
	struct seen s = {0};
	int64_t rev;
	fx_open(&f);
	CHECK_INT(put_lease(&f, &s, "x", 5), BOLLARD_ELEASE_NOT_FOUND);
	REQUIRE_INT(grant(&f, &s, 5, 10, NULL, NULL), 0);
	REQUIRE_INT(grant(&f, &s, 6, 10, NULL, NULL), 0);
	REQUIRE_INT(put_lease(&f, &s, "a", 5), 0); /* rev 2 */
	REQUIRE_INT(put_lease(&f, &s, "b", 5), 0);
	REQUIRE_INT(put_lease(&f, &s, "c", 5), 0);
	REQUIRE_INT(put_lease(&f, &s, "d", 5), 0);
	REQUIRE_INT(put_lease(&f, &s, "keep", 0), 0);
	CHECK_INT(keys_of(&f, 5, "a"), 4);
	/* Re-put without lease: detached. Re-put with another lease: moved. */
	REQUIRE_INT(put_lease(&f, &s, "b", 0), 0);
	REQUIRE_INT(put_lease(&f, &s, "c", 6), 0);
	/* Delete: detached. */
	REQUIRE_INT(fx_del(&f, "d", (ProtobufCBinaryData){0, NULL}, false, NULL), 0);
	CHECK_INT(keys_of(&f, 5, "a"), 1);
	CHECK_INT(keys_of(&f, 6, "c"), 1);
	/* ignore_lease keeps the lease. */
	Etcdserverpb__PutRequest pr = ETCDSERVERPB__PUT_REQUEST__INIT;
	pr.key = B("c");
	pr.value = B("w");
	pr.ignore_lease = 1;
	REQUIRE_INT(fx_put_req(&f, &pr, NULL), 0);
	CHECK_INT(keys_of(&f, 6, "c"), 1);
	CHECK_INT(fx_get(&f, "c", 0)->lease, 6);
	REQUIRE_INT(put_lease(&f, &s, "e", 6), 0);
	int64_t before = fx_rev(&f);
	/* Revoke 6: "c" and "e" go in ONE revision. */
	REQUIRE_INT(revoke(&f, &s, 6, &rev), 0);
	CHECK_INT(rev, before + 1);
	CHECK_INT(fx_rev(&f), before + 1);
	CHECK(fx_get(&f, "c", 0) == NULL);
	CHECK(fx_get(&f, "e", 0) == NULL);
	CHECK(fx_get(&f, "b", 0) != NULL);
	CHECK(fx_get(&f, "keep", 0) != NULL);
	CHECK_INT(keys_of(&f, 6, NULL), 0);
	CHECK_INT(revoke(&f, &s, 6, NULL), BOLLARD_ELEASE_NOT_FOUND);
	CHECK_INT(put_lease(&f, &s, "z", 6), BOLLARD_ELEASE_NOT_FOUND);
	/* A lease without keys: revoking keeps the revision. */
	REQUIRE_INT(grant(&f, &s, 7, 10, NULL, NULL), 0);
	REQUIRE_INT(revoke(&f, &s, 7, &rev), 0);
	CHECK_INT(rev, before + 1);
	CHECK_INT(s.n_revoked, 2);
	CHECK_INT(s.revoked[0], 6);
	/* Lease 5 still holds "a", also across a reopen. */
	fx_reopen(&f);
	CHECK_INT(keys_of(&f, 5, "a"), 1);
	REQUIRE_INT(revoke(&f, &s, 5, &rev), 0);
	CHECK(fx_get(&f, "a", 0) == NULL);
	fx_close(&f);
}

TEST(txn_puts_and_compare_lease)
{
	struct fx f;
	struct seen s = {0};
	fx_open(&f);
	REQUIRE_INT(grant(&f, &s, 9, 10, NULL, NULL), 0);
	Etcdserverpb__RequestOp *p1 = op_put(&f, "k1", "v");
	p1->request_put->lease = 9;
	Etcdserverpb__RequestOp *p2 = op_put(&f, "k2", "v");
	p2->request_put->lease = 10; /* unknown: the whole txn fails */
	Bollard__Request r = BOLLARD__REQUEST__INIT;
	r.op_case = BOLLARD__REQUEST__OP_TXN;
	r.txn = mk_txn(&f, NULL, (Etcdserverpb__RequestOp *[]){p1, p2, NULL}, NULL);
	CHECK_INT(apply1(&f, &r, &s, 2, NULL, NULL), BOLLARD_ELEASE_NOT_FOUND);
	CHECK_INT(keys_of(&f, 9, NULL), 0);
	r.txn = mk_txn(&f, NULL, (Etcdserverpb__RequestOp *[]){p1, NULL}, NULL);
	REQUIRE_INT(apply1(&f, &r, &s, 2, NULL, NULL), 0);
	CHECK_INT(keys_of(&f, 9, "k1"), 1);
	/* Compare on LEASE. */
	Etcdserverpb__TxnResponse tr;
	Etcdserverpb__TxnRequest *t = mk_txn(
		&f,
		(Etcdserverpb__Compare *[]){cmp_int(&f, "k1", (ProtobufCBinaryData){0, NULL},
		                                    ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE,
		                                    ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, 9),
		                            NULL},
		NULL, NULL);
	REQUIRE_INT(fx_txn(&f, t, &tr), 0);
	CHECK(tr.succeeded);
	/* A range delete inside a txn detaches too. */
	r.txn = mk_txn(&f, NULL, (Etcdserverpb__RequestOp *[]){op_del(&f, "k", B("l")), NULL}, NULL);
	REQUIRE_INT(apply1(&f, &r, &s, 2, NULL, NULL), 0);
	CHECK_INT(keys_of(&f, 9, NULL), 0);
	fx_close(&f);
}

TEST(grant_and_put_in_one_batch)
{
	struct fx f;
	fx_open(&f);
	Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	g.id = 77;
	g.ttl = 30;
	Bollard__Request r0 = BOLLARD__REQUEST__INIT, r1 = BOLLARD__REQUEST__INIT;
	r0.op_case = BOLLARD__REQUEST__OP_LEASE_GRANT;
	r0.lease_grant = &g;
	r1.op_case = BOLLARD__REQUEST__OP_PUT;
	r1.put = op_put(&f, "k", "v")->request_put;
	r1.put->lease = 77;
	Bollard__Request *rp[2] = {&r0, &r1};
	Bollard__Batch b = BOLLARD__BATCH__INIT;
	struct apply_result res[2];
	b.n_requests = 2;
	b.requests = rp;
	MDB_txn *txn = fx_wtxn(&f);
	REQUIRE_INT(apply_batch(&f.m, txn, &HDR, &b, res), 0);
	fx_commit(txn);
	CHECK_INT(res[0].err, 0);
	CHECK_INT(res[1].err, 0);
	free(res[0].resp);
	free(res[1].resp);
	CHECK_INT(keys_of(&f, 77, "k"), 1);
	fx_close(&f);
}

TEST(checkpoint_persists)
{
	struct fx f;
	struct seen s = {0};
	fx_open(&f);
	REQUIRE_INT(grant(&f, &s, 3, 600, NULL, NULL), 0);
	Etcdserverpb__LeaseCheckpoint c1 = ETCDSERVERPB__LEASE_CHECKPOINT__INIT,
	                              c2 = ETCDSERVERPB__LEASE_CHECKPOINT__INIT;
	c1.id = 3;
	c1.remaining_ttl = 250;
	c2.id = 99; /* unknown: skipped */
	c2.remaining_ttl = 1;
	Etcdserverpb__LeaseCheckpoint *cv[2] = {&c1, &c2};
	Etcdserverpb__LeaseCheckpointRequest cr = ETCDSERVERPB__LEASE_CHECKPOINT_REQUEST__INIT;
	cr.checkpoints = cv;
	cr.n_checkpoints = 2;
	Bollard__Request r = BOLLARD__REQUEST__INIT;
	r.op_case = BOLLARD__REQUEST__OP_LEASE_CHECKPOINT;
	r.lease_checkpoint = &cr;
	REQUIRE_INT(apply1(&f, &r, &s, 2, NULL, NULL), 0);
	CHECK_INT(s.n_cp, 2);
	fx_reopen(&f);
	struct lease_rec rec;
	MDB_txn *txn = fx_rtxn(&f);
	REQUIRE_INT(leasedb_get(&f.m, txn, 3, &rec), 0);
	CHECK_INT(rec.ttl, 600);
	CHECK_INT(rec.remaining_ttl, 250);
	CHECK_INT(leasedb_get(&f.m, txn, 99, NULL), BOLLARD_ELEASE_NOT_FOUND);
	mdb_txn_abort(txn);
	fx_close(&f);
}

static int count_rec(void *ud, const struct lease_rec *r)
{
	(void)r;
	(*(int *)ud)++;
	return 0;
}

TEST(foreach_lists_every_lease)
{
	struct fx f;
	struct seen s = {0};
	int n = 0;
	fx_open(&f);
	for (int i = 0; i < 5; i++)
		REQUIRE_INT(grant(&f, &s, 0, 10, NULL, NULL), 0);
	REQUIRE_INT(grant(&f, &s, 1000, 10, NULL, NULL), 0);
	MDB_txn *txn = fx_rtxn(&f);
	REQUIRE_INT(leasedb_foreach(&f.m, txn, count_rec, &n), 0);
	mdb_txn_abort(txn);
	CHECK_INT(n, 6);
	fx_close(&f);
}

UNIT_MAIN(TEST_ENTRY(ttl_rules), TEST_ENTRY(expiry_queue), TEST_ENTRY(keepalive),
          TEST_ENTRY(promote_extends_and_demote_stops), TEST_ENTRY(promote_spreads_a_pile_up),
          TEST_ENTRY(checkpoints_due), TEST_ENTRY(grant_ids_and_ttl_rules),
          TEST_ENTRY(attach_detach_and_revoke_in_one_revision), TEST_ENTRY(txn_puts_and_compare_lease),
          TEST_ENTRY(grant_and_put_in_one_batch), TEST_ENTRY(checkpoint_persists),
          TEST_ENTRY(foreach_lists_every_lease))
