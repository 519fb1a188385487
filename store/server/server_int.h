/* server_int.h - what the files of store/server share: the server struct,
 * per-call state, completion-queue tags, the method tables the service
 * adapters (kv.c, maintenance.c, cluster.c, auth.c) export, and the call
 * helpers of calls.c. Internal to store/server; nothing outside includes it.
 *
 * Threads: one completion-queue (CQ) thread runs every tag callback but the
 * unary reply's (srv_tag_callback: on the thread that sent it). Node
 * callbacks (replies) run on the node's loop thread (Ranges that need no
 * read round: on the CQ thread), which hands unary replies to the CQ
 * thread while other calls are in progress (calls.c unary_finish); the
 * Snapshot stream has a worker thread of its own. grpc_call_start_batch is thread-safe; every
 * other piece of shared state below says who may touch it. */
#ifndef BOLLARD_SERVER_INT_H
#define BOLLARD_SERVER_INT_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "core/sendq.h"
#include "node/node.h"
#include "raftcmd.pb-c.h"
#include "server/server.h"
#include "tls/certs.h"

/* A completion-queue tag: embedded in the state it completes for; fn runs
 * with the event's success flag: on the CQ thread for the server's queue
 * (cq), or wherever the batch completed for the reply queue (reply_cq, see
 * srv_tag_callback). */
struct srv_tag {
	grpc_completion_queue_functor f; /* reply_cq only: first, as gRPC wants */
	void (*fn)(struct srv_tag *t, int ok);
};

/* Make t a tag for the reply queue (a callback completion queue): fn runs
 * inline when its batch completes (usually at the end of the
 * grpc_call_start_batch that started it, on the starting thread), else on a
 * gRPC executor thread. No thread is woken to learn that a reply went out. */
void srv_tag_callback(struct srv_tag *t, void (*fn)(struct srv_tag *t, int ok));

#define SRV_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct srv_call;
struct srv_offer;
struct srv_bidi_ops;

/* How a call's transport (calls.c and grpc_stream.c: the gRPC C core;
 * h2srv.c: our own HTTP/2) does what the transport-neutral call code
 * (dispatch.c) and the stream adapters (watch.c, lease.c, maintenance.c)
 * need. The stream entries are reached through the srv_stream_* and
 * srv_bidi_start wrappers below, whose comments give their contracts. */
struct srv_transport {
	/* End a unary call, once, from any thread: code 0 with the packed
	 * response resp/len (ownership taken, malloc'ed; resp may be NULL for
	 * len 0), else that gRPC status with msg (resp NULL). copy: msg lives
	 * only for this call (else it is static). */
	void (*reply)(struct srv_call *c, uint8_t *resp, size_t len, int code, const char *msg,
	              bool copy);
	/* Hand the prepared c->req to the node (node_submit or a quiet
	 * node_submit_quiet with a wake-up owed). */
	void (*submit)(struct srv_call *c);
	/* The call's deadline on the node's clock (node_clock_ns), 0: none. */
	uint64_t (*deadline_ns)(const struct srv_call *c);
	/* The call's last reference went (srv_call_unref): free it. Any
	 * thread. */
	void (*release)(struct srv_call *c);
	/* Streams (see the wrappers). */
	int (*stream_open)(struct srv_call *c);
	int (*bidi_start)(struct srv_call *c, const struct srv_bidi_ops *ops);
	int (*stream_send)(struct srv_call *c, uint8_t *data, size_t len, size_t max_queued);
	int (*stream_offer)(struct srv_call *c, uint8_t *data, size_t len,
	                    const struct srv_offer *o);
	void (*stream_flush)(struct srv_call *c);
	bool (*stream_has_room)(struct srv_call *c, const struct srv_offer *o);
	void (*stream_finish)(struct srv_call *c, int err);
};

/* One RPC method of one etcd service. Unary by default: the request arrives
 * with the call, is decoded with req_desc, checked with check (etcd's pre-raft
 * validation) and either handled by start or submitted to the node as op. */
