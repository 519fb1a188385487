/* log.c - etcd-like log lines on stderr (see log.h). */
#include "node/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* The process-wide threshold: written once at start-up, read everywhere. */
static volatile int blog_threshold = BLOG_INFO;

void blog_set_level(int level)
{
	blog_threshold = level;
}

int blog_level(void)
{
	return blog_threshold;
}

int blog_parse_level(const char *s)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

void blog(int level, const char *component, const char *fmt, ...)
{
	static const char letters[] = "DIWEF";
	char line[1024];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int off;

	if (level < blog_threshold)
		return;
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	off = (int)strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	off += snprintf(line + off, sizeof(line) - (size_t)off, ".%06ld %c | %s: ",
	                (long)tv.tv_usec, letters[level < 0 ? 0 : level > 4 ? 4 : level],
	                component);
	va_start(ap, fmt);
	vsnprintf(line + off, sizeof(line) - (size_t)off, fmt, ap);
	va_end(ap);
	/* One write per line so lines of different threads do not interleave. */
	fprintf(stderr, "%s\n", line);
}
