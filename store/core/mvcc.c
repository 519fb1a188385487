/* mvcc.c - etcd's multi-version key-value model on LMDB (see mvcc.h).
 *
 * On-disk layout: three named databases in the caller's environment.
 *
 *   "rev"  (rev_db)   key:  {main, sub} as two big-endian u64 (16 bytes);
 *                           a tombstone carries a 17th byte 't'.
 *                     data: packed mvccpb.KeyValue as of that revision; a
 *                           tombstone holds only key and mod_revision (the
 *                           deletion revision).
 *   "key"  (key_db)   MDB_DUPSORT|MDB_DUPFIXED. key: the user key (at most
 *                     mdb_env_get_maxkeysize(), 511 bytes: longer keys are
 *                     refused with BOLLARD_EKEY_TOO_LONG). data: 17-byte
 *                     entries {main BE64, sub BE64, flag} with flag 0 for a
 *                     put and 't' for a tombstone. Duplicates sort by
 *                     revision, so a key's latest entry is its MDB_LAST_DUP and
 *                     its state at revision R is the last entry with main <= R
 *                     (found with MDB_GET_BOTH_RANGE at {R+1,0} and a step back).
 *                     A key log (struct mvcc_key_log) may hold a write
 *                     txn's appends back until the txn reads key_db or ends.
 *   "live" (live_db)  key: a user key whose latest entry is a put. data: 40
 *                     bytes {main, sub, create_revision, version, lease}
 *                     (BE64 each) of that put. Derived from key_db and rev_db
 *                     and written with them: a put reads it instead of its
 *                     key's last key_db entry and previous KeyValue (a walk
 *                     down the key's history and a rev_db lookup and decode,
 *                     on pages mostly out of cache). meta "live_rev" is the
 *                     revision it is up to date at (stored with "rev"); a
 *                     store where the two differ (written before live_db
 *                     existed, or by such a build since) gets it rebuilt at
 *                     open.
 *   "meta" (meta_db)  "rev" -> current revision, "compact" -> compacted
 *                     revision (BE64 each; absent = 1 and 0), "applied" ->
 *                     raft index and term (BE64 each), "live_rev" (see
 *                     live_db), "alarm/..." (alarm.c),
 *                     "lease/seq" (leasedb.c).
 *   "lease" (lease_db) key: lease ID (BE64). data: packed bollard.LeaseRecord
 *                     (leasedb.c owns it).
 *   "lease_key" (lease_key_db) MDB_DUPSORT. key: lease ID (BE64). data: each
 *                     live user key whose latest KeyValue has that lease. Kept
 *                     here, in the same write as the key: a put with a lease
 *                     adds its key, a put with another lease (or none) or a
 *                     delete removes it from the old lease. A revoke reads it
 *                     to delete the lease's keys in one revision.
 *
 * A key's generations follow from its entries: a tombstone ends one, the next
 * put starts another with version 1 and create_revision = that put's main.
 * create_revision, version and lease live in each KeyValue; live_db keeps
 * them for each live key, so a put continues its key's generation from there.
 *
 * Write calls run as one etcd "write txn": every change gets main = current+1
 * and the next sub revision; the current revision is stored only if something
 * changed. Reads inside a txn see its earlier writes. Each write call checks
 * everything that can refuse it before its first write (put_check,
 * txn_check), so a refused call leaves nothing behind in the caller's
 * transaction; a refusal after a write would be a bug and comes back as
 * BOLLARD_EINTERNAL.
 *
 * Memory: keys and values in responses of mvcc_range point into LMDB pages
 * (valid until the transaction ends, or, in a write transaction, until its
 * next write). Responses of write calls (prev_kv, ranges inside a txn) copy
 * into the arena because later writes of the same call may move pages.
 *
 * Compaction at rev visits only the revisions in (compacted, rev]: each key
 * written there keeps its latest entry at or before rev (unless it is a
 * tombstone) and loses every older one. Entries kept by earlier compactions
 * are reached through the same keys, so the work is proportional to the
 * revisions being compacted. */
#include "core/mvcc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/be64.h"
#include "core/errors.h"
#include "core/pbwire.h"

#define REV_LEN 16
#define ENT_LEN 17
#define LIVE_LEN 40
#define TOMB 't'
#define MAX_KEY MVCC_MAX_KEY_LEN

/* One entry of a key's history. */
struct ent {
	int64_t main;
	int64_t sub;
	bool tomb;
};

/* A live key's latest revision, as live_db keeps it. */
struct live {
	int64_t main, sub, create, version, lease;
};

/* The state of one write call (put, delete, txn). */
struct wctx {
	int64_t rev; /* main revision of every change of this call */
	int64_t sub; /* next sub revision; > 0 once something changed */
	const struct mvcc_write_opts *opts;
};

static const uint8_t META_REV[] = "rev";
static const uint8_t META_LIVE_REV[] = "live_rev";
static const uint8_t META_COMPACT[] = "compact";
static const uint8_t META_APPLIED[] = "applied";


static void ent_encode(uint8_t out[ENT_LEN], int64_t main, int64_t sub, bool tomb)
{
	be64_put(out, (uint64_t)main);
	be64_put(out + 8, (uint64_t)sub);
	out[16] = tomb ? TOMB : 0;
}

static void ent_decode(const uint8_t *p, struct ent *e)
{
	e->main = (int64_t)be64_get(p);
	e->sub = (int64_t)be64_get(p + 8);
	e->tomb = p[16] == TOMB;
}

static MDB_val ent_revkey(uint8_t buf[ENT_LEN], const struct ent *e)
{
	ent_encode(buf, e->main, e->sub, e->tomb);
	return (MDB_val){e->tomb ? ENT_LEN : REV_LEN, buf};
}

static int bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

/* ---- meta ---------------------------------------------------------------- */

static int64_t meta_get_i64(const struct mvcc *m, MDB_txn *txn, const uint8_t *name,
                            size_t nlen, int64_t dflt)
{
	MDB_val k = {nlen, (void *)name}, d;
	if (mdb_get(txn, m->meta_db, &k, &d) != 0 || d.mv_size < 8)
		return dflt;
	return (int64_t)be64_get(d.mv_data);
}

static int meta_put_i64(const struct mvcc *m, MDB_txn *txn, const uint8_t *name, size_t nlen,
                        int64_t v)
{
	uint8_t buf[8];
	be64_put(buf, (uint64_t)v);
	MDB_val k = {nlen, (void *)name}, d = {8, buf};
	return bollard_err_from_lmdb(mdb_put(txn, m->meta_db, &k, &d, 0));
}

/* Store the current revision, and that live_db follows the store up to it:
 * a store written by a build without live_db (a downgrade, then this build
 * again) moves "rev" past "live_rev", and mvcc_open then rebuilds live_db. */
static int rev_store(const struct mvcc *m, MDB_txn *txn, int64_t rev)
{
	int rc = meta_put_i64(m, txn, META_REV, sizeof(META_REV) - 1, rev);
	if (rc == 0)
		rc = meta_put_i64(m, txn, META_LIVE_REV, sizeof(META_LIVE_REV) - 1, rev);
	return rc;
}

int64_t mvcc_current_rev(const struct mvcc *m, MDB_txn *txn)
{
	return meta_get_i64(m, txn, META_REV, sizeof(META_REV) - 1, 1);
}

int64_t mvcc_compact_rev(const struct mvcc *m, MDB_txn *txn)
{
	return meta_get_i64(m, txn, META_COMPACT, sizeof(META_COMPACT) - 1, 0);
}

uint64_t mvcc_applied_index(const struct mvcc *m, MDB_txn *txn)
{
	return (uint64_t)meta_get_i64(m, txn, META_APPLIED, sizeof(META_APPLIED) - 1, 0);
}

int mvcc_set_applied_index(const struct mvcc *m, MDB_txn *txn, uint64_t index, uint64_t term)
{
	uint8_t buf[16];
	be64_put(buf, index);
	be64_put(buf + 8, term);
	MDB_val k = {sizeof(META_APPLIED) - 1, (void *)META_APPLIED}, d = {16, buf};
	return bollard_err_from_lmdb(mdb_put(txn, m->meta_db, &k, &d, 0));
}

static int live_build(const struct mvcc *m, MDB_txn *txn);

int mvcc_open(struct mvcc *m, MDB_env *env)
{
	MDB_txn *txn;
	m->key_log = NULL;
	int rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	rc = mdb_dbi_open(txn, "rev", MDB_CREATE, &m->rev_db);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "key", MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED, &m->key_db);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &m->meta_db);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "lease", MDB_CREATE, &m->lease_db);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "lease_key", MDB_CREATE | MDB_DUPSORT, &m->lease_key_db);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "live", MDB_CREATE, &m->live_db);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return bollard_err_from_lmdb(rc);
	}
	int64_t cur = mvcc_current_rev(m, txn);
	if (meta_get_i64(m, txn, META_LIVE_REV, sizeof(META_LIVE_REV) - 1, -1) != cur) {
		/* new, or written without it: (re)build it from the history */
		if ((rc = bollard_err_from_lmdb(mdb_drop(txn, m->live_db, 0))) != 0 ||
		    (rc = live_build(m, txn)) != 0 || (rc = rev_store(m, txn, cur)) != 0) {
			mdb_txn_abort(txn);
			return rc;
		}
	}
	return bollard_err_from_lmdb(mdb_txn_commit(txn));
}

