/* watch_hub.h - etcd's watch model: watchers of keys and ranges grouped by
 * client stream, matched against every committed revision, catching up
 * from MVCC history when they fall behind.
 *
 * Pure: no sockets, no clocks, no threads. The owner (the node's loop
 * thread) calls every function; responses leave through io->send, which
 * must never block. Each watcher is in one of two states:
 *   synced    indexed by key (hash) and by range (an interval treap), and
 *             sent the events of each commit batch as the owner reports it
 *             (watch_hub_notify): one response per watcher and batch,
 *             whatever the number of revisions in it, headed by the
 *             revision of its last event;
 *   unsynced  behind the current revision: a new watcher with an old
 *             start_revision, or one whose stream refused a response (full
 *             send queue). watch_hub_sync() catches a bounded group of them
 *             up from MVCC per call (at most max_sync_watchers watchers and
 *             about max_sync_events events), then they are synced again.
 * A watcher's next_rev is the first revision it has not been sent: it
 * advances only when a response was queued, so no event is lost, doubled
 * or reordered whatever the streams do. A revision's events for one
 * watcher always travel in one response (unless the watcher asked for
 * fragments and they exceed max_response_bytes).
 *
 * Responses are packed etcdserverpb.WatchResponse messages, built from the
 * stored KeyValue bytes without re-encoding them. */
#ifndef BOLLARD_CORE_WATCH_HUB_H
#define BOLLARD_CORE_WATCH_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "core/mvcc.h"
#include "rpc.pb-c.h"

struct watch_hub;
struct watch_stream;

/* Results of watch_hub_io.send. */
enum {
	WATCH_SENT = 0,  /* queued; buf now belongs to the stream */
	WATCH_FULL = 1,  /* not queued (buf still the caller's): try later */
	WATCH_DEAD = -1, /* the stream is gone; buf was freed */
};

struct watch_hub_io {
	/* Queue a malloc'ed packed WatchResponse on the stream. force: control
	 * responses (created, canceled, progress) that must not be refused for
	 * lack of room. events_at > 0: a whole event response of watcher
	 * watch_id, its events from buf[events_at] on (before them: header and
	 * watch_id); the stream may merge it into its unsent event response of
	 * the same watcher (core/sendq.h: this header, the events of both in
	 * order), as etcd sends several revisions in one response to a watcher
	 * that fell behind. 0: sent as is, after everything queued before it,
	 * and nothing queued before it may take later events. Never blocks. */
	int (*send)(void *stream_ud, uint8_t *buf, size_t len, bool force, int64_t watch_id,
	            size_t events_at);
	/* Whether a send would likely be accepted now (catch-up skips streams
	 * without room instead of reading history for nothing). */
	bool (*writable)(void *stream_ud);
	/* Optional: the stream may hold what send queued until flush, which
	 * the hub calls once for each stream it sent to before the call that
	 * sent returns (one hand-off per stream and call, not per response). */
	void (*flush)(void *stream_ud);
};

struct watch_hub_config {
	size_t max_sync_watchers;  /* unsynced watchers caught up per sync step (512) */
	size_t max_sync_events;    /* events read from MVCC per sync step (1000) */
	size_t max_response_bytes; /* fragment size; catch-up responses are cut at
	                              revision boundaries past it (1.5 MiB) */
};

/* A hub whose current revision is cur_rev (what LMDB holds now). */
struct watch_hub *watch_hub_new(const struct watch_hub_io *io, const struct watch_hub_config *cfg,
                                int64_t cur_rev);
/* Free every stream and watcher without sending anything. */
void watch_hub_free(struct watch_hub *h);

/* What response headers carry besides the revision. */
void watch_hub_set_header(struct watch_hub *h, uint64_t cluster_id, uint64_t member_id,
                          uint64_t raft_term);

/* A client stream; ud is passed to io->send. */
struct watch_stream *watch_hub_stream_open(struct watch_hub *h, void *ud);
/* Drop the stream and all its watchers; nothing more is sent to it. */
void watch_hub_stream_close(struct watch_hub *h, struct watch_stream *st);

/* A WatchRequest of the stream (create, cancel, progress) with etcd 3.4's
 * semantics; control responses go out through io->send before this
 * returns. A create with an old start_revision leaves an unsynced watcher
 * for watch_hub_sync(). Returns 0 or -ENOMEM. */
int watch_hub_request(struct watch_hub *h, struct watch_stream *st,
                      const Etcdserverpb__WatchRequest *req);

/* Refuse a create request as etcd does when the caller may not read the
 * range: a created and canceled response with watch_id -1 and reason (an
 * etcd error text). Returns 0 or -ENOMEM. */
int watch_hub_refuse(struct watch_hub *h, struct watch_stream *st, const char *reason);

/* Revisions (current, new_rev] were just committed: read them from txn
 * (when any synced watcher exists) and send them to the synced watchers,
 * each watcher's events of the range in one response (cut at revision
 * boundaries past max_response_bytes).
 * Returns 0 or an MVCC error. */
int watch_hub_notify(struct watch_hub *h, const struct mvcc *m, MDB_txn *txn, int64_t new_rev);

/* One bounded catch-up step for unsynced watchers, reading history from
 * txn (which must hold the hub's current revision). Returns the number of
 * watchers still unsynced, or an MVCC error (< 0). */
int watch_hub_sync(struct watch_hub *h, const struct mvcc *m, MDB_txn *txn);

/* etcd's periodic progress notification: every synced progress_notify
 * watcher that was sent no event since the previous tick gets an empty
 * response at the current revision. Call every 10 minutes (etcd's
 * default) or whatever interval the owner chose. */
void watch_hub_progress_tick(struct watch_hub *h);

int64_t watch_hub_rev(const struct watch_hub *h);
size_t watch_hub_unsynced(const struct watch_hub *h);
size_t watch_hub_watchers(const struct watch_hub *h);

struct watch_hub_stats {
	size_t streams, watchers, synced, unsynced;
	uint64_t responses;      /* event responses queued */
	uint64_t events;         /* events in them */
	uint64_t fallbacks;      /* synced watchers that fell back (full stream) */
	uint64_t sync_steps;
	size_t watcher_bytes;    /* heap bytes held per idle watcher, estimated */
};
void watch_hub_stats(const struct watch_hub *h, struct watch_hub_stats *out);

#endif
