/* alarm.c - durable alarm table (see alarm.h).
 *
 * Each raised alarm is one meta_db entry with an empty value, keyed
 * "alarm/" + type (BE32) + member id (BE64), so the alarms of one type are
 * one contiguous key range. */
#include "core/alarm.h"

#include <errno.h>
#include <string.h>

#include "core/errors.h"

#define PREFIX "alarm/"
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define KEY_LEN (PREFIX_LEN + 4 + 8)

static size_t alarm_key(uint8_t *buf, int type, uint64_t member, bool with_member)
{
	memcpy(buf, PREFIX, PREFIX_LEN);
	uint32_t t = (uint32_t)type;
	for (int i = 0; i < 4; i++)
		buf[PREFIX_LEN + i] = (uint8_t)(t >> (24 - 8 * i));
	if (!with_member)
		return PREFIX_LEN + 4;
	for (int i = 0; i < 8; i++)
		buf[PREFIX_LEN + 4 + i] = (uint8_t)(member >> (56 - 8 * i));
	return KEY_LEN;
}


int alarm_activate(const struct mvcc *m, MDB_txn *txn, uint64_t member, int type, bool *added)
{
	uint8_t buf[KEY_LEN];
	MDB_val k = {alarm_key(buf, type, member, true), buf}, d = {0, NULL};
	int rc = mdb_put(txn, m->meta_db, &k, &d, MDB_NOOVERWRITE);
	*added = rc == 0;
	return rc == MDB_KEYEXIST ? 0 : bollard_err_from_lmdb(rc);
}

int alarm_deactivate(const struct mvcc *m, MDB_txn *txn, uint64_t member, int type,
                     bool *removed)
{
	uint8_t buf[KEY_LEN];
	MDB_val k = {alarm_key(buf, type, member, true), buf};
	int rc = mdb_del(txn, m->meta_db, &k, NULL);
	*removed = rc == 0;
	return rc == MDB_NOTFOUND ? 0 : bollard_err_from_lmdb(rc);
}

/* Visit alarms of type (NONE: all); fn returns nonzero to stop. */
static int alarm_scan(const struct mvcc *m, MDB_txn *txn, int type,
                      int (*fn)(void *ud, int type, uint64_t member), void *ud)
{
	uint8_t buf[KEY_LEN];
	size_t plen = type == ETCDSERVERPB__ALARM_TYPE__NONE ? PREFIX_LEN
	                                                     : alarm_key(buf, type, 0, false);
	memcpy(buf, PREFIX, PREFIX_LEN);
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, m->meta_db, &c);
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	MDB_val k = {plen, buf}, d;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		const uint8_t *p = k.mv_data;
		if (k.mv_size != KEY_LEN || memcmp(p, buf, plen) != 0)
			break;
		uint32_t t = 0;
		uint64_t mem = 0;
		for (int i = 0; i < 4; i++)
			t = (t << 8) | p[PREFIX_LEN + i];
		for (int i = 0; i < 8; i++)
			mem = (mem << 8) | p[PREFIX_LEN + 4 + i];
		rc = fn(ud, (int)t, mem);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(c);
	if (rc == MDB_NOTFOUND || rc == 1)
		rc = 0;
	return bollard_err_from_lmdb(rc);
}

static int found_one(void *ud, int type, uint64_t member)
{
	(void)type;
	(void)member;
	*(bool *)ud = true;
	return 1;
}

bool alarm_active(const struct mvcc *m, MDB_txn *txn, int type)
{
	bool found = false;
	if (alarm_scan(m, txn, type, found_one, &found) != 0)
		return false;
	return found;
}

struct list_acc {
	struct arena *a;
	Etcdserverpb__AlarmMember **v;
	size_t n, cap;
};

static int list_one(void *ud, int type, uint64_t member)
{
	struct list_acc *l = ud;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 8;
		Etcdserverpb__AlarmMember **v = arena_alloc(l->a, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		if (l->n)
			memcpy(v, l->v, l->n * sizeof(*v));
		l->v = v;
		l->cap = cap;
	}
	Etcdserverpb__AlarmMember *am = arena_alloc(l->a, sizeof(*am));
	if (am == NULL)
		return -ENOMEM;
	*am = (Etcdserverpb__AlarmMember)ETCDSERVERPB__ALARM_MEMBER__INIT;
	am->memberid = member;
	am->alarm = (Etcdserverpb__AlarmType)type;
	l->v[l->n++] = am;
	return 0;
}

int alarm_list(const struct mvcc *m, MDB_txn *txn, int type, struct arena *a,
               Etcdserverpb__AlarmMember ***out, size_t *n)
{
	struct list_acc l = {.a = a};
	int rc = alarm_scan(m, txn, type, list_one, &l);
	*out = l.v;
	*n = l.n;
	return rc;
}
