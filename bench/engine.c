/* engine.c - bollard-bench's gRPC C-core machinery: the channels (on the
 * connections dial.c makes), worker threads with one completion queue
 * each, unary and streaming call helpers, request claiming and recording.
 * Workloads plug in through struct bb_workload_ops (bench.h). */
#include "bench.h"
#include "tls/certs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

uint64_t bb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bb_rand(struct bb_worker *w)
{
	/* xorshift64*: per worker, no locking */
	uint64_t x = w->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static gpr_timespec in_ns(uint64_t ns)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
	                    gpr_time_from_nanos((int64_t)ns, GPR_TIMESPAN));
}

gpr_timespec bb_deadline(const struct bench *b)
{
	return in_ns((uint64_t)(b->o->timeout_s * 1e9));
}

bool bb_claim(struct bench *b, uint64_t *seq)
{
	if (atomic_load(&b->stop_starting) || atomic_load(&b->shutdown))
		return false;
	*seq = atomic_fetch_add(&b->claimed, 1);
	return b->o->total == 0 || *seq < b->o->total;
}

grpc_channel *bb_channel(struct bench *b, int i)
{
	return b->ch[i % b->n_ch];
}

static void note_first_error(struct bench *b, const char *text)
{
	pthread_mutex_lock(&b->err_mu);
	if (!b->first_error[0])
		snprintf(b->first_error, sizeof(b->first_error), "%s", text);
	pthread_mutex_unlock(&b->err_mu);
}

static void touch(struct bb_series *s, uint64_t t0, uint64_t now)
{
	if (!s->first_ns || t0 < s->first_ns)
		s->first_ns = t0;
	if (now > s->last_ns)
		s->last_ns = now;
}

void bb_record(struct bb_worker *w, int series, uint64_t t0, grpc_status_code st,
               grpc_slice details)
{
	struct bb_series *s = &w->s[series];
	uint64_t now = bb_now_ns();

	touch(s, t0, now);
	if (st == GRPC_STATUS_OK) {
		bb_samples_add(&s->lat, now - t0);
		s->ok++;
		return;
	}
	s->errors[(unsigned)st < BB_NSTATUS ? (unsigned)st : BB_NSTATUS]++;
	if (!w->b->first_error[0]) {
		char *d = grpc_slice_to_c_string(details), text[256];
		snprintf(text, sizeof(text), "status %d: %s", (int)st, d);
		gpr_free(d);
		note_first_error(w->b, text);
	}
}

void bb_record_error(struct bb_worker *w, int series, int code, const char *what)
{
	struct bb_series *s = &w->s[series];

	s->errors[(unsigned)code < BB_NSTATUS ? (unsigned)code : BB_NSTATUS]++;
	note_first_error(w->b, what);
}

void bb_client_done(struct bench *b)
{
	if (atomic_fetch_add(&b->clients_done, 1) + 1 < (uint64_t)b->n_clients)
		return;
	pthread_mutex_lock(&b->done_mu);
	pthread_cond_broadcast(&b->done_cv);
	pthread_mutex_unlock(&b->done_mu);
}

bool bb_wait_clients(struct bench *b, uint64_t until_ns)
{
	struct timespec ts = {(time_t)(until_ns / 1000000000u), (long)(until_ns % 1000000000u)};
	bool all;

	pthread_mutex_lock(&b->done_mu);
	while (!(all = atomic_load(&b->clients_done) >= (uint64_t)b->n_clients)) {
		if (!until_ns)
			pthread_cond_wait(&b->done_cv, &b->done_mu);
		else if (pthread_cond_timedwait(&b->done_cv, &b->done_mu, &ts) != 0)
			break;
	}
	pthread_mutex_unlock(&b->done_mu);
	return all;
}

bool bb_wait_counter(_Atomic uint64_t *c, uint64_t want, double timeout_s)
{
	uint64_t end = bb_now_ns() + (uint64_t)(timeout_s * 1e9);
	struct timespec ms = {0, 1000000};

	while (atomic_load(c) < want) {
		if (bb_now_ns() >= end)
			return false;
		nanosleep(&ms, NULL);
	}
	return true;
}

/* ---- unary calls ---- */

/* A started batch is one more pending tag; a refused one the first error. */
static int batch_started(struct bb_worker *w, grpc_call_error e)
{
	if (e != GRPC_CALL_OK) {
		char text[96];
		snprintf(text, sizeof(text), "grpc_call_start_batch: error %d", (int)e);
		note_first_error(w->b, text);
		return -1;
	}
	w->pending++;
	return 0;
}

