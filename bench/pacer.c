/* pacer.c - --rate as a token bucket refilled every interval_ns and
 * holding BB_PACER_BURST_NS worth of starts (at least one). */
#include "pacer.h"

bool bb_pacer_take(struct bb_pacer *p, double now_ns)
{
	if (p->interval_ns <= 0)
		return true;
	double tokens = BB_PACER_BURST_NS / p->interval_ns;
	if (tokens < 1)
		tokens = 1;
	/* a full bucket: next_ns lies (tokens - 1) intervals in the past */
	double full = now_ns - (tokens - 1) * p->interval_ns;
	if (p->next_ns < full)
		p->next_ns = full;
	if (now_ns < p->next_ns)
		return false;
	p->next_ns += p->interval_ns;
	return true;
}
