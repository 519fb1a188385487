/* client_int.h - the remote client's internals, shared by its files:
 *   client.c  connect/close, channels and endpoint choice, the completion-queue
 *             thread and its hand-off to the loop, gRPC status -> error codes
 *   wire.c    protobuf <-> byte buffers; requests <-> public result structs
 *   unary.c   unary calls (attempt, wait for a connection, retry), sync wrappers
 *   stream.c  bidirectional streams that reconnect (used by watch.c, lease.c)
 *   watch.c   watches resumed from the last delivered revision
 *   lease.c   lease keep-alive
 *   embedded.c the embedded back end: a node on a private thread, the same
 *             calls without gRPC (bollard_open_embedded)
 *
 * Threads: the CQ thread only moves completed tags onto a locked list and
 * wakes the loop (uv_async); every tag's done() runs on the loop thread
 * (asynchronous requests) or on the thread of a blocking call (which drives
 * its own private completion queue). */
#ifndef BOLLARD_CLIENT_INT_H
#define BOLLARD_CLIENT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "bollard/store.h"
#include "rpc.pb-c.h"
#include "wire/grpc_wire.h"

/* A pending completion-queue operation. */
struct bc_tag {
	void (*done)(struct bc_tag *t, bool ok);
	struct bc_tag *next; /* on the client's hand-off list */
	bool ok;
};

/* Something that must end before the client can be freed (calls, watches,
 * keep-alives). cancel() is called once when the client closes. */
struct bc_live {
	struct bc_live *prev, *next;
	void (*cancel)(struct bc_live *l);
	bool emb; /* an embedded back end's object (embedded.c) */
	/* embedded: the member's stop answers it (a unary call), so it does
	 * not hold the stop back when the client closes */
	bool ends_with_member;
};

struct bc_emb;

struct bollard_client {
	uv_loop_t *loop; /* NULL: blocking calls only */
	char **endpoints;
	size_t n_ep;
	grpc_channel **ch;
	atomic_size_t cur; /* the endpoint new requests start on */
	unsigned dial_ms, req_ms;

	/* asynchronous machinery (loop != NULL) */
	grpc_completion_queue *cq;
	pthread_t thread;
	uv_async_t async;
	pthread_mutex_t mu;
	struct bc_tag *head, **tail; /* completed tags, under mu */
	bool cq_down;                /* the CQ thread saw SHUTDOWN, under mu */
	size_t pending;              /* ops outstanding on cq (loop thread) */
	struct bc_live live;         /* list head (loop thread) */
	bool closing;
	bool cq_shutdown; /* grpc_completion_queue_shutdown called */
	bollard_close_cb close_cb;
	void *close_data;

	struct bc_emb *emb; /* the embedded back end; NULL: remote */
};

/* client.c */
void bc_live_add(struct bollard_client *c, struct bc_live *l, void (*cancel)(struct bc_live *));
/* Unlink; when the client is closing and nothing is left, finish closing. */
void bc_live_remove(struct bollard_client *c, struct bc_live *l);
/* Account an operation started on c->cq (loop thread). */
void bc_op_started(struct bollard_client *c);
gpr_timespec bc_in_ms(int64_t ms);
size_t bc_next_ep(struct bollard_client *c, size_t ep);
/* The client's error for a failed gRPC call: a BOLLARD_E* code when the
 * message is etcd's, else -ETIMEDOUT, -ECANCELED, -ENOTCONN/-ECONNRESET
 * (UNAVAILABLE: transport), -EPROTO. */
int bc_status_to_err(grpc_status_code st, grpc_slice details, bool sent);
/* Connectivity of endpoint ep; try to connect when idle. */
grpc_connectivity_state bc_ep_state(struct bollard_client *c, size_t ep);
/* Fire t within ms (or earlier, when ep's connectivity changes). */
void bc_wait(struct bollard_client *c, grpc_completion_queue *cq, size_t ep, unsigned ms,
             struct bc_tag *t);

/* wire.c */
void *bc_arena_alloc(void **arena, size_t size);
char *bc_arena_dup(void **arena, const void *p, size_t len);

void bc_copy_header(struct bollard_header *h, const Etcdserverpb__ResponseHeader *ph);
void bc_copy_kv(void **arena, struct bollard_kv *kv, const Mvccpb__KeyValue *pkv);
/* Set range_end per (prefix, range_end, len) into *out (points into buf or
 * range_end). */
void bc_range_end(const void *key, size_t key_len, bool prefix, const void *range_end,
                  size_t range_end_len, void *buf, ProtobufCBinaryData *out);

/* unary.c: one request kind */
struct bc_method {
	const char *path;
	const ProtobufCMessageDescriptor *resp;
	bool repeatable; /* safe to retry after it was sent (clientv3's policy) */
	int (*decode)(const ProtobufCMessage *m, struct bollard_result *r);
	int node_op;   /* embedded: the node's enum node_op */
	bool via_raft; /* embedded: limited by --max-request-bytes */
};

/* Decode pm, a response of m (NULL: none or undecodable: -EPROTO), into
 * res: zeroed first, left zeroed on error. pm stays the caller's. */
int bc_method_decode(const struct bc_method *m, const ProtobufCMessage *pm,
                     struct bollard_result *res);

/* Starts (req != NULL) or runs to completion (req == NULL: blocking; out may
 * be NULL). Takes the packed request payload in all cases. */
int bc_unary(struct bollard_client *c, const struct bc_method *m, grpc_byte_buffer *payload,
             struct bollard_req *req, bollard_req_cb cb, struct bollard_result *out);

/* watch.c: what both back ends share about a watch: its arguments, the
 * create request, and the handling of each WatchResponse. */
