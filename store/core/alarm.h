/* alarm.h - the cluster's alarms (NOSPACE, CORRUPT), kept durably in the
 * MVCC meta database so every member agrees on them after a restart or a
 * snapshot. Applied through raft like any write; see apply.c. */
#ifndef BOLLARD_CORE_ALARM_H
#define BOLLARD_CORE_ALARM_H

#include <stdbool.h>
#include <stdint.h>

#include <lmdb.h>

#include "core/arena.h"
#include "core/mvcc.h"
#include "rpc.pb-c.h"

/* Raise alarm type for member; *added tells whether it was new. */
int alarm_activate(const struct mvcc *m, MDB_txn *txn, uint64_t member, int type, bool *added);

/* Clear alarm type for member; *removed tells whether it existed. */
int alarm_deactivate(const struct mvcc *m, MDB_txn *txn, uint64_t member, int type,
                     bool *removed);

/* Is any member's alarm of this type raised? */
bool alarm_active(const struct mvcc *m, MDB_txn *txn, int type);

/* The raised alarms of type (ETCDSERVERPB__ALARM_TYPE__NONE: all), ordered by
 * type then member; the array and its members come from the arena. */
int alarm_list(const struct mvcc *m, MDB_txn *txn, int type, struct arena *a,
               Etcdserverpb__AlarmMember ***out, size_t *n);

#endif
