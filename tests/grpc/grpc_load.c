/* grpc_load.c - a small gRPC C-core client: keeps N unary Put (or Range)
 * calls in flight against an etcd endpoint and reports calls/s and any
 * non-OK status. Used to measure the server's own overhead (with the fake
 * node) and as a smoke load for the real store.
 *
 *   grpc-load HOST:PORT [total=20000] [inflight=64] [put|range|serializable] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>

#include "rpc.pb-c.h"
#include "wire/grpc_unary.h"

struct rpc {
	struct grpc_wire_unary u;
	grpc_byte_buffer *send;
};

struct load {
	grpc_channel *ch;
	grpc_completion_queue *cq;
	const char *method;
	int mode;
	long started, done, failed, total;
};

static grpc_byte_buffer *request(struct load *l, long i)
{
	char key[64];
	uint8_t buf[256];
	size_t len;
	grpc_slice s;
	grpc_byte_buffer *bb;

	snprintf(key, sizeof(key), "/load/%06ld", i % 10000);
	if (l->mode == 0) {
		Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
		r.key.data = (uint8_t *)key;
		r.key.len = strlen(key);
		r.value.data = (uint8_t *)"0123456789abcdef0123456789abcdef";
		r.value.len = 32;
		len = etcdserverpb__put_request__pack(&r, buf);
	} else {
		Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
		r.key.data = (uint8_t *)key;
		r.key.len = strlen(key);
		r.serializable = l->mode == 2;
		len = etcdserverpb__range_request__pack(&r, buf);
	}
	s = grpc_slice_from_copied_buffer((const char *)buf, len);
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static void start(struct load *l, struct rpc *r)
{
	r->send = request(l, l->started++);
	if (grpc_wire_unary_start(&r->u, l->ch, l->cq, l->method, r->send,
	                          gpr_inf_future(GPR_CLOCK_REALTIME), r) != GRPC_CALL_OK) {
		fprintf(stderr, "start_batch failed\n");
		exit(1);
	}
}

static void finish(struct load *l, struct rpc *r)
{
	if (r->u.status != GRPC_STATUS_OK) {
		if (l->failed++ < 5) {
			char *d = grpc_slice_to_c_string(r->u.details);
			fprintf(stderr, "status %d: %s\n", (int)r->u.status, d);
			gpr_free(d);
		}
	}
	grpc_byte_buffer_destroy(r->send);
	grpc_wire_unary_release(&r->u);
	l->done++;
}

int main(int argc, char **argv)
{
	struct load l;
	long inflight;
	struct rpc *rpcs;
	struct timespec t0, t1;
	double secs;
	grpc_channel_credentials *creds;

	if (argc < 2) {
		fprintf(stderr, "usage: %s HOST:PORT [total] [inflight] [put|range|serializable]\n",
		        argv[0]);
		return 2;
	}
	memset(&l, 0, sizeof(l));
	l.total = argc > 2 ? atol(argv[2]) : 20000;
	inflight = argc > 3 ? atol(argv[3]) : 64;
	l.mode = argc > 4 ? (strcmp(argv[4], "range") == 0 ? 1 : strcmp(argv[4], "serializable") == 0 ? 2 : 0) : 0;
	l.method = l.mode ? "/etcdserverpb.KV/Range" : "/etcdserverpb.KV/Put";
	if (inflight > l.total)
		inflight = l.total;
	grpc_init();
	creds = grpc_insecure_credentials_create();
	l.ch = grpc_channel_create(argv[1], creds, NULL);
	grpc_channel_credentials_release(creds);
	l.cq = grpc_completion_queue_create_for_next(NULL);
	rpcs = calloc((size_t)inflight, sizeof(*rpcs));

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < inflight; i++)
		start(&l, &rpcs[i]);
	while (l.done < l.total) {
		grpc_event ev = grpc_completion_queue_next(l.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		struct rpc *r = ev.tag;
		if (ev.type != GRPC_OP_COMPLETE)
			break;
		finish(&l, r);
		if (l.started < l.total)
			start(&l, r);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("%s x%ld, %ld in flight: %.0f calls/s (%.2f s), %ld failed\n", l.method, l.total,
	       inflight, (double)l.done / secs, secs, l.failed);

	grpc_channel_destroy(l.ch);
	grpc_completion_queue_shutdown(l.cq);
	while (grpc_completion_queue_next(l.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(l.cq);
	free(rpcs);
	grpc_shutdown();
	return l.failed ? 1 : 0;
}
