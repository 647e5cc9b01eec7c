/* tests/test_pack.c: the GPTQ v1 checkpoint layout. Known words are built
 * here by a transcription of AutoGPTQ's QuantLinear.pack loops (per word for
 * 2/4/8 bits, the 3-word/32-code dance for 3 bits) — an independent
 * implementation of the layout, not our bit-stream helper. */
#include "common/dtype.h"
#include "gptq/quant.h"
#include "testutil.h"

/* AutoGPTQ's loop: intweight [cols][rows] -> qweight [cols*bits/32][rows]. */
static void autogptq_pack(const uint32_t *intweight, int cols, int rows, int bits, uint32_t *qw)
{
    int qrows = cols * bits / 32;
    memset(qw, 0, (size_t)qrows * rows * 4);
    int i = 0, row = 0;
#define IW(k) intweight[(size_t)(k) * rows + x]
    while (row < qrows) {
        for (int x = 0; x < rows; x++) {
            int ii = i, rr = row;
            if (bits == 2 || bits == 4 || bits == 8) {
                for (int j = ii; j < ii + 32 / bits; j++)
                    qw[(size_t)rr * rows + x] |= IW(j) << (bits * (j - ii));
            } else {
                for (int j = ii; j < ii + 10; j++)
                    qw[(size_t)rr * rows + x] |= IW(j) << (3 * (j - ii));
                ii += 10;
                qw[(size_t)rr * rows + x] |= IW(ii) << 30;
                rr++;
                qw[(size_t)rr * rows + x] |= (IW(ii) >> 2) & 1;
                ii++;
                for (int j = ii; j < ii + 10; j++)
                    qw[(size_t)rr * rows + x] |= IW(j) << (3 * (j - ii) + 1);
                ii += 10;
                qw[(size_t)rr * rows + x] |= IW(ii) << 31;
                rr++;
                qw[(size_t)rr * rows + x] |= (IW(ii) >> 1) & 0x3;
                ii++;
                for (int j = ii; j < ii + 10; j++)
                    qw[(size_t)rr * rows + x] |= IW(j) << (3 * (j - ii) + 2);
            }
        }
        if (bits == 3) {
            i += 32;
            row += 3;
        } else {
            i += 32 / bits;
            row += 1;
        }
    }
#undef IW
}

static void random_result(gptq_quant_result *r, int rows, int cols, int bits, int gs,
                          int shuffle_gidx, uint64_t *rng)
{
    memset(r, 0, sizeof *r);
    r->rows = rows, r->cols = cols, r->bits = bits;
    r->groups = gs < 0 ? 1 : (cols + gs - 1) / gs;
    r->codes = malloc((size_t)rows * cols);
    r->scales = malloc((size_t)r->groups * rows * 4);
    r->zeros = malloc((size_t)r->groups * rows * 4);
    r->g_idx = malloc((size_t)cols * 4);
    r->Q = malloc((size_t)rows * cols * 4);
    int maxq = (1 << bits) - 1;
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        r->codes[i] = (uint8_t)(test_rand_u64(rng) % (uint64_t)(maxq + 1));
    for (size_t i = 0; i < (size_t)r->groups * rows; i++) {
        r->scales[i] = gptq_round_f16((float)(0.001 + 0.05 * test_rand_uniform(rng)));
        r->zeros[i] = 1 + (int32_t)(test_rand_u64(rng) % (uint64_t)(maxq + 1)); /* 1..2^bits */
    }
    for (int c = 0; c < cols; c++)
        r->g_idx[c] = gs < 0 ? 0 : c / gs;
    if (shuffle_gidx)
        for (int c = cols - 1; c > 0; c--) {
            int j = (int)(test_rand_u64(rng) % (uint64_t)(c + 1));
            int32_t t = r->g_idx[c];
            r->g_idx[c] = r->g_idx[j];
            r->g_idx[j] = t;
        }
}

