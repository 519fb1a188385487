/* test_pacer.c - --rate's pacing on a fake clock. Ends with "N passed, N
 * failed". */
#include <stdio.h>

#include "pacer.h"

static int passed, failed;

static void check(const char *what, long got, long lo, long hi)
{
	if (got >= lo && got <= hi) {
		passed++;
		return;
	}
	failed++;
	printf("FAIL %s: got %ld, want %ld..%ld\n", what, got, lo, hi);
}

/* Starts made by a worker that wakes every wake_ns for span_ns and starts
 * as many calls as the pacer lets it at each wake-up. */
static long starts(struct bb_pacer *p, double wake_ns, double span_ns)
{
	long n = 0;
	for (double t = 0; t < span_ns; t += wake_ns)
		while (bb_pacer_take(p, t))
			n++;
	return n;
}

int main(void)
{
	/* 1000/s, woken often: one start per millisecond */
	struct bb_pacer p = {1e6, 0};
	check("1000/s over 1 s, woken every 10 us", starts(&p, 1e4, 1e9), 1000, 1001);
	/* 10,000/s per worker, woken once a millisecond (as grpc's completion
	 * queue wakes it): still 10,000/s; before, 1 start per wake-up */
	p = (struct bb_pacer){1e5, 0};
	check("10000/s over 1 s, woken every 1 ms", starts(&p, 1e6, 1e9), 9990, 10051);
	/* after a second without starts: at most the 5 ms burst at once */
	long first = 0;
	while (bb_pacer_take(&p, 2e9))
		first++;
	check("burst after idling, 10000/s", first, 50, 50);
	/* slow rates: one start after idling, the next an interval later */
	p = (struct bb_pacer){1e8, 0};
	check("10/s first", bb_pacer_take(&p, 5e9), 1, 1);
	check("10/s no second at once", bb_pacer_take(&p, 5e9), 0, 0);
	check("10/s not before the interval", bb_pacer_take(&p, 5e9 + 9e7), 0, 0);
	check("10/s after the interval", bb_pacer_take(&p, 5e9 + 1e8), 1, 1);
	/* no limit */
	p = (struct bb_pacer){0, 0};
	check("unlimited", bb_pacer_take(&p, 0) && bb_pacer_take(&p, 0), 1, 1);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
