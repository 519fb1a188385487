/* bbolt.h - read and write bbolt database files, the format of etcd's backend and of
 * its snapshots (issue 8: migrate from etcd to Bollard and back).
 *
 * The format, as this module understands it (learned from go.etcd.io/bbolt; all
 * integers little-endian, which is what bbolt writes on every platform etcd runs on):
 *
 *   A file is an array of pages of page_size bytes; page N starts at N * page_size.
 *   Every page starts with a 16-byte header: u64 id, u16 flags, u16 count,
 *   u32 overflow. A page of overflow K occupies K + 1 consecutive pages.
 *   flags: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist.
 *
 *   Pages 0 and 1 are meta pages: after the header, u32 magic 0xED0CDAED,
 *   u32 version 2, u32 page_size, u32 flags, the root bucket {u64 root page,
 *   u64 sequence}, u64 freelist page (all ones: no freelist stored), u64 pgid
 *   (high-water mark: pages below it are in use or free), u64 txid, and u64
 *   checksum: FNV-1a 64 over the 56 bytes before it. The valid meta with the
 *   higher txid is the current one.
 *
 *   Leaf pages hold count 16-byte elements {u32 flags, u32 pos, u32 ksize,
 *   u32 vsize}; the key starts pos bytes after the element's own first byte,
 *   the value right after the key. Branch pages hold 16-byte elements
 *   {u32 pos, u32 ksize, u64 child page}; the key is the first key under that
 *   child. Keys are in strictly increasing memcmp order across a bucket.
 *
 *   A leaf element with flags 0x01 is a nested bucket: its value is the bucket
 *   header {u64 root page, u64 sequence}; root 0 means an inline bucket, whose
 *   single leaf page (header with id 0, then elements and data) follows the
 *   header inside the value. The top level of a file is the root bucket from
 *   the meta page, whose elements are the named top-level buckets.
 *
 *   The freelist page lists free page ids (u64 each); a count of 0xFFFF means
 *   the real count is the first u64 after the header.
 *
 *   etcd's snapshot (Maintenance.Snapshot, `etcdctl snapshot save`) is such a
 *   file followed by a 32-byte SHA-256 of all the bytes before it; etcd treats
 *   a file whose size % 512 == 32 as having that trailer.
 *
 * Errors: 0 or a negative errno, and a message in the db's (or writer's) err
 * buffer. BBOLT_ECORRUPT for anything malformed (bad magic, checksum, page
 * type, id, bounds, order, truncation), BBOLT_EHASH for a SHA-256 trailer that
 * does not match, -ENOENT for a missing bucket, -ENOMEM, -errno for I/O.
 * The reader bounds-checks every page id, offset, count and length against
 * the buffer, so no input can make it read outside it or loop forever. */
#ifndef BOLLARD_CORE_BBOLT_H
#define BOLLARD_CORE_BBOLT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bbolt_stats;

#define BBOLT_ECORRUPT (-EINVAL)
#define BBOLT_EHASH (-EBADMSG)

#define BBOLT_MAGIC 0xED0CDAEDu
#define BBOLT_VERSION 2u
#define BBOLT_PAGE_HEADER 16u
#define BBOLT_ELEM_SIZE 16u
#define BBOLT_BUCKET_HEADER 16u
#define BBOLT_DEFAULT_PAGE_SIZE 4096u
#define BBOLT_NO_FREELIST UINT64_MAX
#define BBOLT_SHA256_LEN 32u
/* bbolt's limits on what a Put accepts. */
#define BBOLT_MAX_KEY 32768u
#define BBOLT_MAX_VALUE ((1u << 31) - 2u)

#define BBOLT_FLAG_BRANCH 0x01u
#define BBOLT_FLAG_LEAF 0x02u
#define BBOLT_FLAG_META 0x04u
#define BBOLT_FLAG_FREELIST 0x10u
#define BBOLT_LEAF_BUCKET 0x01u