struct bc_watch_core {
	struct bollard_watch *w;
	bollard_watch_cb cb;
	uint8_t *key, *end;
	size_t key_len, end_len;
	struct bollard_watch_options o;
	int64_t last_rev; /* every event up to here delivered; -1: not known yet */
	bool cancelled;
	int final_err;
};

int bc_watch_core_init(struct bc_watch_core *k, struct bollard_watch *w, const void *key,
                       size_t key_len, const struct bollard_watch_options *opts,
                       bollard_watch_cb cb);
void bc_watch_core_free(struct bc_watch_core *k);
/* Fill a create request (cr and filters are the caller's). */
void bc_watch_create_req(const struct bc_watch_core *k, Etcdserverpb__WatchRequest *rq,
                         Etcdserverpb__WatchCreateRequest *cr,
                         Etcdserverpb__WatchCreateRequest__FilterType filters[2]);
/* Handle one response: events delivered (exactly once), created noted.
 * Returns true when the server cancelled the watch (final_err is set). */
bool bc_watch_response(struct bc_watch_core *k, const Etcdserverpb__WatchResponse *r);

/* embedded.c */
void bc_emb_maybe_finish_close(struct bollard_client *c);
void bc_emb_close(struct bollard_client *c, bollard_close_cb cb, void *data);
int bc_emb_unary(struct bollard_client *c, const struct bc_method *m, const ProtobufCMessage *msg,
                 struct bollard_req *req, bollard_req_cb cb, struct bollard_result *out);
int bc_emb_watch_start(struct bollard_client *c, struct bollard_watch *w, const void *key,
                       size_t key_len, const struct bollard_watch_options *opts,
                       bollard_watch_cb cb);
int bc_emb_watch_cancel(struct bollard_watch *w);
int bc_emb_keepalive_start(struct bollard_client *c, struct bollard_keepalive *ka, int64_t id,
                           bollard_keepalive_cb cb);

/* lease.c: what both back ends' keep-alives share: the refresh schedule
 * (every ttl/3; lost after a whole TTL without a refresh; gone when the
 * store answers TTL 0), the tick timer and the end of a keep-alive. The
 * back end embeds it first in its struct (ka->internal_ points to it) and
 * supplies the transport. Loop thread. */
struct bc_ka_core;
struct bc_ka_ops {
	bool (*send)(struct bc_ka_core *k); /* a refresh is due: true if it went out */
	void (*stop)(struct bc_ka_core *k); /* stop the transport (NULL: nothing to do) */
	bool (*busy)(struct bc_ka_core *k); /* the transport still holds the keep-alive */
	void (*free)(struct bc_ka_core *k); /* free the back end's struct */
};

struct bc_ka_core {
	struct bc_live live;
	struct bollard_client *c;
	struct bollard_keepalive *ka;
	bollard_keepalive_cb cb;
	const struct bc_ka_ops *ops;
	int64_t id;
	uv_timer_t timer;
	uint64_t last_ok, next_send; /* uv_now() ms */
	bool stopping, timer_closed;
	int final_err;
};

void bc_ka_core_start(struct bc_ka_core *k, struct bollard_client *c,
                      struct bollard_keepalive *ka, int64_t id, bollard_keepalive_cb cb,
                      const struct bc_ka_ops *ops, unsigned first_tick_ms);
/* End it with err (the first error wins); the callback follows once the
 * timer is closed and the transport is no longer busy. */
void bc_ka_core_stop(struct bc_ka_core *k, int err);
/* The transport finished something: end the keep-alive if it is over. */
void bc_ka_core_maybe_done(struct bc_ka_core *k);
/* A refresh went out: the next is due ttl/3 from now. */
void bc_ka_core_sent(struct bc_ka_core *k);
/* The store's answer to a refresh: the remaining TTL (s); <= 0 ends the
 * keep-alive with BOLLARD_ELEASE_NOT_FOUND. */
void bc_ka_core_answer(struct bc_ka_core *k, int64_t ttl);

/* stream.c: a bidirectional stream that the owner may reconnect. */
struct bc_stream;
struct bc_stream_ops {
	void (*opened)(struct bc_stream *s); /* the call exists: send the first message */
	void (*message)(struct bc_stream *s, grpc_byte_buffer *bb); /* borrowed */
	void (*sent)(struct bc_stream *s);
	/* The call is over (err: bc_status_to_err, or -ECANCELED after stop);
	 * the owner reconnects with bc_stream_open or gives up. */
	void (*ended)(struct bc_stream *s, int err, grpc_status_code st);
};

struct bc_stream {
	struct bollard_client *c;
	const char *method;
	const struct bc_stream_ops *ops;
	size_t ep;
	grpc_call *call;
	int inflight; /* ops on the current call */
	bool send_busy, stopping, status_seen, waiting;
	unsigned waited_ms;
	struct bc_tag wait_tag, send_tag, recv_tag, status_tag;
	grpc_byte_buffer *send_bb, *recv_bb;
	grpc_metadata_array init_md, trail_md;
	grpc_metadata hasleader;
	grpc_status_code status;
	grpc_slice details;
};

void bc_stream_init(struct bc_stream *s, struct bollard_client *c, const char *method,
                    const struct bc_stream_ops *ops);
/* Wait for a ready endpoint (after delay_ms), create the call, then opened(). */
void bc_stream_open(struct bc_stream *s, unsigned delay_ms);
/* 0, or -EBUSY while a send is outstanding, or -ENOTCONN without a call.
 * Takes bb in all cases. */
int bc_stream_send(struct bc_stream *s, grpc_byte_buffer *bb);
/* Cancel the call (or the wait): ended(-ECANCELED) follows. */
void bc_stream_stop(struct bc_stream *s);
/* True while a call or a wait is outstanding. */
bool bc_stream_busy(const struct bc_stream *s);

#endif