static void test_against_autogptq(int bits, int rows, int cols, int gs, int shuffle)
{
    uint64_t rng = 1234 + (uint64_t)bits * 7 + (uint64_t)gs;
    gptq_quant_result r;
    random_result(&r, rows, cols, bits, gs, shuffle, &rng);
    gptq_packed p;
    CHECK_OK(gptq_pack(&r, &p));
    uint32_t *intweight = malloc((size_t)cols * rows * 4);
    for (int x = 0; x < rows; x++)
        for (int c = 0; c < cols; c++)
            intweight[(size_t)c * rows + x] = r.codes[(size_t)x * cols + c];
    uint32_t *expect = malloc((size_t)cols * bits / 32 * rows * 4);
    autogptq_pack(intweight, cols, rows, bits, expect);
    size_t nw = (size_t)cols * bits / 32 * rows, bad = 0;
    for (size_t i = 0; i < nw; i++)
        bad += (uint32_t)p.qweight[i] != expect[i];
    CHECK(bad == 0, "bits %d [%d,%d]: %zu of %zu qweight words differ from AutoGPTQ's layout", bits,
          rows, cols, bad, nw);

    /* qzeros: zero-1 packed along rows, same loops with rows as the stream */
    uint32_t *zint = malloc((size_t)rows * r.groups * 4), *zexp = malloc((size_t)rows * r.groups * 4);
    for (int g = 0; g < r.groups; g++)
        for (int x = 0; x < rows; x++) /* as [rows][groups] so the loop packs along rows */
            zint[(size_t)x * r.groups + g] = (uint32_t)(r.zeros[(size_t)g * rows + x] - 1) & ((1u << bits) - 1);
    autogptq_pack(zint, rows, r.groups, bits, zexp); /* -> [rows*bits/32][groups] */
    size_t zw = (size_t)rows * bits / 32;
    bad = 0;
    for (int g = 0; g < r.groups; g++)
        for (size_t w = 0; w < zw; w++)
            bad += (uint32_t)p.qzeros[(size_t)g * zw + w] != zexp[w * r.groups + g];
    CHECK(bad == 0, "bits %d: %zu qzeros words differ", bits, bad);

    /* round trip: unpack and dequantize */
    uint8_t *codes = malloc((size_t)rows * cols);
    int32_t *zeros = malloc((size_t)r.groups * rows * 4);
    float *W = malloc((size_t)rows * cols * 4);
    CHECK_OK(gptq_packed_unpack(&p, codes, zeros));
    CHECK(memcmp(codes, r.codes, (size_t)rows * cols) == 0, "bits %d: codes do not round-trip", bits);
    CHECK(memcmp(zeros, r.zeros, (size_t)r.groups * rows * 4) == 0, "bits %d: zeros do not round-trip", bits);
    CHECK_OK(gptq_packed_dequantize(&p, W));
    size_t wrong = 0;
    for (int x = 0; x < rows; x++)
        for (int c = 0; c < cols; c++) {
            size_t gi = (size_t)r.g_idx[c] * rows + x;
            float want = r.scales[gi] * (float)((int)r.codes[(size_t)x * cols + c] - r.zeros[gi]);
            wrong += W[(size_t)x * cols + c] != want;
        }
    CHECK(wrong == 0, "bits %d: %zu dequantized weights differ", bits, wrong);
    free(codes), free(zeros), free(W), free(zint), free(zexp), free(intweight), free(expect);
    gptq_packed_free(&p);
    gptq_quant_result_free(&r);
}

static void test_known_words(void)
{
    /* 4-bit: input column c of one output row holds code c%16 -> 0x76543210, 0xfedcba98 */
    gptq_quant_result r;
    uint64_t rng = 1;
    random_result(&r, 8, 16, 4, -1, 0, &rng);
    for (int x = 0; x < 8; x++)
        for (int c = 0; c < 16; c++)
            r.codes[x * 16 + c] = (uint8_t)c;
    for (int x = 0; x < 8; x++)
        r.zeros[x] = 1 + x; /* stored 0..7 along the 8 rows of one word */
    gptq_packed p;
    CHECK_OK(gptq_pack(&r, &p));
    CHECK((uint32_t)p.qweight[0] == 0x76543210u, "word0 = %08x", (uint32_t)p.qweight[0]);
    CHECK((uint32_t)p.qweight[8] == 0xfedcba98u, "word1 = %08x", (uint32_t)p.qweight[8]);
    CHECK((uint32_t)p.qzeros[0] == 0x76543210u, "qzeros = %08x", (uint32_t)p.qzeros[0]);
    gptq_packed_free(&p);
    gptq_quant_result_free(&r);

    /* 3-bit: all codes 7 except code 10 = 0b101, code 21 = 0b011 */
    random_result(&r, 32, 32, 3, -1, 0, &rng);
    for (int c = 0; c < 32; c++)
        r.codes[c] = 0;
    r.codes[10] = 5;
    r.codes[21] = 3;
    CHECK_OK(gptq_pack(&r, &p));
    /* code 10 at stream bit 30: bits 30,31 of word 0 = 01, bit 0 of word 1 = 1.
     * code 21 at stream bit 63: bit 31 of word 1 = 1, bits 0-1 of word 2 = 01. */
    CHECK((uint32_t)p.qweight[0] == 0x40000000u, "3-bit word0 = %08x", (uint32_t)p.qweight[0]);
    CHECK((uint32_t)p.qweight[32] == 0x80000001u, "3-bit word1 = %08x", (uint32_t)p.qweight[32]);
    CHECK((uint32_t)p.qweight[64] == 0x00000001u, "3-bit word2 = %08x", (uint32_t)p.qweight[64]);
    gptq_packed_free(&p);
    gptq_quant_result_free(&r);
}

