/* duration.h - Go-style durations, as etcd's flags take them. */
#ifndef BOLLARD_CORE_DURATION_H
#define BOLLARD_CORE_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Parse a Go duration ("5m", "1h30m", "300ms", "1.5h", "0") into
 * milliseconds (rounded). 0, or -1 with why set in Go's words ("time:
 * invalid duration ...", "time: missing unit ...", "time: unknown unit ..."). */
int duration_parse_ms(const char *s, uint64_t *ms, char *why, size_t whylen);

#endif
