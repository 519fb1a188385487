/* maintenance.c - etcd's Maintenance service: Status, Defragment, Hash,
 * HashKV, Alarm and MoveLeader go to the node; Snapshot streams a consistent
 * copy of the database.
 *
 * Snapshot, as etcd 3.4 frames it (v3rpc/maintenance.go): the database in
 * 32 KiB blobs, each with remaining_bytes = total - sent so far (so the last
 * data message says 0), then one more message, remaining_bytes 0, whose blob
 * is the SHA-256 of all data sent. etcdctl writes every blob to the file;
 * "snapshot restore" finds the trailing hash because the db size is a
 * multiple of 512. The copy is taken by node_snapshot_to_fd into an
 * unlinked temporary file on a worker thread of the call's own, which then
 * feeds the call's send queue (blocking while it is full).
 *
 * With auth on, Defragment, Hash, HashKV and Snapshot need the root role
 * (etcd's authMaintenanceServer); Status, Alarm and MoveLeader do not. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/errors.h"
#include "core/fdio.h"
#include "rpc.pb-c.h"
#include "server/server_int.h"

#define SNAPSHOT_CHUNK (32 * 1024)
#define SNAPSHOT_MAX_QUEUED 4

/* An unlinked temporary file in $TMPDIR (or /tmp). */
static int snapshot_tmpfile(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	int fd;

	if (!dir || !*dir)
		dir = "/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	snprintf(path, sizeof(path), "%s/bollard-snapshot-XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

/* Pack and queue one SnapshotResponse. 0, or -1 once the stream is gone. */
static int send_chunk(struct srv_call *c, const uint8_t *blob, size_t len, uint64_t remaining)
{
	Etcdserverpb__SnapshotResponse resp = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	uint8_t *packed;
	size_t plen;

	hdr.cluster_id = node_cluster_id(c->node);
	hdr.member_id = node_member_id(c->node);
	resp.header = &hdr;
	resp.remaining_bytes = remaining;
	resp.blob.data = (uint8_t *)blob;
	resp.blob.len = len;
	plen = etcdserverpb__snapshot_response__get_packed_size(&resp);
	packed = malloc(plen ? plen : 1);
	if (!packed)
		return -1;
	etcdserverpb__snapshot_response__pack(&resp, packed);
	return srv_stream_send(c, packed, plen, SNAPSHOT_MAX_QUEUED);
}

/* 0 = streamed (or the client left), else an error for the status. */
static int snapshot_stream(struct srv_call *c, int fd)
{
	uint64_t total = 0, sent = 0;
	uint8_t *buf = NULL;
	unsigned char sha[EVP_MAX_MD_SIZE];
	unsigned int shalen = 0;
	EVP_MD_CTX *md = NULL;
	int err;

	err = node_snapshot_to_fd(c->node, fd, &total);
	if (err != 0)
		return err;
	buf = malloc(SNAPSHOT_CHUNK);
	md = EVP_MD_CTX_new();
	if (!buf || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		err = -ENOMEM;
		goto out;
	}
	while (sent < total) {
		size_t n = total - sent < SNAPSHOT_CHUNK ? (size_t)(total - sent) : SNAPSHOT_CHUNK;
		if ((err = fdio_pread_full(fd, buf, n, (off_t)sent)) != 0) {
			if (err == -ENODATA)
				err = BOLLARD_EINTERNAL; /* the copy is shorter than it said */
			goto out;
		}
		sent += n;
		EVP_DigestUpdate(md, buf, n);
		if (send_chunk(c, buf, n, total - sent) != 0)
			goto out; /* cancelled: nobody to tell */
	}
	EVP_DigestFinal_ex(md, sha, &shalen);
	send_chunk(c, sha, shalen, 0);
out:
	EVP_MD_CTX_free(md);
	free(buf);
	return err;
}

static void *snapshot_worker(void *arg)
{
	struct srv_call *c = arg;
	int fd, err;

	pthread_setname_np(pthread_self(), "bollard-snap");
	fd = snapshot_tmpfile();
	err = fd < 0 ? fd : snapshot_stream(c, fd);

	if (fd >= 0)
		close(fd);
	srv_stream_finish(c, err);
	srv_call_unref(c);
	return NULL;
}

static void start_snapshot(struct srv_call *c)
{
	pthread_t t;
	pthread_attr_t attr;
	int rc;

	/* the worker's, taken before the open: once open, a client that
	 * leaves can end the call on another thread */
	srv_call_ref(c);
	if (srv_stream_open(c) != 0) {
		srv_call_reply_err(c, BOLLARD_EINTERNAL);
		srv_call_unref(c);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, snapshot_worker, c);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		srv_stream_finish(c, -rc);
		srv_call_unref(c);
	}
}

const struct srv_method srv_maintenance_methods[] = {
	{"/etcdserverpb.Maintenance/Status", &etcdserverpb__status_request__descriptor, NODE_STATUS,
	 0, 2, NULL, NULL},
	{"/etcdserverpb.Maintenance/Defragment", &etcdserverpb__defragment_request__descriptor,
	 NODE_DEFRAGMENT, 0, 1, srv_check_admin_raw, NULL},
	{"/etcdserverpb.Maintenance/Hash", &etcdserverpb__hash_request__descriptor, NODE_HASH, 0, 1,
	 srv_check_admin_raw, NULL},
	{"/etcdserverpb.Maintenance/HashKV", &etcdserverpb__hash_kvrequest__descriptor, NODE_HASH_KV,
	 0, 1, srv_check_admin_raw, NULL},
	{"/etcdserverpb.Maintenance/Alarm", &etcdserverpb__alarm_request__descriptor, NODE_ALARM, 1,
	 1, NULL, NULL},
	{"/etcdserverpb.Maintenance/MoveLeader", &etcdserverpb__move_leader_request__descriptor,
	 NODE_MOVE_LEADER, 0, 1, NULL, NULL},
	{"/etcdserverpb.Maintenance/Snapshot", &etcdserverpb__snapshot_request__descriptor,
	 NODE_OP_COUNT_, 0, 1, srv_check_admin_raw, start_snapshot, .server_stream = 1},
	{NULL, NULL, NODE_OP_COUNT_, 0, 0, NULL, NULL},
};
