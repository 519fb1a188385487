/* unary.c - closed-loop unary clients (one request in flight each, as etcd's
 * benchmark clients), the key and value shapes, and the put, range, txn-put
 * and mixed workloads. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rpc.pb-c.h"

struct bb_unary_client {
	struct bb_tag tag;        /* first: the tag is the client */
	struct bb_rpc rpc;
	uint64_t seq, t0, aux;
	int idx, series;
};

/* ---- keys and values ---- */

size_t bb_key(const struct bb_options *o, uint64_t idx, uint8_t *buf)
{
	size_t n = (size_t)o->key_size;

	/* Decimal, zero-padded to key_size; the low digits when too short. */
	for (size_t i = n; i-- > 0;) {
		buf[i] = (uint8_t)('0' + idx % 10);
		idx /= 10;
	}
	return n;
}

uint64_t bb_key_index(struct bb_worker *w, uint64_t seq, uint64_t space)
{
	return w->b->o->sequential_keys ? seq % space : bb_rand(w) % space;
}

static uint8_t *key_buf(struct bb_worker *w)
{
	return w->scratch;
}

/* The value bytes: val_size bytes of 'v'; watch puts carry their send time
 * (monotonic ns, little endian) in the first 8. */
static uint8_t *val_buf(struct bb_worker *w)
{
	return w->scratch + w->b->o->key_size;
}

/* ---- request builders ---- */

static grpc_byte_buffer *put_request(struct bb_worker *w, uint64_t idx, bool stamp)
{
	const struct bb_options *o = w->b->o;
	Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
	uint8_t *v = val_buf(w);

	r.key.data = key_buf(w);
	r.key.len = bb_key(o, idx, r.key.data);
	if (stamp) {
		uint64_t t = bb_now_ns();
		for (int i = 0; i < 8; i++)
			v[i] = (uint8_t)(t >> (8 * i));
	}
	r.value.data = v;
	r.value.len = (size_t)o->val_size;
	return grpc_wire_pack(&r.base);
}

static grpc_byte_buffer *build_put(struct bb_worker *w, uint64_t seq, const char **method,
                                   int *series)
{
	*method = "/etcdserverpb.KV/Put";
	*series = 0;
	return put_request(w, bb_key_index(w, seq, w->b->o->key_space_size), false);
}

static grpc_byte_buffer *range_request(struct bb_worker *w, uint64_t seq)
{
	const struct bb_options *o = w->b->o;
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;

	if (o->range_key) {
		r.key.data = (uint8_t *)o->range_key;
		r.key.len = strlen(o->range_key);
		if (o->range_end) {
			r.range_end.data = (uint8_t *)o->range_end;
			r.range_end.len = strlen(o->range_end);
		}
	} else {
		r.key.data = key_buf(w);
		r.key.len = bb_key(o, bb_key_index(w, seq, o->key_space_size), r.key.data);
	}
	r.serializable = !o->linearizable;
	return grpc_wire_pack(&r.base);
}

static grpc_byte_buffer *build_range(struct bb_worker *w, uint64_t seq, const char **method,
                                     int *series)
{
	*method = "/etcdserverpb.KV/Range";
	*series = 0;
	return range_request(w, seq);
}

/* A txn of txn_ops puts on consecutive keys (distinct: etcd refuses
 * duplicate keys in one txn), no compares. */
static grpc_byte_buffer *build_txn_put(struct bb_worker *w, uint64_t seq, const char **method,
                                       int *series)
{
	const struct bb_options *o = w->b->o;
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	int n = o->txn_ops;
	Etcdserverpb__RequestOp ops[n], *opp[n];
	Etcdserverpb__PutRequest puts[n];
	uint8_t *keys = w->scratch + o->key_size + o->val_size;
	uint64_t first = bb_key_index(w, seq * (uint64_t)n, o->key_space_size);

	for (int i = 0; i < n; i++) {
		etcdserverpb__request_op__init(&ops[i]);
		etcdserverpb__put_request__init(&puts[i]);
		puts[i].key.data = keys + (size_t)i * (size_t)o->key_size;
		puts[i].key.len = bb_key(o, (first + (uint64_t)i) % o->key_space_size, puts[i].key.data);
		puts[i].value.data = val_buf(w);
		puts[i].value.len = (size_t)o->val_size;
		ops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
		ops[i].request_put = &puts[i];
		opp[i] = &ops[i];
	}
	t.n_success = (size_t)n;
	t.success = opp;
	*method = "/etcdserverpb.KV/Txn";
	*series = 0;
	return grpc_wire_pack(&t.base);
}

static grpc_byte_buffer *build_mixed(struct bb_worker *w, uint64_t seq, const char **method,
                                     int *series)
{
	double u = (double)(bb_rand(w) >> 11) / (double)(1ULL << 53);

	if (u < w->b->o->read_ratio) {
		*method = "/etcdserverpb.KV/Range";
		*series = 0;
		return range_request(w, seq);
	}
	*method = "/etcdserverpb.KV/Put";
	*series = 1;
	return put_request(w, bb_key_index(w, seq, w->b->o->key_space_size), false);
}

/* Watch load: puts on the watched keys, stamped with their send time. */
static grpc_byte_buffer *build_watch_put(struct bb_worker *w, uint64_t seq, const char **method,
                                         int *series)
{
	*method = "/etcdserverpb.KV/Put";
	*series = 1;
	w->build_aux = bb_key_index(w, seq, (uint64_t)w->b->o->watch_keys);
	return put_request(w, w->build_aux, true);
}

/* ---- the closed loop ---- */

static void client_done(struct bb_worker *w, struct bb_unary_client *c)
{
	(void)c;
	bb_client_done(w->b);
}

