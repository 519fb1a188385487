/* syncwrite.c - a lone raft log write is written by the loop thread itself,
 * just before the loop would sleep, instead of by Linux AIO (a canonical/raft
 * 0.15 work-around, like segfill.c).
 *
 * raft 0.15 writes its log with io_submit() on an O_DIRECT|O_DSYNC segment
 * and learns of the completion through an eventfd. For an O_DSYNC direct
 * write the kernel cannot complete the request from the disk interrupt: it
 * queues the completion to a per-CPU kworker, which issues the cache flush,
 * sleeps until the flush's interrupt, and only then signals the eventfd that
 * wakes the loop. A lone put thus waits for two kworker wake-ups (bound to
 * the CPU that took the interrupt: on a busy CPU each waits for the running
 * task's time slice) besides the loop's own. A blocking pwritev2(RWF_DSYNC)
 * does the same write and flush with the caller woken straight from the
 * interrupts.
 *
 * The process's syscall() is this one (the executable's definition comes
 * first in symbol lookup; raft issues io_submit/io_getevents through
 * syscall()). On a thread that attached (node.c: the loop thread, from its
 * first prepare/check callback), an io_submit of one write with a
 * completion eventfd, at most SYNCWRITE_MAX_BYTES long, while the node says
 * it is lone (node.c write_lone: a single member, and the write holds at
 * most one request with no other waiting), is not submitted: it is kept and
 * written by syncwrite_run(), which node.c calls at the end of each loop
 * phase after answering what was committed, so the reply of the previous
 * entry is never held back by the next write. The result is then handed to
 * raft as AIO would: the eventfd is signalled and raft's io_getevents() on
 * that context gets the completion. Durability is unchanged: the write
 * returns once the data is on stable storage (RWF_DSYNC, and the segment is
 * O_DSYNC), and raft counts an entry as written only from the completion.
 * Everything else (busy loops with batches to overlap, other threads, other
 * system calls) goes to the C library's syscall(). In a library with a
 * version script (libbollard-store's embedded member) the symbol is local
 * and raft's writes stay as raft makes them.
 *
 * A kept write is done through dup()s of raft's segment descriptor and
 * completion eventfd: raft closes both when it closes a segment's writer
 * (the eventfd at once, the segment in a later loop phase), which may come
 * before the kept write is done, and a number raft closed may be reused
 * for another file. The dup()s are made once per writer, known by its AIO
 * context, and closed when raft destroys that context (io_destroy, after it
 * closed the segment): two fcntl() and two close() a write fewer, each a
 * microsecond or more in a VM. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/aio_abi.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "node/node_int.h"

/* A write larger than this is a batch: AIO lets the loop apply and answer
 * the previous batch while it is written. */
#define SYNCWRITE_MAX_BYTES (8u * 1024u)
/* Writes kept, and completions not yet collected, per thread. */
#define SYNCWRITE_SLOTS 8

/* One raft writer's descriptors: raft's and our dup()s of them. */
struct syncwrite_files {
	aio_context_t ctx;
	int fd, resfd;         /* raft's numbers */
	int dup_fd, dup_resfd; /* ours, open until io_destroy(ctx) */
};

struct syncwrite_req {
	aio_context_t ctx;
	int fd, resfd;        /* a syncwrite_files' dup()s */
	const struct iovec *iov;
	int iovcnt;
	struct iovec one;     /* IOCB_CMD_PWRITE's buffer */
	off_t off;
	int rw_flags;
	struct io_event ev;   /* data and obj filled at submission */
};

struct syncwrite_thread {
	bool (*lone)(void *arg); /* NULL: not attached */
	void *arg;
	struct syncwrite_req kept[SYNCWRITE_SLOTS];
	size_t n_kept;
	struct {
		aio_context_t ctx;
		struct io_event ev;
	} done[SYNCWRITE_SLOTS];
	size_t n_done;
	struct syncwrite_files files[SYNCWRITE_SLOTS];
	size_t n_files;
};

