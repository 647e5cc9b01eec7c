/* bench/random_model.h: a random-weight Llama-shaped HF folder (config.json
 * + F16 model.safetensors) for the benchmarks that need a model of a given
 * shape without downloading one. */
#ifndef GPTQ_BENCH_RANDOM_MODEL_H
#define GPTQ_BENCH_RANDOM_MODEL_H

#include <stddef.h>

/* Write the folder `dir` (existing); heads of 64 dims, `gqa` query heads
 * per kv head. *f32_bytes: the parameters' size in float32. Returns 0 or -1
 * (gptq_errmsg() says why). */
int random_model_write(const char *dir, int layers, int hidden, int inter, int vocab, int gqa,
                       size_t *f32_bytes);

#endif
