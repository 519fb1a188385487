/* fdio.h - whole reads and writes on a file descriptor: the loops over
 * EINTR and short transfers that every file copy and on-disk record needs,
 * in one place. Blocking descriptors (files, pipes); not for sockets that
 * return EAGAIN. */
#ifndef BOLLARD_CORE_FDIO_H
#define BOLLARD_CORE_FDIO_H

#include <stddef.h>
#include <sys/types.h>

/* Read len bytes at off into buf. 0; -ENODATA when the file ends first (a
 * regular file's pread never fails with ENODATA itself); or -errno. */
int fdio_pread_full(int fd, void *buf, size_t len, off_t off);

/* Write len bytes from buf at off. 0, or -errno (-EIO if a write makes no
 * progress). */
int fdio_pwrite_full(int fd, const void *buf, size_t len, off_t off);

/* Write len bytes from buf at the file offset. 0, or -errno (-EIO if a
 * write makes no progress). */
int fdio_write_full(int fd, const void *buf, size_t len);

#endif