struct srv_method {
	const char *path;                           /* "/etcdserverpb.KV/Range" */
	const ProtobufCMessageDescriptor *req_desc; /* request message type */
	enum node_op op;                            /* for the default path: node_submit */
	int via_raft;     /* becomes a raft entry: enforce node_max_request_bytes */
	int armed;        /* calls kept requested at all times */
	/* Optional etcd pre-raft checks: 0 or a BOLLARD_E* code. */
	int (*check)(struct srv_call *c, const ProtobufCMessage *msg);
	/* Optional: handles the decoded call instead of node_submit (c->msg is
	 * set). Must end the call with srv_call_reply*() or a stream. */
	void (*start)(struct srv_call *c);
	/* Bidirectional stream (srv_bidi_start): on the gRPC port registered with PAYLOAD_NONE, start
	 * runs at once with c->msg NULL and calls srv_bidi_start(). */
	int bidi;
	/* bollard.Internal: with peer TLS, only for connections that came
	 * through the peer port (elsewhere: unknown method). */
	int peer_only;
	/* Server streaming (srv_stream_open): its batches complete on the CQ
	 * thread, not on the reply queue (unary calls and unregistered ones). */
	int server_stream;
};

/* The service adapters' tables, each terminated by an entry with path NULL. */
extern const struct srv_method srv_kv_methods[];
extern const struct srv_method srv_maintenance_methods[];
extern const struct srv_method srv_cluster_methods[];
extern const struct srv_method srv_auth_methods[];
extern const struct srv_method srv_watch_methods[];
extern const struct srv_method srv_lease_methods[];
extern const struct srv_method srv_internal_methods[];
extern const struct srv_method srv_health_methods[];
/* The client services' tables (every one above but bollard.Internal), NULL
 * ended: what each client transport serves (dispatch.c). */
extern const struct srv_method *const srv_client_services[];
/* The client services' method of gRPC path, or NULL. */
const struct srv_method *srv_client_method(const char *path);

struct srv_registered {
	const struct srv_method *m;
	void *handle; /* from grpc_server_register_method */
};

/* Outgoing message queue of a server-streaming call: at most one SEND_MESSAGE
 * batch outstanding (gRPC refuses a second); the rest waits here, where a
 * mergeable message may join an unsent one of its key (core/sendq.h). */
struct srv_qitem {
	struct sendq_msg msg;   /* the packed message, until it is sent */
	int status;             /* the final status, not a message */
	grpc_byte_buffer *buf;  /* what the outstanding batch sends */
	grpc_status_code code;
	grpc_slice details;
};

struct srv_stream {
	struct srv_call *call;
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* producers wait here for room */
	struct sendq q;
	int inflight;               /* a send batch is outstanding */
	int sent_initial_md;
	int finished;               /* status queued: nothing more may be queued */
	int dead;                   /* a send failed (cancelled, client gone) */
	struct srv_qitem *cur;      /* what the outstanding batch sends */
	struct srv_tag on_sent;
	struct srv_tag on_close;    /* RECV_CLOSE_ON_SERVER */
	int close_cancelled;
	/* srv_stream_flush's hand-off to the CQ thread: listed (under mu) while
	 * on the server's kick list (kick_next, under the server's out_mu). */
	int kick_listed;
	struct srv_stream *kick_next;
	/* Called on the CQ thread when the call is over: finished by us, or
	 * died (cancelled, client gone). */
	void (*on_over)(struct srv_call *c);
};

/* Inline room for a decoded unary request in its call: a Put of a small
 * key and a value of a few hundred bytes needs no malloc. */
#define SRV_PB_INLINE 1024
#define SRV_PB_ALIGN 16

/* One call: the transport-neutral part (dispatch.c) first, then the
 * gRPC C core's (calls.c; unused by h2srv.c's calls, which embed this). */
