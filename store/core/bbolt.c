/* bbolt.c - the bbolt file format: a bounds-checked reader and a one-pass writer.
 * See bbolt.h for the layout. */
#include "core/bbolt.h"
#include "core/fdio.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

/* ---- little-endian fields ------------------------------------------------------ */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Page header fields. */
#define PH_ID 0
#define PH_FLAGS 8
#define PH_COUNT 10
#define PH_OVERFLOW 12

/* Meta fields, relative to the end of the page header. */
#define M_MAGIC 0
#define M_VERSION 4
#define M_PAGESIZE 8
#define M_FLAGS 12
#define M_ROOT 16
#define M_SEQUENCE 24
#define M_FREELIST 32
#define M_PGID 40
#define M_TXID 48
#define M_CHECKSUM 56
#define M_SIZE 64

#define MIN_PAGE_SIZE 512u
#define MAX_PAGE_SIZE 65536u

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static bool valid_page_size(uint64_t ps)
{
	return ps >= MIN_PAGE_SIZE && ps <= MAX_PAGE_SIZE && (ps & (ps - 1)) == 0;
}

__attribute__((format(printf, 3, 4))) static int fail(char *buf, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, 256, fmt, ap);
	va_end(ap);
	return rc;
}

#define CORRUPT(db, ...) fail((db)->err, BBOLT_ECORRUPT, __VA_ARGS__)

/* ---- SHA-256 ----------------------------------------------------------------- */

void bbolt_sha256(const void *buf, size_t len, uint8_t out[BBOLT_SHA256_LEN])
{
	unsigned int n = 0;
	EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL);
}

int bbolt_append_trailer_fd(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -errno;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *chunk = malloc(1 << 16);
	int rc = 0;
	if (!ctx || !chunk) {
		rc = -ENOMEM;
		goto out;
	}
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	for (off_t off = 0; off < st.st_size;) {
		size_t n = st.st_size - off < (1 << 16) ? (size_t)(st.st_size - off) : 1 << 16;
		if ((rc = fdio_pread_full(fd, chunk, n, off)) != 0) {
			rc = rc == -ENODATA ? -EIO : rc; /* shrunk under us */
			goto out;
		}
		EVP_DigestUpdate(ctx, chunk, n);
		off += (off_t)n;
	}
	uint8_t sum[BBOLT_SHA256_LEN];
	unsigned int sl = 0;
	EVP_DigestFinal_ex(ctx, sum, &sl);
	rc = fdio_pwrite_full(fd, sum, sizeof(sum), st.st_size);
out:
	EVP_MD_CTX_free(ctx);
	free(chunk);
	return rc;
}

/* ---- reader: meta -------------------------------------------------------------- */

/* Reads and validates the meta page at byte offset off. */
static int read_meta(struct bbolt_db *db, size_t off, int index, struct bbolt_meta *m)
{
	if (off > db->len || db->len - off < BBOLT_PAGE_HEADER + M_SIZE)
		return CORRUPT(db, "meta page %d: file too short (%zu bytes)", index, db->len);
	const uint8_t *p = db->data + off;
	if (!(le16(p + PH_FLAGS) & BBOLT_FLAG_META))
		return CORRUPT(db, "meta page %d: not a meta page (flags 0x%x)", index,
		               le16(p + PH_FLAGS));
	const uint8_t *mp = p + BBOLT_PAGE_HEADER;
	if (le32(mp + M_MAGIC) != BBOLT_MAGIC)
		return CORRUPT(db, "meta page %d: bad magic 0x%08x (not a bbolt file)", index,
		               le32(mp + M_MAGIC));
	if (le32(mp + M_VERSION) != BBOLT_VERSION)
		return CORRUPT(db, "meta page %d: unsupported version %u", index,
		               le32(mp + M_VERSION));
	if (le64(mp + M_CHECKSUM) != fnv1a64(mp, M_CHECKSUM))
		return CORRUPT(db, "meta page %d: checksum mismatch", index);
	m->page_size = le32(mp + M_PAGESIZE);
	m->flags = le32(mp + M_FLAGS);
	m->root = le64(mp + M_ROOT);
	m->sequence = le64(mp + M_SEQUENCE);
	m->freelist = le64(mp + M_FREELIST);
	m->pgid = le64(mp + M_PGID);
	m->txid = le64(mp + M_TXID);
	m->index = index;
	if (!valid_page_size(m->page_size))
		return CORRUPT(db, "meta page %d: bad page size %u", index, m->page_size);
	if ((size_t)index * m->page_size != off)
		return CORRUPT(db, "meta page %d: page size %u does not match its offset", index,
		               m->page_size);
	if (m->pgid < 3)
		return CORRUPT(db, "meta page %d: high-water mark %" PRIu64 " too small", index,
		               m->pgid);
	if (m->root < 2 || m->root >= m->pgid)
		return CORRUPT(db, "meta page %d: root page %" PRIu64 " out of range", index,
		               m->root);
	if (m->freelist != BBOLT_NO_FREELIST && (m->freelist < 2 || m->freelist >= m->pgid))
		return CORRUPT(db, "meta page %d: freelist page %" PRIu64 " out of range", index,
		               m->freelist);
	if (m->pgid > db->len / m->page_size)
		return CORRUPT(db,
		               "truncated: %zu bytes hold %zu pages of %u, the meta page says %" PRIu64,
		               db->len, db->len / m->page_size, m->page_size, m->pgid);
	return 0;
}

