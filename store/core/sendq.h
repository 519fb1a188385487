/* sendq.h - a stream's outgoing messages, first in first out, where a
 * message may travel inside an unsent earlier one of the same key.
 *
 * Merging is for protobuf messages made of a prefix of singular fields and
 * a body of repeated-field records (a WatchResponse: header and watch_id,
 * then its events). B merged into A becomes B's prefix, A's body, B's
 * body: what a reader gets from A then B, in one message, with B's
 * singular fields. A message merges only into the newest queued message of
 * its key, only if nothing unmergeable was queued since (an unmergeable
 * message keeps its place between everything queued before and after it),
 * and only while the result stays within the caller's size limit. So the
 * records of one key keep their order, and no record moves past an
 * unmergeable message.
 *
 * Pure: no threads, no I/O; the owner serializes the calls. */
#ifndef BOLLARD_CORE_SENDQ_H
#define BOLLARD_CORE_SENDQ_H

#include <stddef.h>
#include <stdint.h>

struct sendq_msg {
	struct sendq_msg *next;
	uint8_t *data; /* malloc'ed, or NULL (a message the owner describes) */
	size_t len;
	size_t cap;    /* bytes allocated at data (>= len; 0 = len) */
	size_t prefix; /* mergeable when > 0: data[0, prefix) is the prefix */
	int64_t key;
};

struct sendq {
	struct sendq_msg *head, *tail;
	size_t n;     /* messages queued */
	size_t bytes; /* their lengths, summed */
	/* The newest mergeable message of each key since the last
	 * unmergeable one: open addressing by key, linear probing. */
	struct sendq_msg **tab;
	size_t tab_cap, tab_n;
	uint64_t merged; /* messages merged into earlier ones */
};

void sendq_init(struct sendq *q);
/* Free the index; the messages still queued are the owner's (pop them). */
void sendq_fini(struct sendq *q);

enum { SENDQ_QUEUED = 0, SENDQ_MERGED = 1 };

/* Queue m, or merge it into the newest queued message of its key if m is
 * mergeable and the merged length would not exceed max_merged. Returns
 * SENDQ_QUEUED (m belongs to the queue until popped) or SENDQ_MERGED
 * (m->data was consumed and set to NULL; m itself is still the caller's).
 * Never fails: without memory to merge or index, m is simply queued. */
int sendq_push(struct sendq *q, struct sendq_msg *m, size_t max_merged);

/* The oldest message (now the caller's), or NULL. */
struct sendq_msg *sendq_pop(struct sendq *q);

#endif
