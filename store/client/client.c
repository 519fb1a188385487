/* client.c - the remote client: connect and close, one gRPC channel per
 * endpoint and the choice between them, the completion-queue thread that
 * hands completions to the caller's loop, and the mapping of gRPC statuses
 * back to Bollard's error codes. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

/* core/errors.h first: bollard/store.h then skips its copy of the enum. */
#include "core/errors.h"
#include "client_int.h"
#include "wire/grpc_creds.h"

/* The public header's numbers are the store's (both are ABI). */
#define BC_CHECK_ERR_(name, value)                                                              \
	_Static_assert(BOLLARD_E##name == (value), "bollard/store.h: BOLLARD_E" #name);
BOLLARD_ERROR_CODES(BC_CHECK_ERR_)
#undef BC_CHECK_ERR_
_Static_assert(BOLLARD_EJWT_VERIFY_ONLY + 1 == BOLLARD_ERR_END_, "bollard/store.h lacks error codes");

gpr_timespec bc_in_ms(int64_t ms)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

size_t bc_next_ep(struct bollard_client *c, size_t ep)
{
	size_t next = (ep + 1) % c->n_ep;

	/* Move the client's choice along only if nobody else did already. */
	atomic_compare_exchange_strong(&c->cur, &ep, next);
	return next;
}

grpc_connectivity_state bc_ep_state(struct bollard_client *c, size_t ep)
{
	return grpc_channel_check_connectivity_state(c->ch[ep], 1);
}

void bc_wait(struct bollard_client *c, grpc_completion_queue *cq, size_t ep, unsigned ms,
             struct bc_tag *t)
{
	grpc_connectivity_state st = grpc_channel_check_connectivity_state(c->ch[ep], 0);

	grpc_channel_watch_connectivity_state(c->ch[ep], st, bc_in_ms(ms), cq, t);
	if (cq == c->cq)
		bc_op_started(c);
}

int bc_status_to_err(grpc_status_code st, grpc_slice details, bool sent)
{
	size_t len = GRPC_SLICE_LENGTH(details);
	const char *msg = (const char *)GRPC_SLICE_START_PTR(details);
	static const int codes[] = {
#define BC_CODE_(name, value) BOLLARD_E##name,
		BOLLARD_ERROR_CODES(BC_CODE_)
#undef BC_CODE_
	};

	if (st == GRPC_STATUS_OK)
		return 0;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *text = bollard_strerror(codes[i]);
		if (strlen(text) == len && memcmp(text, msg, len) == 0)
			return codes[i];
	}
	switch (st) {
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return -ETIMEDOUT;
	case GRPC_STATUS_CANCELLED:
		return -ECANCELED;
	case GRPC_STATUS_UNAVAILABLE:
		return sent ? -ECONNRESET : -ENOTCONN;
	case GRPC_STATUS_RESOURCE_EXHAUSTED:
		return BOLLARD_EREQUEST_TOO_LARGE;
	default:
		return -EPROTO;
	}
}

/* ---- live objects and the close handshake ---- */

void bc_live_add(struct bollard_client *c, struct bc_live *l, void (*cancel)(struct bc_live *))
{
	l->cancel = cancel;
	l->emb = c->emb != NULL;
	l->ends_with_member = false;
	l->next = c->live.next;
	l->prev = &c->live;
	c->live.next->prev = l;
	c->live.next = l;
}

static void maybe_finish_close(struct bollard_client *c);

void bc_live_remove(struct bollard_client *c, struct bc_live *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->next = l->prev = l;
	if (c->emb)
		bc_emb_maybe_finish_close(c);
	else
		maybe_finish_close(c);
}

void bc_op_started(struct bollard_client *c)
{
	c->pending++;
}

/* ---- the completion-queue thread ---- */