static int open_meta(struct bbolt_db *db)
{
	struct bbolt_meta m0, m1;
	char err0[256];
	int rc0 = read_meta(db, 0, 0, &m0);
	memcpy(err0, db->err, sizeof(err0));
	int rc1 = BBOLT_ECORRUPT;
	if (rc0 == 0) {
		rc1 = read_meta(db, m0.page_size, 1, &m1);
	} else {
		/* Meta 0 is damaged: look for meta 1 at each possible page size. */
		for (uint32_t ps = MIN_PAGE_SIZE; ps <= MAX_PAGE_SIZE && rc1 != 0; ps *= 2)
			rc1 = read_meta(db, ps, 1, &m1);
	}
	if (rc0 != 0 && rc1 != 0) {
		memcpy(db->err, err0, sizeof(err0));
		return rc0;
	}
	if (rc0 == 0 && (rc1 != 0 || m0.txid >= m1.txid))
		db->meta = m0;
	else
		db->meta = m1;
	db->err[0] = 0;
	return 0;
}

int bbolt_open_mem(struct bbolt_db *db, const void *buf, size_t len, enum bbolt_trailer mode)
{
	memset(db, 0, sizeof(*db));
	db->data = buf;
	db->len = len;
	bool trailer = false;
	if (mode == BBOLT_TRAILER_AUTO)
		trailer = len % 512 == BBOLT_SHA256_LEN;
	else if (mode == BBOLT_TRAILER_REQUIRE) {
		if (len % 512 != BBOLT_SHA256_LEN)
			return CORRUPT(db, "no SHA-256 trailer (size %zu is not a multiple of 512 plus 32)",
			               len);
		trailer = true;
	}
	if (trailer) {
		uint8_t sum[BBOLT_SHA256_LEN];
		db->len = len - BBOLT_SHA256_LEN;
		bbolt_sha256(db->data, db->len, sum);
		if (memcmp(sum, db->data + db->len, BBOLT_SHA256_LEN) != 0)
			return fail(db->err, BBOLT_EHASH,
			            "snapshot hash mismatch: the SHA-256 trailer does not match the "
			            "%zu bytes before it",
			            db->len);
		memcpy(db->sha256, sum, sizeof(sum));
		db->has_trailer = true;
	}
	return open_meta(db);
}

int bbolt_open_file(struct bbolt_db *db, const char *path, enum bbolt_trailer mode)
{
	memset(db, 0, sizeof(*db));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(db->err, -errno, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return fail(db->err, -e, "%s: %s", path, strerror(e));
	}
	if (st.st_size == 0) {
		close(fd);
		return fail(db->err, BBOLT_ECORRUPT, "%s: empty file", path);
	}
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	int e = errno;
	close(fd);
	if (map == MAP_FAILED)
		return fail(db->err, -e, "%s: mmap: %s", path, strerror(e));
	int rc = bbolt_open_mem(db, map, (size_t)st.st_size, mode);
	db->map_ = map;
	db->map_len_ = (size_t)st.st_size;
	if (rc != 0) {
		char msg[sizeof(db->err)];
		memcpy(msg, db->err, sizeof(msg));
		bbolt_close(db);
		memcpy(db->err, msg, sizeof(msg));
	}
	return rc;
}

void bbolt_close(struct bbolt_db *db)
{
	if (db->map_)
		munmap(db->map_, db->map_len_);
	free(db->marks_);
	memset(db, 0, sizeof(*db));
}

/* ---- reader: pages and cursors ------------------------------------------------- */

/* The page pgid (with its overflow pages): bounds and header id checked. */
static int page_at(struct bbolt_db *db, uint64_t pgid, const uint8_t **pp, size_t *plen)
{
	uint64_t hwm = db->meta.pgid, ps = db->meta.page_size;
	if (pgid < 2 || pgid >= hwm)
		return CORRUPT(db, "page %" PRIu64 " out of range (high-water mark %" PRIu64 ")", pgid,
		               hwm);
	const uint8_t *p = db->data + pgid * ps;
	if (le64(p + PH_ID) != pgid)
		return CORRUPT(db, "page %" PRIu64 ": header says it is page %" PRIu64, pgid,
		               le64(p + PH_ID));
	uint64_t ov = le32(p + PH_OVERFLOW);
	if (ov >= hwm - pgid)
		return CORRUPT(db, "page %" PRIu64 ": overflow %" PRIu64 " runs past the high-water mark",
		               pgid, ov);
	*pp = p;
	*plen = (size_t)((ov + 1) * ps);
	return 0;
}

