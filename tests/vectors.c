/* tests/vectors.c: the configurations of gptq-vectors/vectors.json. */
#include "vectors.h"

#include <stdio.h>
#include <stdlib.h>

float *vectors_load(gptq_safetensors *st, const char *name, int64_t numel)
{
    const gptq_st_tensor *t = gptq_safetensors_find(st, name);
    if (!t || t->numel != numel) {
        fprintf(stderr, "FAIL: tensor %s missing or not %lld elements\n", name, (long long)numel);
        return NULL;
    }
    float *x = malloc((size_t)numel * sizeof *x);
    if (!x || gptq_st_tensor_to_f32(t, x, (size_t)numel) != GPTQ_OK) {
        fprintf(stderr, "FAIL: tensor %s: %s\n", name, x ? gptq_errmsg() : "out of memory");
        free(x);
        return NULL;
    }
    return x;
}

#define CFG(b, g, ao, sg, s, bs)                                                                  \
    {.bits = b, .group_size = g, .act_order = ao, .static_groups = sg, .sym = s, .damp = 0.01f,     \
     .block_size = bs, .mse = 0, .v1_zeros = 0, .fp16_scales = 0}

const vector_config vector_configs[] = {
    {"w4gch", CFG(4, -1, 0, 0, 0, 128)},
    {"w4g128", CFG(4, 128, 0, 0, 0, 128)},
    {"w3g128", CFG(3, 128, 0, 0, 0, 128)},
    {"w2g64", CFG(2, 64, 0, 0, 0, 128)},
    {"w8gch", CFG(8, -1, 0, 0, 0, 128)},
    {"w4g32", CFG(4, 32, 0, 0, 0, 128)},
    {"w4g128_act_order", CFG(4, 128, 1, 0, 0, 128)},
    {"w4g128_act_order_static_groups", CFG(4, 128, 1, 1, 0, 128)},
    {"w3g128_sym", CFG(3, 128, 0, 0, 1, 128)},
    {"w4g128_b32", CFG(4, 128, 0, 0, 0, 32)},
};
const int n_vector_configs = sizeof vector_configs / sizeof vector_configs[0];
const char *const vector_layers[2] = {"layer1.q_proj", "layer1.down_proj"};
