/* bench/decode.c: decode speed on the CPU, float weights against 4-bit
 * (RTN g128, packed: decode speed does not depend on how the codes were
 * chosen), batch 1 and 8, with a KV cache: on the fixture model and on a
 * one-layer random model of Llama-7B's shape (hidden 4096, intermediate
 * 11008, 32 heads of 128 dims, no GQA; vocabulary 1024 so that the layer,
 * not the head, is what is measured).
 * Usage: decode [MODEL_DIR]   (default models/tiny-llama) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/calib.h"
#include "model/llama.h"
#include "random_model.h"
#include "benchutil.h"

/* Decode `steps` tokens for `batch` sequences after a 16-token prompt;
 * returns tokens per second over the decode steps (all sequences). */
static double decode_rate(const gptq_model *m, int batch, int steps)
{
    const gptq_model_config *c = gptq_model_get_config(m);
    gptq_kv *kv;
    if (gptq_kv_create(m, batch, 16 + steps + 1, &kv))
        return -1;
    int32_t *ids = malloc((size_t)batch * 16 * sizeof *ids);
    float *logits = malloc((size_t)batch * c->vocab_size * sizeof *logits);
    for (int i = 0; i < batch * 16; i++)
        ids[i] = (i * 37 + 11) % c->vocab_size;
    double rate = -1;
    if (gptq_model_forward(m, kv, ids, batch, 16, NULL, NULL, GPTQ_FWD_LAST_ONLY, logits))
        goto done;
    double t0 = now();
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < batch; b++) { /* greedy */
            const float *row = logits + (size_t)b * c->vocab_size;
            int best = 0;
            for (int v = 1; v < c->vocab_size; v++)
                best = row[v] > row[best] ? v : best;
            ids[b] = best;
        }
        if (gptq_model_forward(m, kv, ids, batch, 1, NULL, NULL, GPTQ_FWD_LAST_ONLY, logits))
            goto done;
    }
    rate = (double)batch * steps / (now() - t0);
done:
    gptq_kv_free(kv);
    free(ids);
    free(logits);
    return rate;
}

static int bench_model(const char *what, const char *dir, int steps)
{
    gptq_model *f, *q;
    if (gptq_model_load(dir, &f) || gptq_model_clone(f, &q)) {
        fprintf(stderr, "decode: %s\n", gptq_errmsg());
        return 1;
    }
    gptq_quant_config cfg;
    gptq_quant_config_default(&cfg);
    if (gptq_calib_rtn(q, &cfg, 0, NULL, NULL)) {
        fprintf(stderr, "decode: %s\n", gptq_errmsg());
        return 1;
    }
    for (int batch = 1; batch <= 8; batch *= 8) {
        double rf = decode_rate(f, batch, steps), rq = decode_rate(q, batch, steps);
        printf("%-34s batch %d: float32 %8.1f tok/s (%6.0f MB weights) | 4-bit g128 %8.1f tok/s "
               "(%6.0f MB) | x%.2f\n",
               what, batch, rf, gptq_model_bytes(f) / 1e6, rq, gptq_model_bytes(q) / 1e6, rq / rf);
    }
    gptq_model_free(f);
    gptq_model_free(q);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "models/tiny-llama";
    if (bench_model("tiny-llama (fixture)", dir, 128))
        return 1;
    char tmpl[] = "/tmp/gptqd-decode-XXXXXX";
    char *rdir = mkdtemp(tmpl);
    size_t bytes;
    if (!rdir || random_model_write(rdir, 1, 4096, 11008, 1024, 1, &bytes)) {
        fprintf(stderr, "decode: cannot write the random model: %s\n", gptq_errmsg());
        return 1;
    }
    int rc = bench_model("Llama-7B-shaped layer (1 layer)", rdir, 16);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", rdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", rdir);
    return rc;
}