/* Marks pages [pgid, pgid + n) used during bbolt_check. */
static int mark_pages(struct bbolt_db *db, uint64_t pgid, uint64_t n)
{
	if (!db->marks_)
		return 0;
	for (uint64_t i = pgid; i < pgid + n; i++) {
		if (db->marks_[i / 8] & (1u << (i % 8)))
			return CORRUPT(db, "page %" PRIu64 " is used twice (or used and free)", i);
		db->marks_[i / 8] |= (uint8_t)(1u << (i % 8));
	}
	return 0;
}

static int push_frame(struct bbolt_cursor *c, const uint8_t *p, size_t plen, bool in_tree,
                      uint64_t pgid)
{
	struct bbolt_db *db = c->b.db;
	if (c->depth >= BBOLT_MAX_DEPTH)
		return CORRUPT(db, "bucket tree deeper than %d levels", BBOLT_MAX_DEPTH);
	uint16_t flags = le16(p + PH_FLAGS), count = le16(p + PH_COUNT);
	if (flags != BBOLT_FLAG_LEAF && flags != BBOLT_FLAG_BRANCH)
		return CORRUPT(db, "page %" PRIu64 ": not a leaf or branch page (flags 0x%x)", pgid,
		               flags);
	bool leaf = flags == BBOLT_FLAG_LEAF;
	if (!in_tree && !leaf)
		return CORRUPT(db, "inline bucket page is not a leaf");
	if ((uint64_t)BBOLT_PAGE_HEADER + (uint64_t)count * BBOLT_ELEM_SIZE > plen)
		return CORRUPT(db, "page %" PRIu64 ": %u elements do not fit in %zu bytes", pgid, count,
		               plen);
	if (count == 0 && (!leaf || c->depth > 0))
		return CORRUPT(db, "page %" PRIu64 ": empty %s page inside a tree", pgid,
		               leaf ? "leaf" : "branch");
	if (in_tree && db->marks_) {
		int rc = mark_pages(db, pgid, plen / db->meta.page_size);
		if (rc)
			return rc;
		struct bbolt_stats *st = db->stats_;
		if (st) {
			if (leaf)
				st->leaf_pages++;
			else
				st->branch_pages++;
			st->overflow_pages += plen / db->meta.page_size - 1;
			if ((uint64_t)c->depth + 1 > st->max_depth)
				st->max_depth = (uint64_t)c->depth + 1;
		}
	}
	struct bbolt_cursor_frame_ *f = &c->st[c->depth++];
	f->p = p;
	f->plen = plen;
	f->count = count;
	f->idx = 0;
	f->leaf = leaf;
	return 0;
}

static int push_page(struct bbolt_cursor *c, uint64_t pgid)
{
	const uint8_t *p;
	size_t plen;
	int rc = page_at(c->b.db, pgid, &p, &plen);
	return rc ? rc : push_frame(c, p, plen, true, pgid);
}

/* The child page of branch element i of frame f. */
static int branch_child(struct bbolt_db *db, const struct bbolt_cursor_frame_ *f, uint16_t i,
                        uint64_t *child)
{
	const uint8_t *e = f->p + BBOLT_PAGE_HEADER + (size_t)i * BBOLT_ELEM_SIZE;
	uint64_t pos = le32(e), ksize = le32(e + 4);
	uint64_t start = (uint64_t)(e - f->p) + pos;
	if (ksize == 0 || start + ksize > f->plen)
		return CORRUPT(db, "branch element %u: key out of page bounds", i);
	*child = le64(e + 8);
	return 0;
}

static int leaf_elem(struct bbolt_db *db, const struct bbolt_cursor_frame_ *f, uint16_t i,
                     struct bbolt_kv *kv)
{
	const uint8_t *e = f->p + BBOLT_PAGE_HEADER + (size_t)i * BBOLT_ELEM_SIZE;
	uint32_t flags = le32(e);
	uint64_t pos = le32(e + 4), ksize = le32(e + 8), vsize = le32(e + 12);
	uint64_t start = (uint64_t)(e - f->p) + pos;
	if (flags & ~(uint32_t)BBOLT_LEAF_BUCKET)
		return CORRUPT(db, "leaf element %u: unknown flags 0x%x", i, flags);
	if (ksize == 0)
		return CORRUPT(db, "leaf element %u: empty key", i);
	if (start + ksize + vsize > f->plen)
		return CORRUPT(db, "leaf element %u: key/value out of page bounds", i);
	kv->key = e + pos;
	kv->klen = (size_t)ksize;
	kv->val = e + pos + ksize;
	kv->vlen = (size_t)vsize;
	kv->is_bucket = flags & BBOLT_LEAF_BUCKET;
	return 0;
}

void bbolt_cursor_init(struct bbolt_cursor *c, const struct bbolt_bucket *b)
{
	memset(c, 0, sizeof(*c));
	c->b = *b;
}

/* Moves to the next pair at or after the current position: descends branches,
 * leaves exhausted pages. 1 with kv, 0 at the end, or an error. */
