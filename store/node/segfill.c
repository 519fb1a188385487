/* segfill.c - raft's open log segments are written through with zeros
 * when raft creates them, so that every later append overwrites blocks
 * that are already written (a canonical/raft 0.15 work-around).
 *
 * raft 0.15 creates each open segment ("open-N", in libuv's thread pool,
 * ahead of use) with posix_fallocate(), which on ext4 leaves unwritten
 * extents. Its appends are O_DIRECT|O_DSYNC Linux AIO with RWF_NOWAIT, and
 * the first append into an unwritten range cannot be done without waiting:
 * it completes with EAGAIN and raft redoes it through libuv's thread pool
 * (a wake-up of the loop, of a pool thread, and another of the loop), and
 * that write converts the extent, which O_DSYNC must commit to the
 * journal. With 256-byte puts that was about 1.6% of lone writes, each
 * several wake-ups and a journal commit slower (strace: 1016 io_submit per
 * 1000 puts; zero-filled: 1000).
 *
 * The process's posix_fallocate() is this one (the executable's definition
 * comes first in symbol lookup, so libraft's calls land here): it
 * allocates as posix_fallocate does, and for a file named open-* in a
 * registered raft directory it then writes zeros over the range (one
 * O_DIRECT descriptor without O_DSYNC, one fdatasync). Every other file is
 * only allocated. Zero-filling is an optimisation: if it fails, the file is
 * as raft asked for (allocated, reading as zeros) and raft works as
 * before. In a library with a version script (libbollard-store's embedded
 * member) the symbol is local, and segments stay as raft made them. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fdio.h"
#include "node/log.h"
#include "node/node_int.h"

#define SEGFILL_DIRS 16
#define SEGFILL_CHUNK (1u << 20)

static pthread_mutex_t segfill_mu = PTHREAD_MUTEX_INITIALIZER;
static char *segfill_dirs[SEGFILL_DIRS]; /* realpath()s of raft directories */

int node_segfill_register(const char *dir)
{
	char *real = realpath(dir, NULL);
	int slot = -1;
	if (real == NULL)
		return -1;
	pthread_mutex_lock(&segfill_mu);
	for (int i = 0; i < SEGFILL_DIRS && slot < 0; i++)
		if (segfill_dirs[i] == NULL) {
			segfill_dirs[i] = real;
			slot = i;
		}
	pthread_mutex_unlock(&segfill_mu);
	if (slot < 0)
		free(real); /* full: that member's segments stay as raft makes them */
	return slot;
}

void node_segfill_unregister(int slot)
{
	if (slot < 0 || slot >= SEGFILL_DIRS)
		return;
	pthread_mutex_lock(&segfill_mu);
	free(segfill_dirs[slot]);
	segfill_dirs[slot] = NULL;
	pthread_mutex_unlock(&segfill_mu);
}

/* Whether path names an open segment in a registered raft directory. */
static bool is_open_segment(const char *path)
{
	const char *slash = strrchr(path, '/');
	bool found = false;

	if (slash == NULL || strncmp(slash + 1, "open-", 5) != 0)
		return false;
	pthread_mutex_lock(&segfill_mu);
	for (int i = 0; i < SEGFILL_DIRS && !found; i++) {
		const char *d = segfill_dirs[i];
		found = d != NULL && strlen(d) == (size_t)(slash - path) &&
		        memcmp(d, path, (size_t)(slash - path)) == 0;
	}
	pthread_mutex_unlock(&segfill_mu);
	return found;
}

/* Zeros over [off, off + len) of path, then one fdatasync. */
static int zero_fill(const char *path, off_t off, off_t len)
{
	void *buf = NULL;
	int fd, rc = 0;

	fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		fd = open(path, O_WRONLY | O_CLOEXEC); /* no direct I/O here */
	if (fd < 0)
		return errno;
	if (posix_memalign(&buf, 4096, SEGFILL_CHUNK) != 0) {
		close(fd);
		return ENOMEM;
	}
	memset(buf, 0, SEGFILL_CHUNK);
	for (off_t at = off; at < off + len && rc == 0; at += (off_t)SEGFILL_CHUNK) {
		size_t n = off + len - at < (off_t)SEGFILL_CHUNK ? (size_t)(off + len - at) : SEGFILL_CHUNK;
		rc = -fdio_pwrite_full(fd, buf, n, at); /* fails e.g. a direct write of an unaligned tail */
	}
	if (rc == 0 && fdatasync(fd) != 0)
		rc = errno;
	free(buf);
	close(fd);
	return rc;
}

/* Named posix_fallocate for the linker: with _FILE_OFFSET_BITS=64 the C
 * headers would rename a plain definition to posix_fallocate64. */
int segfill_posix_fallocate(int fd, off_t offset, off_t len) __asm__("posix_fallocate");

int segfill_posix_fallocate(int fd, off_t offset, off_t len)
{
	char link[64], path[PATH_MAX];
	ssize_t n;
	int rc;

	if (offset < 0 || len <= 0)
		return EINVAL;
	do
		rc = fallocate(fd, 0, offset, len) == 0 ? 0 : errno;
	while (rc == EINTR);
	if (rc == EOPNOTSUPP) {
		/* A file system without fallocate: the C library's emulation. */
		int (*libc_fallocate)(int, off_t, off_t) =
			(int (*)(int, off_t, off_t))dlsym(RTLD_NEXT, "posix_fallocate");
		return libc_fallocate != NULL ? libc_fallocate(fd, offset, len) : rc;
	}
	if (rc != 0)
		return rc;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0 || (size_t)n >= sizeof(path) - 1)
		return 0;
	path[n] = '\0';
	if (is_open_segment(path) && zero_fill(path, offset, len) != 0)
		blog(BLOG_DEBUG, "node", "could not zero-fill %s: raft writes it as allocated", path);
	return 0;
}
