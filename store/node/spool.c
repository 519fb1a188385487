/* spool.c - raft's heap (raft_heap_set): buffers raft allocates go to malloc,
 * except large ones (at least NODE_SPOOL_MIN bytes: in practice only full
 * snapshots, the one a follower receives and raft's copy of it), which are
 * unlinked files in a member's directory mapped shared into memory; and the
 * compact copy of LMDB a leader sends, a file mapped read-only behind its
 * header (node_spool_map_file). raft frees what it was given with
 * raft_free, which lands here and unmaps those.
 *
 * Why: raft 0.15 sends a snapshot as one message of one buffer and receives
 * it into one buffer, so a multi-GB database was a multi-GB anonymous
 * allocation on the leader per send and on the follower. A file mapping's
 * pages are the page cache's: written back and reclaimed under memory
 * pressure, and dropped from the process's RSS at any time without losing
 * anything (node_spool_trim, from the loop while a buffer is spooled).
 *
 * raft's heap is process-wide, so this is too: a registry (mutex) of the
 * mapped buffers and of the directories offered (one per member). free()
 * looks a pointer up only while a buffer is mapped. Space for a heap
 * buffer's file is reserved with fallocate first: a page fault of a shared
 * mapping that cannot get disk space would kill the process (SIGBUS);
 * without the space the buffer comes from malloc. */
#include "node/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <raft.h>

#define SPOOL_DIRS 16

struct spool_buf {
	void *user;   /* what raft holds */
	void *base;   /* the mapping: head page(s) + file */
	size_t len;   /* of the mapping */
	void *file;   /* where the file's byte 0 is mapped */
	size_t flen;  /* bytes of the file mapped */
	int fd;       /* the file, kept for node_spool_file_of */
};

static pthread_mutex_t spool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t spool_once = PTHREAD_ONCE_INIT;
static char *spool_dirs[SPOOL_DIRS];
static struct spool_buf *spool_bufs;
static size_t spool_n, spool_cap;
static size_t spool_live; /* spool_n, read without the lock */
static size_t spool_min = NODE_SPOOL_MIN;

static void heap_install(void);

static size_t page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);
	return p > 0 ? (size_t)p : 4096;
}

static size_t round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

