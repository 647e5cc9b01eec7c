/* tests/test_dtype.c: fp16/bf16 conversions against a reference built from
 * ldexp/frexp in double (a different method from the bit tricks in
 * common/dtype.c). */
#include "common/dtype.h"
#include "testutil.h"

/* fp16 bits -> double by the formula of IEEE 754 binary16. */
static double ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0)
        v = ldexp((double)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexp(1024.0 + m, e - 25);
    return s ? -v : v;
}

/* Nearest fp16 to x (ties to even), by search over all finite patterns. */
static uint16_t ref_to_f16(float x, const double *table)
{
    if (isnan(x))
        return 0x7e00;
    double ax = fabs((double)x);
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    if (ax >= 65520.0)
        return sign | 0x7c00;
    int lo = 0, hi = 0x7bff; /* positive finite patterns are ordered */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (table[mid] <= ax)
            lo = mid;
        else
            hi = mid - 1;
    }
    int best = lo;
    if (lo < 0x7bff) {
        double dlo = ax - table[lo], dhi = table[lo + 1] - ax;
        if (dhi < dlo || (dhi == dlo && (lo & 1)))
            best = lo + 1;
    }
    return (uint16_t)(sign | best);
}

int main(void)
{
    static double table[0x7c00];
    for (int i = 0; i < 0x7c00; i++)
        table[i] = ref_f16((uint16_t)i);
    int bad = 0;
    for (int i = 0; i < 65536; i++) {
        double want = ref_f16((uint16_t)i);
        float got = gptq_f16_to_f32((uint16_t)i);
        if (!(isnan(want) ? isnan(got) : (double)got == want))
            bad++;
    }
    CHECK(bad == 0, "%d fp16 patterns decode wrongly", bad);

    uint64_t rng = 7;
    bad = 0;
    for (int i = 0; i < 2000000; i++) {
        float x;
        if (i < 65536) { /* every fp16 value and the midpoints next to it */
            double v = ref_f16((uint16_t)i);
            if (isnan(v) || isinf(v))
                continue;
            x = (float)v;
            if (i % 3 == 1 && (i & 0x7fff) < 0x7bff)
                x = (float)((v + ref_f16((uint16_t)(i + 1))) / 2); /* exact tie */
        } else {
            uint32_t u = (uint32_t)test_rand_u64(&rng);
            memcpy(&x, &u, 4);
            if (isnan(x))
                continue;
        }
        uint16_t got = gptq_f32_to_f16(x), want = ref_to_f16(x, table);
        if (got != want && bad++ < 5)
            fprintf(stderr, "f32 %a -> f16 %04x, want %04x\n", (double)x, got, want);
    }
    CHECK(bad == 0, "%d float32 values round to the wrong fp16", bad);

    /* bf16: the top 16 bits, rounded to nearest even */
    CHECK(gptq_f32_to_bf16(1.0f) == 0x3f80, "bf16(1)");
    CHECK(gptq_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "tie rounds to even");
    CHECK(gptq_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "above tie rounds up");
    CHECK(gptq_bf16_to_f32(0xc040) == -3.0f, "bf16 -3");

    gptq_dtype dt;
    CHECK(gptq_dtype_parse("BF16", &dt) == 0 && dt == GPTQ_DT_BF16 && gptq_dtype_size(dt) == 2, "BF16");
    CHECK(gptq_dtype_parse("F8_E4M3", &dt) == -1, "unknown dtype must not parse");
    return test_result();
}
