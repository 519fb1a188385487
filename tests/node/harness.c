/* harness.c - runner and node helpers for tests/node (see harness.h). */
#include "harness.h"

#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node/log.h"

int th_failures;
static char th_dir[256];

void th_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	th_failures++;
	fprintf(stderr, "    %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void th_abort(void)
{
	exit(1);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

const char *th_tmpdir(void)
{
	if (th_dir[0] == '\0') {
		snprintf(th_dir, sizeof(th_dir), "/tmp/bollard-node-test-XXXXXX");
		if (mkdtemp(th_dir) == NULL) {
			perror("mkdtemp");
			exit(1);
		}
	}
	return th_dir;
}

int th_main(int argc, char **argv, const struct th_test *tests, size_t n)
{
	int passed = 0, failed = 0;
	const char *lvl = getenv("BOLLARD_TEST_LOG");

	for (size_t i = 0; i < n; i++) {
		bool wanted = argc < 2;
		for (int a = 1; a < argc; a++)
			wanted |= strcmp(argv[a], tests[i].name) == 0;
		if (!wanted)
			continue;
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			blog_set_level(lvl ? blog_parse_level(lvl) : BLOG_WARN);
			th_dir[0] = '\0';
			tests[i].fn();
			if (th_dir[0] && !getenv("BOLLARD_TEST_KEEP"))
				nftw(th_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
			exit(th_failures ? 1 : 0);
		}
		int st = 0;
		waitpid(pid, &st, 0);
		bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
		if (WIFSIGNALED(st))
			fprintf(stderr, "    killed by signal %d\n", WTERMSIG(st));
		printf("%s %s\n", ok ? "ok  " : "FAIL", tests[i].name);
		ok ? passed++ : failed++;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

void tnode_config(struct tnode *t, const char *dir)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "%s", dir);
	snprintf(t->data_dir, sizeof(t->data_dir), "%s/data", dir);
	node_config_init(&t->cfg);
	t->cfg.data_dir = t->data_dir;
	/* Raft listens on an ephemeral port; the advertised URL fixes the IDs. */
	t->cfg.listen_peer_urls = "http://127.0.0.1:0";
	t->cfg.initial_advertise_peer_urls = "http://127.0.0.1:2380";
	t->cfg.heartbeat_ms = 20;
	t->cfg.election_ms = 200;
	t->cfg.log_level = blog_level();
}

void tnode_create(struct tnode *t)
{
	char err[256];
	REQUIRE(uv_loop_init(&t->loop) == 0);
	int rc = node_create(&t->node, &t->loop, &t->cfg, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "    node_create: %s\n", err);
	REQUIRE(rc == 0);
	t->closed = false;
}

void tnode_open(struct tnode *t)
{
	tnode_create(t);
	REQUIRE(node_start(t->node) == 0);
}

static void closed_cb(struct node *n)
{
	(void)n;
}

void tnode_close(struct tnode *t)
{
	node_close(t->node, closed_cb);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	node_destroy(t->node);
	t->node = NULL;
	REQUIRE(uv_loop_close(&t->loop) == 0);
	t->closed = true;
}

static void timeout_cb(uv_timer_t *h)
{
	*(bool *)h->data = true;
}

bool tnode_run_until(struct tnode *t, const bool *flag, unsigned timeout_ms)
{
	uv_timer_t timer;
	bool expired = false;
	uv_timer_init(&t->loop, &timer);
	timer.data = &expired;
	uv_timer_start(&timer, timeout_cb, timeout_ms, 0);
	while (!*flag && !expired)
		uv_run(&t->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&timer, NULL);
	uv_run(&t->loop, UV_RUN_NOWAIT);
	return *flag;
}

int th_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	REQUIRE(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

bool th_wait_for(bool (*cond)(void *), void *arg, unsigned ms)
{
	for (unsigned i = 0; i < ms && !cond(arg); i++)
		usleep(1000);
	return cond(arg);
}

struct sync_req {
	struct node_req req;
	bool done;
	int err;
	uint8_t *resp;
	size_t len;
};

static void sync_cb(struct node_req *req, int err, uint8_t *resp, size_t len)
{
	struct sync_req *s = (struct sync_req *)req;
	s->done = true;
	s->err = err;
	s->resp = resp;
	s->len = len;
}

int tnode_do(struct tnode *t, enum node_op op, const ProtobufCMessage *msg, uint8_t **resp,
             size_t *len)
{
	struct sync_req s = {.req = {.op = op, .msg = msg, .cb = sync_cb}};
	node_submit(t->node, &s.req);
	REQUIRE(tnode_run_until(t, &s.done, 20000));
	if (resp) {
		*resp = s.resp;
		*len = s.len;
	} else {
		free(s.resp);
	}
	return s.err;
}

int tnode_put(struct tnode *t, const char *key, const char *val, int64_t *rev)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	uint8_t *resp;
	size_t len;
	p.key.data = (uint8_t *)key;
	p.key.len = strlen(key);
	p.value.data = (uint8_t *)val;
	p.value.len = strlen(val);
	int rc = tnode_do(t, NODE_PUT, &p.base, &resp, &len);
	if (rc == 0) {
		Etcdserverpb__PutResponse *r = etcdserverpb__put_response__unpack(NULL, len, resp);
		REQUIRE(r != NULL && r->header != NULL);
		if (rev)
			*rev = r->header->revision;
		etcdserverpb__put_response__free_unpacked(r, NULL);
		free(resp);
	}
	return rc;
}

int tnode_get(struct tnode *t, const char *key, char *buf, size_t buflen, int64_t *rev)
{
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	uint8_t *resp;
	size_t len;
	q.key.data = (uint8_t *)key;
	q.key.len = strlen(key);
	int rc = tnode_do(t, NODE_RANGE, &q.base, &resp, &len);
	if (rc != 0)
		return rc;
	Etcdserverpb__RangeResponse *r = etcdserverpb__range_response__unpack(NULL, len, resp);
	REQUIRE(r != NULL && r->header != NULL);
	buf[0] = '\0';
	if (r->n_kvs > 0)
		snprintf(buf, buflen, "%.*s", (int)r->kvs[0]->value.len, (char *)r->kvs[0]->value.data);
	if (rev)
		*rev = r->header->revision;
	rc = (int)r->count;
	etcdserverpb__range_response__free_unpacked(r, NULL);
	free(resp);
	return rc;
}

void th_copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	struct stat st;
	off_t pos = 0;
	REQUIRE(in >= 0 && out >= 0 && fstat(in, &st) == 0);
	while (pos < st.st_size && (pos = lseek(in, pos, SEEK_DATA)) >= 0) {
		off_t end = lseek(in, pos, SEEK_HOLE);
		REQUIRE(end > pos);
		for (; pos < end;) {
			size_t want = (size_t)(end - pos) < sizeof(buf) ? (size_t)(end - pos) : sizeof(buf);
			ssize_t r = pread(in, buf, want, pos);
			REQUIRE(r > 0 && pwrite(out, buf, (size_t)r, pos) == r);
			pos += r;
		}
	}
	REQUIRE(ftruncate(out, st.st_size) == 0);
	close(in);
	close(out);
}

void tnode_put_n(struct tnode *t, const char *prefix, int from, int to)
{
	for (int i = from; i < to; i++) {
		char k[32], v[32];
		snprintf(k, sizeof(k), "%s%04d", prefix, i);
		snprintf(v, sizeof(v), "v%d", i);
		REQUIRE(tnode_put(t, k, v, NULL) == 0);
	}
}

void tnode_check_n(struct tnode *t, const char *prefix, int from, int to)
{
	for (int i = from; i < to; i++) {
		char k[32], v[32], got[64];
		snprintf(k, sizeof(k), "%s%04d", prefix, i);
		snprintf(v, sizeof(v), "v%d", i);
		if (tnode_get(t, k, got, sizeof(got), NULL) != 1 || strcmp(got, v) != 0) {
			th_fail(__FILE__, __LINE__, "key %s: got \"%s\", want \"%s\"", k, got, v);
			return;
		}
	}
}