/* ---- KeyValue encoding ---------------------------------------------------- */

/* Decode a packed mvccpb.KeyValue without copying: key and value point into
 * buf. Returns false on malformed input. */
static bool kv_decode(const uint8_t *buf, size_t len, Mvccpb__KeyValue *kv)
{
	const uint8_t *p = buf, *end = buf + len, *b = NULL;
	*kv = (Mvccpb__KeyValue)MVCCPB__KEY_VALUE__INIT;
	while (p < end) {
		unsigned field, wt;
		uint64_t v = 0;
		if (!pbwire_field_next(&p, end, &field, &wt, &v, &b))
			return false;
		if (wt == PBWIRE_VARINT) {
			switch (field) {
			case 2: kv->create_revision = (int64_t)v; break;
			case 3: kv->mod_revision = (int64_t)v; break;
			case 4: kv->version = (int64_t)v; break;
			case 6: kv->lease = (int64_t)v; break;
			default: break;
			}
		} else if (wt == PBWIRE_LEN) {
			if (field == 1)
				kv->key = (ProtobufCBinaryData){v, (uint8_t *)b};
			else if (field == 5)
				kv->value = (ProtobufCBinaryData){v, (uint8_t *)b};
		}
	}
	return true;
}

/* The KeyValue's bytes as protobuf-c packs them (fields in number order,
 * zeros left out), by hand: the write path packs one per change, and the
 * generic packer sized and packed in two descriptor walks. Unknown fields
 * are not packed: the KeyValues written here are built here. */
size_t mvcc_kv_packed_size(const Mvccpb__KeyValue *kv)
{
	return pbwire_len_field_size(1, kv->key.len) +
	       pbwire_varint_field_size(2, (uint64_t)kv->create_revision) +
	       pbwire_varint_field_size(3, (uint64_t)kv->mod_revision) +
	       pbwire_varint_field_size(4, (uint64_t)kv->version) +
	       pbwire_len_field_size(5, kv->value.len) +
	       pbwire_varint_field_size(6, (uint64_t)kv->lease);
}

size_t mvcc_kv_pack(const Mvccpb__KeyValue *kv, uint8_t *out)
{
	uint8_t *p = pbwire_put_len_field(out, 1, kv->key.data, kv->key.len);
	p = pbwire_put_varint_field(p, 2, (uint64_t)kv->create_revision);
	p = pbwire_put_varint_field(p, 3, (uint64_t)kv->mod_revision);
	p = pbwire_put_varint_field(p, 4, (uint64_t)kv->version);
	p = pbwire_put_len_field(p, 5, kv->value.data, kv->value.len);
	p = pbwire_put_varint_field(p, 6, (uint64_t)kv->lease);
	return (size_t)(p - out);
}

/* The KeyValue stored for entry e; copied into the arena if copy. */
static int kv_fetch(const struct mvcc *m, MDB_txn *txn, struct arena *a, const struct ent *e,
                    bool copy, Mvccpb__KeyValue **out)
{
	uint8_t rk[ENT_LEN];
	MDB_val k = ent_revkey(rk, e), d;
	int rc = mdb_get(txn, m->rev_db, &k, &d);
	if (rc == MDB_NOTFOUND)
		return BOLLARD_EINTERNAL; /* index and revisions disagree */
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	if (copy && (d.mv_data = arena_memdup(a, d.mv_data, d.mv_size)) == NULL)
		return -ENOMEM;
	Mvccpb__KeyValue *kv = arena_alloc(a, sizeof(*kv));
	if (kv == NULL)
		return -ENOMEM;
	if (!kv_decode(d.mv_data, d.mv_size, kv))
		return BOLLARD_EINTERNAL;
	*out = kv;
	return 0;
}

/* ---- live index ------------------------------------------------------------ */

static int live_put(const struct mvcc *m, MDB_txn *txn, const ProtobufCBinaryData *key,
                    const struct live *l)
{
	uint8_t buf[LIVE_LEN];
	be64_put(buf, (uint64_t)l->main);
	be64_put(buf + 8, (uint64_t)l->sub);
	be64_put(buf + 16, (uint64_t)l->create);
	be64_put(buf + 24, (uint64_t)l->version);
	be64_put(buf + 32, (uint64_t)l->lease);
	MDB_val k = {key->len, key->data}, d = {LIVE_LEN, buf};
	return bollard_err_from_lmdb(mdb_put(txn, m->live_db, &k, &d, 0));
}