static void test_bad_arguments(void)
{
    gptq_quant_result r;
    uint64_t rng = 5;
    gptq_packed p;
    random_result(&r, 8, 16, 4, 8, 0, &rng);
    r.zeros[3] = 0; /* asymmetric zero 0: not storable as zero-1 */
    CHECK(gptq_pack(&r, &p) == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "zero"),
          "zero 0 must be refused: %s", gptq_errmsg());
    r.zeros[3] = 1;
    r.g_idx[2] = 9;
    CHECK(gptq_pack(&r, &p) == GPTQ_ERR_ARG && strstr(gptq_errmsg(), "g_idx"), "g_idx: %s", gptq_errmsg());
    gptq_quant_result_free(&r);
    random_result(&r, 8, 20, 3, -1, 0, &rng); /* 20 inputs × 3 bits is not whole words */
    CHECK(gptq_pack(&r, &p) == GPTQ_ERR_ARG, "3-bit with 20 columns must be refused");
    gptq_quant_result_free(&r);
    random_result(&r, 4, 16, 4, -1, 0, &rng); /* 4 outputs × 4 bits: qzeros not whole words */
    CHECK(gptq_pack(&r, &p) == GPTQ_ERR_ARG, "4 output rows at 4 bits must be refused");
    gptq_quant_result_free(&r);
    CHECK(gptq_pack_check(32, 32, 5) == GPTQ_ERR_ARG, "5 bits must be refused");
}

/* qzeros between v1 (zero-1) and gptq_v2 (zero): each value moves by one,
 * checked value by value against plain integer arithmetic; the values the
 * other layout cannot hold (a v2 zero of 0, a v1 stored 2^bits-1) are
 * refused and leave the words as they were. */
static void test_v2_zeros(int bits)
{
    enum { GROUPS = 3, ROWS = 96 };
    const int words = ROWS * bits / 32, maxq = (1 << bits) - 1;
    int32_t qz[GROUPS * 24], copy[GROUPS * 24];
    uint32_t want[GROUPS][ROWS];
    memset(qz, 0, sizeof qz);
    for (int g = 0; g < GROUPS; g++)
        for (int r = 0; r < ROWS; r++) {
            want[g][r] = (uint32_t)(1 + (g * 7 + r * 5) % maxq); /* v2 zeros in [1, maxq] */
            gptq_bits_put(qz + g * words, 1, bits, (size_t)r, want[g][r]);
        }
    CHECK_OK(gptq_qzeros_v2_to_v1(qz, GROUPS, ROWS, bits));
    int bad = 0;
    for (int g = 0; g < GROUPS; g++)
        for (int r = 0; r < ROWS; r++)
            bad += gptq_bits_get(qz + g * words, 1, bits, (size_t)r) != want[g][r] - 1;
    CHECK(bad == 0, "%d-bit v2 -> v1: %d zeros not moved down by one", bits, bad);
    CHECK_OK(gptq_qzeros_v1_to_v2(qz, GROUPS, ROWS, bits));
    for (int g = 0; g < GROUPS; g++)
        for (int r = 0; r < ROWS; r++)
            bad += gptq_bits_get(qz + g * words, 1, bits, (size_t)r) != want[g][r];
    CHECK(bad == 0, "%d-bit v1 -> v2: %d zeros not back", bits, bad);
    gptq_bits_put(qz + 2 * words, 1, bits, 17, 0); /* a zero of 0: no v1 form */
    memcpy(copy, qz, sizeof qz);
    gptq_status st = gptq_qzeros_v2_to_v1(qz, GROUPS, ROWS, bits);
    CHECK(st == GPTQ_ERR_UNSUPPORTED && strstr(gptq_errmsg(), "group 2 row 17") &&
              !memcmp(copy, qz, sizeof qz),
          "%d-bit v2 zero 0: %s '%s'", bits, gptq_status_name(st), gptq_errmsg());
    gptq_bits_put(qz + 2 * words, 1, bits, 17, (uint32_t)maxq); /* v1 stored maxq: zero 2^bits */
    st = gptq_qzeros_v1_to_v2(qz, GROUPS, ROWS, bits);
    CHECK(st == GPTQ_ERR_UNSUPPORTED, "%d-bit v1 stored %d: %s", bits, maxq, gptq_status_name(st));
}

int main(void)
{
    const int bits[] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++) {
        test_against_autogptq(bits[b], 64, 256, -1, 0);
        test_against_autogptq(bits[b], 96, 128, 32, 0);
        test_against_autogptq(bits[b], 32, 96, 32, 1); /* act-order style g_idx */
    }
    test_known_words();
    test_bad_arguments();
    for (int b = 0; b < 4; b++)
        test_v2_zeros(bits[b]);
    return test_result();
}
