/* fdio.c - whole reads and writes on a file descriptor (see fdio.h). */
#include "core/fdio.h"

#include <errno.h>
#include <unistd.h>

enum fdio_op { FDIO_PREAD, FDIO_PWRITE, FDIO_WRITE };

static int fdio_full(enum fdio_op op, int fd, char *buf, size_t len, off_t off)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = op == FDIO_PREAD    ? pread(fd, buf + done, len - done, off + (off_t)done)
		            : op == FDIO_PWRITE ? pwrite(fd, buf + done, len - done, off + (off_t)done)
		                                : write(fd, buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : op == FDIO_PREAD ? -ENODATA : -EIO;
		done += (size_t)n;
	}
	return 0;
}

int fdio_pread_full(int fd, void *buf, size_t len, off_t off)
{
	return fdio_full(FDIO_PREAD, fd, buf, len, off);
}

int fdio_pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	return fdio_full(FDIO_PWRITE, fd, (char *)buf, len, off);
}

int fdio_write_full(int fd, const void *buf, size_t len)
{
	return fdio_full(FDIO_WRITE, fd, (char *)buf, len, 0);
}