static void client_start(struct bb_worker *w, struct bb_unary_client *c)
{
	struct bench *b = w->b;
	const char *method;
	grpc_byte_buffer *bb = b->unary_build(w, c->seq, &method, &c->series);

	c->aux = w->build_aux;

	c->t0 = bb_now_ns();
	if (bb_rpc_start(w, &c->rpc, bb_channel(b, c->idx), method, bb, &c->tag) != 0) {
		bb_record_error(w, c->series, BB_NSTATUS, "could not start a call");
		bb_rpc_finish(&c->rpc);
		client_done(w, c);
	}
}

static void client_next(struct bb_worker *w, struct bb_unary_client *c)
{
	if (!bb_claim(w->b, &c->seq)) {
		client_done(w, c);
		return;
	}
	if (w->n_idle > 0 || !bb_pacer_take(&w->pacer, (double)bb_now_ns())) {
		w->idle[w->n_idle++] = c;
		return;
	}
	client_start(w, c);
}

static void client_reply(struct bb_worker *w, struct bb_tag *t, bool ok)
{
	struct bb_unary_client *c = (struct bb_unary_client *)t;

	grpc_status_code st = ok ? c->rpc.u.status : GRPC_STATUS_UNKNOWN;

	bb_record(w, c->series, c->t0, st, c->rpc.u.details);
	if (st == GRPC_STATUS_OK && w->b->unary_ok)
		w->b->unary_ok(w, c->aux);
	bb_rpc_finish(&c->rpc);
	client_next(w, c);
}

void bb_unary_tick(struct bb_worker *w)
{
	int i = 0;

	if (w->n_idle == 0)
		return;
	if (atomic_load(&w->b->stop_starting)) {
		for (i = 0; i < w->n_idle; i++)
			client_done(w, w->idle[i]);
		w->n_idle = 0;
		return;
	}
	while (i < w->n_idle && bb_pacer_take(&w->pacer, (double)bb_now_ns()))
		client_start(w, w->idle[i++]);
	memmove(w->idle, w->idle + i, (size_t)(w->n_idle - i) * sizeof(*w->idle));
	w->n_idle -= i;
}

void bb_unary_go(struct bb_worker *w)
{
	struct bench *b = w->b;
	const struct bb_options *o = b->o;

	w->n_clients = 0;
	for (int i = w->id; i < b->n_clients; i += b->n_w)
		w->n_clients++;
	/* This worker's share of --rate: in proportion to its clients. */
	if (o->rate > 0 && w->n_clients > 0)
		w->pacer.interval_ns = 1e9 * b->n_clients / (o->rate * w->n_clients);
	w->clients = calloc((size_t)w->n_clients, sizeof(*w->clients));
	w->idle = calloc((size_t)w->n_clients + 1, sizeof(*w->idle));
	w->scratch = calloc(1, (size_t)o->key_size * (size_t)(o->txn_ops + 1) + (size_t)o->val_size);
	memset(w->scratch + o->key_size, 'v', (size_t)o->val_size);
	for (int k = 0; k < w->n_clients; k++) {
		struct bb_unary_client *c = &w->clients[k];
		c->tag.done = client_reply;
		c->idx = w->id + k * b->n_w;
		client_next(w, c);
	}
}

void bb_unary_worker_free(struct bb_worker *w)
{
	free(w->clients);
	free(w->idle);
	free(w->scratch);
	w->clients = NULL;
	w->idle = NULL;
	w->scratch = NULL;
}

int bb_unary_run(struct bench *b)
{
	const struct bb_options *o = b->o;

	b->t_go = bb_now_ns();
	atomic_store(&b->go, 1);
	if (o->duration_s > 0) {
		bb_wait_clients(b, b->t_go + (uint64_t)(o->duration_s * 1e9));
		atomic_store(&b->stop_starting, 1);
	}
	/* Every call has a deadline: this ends. */
	bb_wait_clients(b, 0);
	return 0;
}

static int unary_setup(struct bench *b)
{
	const struct bb_options *o = b->o;

	b->n_clients = o->clients;
	switch (o->workload) {
	case BB_PUT: b->unary_build = build_put; break;
	case BB_RANGE: b->unary_build = build_range; break;
	case BB_TXN_PUT:
		if ((uint64_t)o->txn_ops > o->key_space_size) {
			snprintf(b->errmsg, sizeof(b->errmsg),
			         "--txn-ops %d needs --key-space-size >= %d (keys in a txn are distinct)",
			         o->txn_ops, o->txn_ops);
			return -1;
		}
		b->unary_build = build_txn_put;
		break;
	case BB_MIXED: b->unary_build = build_mixed; break;
	default: b->unary_build = build_watch_put; break;
	}
	return 0;
}

const struct bb_workload_ops bb_put_ops = {
	.series_name = {"put", NULL},
	.setup = unary_setup,
	.worker_go = bb_unary_go,
	.run = bb_unary_run,
};
const struct bb_workload_ops bb_range_ops = {
	.series_name = {"range", NULL},
	.setup = unary_setup,
	.worker_go = bb_unary_go,
	.run = bb_unary_run,
};
const struct bb_workload_ops bb_txn_put_ops = {
	.series_name = {"txn-put", NULL},
	.setup = unary_setup,
	.worker_go = bb_unary_go,
	.run = bb_unary_run,
};
const struct bb_workload_ops bb_mixed_ops = {
	.series_name = {"range", "put"},
	.setup = unary_setup,
	.worker_go = bb_unary_go,
	.run = bb_unary_run,
};

int bb_unary_setup(struct bench *b)
{
	return unary_setup(b);
}