/* spool_mu held. */
static int registry_add(const struct spool_buf *b)
{
	if (spool_n == spool_cap) {
		size_t cap = spool_cap ? spool_cap * 2 : 8;
		struct spool_buf *v = realloc(spool_bufs, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		spool_bufs = v;
		spool_cap = cap;
	}
	spool_bufs[spool_n++] = *b;
	__atomic_store_n(&spool_live, spool_n, __ATOMIC_RELEASE);
	return 0;
}

/* spool_mu held: the entry of user pointer p, or NULL. */
static struct spool_buf *registry_find(const void *p)
{
	for (size_t i = 0; i < spool_n; i++)
		if (spool_bufs[i].user == p)
			return &spool_bufs[i];
	return NULL;
}

/* Takes p's entry out into *out: true if p is spooled. */
static bool registry_take(const void *p, struct spool_buf *out)
{
	struct spool_buf *b;
	if (__atomic_load_n(&spool_live, __ATOMIC_ACQUIRE) == 0)
		return false;
	pthread_mutex_lock(&spool_mu);
	if ((b = registry_find(p)) != NULL) {
		*out = *b;
		*b = spool_bufs[--spool_n];
		__atomic_store_n(&spool_live, spool_n, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&spool_mu);
	return b != NULL;
}

static void buf_release(const struct spool_buf *b)
{
	munmap(b->base, b->len);
	close(b->fd);
}

int node_spool_tmpfile(const char *dir)
{
	char path[PATH_MAX];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd >= 0 ? fd : -errno;
	if ((size_t)snprintf(path, sizeof(path), "%s/spool.XXXXXX", dir) >= sizeof(path))
		return -ENAMETOOLONG;
	if ((fd = mkostemp(path, O_CLOEXEC)) < 0)
		return -errno;
	unlink(path);
	return fd;
}

/* A heap buffer of size bytes in a file of one of the offered directories,
 * zero-filled; NULL when none will take it. */
static void *spool_alloc(size_t size)
{
	struct spool_buf b = {0};
	char dir[PATH_MAX] = "";
	int rc;

	pthread_mutex_lock(&spool_mu);
	for (int i = 0; i < SPOOL_DIRS && dir[0] == '\0'; i++)
		if (spool_dirs[i] != NULL)
			snprintf(dir, sizeof(dir), "%s", spool_dirs[i]);
	pthread_mutex_unlock(&spool_mu);
	if (dir[0] == '\0' || (b.fd = node_spool_tmpfile(dir)) < 0)
		return NULL;
	/* The disk space first (unwritten extents: no data written now). */
	while ((rc = posix_fallocate(b.fd, 0, (off_t)size)) == EINTR)
		;
	if (rc != 0) {
		close(b.fd);
		return NULL;
	}
	b.len = b.flen = size;
	b.base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, b.fd, 0);
	if (b.base == MAP_FAILED) {
		close(b.fd);
		return NULL;
	}
	b.user = b.file = b.base;
	pthread_mutex_lock(&spool_mu);
	rc = registry_add(&b);
	pthread_mutex_unlock(&spool_mu);
	if (rc != 0) {
		buf_release(&b);
		return NULL;
	}
	return b.user;
}

int node_spool_map_file(int fd, size_t len, size_t head, void **out)
{
	size_t pg = page_size(), hlen = round_up(head ? head : 1, pg);
	struct spool_buf b = {0};
	int rc;

	if (head >= pg)
		return -EINVAL;
	b.len = hlen + round_up(len, pg);
	b.base = mmap(NULL, b.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b.base == MAP_FAILED)
		return -errno;
	b.file = (char *)b.base + hlen;
	b.flen = len;
	b.user = (char *)b.file - head;
	if (len > 0 && mmap(b.file, len, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
		rc = -errno;
		munmap(b.base, b.len);
		return rc;
	}
	if ((b.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		rc = -errno;
		munmap(b.base, b.len);
		return rc;
	}
	madvise(b.file, len, MADV_SEQUENTIAL); /* read once, front to back */
	pthread_once(&spool_once, heap_install); /* raft_free must find it */
	pthread_mutex_lock(&spool_mu);
	rc = registry_add(&b);
	pthread_mutex_unlock(&spool_mu);
	if (rc != 0) {
		buf_release(&b);
		return rc;
	}
	*out = b.user;
	return 0;
}

int node_spool_file_of(const void *p)
{
	struct spool_buf *b;
	int fd = -1;
	if (__atomic_load_n(&spool_live, __ATOMIC_ACQUIRE) == 0)
		return -1;
	pthread_mutex_lock(&spool_mu);
	if ((b = registry_find(p)) != NULL && b->file == b->user)
		fd = fcntl(b->fd, F_DUPFD_CLOEXEC, 0);
	pthread_mutex_unlock(&spool_mu);
	return fd;
}

bool node_spool_holds(const void *p)
{
	bool found;
	if (__atomic_load_n(&spool_live, __ATOMIC_ACQUIRE) == 0)
		return false;
	pthread_mutex_lock(&spool_mu);
	found = registry_find(p) != NULL;
	pthread_mutex_unlock(&spool_mu);
	return found;
}

size_t node_spool_trim(void)
{
	size_t n;
	if (__atomic_load_n(&spool_live, __ATOMIC_ACQUIRE) == 0)
		return 0;
	pthread_mutex_lock(&spool_mu);
	/* Shared file mappings: the pages (written ones too) stay in the file. */
	for (size_t i = 0; i < spool_n; i++)
		madvise(spool_bufs[i].file, spool_bufs[i].flen, MADV_DONTNEED);
	n = spool_n;
	pthread_mutex_unlock(&spool_mu);
	return n;
}

size_t node_spool_count(void)
{
	return __atomic_load_n(&spool_live, __ATOMIC_ACQUIRE);
}

void node_spool_set_min(size_t bytes)
{
	__atomic_store_n(&spool_min, bytes, __ATOMIC_RELAXED);
}

/* ---- raft's heap ---------------------------------------------------------- */

static bool spool_size(size_t size)
{
	return size >= __atomic_load_n(&spool_min, __ATOMIC_RELAXED);
}

static void *heap_malloc(void *data, size_t size)
{
	void *p;
	(void)data;
	if (spool_size(size) && (p = spool_alloc(size)) != NULL)
		return p;
	return malloc(size);
}

static void heap_free(void *data, void *ptr)
{
	struct spool_buf b;
	(void)data;
	if (registry_take(ptr, &b))
		buf_release(&b);
	else
		free(ptr);
}

static void *heap_calloc(void *data, size_t nmemb, size_t size)
{
	void *p;
	(void)data;
	if (size != 0 && nmemb <= SIZE_MAX / size && spool_size(nmemb * size) &&
	    (p = spool_alloc(nmemb * size)) != NULL)
		return p; /* a new file reads as zeros */
	return calloc(nmemb, size);
}

static void *heap_realloc(void *data, void *ptr, size_t size)
{
	struct spool_buf b;
	void *p;
	if (ptr == NULL || !registry_take(ptr, &b))
		return realloc(ptr, size);
	if ((p = heap_malloc(data, size)) == NULL) {
		pthread_mutex_lock(&spool_mu); /* left as it was */
		if (registry_add(&b) != 0)
			abort();
		pthread_mutex_unlock(&spool_mu);
		return NULL;
	}
	memcpy(p, b.user, size < b.flen ? size : b.flen);
	buf_release(&b);
	return p;
}

static void *heap_aligned_alloc(void *data, size_t alignment, size_t size)
{
	(void)data;
	return aligned_alloc(alignment, size);
}

static void heap_aligned_free(void *data, size_t alignment, void *ptr)
{
	(void)data;
	(void)alignment;
	free(ptr);
}

static struct raft_heap spool_heap = {
	.malloc = heap_malloc,
	.free = heap_free,
	.calloc = heap_calloc,
	.realloc = heap_realloc,
	.aligned_alloc = heap_aligned_alloc,
	.aligned_free = heap_aligned_free,
};

static void heap_install(void)
{
	raft_heap_set(&spool_heap);
}

int node_spool_register(const char *dir)
{
	char *real;
	int slot = -1;

	pthread_once(&spool_once, heap_install);
	if ((real = realpath(dir, NULL)) == NULL)
		return -1;
	pthread_mutex_lock(&spool_mu);
	for (int i = 0; i < SPOOL_DIRS && slot < 0; i++)
		if (spool_dirs[i] == NULL) {
			spool_dirs[i] = real;
			slot = i;
		}
	pthread_mutex_unlock(&spool_mu);
	if (slot < 0)
		free(real);
	return slot;
}

void node_spool_unregister(int slot)
{
	if (slot < 0 || slot >= SPOOL_DIRS)
		return;
	pthread_mutex_lock(&spool_mu);
	free(spool_dirs[slot]);
	spool_dirs[slot] = NULL;
	pthread_mutex_unlock(&spool_mu);
}
