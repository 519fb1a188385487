/* fuzz.h - what a fuzz target provides: the libFuzzer entry point, and for
 * replay.c (the driver of the default build) its seeds and mutations. */
#ifndef BOLLARD_TESTS_FUZZ_H
#define BOLLARD_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Seeds 0 .. FUZZ_NSEEDS-1 (FUZZ_NSEEDS: the target's count); *out is
 * malloc'ed. 0 or -1. */
extern const int FUZZ_NSEEDS;
int fuzz_seed(int which, uint8_t **out, size_t *len);

/* Mutations run per seed by replay.c. */
extern const int FUZZ_MUTATIONS;
/* Mutate buf (len bytes, a copy of seed s) in place for round i with the
 * xorshift state *rng; returns the length to run (a truncation may be
 * shorter). */
size_t fuzz_mutate(int s, int i, uint8_t *buf, size_t len, uint64_t *rng);

#endif