static int live_del(const struct mvcc *m, MDB_txn *txn, const ProtobufCBinaryData *key)
{
	MDB_val k = {key->len, key->data};
	int rc = mdb_del(txn, m->live_db, &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : bollard_err_from_lmdb(rc);
}

/* key's row after its change e (kv: the KeyValue a put stored): a put's
 * numbers, or none after a tombstone. */
static int live_record(const struct mvcc *m, MDB_txn *txn, const ProtobufCBinaryData *key,
                       const struct ent *e, const Mvccpb__KeyValue *kv)
{
	if (e->tomb)
		return live_del(m, txn, key);
	struct live l = {e->main, e->sub, kv->create_revision, kv->version, kv->lease};
	return live_put(m, txn, key, &l);
}

/* *found: whether key is live; if so *l gets its latest revision. */
static int live_get(const struct mvcc *m, MDB_txn *txn, const ProtobufCBinaryData *key,
                    struct live *l, bool *found)
{
	MDB_val k = {key->len, key->data}, d;
	int rc = mdb_get(txn, m->live_db, &k, &d);
	*found = rc == 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	if (d.mv_size != LIVE_LEN)
		return BOLLARD_EINTERNAL;
	const uint8_t *p = d.mv_data;
	l->main = (int64_t)be64_get(p);
	l->sub = (int64_t)be64_get(p + 8);
	l->create = (int64_t)be64_get(p + 16);
	l->version = (int64_t)be64_get(p + 24);
	l->lease = (int64_t)be64_get(p + 32);
	return 0;
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

/* ---- key index walks ------------------------------------------------------ */

/* The entry of the key under cursor c (positioned on key k) visible at rev
 * (0 = latest). *found is false if the key has no entry at or before rev.
 * Leaves c on key k. */
static int key_entry_at(MDB_cursor *c, const MDB_val *k, int64_t rev, struct ent *e, bool *found)
{
	MDB_val kk = *k, d;
	int rc = mdb_cursor_get(c, &kk, &d, MDB_LAST_DUP);
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	ent_decode(d.mv_data, e);
	*found = true;
	if (rev == 0 || e->main <= rev)
		return 0;
	/* The latest entry is newer than rev: step back from the first entry
	 * at or after rev+1. */
	uint8_t key[MAX_KEY], target[ENT_LEN];
	size_t klen = k->mv_size < sizeof(key) ? k->mv_size : sizeof(key);
	memcpy(key, k->mv_data, klen);
	ent_encode(target, rev + 1, 0, false);
	kk = (MDB_val){klen, key};
	d = (MDB_val){ENT_LEN, target};
	rc = mdb_cursor_get(c, &kk, &d, MDB_GET_BOTH_RANGE);
	if (rc == 0) {
		rc = mdb_cursor_get(c, &kk, &d, MDB_PREV_DUP);
		if (rc == 0)
			ent_decode(d.mv_data, e);
	}
	if (rc == MDB_NOTFOUND)
		*found = false;
	else if (rc != 0)
		return bollard_err_from_lmdb(rc);
	/* Put the cursor back on the key itself for MDB_NEXT_NODUP. */
	kk = (MDB_val){klen, key};
	rc = mdb_cursor_get(c, &kk, &d, MDB_SET);
	return bollard_err_from_lmdb(rc);
}

/* ---- key log (struct mvcc_key_log) ----------------------------------------- */

/* A key log holds at most this many appends; one more flushes it first (a
 * delete of a million keys must not hold a million of them). */
#define KEY_LOG_MAX 65536

struct mvcc_key_rec {
	uint32_t key_off; /* in keys; grows with each append, so it orders a key's entries */
	uint16_t key_len;
	uint8_t ent[ENT_LEN];
};

static struct mvcc_key_log *key_log_of(const struct mvcc *m, MDB_txn *txn)
{
	struct mvcc_key_log *l = m->key_log;
	return l != NULL && __atomic_load_n(&l->txn, __ATOMIC_ACQUIRE) == txn ? l : NULL;
}

void mvcc_key_log_bind(const struct mvcc *m, MDB_txn *txn)
{
	__atomic_store_n(&m->key_log->txn, txn, __ATOMIC_RELEASE);
}

void mvcc_key_log_free(struct mvcc_key_log *l)
{
	free(l->recs);
	free(l->keys);
	free(l->run);
	*l = (struct mvcc_key_log){0};
}

/* *pp (an array of elem-sized items, *cap of them) holds at least need,
 * doubling from first. */
static int grow(void *pp, size_t *cap, size_t need, size_t elem, size_t first)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : first;
	while (c < need)
		c *= 2;
	void *p = realloc(*(void **)pp, c * elem);
	if (p == NULL)
		return -ENOMEM;
	*(void **)pp = p;
	*cap = c;
	return 0;
}

static int key_log_add(struct mvcc_key_log *l, const ProtobufCBinaryData *key, const uint8_t *ent)
{
	if (grow(&l->recs, &l->cap, l->n + 1, sizeof(*l->recs), 1024) != 0 ||
	    grow(&l->keys, &l->keys_cap, l->keys_len + key->len, 1, 16384) != 0)
		return -ENOMEM;
	struct mvcc_key_rec *r = &l->recs[l->n++];
	r->key_off = (uint32_t)l->keys_len;
	r->key_len = (uint16_t)key->len;
	memcpy(r->ent, ent, ENT_LEN);
	memcpy(l->keys + l->keys_len, key->data, key->len);
	l->keys_len += key->len;
	return 0;
}

/* LMDB's key order (memcmp, then the shorter first), then append order. */
static int key_rec_cmp(const void *x, const void *y, void *keys)
{
	const struct mvcc_key_rec *a = x, *b = y;
	const uint8_t *base = keys;
	int c = memcmp(base + a->key_off, base + b->key_off,
	               a->key_len < b->key_len ? a->key_len : b->key_len);
	if (c == 0)
		c = (int)a->key_len - (int)b->key_len;
	if (c == 0)
		c = a->key_off < b->key_off ? -1 : 1;
	return c;
}

static bool same_key(const struct mvcc_key_log *l, const struct mvcc_key_rec *a,
                     const struct mvcc_key_rec *b)
{
	return a->key_len == b->key_len &&
	       memcmp(l->keys + a->key_off, l->keys + b->key_off, a->key_len) == 0;
}

/* One key's entries, in revision order, appended with one insert. */
static int key_log_put_run(MDB_cursor *c, MDB_val *k, uint8_t *run, size_t n)
{
	MDB_val d[2] = {{ENT_LEN, run}, {n, NULL}};
	int rc = mdb_cursor_put(c, k, d, MDB_MULTIPLE | MDB_APPENDDUP);
	if (rc != MDB_KEYEXIST)
		return rc;
	/* something sorts after them (see write_change): the rest one by one */
	for (size_t i = d[1].mv_size; i < n; i++) {
		MDB_val one = {ENT_LEN, run + i * ENT_LEN};
		if ((rc = mdb_cursor_put(c, k, &one, 0)) != 0)
			return rc;
	}
	return 0;
}

static int key_log_write(const struct mvcc *m, MDB_txn *txn, struct mvcc_key_log *l)
{
	MDB_cursor *c;
	int rc;

	if (l->n == 0)
		return 0;
	if (grow(&l->run, &l->run_cap, l->n * ENT_LEN, 1, 16384) != 0)
		return -ENOMEM;
	/* in key order: each key's history once, neighbours on the same pages */
	qsort_r(l->recs, l->n, sizeof(*l->recs), key_rec_cmp, l->keys);
	if ((rc = mdb_cursor_open(txn, m->key_db, &c)) != 0)
		return bollard_err_from_lmdb(rc);
	for (size_t i = 0, j; i < l->n && rc == 0; i = j) {
		for (j = i; j < l->n && same_key(l, &l->recs[i], &l->recs[j]); j++)
			memcpy(l->run + (j - i) * ENT_LEN, l->recs[j].ent, ENT_LEN);
		MDB_val k = {l->recs[i].key_len, l->keys + l->recs[i].key_off};
		rc = key_log_put_run(c, &k, l->run, j - i);
	}
	mdb_cursor_close(c);
	l->n = 0;
	l->keys_len = 0;
	return bollard_err_from_lmdb(rc);
}

int mvcc_key_log_flush(const struct mvcc *m, MDB_txn *txn)
{
	struct mvcc_key_log *l = key_log_of(m, txn);
	if (l == NULL)
		return 0;
	int rc = key_log_write(m, txn, l);
	l->n = 0;
	l->keys_len = 0;
	__atomic_store_n(&l->txn, NULL, __ATOMIC_RELEASE);
	return rc;
}

/* Before reading key_db in txn: what the log holds for it goes in first
 * (it stays bound). */
static int key_db_sync(const struct mvcc *m, MDB_txn *txn)
{
	struct mvcc_key_log *l = key_log_of(m, txn);
	return l != NULL ? key_log_write(m, txn, l) : 0;
}

/* Called for each key of a range that is live at the walk's revision;
 * ukey is valid until the next write. Return 0 to go on, 1 to stop, < 0 on
 * error. */
typedef int (*visit_fn)(void *ud, const MDB_val *ukey, const struct ent *e);

static bool is_from_key(const ProtobufCBinaryData *end)
{
	return end->len == 1 && end->data[0] == 0;
}

/* Visit the live keys of [key, end) at rev (0 = latest) in key order. end
 * empty: key alone; end "\0": every key >= key. */
static int range_walk(const struct mvcc *m, MDB_txn *txn, const ProtobufCBinaryData *key,
                      const ProtobufCBinaryData *end, int64_t rev, visit_fn fn, void *ud)
{
	MDB_cursor *c;
	MDB_val k, d;
	struct ent e;
	bool found;
	int rc = key_db_sync(m, txn);
	if (rc != 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, m->key_db, &c)) != 0)
		return bollard_err_from_lmdb(rc);

	if (end->len == 0) {
		if (key->len == 0 || key->len > MAX_KEY)
			goto out_ok;
		k = (MDB_val){key->len, key->data};
		rc = mdb_cursor_get(c, &k, &d, MDB_SET);
		if (rc == MDB_NOTFOUND)
			goto out_ok;
		if (rc == 0)
			rc = key_entry_at(c, &k, rev, &e, &found);
		if (rc == 0 && found && !e.tomb)
			rc = fn(ud, &k, &e);
		goto out;
	}

	bool from = is_from_key(end);
	if (key->len == 0) {
		rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
	} else {
		k = (MDB_val){key->len < MAX_KEY ? key->len : MAX_KEY, key->data};
		rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	}
	while (rc == 0) {
		if (bytes_cmp(k.mv_data, k.mv_size, key->data, key->len) >= 0) {
			if (!from && bytes_cmp(k.mv_data, k.mv_size, end->data, end->len) >= 0)
				break;
			rc = key_entry_at(c, &k, rev, &e, &found);
			if (rc == 0 && found && !e.tomb)
				rc = fn(ud, &k, &e);
			if (rc != 0)
				goto out;
		}
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT_NODUP);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
	goto out;
out_ok:
	rc = 0;
out:
	mdb_cursor_close(c);
	return rc == 1 ? 0 : bollard_err_from_lmdb(rc);
}

/* ---- range ---------------------------------------------------------------- */

/* A growable array of KeyValue pointers in the arena. */
struct kv_list {
	Mvccpb__KeyValue **v;
	size_t n, cap;
};

static int kv_list_push(struct arena *a, struct kv_list *l, Mvccpb__KeyValue *kv)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		Mvccpb__KeyValue **v = arena_alloc(a, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		if (l->n)
			memcpy(v, l->v, l->n * sizeof(*v));
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = kv;
	return 0;
}

struct range_acc {
	const struct mvcc *m;
	MDB_txn *txn;
	struct arena *a;
	bool copy;
	bool want_kvs;
	size_t fetch; /* fetch at most this many KeyValues; 0 = all */
	int64_t count;
	struct kv_list kvs;
};

static int range_visit(void *ud, const MDB_val *ukey, const struct ent *e)
{
	struct range_acc *r = ud;
	(void)ukey;
	r->count++;
	if (!r->want_kvs || (r->fetch && r->kvs.n >= r->fetch))
		return 0;
	Mvccpb__KeyValue *kv;
	int rc = kv_fetch(r->m, r->txn, r->a, e, r->copy, &kv);
	if (rc == 0)
		rc = kv_list_push(r->a, &r->kvs, kv);
	return rc;
}

struct sort_spec {
	Etcdserverpb__RangeRequest__SortTarget target;
	bool desc;
};

static int cmp_i64(int64_t x, int64_t y)
{
	return x < y ? -1 : x > y;
}

