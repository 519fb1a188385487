/* auth.c - the member's side of etcd's auth: the simple-token table
 * (logins registered when their raft entry applies, on every member, so a
 * token works on any of them) or, with --auth-token jwt, signed tokens
 * (core/jwt.c: a login's answer is signed on the member that serves it,
 * with the auth revision its password was checked at; any member with the
 * key verifies one), resolving a caller's token or client
 * certificate to a user and auth revision, and the Auth requests: each
 * becomes one bollard.AuthRequest raft entry, applied by core/auth.c.
 *
 * Passwords stay out of the raft log and off the loop thread: UserAdd and
 * UserChangePassword are bcrypt-hashed on libuv's thread pool before they
 * are proposed; Authenticate checks the password there against the stored
 * hash, then proposes only the name and a random token prefix (etcd's
 * CheckPassword, then its InternalAuthenticateRequest). If the auth store
 * changed between the check and the apply, the login is checked again, as
 * etcd does. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/auth.h"
#include "core/duration.h"
#include "core/errors.h"
#include "node/log.h"
#include "node/node_int.h"
#include "tls/certs.h"

#define LOGIN_TRIES 3

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void node_auth_init(struct node *n)
{
	int64_t ttl = n->cfg.auth_token_ttl_s > 0 ? n->cfg.auth_token_ttl_s : 300;
	pthread_mutex_init(&n->auth_lock, NULL);
	auth_tokens_init(&n->tokens, (uint64_t)ttl * 1000);
}

/* The pairs after "jwt," (etcd's decomposeOpts and jwtOptions): 0, or -1
 * with why set (logged as etcd's "problem loading JWT options") and *etcd
 * etcd's error. */
static int jwt_setup(struct node *n, char *opts, const char **etcd, char *why, size_t whylen)
{
	const char *method = NULL, *pub = NULL, *priv = NULL, *ttl = NULL, **slot;
	char *pair, *save = NULL, *pub_pem = NULL, *priv_pem = NULL;
	int rc = -1;

	*etcd = "auth: invalid auth options";
	n->jwt_ttl_ms = 5 * 60 * 1000; /* etcd's DefaultTTL */
	for (pair = strtok_r(opts, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(pair, '=');
		if (!eq || strchr(eq + 1, '=')) {
			snprintf(why, whylen, "invalid token specific option: %s", pair);
			return -1;
		}
		*eq = '\0';
		slot = strcmp(pair, "sign-method") == 0 ? &method
		       : strcmp(pair, "pub-key") == 0   ? &pub
		       : strcmp(pair, "priv-key") == 0  ? &priv
		       : strcmp(pair, "ttl") == 0       ? &ttl
		                                        : NULL;
		if (!slot) {
			blog(BLOG_WARN, "auth", "unknown JWT options: [%s]", pair);
			continue;
		}
		if (*slot) {
			snprintf(why, whylen, "invalid token specific option, duplicated parameters (%s)",
			         pair);
			return -1;
		}
		*slot = eq + 1;
	}
	if (ttl && *ttl && duration_parse_ms(ttl, &n->jwt_ttl_ms, why, whylen) != 0)
		return -1;
	if ((pub && *pub && !(pub_pem = tls_read_file("open", pub, why, whylen))) ||
	    (priv && *priv && !(priv_pem = tls_read_file("open", priv, why, whylen))))
		goto out;
	n->jwt = jwt_key_new(method ? method : "", (const uint8_t *)pub_pem,
	                     pub_pem ? strlen(pub_pem) : 0, (const uint8_t *)priv_pem,
	                     priv_pem ? strlen(priv_pem) : 0, why, whylen);
	if (!n->jwt) {
		/* an unknown method is an option error; the key's own errors stand */
		if (strcmp(why, "auth: invalid auth signature method") != 0)
			*etcd = NULL;
		goto out;
	}
	rc = 0;
	blog(BLOG_INFO, "auth", "JWT tokens signed with %s, valid for %llu ms%s", method,
	     (unsigned long long)n->jwt_ttl_ms,
	     jwt_key_can_sign(n->jwt) ? "" : " (public key only: this member verifies, not signs)");
out:
	if (priv_pem)
		explicit_bzero(priv_pem, strlen(priv_pem));
	free(pub_pem);
	free(priv_pem);
	return rc;
}

int node_auth_setup(struct node *n, char *errbuf, size_t errlen)
{
	const char *opt = n->cfg.auth_token ? n->cfg.auth_token : "simple", *etcd = NULL;
	char *dup = strdup(opt), *comma, why[300] = "";
	int rc = 0;

	if (!dup)
		return -ENOMEM;
	if ((comma = strchr(dup, ',')) != NULL)
		*comma++ = '\0';
	if (strcmp(dup, "jwt") == 0) {
		if (jwt_setup(n, comma ? comma : dup + strlen(dup), &etcd, why, sizeof(why)) != 0) {
			if (etcd && strcmp(etcd, why) != 0)
				blog(BLOG_ERROR, "auth", "problem loading JWT options: %s", why);
			snprintf(errbuf, errlen, "%s", etcd ? etcd : why);
			rc = -EINVAL;
		}
	} else if (strcmp(dup, "simple") != 0) {
		blog(BLOG_ERROR, "auth", "unknown token type: %s", dup);
		snprintf(errbuf, errlen, "auth: invalid auth options");
		rc = -EINVAL;
	}
	free(dup);
	return rc;
}

void node_auth_free(struct node *n)
{
	jwt_key_free(n->jwt);
	n->jwt = NULL;
	auth_tokens_free(&n->tokens);
	pthread_mutex_destroy(&n->auth_lock);
}

int node_auth_load(struct node *n)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return bollard_err_from_lmdb(rc);
	__atomic_store_n(&n->auth_enabled_cache, auth_enabled(&n->mvcc, txn), __ATOMIC_RELAXED);
	__atomic_store_n(&n->auth_rev_cache, auth_revision(&n->mvcc, txn), __ATOMIC_RELAXED);
	mdb_txn_abort(txn);
	pthread_mutex_lock(&n->auth_lock);
	auth_tokens_clear(&n->tokens);
	pthread_mutex_unlock(&n->auth_lock);
	return 0;
}

