/* etcdsnap.c - LMDB store <-> etcd 3.4 bbolt layout (see etcdsnap.h). */
#include "core/etcdsnap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alarm.h"
#include "core/arena.h"
#include "core/auth.h"
#include "core/bbolt_etcd.h"
#include "core/be64.h"
#include "core/errors.h"
#include "core/leasedb.h"
#include "core/pbwire.h"
#include "kv.pb-c.h"

/* ------------------------------------------------------------------ helpers */

struct sbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void sb_add(struct sbuf *b, const void *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* A JSON string as Go's encoding/json writes it (HTML-safe escaping). */
static void sb_json(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	sb_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		char esc[7];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			sb_add(b, esc, 2);
		} else if (c == '\n') {
			sb_add(b, "\\n", 2);
		} else if (c == '\r') {
			sb_add(b, "\\r", 2);
		} else if (c == '\t') {
			sb_add(b, "\\t", 2);
		} else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			sb_add(b, esc, 6);
		} else if (c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
			sb_add(b, p[2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
			p += 2;
		} else {
			sb_add(b, &c, 1);
		}
	}
	sb_add(b, "\"", 1);
}

static void sb_json_list(struct sbuf *b, const char *const *v, size_t n)
{
	sb_add(b, "[", 1);
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_add(b, ",", 1);
		sb_json(b, v[i]);
	}
	sb_add(b, "]", 1);
}

/* leasepb.Lease {1: ID, 2: TTL, 3: RemainingTTL}, zero fields omitted. */
static size_t lease_pack(uint8_t *p, const struct lease_rec *r)
{
	uint8_t *e = pbwire_put_varint_field(p, 1, (uint64_t)r->id);
	e = pbwire_put_varint_field(e, 2, (uint64_t)r->ttl);
	e = pbwire_put_varint_field(e, 3, (uint64_t)r->remaining_ttl);
	return (size_t)(e - p);
}

static int put_str(struct bbolt_writer *w, const char *k, const void *v, size_t vlen)
{
	return bbolt_writer_put(w, k, strlen(k), v, vlen);
}

static int begin(struct bbolt_writer *w, const char *name)
{
	return bbolt_writer_begin_bucket(w, name, strlen(name));
}

static int empty_bucket(struct bbolt_writer *w, const char *name)
{
	int rc = begin(w, name);
	return rc ? rc : bbolt_writer_end_bucket(w, 0);
}

/* ------------------------------------------------------------------- export */

struct packed {
	uint8_t *p;
	size_t len;
};

static int cmp_packed(const void *a, const void *b)
{
	const struct packed *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->p, y->p, n);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int export_alarms(const struct mvcc *m, MDB_txn *txn, struct bbolt_writer *w)
{
	Etcdserverpb__AlarmMember **al = NULL;
	size_t n = 0;
	struct arena a;
	struct packed *v = NULL;
	int rc;

	arena_init(&a, 1024);
	rc = alarm_list(m, txn, ETCDSERVERPB__ALARM_TYPE__NONE, &a, &al, &n);
	if (rc == 0 && n > 0) {
		v = arena_calloc(&a, n, sizeof(*v));
		if (v == NULL)
			rc = -ENOMEM;
		for (size_t i = 0; rc == 0 && i < n; i++) {
			v[i].len = etcdserverpb__alarm_member__get_packed_size(al[i]);
			v[i].p = arena_alloc(&a, v[i].len + 1);
			if (v[i].p == NULL)
				rc = -ENOMEM;
			else
				etcdserverpb__alarm_member__pack(al[i], v[i].p);
		}
		if (rc == 0)
			qsort(v, n, sizeof(*v), cmp_packed);
	}
	if (rc == 0)
		rc = begin(w, "alarm");
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (i == 0 || cmp_packed(&v[i - 1], &v[i]) != 0)
			rc = bbolt_writer_put(w, v[i].p, v[i].len, "", 0);
	if (rc == 0)
		rc = bbolt_writer_end_bucket(w, 0);
	arena_free(&a);
	return rc;
}

struct auth_export {
	struct bbolt_writer *w;
	int rc;
};

static int auth_record(void *ud, const uint8_t *name, size_t nlen, const uint8_t *rec,
                       size_t rlen)
{
	struct auth_export *x = ud;
	x->rc = bbolt_writer_put(x->w, name, nlen, rec, rlen);
	return x->rc != 0;
}

/* auth (authEnabled once auth was ever enabled, authRevision), authRoles and
 * authUsers: the records as etcd stores them. */