static int start_batch(struct bb_worker *w, grpc_call *call, const grpc_op *ops, size_t n,
                       struct bb_tag *tag)
{
	return batch_started(w, grpc_call_start_batch(call, ops, n, tag, NULL));
}

int bb_rpc_start(struct bb_worker *w, struct bb_rpc *r, grpc_channel *ch, const char *method,
                 grpc_byte_buffer *send, struct bb_tag *tag)
{
	r->send = send;
	return batch_started(w, grpc_wire_unary_start(&r->u, ch, w->cq, method, send,
	                                              bb_deadline(w->b), tag));
}

void bb_rpc_finish(struct bb_rpc *r)
{
	if (r->send)
		grpc_byte_buffer_destroy(r->send);
	r->send = NULL;
	grpc_wire_unary_release(&r->u);
}

/* ---- streams ---- */

static void stream_opened(struct bb_worker *w, struct bb_tag *t, bool ok)
{
	(void)w;
	(void)t;
	(void)ok;
}

int bb_stream_open(struct bb_worker *w, struct bb_stream *s, grpc_channel *ch, const char *method,
                   struct bb_tag *status_tag)
{
	grpc_op op;
	grpc_slice m = grpc_slice_from_static_string(method);

	memset(s, 0, sizeof(*s));
	grpc_metadata_array_init(&s->init_md);
	grpc_metadata_array_init(&s->trail_md);
	s->open_tag.done = stream_opened;
	/* No deadline: streams end by cancellation when the run is over. */
	s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq, m, NULL,
	                                   gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_INITIAL_METADATA;
	if (start_batch(w, s->call, &op, 1, &s->open_tag) != 0)
		return -1;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &s->trail_md;
	op.data.recv_status_on_client.status = &s->status;
	op.data.recv_status_on_client.status_details = &s->details;
	if (start_batch(w, s->call, &op, 1, status_tag) != 0)
		return -1;
	s->open = true;
	return 0;
}

int bb_stream_send(struct bb_worker *w, struct bb_stream *s, grpc_byte_buffer *bb,
                   struct bb_tag *tag)
{
	grpc_op op;

	if (s->send)
		grpc_byte_buffer_destroy(s->send);
	s->send = bb;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = bb;
	return start_batch(w, s->call, &op, 1, tag);
}

int bb_stream_recv(struct bb_worker *w, struct bb_stream *s, struct bb_tag *tag)
{
	grpc_op ops[2];
	size_t n = 0;

	if (s->recv) {
		grpc_byte_buffer_destroy(s->recv);
		s->recv = NULL;
	}
	memset(ops, 0, sizeof(ops));
	if (!s->got_init_md) {
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
		s->got_init_md = true;
	}
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n++].data.recv_message.recv_message = &s->recv;
	return start_batch(w, s->call, ops, n, tag);
}

void bb_stream_release(struct bb_stream *s)
{
	if (s->send)
		grpc_byte_buffer_destroy(s->send);
	if (s->recv)
		grpc_byte_buffer_destroy(s->recv);
	grpc_slice_unref(s->details);
	grpc_metadata_array_destroy(&s->init_md);
	grpc_metadata_array_destroy(&s->trail_md);
	if (s->call)
		grpc_call_unref(s->call);
	memset(s, 0, sizeof(*s));
}

/* ---- connections and workers ---- */

/* One direct channel per connection (dial.c); waits at most timeout_s for
 * the servers to listen. */
static int connect_all(struct bench *b, double timeout_s)
{
	const struct bb_options *o = b->o;
	uint64_t end = bb_now_ns() + (uint64_t)(timeout_s * 1e9);
	grpc_arg args[1];
	grpc_channel_args cargs = {1, args};
	char err[512];
	char *ca_pem = NULL;

	args[0] = (grpc_arg){.type = GRPC_ARG_INTEGER,
	                     .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
	                     .value.integer = -1};
	if (o->cacert && !(ca_pem = tls_read_file("--cacert", o->cacert, err, sizeof(err)))) {
		snprintf(b->errmsg, sizeof(b->errmsg), "%.200s", err);
		return -1;
	}
	b->ch = calloc((size_t)o->conns, sizeof(*b->ch));
	for (int i = 0; i < o->conns; i++) {
		const char *ep = o->endpoints[i % o->n_endpoints];
		int fd = bb_dial(ep, end, err, sizeof(err));

		if (fd < 0) {
			snprintf(b->errmsg, sizeof(b->errmsg), "cannot connect to %.100s within %g s: %.100s",
			         ep, timeout_s, err);
			free(ca_pem);
			return -1;
		}
		if (ca_pem) { /* it listens: the channel dials on its own */
			close(fd);
			b->ch[b->n_ch++] = bb_dial_tls_channel(ep, ca_pem, &cargs);
		} else {
			b->ch[b->n_ch++] = bb_dial_channel(ep, fd, &cargs);
		}
	}
	free(ca_pem);
	return 0;
}