/* The deepest B+tree (branch levels + leaf) and bucket nesting accepted. */
#define BBOLT_MAX_DEPTH 32
#define BBOLT_MAX_NESTING 16

/* ---- reader ------------------------------------------------------------------ */

enum bbolt_trailer {
	BBOLT_TRAILER_AUTO = 0, /* as etcd: size % 512 == 32 means a trailer follows */
	BBOLT_TRAILER_NONE,     /* the whole buffer is the database */
	BBOLT_TRAILER_REQUIRE,  /* a trailer must be there and match */
};

struct bbolt_meta {
	uint32_t page_size;
	uint32_t flags;
	uint64_t root;     /* page of the root bucket */
	uint64_t sequence; /* root bucket's sequence */
	uint64_t freelist; /* BBOLT_NO_FREELIST if none stored */
	uint64_t pgid;     /* high-water mark */
	uint64_t txid;
	int index;         /* which meta page (0 or 1) is current */
};

struct bbolt_db {
	const uint8_t *data; /* the database bytes (without a trailer) */
	size_t len;
	struct bbolt_meta meta;
	bool has_trailer;           /* a SHA-256 trailer was found and matched */
	uint8_t sha256[BBOLT_SHA256_LEN]; /* the trailer, if has_trailer */
	void *map_;                 /* mmap of bbolt_open_file, or NULL */
	size_t map_len_;
	uint8_t *marks_;            /* page bitmap during bbolt_check */
	struct bbolt_stats *stats_; /* during bbolt_check */
	char err[256];
};

/* Opens a database held in memory (buf must outlive db): verifies the trailer as
 * the mode says, then the meta pages. */
int bbolt_open_mem(struct bbolt_db *db, const void *buf, size_t len, enum bbolt_trailer mode);
/* Maps a file read-only and opens it like bbolt_open_mem. */
int bbolt_open_file(struct bbolt_db *db, const char *path, enum bbolt_trailer mode);
void bbolt_close(struct bbolt_db *db);

/* A bucket: the root bucket, or one nested in it. Cheap to copy; valid while db is. */
struct bbolt_bucket {
	struct bbolt_db *db;
	uint64_t root;           /* 0: inline */
	uint64_t sequence;
	const uint8_t *inl;      /* the inline page, if root == 0 */
	size_t inl_len;
};

/* One key/value pair; pointers into the database buffer. */
struct bbolt_kv {
	const uint8_t *key;
	size_t klen;
	const uint8_t *val;
	size_t vlen;
	bool is_bucket; /* val is a nested bucket's header (open it with bbolt_bucket_from_kv) */
};

void bbolt_root_bucket(struct bbolt_db *db, struct bbolt_bucket *out);
/* The bucket named name in parent: 0, -ENOENT, -ENOTDIR (the key is a plain
 * value), or BBOLT_ECORRUPT. A linear scan (fine for etcd's few buckets). */
int bbolt_bucket_open(const struct bbolt_bucket *parent, const void *name, size_t nlen,
                      struct bbolt_bucket *out);
int bbolt_bucket_from_kv(struct bbolt_db *db, const struct bbolt_kv *kv, struct bbolt_bucket *out);

/* A cursor over one bucket's pairs in key order (nested buckets show up as
 * pairs with is_bucket). first/next return 1 with *kv filled, 0 at the end, or
 * an error (the message in db->err). Keys are checked to increase strictly. */
struct bbolt_cursor_frame_ {
	const uint8_t *p;
	size_t plen;
	uint16_t count, idx;
	bool leaf;
};
struct bbolt_cursor {
	struct bbolt_bucket b;
	struct bbolt_cursor_frame_ st[BBOLT_MAX_DEPTH];
	int depth;
	const uint8_t *last;
	size_t last_len;
	bool have_last;
};
void bbolt_cursor_init(struct bbolt_cursor *c, const struct bbolt_bucket *b);
int bbolt_cursor_first(struct bbolt_cursor *c, struct bbolt_kv *kv);
int bbolt_cursor_next(struct bbolt_cursor *c, struct bbolt_kv *kv);

