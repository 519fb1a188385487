/* pacer.h - --rate: when a worker may start its next call. Pure: the
 * caller passes the time. */
#ifndef BOLLARD_BENCH_PACER_H
#define BOLLARD_BENCH_PACER_H

#include <stdbool.h>

/* Starts that fell due while the worker waited (its wake-ups come a
 * millisecond or so apart, several intervals at high rates) are still
 * made, up to this much time's worth: no larger burst after idling. */
#define BB_PACER_BURST_NS 5e6

struct bb_pacer {
	double interval_ns; /* between starts; <= 0: no limit */
	double next_ns;     /* when the next start falls due */
};

/* May a call start at now_ns? If so, it is counted. */
bool bb_pacer_take(struct bb_pacer *p, double now_ns);

#endif