struct srv_call {
	const struct srv_transport *tp;
	struct node *node;
	const struct srv_registered *reg; /* NULL: an unregistered method */
	int unpack_err;             /* srv_call_unpack()'s error, answered by srv_call_start */
	/* gRPC C core transport (calls.c) */
	struct etcd_server *s;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_call_details details;  /* unregistered calls only */
	grpc_byte_buffer *payload;  /* unary: the request as received */
	atomic_int refs;            /* freed (and the live count dropped) at 0 */
	struct srv_tag on_new;      /* the requested call arrived */
	struct srv_tag on_done;     /* the final unary batch completed */
	ProtobufCMessage *msg;      /* decoded request */
	struct node_req req;
	grpc_byte_buffer *send_buf; /* unary reply, destroyed when sent */
	grpc_slice status_details;  /* owned; sent as the status message */
	grpc_status_code status_code;
	struct srv_call *out_next;  /* in the server's outbox (unary replies);
	                               in the server's pool once finished */
	int cancelled;
	int on_reply_cq;            /* bound to s->reply_cq (no streams) */
	struct srv_stream *stream;  /* server-streaming calls only */
	struct srv_bidi *bidi;      /* bidirectional calls only (grpc_stream.c) */
	void *user;                 /* the service adapter's per-call state */
	uint64_t t_start_ns;        /* node_clock_ns() when the call arrived */
	uint64_t t_answer_ns;       /* ... when the node answered a write (metrics) */
	char *peer_cn;              /* --client-cert-auth: the client certificate's
	                               CommonName (the auth user, as in etcd); else NULL */
	char *token;                /* the "token" metadata (auth), else NULL */
	char *auth_user;            /* srv_call_auth(): who the caller is */
	uint64_t auth_rev;
	int auth_state;             /* 0 unresolved, 1 resolved, else the error */
	int auth_waited;            /* waited once for the token's login entry */
	int join_waited;            /* waited once for a joining member to serve */
	bool require_leader;        /* the "hasleader: true" metadata (etcd's
	                               clientv3.WithRequireLeader) */
	Bollard__ReadIndexResponse auth_wait; /* NODE_AUTH_WAIT's request */
	/* The decoded request (msg) is allocated here first (calls.c). */
	size_t pb_used;
	alignas(SRV_PB_ALIGN) unsigned char pb_buf[SRV_PB_INLINE];
};

struct etcd_server {
	uv_loop_t *loop;
	struct node *node;
	grpc_server *server;
	grpc_completion_queue *cq;
	/* Unary calls are bound to it: their reply batch completes by callback
	 * (srv_tag_callback), so sending a reply wakes no thread. */
	grpc_completion_queue *reply_cq;
	grpc_completion_queue_functor reply_cq_shutdown;
	int reply_cq_down;          /* under mu: its shutdown callback ran */
	pthread_cond_t reply_cq_cv;
	pthread_t cq_thread;
	int cq_thread_started;
	/* Unary replies from other threads, and server streams whose queued
	 * messages are to be sent (srv_stream_flush), wait here for the CQ
	 * thread, woken by an empty batch on bell (a call of a lame channel
	 * bound to cq). */
	pthread_mutex_t out_mu;
	struct srv_call *out_head, **out_tail;
	struct srv_stream *kick_head;
	int out_rung;               /* a wake-up is on its way */
	atomic_long unary_busy;     /* unary calls arrived and not yet answered */
	int node_wake_owed;         /* CQ thread only: node_submit_quiet's wake-up,
	                               sent before the thread next sleeps (cq_main) */
	grpc_channel *bell_channel;
	grpc_call *bell;
	struct srv_tag on_bell;
	struct srv_registered *regs;
	size_t nregs;
	int64_t max_request_bytes;

	atomic_int shutting_down;
	struct srv_tag on_shutdown;
	void (*shutdown_cb)(struct etcd_server *s);
	uv_async_t *done_async;     /* any thread -> loop: shutdown complete;
	                               freed by its close callback */

	struct srv_fwd *fwd;        /* internal.c: the forwarding client */
	struct srv_tls *tls;        /* tls.c: client TLS, NULL without */

	pthread_mutex_t mu;         /* live, shutdown_fired, done_sent, pool */
	long live;                  /* armed or running calls */
	struct srv_call *pool;      /* finished calls kept for reuse (calls.c) */
	int pool_n;
	int shutdown_fired;
	int done_sent;
};