static int settle(struct bbolt_cursor *c, struct bbolt_kv *kv)
{
	struct bbolt_db *db = c->b.db;
	for (;;) {
		if (c->depth == 0)
			return 0;
		struct bbolt_cursor_frame_ *f = &c->st[c->depth - 1];
		if (f->idx >= f->count) {
			c->depth--;
			if (c->depth > 0)
				c->st[c->depth - 1].idx++;
			continue;
		}
		if (f->leaf)
			break;
		uint64_t child = 0;
		int rc = branch_child(db, f, f->idx, &child);
		if (rc == 0)
			rc = push_page(c, child);
		if (rc)
			return rc;
	}
	struct bbolt_cursor_frame_ *f = &c->st[c->depth - 1];
	int rc = leaf_elem(db, f, f->idx, kv);
	if (rc)
		return rc;
	if (c->have_last) {
		size_t n = c->last_len < kv->klen ? c->last_len : kv->klen;
		int cmp = memcmp(c->last, kv->key, n);
		if (cmp > 0 || (cmp == 0 && c->last_len >= kv->klen))
			return CORRUPT(db, "keys out of order in a bucket");
	}
	c->last = kv->key;
	c->last_len = kv->klen;
	c->have_last = true;
	return 1;
}

int bbolt_cursor_first(struct bbolt_cursor *c, struct bbolt_kv *kv)
{
	c->depth = 0;
	c->have_last = false;
	int rc;
	if (c->b.root == 0) {
		if (!c->b.inl || c->b.inl_len < BBOLT_PAGE_HEADER)
			return CORRUPT(c->b.db, "inline bucket shorter than a page header");
		rc = push_frame(c, c->b.inl, c->b.inl_len, false, 0);
	} else {
		rc = push_page(c, c->b.root);
	}
	return rc ? rc : settle(c, kv);
}

int bbolt_cursor_next(struct bbolt_cursor *c, struct bbolt_kv *kv)
{
	if (c->depth == 0)
		return 0;
	c->st[c->depth - 1].idx++;
	return settle(c, kv);
}

void bbolt_root_bucket(struct bbolt_db *db, struct bbolt_bucket *out)
{
	memset(out, 0, sizeof(*out));
	out->db = db;
	out->root = db->meta.root;
	out->sequence = db->meta.sequence;
}

int bbolt_bucket_from_kv(struct bbolt_db *db, const struct bbolt_kv *kv, struct bbolt_bucket *out)
{
	memset(out, 0, sizeof(*out));
	out->db = db;
	if (!kv->is_bucket)
		return fail(db->err, -ENOTDIR, "key is a value, not a bucket");
	if (kv->vlen < BBOLT_BUCKET_HEADER)
		return CORRUPT(db, "bucket value of %zu bytes is shorter than its header", kv->vlen);
	out->root = le64(kv->val);
	out->sequence = le64(kv->val + 8);
	if (out->root == 0) {
		out->inl = kv->val + BBOLT_BUCKET_HEADER;
		out->inl_len = kv->vlen - BBOLT_BUCKET_HEADER;
		if (out->inl_len < BBOLT_PAGE_HEADER)
			return CORRUPT(db, "inline bucket shorter than a page header");
	}
	return 0;
}

int bbolt_bucket_open(const struct bbolt_bucket *parent, const void *name, size_t nlen,
                      struct bbolt_bucket *out)
{
	struct bbolt_cursor c;
	struct bbolt_kv kv;
	bbolt_cursor_init(&c, parent);
	int rc;
	for (rc = bbolt_cursor_first(&c, &kv); rc == 1; rc = bbolt_cursor_next(&c, &kv)) {
		size_t n = nlen < kv.klen ? nlen : kv.klen;
		int cmp = memcmp(kv.key, name, n);
		if (cmp == 0 && kv.klen == nlen)
			return bbolt_bucket_from_kv(parent->db, &kv, out);
		if (cmp > 0 || (cmp == 0 && kv.klen > nlen))
			break;
	}
	if (rc < 0)
		return rc;
	return fail(parent->db->err, -ENOENT, "bucket \"%.*s\" not found", (int)(nlen > 64 ? 64 : nlen),
	            (const char *)name);
}