static void *worker_main(void *arg)
{
	struct bb_worker *w = arg;
	struct bench *b = w->b;

	if (b->ops->worker_init)
		b->ops->worker_init(w);
	for (;;) {
		uint64_t wait_ns = 20000000;
		grpc_event ev;

		if (!w->started && atomic_load(&b->go)) {
			w->started = true;
			if (b->ops->worker_go)
				b->ops->worker_go(w);
		}
		if (!w->shut && atomic_load(&b->shutdown)) {
			w->shut = true;
			if (b->ops->worker_shutdown)
				b->ops->worker_shutdown(w);
		}
		if (w->shut && w->pending == 0)
			break;
		bb_unary_tick(w);
		/* clients waiting for a --rate token: wake for the next one */
		if (w->n_idle > 0) {
			double now = (double)bb_now_ns();
			if (w->pacer.next_ns <= now)
				wait_ns = 0;
			else if (w->pacer.next_ns - now < (double)wait_ns)
				wait_ns = (uint64_t)(w->pacer.next_ns - now);
		}
		ev = grpc_completion_queue_next(w->cq, in_ns(wait_ns), NULL);
		if (ev.type == GRPC_OP_COMPLETE) {
			struct bb_tag *t = ev.tag;
			w->pending--;
			t->done(w, t, ev.success != 0);
		}
	}
	return NULL;
}

int bb_run(struct bench *b)
{
	struct bb_options *o = b->o;
	pthread_condattr_t ca;
	int rc = 0;

	pthread_mutex_init(&b->err_mu, NULL);
	pthread_mutex_init(&b->done_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);   /* bb_now_ns's clock */
	pthread_cond_init(&b->done_cv, &ca);
	pthread_condattr_destroy(&ca);
	grpc_wire_init();
	if (connect_all(b, o->timeout_s < 5 ? o->timeout_s : 5) != 0)
		return -1;
	if (b->ops->setup && b->ops->setup(b) != 0)
		return -1;

	b->n_w = o->threads;
	b->w = calloc((size_t)b->n_w, sizeof(*b->w));
	for (int i = 0; i < b->n_w; i++) {
		struct bb_worker *w = &b->w[i];
		w->b = b;
		w->id = i;
		w->rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1) ^ bb_now_ns();
		w->cq = grpc_completion_queue_create_for_next(NULL);
		for (int k = 0; k < BB_NSERIES; k++)
			bb_samples_init(&w->s[k].lat);
		pthread_create(&w->thread, NULL, worker_main, w);
	}
	rc = b->ops->run(b);
	atomic_store(&b->stop_starting, 1);
	atomic_store(&b->shutdown, 1);
	for (int i = 0; i < b->n_w; i++)
		pthread_join(b->w[i].thread, NULL);
	return rc;
}

void bb_free(struct bench *b)
{
	if (b->ops && b->ops->teardown)
		b->ops->teardown(b);
	for (int i = 0; i < b->n_w; i++) {
		struct bb_worker *w = &b->w[i];
		grpc_completion_queue_shutdown(w->cq);
		while (grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(w->cq);
		for (int k = 0; k < BB_NSERIES; k++)
			bb_samples_free(&w->s[k].lat);
		bb_unary_worker_free(w);
	}
	free(b->w);
	for (int i = 0; i < b->n_ch; i++)
		grpc_channel_destroy(b->ch[i]);
	free(b->ch);
	b->w = NULL;
	b->ch = NULL;
	b->n_w = b->n_ch = 0;
	grpc_shutdown();
	pthread_mutex_destroy(&b->err_mu);
	pthread_mutex_destroy(&b->done_mu);
	pthread_cond_destroy(&b->done_cv);
}
