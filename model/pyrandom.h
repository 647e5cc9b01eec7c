/* model/pyrandom.h: Python's `random` module, the part the reference GPTQ
 * code uses to draw calibration windows (random.seed(n); random.randint(a, b)):
 * MT19937 seeded by init_by_array, integers by rejection from getrandbits.
 * With it our windows for a seed are the reference's windows for that seed. */
#ifndef GPTQ_MODEL_PYRANDOM_H
#define GPTQ_MODEL_PYRANDOM_H

#include <stdint.h>

typedef struct gptq_pyrandom {
    uint32_t mt[624];
    int index;
} gptq_pyrandom;

/* random.seed(seed) for a non-negative integer seed. */
void gptq_pyrandom_seed(gptq_pyrandom *r, uint64_t seed);
/* random.randint(a, b): uniform in [a, b], a <= b, b - a < 2^32. */
int64_t gptq_pyrandom_randint(gptq_pyrandom *r, int64_t a, int64_t b);

#endif