int bbolt_freelist_foreach(struct bbolt_db *db, int (*fn)(uint64_t pgid, void *arg), void *arg)
{
	if (db->meta.freelist == BBOLT_NO_FREELIST)
		return 0;
	const uint8_t *p;
	size_t plen;
	int rc = page_at(db, db->meta.freelist, &p, &plen);
	if (rc)
		return rc;
	if (!(le16(p + PH_FLAGS) & BBOLT_FLAG_FREELIST))
		return CORRUPT(db, "page %" PRIu64 " is not a freelist page (flags 0x%x)",
		               db->meta.freelist, le16(p + PH_FLAGS));
	uint64_t count = le16(p + PH_COUNT), idx = 0;
	uint64_t room = (plen - BBOLT_PAGE_HEADER) / 8;
	if (count == 0xFFFF) {
		count = le64(p + BBOLT_PAGE_HEADER);
		idx = 1;
	}
	if (count > room - idx)
		return CORRUPT(db, "freelist: %" PRIu64 " ids do not fit in its page", count);
	for (uint64_t i = 0; i < count; i++) {
		rc = fn(le64(p + BBOLT_PAGE_HEADER + 8 * (idx + i)), arg);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- reader: full check -------------------------------------------------------- */

static int check_free_id(uint64_t pgid, void *arg)
{
	struct bbolt_db *db = arg;
	if (pgid < 2 || pgid >= db->meta.pgid)
		return CORRUPT(db, "freelist: page %" PRIu64 " out of range", pgid);
	if (db->stats_)
		db->stats_->free_pages++;
	return mark_pages(db, pgid, 1);
}

static int check_bucket(struct bbolt_db *db, const struct bbolt_bucket *b, int nesting,
                        struct bbolt_stats *st)
{
	if (nesting > BBOLT_MAX_NESTING)
		return CORRUPT(db, "buckets nested deeper than %d", BBOLT_MAX_NESTING);
	struct bbolt_cursor *c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	struct bbolt_kv kv;
	bbolt_cursor_init(c, b);
	int rc;
	for (rc = bbolt_cursor_first(c, &kv); rc == 1; rc = bbolt_cursor_next(c, &kv)) {
		if (!kv.is_bucket) {
			st->keys++;
			continue;
		}
		struct bbolt_bucket child;
		rc = bbolt_bucket_from_kv(db, &kv, &child);
		if (rc)
			break;
		st->buckets++;
		if (child.root == 0)
			st->inline_buckets++;
		rc = check_bucket(db, &child, nesting + 1, st);
		if (rc)
			break;
	}
	free(c);
	return rc < 0 ? rc : 0;
}

int bbolt_check(struct bbolt_db *db, struct bbolt_stats *stats)
{
	struct bbolt_stats local;
	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	uint64_t hwm = db->meta.pgid;
	free(db->marks_);
	db->marks_ = calloc((size_t)(hwm / 8 + 1), 1);
	if (!db->marks_)
		return -ENOMEM;
	db->stats_ = stats;
	int rc = mark_pages(db, 0, 2);
	if (rc == 0 && db->meta.freelist != BBOLT_NO_FREELIST) {
		const uint8_t *p;
		size_t plen;
		rc = page_at(db, db->meta.freelist, &p, &plen);
		if (rc == 0)
			rc = mark_pages(db, db->meta.freelist, plen / db->meta.page_size);
		if (rc == 0)
			rc = bbolt_freelist_foreach(db, check_free_id, db);
	}
	if (rc == 0) {
		struct bbolt_bucket root;
		bbolt_root_bucket(db, &root);
		rc = check_bucket(db, &root, 0, stats);
	}
	for (uint64_t i = 2; rc == 0 && i < hwm; i++) {
		if (db->marks_[i / 8] & (1u << (i % 8)))
			continue;
		if (db->meta.freelist != BBOLT_NO_FREELIST)
			rc = CORRUPT(db, "page %" PRIu64 ": unreachable and not free", i);
		else
			stats->free_pages++;
	}
	db->stats_ = NULL;
	free(db->marks_);
	db->marks_ = NULL;
	return rc;
}

/* ---- writer ------------------------------------------------------------------ */

struct welem_ {
	uint32_t flags;
	uint32_t klen, vlen; /* vlen 0 for branch elements */
	uint64_t pgid;       /* branch elements */
	size_t off;          /* key (then value) in data */
};

struct bbolt_wnode_ {
	struct welem_ *el;
	size_t count, cap;
	uint8_t *data;
	size_t dlen, dcap;
	uint64_t pages; /* pages written at this level so far */
};

struct bbolt_wbucket_ {
	struct bbolt_wnode_ lv[BBOLT_MAX_DEPTH]; /* lv[0]: leaves, lv[i]: branches */
	uint8_t *name;
	size_t nlen;
	uint8_t *last;
	size_t last_len, last_cap;
	bool have_last;
	bool has_sub;
};

#define WFAIL(w, rc, ...) ((w)->error = fail((w)->err, (rc), __VA_ARGS__))

static int writer_init(struct bbolt_writer *w, int fd, uint32_t page_size)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->page_size = page_size ? page_size : BBOLT_DEFAULT_PAGE_SIZE;
	w->fill = 1.0;
	w->allow_inline = true;
	w->next_pgid = 2;
	if (!valid_page_size(w->page_size))
		return WFAIL(w, -EINVAL, "bad page size %u", w->page_size);
	w->stack[0] = calloc(1, sizeof(struct bbolt_wbucket_));
	if (!w->stack[0])
		return WFAIL(w, -ENOMEM, "out of memory");
	w->depth = 1;
	return 0;
}

int bbolt_writer_init_mem(struct bbolt_writer *w, uint32_t page_size)
{
	return writer_init(w, -1, page_size);
}

int bbolt_writer_init_fd(struct bbolt_writer *w, int fd, uint32_t page_size)
{
	return writer_init(w, fd, page_size);
}

static void node_free(struct bbolt_wnode_ *n)
{
	free(n->el);
	free(n->data);
	memset(n, 0, sizeof(*n));
}

static void wbucket_free(struct bbolt_wbucket_ *b)
{
	if (!b)
		return;
	for (int i = 0; i < BBOLT_MAX_DEPTH; i++)
		node_free(&b->lv[i]);
	free(b->name);
	free(b->last);
	free(b);
}

void bbolt_writer_free(struct bbolt_writer *w)
{
	for (int i = 0; i < w->depth; i++)
		wbucket_free(w->stack[i]);
	free(w->buf);
	memset(w, 0, sizeof(*w));
	w->fd = -1;
}

static size_t node_size(const struct bbolt_wnode_ *n)
{
	return BBOLT_PAGE_HEADER + n->count * BBOLT_ELEM_SIZE + n->dlen;
}

static int node_add(struct bbolt_writer *w, struct bbolt_wnode_ *n, uint32_t flags,
                    const void *k, size_t klen, const void *v, size_t vlen, uint64_t pgid)
{
	if (n->count == n->cap) {
		size_t cap = n->cap ? n->cap * 2 : 64;
		struct welem_ *el = realloc(n->el, cap * sizeof(*el));
		if (!el)
			return WFAIL(w, -ENOMEM, "out of memory");
		n->el = el;
		n->cap = cap;
	}
	if (n->dcap - n->dlen < klen + vlen) {
		size_t cap = n->dcap ? n->dcap : 4096;
		while (cap - n->dlen < klen + vlen)
			cap *= 2;
		uint8_t *d = realloc(n->data, cap);
		if (!d)
			return WFAIL(w, -ENOMEM, "out of memory");
		n->data = d;
		n->dcap = cap;
	}
	struct welem_ *e = &n->el[n->count++];
	e->flags = flags;
	e->klen = (uint32_t)klen;
	e->vlen = (uint32_t)vlen;
	e->pgid = pgid;
	e->off = n->dlen;
	memcpy(n->data + n->dlen, k, klen);
	if (vlen)
		memcpy(n->data + n->dlen + klen, v, vlen);
	n->dlen += klen + vlen;
	return 0;
}

/* Lays node n out as a page image of len bytes (zeroed by the caller). */
static void node_render(const struct bbolt_wnode_ *n, bool leaf, uint64_t pgid, uint8_t *p,
                        size_t len, uint32_t page_size)
{
	put64(p + PH_ID, pgid);
	put16(p + PH_FLAGS, leaf ? BBOLT_FLAG_LEAF : BBOLT_FLAG_BRANCH);
	put16(p + PH_COUNT, (uint16_t)n->count);
	put32(p + PH_OVERFLOW, pgid ? (uint32_t)(len / page_size - 1) : 0);
	size_t data = BBOLT_PAGE_HEADER + n->count * BBOLT_ELEM_SIZE;
	for (size_t i = 0; i < n->count; i++) {
		const struct welem_ *e = &n->el[i];
		uint8_t *ep = p + BBOLT_PAGE_HEADER + i * BBOLT_ELEM_SIZE;
		uint32_t pos = (uint32_t)(data + e->off - (size_t)(ep - p));
		if (leaf) {
			put32(ep, e->flags);
			put32(ep + 4, pos);
			put32(ep + 8, e->klen);
			put32(ep + 12, e->vlen);
		} else {
			put32(ep, pos);
			put32(ep + 4, e->klen);
			put64(ep + 8, e->pgid);
		}
	}
	if (n->dlen)
		memcpy(p + data, n->data, n->dlen);
}

static int out_write(struct bbolt_writer *w, const uint8_t *p, size_t len, uint64_t off)
{
	if (w->fd < 0) {
		if (off + len > w->buf_cap) {
			size_t cap = w->buf_cap ? w->buf_cap : 1 << 16;
			while (cap < off + len)
				cap *= 2;
			uint8_t *b = realloc(w->buf, cap);
			if (!b)
				return WFAIL(w, -ENOMEM, "out of memory");
			memset(b + w->buf_cap, 0, cap - w->buf_cap);
			w->buf = b;
			w->buf_cap = cap;
		}
		memcpy(w->buf + off, p, len);
		if (off + len > w->buf_len)
			w->buf_len = off + len;
		return 0;
	}
	int rc = fdio_pwrite_full(w->fd, p, len, (off_t)off);
	return rc ? WFAIL(w, rc, "write: %s", strerror(-rc)) : 0;
}

static int node_add_up(struct bbolt_writer *w, struct bbolt_wbucket_ *b, int level,
                       const void *k, size_t klen, uint64_t pgid);

/* Writes level `level` of b as a page, hands its first key up, and empties it. */
static int node_flush(struct bbolt_writer *w, struct bbolt_wbucket_ *b, int level, uint64_t *pgid_out)
{
	struct bbolt_wnode_ *n = &b->lv[level];
	size_t size = node_size(n);
	size_t pages = (size + w->page_size - 1) / w->page_size;
	if (n->count >= 0xFFFF)
		return WFAIL(w, -E2BIG, "too many elements for one page");
	uint8_t *img = calloc(pages, w->page_size);
	if (!img)
		return WFAIL(w, -ENOMEM, "out of memory");
	uint64_t pgid = w->next_pgid;
	w->next_pgid += pages;
	node_render(n, level == 0, pgid, img, pages * w->page_size, w->page_size);
	int rc = out_write(w, img, pages * w->page_size, pgid * w->page_size);
	free(img);
	if (rc)
		return rc;
	n->pages++;
	if (pgid_out)
		*pgid_out = pgid;
	else if ((rc = node_add_up(w, b, level + 1, n->data + n->el[0].off, n->el[0].klen, pgid)))
		return rc;
	n->count = 0;
	n->dlen = 0;
	return 0;
}

/* Adds an element to level `level`, first writing out that level's node if the
 * element would take it past the fill threshold. */
static int node_add_at(struct bbolt_writer *w, struct bbolt_wbucket_ *b, int level, uint32_t flags,
                       const void *k, size_t klen, const void *v, size_t vlen, uint64_t pgid)
{
	if (level >= BBOLT_MAX_DEPTH)
		return WFAIL(w, -E2BIG, "tree too deep");
	struct bbolt_wnode_ *n = &b->lv[level];
	size_t esize = BBOLT_ELEM_SIZE + klen + vlen;
	size_t threshold = (size_t)(w->page_size * w->fill);
	size_t min_count = level == 0 ? 1 : 2; /* a branch level must shrink */
	if (n->count >= min_count && node_size(n) + esize > threshold) {
		int rc = node_flush(w, b, level, NULL);
		if (rc)
			return rc;
	}
	return node_add(w, n, flags, k, klen, v, vlen, pgid);
}

static int node_add_up(struct bbolt_writer *w, struct bbolt_wbucket_ *b, int level,
                       const void *k, size_t klen, uint64_t pgid)
{
	return node_add_at(w, b, level, 0, k, klen, NULL, 0, pgid);
}

/* Checks that key comes after b's last key, and records it. */
static int order_check(struct bbolt_writer *w, struct bbolt_wbucket_ *b, const void *key,
                       size_t klen)
{
	if (klen == 0)
		return WFAIL(w, -EINVAL, "empty key");
	if (klen > BBOLT_MAX_KEY)
		return WFAIL(w, -EINVAL, "key of %zu bytes is over bbolt's limit", klen);
	if (b->have_last) {
		size_t n = b->last_len < klen ? b->last_len : klen;
		int cmp = memcmp(b->last, key, n);
		if (cmp > 0 || (cmp == 0 && b->last_len >= klen))
			return WFAIL(w, -EINVAL, "keys not in strictly increasing order");
	}
	if (b->last_cap < klen) {
		uint8_t *l = realloc(b->last, klen);
		if (!l)
			return WFAIL(w, -ENOMEM, "out of memory");
		b->last = l;
		b->last_cap = klen;
	}
	memcpy(b->last, key, klen);
	b->last_len = klen;
	b->have_last = true;
	return 0;
}

int bbolt_writer_put(struct bbolt_writer *w, const void *key, size_t klen, const void *val,
                     size_t vlen)
{
	if (w->error)
		return w->error;
	if (vlen > BBOLT_MAX_VALUE)
		return WFAIL(w, -EINVAL, "value of %zu bytes is over bbolt's limit", vlen);
	if (w->depth < 2)
		return WFAIL(w, -EINVAL, "put outside a bucket (the root holds only buckets)");
	struct bbolt_wbucket_ *b = w->stack[w->depth - 1];
	int rc = order_check(w, b, key, klen);
	return rc ? rc : node_add_at(w, b, 0, 0, key, klen, val, vlen, 0);
}

int bbolt_writer_begin_bucket(struct bbolt_writer *w, const void *name, size_t nlen)
{
	if (w->error)
		return w->error;
	if (w->depth > BBOLT_MAX_NESTING)
		return WFAIL(w, -E2BIG, "buckets nested too deep");
	struct bbolt_wbucket_ *parent = w->stack[w->depth - 1];
	int rc = order_check(w, parent, name, nlen);
	if (rc)
		return rc;
	struct bbolt_wbucket_ *b = calloc(1, sizeof(*b));
	if (!b || !(b->name = malloc(nlen))) {
		free(b);
		return WFAIL(w, -ENOMEM, "out of memory");
	}
	memcpy(b->name, name, nlen);
	b->nlen = nlen;
	parent->has_sub = true;
	w->stack[w->depth++] = b;
	return 0;
}

/* Writes out what remains of b: the root page id, or 0 with *inl set (malloc'd
 * inline page of *inl_len bytes) if b is small enough to be inline. */
static int bucket_close(struct bbolt_writer *w, struct bbolt_wbucket_ *b, bool may_inline,
                        uint64_t *root, uint8_t **inl, size_t *inl_len)
{
	*root = 0;
	*inl = NULL;
	for (int level = 0; level < BBOLT_MAX_DEPTH; level++) {
		struct bbolt_wnode_ *n = &b->lv[level];
		if (n->pages == 0) {
			/* Nothing went up from here: this node is the root. */
			if (level == 0 && may_inline && !b->has_sub &&
			    node_size(n) <= w->page_size / 4) {
				*inl_len = node_size(n);
				*inl = calloc(1, *inl_len);
				if (!*inl)
					return WFAIL(w, -ENOMEM, "out of memory");
				node_render(n, true, 0, *inl, *inl_len, w->page_size);
				return 0;
			}
			return node_flush(w, b, level, root);
		}
		if (n->count > 0) {
			int rc = node_flush(w, b, level, NULL);
			if (rc)
				return rc;
		}
	}
	return WFAIL(w, -E2BIG, "tree too deep");
}

int bbolt_writer_end_bucket(struct bbolt_writer *w, uint64_t sequence)
{
	if (w->error)
		return w->error;
	if (w->depth < 2)
		return WFAIL(w, -EINVAL, "end_bucket without begin_bucket");
	struct bbolt_wbucket_ *b = w->stack[w->depth - 1];
	uint64_t root;
	uint8_t *inl;
	size_t inl_len = 0;
	int rc = bucket_close(w, b, w->allow_inline, &root, &inl, &inl_len);
	if (rc)
		return rc;
	uint8_t *val = calloc(1, BBOLT_BUCKET_HEADER + inl_len);
	if (!val) {
		free(inl);
		return WFAIL(w, -ENOMEM, "out of memory");
	}
	put64(val, root);
	put64(val + 8, sequence);
	if (inl)
		memcpy(val + BBOLT_BUCKET_HEADER, inl, inl_len);
	free(inl);
	w->depth--;
	struct bbolt_wbucket_ *parent = w->stack[w->depth - 1];
	rc = node_add_at(w, parent, 0, BBOLT_LEAF_BUCKET, b->name, b->nlen, val,
	                 BBOLT_BUCKET_HEADER + inl_len, 0);
	free(val);
	wbucket_free(b);
	w->stack[w->depth] = NULL;
	return rc;
}

int bbolt_writer_finish(struct bbolt_writer *w, uint64_t txid)
{
	if (w->error)
		return w->error;
	if (w->depth != 1)
		return WFAIL(w, -EINVAL, "%d bucket(s) still open", w->depth - 1);
	if (txid < 1)
		return WFAIL(w, -EINVAL, "txid must be at least 1");
	uint64_t root;
	uint8_t *inl;
	size_t inl_len;
	int rc = bucket_close(w, w->stack[0], false, &root, &inl, &inl_len);
	if (rc)
		return rc;
	uint8_t *page = calloc(1, w->page_size);
	if (!page)
		return WFAIL(w, -ENOMEM, "out of memory");
	/* An empty freelist page. */
	uint64_t freelist = w->next_pgid++;
	put64(page + PH_ID, freelist);
	put16(page + PH_FLAGS, BBOLT_FLAG_FREELIST);
	rc = out_write(w, page, w->page_size, freelist * w->page_size);
	for (int i = 0; i < 2 && rc == 0; i++) {
		memset(page, 0, w->page_size);
		put64(page + PH_ID, (uint64_t)i);
		put16(page + PH_FLAGS, BBOLT_FLAG_META);
		uint8_t *m = page + BBOLT_PAGE_HEADER;
		put32(m + M_MAGIC, BBOLT_MAGIC);
		put32(m + M_VERSION, BBOLT_VERSION);
		put32(m + M_PAGESIZE, w->page_size);
		put32(m + M_FLAGS, 0);
		put64(m + M_ROOT, root);
		put64(m + M_SEQUENCE, 0);
		put64(m + M_FREELIST, freelist);
		put64(m + M_PGID, w->next_pgid);
		put64(m + M_TXID, txid - (uint64_t)i);
		put64(m + M_CHECKSUM, fnv1a64(m, M_CHECKSUM));
		rc = out_write(w, page, w->page_size, (uint64_t)i * w->page_size);
	}
	free(page);
	wbucket_free(w->stack[0]);
	w->stack[0] = NULL;
	w->depth = 0;
	if (rc == 0)
		w->error = -EALREADY; /* finished: no more puts */
	return rc;
}

int bbolt_writer_append_trailer(struct bbolt_writer *w)
{
	if (w->error != -EALREADY)
		return w->error ? w->error : WFAIL(w, -EINVAL, "not finished");
	if (w->fd >= 0)
		return bbolt_append_trailer_fd(w->fd);
	uint8_t sum[BBOLT_SHA256_LEN];
	bbolt_sha256(w->buf, w->buf_len, sum);
	int rc = out_write(w, sum, sizeof(sum), w->buf_len);
	if (rc == 0)
		w->error = -EALREADY;
	return rc;
}