/* calls.c -------------------------------------------------------------- */

/* Request one more call of reg (NULL: the unregistered-method catch-all).
 * CQ thread, or the starting thread before the CQ thread runs. */
int srv_call_arm(struct etcd_server *s, const struct srv_registered *reg);

static inline void srv_call_ref(struct srv_call *c)
{
	atomic_fetch_add(&c->refs, 1);
}
/* The last reference frees the call (its transport's release). */
static inline void srv_call_unref(struct srv_call *c)
{
	if (atomic_fetch_sub(&c->refs, 1) == 1)
		c->tp->release(c);
}

/* dispatch.c: what a unary call does whatever its transport ----------- */

/* Decode the request message data/len (NULL/0: an empty one) into c->msg
 * with the call's allocator; on failure sets c->unpack_err (answered by
 * srv_call_start) and returns it: BOLLARD_EREQUEST_TOO_LARGE, or
 * SRV_EMALFORMED. */
#define SRV_EMALFORMED (-EBADMSG)
int srv_call_unpack(struct srv_call *c, const uint8_t *data, size_t len);
/* The decoded (or refused) request of a registered method: wait for a
 * joining member, answer an unpack error, wait for the token's login,
 * check, then the method's start or the node; a bidi method's start at
 * once. Ends with a reply (or a stream). */
void srv_call_start(struct srv_call *c);
/* Free what the neutral part holds (decoded request, token, identity). */
void srv_call_release(struct srv_call *c);
/* Free the decoded request (the node is done with it). */
void srv_call_free_msg(struct srv_call *c);
/* A unary reply went out: the request histograms of a write. */
void srv_call_observe_sent(struct srv_call *c);

/* End a unary call: OK with the packed response resp/len (ownership taken;
 * malloc'ed, freed with free()), or with an error. Any thread, once. */
void srv_call_reply(struct srv_call *c, uint8_t *resp, size_t len);
/* err: a BOLLARD_E* code or -errno: etcd's status code and text. */
void srv_call_reply_err(struct srv_call *c, int err);
/* A status of our own (details copied). */
void srv_call_reply_status(struct srv_call *c, grpc_status_code code, const char *details);

/* The node_req_cb for unary calls: replies with what the node answered. */
void srv_call_node_done(struct node_req *req, int err, uint8_t *resp, size_t len);

/* Hand the decoded request (c->msg) to the node as op: node_submit, or
 * node_read (a Range: on this thread when it needs no read round). */
void srv_call_submit(struct srv_call *c, enum node_op op, int read);

/* The caller's identity (token or client certificate) as the node
 * resolves it, once per call; sets c->req.auth_user/auth_rev. 0 or
 * BOLLARD_EINVALID_AUTH_TOKEN. */
int srv_call_auth(struct srv_call *c);
/* The raft index of the login a simple token ("<prefix>.<index>") names, 0
 * for any other token. */
uint64_t srv_token_login_index(const char *token);
/* A srv_method check: etcd's IsAdminPermitted for the caller (Defragment,
 * Hash, HashKV, Snapshot, membership changes). */
int srv_check_admin(struct srv_call *c, const ProtobufCMessage *msg);
/* The same with the errors as etcd's Maintenance service gives them: auth's
 * own texts, status Unknown (its authMaintenanceServer does not convert). */
int srv_check_admin_raw(struct srv_call *c, const ProtobufCMessage *msg);

/* Streams, whatever the transport (struct srv_transport's stream entries).
 * A stream holds the call's send side: messages queued in order (a
 * mergeable one may join an unsent one of its key: core/sendq.h), sent as
 * fast as the client's flow control lets them go, then the status. The
 * queue's limits are the producer's (struct srv_offer / max_queued): a
 * client that does not read stops taking messages, the queue fills, and
 * the producer is refused (srv_stream_offer) or waits (srv_stream_send);
 * nothing grows without bound. */

/* Server streaming: set up the send queue and watch for the call's end.
 * The caller holds a reference of its own across it (and srv_bidi_start):
 * once open, the call's end may come on another thread before it returns. */
