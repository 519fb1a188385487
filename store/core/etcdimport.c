/* etcdimport.c - etcd 3.4 bbolt snapshot -> LMDB store (see etcdimport.h). */
#include "core/etcdimport.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/bbolt_etcd.h"
#include "core/be64.h"
#include "core/errors.h"
#include "core/pbwire.h"
#include "core/auth.h"
#include "core/leasedb.h"

static int open_bucket(struct bbolt_db *db, const char *name, struct bbolt_bucket *out,
                       char *err, size_t errlen)
{
	struct bbolt_bucket root;
	int rc;

	bbolt_root_bucket(db, &root);
	rc = bbolt_bucket_open(&root, name, strlen(name), out);
	if (rc == -ENOENT)
		return -ENOENT;
	if (rc != 0)
		snprintf(err, errlen, "bucket %s: %s", name,
		         rc == -ENOTDIR ? "not a bucket" : db->err);
	return rc;
}

static int import_keys(struct bbolt_db *db, const struct mvcc *m, MDB_txn *txn,
                       struct etcdimport_stats *st, char *err, size_t errlen)
{
	struct bbolt_bucket b;
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	int rc = open_bucket(db, "key", &b, err, errlen), more;

	if (rc == -ENOENT) {
		snprintf(err, errlen, "not an etcd snapshot: no \"key\" bucket");
		return BBOLT_ECORRUPT;
	}
	if (rc != 0)
		return rc;
	bbolt_cursor_init(&c, &b);
	for (more = bbolt_cursor_first(&c, &kv); more == 1; more = bbolt_cursor_next(&c, &kv)) {
		int64_t main_rev, sub_rev;
		bool tomb;
		if (kv.is_bucket ||
		    etcd_revkey_get(kv.key, kv.klen, &main_rev, &sub_rev, &tomb) != 0 ||
		    main_rev <= 0 || sub_rev < 0) {
			snprintf(err, errlen, "bad entry in bucket key (not a revision key)");
			return BBOLT_ECORRUPT;
		}
		rc = mvcc_import_entry(m, txn, main_rev, sub_rev, tomb, kv.val, kv.vlen);
		if (rc != 0) {
			snprintf(err, errlen, "revision %" PRId64 "_%" PRId64 ": %s", main_rev, sub_rev,
			         rc == BOLLARD_EINTERNAL ? "not a mvccpb.KeyValue with a key"
			                                 : bollard_strerror(rc));
			return rc;
		}
		st->revisions++;
		st->tombstones += tomb;
		if (main_rev > st->current_rev)
			st->current_rev = main_rev;
	}
	if (more < 0) {
		snprintf(err, errlen, "bucket key: %s", db->err);
		return more;
	}
	return 0;
}

/* leasepb.Lease {1: ID, 2: TTL, 3: RemainingTTL}; unknown fields skipped. */
static bool lease_decode(const uint8_t *p, size_t len, struct lease_rec *r)
{
	const uint8_t *end = p + len, *b = NULL;
	*r = (struct lease_rec){0};
	while (p < end) {
		unsigned field, wt;
		uint64_t v = 0;
		if (!pbwire_field_next(&p, end, &field, &wt, &v, &b))
			return false;
		if (wt != PBWIRE_VARINT)
			continue;
		if (field == 1)
			r->id = (int64_t)v;
		else if (field == 2)
			r->ttl = (int64_t)v;
		else if (field == 3)
			r->remaining_ttl = (int64_t)v;
	}
	return true;
}

static int import_leases(struct bbolt_db *db, const struct mvcc *m, MDB_txn *txn,
                         struct etcdimport_stats *st, char *err, size_t errlen)
{
	struct bbolt_bucket b;
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	int rc = open_bucket(db, "lease", &b, err, errlen), more;

	if (rc == -ENOENT)
		return 0;
	if (rc != 0)
		return rc;
	bbolt_cursor_init(&c, &b);
	for (more = bbolt_cursor_first(&c, &kv); more == 1; more = bbolt_cursor_next(&c, &kv)) {
		struct lease_rec r;
		if (kv.is_bucket || kv.klen != 8 || !lease_decode(kv.val, kv.vlen, &r) ||
		    r.id != (int64_t)be64_get(kv.key) || r.id <= 0) {
			snprintf(err, errlen, "bad entry in bucket lease");
			return BBOLT_ECORRUPT;
		}
		if ((rc = leasedb_put(m, txn, &r)) != 0) {
			snprintf(err, errlen, "lease %016" PRIx64 ": %s", (uint64_t)r.id,
			         bollard_strerror(rc));
			return rc;
		}
		st->leases++;
	}
	if (more < 0) {
		snprintf(err, errlen, "bucket lease: %s", db->err);
		return more;
	}
	return 0;
}

/* authUsers / authRoles: each record as etcd stored it (packed authpb.User
 * or authpb.Role under its name; one that does not decode is refused). */
static int import_auth_records(struct bbolt_db *db, const struct mvcc *m, MDB_txn *txn,
                               enum auth_kind kind, uint64_t *n, char *err, size_t errlen)
{
	const char *name = kind == AUTH_USERS ? "authUsers" : "authRoles";
	struct bbolt_bucket b;
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	int rc = open_bucket(db, name, &b, err, errlen), more;

