/* spool.h - raft's heap, with its large buffers (a full snapshot a leader
 * sends or a follower receives) in unlinked files of a member's directory
 * mapped into memory instead of anonymous memory. */
#ifndef BOLLARD_NODE_SPOOL_H
#define BOLLARD_NODE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Installs the heap with raft_heap_set (once per process: raft's heap is
 * process-wide) and offers dir for spool files; a slot for
 * node_spool_unregister, or -1 (then buffers go to dir's neighbours or to
 * malloc). */
int node_spool_register(const char *dir);
void node_spool_unregister(int slot);

/* An unlinked file in dir, read-write (O_TMPFILE, else a name removed at
 * once); a file descriptor or -errno. */
int node_spool_tmpfile(const char *dir);

/* The first len bytes of file fd mapped read-only behind head writable
 * bytes (head < page size), as one buffer raft takes: *out points to the
 * head, the file's byte 0 is at *out + head, and raft_free(*out) unmaps
 * it. fd may be closed after. 0 or -errno. */
int node_spool_map_file(int fd, size_t len, size_t head, void **out);

/* A buffer from the heap that lives in a file: a new descriptor of that
 * file (whose byte 0 is p[0], to close), else -1. */
int node_spool_file_of(const void *p);

/* Whether p is a buffer of the spool (a mapped file, either kind). */
bool node_spool_holds(const void *p);

/* The pages of spooled buffers dropped from the process (they stay in the
 * files); harmless at any time. Returns how many buffers are spooled. */
size_t node_spool_trim(void);
size_t node_spool_count(void);

/* raft_malloc'd buffers of at least this many bytes go to a file (default
 * NODE_SPOOL_MIN); tests lower it. */
#define NODE_SPOOL_MIN (16u << 20)
void node_spool_set_min(size_t bytes);

#endif