/* apply_opts.auth_applied (fsm.c): runs on the loop thread as each Auth
 * request applies. */
void node_auth_applied(void *ud, const struct auth_event *ev)
{
	struct node *n = ud;
	__atomic_store_n(&n->auth_enabled_cache, ev->enabled, __ATOMIC_RELAXED);
	__atomic_store_n(&n->auth_rev_cache, ev->revision, __ATOMIC_RELAXED);
	pthread_mutex_lock(&n->auth_lock);
	if (ev->disabled)
		auth_tokens_clear(&n->tokens);
	if (ev->drop_user)
		auth_tokens_drop_user(&n->tokens, ev->drop_user);
	if (ev->token_user && !n->jwt &&
	    auth_tokens_add(&n->tokens, ev->token, ev->token_user, mono_ms()) != 0)
		blog(BLOG_WARN, "auth", "out of memory registering a token of %s", ev->token_user);
	pthread_mutex_unlock(&n->auth_lock);
	if (ev->changed)
		blog(BLOG_INFO, "auth", "auth %s, revision %llu", ev->enabled ? "enabled" : "disabled",
		     (unsigned long long)ev->revision);
}

int node_auth_resolve(struct node *n, const char *token, const char *cert_cn, char **user,
                      uint64_t *rev)
{
	*user = NULL;
	*rev = 0;
	if (token != NULL && n->jwt) { /* the revision is the token's */
		char why[96];
		int rc = jwt_verify(n->jwt, token, (int64_t)time(NULL), user, rev, why, sizeof(why));
		if (rc == -EINVAL)
			blog(BLOG_WARN, "auth", "invalid auth token (%s)", why);
		return rc == -EINVAL ? BOLLARD_EINVALID_AUTH_TOKEN : rc;
	}
	if (token != NULL) {
		bool ok;
		pthread_mutex_lock(&n->auth_lock);
		ok = auth_tokens_lookup(&n->tokens, token, mono_ms(), user);
		pthread_mutex_unlock(&n->auth_lock);
		if (!ok)
			return BOLLARD_EINVALID_AUTH_TOKEN;
		if (*user == NULL)
			return -ENOMEM;
	} else if (cert_cn != NULL) {
		if ((*user = strdup(cert_cn)) == NULL)
			return -ENOMEM;
	} else {
		return 0;
	}
	*rev = __atomic_load_n(&n->auth_rev_cache, __ATOMIC_RELAXED);
	return 0;
}