	if (rc == -ENOENT)
		return 0;
	if (rc != 0)
		return rc;
	bbolt_cursor_init(&c, &b);
	for (more = bbolt_cursor_first(&c, &kv); more == 1; more = bbolt_cursor_next(&c, &kv)) {
		if (kv.is_bucket || kv.klen == 0) {
			snprintf(err, errlen, "bad entry in bucket %s", name);
			return BBOLT_ECORRUPT;
		}
		rc = auth_import_record(m, txn, kind, kv.key, kv.klen, kv.val, kv.vlen);
		if (rc != 0) {
			snprintf(err, errlen, "bucket %s: entry %.*s: %s", name,
			         (int)(kv.klen > 64 ? 64 : kv.klen), (const char *)kv.key,
			         rc == BOLLARD_EINTERNAL ? "not an auth record" : bollard_strerror(rc));
			return rc == BOLLARD_EINTERNAL ? BBOLT_ECORRUPT : rc;
		}
		(*n)++;
	}
	if (more < 0) {
		snprintf(err, errlen, "bucket %s: %s", name, db->err);
		return more;
	}
	return 0;
}

/* auth: authEnabled (1 byte) and authRevision (u64 BE). */
static int import_auth_state(struct bbolt_db *db, const struct mvcc *m, MDB_txn *txn,
                             struct etcdimport_stats *st, char *err, size_t errlen)
{
	struct bbolt_bucket b;
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	int rc = open_bucket(db, "auth", &b, err, errlen), more, flag = -1;

	st->auth_revision = 1;
	if (rc == -ENOENT)
		return 0;
	if (rc != 0)
		return rc;
	bbolt_cursor_init(&c, &b);
	for (more = bbolt_cursor_first(&c, &kv); more == 1; more = bbolt_cursor_next(&c, &kv)) {
		if (kv.is_bucket)
			continue;
		if (kv.klen == 11 && memcmp(kv.key, "authEnabled", 11) == 0 && kv.vlen == 1)
			flag = st->auth_enabled = kv.val[0] == 1;
		else if (kv.klen == 12 && memcmp(kv.key, "authRevision", 12) == 0 && kv.vlen == 8)
			st->auth_revision = be64_get(kv.val);
	}
	if (more < 0) {
		snprintf(err, errlen, "bucket auth: %s", db->err);
		return more;
	}
	rc = auth_import_state(m, txn, flag, st->auth_revision);
	if (rc != 0)
		snprintf(err, errlen, "auth: %s", bollard_strerror(rc));
	return rc;
}

/* meta finishedCompactRev: a revision key (17 bytes; etcd writes main only). */
static int read_compact_rev(struct bbolt_db *db, int64_t *out, char *err, size_t errlen)
{
	static const char name[] = "finishedCompactRev";
	struct bbolt_bucket b;
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	int rc = open_bucket(db, "meta", &b, err, errlen), more;

	*out = 0;
	if (rc == -ENOENT)
		return 0;
	if (rc != 0)
		return rc;
	bbolt_cursor_init(&c, &b);
	for (more = bbolt_cursor_first(&c, &kv); more == 1; more = bbolt_cursor_next(&c, &kv)) {
		if (kv.is_bucket || kv.klen != sizeof(name) - 1 || memcmp(kv.key, name, kv.klen) != 0)
			continue;
		int64_t main_rev, sub_rev;
		bool tomb;
		if (etcd_revkey_get(kv.val, kv.vlen, &main_rev, &sub_rev, &tomb) != 0 ||
		    main_rev < 0) {
			snprintf(err, errlen, "bad meta finishedCompactRev");
			return BBOLT_ECORRUPT;
		}
		*out = main_rev;
	}
	if (more < 0) {
		snprintf(err, errlen, "bucket meta: %s", db->err);
		return more;
	}
	return 0;
}

int etcdimport_run(struct bbolt_db *db, const struct mvcc *m, MDB_txn *txn,
                   struct etcdimport_stats *stats, char *err, size_t errlen)
{
	struct etcdimport_stats st = {0};
	int rc;

	err[0] = '\0';
	if ((rc = read_compact_rev(db, &st.compact_rev, err, errlen)) == 0 &&
	    (rc = import_keys(db, m, txn, &st, err, errlen)) == 0 &&
	    (rc = import_leases(db, m, txn, &st, err, errlen)) == 0 &&
	    (rc = import_auth_records(db, m, txn, AUTH_USERS, &st.users, err, errlen)) == 0 &&
	    (rc = import_auth_records(db, m, txn, AUTH_ROLES, &st.roles, err, errlen)) == 0 &&
	    (rc = import_auth_state(db, m, txn, &st, err, errlen)) == 0) {
		if (st.current_rev < st.compact_rev)
			st.current_rev = st.compact_rev;
		if (st.current_rev < 1)
			st.current_rev = 1;
		rc = mvcc_import_set_revs(m, txn, st.current_rev, st.compact_rev);
		if (rc != 0)
			snprintf(err, errlen, "meta: %s", bollard_strerror(rc));
	}
	if (stats)
		*stats = st;
	return rc;
}