static int kv_sort_cmp(const void *pa, const void *pb, void *ud)
{
	const struct sort_spec *s = ud;
	const Mvccpb__KeyValue *x = *(Mvccpb__KeyValue *const *)pa;
	const Mvccpb__KeyValue *y = *(Mvccpb__KeyValue *const *)pb;
	int c = 0;
	switch (s->target) {
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION:
		c = cmp_i64(x->version, y->version);
		break;
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE:
		c = cmp_i64(x->create_revision, y->create_revision);
		break;
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD:
		c = cmp_i64(x->mod_revision, y->mod_revision);
		break;
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE:
		c = bytes_cmp(x->value.data, x->value.len, y->value.data, y->value.len);
		break;
	default: /* KEY */
		c = bytes_cmp(x->key.data, x->key.len, y->key.data, y->key.len);
		break;
	}
	if (s->desc)
		c = -c;
	/* Ties keep ascending key order whatever the direction: etcd sorts the
	 * key-ordered range with a sort that is stable on small inputs. */
	if (c == 0)
		c = bytes_cmp(x->key.data, x->key.len, y->key.data, y->key.len);
	return c;
}

static bool kv_filtered(const Etcdserverpb__RangeRequest *req, const Mvccpb__KeyValue *kv)
{
	return (req->max_mod_revision != 0 && kv->mod_revision > req->max_mod_revision) ||
	       (req->min_mod_revision != 0 && kv->mod_revision < req->min_mod_revision) ||
	       (req->max_create_revision != 0 && kv->create_revision > req->max_create_revision) ||
	       (req->min_create_revision != 0 && kv->create_revision < req->min_create_revision);
}

/* The revision reads see: inside a write call, its own pending changes. */
static int64_t view_rev(const struct mvcc *m, MDB_txn *txn, const struct wctx *w)
{
	if (w == NULL)
		return mvcc_current_rev(m, txn);
	return w->sub > 0 ? w->rev : w->rev - 1;
}

/* Check a read revision as etcd does; *walk_rev gets 0 for "latest". */
static int check_read_rev(const struct mvcc *m, MDB_txn *txn, int64_t cur, int64_t rev,
                          int64_t *walk_rev)
{
	*walk_rev = 0;
	if (rev <= 0 || rev == cur)
		return 0;
	if (rev > cur)
		return BOLLARD_EFUTURE_REV;
	if (rev < mvcc_compact_rev(m, txn))
		return BOLLARD_ECOMPACTED;
	*walk_rev = rev;
	return 0;
}

static int range_in(const struct mvcc *m, MDB_txn *txn, struct arena *a, const struct wctx *w,
                    const Etcdserverpb__RangeRequest *req, Etcdserverpb__RangeResponse *resp)
{
	int64_t cur = view_rev(m, txn, w), rev;
	int rc = check_read_rev(m, txn, cur, req->revision, &rev);
	if (rc != 0)
		return rc;

	Etcdserverpb__RangeRequest__SortOrder order = req->sort_order;
	if (order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE &&
	    req->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY)
		order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	bool fetch_all = req->sort_order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE ||
	                 req->min_mod_revision || req->max_mod_revision ||
	                 req->min_create_revision || req->max_create_revision;

	struct range_acc r = {
		.m = m, .txn = txn, .a = a, .copy = w != NULL,
		.want_kvs = !req->count_only,
		.fetch = (!fetch_all && req->limit > 0) ? (size_t)req->limit + 1 : 0,
	};
	rc = range_walk(m, txn, &req->key, &req->range_end, rev, range_visit, &r);
	if (rc != 0)
		return rc;

	size_t n = 0;
	for (size_t i = 0; i < r.kvs.n; i++)
		if (!kv_filtered(req, r.kvs.v[i]))
			r.kvs.v[n++] = r.kvs.v[i];
	/* Keys come in ascending key order already. */
	bool key_asc = req->sort_target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
	               order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	if (order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE && !key_asc && n > 1) {
		struct sort_spec s = {req->sort_target,
		                      order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND};
		qsort_r(r.kvs.v, n, sizeof(*r.kvs.v), kv_sort_cmp, &s);
	}
	*resp = (Etcdserverpb__RangeResponse)ETCDSERVERPB__RANGE_RESPONSE__INIT;
	if (req->limit > 0 && n > (size_t)req->limit) {
		n = (size_t)req->limit;
		resp->more = 1;
	}
	if (req->keys_only)
		for (size_t i = 0; i < n; i++)
			r.kvs.v[i]->value = (ProtobufCBinaryData){0, NULL};
	resp->header = header_new(a, cur);
	if (resp->header == NULL)
		return -ENOMEM;
	resp->kvs = r.kvs.v;
	resp->n_kvs = n;
	resp->count = r.count;
	return 0;
}

int mvcc_range(const struct mvcc *m, MDB_txn *txn, struct arena *a,
               const Etcdserverpb__RangeRequest *req, Etcdserverpb__RangeResponse *resp)
{
	return range_in(m, txn, a, NULL, req, resp);
}

/* ---- writes --------------------------------------------------------------- */

/* The current revision, from the caller's run of writes if it keeps one. */
static int64_t write_cur_rev(const struct mvcc *m, MDB_txn *txn,
                             const struct mvcc_write_opts *opts)
{
	struct mvcc_rev_cache *c = opts ? opts->rev_cache : NULL;
	if (c == NULL)
		return mvcc_current_rev(m, txn);
	if (c->rev == 0)
		c->rev = mvcc_current_rev(m, txn);
	return c->rev;
}

static void wctx_begin(const struct mvcc *m, MDB_txn *txn, struct wctx *w,
                       const struct mvcc_write_opts *opts)
{
	w->rev = write_cur_rev(m, txn, opts) + 1;
	w->sub = 0;
	w->opts = opts;
}

static int wctx_end(const struct mvcc *m, MDB_txn *txn, const struct wctx *w)
{
	struct mvcc_rev_cache *c = w->opts ? w->opts->rev_cache : NULL;
	if (w->sub == 0)
		return 0;
	if (c != NULL) { /* stored by mvcc_rev_cache_flush */
		c->rev = w->rev;
		c->dirty = true;
		return 0;
	}
	return rev_store(m, txn, w->rev);
}

int mvcc_rev_cache_flush(const struct mvcc *m, MDB_txn *txn, struct mvcc_rev_cache *c)
{
	int rc = 0;
	if (c->dirty)
		rc = rev_store(m, txn, c->rev);
	*c = (struct mvcc_rev_cache){0, false};
	return rc;
}

/* Record one change of key: kv (a put) or a tombstone (kv NULL). */
static int write_change(const struct mvcc *m, MDB_txn *txn, struct wctx *w,
                        const ProtobufCBinaryData *key, Mvccpb__KeyValue *kv)
{
	struct ent e = {w->rev, w->sub, kv == NULL};
	Mvccpb__KeyValue tomb = MVCCPB__KEY_VALUE__INIT;
	if (kv == NULL) {
		tomb.key = *key;
		tomb.mod_revision = w->rev;
		kv = &tomb;
	}
	uint8_t rk[ENT_LEN], ent[ENT_LEN];
	MDB_val k = ent_revkey(rk, &e);
	MDB_val d = {mvcc_kv_packed_size(kv), NULL};
	/* Both writes go after everything stored: revisions only grow, so the
	 * revision is the largest in rev_db and the largest entry of the key.
	 * MDB_APPEND/MDB_APPENDDUP go straight to the last page instead of
	 * searching, and split it leaving the old page full (a plain put
	 * splits it in half): fewer pages, shallower trees. Should something
	 * ever sort after it (MDB_KEYEXIST, nothing written), a plain put. */
	int rc = mdb_put(txn, m->rev_db, &k, &d, MDB_RESERVE | MDB_APPEND);
	if (rc == MDB_KEYEXIST)
		rc = mdb_put(txn, m->rev_db, &k, &d, MDB_RESERVE);
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	mvcc_kv_pack(kv, d.mv_data);
	ent_encode(ent, e.main, e.sub, e.tomb);
	struct mvcc_key_log *log = key_log_of(m, txn);
	if (log != NULL) {
		if (log->n >= KEY_LOG_MAX && (rc = key_log_write(m, txn, log)) != 0)
			return rc;
		if ((rc = key_log_add(log, key, ent)) != 0)
			return rc;
	} else {
		k = (MDB_val){key->len, key->data};
		d = (MDB_val){ENT_LEN, ent};
		rc = mdb_put(txn, m->key_db, &k, &d, MDB_APPENDDUP);
		if (rc == MDB_KEYEXIST)
			rc = mdb_put(txn, m->key_db, &k, &d, 0);
		if (rc != 0)
			return bollard_err_from_lmdb(rc);
	}
	rc = live_record(m, txn, key, &e, kv);
	if (rc == 0)
		w->sub++;
	return rc;
}

