/* log.h - etcd-like log lines on stderr for the store ("2024-05-01
 * 12:00:00.000000 I | node: message"). One global threshold per process is
 * the only shared state: set it once at start-up. */
#ifndef BOLLARD_NODE_LOG_H
#define BOLLARD_NODE_LOG_H

enum { BLOG_DEBUG = 0, BLOG_INFO = 1, BLOG_WARN = 2, BLOG_ERROR = 3, BLOG_FATAL = 4 };

/* Lines below level are dropped. Default BLOG_INFO. */
void blog_set_level(int level);
int blog_level(void);

/* Parse "debug", "info", "warn", "error"; -1 if unknown. */
int blog_parse_level(const char *s);

void blog(int level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