static int export_auth(const struct mvcc *m, MDB_txn *txn, struct bbolt_writer *w)
{
	static const char *const names[] = {"authRoles", "authUsers"};
	static const enum auth_kind kinds[] = {AUTH_ROLES, AUTH_USERS};
	uint8_t rev[8], on = auth_enabled(m, txn) ? 1 : 0;
	int rc;

	be64_put(rev, auth_revision(m, txn));
	if ((rc = begin(w, "auth")) != 0 ||
	    (auth_flag_stored(m, txn) && (rc = put_str(w, "authEnabled", &on, 1)) != 0) ||
	    (rc = put_str(w, "authRevision", rev, 8)) != 0 || (rc = bbolt_writer_end_bucket(w, 0)) != 0)
		return rc;
	for (int i = 0; i < 2; i++) {
		struct auth_export x = {w, 0};
		if ((rc = begin(w, names[i])) != 0)
			return rc;
		rc = auth_foreach(m, txn, kinds[i], auth_record, &x);
		if (x.rc != 0)
			rc = x.rc;
		if (rc != 0 || (rc = bbolt_writer_end_bucket(w, 0)) != 0)
			return rc;
	}
	return 0;
}

static int export_cluster(struct bbolt_writer *w)
{
	int rc = begin(w, "cluster");
	if (rc == 0)
		rc = put_str(w, "clusterVersion", "3.4.0", 5);
	return rc ? rc : bbolt_writer_end_bucket(w, 0);
}

/* A tombstone's KeyValue as etcd writes it: only the key. */
static int tombstone_value(const MDB_val *d, uint8_t **out, size_t *len)
{
	Mvccpb__KeyValue *kv = mvccpb__key_value__unpack(NULL, d->mv_size, d->mv_data);
	Mvccpb__KeyValue t = MVCCPB__KEY_VALUE__INIT;
	if (kv == NULL)
		return BOLLARD_EINTERNAL;
	t.key = kv->key;
	*len = mvccpb__key_value__get_packed_size(&t);
	*out = malloc(*len + 1);
	if (*out == NULL) {
		mvccpb__key_value__free_unpacked(kv, NULL);
		return -ENOMEM;
	}
	mvccpb__key_value__pack(&t, *out);
	mvccpb__key_value__free_unpacked(kv, NULL);
	return 0;
}

static int export_keys(const struct mvcc *m, MDB_txn *txn, struct bbolt_writer *w,
                       struct etcdsnap_stats *st)
{
	MDB_cursor *cur;
	MDB_val k, d;
	int rc = begin(w, "key"), op = MDB_FIRST, mrc;

	if (rc != 0)
		return rc;
	if ((mrc = mdb_cursor_open(txn, m->rev_db, &cur)) != 0)
		return bollard_err_from_lmdb(mrc);
	while ((mrc = mdb_cursor_get(cur, &k, &d, op)) == 0) {
		const uint8_t *kb = k.mv_data;
		uint8_t rk[ETCD_REVKEY_MARKED_LEN];
		bool tomb;
		size_t kl;

		op = MDB_NEXT;
		if (k.mv_size != 16 && !(k.mv_size == 17 && kb[16] == 't')) {
			rc = BOLLARD_EINTERNAL;
			break;
		}
		tomb = k.mv_size == 17;
		kl = etcd_revkey_put(rk, (int64_t)be64_get(kb), (int64_t)be64_get(kb + 8), tomb);
		if (tomb) {
			uint8_t *v;
			size_t vl;
			if ((rc = tombstone_value(&d, &v, &vl)) != 0)
				break;
			rc = bbolt_writer_put(w, rk, kl, v, vl);
			free(v);
			st->tombstones++;
		} else {
			rc = bbolt_writer_put(w, rk, kl, d.mv_data, d.mv_size);
		}
		if (rc != 0)
			break;
		st->revisions++;
	}
	mdb_cursor_close(cur);
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = bollard_err_from_lmdb(mrc);
	return rc ? rc : bbolt_writer_end_bucket(w, 0);
}

struct lease_ctx {
	struct bbolt_writer *w;
	struct etcdsnap_stats *st;
	int rc;
};

static int lease_one(void *ud, const struct lease_rec *r)
{
	struct lease_ctx *c = ud;
	uint8_t k[8], v[40];
	be64_put(k, (uint64_t)r->id);
	c->rc = bbolt_writer_put(c->w, k, 8, v, lease_pack(v, r));
	c->st->leases++;
	return c->rc != 0;
}

