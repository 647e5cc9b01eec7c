/* tests/vectors.h: the fixture's single-layer GPTQ test vectors
 * (gptq-vectors/vectors.safetensors + vectors.json), shared by the test and
 * the layer-error benchmark. */
#ifndef GPTQ_TESTS_VECTORS_H
#define GPTQ_TESTS_VECTORS_H

#include "gptq/quant.h"
#include "model/safetensors.h"

typedef struct vector_config {
    const char *tag;
    gptq_quant_config cfg; /* reference semantics: fp32 scales, zero may be 0 */
} vector_config;

/* The ten configurations of vectors.json. */
extern const vector_config vector_configs[];
extern const int n_vector_configs;
extern const char *const vector_layers[2];

/* Tensor `name` of vectors.safetensors as a new float32 array of numel
 * values (caller frees), or NULL with the reason on stderr (missing, other
 * size, out of memory). */
float *vectors_load(gptq_safetensors *st, const char *name, int64_t numel);

#endif
