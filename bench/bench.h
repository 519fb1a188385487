/* bench.h - bollard-bench's run state shared by the engine (engine.c), the
 * workloads (unary.c, watch.c, lease.c) and the report (report.c).
 *
 * Threads: the main thread orchestrates phases; each worker thread owns one
 * completion queue and every call started on it, and only it touches its
 * clients, streams and series. Cross-thread state is the atomics in
 * struct bench. A tag is a struct bb_tag embedded in a call's state. */
#ifndef BOLLARD_BENCH_BENCH_H
#define BOLLARD_BENCH_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "options.h"
#include "pacer.h"
#include "wire/grpc_unary.h"
#include "wire/grpc_wire.h"
#include "stats.h"

struct bb_worker;
struct bench;

/* The completion-queue tag: done runs on the owning worker's thread. */
struct bb_tag {
	void (*done)(struct bb_worker *w, struct bb_tag *t, bool ok);
};

#define BB_NSTATUS 17          /* gRPC status codes 0..16 */
#define BB_NSERIES 2

/* One measured quantity (requests of a kind, watch deliveries, ...). */
struct bb_series {
	struct bb_samples lat;
	uint64_t ok;
	uint64_t errors[BB_NSTATUS + 1];   /* by gRPC status; last: other failures */
	uint64_t first_ns, last_ns;        /* first start / last completion, monotonic */
};

/* A unary call: request out, one reply and the status back. */
struct bb_rpc {
	struct grpc_wire_unary u; /* store/wire: the call and what it received */
	grpc_byte_buffer *send;
};

/* A bidirectional stream: one send and one receive outstanding at most. */
struct bb_stream {
	grpc_call *call;
	grpc_metadata_array init_md, trail_md;
	grpc_byte_buffer *send, *recv;
	grpc_status_code status;
	grpc_slice details;
	bool got_init_md, open, status_done;
	struct bb_tag open_tag;
};

struct bb_unary_client;

struct bb_worker {
	struct bench *b;
	int id;
	pthread_t thread;
	grpc_completion_queue *cq;
	int64_t pending;                   /* batches started, not yet completed */
	uint64_t rng;
	struct bb_series s[BB_NSERIES];
	struct bb_pacer pacer;             /* this worker's share of --rate */
	struct bb_unary_client **idle;     /* claimed a request, waiting for a token */
	int n_idle;
	struct bb_unary_client *clients;   /* this worker's unary clients */
	int n_clients;
	uint64_t build_aux;                /* set by unary_build, see unary_ok */
	uint8_t *scratch;                  /* key + value bytes for building requests */
	bool started, shut;
	void *wl;                          /* the workload's per-worker state */
};

/* What a workload plugs into the engine; NULL members are skipped. */
struct bb_workload_ops {
	const char *series_name[BB_NSERIES];
	int (*setup)(struct bench *b);                  /* main thread, before workers */
	void (*worker_init)(struct bb_worker *w);       /* worker thread, at start */
	void (*worker_go)(struct bb_worker *w);         /* worker thread, load phase */
	void (*worker_shutdown)(struct bb_worker *w);   /* worker thread, at the end */
	int (*run)(struct bench *b);                    /* main thread: the phases */
	void (*teardown)(struct bench *b);
};

struct bb_stages;

struct bench {
	struct bb_options *o;
	const struct bb_workload_ops *ops;
	grpc_channel **ch;
	int n_ch;
	struct bb_worker *w;
	int n_w;
	uint64_t t_go;                     /* monotonic ns when the load started */
	_Atomic uint64_t claimed;          /* requests handed out (--total) */
	_Atomic int stop_starting;         /* --duration over: claim nothing more */
	_Atomic int go;                    /* workers: start the load */
	_Atomic int shutdown;              /* workers: cancel streams, drain, exit */
	_Atomic uint64_t clients_done;     /* clients that claimed nothing more */
	int n_clients;                     /* unary clients over all workers */
	/* The unary request of sequence number seq, its method and series. */
	grpc_byte_buffer *(*unary_build)(struct bb_worker *w, uint64_t seq, const char **method,
	                                 int *series);
	/* Optional: a unary request succeeded (aux: the builder's w->build_aux). */
	void (*unary_ok)(struct bb_worker *w, uint64_t aux);
	_Atomic uint64_t expected;         /* workload-defined (watch: events due) */
	_Atomic uint64_t progress;         /* workload-defined counter (watch: events) */
	_Atomic uint64_t progress2;        /* workload-defined (watch: created watchers) */
	_Atomic uint64_t responses;        /* watch: responses that carried this run's events */
	void *wl;                          /* the workload's shared state */
	double setup_s;                    /* watch: time to create the watchers */
	uint64_t missing;                  /* watch: events due but not seen */
	char errmsg[256];                  /* a fatal setup error, printed by main */
	struct bb_stages *stages;          /* --metrics: the breakdown of the run, or NULL */
	char first_error[256];             /* first failed call's status text */
	pthread_mutex_t err_mu;
	pthread_mutex_t done_mu;           /* with done_cv: all clients done */
	pthread_cond_t done_cv;
};