static void *cq_main(void *arg)
{
	struct bollard_client *c = arg;

	pthread_setname_np(pthread_self(), "bollard-client");
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
		                                           NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		struct bc_tag *t = ev.tag;
		t->ok = ev.success != 0;
		t->next = NULL;
		pthread_mutex_lock(&c->mu);
		*c->tail = t;
		c->tail = &t->next;
		pthread_mutex_unlock(&c->mu);
		uv_async_send(&c->async);
	}
	pthread_mutex_lock(&c->mu);
	c->cq_down = true;
	pthread_mutex_unlock(&c->mu);
	uv_async_send(&c->async);
	return NULL;
}

/* Releases what c holds, not c itself: the close callback gets c as an
 * identity before the caller frees it. */
static void release_client(struct bollard_client *c)
{
	for (size_t i = 0; i < c->n_ep; i++) {
		if (c->ch && c->ch[i])
			grpc_channel_destroy(c->ch[i]);
		free(c->endpoints[i]);
	}
	free(c->ch);
	free(c->endpoints);
	if (c->loop)
		pthread_mutex_destroy(&c->mu);
	grpc_shutdown();
}

static void async_closed(uv_handle_t *h)
{
	struct bollard_client *c = h->data;
	bollard_close_cb cb = c->close_cb;
	void *data = c->close_data;

	release_client(c);
	if (cb)
		cb(c, data); /* the pointer is only an identity now */
	free(c);
}

static void on_async(uv_async_t *a)
{
	struct bollard_client *c = a->data;
	struct bc_tag *list;
	bool down;

	pthread_mutex_lock(&c->mu);
	list = c->head;
	c->head = NULL;
	c->tail = &c->head;
	down = c->cq_down;
	pthread_mutex_unlock(&c->mu);
	while (list) {
		struct bc_tag *t = list;
		list = t->next;
		c->pending--;
		t->done(t, t->ok);
	}
	if (down && c->cq) {
		pthread_join(c->thread, NULL);
		grpc_completion_queue_destroy(c->cq);
		c->cq = NULL;
		uv_close((uv_handle_t *)&c->async, async_closed);
		return;
	}
	maybe_finish_close(c);
}

static void maybe_finish_close(struct bollard_client *c)
{
	if (!c->closing || c->live.next != &c->live || c->pending > 0 || !c->cq || c->cq_down)
		return;
	/* Nothing left: the CQ thread ends on SHUTDOWN, on_async finishes. */
	if (!c->cq_shutdown) {
		c->cq_shutdown = true;
		grpc_completion_queue_shutdown(c->cq);
	}
}

/* ---- connect / close ---- */

static char *endpoint_target(const char *ep)
{
	const char *p = ep;

	if (!strncmp(p, "http://", 7))
		p += 7;
	else if (!strncmp(p, "https://", 8))
		p += 8;
	return strdup(p);
}

/* Plain text, or TLS when an endpoint says https:// or a TLS option is
 * set (then every endpoint is TLS, as in clientv3); http:// and https://
 * endpoints together are refused. */
static int channel_creds(const char *const *endpoints, size_t n,
                         const struct bollard_remote_options *o, grpc_channel_credentials **out)
{
	bool http = false, https = false;
	char err[512];

	for (size_t i = 0; i < n; i++) {
		if (!endpoints[i] || !endpoints[i][0])
			return -EINVAL;
		http |= !strncmp(endpoints[i], "http://", 7);
		https |= !strncmp(endpoints[i], "https://", 8);
	}
	if (http && https)
		return -EINVAL;
	if (!https && !(o && (o->tls_ca_file || o->tls_cert_file || o->tls_key_file))) {
		*out = grpc_insecure_credentials_create();
		return 0;
	}
	if (http)
		return -EINVAL; /* TLS options for http:// endpoints */
	return grpc_wire_tls_creds(o ? o->tls_ca_file : NULL, o ? o->tls_cert_file : NULL,
	                           o ? o->tls_key_file : NULL, out, err, sizeof(err));
}