int node_auth_check_admin(struct node *n, const char *user, uint64_t rev)
{
	const struct auth_info ai = {user, rev};
	MDB_txn *txn;
	int rc;
	if (!__atomic_load_n(&n->auth_enabled_cache, __ATOMIC_RELAXED))
		return 0;
	pthread_rwlock_rdlock(&n->env_lock);
	if (n->env == NULL)
		rc = BOLLARD_ESTOPPED;
	else if ((rc = bollard_err_from_lmdb(mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn))) == 0) {
		rc = auth_check_admin(&n->mvcc, txn, &ai);
		mdb_txn_abort(txn);
	}
	pthread_rwlock_unlock(&n->env_lock);
	return rc;
}

/* ---- Auth requests ---------------------------------------------------------- */

/* One Auth call on its way through hashing and raft. */
struct auth_job {
	struct node *n;
	struct node_req *outer;
	struct node_req inner; /* op NODE_AUTH, msg &areq (a login: NODE_READ_INDEX first) */
	Bollard__AuthRequest areq;
	Bollard__ReadIndexRequest ri;
	union {
		Etcdserverpb__AuthUserAddRequest user_add;
		Etcdserverpb__AuthUserChangePasswordRequest change;
		Etcdserverpb__AuthenticateRequest login;
	} copy;                /* the request without its password */
	const char *password;  /* the outer request's */
	char hash[AUTH_HASH_MAX];
	uint8_t *stored;       /* login: the user's stored hash */
	size_t stored_len;
	uint64_t checked_rev;  /* login: auth revision when the password was checked */
	int tries;
	int err;
	uv_work_t work;
};

static void job_finish(struct auth_job *j, int err, uint8_t *resp, size_t len)
{
	node_complete(j->n, j->outer, err, resp, len);
	free(j->stored);
	explicit_bzero(j->hash, sizeof(j->hash));
	free(j);
}

static void login_start(struct auth_job *j);

/* --auth-token jwt: the login's answer gets a token signed here for the user
 * at the auth revision its password was checked at (etcd signs at apply
 * with the revision then; a login whose revision moved in between was tried
 * again, see inner_done). 0 or an error; *resp and *len replaced. */
static int jwt_answer(struct auth_job *j, uint8_t **resp, size_t *len)
{
	struct node *n = j->n;
	Etcdserverpb__AuthenticateResponse *r;
	char *tok = NULL;
	uint8_t *out;
	int rc;

	if (!jwt_key_can_sign(n->jwt))
		return BOLLARD_EJWT_VERIFY_ONLY;
	if (!(r = etcdserverpb__authenticate_response__unpack(NULL, *len, *resp)))
		return BOLLARD_EINTERNAL;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now); /* exp: Unix seconds, as etcd's */
	rc = jwt_sign(n->jwt, j->copy.login.name, j->checked_rev,
	              ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + (int64_t)n->jwt_ttl_ms) /
	                      1000,
	              &tok);
	if (rc == 0) {
		char *simple = r->token;
		r->token = tok;
		*len = etcdserverpb__authenticate_response__get_packed_size(r);
		if ((out = malloc(*len ? *len : 1)) == NULL) {
			rc = -ENOMEM;
		} else {
			etcdserverpb__authenticate_response__pack(r, out);
			free(*resp);
			*resp = out;
		}
		r->token = simple;
	}
	free(tok);
	etcdserverpb__authenticate_response__free_unpacked(r, NULL);
	return rc == -EINVAL ? BOLLARD_EINTERNAL : rc;
}

static void inner_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct auth_job *j = req->data;
	struct node *n = j->n;
	bool login = j->areq.op_case == BOLLARD__AUTH_REQUEST__OP_AUTHENTICATE;
	if (err == 0 && login &&
	    j->checked_rev != __atomic_load_n(&n->auth_rev_cache, __ATOMIC_RELAXED) &&
	    ++j->tries < LOGIN_TRIES && !n->refusing) {
		blog(BLOG_INFO, "auth", "revision when password checked became stale; retrying");
		free(resp);
		login_start(j);
		return;
	}
	if (err == 0 && login && n->jwt && (err = jwt_answer(j, &resp, &len)) != 0) {
		free(resp);
		resp = NULL;
		len = 0;
	}
	job_finish(j, err, resp, len);
}

static void job_propose(struct auth_job *j)
{
	struct req_list l = {0};
	j->inner = (struct node_req){.data = j, .op = NODE_AUTH, .msg = &j->areq.base,
	                             .cb = inner_done, .auth_user = j->outer->auth_user,
	                             .auth_rev = j->outer->auth_rev};
	node_list_push(&l, &j->inner);
	node_propose(j->n, &l);
}

static void hash_work(uv_work_t *w)
{
	struct auth_job *j = w->data;
	j->err = auth_hash_password(j->password, strlen(j->password), j->hash);
}