/* Move key from lease old_lease to new_lease in the lease -> keys index. */
static int lease_index(const struct mvcc *m, MDB_txn *txn, const ProtobufCBinaryData *key,
                       int64_t old_lease, int64_t new_lease)
{
	uint8_t id[8];
	MDB_val k = {8, id}, d = {key->len, key->data};
	int rc;
	if (old_lease == new_lease)
		return 0;
	if (old_lease != 0) {
		be64_put(id, (uint64_t)old_lease);
		rc = mdb_del(txn, m->lease_key_db, &k, &d);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return bollard_err_from_lmdb(rc);
	}
	if (new_lease != 0) {
		be64_put(id, (uint64_t)new_lease);
		rc = mdb_put(txn, m->lease_key_db, &k, &d, MDB_NODUPDATA);
		if (rc != 0 && rc != MDB_KEYEXIST)
			return bollard_err_from_lmdb(rc);
	}
	return 0;
}

/* live_db from key_db and rev_db: a row for each key live now. */
struct live_build_acc {
	const struct mvcc *m;
	MDB_txn *txn;
	struct arena a;
};

static int live_build_visit(void *ud, const MDB_val *ukey, const struct ent *e)
{
	struct live_build_acc *b = ud;
	Mvccpb__KeyValue *kv;
	arena_reset(&b->a);
	int rc = kv_fetch(b->m, b->txn, &b->a, e, false, &kv);
	if (rc != 0)
		return rc;
	struct live l = {e->main, e->sub, kv->create_revision, kv->version, kv->lease};
	ProtobufCBinaryData key = {ukey->mv_size, ukey->mv_data};
	return live_put(b->m, b->txn, &key, &l);
}

static int live_build(const struct mvcc *m, MDB_txn *txn)
{
	static const uint8_t nul = 0;
	const ProtobufCBinaryData all = {0, NULL}, from_key = {1, (uint8_t *)&nul};
	struct live_build_acc b = {m, txn, {0}};
	arena_init(&b.a, 4096);
	int rc = range_walk(m, txn, &all, &from_key, 0, live_build_visit, &b);
	arena_free(&b.a);
	return rc;
}

/* The latest live KeyValue of key, or NULL. With whole, all of it, copied
 * into the arena; without, only its numbers (key, create, mod revision,
 * version, lease: what a put continues), from live_db alone. */
static int latest_kv(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                     const ProtobufCBinaryData *key, bool whole, Mvccpb__KeyValue **out)
{
	struct live l;
	bool found;
	*out = NULL;
	if (key->len == 0 || key->len > MAX_KEY)
		return 0;
	int rc = live_get(m, txn, key, &l, &found);
	if (rc != 0 || !found)
		return rc;
	if (whole) {
		struct ent e = {l.main, l.sub, false};
		return kv_fetch(m, txn, a, &e, true, out);
	}
	Mvccpb__KeyValue *kv = arena_alloc(a, sizeof(*kv));
	if (kv == NULL)
		return -ENOMEM;
	mvccpb__key_value__init(kv);
	kv->key = *key;
	kv->create_revision = l.create;
	kv->mod_revision = l.main;
	kv->version = l.version;
	kv->lease = l.lease;
	*out = kv;
	return 0;
}

static int check_key_len(const ProtobufCBinaryData *key)
{
	if (key->len == 0)
		return BOLLARD_EEMPTY_KEY;
	if (key->len > MAX_KEY)
		return BOLLARD_EKEY_TOO_LONG;
	return 0;
}

/* The checks of a put that precede any write: key, ignore_* on a missing
 * key, lease. *prev gets the key's live KeyValue (or NULL), copied into the
 * arena when the put will need its bytes after writing (prev_kv,
 * ignore_value); otherwise only its numbers may be used after a write. */
static int put_check(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                     const struct mvcc_write_opts *opts, const Etcdserverpb__PutRequest *req,
                     Mvccpb__KeyValue **prev)
{
	int rc = check_key_len(&req->key);
	if (rc == 0)
		rc = latest_kv(m, txn, a, &req->key, req->prev_kv || req->ignore_value, prev);
	if (rc != 0)
		return rc;
	if ((req->ignore_value || req->ignore_lease) && *prev == NULL)
		return BOLLARD_EKEY_NOT_FOUND;
	if (!req->ignore_lease && req->lease != 0 && opts != NULL && opts->lease_check != NULL)
		return opts->lease_check(opts->ud, req->lease);
	return 0;
}

static int put_in(const struct mvcc *m, MDB_txn *txn, struct arena *a, struct wctx *w,
                  const Etcdserverpb__PutRequest *req, Etcdserverpb__PutResponse *resp)
{
	Mvccpb__KeyValue *prev;
	int rc = put_check(m, txn, a, w->opts, req, &prev);
	if (rc != 0)
		return rc;
	Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
	kv.key = req->key;
	kv.mod_revision = w->rev;
	kv.create_revision = prev ? prev->create_revision : w->rev;
	kv.version = prev ? prev->version + 1 : 1;
	kv.value = req->ignore_value ? prev->value : req->value;
	kv.lease = req->ignore_lease ? prev->lease : req->lease;
	int64_t old_lease = prev ? prev->lease : 0;
	rc = write_change(m, txn, w, &req->key, &kv);
	if (rc == 0)
		rc = lease_index(m, txn, &req->key, old_lease, kv.lease);
	if (rc != 0)
		return rc;
	*resp = (Etcdserverpb__PutResponse)ETCDSERVERPB__PUT_RESPONSE__INIT;
	if (req->prev_kv)
		resp->prev_kv = prev;
	resp->header = header_new(a, w->rev);
	return resp->header ? 0 : -ENOMEM;
}

/* Keys (and, if wanted, KeyValues) collected by a delete before it writes. */
struct del_acc {
	const struct mvcc *m;
	MDB_txn *txn;
	struct arena *a;
	bool want_prev;
	struct kv_list keys; /* KeyValues with only the key set, or full ones */
};

static int del_visit(void *ud, const MDB_val *ukey, const struct ent *e)
{
	struct del_acc *d = ud;
	Mvccpb__KeyValue *kv;
	int rc;
	if (d->want_prev) {
		rc = kv_fetch(d->m, d->txn, d->a, e, true, &kv);
	} else {
		/* Only the key, and the lease for the lease index. */
		Mvccpb__KeyValue *cur;
		rc = kv_fetch(d->m, d->txn, d->a, e, false, &cur);
		kv = arena_alloc(d->a, sizeof(*kv));
		void *k = arena_memdup(d->a, ukey->mv_data, ukey->mv_size);
		if (rc == 0)
			rc = kv && k ? 0 : -ENOMEM;
		if (rc == 0) {
			*kv = (Mvccpb__KeyValue)MVCCPB__KEY_VALUE__INIT;
			kv->key = (ProtobufCBinaryData){ukey->mv_size, k};
			kv->lease = cur != NULL ? cur->lease : 0;
		}
	}
	return rc ? rc : kv_list_push(d->a, &d->keys, kv);
}

static int delete_in(const struct mvcc *m, MDB_txn *txn, struct arena *a, struct wctx *w,
                     const Etcdserverpb__DeleteRangeRequest *req,
                     Etcdserverpb__DeleteRangeResponse *resp)
{
	struct del_acc d = {.m = m, .txn = txn, .a = a, .want_prev = req->prev_kv};
	int rc = range_walk(m, txn, &req->key, &req->range_end, 0, del_visit, &d);
	for (size_t i = 0; rc == 0 && i < d.keys.n; i++) {
		rc = write_change(m, txn, w, &d.keys.v[i]->key, NULL);
		if (rc == 0)
			rc = lease_index(m, txn, &d.keys.v[i]->key, d.keys.v[i]->lease, 0);
	}
	if (rc != 0)
		return rc;
	*resp = (Etcdserverpb__DeleteRangeResponse)ETCDSERVERPB__DELETE_RANGE_RESPONSE__INIT;
	resp->deleted = (int64_t)d.keys.n;
	if (req->prev_kv) {
		resp->prev_kvs = d.keys.v;
		resp->n_prev_kvs = d.keys.n;
	}
	resp->header = header_new(a, w->sub > 0 ? w->rev : w->rev - 1);
	return resp->header ? 0 : -ENOMEM;
}

int mvcc_put_ex(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                const Etcdserverpb__PutRequest *req, Etcdserverpb__PutResponse *resp,
                const struct mvcc_write_opts *opts)
{
	struct wctx w;
	wctx_begin(m, txn, &w, opts);
	int rc = put_in(m, txn, a, &w, req, resp);
	return rc ? rc : wctx_end(m, txn, &w);
}

int mvcc_put(const struct mvcc *m, MDB_txn *txn, struct arena *a,
             const Etcdserverpb__PutRequest *req, Etcdserverpb__PutResponse *resp)
{
	return mvcc_put_ex(m, txn, a, req, resp, NULL);
}

