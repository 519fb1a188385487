/* duration.c - Go's time.ParseDuration, which etcd's flags and options use
 * ("5m", "1h30m", "300ms", "1.5h"), to milliseconds, with Go's messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/duration.h"

int duration_parse_ms(const char *s, uint64_t *ms, char *why, size_t whylen)
{
	static const struct { const char *u; double ms; } units[] = {
		{"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"\xce\xbcs", 1e-3},
		{"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3},
	};
	const char *p = s;
	double total = 0;

	if (strcmp(s, "0") == 0) {
		*ms = 0;
		return 0;
	}
	if (*p == '+')
		p++;
	if (*p == '\0' || *p == '-')
		goto invalid;
	while (*p) {
		char *end;
		double v;
		size_t ul = 0;
		const char *u;
		if ((*p < '0' || *p > '9') && *p != '.')
			goto invalid;
		v = strtod(p, &end);
		if (end == p)
			goto invalid;
		u = end;
		while (u[ul] && !(u[ul] >= '0' && u[ul] <= '9') && u[ul] != '.')
			ul++;
		if (ul == 0) {
			snprintf(why, whylen, "time: missing unit in duration \"%s\"", s);
			return -1;
		}
		size_t i;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (strlen(units[i].u) == ul && memcmp(units[i].u, u, ul) == 0)
				break;
		if (i == sizeof(units) / sizeof(units[0])) {
			snprintf(why, whylen, "time: unknown unit \"%.*s\" in duration \"%s\"", (int)ul, u,
			         s);
			return -1;
		}
		total += v * units[i].ms;
		p = u + ul;
	}
	if (!(total < 9.2e15))
		goto invalid;
	*ms = (uint64_t)(total + 0.5);
	return 0;
invalid:
	snprintf(why, whylen, "time: invalid duration \"%s\"", s);
	return -1;
}