static void verify_work(uv_work_t *w)
{
	struct auth_job *j = w->data;
	j->err = auth_verify_password(j->stored, j->stored_len, j->password, strlen(j->password));
}

static void work_finish(struct auth_job *j, int status)
{
	struct node *n = j->n;
	int err = status ? status : j->err;
	char prefix[17];

	if (n->refusing)
		err = BOLLARD_ESTOPPED;
	if (err == 0 && j->areq.op_case == BOLLARD__AUTH_REQUEST__OP_AUTHENTICATE)
		err = auth_token_prefix(prefix);
	if (err != 0) {
		if (err == BOLLARD_EAUTH_FAILED)
			blog(BLOG_INFO, "auth", "invalid password for user %s", j->copy.login.name);
		job_finish(j, err, NULL, 0);
		return;
	}
	if (j->areq.op_case == BOLLARD__AUTH_REQUEST__OP_AUTHENTICATE) {
		memcpy(j->hash, prefix, sizeof(prefix)); /* the hash buffer holds the prefix */
		j->areq.simple_token = j->hash;
	} else {
		j->areq.hashed_password = (ProtobufCBinaryData){strlen(j->hash), (uint8_t *)j->hash};
	}
	job_propose(j);
}

static void work_done(uv_work_t *w, int status)
{
	struct auth_job *j = w->data;
	struct node *n = j->n;
	work_finish(j, status);
	node_handle_release(n); /* last: it may complete node_close */
}

static void job_queue(struct auth_job *j, uv_work_cb fn)
{
	j->work.data = j;
	j->n->open_handles++; /* node_close waits for it (node_handle_release) */
	int rc = uv_queue_work(j->n->loop, &j->work, fn, work_done);
	if (rc != 0) {
		node_handle_release(j->n);
		job_finish(j, rc, NULL, 0);
	}
}

/* etcd's CheckPassword: the user's hash and the auth revision, read now;
 * the comparison itself on the thread pool. */
static void login_start(struct auth_job *j)
{
	struct node *n = j->n;
	Authpb__User *u = NULL;
	MDB_txn *txn;
	int rc = bollard_err_from_lmdb(mdb_txn_begin(n->env, NULL, MDB_RDONLY, &txn));
	if (rc == 0) {
		if (!auth_enabled(&n->mvcc, txn))
			rc = BOLLARD_EAUTH_NOT_ENABLED;
		else if ((rc = auth_user_load(&n->mvcc, txn, j->copy.login.name, NULL, &u)) ==
		         BOLLARD_EUSER_NOT_FOUND)
			rc = BOLLARD_EAUTH_FAILED;
		else if (rc == 0 && u->options != NULL && u->options->no_password)
			rc = BOLLARD_ENO_PASSWORD_USER;
		if (rc == 0) {
			j->checked_rev = auth_revision(&n->mvcc, txn);
			free(j->stored);
			j->stored_len = u->password.len;
			if ((j->stored = malloc(u->password.len + 1)) == NULL)
				rc = -ENOMEM;
			else if (u->password.len)
				memcpy(j->stored, u->password.data, u->password.len);
		}
		if (u != NULL)
			authpb__user__free_unpacked(u, NULL);
		mdb_txn_abort(txn);
	}
	if (rc != 0) {
		if (rc != BOLLARD_EAUTH_NOT_ENABLED)
			blog(BLOG_INFO, "auth", "invalid authentication was requested for user %s",
			     j->copy.login.name);
		job_finish(j, rc, NULL, 0);
		return;
	}
	job_queue(j, verify_work);
}

static void login_read_done(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct auth_job *j = req->data;
	(void)len;
	free(resp);
	if (err != 0)
		job_finish(j, err, NULL, 0);
	else
		login_start(j);
}

/* etcd reads linearizably before it checks a password (a member that has
 * not applied the last user change or AuthEnable must not judge by its own
 * state): one read round (a barrier on the leader, ReadIndex on a
 * follower), then login_start. */
static void login_read(struct auth_job *j)
{
	struct req_list l = {0};
	bollard__read_index_request__init(&j->ri);
	j->inner = (struct node_req){.data = j, .op = NODE_READ_INDEX, .msg = &j->ri.base,
	                             .cb = login_read_done};
	node_list_push(&l, &j->inner);
	node_serve_reads(j->n, &l);
}