int mvcc_delete_range(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                      const Etcdserverpb__DeleteRangeRequest *req,
                      Etcdserverpb__DeleteRangeResponse *resp)
{
	struct wctx w;
	wctx_begin(m, txn, &w, NULL);
	int rc = delete_in(m, txn, a, &w, req, resp);
	return rc ? rc : wctx_end(m, txn, &w);
}

/* ---- txn ------------------------------------------------------------------ */

struct cmp_acc {
	const struct mvcc *m;
	MDB_txn *txn;
	struct arena *a;
	const Etcdserverpb__Compare *c;
	bool any;
	bool ok;
};

static bool compare_kv(const Etcdserverpb__Compare *c, const Mvccpb__KeyValue *kv)
{
	int r;
	bool has;
	switch (c->target) {
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
		ProtobufCBinaryData v = {0, NULL};
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE)
			v = c->value;
		r = bytes_cmp(kv->value.data, kv->value.len, v.data, v.len);
		break;
	}
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
		has = c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
		r = cmp_i64(kv->create_revision, has ? c->create_revision : 0);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
		has = c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
		r = cmp_i64(kv->mod_revision, has ? c->mod_revision : 0);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
		has = c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
		r = cmp_i64(kv->version, has ? c->version : 0);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
		has = c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
		r = cmp_i64(kv->lease, has ? c->lease : 0);
		break;
	default:
		r = 0;
		break;
	}
	switch (c->result) {
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL: return r == 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL: return r != 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER: return r > 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS: return r < 0;
	default: return true;
	}
}

static int cmp_visit(void *ud, const MDB_val *ukey, const struct ent *e)
{
	struct cmp_acc *ca = ud;
	Mvccpb__KeyValue *kv;
	(void)ukey;
	int rc = kv_fetch(ca->m, ca->txn, ca->a, e, false, &kv);
	if (rc != 0)
		return rc;
	ca->any = true;
	if (!compare_kv(ca->c, kv)) {
		ca->ok = false;
		return 1;
	}
	return 0;
}

/* etcd's applyCompare: every key in range must satisfy c; with no key, a
 * value compare fails and the others compare against zero. */
static int compare_one(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                       const Etcdserverpb__Compare *c, bool *ok)
{
	struct cmp_acc ca = {.m = m, .txn = txn, .a = a, .c = c, .ok = true};
	int rc = range_walk(m, txn, &c->key, &c->range_end, 0, cmp_visit, &ca);
	if (rc != 0)
		return rc;
	if (!ca.any) {
		Mvccpb__KeyValue zero = MVCCPB__KEY_VALUE__INIT;
		ca.ok = c->target != ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE && compare_kv(c, &zero);
	}
	*ok = ca.ok;
	return 0;
}

static size_t txn_count(const Etcdserverpb__TxnRequest *t)
{
	size_t n = 1;
	for (int b = 0; b < 2; b++) {
		size_t nops = b ? t->n_failure : t->n_success;
		Etcdserverpb__RequestOp **ops = b ? t->failure : t->success;
		for (size_t i = 0; i < nops; i++)
			if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
			    ops[i]->request_txn != NULL)
				n += txn_count(ops[i]->request_txn);
	}
	return n;
}

/* The branch each txn of the tree takes, in pre-order, decided before any
 * write (etcd's compareToPath). */
static int txn_path(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                    const Etcdserverpb__TxnRequest *t, bool *path, size_t *pi)
{
	bool ok = true;
	size_t me = (*pi)++;
	for (size_t i = 0; ok && i < t->n_compare; i++) {
		int rc = compare_one(m, txn, a, t->compare[i], &ok);
		if (rc != 0)
			return rc;
	}
	path[me] = ok;
	size_t nops = ok ? t->n_success : t->n_failure;
	Etcdserverpb__RequestOp **ops = ok ? t->success : t->failure;
	for (size_t i = 0; i < nops; i++) {
		if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN ||
		    ops[i]->request_txn == NULL)
			continue;
		int rc = txn_path(m, txn, a, ops[i]->request_txn, path, pi);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* The writes of a txn's taken branches so far, in the order it applies
 * them: what an ignore_value/ignore_lease put sees of its key. */
struct txn_writes {
	const Etcdserverpb__RequestOp **v;
	size_t n, cap;
};

struct txn_check {
	const struct mvcc *m;
	MDB_txn *txn;
	struct arena *a;
	const struct mvcc_write_opts *opts;
	int64_t cur, compacted;
	bool puts; /* check puts (pass 1) or ranges (pass 2) */
	struct txn_writes w; /* pass 1 */
};

static int txn_writes_push(struct arena *a, struct txn_writes *w, const Etcdserverpb__RequestOp *op)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 16;
		const Etcdserverpb__RequestOp **v = arena_alloc(a, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		if (w->n)
			memcpy(v, w->v, w->n * sizeof(*v));
		w->v = v;
		w->cap = cap;
	}
	w->v[w->n++] = op;
	return 0;
}

/* Does delete d remove key k (range_walk's reading of key and range_end)? */
static bool delete_covers(const Etcdserverpb__DeleteRangeRequest *d, const ProtobufCBinaryData *k)
{
	if (d->range_end.len == 0)
		return bytes_cmp(k->data, k->len, d->key.data, d->key.len) == 0;
	if (bytes_cmp(k->data, k->len, d->key.data, d->key.len) < 0)
		return false;
	return is_from_key(&d->range_end) ||
	       bytes_cmp(k->data, k->len, d->range_end.data, d->range_end.len) < 0;
}

/* An ignore_value/ignore_lease put needs its key live when it applies: an
 * earlier delete of the same txn may have removed it (and a later put made
 * it again). etcd's gRPC layer refuses such a txn (DUPLICATE_KEY, see
 * validate.c); apply refuses it too, before its first write. */
static int txn_check_ignore(const struct txn_writes *w, const Etcdserverpb__PutRequest *p)
{
	for (size_t i = w->n; i-- > 0;) {
		const Etcdserverpb__RequestOp *op = w->v[i];
		if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT) {
			const ProtobufCBinaryData *k = &op->request_put->key;
			if (bytes_cmp(k->data, k->len, p->key.data, p->key.len) == 0)
				return 0;
		} else if (delete_covers(op->request_delete_range, &p->key)) {
			return BOLLARD_EKEY_NOT_FOUND;
		}
	}
	return 0; /* as before the txn: put_check saw it live */
}

/* etcd's checkRequests over the taken branches, against the state before
 * the txn: puts first (ignore_* on a missing key, lease), then ranges
 * (future or compacted revision). Everything that can refuse a txn is
 * checked here, before its first write. */