/* The free page ids the freelist page lists: calls fn for each (stop with a
 * non-zero return, which is passed on). 0 if there is no freelist page. */
int bbolt_freelist_foreach(struct bbolt_db *db, int (*fn)(uint64_t pgid, void *arg), void *arg);

struct bbolt_stats {
	uint64_t buckets;     /* nested buckets, at any depth */
	uint64_t inline_buckets;
	uint64_t keys;        /* plain key/value pairs, at any depth */
	uint64_t branch_pages, leaf_pages, overflow_pages, free_pages;
	uint64_t max_depth;
};
/* Walks everything (as bbolt's Tx.Check): every page below the high-water mark
 * must be a meta page, the freelist, free, or used exactly once by one bucket;
 * every key in order. stats may be NULL. */
int bbolt_check(struct bbolt_db *db, struct bbolt_stats *stats);

/* ---- SHA-256 trailer ------------------------------------------------------------ */

void bbolt_sha256(const void *buf, size_t len, uint8_t out[BBOLT_SHA256_LEN]);
/* Appends the SHA-256 of the file's current content to it (etcd's snapshot trailer). */
int bbolt_append_trailer_fd(int fd);

/* ---- writer ------------------------------------------------------------------ */

/* Builds a file in one pass, bottom-up: buckets are opened and closed like
 * directories and filled with pairs in strictly increasing key order (within a
 * bucket, pairs and nested buckets share one order: a nested bucket's name is
 * its key in the parent). Pages are written as they fill; only the open
 * buckets' partial pages and branch keys stay in memory. Output goes to an fd
 * (pwrite, so a regular file) or to a memory buffer.
 *
 *   bbolt_writer_init_mem(&w, 0);               // or _fd(&w, fd, 0)
 *   bbolt_writer_begin_bucket(&w, "key", 3);
 *   bbolt_writer_put(&w, k, klen, v, vlen);    // ... in key order
 *   bbolt_writer_end_bucket(&w, 0);
 *   bbolt_writer_finish(&w, txid);             // meta pages last
 *   ... w.buf / w.buf_len hold the file (mem); bbolt_writer_free(&w) */
struct bbolt_wnode_;
struct bbolt_wbucket_;
struct bbolt_writer {
	uint32_t page_size;
	double fill;       /* start a new page past this fraction of a page (default 1.0) */
	bool allow_inline; /* small leaf-only buckets are stored inline, as bbolt does (default true) */
	int fd;            /* -1: memory */
	uint8_t *buf;      /* memory output */
	size_t buf_len, buf_cap;
	uint64_t next_pgid;
	struct bbolt_wbucket_ *stack[BBOLT_MAX_NESTING + 1];
	int depth;         /* open buckets; stack[0] is the root bucket */
	int error;         /* sticky: the first error */
	char err[256];
};

/* page_size 0: 4096. A power of two from 512 to 65536. */
int bbolt_writer_init_mem(struct bbolt_writer *w, uint32_t page_size);
int bbolt_writer_init_fd(struct bbolt_writer *w, int fd, uint32_t page_size);
int bbolt_writer_begin_bucket(struct bbolt_writer *w, const void *name, size_t nlen);
int bbolt_writer_put(struct bbolt_writer *w, const void *key, size_t klen, const void *val,
                     size_t vlen);
int bbolt_writer_end_bucket(struct bbolt_writer *w, uint64_t sequence);
/* Closes the root bucket, writes the freelist (empty) and both meta pages
 * (txid and txid - 1, as bbolt's Tx.WriteTo does; txid >= 1). */
int bbolt_writer_finish(struct bbolt_writer *w, uint64_t txid);
/* Appends the SHA-256 trailer to the finished output. */
int bbolt_writer_append_trailer(struct bbolt_writer *w);
void bbolt_writer_free(struct bbolt_writer *w);

#endif