static __thread struct syncwrite_thread sw;
static uint64_t syncwrite_n; /* writes done here, process-wide (atomic) */

typedef long (*syscall_fn)(long, ...);

static long real_syscall(long nr, long a, long b, long c, long d, long e, long f)
{
	static syscall_fn real;
	syscall_fn fn = __atomic_load_n(&real, __ATOMIC_ACQUIRE);

	if (fn == NULL) {
		fn = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
		if (fn == NULL) {
			errno = ENOSYS;
			return -1;
		}
		__atomic_store_n(&real, fn, __ATOMIC_RELEASE);
	}
	return fn(nr, a, b, c, d, e, f);
}

static size_t iov_bytes(const struct iovec *iov, int n)
{
	size_t len = 0;
	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	return len;
}

static void files_close(struct syncwrite_files *f)
{
	close(f->dup_fd);
	close(f->dup_resfd);
}

/* The dup()s for raft's writer on ctx with these descriptors (made on its
 * first kept write); NULL: none could be made. */
static struct syncwrite_files *files_get(aio_context_t ctx, int fd, int resfd)
{
	struct syncwrite_files *f = NULL;
	int dfd, dres;

	for (size_t i = 0; i < sw.n_files; i++) {
		if (sw.files[i].ctx == ctx) {
			f = &sw.files[i];
			break;
		}
	}
	if (f && f->fd == fd && f->resfd == resfd)
		return f;
	/* The same context with other descriptors (not raft's way): the old
	 * dup()s go once no kept write still uses them; until then, AIO. */
	if ((f && sw.n_kept > 0) || (f == NULL && sw.n_files == SYNCWRITE_SLOTS))
		return NULL;
	if ((dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return NULL;
	if ((dres = fcntl(resfd, F_DUPFD_CLOEXEC, 0)) < 0) {
		close(dfd);
		return NULL;
	}
	if (f)
		files_close(f);
	else
		f = &sw.files[sw.n_files++];
	*f = (struct syncwrite_files){.ctx = ctx, .fd = fd, .resfd = resfd,
	                              .dup_fd = dfd, .dup_resfd = dres};
	return f;
}

/* io_destroy(ctx): raft closed that writer's segment; close our dup()s. */
static void files_forget(aio_context_t ctx)
{
	for (size_t i = 0; i < sw.n_files; i++) {
		if (sw.files[i].ctx == ctx) {
			files_close(&sw.files[i]);
			sw.files[i] = sw.files[--sw.n_files];
			return;
		}
	}
}

/* Keep the one write of an io_submit(ctx, 1, iocbs) if it is the kind this
 * file writes itself: true, or false (submit it as raft asked). */
static bool keep(aio_context_t ctx, long nr, struct iocb **iocbs)
{
	struct syncwrite_req *r;
	const struct iocb *cb;

	if (sw.lone == NULL || nr != 1 || iocbs == NULL || sw.n_kept >= SYNCWRITE_SLOTS ||
	    sw.n_kept + sw.n_done >= SYNCWRITE_SLOTS)
		return false;
	cb = iocbs[0];
	if (!(cb->aio_flags & IOCB_FLAG_RESFD) ||
	    (cb->aio_lio_opcode != IOCB_CMD_PWRITEV && cb->aio_lio_opcode != IOCB_CMD_PWRITE))
		return false;
	r = &sw.kept[sw.n_kept];
	if (cb->aio_lio_opcode == IOCB_CMD_PWRITEV) {
		r->iov = (const struct iovec *)(uintptr_t)cb->aio_buf;
		r->iovcnt = (int)cb->aio_nbytes;
	} else {
		r->one.iov_base = (void *)(uintptr_t)cb->aio_buf;
		r->one.iov_len = (size_t)cb->aio_nbytes;
		r->iov = &r->one;
		r->iovcnt = 1;
	}
	if (r->iovcnt <= 0 || r->iovcnt > IOV_MAX ||
	    iov_bytes(r->iov, r->iovcnt) > SYNCWRITE_MAX_BYTES || !sw.lone(sw.arg))
		return false;
	struct syncwrite_files *f = files_get(ctx, (int)cb->aio_fildes, (int)cb->aio_resfd);
	if (f == NULL)
		return false;
	r->fd = f->dup_fd;
	r->resfd = f->dup_resfd;
	r->ctx = ctx;
	r->off = (off_t)cb->aio_offset;
	r->rw_flags = (int)cb->aio_rw_flags;
	memset(&r->ev, 0, sizeof(r->ev));
	r->ev.data = cb->aio_data;
	r->ev.obj = (uint64_t)(uintptr_t)cb;
	sw.n_kept++;
	return true;
}

void syncwrite_run(void)
{
	for (size_t i = 0; i < sw.n_kept; i++) {
		struct syncwrite_req *r = &sw.kept[i];
		int flags = (r->rw_flags & ~RWF_NOWAIT) | RWF_DSYNC;
		ssize_t w;
		uint64_t one = 1;

		do
			w = pwritev2(r->fd, r->iov, r->iovcnt, r->off, flags);
		while (w < 0 && errno == EINTR);
		r->ev.res = w < 0 ? -errno : w;
		__atomic_add_fetch(&syncwrite_n, 1, __ATOMIC_RELAXED);
		sw.done[sw.n_done].ctx = r->ctx;
		sw.done[sw.n_done].ev = r->ev;
		sw.n_done++;
		/* raft reads the eventfd, then collects with io_getevents(). */
		while (write(r->resfd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
	sw.n_kept = 0;
}

/* Completions this thread wrote for ctx, handed out as io_getevents() would:
 * how many were copied (0: none here, ask the kernel). */
static long collect(aio_context_t ctx, long max, struct io_event *out)
{
	long got = 0;
	size_t keep_n = 0;

	for (size_t i = 0; i < sw.n_done; i++) {
		if (sw.done[i].ctx == ctx && got < max)
			out[got++] = sw.done[i].ev;
		else
			sw.done[keep_n++] = sw.done[i];
	}
	sw.n_done = keep_n;
	return got;
}

/* io_destroy(ctx): what was kept for it is written first (raft closes the
 * segment after its writes ended or were cancelled; a cancelled write that
 * the kernel had already taken would land too), then forgotten. */
static void forget(aio_context_t ctx)
{
	struct io_event drop[SYNCWRITE_SLOTS];

	syncwrite_run();
	collect(ctx, SYNCWRITE_SLOTS, drop);
	files_forget(ctx);
}

uint64_t syncwrite_count(void)
{
	return __atomic_load_n(&syncwrite_n, __ATOMIC_RELAXED);
}

void syncwrite_attach(bool (*lone)(void *arg), void *arg)
{
	sw.lone = lone;
	sw.arg = arg;
}

void syncwrite_detach(void)
{
	syncwrite_run();
	for (size_t i = 0; i < sw.n_files; i++)
		files_close(&sw.files[i]);
	sw.n_files = 0;
	sw.lone = NULL;
	sw.arg = NULL;
}

long syncwrite_syscall(long nr, ...) __asm__("syscall");

long syncwrite_syscall(long nr, ...)
{
	va_list ap;
	long a[6];

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == __NR_io_submit && keep((aio_context_t)a[0], a[1], (struct iocb **)a[2]))
		return 1;
	if (nr == __NR_io_getevents && sw.n_done > 0) {
		long got = collect((aio_context_t)a[0], a[2], (struct io_event *)a[3]);
		if (got > 0)
			return got;
	}
	if (nr == __NR_io_destroy && (sw.n_kept > 0 || sw.n_done > 0 || sw.n_files > 0))
		forget((aio_context_t)a[0]);
	return real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