static int txn_check(struct txn_check *tc, const Etcdserverpb__TxnRequest *t, const bool *path,
                     size_t *pi)
{
	bool ok = path[(*pi)++];
	size_t nops = ok ? t->n_success : t->n_failure;
	Etcdserverpb__RequestOp **ops = ok ? t->success : t->failure;
	for (size_t i = 0; i < nops; i++) {
		const Etcdserverpb__RequestOp *op = ops[i];
		const Etcdserverpb__PutRequest *p = op->request_put;
		int rc = 0;
		Mvccpb__KeyValue *prev;
		switch (op->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
			if (op->request_txn != NULL)
				rc = txn_check(tc, op->request_txn, path, pi);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
			if (!tc->puts)
				break;
			rc = put_check(tc->m, tc->txn, tc->a, tc->opts, p, &prev);
			if (rc == 0 && (p->ignore_value || p->ignore_lease))
				rc = txn_check_ignore(&tc->w, p);
			if (rc == 0)
				rc = txn_writes_push(tc->a, &tc->w, op);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
			if (tc->puts)
				rc = txn_writes_push(tc->a, &tc->w, op);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE: {
			int64_t r = op->request_range->revision;
			if (tc->puts || r == 0)
				break;
			if (r > tc->cur)
				rc = BOLLARD_EFUTURE_REV;
			else if (r < tc->compacted)
				rc = BOLLARD_ECOMPACTED;
			break;
		}
		default:
			break;
		}
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int txn_apply(const struct mvcc *m, MDB_txn *txn, struct arena *a, struct wctx *w,
                     const Etcdserverpb__TxnRequest *t, const bool *path, size_t *pi,
                     Etcdserverpb__TxnResponse *resp)
{
	bool ok = path[(*pi)++];
	size_t nops = ok ? t->n_success : t->n_failure;
	Etcdserverpb__RequestOp **ops = ok ? t->success : t->failure;
	resp->succeeded = ok;
	resp->n_responses = nops;
	resp->responses = arena_calloc(a, nops ? nops : 1, sizeof(*resp->responses));
	if (resp->responses == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < nops; i++) {
		const Etcdserverpb__RequestOp *op = ops[i];
		Etcdserverpb__ResponseOp *ro = arena_alloc(a, sizeof(*ro));
		if (ro == NULL)
			return -ENOMEM;
		*ro = (Etcdserverpb__ResponseOp)ETCDSERVERPB__RESPONSE_OP__INIT;
		resp->responses[i] = ro;
		int rc = 0;
		switch (op->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
			ro->response_range = arena_alloc(a, sizeof(*ro->response_range));
			rc = ro->response_range ? range_in(m, txn, a, w, op->request_range,
			                                   ro->response_range)
			                        : -ENOMEM;
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
			ro->response_put = arena_alloc(a, sizeof(*ro->response_put));
			rc = ro->response_put ? put_in(m, txn, a, w, op->request_put, ro->response_put)
			                      : -ENOMEM;
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
			ro->response_delete_range = arena_alloc(a, sizeof(*ro->response_delete_range));
			rc = ro->response_delete_range
			         ? delete_in(m, txn, a, w, op->request_delete_range,
			                     ro->response_delete_range)
			         : -ENOMEM;
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN: {
			Etcdserverpb__TxnResponse *sub = arena_alloc(a, sizeof(*sub));
			if (sub == NULL)
				return -ENOMEM;
			*sub = (Etcdserverpb__TxnResponse)ETCDSERVERPB__TXN_RESPONSE__INIT;
			/* etcd leaves nested txn headers empty. */
			sub->header = header_new(a, 0);
			if (sub->header == NULL)
				return -ENOMEM;
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
			ro->response_txn = sub;
			if (op->request_txn != NULL)
				rc = txn_apply(m, txn, a, w, op->request_txn, path, pi, sub);
			break;
		}
		default:
			break;
		}
		/* txn_check passed: a refusal now would come after a write. */
		if (rc != 0)
			return bollard_err_is_request(rc) ? BOLLARD_EINTERNAL : rc;
	}
	return 0;
}

int mvcc_txn_ex(const struct mvcc *m, MDB_txn *txn, struct arena *a,
                const Etcdserverpb__TxnRequest *req, Etcdserverpb__TxnResponse *resp,
                const struct mvcc_write_opts *opts)
{
	size_t n = txn_count(req), pi = 0;
	bool *path = arena_alloc(a, n * sizeof(*path));
	if (path == NULL)
		return -ENOMEM;
	int rc = txn_path(m, txn, a, req, path, &pi);
	if (rc != 0)
		return rc;
	struct txn_check tc = {
		.m = m, .txn = txn, .a = a, .opts = opts,
		.cur = write_cur_rev(m, txn, opts), .compacted = mvcc_compact_rev(m, txn),
		.puts = true,
	};
	pi = 0;
	rc = txn_check(&tc, req, path, &pi);
	if (rc != 0)
		return rc;
	tc.puts = false;
	pi = 0;
	rc = txn_check(&tc, req, path, &pi);
	if (rc != 0)
		return rc;

	struct wctx w;
	wctx_begin(m, txn, &w, opts);
	*resp = (Etcdserverpb__TxnResponse)ETCDSERVERPB__TXN_RESPONSE__INIT;
	pi = 0;
	rc = txn_apply(m, txn, a, &w, req, path, &pi, resp);
	if (rc == 0)
		rc = wctx_end(m, txn, &w);
	if (rc != 0)
		return rc;
	resp->header = header_new(a, w.sub > 0 ? w.rev : w.rev - 1);
	return resp->header ? 0 : -ENOMEM;
}

int mvcc_txn(const struct mvcc *m, MDB_txn *txn, struct arena *a,
             const Etcdserverpb__TxnRequest *req, Etcdserverpb__TxnResponse *resp)
{
	return mvcc_txn_ex(m, txn, a, req, resp, NULL);
}

/* ---- compaction ----------------------------------------------------------- */

/* A growable byte buffer of copied user keys, each prefixed by its length. */
struct keybuf {
	uint8_t *p;
	size_t len, cap;
};

static int keybuf_add(struct keybuf *b, const void *k, size_t klen)
{
	if (grow(&b->p, &b->cap, b->len + sizeof(uint16_t) + klen, 1, 8192) != 0)
		return -ENOMEM;
	uint16_t l = (uint16_t)klen;
	memcpy(b->p + b->len, &l, sizeof(l));
	memcpy(b->p + b->len + sizeof(l), k, klen);
	b->len += sizeof(l) + klen;
	return 0;
}

static int del_entry(const struct mvcc *m, MDB_txn *txn, const MDB_val *ukey, const uint8_t *ent)
{
	struct ent e;
	uint8_t rk[ENT_LEN];
	ent_decode(ent, &e);
	MDB_val k = ent_revkey(rk, &e);
	int rc = mdb_del(txn, m->rev_db, &k, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return bollard_err_from_lmdb(rc);
	uint8_t copy[ENT_LEN];
	memcpy(copy, ent, ENT_LEN);
	MDB_val kk = *ukey, d = {ENT_LEN, copy};
	rc = mdb_del(txn, m->key_db, &kk, &d);
	return rc == MDB_NOTFOUND ? 0 : bollard_err_from_lmdb(rc);
}

/* Compact one key at rev: drop its entries older than its latest entry at or
 * before rev, and that entry too if it is a tombstone. */
static int compact_key(const struct mvcc *m, MDB_txn *txn, MDB_cursor *c, const MDB_val *ukey,
                       int64_t rev, struct keybuf *scratch)
{
	MDB_val k = *ukey, d;
	struct ent keep;
	bool found;
	int rc = mdb_cursor_get(c, &k, &d, MDB_SET);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc == 0)
		rc = key_entry_at(c, ukey, rev, &keep, &found);
	if (rc != 0 || !found)
		return rc;
	/* Copy the doomed entries out before deleting any. */
	scratch->len = 0;
	k = *ukey;
	rc = mdb_cursor_get(c, &k, &d, MDB_FIRST_DUP);
	while (rc == 0) {
		struct ent e;
		ent_decode(d.mv_data, &e);
		bool older = e.main < keep.main || (e.main == keep.main && e.sub < keep.sub);
		if (!older && !(keep.tomb && e.main == keep.main && e.sub == keep.sub))
			break;
		rc = keybuf_add(scratch, d.mv_data, ENT_LEN);
		if (rc != 0)
			return rc;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT_DUP);
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		return bollard_err_from_lmdb(rc);
	for (size_t off = 0; off < scratch->len; off += sizeof(uint16_t) + ENT_LEN) {
		rc = del_entry(m, txn, ukey, scratch->p + off + sizeof(uint16_t));
		if (rc != 0)
			return rc;
	}
	return 0;
}

#define COMPACT_CHUNK 1024

int mvcc_compact(const struct mvcc *m, MDB_txn *txn, int64_t rev)
{
	int64_t compacted = mvcc_compact_rev(m, txn);
	if (rev <= compacted)
		return BOLLARD_ECOMPACTED;
	if (rev > mvcc_current_rev(m, txn))
		return BOLLARD_EFUTURE_REV;

	struct keybuf keys = {0}, scratch = {0};
	uint8_t pos[ENT_LEN];
	size_t poslen = REV_LEN;
	ent_encode(pos, compacted + 1, 0, false);
	MDB_cursor *rc_cur = NULL, *kc = NULL;
	int rc = key_db_sync(m, txn);
	if (rc != 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, m->key_db, &kc)) != 0)
		goto out;
	for (bool done = false; !done;) {
		/* Collect the keys of up to COMPACT_CHUNK revisions from pos. */
		rc = mdb_cursor_open(txn, m->rev_db, &rc_cur);
		if (rc != 0)
			goto out;
		MDB_val k = {poslen, pos}, d;
		keys.len = 0;
		int n = 0;
		rc = mdb_cursor_get(rc_cur, &k, &d, MDB_SET_RANGE);
		while (rc == 0) {
			if ((int64_t)be64_get(k.mv_data) > rev) {
				done = true;
				break;
			}
			if (n == COMPACT_CHUNK) {
				memcpy(pos, k.mv_data, k.mv_size);
				poslen = k.mv_size;
				break;
			}
			Mvccpb__KeyValue kv;
			if (!kv_decode(d.mv_data, d.mv_size, &kv) || kv.key.len == 0) {
				rc = BOLLARD_EINTERNAL;
				goto out;
			}
			rc = keybuf_add(&keys, kv.key.data, kv.key.len);
			if (rc != 0)
				goto out;
			n++;
			rc = mdb_cursor_get(rc_cur, &k, &d, MDB_NEXT);
		}
		if (rc == MDB_NOTFOUND) {
			done = true;
			rc = 0;
		}
		mdb_cursor_close(rc_cur);
		rc_cur = NULL;
		if (rc != 0)
			goto out;
		for (size_t off = 0; off < keys.len;) {
			uint16_t l;
			memcpy(&l, keys.p + off, sizeof(l));
			MDB_val uk = {l, keys.p + off + sizeof(l)};
			off += sizeof(l) + l;
			rc = compact_key(m, txn, kc, &uk, rev, &scratch);
			if (rc != 0)
				goto out;
		}
	}
	rc = meta_put_i64(m, txn, META_COMPACT, sizeof(META_COMPACT) - 1, rev);
out:
	if (rc_cur != NULL)
		mdb_cursor_close(rc_cur);
	if (kc != NULL)
		mdb_cursor_close(kc);
	free(keys.p);
	free(scratch.p);
	return bollard_err_from_lmdb(rc);
}

