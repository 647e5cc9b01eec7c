/* common/dtype.h: element types of stored tensors and their conversion to
 * float32. IEEE binary16 and bfloat16 conversions round to nearest even,
 * as torch's .half() / .bfloat16() do. */
#ifndef GPTQ_COMMON_DTYPE_H
#define GPTQ_COMMON_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum gptq_dtype {
    GPTQ_DT_F32,
    GPTQ_DT_F16,
    GPTQ_DT_BF16,
    GPTQ_DT_I32,
    GPTQ_DT_I64,
    GPTQ_DT_I16,
    GPTQ_DT_I8,
    GPTQ_DT_U8,
    GPTQ_DT_BOOL,
    GPTQ_DT_F64,
    GPTQ_DT_COUNT
} gptq_dtype;

/* Bytes per element; names as safetensors spells them ("F16", "BF16", ...). */
size_t gptq_dtype_size(gptq_dtype dt);
const char *gptq_dtype_name(gptq_dtype dt);
/* Returns 0 and sets *dt if `name` is a known safetensors dtype, else -1. */
int gptq_dtype_parse(const char *name, gptq_dtype *dt);

float gptq_f16_to_f32(uint16_t h);
uint16_t gptq_f32_to_f16(float f);
float gptq_bf16_to_f32(uint16_t b);
uint16_t gptq_f32_to_bf16(float f);

/* Round a float32 through fp16 and back (what storing in fp16 does). */
static inline float gptq_round_f16(float f) { return gptq_f16_to_f32(gptq_f32_to_f16(f)); }

/* Convert n elements of dtype `dt` at `src` to float32 at `dst`. Only the
 * float types and I32 are convertible; returns -1 for the others. */
int gptq_dtype_to_f32(gptq_dtype dt, const void *src, float *dst, size_t n);

#endif