/* engine.c */
uint64_t bb_now_ns(void);
uint64_t bb_rand(struct bb_worker *w);
gpr_timespec bb_deadline(const struct bench *b);
/* Claims the next request; false when --total or --duration is exhausted. */
bool bb_claim(struct bench *b, uint64_t *seq);
/* Records a finished call into w->s[series]: latency on OK, else an error. */
void bb_record(struct bb_worker *w, int series, uint64_t t0, grpc_status_code st,
               grpc_slice details);
void bb_record_error(struct bb_worker *w, int series, int code, const char *what);
grpc_channel *bb_channel(struct bench *b, int i);   /* i-th client's connection */
/* A client claimed nothing more (worker threads); the last one wakes
 * bb_wait_clients. */
void bb_client_done(struct bench *b);
/* Sleeps until every client is done (true) or until_ns (monotonic; 0:
 * no limit) passes (false). */
bool bb_wait_clients(struct bench *b, uint64_t until_ns);
/* Sleeps until *flag reaches want or timeout_s passes; false on timeout. */
bool bb_wait_counter(_Atomic uint64_t *c, uint64_t want, double timeout_s);

/* Unary call helpers (engine.c). bb_rpc_start takes ownership of send. */
int bb_rpc_start(struct bb_worker *w, struct bb_rpc *r, grpc_channel *ch, const char *method,
                 grpc_byte_buffer *send, struct bb_tag *tag);
void bb_rpc_finish(struct bb_rpc *r);     /* releases everything but the struct */

/* Stream helpers (engine.c). */
int bb_stream_open(struct bb_worker *w, struct bb_stream *s, grpc_channel *ch, const char *method,
                   struct bb_tag *status_tag);
int bb_stream_send(struct bb_worker *w, struct bb_stream *s, grpc_byte_buffer *bb,
                   struct bb_tag *tag);
int bb_stream_recv(struct bb_worker *w, struct bb_stream *s, struct bb_tag *tag);
void bb_stream_release(struct bb_stream *s);   /* after the status arrived */

/* Messages (engine.c): pack into a new byte buffer; unpack a received one
 * (NULL on a missing or malformed message; free with
 * protobuf_c_message_free_unpacked). */

/* The whole run (engine.c): connect, start the workers, run the workload's
 * phases, join. Returns 0 or -1 with b->errmsg set. */
int bb_run(struct bench *b);
void bb_free(struct bench *b);

/* dial.c: a connected socket to endpoint ("host:port"), retried until
 * deadline_ns (monotonic) while refused; -1 with the reason in err. */
int bb_dial(const char *endpoint, uint64_t deadline_ns, char *err, size_t errlen);
/* A direct gRPC channel on the connected fd (taken over), with args. */
grpc_channel *bb_dial_channel(const char *endpoint, int fd, const grpc_channel_args *args);
/* An ordinary TLS channel to endpoint (its own connection), the server
 * verified with the PEM CAs ca_pem. */
grpc_channel *bb_dial_tls_channel(const char *endpoint, const char *ca_pem,
                                  const grpc_channel_args *args);

/* unary.c: the closed-loop unary clients, and the key/value shapes. */
extern const struct bb_workload_ops bb_put_ops, bb_range_ops, bb_txn_put_ops, bb_mixed_ops;
size_t bb_key(const struct bb_options *o, uint64_t idx, uint8_t *buf);
uint64_t bb_key_index(struct bb_worker *w, uint64_t seq, uint64_t space);
/* Starts the unary clients assigned to this worker (load phase). */
void bb_unary_go(struct bb_worker *w);
void bb_unary_tick(struct bb_worker *w);   /* rate limiter: start waiting clients */
int bb_unary_run(struct bench *b);          /* main thread: wait for the clients */
void bb_unary_worker_free(struct bb_worker *w);
int bb_unary_setup(struct bench *b);      /* picks unary_build for o->workload */

/* watch.c, lease.c */
extern const struct bb_workload_ops bb_watch_ops, bb_lease_ops;

#endif