int bollard_connect(struct bollard_client **out, uv_loop_t *loop, const char *const *endpoints,
                    size_t n_endpoints, const struct bollard_remote_options *opts)
{
	struct bollard_client *c;
	grpc_channel_credentials *creds = NULL;
	grpc_arg args[6];
	grpc_channel_args cargs = {6, args};
	int rc = -ENOMEM;

	if (!out || !endpoints || n_endpoints == 0)
		return -EINVAL;
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	grpc_wire_init();
	c->loop = loop;
	c->live.next = c->live.prev = &c->live;
	c->dial_ms = opts && opts->dial_timeout_ms ? opts->dial_timeout_ms : 5000;
	c->req_ms = opts && opts->request_timeout_ms ? opts->request_timeout_ms : 10000;
	c->n_ep = n_endpoints;
	c->endpoints = calloc(n_endpoints, sizeof(*c->endpoints));
	c->ch = calloc(n_endpoints, sizeof(*c->ch));
	if (loop)
		pthread_mutex_init(&c->mu, NULL);
	if (!c->endpoints || !c->ch)
		goto fail;
	if ((rc = channel_creds(endpoints, n_endpoints, opts, &creds)) != 0)
		goto fail;
	rc = -ENOMEM;
	for (size_t i = 0; i < n_endpoints; i++)
		if (!(c->endpoints[i] = endpoint_target(endpoints[i])))
			goto fail;
	/* Reconnect quickly after a member restarts (gRPC's default backoff
	 * grows to two minutes); keep idle watch streams alive the way etcd's
	 * clients do; no message size limit on receive. */
	args[0] = (grpc_arg){GRPC_ARG_INTEGER, (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, {.integer = 100}};
	args[1] = (grpc_arg){GRPC_ARG_INTEGER, (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, {.integer = 100}};
	args[2] = (grpc_arg){GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, {.integer = 1000}};
	args[3] = (grpc_arg){GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = -1}};
	args[4] = (grpc_arg){GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = 30000}};
	args[5] = (grpc_arg){GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = 10000}};
	for (size_t i = 0; i < n_endpoints; i++)
		c->ch[i] = grpc_channel_create(c->endpoints[i], creds, &cargs);
	grpc_channel_credentials_release(creds);
	creds = NULL;
	if (loop) {
		c->tail = &c->head;
		c->cq = grpc_completion_queue_create_for_next(NULL);
		if ((rc = uv_async_init(loop, &c->async, on_async)) != 0) {
			grpc_completion_queue_shutdown(c->cq);
			grpc_completion_queue_destroy(c->cq);
			goto fail;
		}
		c->async.data = c;
		if ((rc = -pthread_create(&c->thread, NULL, cq_main, c)) != 0) {
			/* The handle must close through the loop: finish there. */
			c->cq_down = true;
			grpc_completion_queue_shutdown(c->cq);
			grpc_completion_queue_destroy(c->cq);
			c->cq = NULL;
			uv_close((uv_handle_t *)&c->async, async_closed);
			return rc;
		}
	}
	*out = c;
	return 0;
fail:
	if (creds)
		grpc_channel_credentials_release(creds);
	for (size_t i = 0; i < n_endpoints && c->endpoints; i++)
		free(c->endpoints[i]);
	c->n_ep = 0;
	free(c->endpoints);
	c->endpoints = NULL;
	release_client(c);
	free(c);
	return rc;
}

void bollard_close(struct bollard_client *c, bollard_close_cb close_cb, void *data)
{
	if (!c)
		return;
	if (c->emb) {
		bc_emb_close(c, close_cb, data);
		return;
	}
	if (!c->loop) {
		release_client(c);
		if (close_cb)
			close_cb(c, data);
		free(c);
		return;
	}
	if (c->closing)
		return;
	c->closing = true;
	c->close_cb = close_cb;
	c->close_data = data;
	/* cancel() may unlink its own entry: walk from a saved next. */
	for (struct bc_live *l = c->live.next, *next; l != &c->live; l = next) {
		next = l->next;
		l->cancel(l);
	}
	maybe_finish_close(c);
}