/* ---- hash ----------------------------------------------------------------- */

static void crc32c_table(uint32_t t[256])
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int j = 0; j < 8; j++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
		t[i] = c;
	}
}

static uint32_t crc32c_update(const uint32_t t[256], uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;
	crc = ~crc;
	while (n--)
		crc = t[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

int mvcc_hash_kv(const struct mvcc *m, MDB_txn *txn, int64_t rev, uint32_t *hash,
                 int64_t *compact_rev, int64_t *hash_rev)
{
	int64_t cur = mvcc_current_rev(m, txn), compacted = mvcc_compact_rev(m, txn);
	*compact_rev = compacted;
	*hash_rev = cur;
	*hash = 0;
	if (rev > 0 && rev <= compacted)
		return BOLLARD_ECOMPACTED;
	if (rev > cur)
		return BOLLARD_EFUTURE_REV;
	if (rev <= 0)
		rev = cur;
	*hash_rev = rev;

	uint32_t t[256], crc = 0;
	crc32c_table(t);
	crc = crc32c_update(t, crc, "key", 3);
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, m->rev_db, &c);
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	MDB_val k, d;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if ((int64_t)be64_get(k.mv_data) > rev)
			break;
		crc = crc32c_update(t, crc, k.mv_data, k.mv_size);
		crc = crc32c_update(t, crc, d.mv_data, d.mv_size);
	}
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return bollard_err_from_lmdb(rc);
	*hash = crc;
	return 0;
}

/* ---- events (watch) ------------------------------------------------------- */

/* The packed KeyValue of key as of rev (the entry visible at rev), or
 * *found false if the key had none or was deleted. */
static int kv_raw_at(const struct mvcc *m, MDB_txn *txn, MDB_cursor *kc,
                     const ProtobufCBinaryData *key, int64_t rev, MDB_val *out, bool *found)
{
	MDB_val k = {key->len, key->data}, d;
	struct ent e;
	*found = false;
	if (rev <= 0 || key->len == 0 || key->len > MAX_KEY)
		return 0;
	int rc = mdb_cursor_get(kc, &k, &d, MDB_SET);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc == 0)
		rc = key_entry_at(kc, &k, rev, &e, found);
	if (rc != 0 || !*found)
		return bollard_err_from_lmdb(rc);
	if (e.tomb) {
		*found = false;
		return 0;
	}
	uint8_t rk[ENT_LEN];
	MDB_val rkv = ent_revkey(rk, &e);
	rc = mdb_get(txn, m->rev_db, &rkv, out);
	if (rc == MDB_NOTFOUND) {
		*found = false;
		return 0;
	}
	return bollard_err_from_lmdb(rc);
}

int mvcc_read_events(const struct mvcc *m, MDB_txn *txn, int64_t from, int64_t to,
                     size_t max_events, bool want_prev, mvcc_event_fn fn, void *ud,
                     int64_t *next)
{
	*next = from;
	if (from > to)
		return 0;
	if (from < mvcc_compact_rev(m, txn))
		return BOLLARD_ECOMPACTED;
	MDB_cursor *c = NULL, *kc = NULL;
	int rc = want_prev ? key_db_sync(m, txn) : 0;
	if (rc != 0)
		return rc;
	rc = mdb_cursor_open(txn, m->rev_db, &c);
	if (rc == 0 && want_prev)
		rc = mdb_cursor_open(txn, m->key_db, &kc);
	if (rc != 0)
		goto out;
	uint8_t start[ENT_LEN];
	ent_encode(start, from, 0, false);
	MDB_val k = {REV_LEN, start}, d;
	size_t n = 0;
	int64_t last = from - 1;
	bool cut = false;
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	while (rc == 0) {
		struct mvcc_event ev = {0};
		if (k.mv_size < REV_LEN) {
			rc = BOLLARD_EINTERNAL;
			goto out;
		}
		ev.main = (int64_t)be64_get(k.mv_data);
		if (ev.main > to)
			break;
		if (max_events && n >= max_events && ev.main != last) {
			cut = true;
			break;
		}
		ev.sub = (int64_t)be64_get((const uint8_t *)k.mv_data + 8);
		ev.is_delete = k.mv_size == ENT_LEN && ((const uint8_t *)k.mv_data)[16] == TOMB;
		ev.kv_raw = d.mv_data;
		ev.kv_len = d.mv_size;
		if (!kv_decode(d.mv_data, d.mv_size, &ev.kv)) {
			rc = BOLLARD_EINTERNAL;
			goto out;
		}
		if (ev.is_delete)
			ev.kv.mod_revision = ev.main;
		bool create = !ev.is_delete && ev.kv.create_revision == ev.kv.mod_revision;
		if (want_prev && !create) {
			MDB_val pv;
			bool found;
			rc = kv_raw_at(m, txn, kc, &ev.kv.key, ev.main - 1, &pv, &found);
			if (rc != 0)
				goto out;
			if (found) {
				ev.prev_raw = pv.mv_data;
				ev.prev_len = pv.mv_size;
			}
		}
		last = ev.main;
		n++;
		if ((rc = fn(ud, &ev)) != 0)
			goto out;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	if (rc == MDB_NOTFOUND || rc == 0) {
		rc = 0;
		/* Everything up to the last revision read (or to, when the history
		 * simply ended) has been seen. */
		*next = cut ? last + 1 : to + 1;
	}
out:
	if (kc != NULL)
		mdb_cursor_close(kc);
	if (c != NULL)
		mdb_cursor_close(c);
	return bollard_err_from_lmdb(rc);
}

/* ---- import ---------------------------------------------------------------- */

int mvcc_import_entry(const struct mvcc *m, MDB_txn *txn, int64_t main, int64_t sub, bool tomb,
                      const uint8_t *packed, size_t len)
{
	Mvccpb__KeyValue *kv = mvccpb__key_value__unpack(NULL, len, packed);
	int64_t old_lease = 0;
	int rc;

	if (kv == NULL)
		return BOLLARD_EINTERNAL;
	if (kv->key.len == 0) {
		rc = BOLLARD_EINTERNAL;
		goto out;
	}
	if (kv->key.len > MAX_KEY) {
		rc = BOLLARD_EKEY_TOO_LONG;
		goto out;
	}
	struct live old;
	bool live;
	if ((rc = live_get(m, txn, &kv->key, &old, &live)) != 0)
		goto out;
	if (live)
		old_lease = old.lease;
	struct ent e = {main, sub, tomb};
	uint8_t rk[ENT_LEN], ent[ENT_LEN];
	MDB_val k = ent_revkey(rk, &e), d;
	if (tomb) {
		Mvccpb__KeyValue t = MVCCPB__KEY_VALUE__INIT;
		t.key = kv->key;
		t.mod_revision = main;
		d = (MDB_val){mvccpb__key_value__get_packed_size(&t), NULL};
		if ((rc = mdb_put(txn, m->rev_db, &k, &d, MDB_RESERVE)) == 0)
			mvccpb__key_value__pack(&t, d.mv_data);
	} else {
		d = (MDB_val){len, (void *)packed};
		rc = mdb_put(txn, m->rev_db, &k, &d, 0);
	}
	if (rc != 0) {
		rc = bollard_err_from_lmdb(rc);
		goto out;
	}
	ent_encode(ent, main, sub, tomb);
	k = (MDB_val){kv->key.len, kv->key.data};
	d = (MDB_val){ENT_LEN, ent};
	if ((rc = key_db_sync(m, txn)) != 0)
		goto out;
	if ((rc = mdb_put(txn, m->key_db, &k, &d, 0)) != 0) {
		rc = bollard_err_from_lmdb(rc);
		goto out;
	}
	rc = live_record(m, txn, &kv->key, &e, kv);
	if (rc == 0)
		rc = lease_index(m, txn, &kv->key, old_lease, tomb ? 0 : kv->lease);
out:
	mvccpb__key_value__free_unpacked(kv, NULL);
	return rc;
}

int mvcc_import_set_revs(const struct mvcc *m, MDB_txn *txn, int64_t current, int64_t compact)
{
	int rc = rev_store(m, txn, current);
	if (rc == 0 && compact > 0)
		rc = meta_put_i64(m, txn, META_COMPACT, sizeof(META_COMPACT) - 1, compact);
	return rc;
}