static inline int srv_stream_open(struct srv_call *c)
{
	return c->tp->stream_open(c);
}
/* Queue one packed message (ownership taken). Blocks while more than
 * max_queued messages wait (max_queued 0: never blocks). Returns 0, or -1
 * if the stream is dead or finished (the message is dropped). Any thread
 * but the transport's own (the CQ thread, the h2 thread) when it may block. */
static inline int srv_stream_send(struct srv_call *c, uint8_t *data, size_t len,
                                  size_t max_queued)
{
	return c->tp->stream_send(c, data, len, max_queued);
}
/* Queue the final status (err 0 = OK). Any thread; the first one counts. */
static inline void srv_stream_finish(struct srv_call *c, int err)
{
	c->tp->stream_finish(c, err);
}

/* How srv_stream_offer() may queue a message. */
struct srv_offer {
	size_t max_queued; /* refuse while this many messages wait (0: no limit) */
	size_t max_bytes;  /* refuse while this many bytes wait (0: no limit) */
	/* > 0: the message may be merged into an unsent one of the same key
	 * (core/sendq.h): data[0, prefix) is its prefix; merged messages stay
	 * within max_merged bytes. */
	size_t prefix, max_merged;
	int64_t key;
	bool defer; /* only queue: sending starts at srv_stream_flush() */
};
/* Non-blocking send for producers that must never wait (the node's loop):
 * queues or merges data (ownership taken) and returns 0; returns 1 without
 * taking data when the queue is at o's limits; -1 if the stream is dead or
 * finished (data freed). Any thread. */
static inline int srv_stream_offer(struct srv_call *c, uint8_t *data, size_t len,
                                   const struct srv_offer *o)
{
	return c->tp->stream_offer(c, data, len, o);
}
/* Start sending what deferred offers queued: the transport's thread starts
 * it, woken once for all the streams flushed before it gets to them. Any
 * thread. */
static inline void srv_stream_flush(struct srv_call *c)
{
	c->tp->stream_flush(c);
}
/* Whether an offer within o's limits would be taken now (false once the
 * stream is dead or finished). */
static inline bool srv_stream_has_room(struct srv_call *c, const struct srv_offer *o)
{
	return c->tp->stream_has_room(c, o);
}
/* Whether a queue holding n messages of bytes bytes is at o's limits. */
static inline bool srv_offer_full(const struct srv_offer *o, size_t n, size_t bytes)
{
	return (o->max_queued && n >= o->max_queued) || (o->max_bytes && bytes >= o->max_bytes);
}

/* Bidirectional streams ----------------------------------------------- */

/* What a bidi service adapter implements. Both run on the transport's
 * thread (the CQ thread, the h2 thread), one at a time per call. */
struct srv_bidi_ops {
	/* One decoded request (ownership passes: free it with
	 * protobuf_c_message_free_unpacked). The next receive starts after
	 * this returns, so requests arrive in order. */
	void (*on_msg)(struct srv_call *c, ProtobufCMessage *msg);
	/* Called once: the client half-closed (cancelled 0), or the call died
	 * or sent an undecodable message (cancelled 1). Nothing more arrives. The
	 * adapter ends its own work, then srv_stream_finish() if it wants to
	 * send a status (harmless on a dead call). */
	void (*on_end)(struct srv_call *c, int cancelled);
	/* Optional. If set, a client half-close calls this instead of on_end,
	 * and on_end(c, 1) runs later, when the call itself is over (client
	 * cancel, disconnect, server shutdown): for streams such as Watch that
	 * go on sending after the client stopped sending (as etcd's do). */
	void (*on_half_close)(struct srv_call *c);
};

/* Start a bidi stream from a method's start(): the send queue of
 * srv_stream_open(), and a receive loop independent of sends. Returns 0 or
 * -1 (the call was answered with an error). */
static inline int srv_bidi_start(struct srv_call *c, const struct srv_bidi_ops *ops)
{
	return c->tp->bidi_start(c, ops);
}