static int export_leases(const struct mvcc *m, MDB_txn *txn, struct bbolt_writer *w,
                         struct etcdsnap_stats *st)
{
	struct lease_ctx c = {w, st, 0};
	int rc = begin(w, "lease");
	if (rc != 0)
		return rc;
	rc = leasedb_foreach(m, txn, lease_one, &c);
	if (c.rc != 0)
		rc = c.rc;
	return rc ? rc : bbolt_writer_end_bucket(w, 0);
}

struct member_json {
	char key[24];
	struct sbuf json;
};

static int cmp_member(const void *a, const void *b)
{
	return strcmp(((const struct member_json *)a)->key, ((const struct member_json *)b)->key);
}

static int export_members(const struct etcdsnap_export_opts *o, struct bbolt_writer *w)
{
	size_t n = o ? o->n_members : 0;
	struct member_json *v = calloc(n ? n : 1, sizeof(*v));
	int rc = 0;

	if (v == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct etcdsnap_member *mb = &o->members[i];
		char num[32];
		snprintf(v[i].key, sizeof(v[i].key), "%" PRIx64, mb->id);
		snprintf(num, sizeof(num), "%" PRIu64, mb->id);
		sb_str(&v[i].json, "{\"id\":");
		sb_str(&v[i].json, num);
		sb_str(&v[i].json, ",\"peerURLs\":");
		if (mb->n_peer_urls)
			sb_json_list(&v[i].json, mb->peer_urls, mb->n_peer_urls);
		else
			sb_str(&v[i].json, "null");
		if (mb->name && *mb->name) {
			sb_str(&v[i].json, ",\"name\":");
			sb_json(&v[i].json, mb->name);
		}
		if (mb->n_client_urls) {
			sb_str(&v[i].json, ",\"clientURLs\":");
			sb_json_list(&v[i].json, mb->client_urls, mb->n_client_urls);
		}
		sb_str(&v[i].json, "}");
		if (v[i].json.err)
			rc = v[i].json.err;
	}
	if (rc == 0) {
		qsort(v, n, sizeof(*v), cmp_member);
		rc = begin(w, "members");
	}
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (i == 0 || strcmp(v[i - 1].key, v[i].key) != 0)
			rc = put_str(w, v[i].key, v[i].json.p, v[i].json.len);
	if (rc == 0)
		rc = bbolt_writer_end_bucket(w, 0);
	if (rc == 0)
		rc = empty_bucket(w, "members_removed");
	for (size_t i = 0; i < n; i++)
		free(v[i].json.p);
	free(v);
	return rc;
}

static int export_meta(struct bbolt_writer *w, const struct etcdsnap_stats *st)
{
	uint8_t ci[8], cr[ETCD_REVKEY_MARKED_LEN];
	int rc = begin(w, "meta");

	be64_put(ci, st->consistent_index);
	if (rc == 0)
		rc = put_str(w, "consistent_index", ci, 8);
	if (rc == 0 && st->compact_rev > 0) {
		size_t n = etcd_revkey_put(cr, st->compact_rev, 0, false);
		rc = put_str(w, "finishedCompactRev", cr, n);
		if (rc == 0)
			rc = put_str(w, "scheduledCompactRev", cr, n);
	}
	return rc ? rc : bbolt_writer_end_bucket(w, 0);
}

int etcdsnap_export(const struct mvcc *m, MDB_txn *txn, const struct etcdsnap_export_opts *o,
                    struct bbolt_writer *w, struct etcdsnap_stats *stats)
{
	struct etcdsnap_stats st = {0};
	int rc;

	st.current_rev = mvcc_current_rev(m, txn);
	st.compact_rev = mvcc_compact_rev(m, txn);
	st.consistent_index = mvcc_applied_index(m, txn);
	/* Top-level buckets in key order: alarm auth authRoles authUsers cluster key
	 * lease members members_removed meta. */
	if ((rc = export_alarms(m, txn, w)) == 0 && (rc = export_auth(m, txn, w)) == 0 &&
	    (rc = export_cluster(w)) == 0 && (rc = export_keys(m, txn, w, &st)) == 0 &&
	    (rc = export_leases(m, txn, w, &st)) == 0 && (rc = export_members(o, w)) == 0 &&
	    (rc = export_meta(w, &st)) == 0)
		rc = bbolt_writer_finish(w, 1);
	if (stats)
		*stats = st;
	return rc;
}