void node_serve_auth(struct node *n, struct node_req *req)
{
	const ProtobufCMessageDescriptor *d = req->msg->descriptor;
	void *m = (void *)req->msg; /* read only; packed into the entry */
	struct auth_job *j = calloc(1, sizeof(*j));
	Bollard__AuthRequest *a;

	if (j == NULL) {
		node_complete(n, req, -ENOMEM, NULL, 0);
		return;
	}
	j->n = n;
	j->outer = req;
	a = &j->areq;
	bollard__auth_request__init(a);
	if (d == &etcdserverpb__authenticate_request__descriptor) {
		const Etcdserverpb__AuthenticateRequest *q = m;
		etcdserverpb__authenticate_request__init(&j->copy.login);
		j->copy.login.name = q->name;
		j->password = q->password;
		a->op_case = BOLLARD__AUTH_REQUEST__OP_AUTHENTICATE;
		a->authenticate = &j->copy.login;
		login_read(j);
		return;
	}
	if (d == &etcdserverpb__auth_user_add_request__descriptor) {
		const Etcdserverpb__AuthUserAddRequest *q = m;
		j->copy.user_add = *q;
		j->copy.user_add.password = (char *)"";
		a->op_case = BOLLARD__AUTH_REQUEST__OP_USER_ADD;
		a->user_add = &j->copy.user_add;
		if (q->options == NULL || !q->options->no_password) {
			j->password = q->password;
			job_queue(j, hash_work);
			return;
		}
	} else if (d == &etcdserverpb__auth_user_change_password_request__descriptor) {
		const Etcdserverpb__AuthUserChangePasswordRequest *q = m;
		j->copy.change = *q;
		j->copy.change.password = (char *)"";
		j->password = q->password;
		a->op_case = BOLLARD__AUTH_REQUEST__OP_USER_CHANGE_PASSWORD;
		a->user_change_password = &j->copy.change;
		job_queue(j, hash_work);
		return;
	}
#define AUTH_OP(desc, CASE, field)                                                                 \
	else if (d == &desc)                                                                       \
	{                                                                                          \
		a->op_case = BOLLARD__AUTH_REQUEST__OP_##CASE;                                     \
		a->field = m;                                                                      \
	}
	AUTH_OP(etcdserverpb__auth_enable_request__descriptor, ENABLE, enable)
	AUTH_OP(etcdserverpb__auth_disable_request__descriptor, DISABLE, disable)
	AUTH_OP(etcdserverpb__auth_user_get_request__descriptor, USER_GET, user_get)
	AUTH_OP(etcdserverpb__auth_user_list_request__descriptor, USER_LIST, user_list)
	AUTH_OP(etcdserverpb__auth_user_delete_request__descriptor, USER_DELETE, user_delete)
	AUTH_OP(etcdserverpb__auth_user_grant_role_request__descriptor, USER_GRANT_ROLE,
	        user_grant_role)
	AUTH_OP(etcdserverpb__auth_user_revoke_role_request__descriptor, USER_REVOKE_ROLE,
	        user_revoke_role)
	AUTH_OP(etcdserverpb__auth_role_add_request__descriptor, ROLE_ADD, role_add)
	AUTH_OP(etcdserverpb__auth_role_get_request__descriptor, ROLE_GET, role_get)
	AUTH_OP(etcdserverpb__auth_role_list_request__descriptor, ROLE_LIST, role_list)
	AUTH_OP(etcdserverpb__auth_role_delete_request__descriptor, ROLE_DELETE, role_delete)
	AUTH_OP(etcdserverpb__auth_role_grant_permission_request__descriptor,
	        ROLE_GRANT_PERMISSION, role_grant_permission)
	AUTH_OP(etcdserverpb__auth_role_revoke_permission_request__descriptor,
	        ROLE_REVOKE_PERMISSION, role_revoke_permission)
#undef AUTH_OP
	else {
		free(j);
		node_complete(n, req, BOLLARD_EBAD_REQUEST, NULL, 0);
		return;
	}
	job_propose(j);
}

void node_serve_auth_wait(struct node *n, struct node_req *req)
{
	const Bollard__ReadIndexResponse *q = (const void *)req->msg;
	if (q->index <= n->applied_index) {
		node_complete(n, req, 0, NULL, 0);
		return;
	}
	/* A login this member has not applied, or not even received yet (a
	 * lagging follower): wait for it, as etcd. etcd waits until the call's
	 * context ends; a made-up index may never come, so no longer than the
	 * request timeout here. */
	node_await_index(n, q->index, node_now_ms(n) + node_request_timeout_ms(n), req);
}