/* grpc_stream.c: the gRPC C core's streams (send queue, receive loop) -- */

extern const struct srv_transport srv_grpc_transport;
/* calls.c's call_free: the stream's part. */
void srv_grpc_stream_free(struct srv_call *c);
/* The gRPC call's request metadata key (malloc'ed), or NULL if absent. */
char *srv_call_metadata_dup(struct srv_call *c, const char *key);
/* The gRPC call's request metadata key is there with exactly this value. */
bool srv_grpc_metadata_is(struct srv_call *c, const char *key, const char *value);
/* The gRPC transport's stream entries (struct srv_transport). */
int srv_grpc_stream_open(struct srv_call *c);
int srv_grpc_bidi_start(struct srv_call *c, const struct srv_bidi_ops *ops);
int srv_grpc_stream_send(struct srv_call *c, uint8_t *data, size_t len, size_t max_queued);
int srv_grpc_stream_offer(struct srv_call *c, uint8_t *data, size_t len,
                          const struct srv_offer *o);
void srv_grpc_stream_flush(struct srv_call *c);
bool srv_grpc_stream_has_room(struct srv_call *c, const struct srv_offer *o);
void srv_grpc_stream_finish(struct srv_call *c, int err);
/* Wake the CQ thread for the outbox (calls.c; under s->out_mu). false: it
 * cannot be woken (the caller drains the outbox itself). */
bool srv_bell_ring_locked(struct etcd_server *s);
/* calls.c: a byte buffer over malloc'ed bytes (ownership taken). */
grpc_byte_buffer *srv_grpc_buffer_of(uint8_t *data, size_t len);
/* Start sending on the streams srv_grpc_stream_flush listed. */
void srv_grpc_stream_kick_listed(struct srv_stream *list);

/* The one place internal errors become gRPC statuses. */
void srv_status_of(int err, grpc_status_code *code, const char **msg);

/* internal.c: bollard.Internal's client, the node's forwarder ---------- */
struct srv_fwd *srv_fwd_start(struct node *node, grpc_completion_queue *cq);
void srv_fwd_destroy(struct srv_fwd *f);

/* Send the unary replies other threads queued for the CQ thread, and start
 * sending on the streams they flushed. */
void srv_outbox_drain(struct etcd_server *s);

/* server.c ------------------------------------------------------------- */

/* Every call armed or running counts as live; the shutdown callback fires
 * once the server's shutdown tag fired and none is left. Any thread.
 * srv_live_add also takes a finished call's memory from the server's pool
 * (NULL: none kept); srv_live_drop keeps c's (cleaned up by the caller)
 * there, or returns it for the caller to free when the pool is full. */
struct srv_call *srv_live_add(struct etcd_server *s);
struct srv_call *srv_live_drop(struct etcd_server *s, struct srv_call *c);
/* A call's memory out of the pool (NULL: empty); any thread. */
struct srv_call *srv_pool_take(struct etcd_server *s);
/* calls.c: free the pool's calls (no call is live any more). */
void srv_pool_free(struct etcd_server *s);

/* internal.c: with peer TLS, the node hands member gRPC connections (from
 * the peer port) to srv_peer_grpc_conn; such calls are the only ones for
 * which srv_call_from_peer_port holds. */
void srv_peer_grpc_conn(void *data, int fd);
bool srv_call_from_peer_port(struct srv_call *c);

/* tls.c: client TLS. */
struct srv_tls {
	struct tls_pem pem; /* tls/certs.h; pem.ca_pem may be NULL */
	int client_cert_auth;
	int log_client_cn;
};
/* 0 with *out NULL when cfg asks for no TLS; -1 with errbuf set. */
int srv_tls_load(struct srv_tls **out, const struct etcd_tls_config *cfg, char *errbuf,
                 size_t errlen);
void srv_tls_free(struct srv_tls *t);
grpc_server_credentials *srv_tls_credentials(const struct srv_tls *t);
/* The peer certificate's CommonName (malloc'ed) or NULL. */
char *srv_tls_peer_cn(grpc_call *call);

#endif
