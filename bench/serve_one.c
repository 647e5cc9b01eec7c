/* bench/serve_one.c: one request served on the CPU, timed the way
 * llama.cpp's llama-bench times it, for bench/peer: load a model (a GGUF
 * file, an HF folder or a GPTQ checkpoint), prefill a prompt of N tokens
 * (one forward with a KV cache, logits of the last position only), then
 * decode M tokens at batch 1, greedy, one forward per token.
 *
 * Like llama-bench: the prompt is pseudo-random token ids (the speed does
 * not depend on which), and a warm-up of the same shape runs first (a
 * prefill of N and one decode step, then the cache is emptied), so thread
 * pools, page faults on the cache and the BLAS's buffers are paid before
 * the clock starts. The decode steps follow the prompt (positions N..N+M-1),
 * as llama-bench's `-n M -d N` does.
 *
 * Prints one JSON object on stdout (for the script):
 *   {"layers", "hidden", "vocab", "packed_linears", "weights_bytes",
 *    "load_s", "prefill_tokens", "prefill_tok_s", "decode_tokens",
 *    "decode_tok_s", "load_peak_rss_kb", "rss_after_load_kb", "rss_end_kb",
 *    "peak_rss_kb", "blas_core"}
 * blas_core is OpenBLAS's name for the kernels it ran (kernels/cpu/blas_core.h).
 * peak_rss_kb is this process's VmHWM at the end (bench/peer reads the same
 * figure from /usr/bin/time -v, for both sides); load_peak_rss_kb (VmHWM
 * once loaded), rss_after_load_kb and rss_end_kb (VmRSS) tell a peak
 * reached while loading from one reached while serving.
 * Threads: the CPU backend's, i.e. OpenBLAS's (OPENBLAS_NUM_THREADS) and
 * OpenMP's (OMP_NUM_THREADS); set OMP_WAIT_POLICY=passive (README).
 *
 * Usage: serve_one [--prompt N] [--gen M] [--no-warmup] [--head q8_0] MODEL
 * --head q8_0: the output matrix rounded to Q8_0 for serving, as gptqctl
 * load --head q8_0 does (gptq_model_set_head_grid), included in load_s.
 * Exit: 0 done, 1 error (message on stderr), 2 usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/blas_core.h"
#include "model/llama.h"
#include "benchutil.h"

/* This process's resident memory now (VmRSS) in kB, or -1. */
static long rss_kb(void)
{
    return proc_status_kb("VmRSS");
}

/* Greedy: the id of the largest logit. */
static int32_t argmax(const float *row, int n)
{
    int best = 0;
    for (int v = 1; v < n; v++)
        best = row[v] > row[best] ? v : best;
    return best;
}

/* Prefill ids [n_prompt] into slot 0 of kv (empty), then decode n_gen
 * tokens greedily. Seconds of each phase in *prefill_s, *decode_s. */
static gptq_status serve(const gptq_model *m, gptq_kv *kv, const int32_t *ids, int n_prompt,
                         int n_gen, float *logits, double *prefill_s, double *decode_s)
{
    int vocab = gptq_model_vocab_size(m);
    double t0 = now();
    gptq_status st = gptq_model_forward(m, kv, ids, 1, n_prompt, NULL, NULL, GPTQ_FWD_LAST_ONLY,
                                        logits);
    if (st)
        return st;
    double t1 = now();
    for (int s = 0; s < n_gen; s++) {
        int32_t next = argmax(logits, vocab);
        if ((st = gptq_model_forward(m, kv, &next, 1, 1, NULL, NULL, GPTQ_FWD_LAST_ONLY, logits)))
            return st;
    }
    *prefill_s = t1 - t0;
    *decode_s = now() - t1;
    return GPTQ_OK;
}

static int usage(void)
{
    fprintf(stderr, "usage: serve_one [--prompt N] [--gen M] [--no-warmup] [--head q8_0] MODEL\n"
                    "  MODEL: a GGUF file, an HF folder or a GPTQ checkpoint folder\n");
    return 2;
}

int main(int argc, char **argv)
{
    int n_prompt = 256, n_gen = 64, warmup = 1, head = GPTQ_GRID_NONE;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--prompt") && i + 1 < argc)
            n_prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc)
            n_gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-warmup"))
            warmup = 0;
        else if (!strcmp(argv[i], "--head") && i + 1 < argc) {
            head = gptq_head_grid_from_name(argv[++i]);
            if (head < 0)
                return usage();
        }
        else if (argv[i][0] == '-' || path)
            return usage();
        else
            path = argv[i];
    }
    if (!path || n_prompt < 1 || n_gen < 1)
        return usage();

    gptq_model *m = NULL;
    gptq_kv *kv = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    int rc = 1;
    double t0 = now();
    if (gptq_model_load(path, &m) || gptq_model_set_head_grid(m, head))
        goto fail;
    double load_s = now() - t0;
    long load_peak = peak_rss_kb(), rss_after_load = rss_kb();
    const gptq_model_config *c = gptq_model_get_config(m);
    int vocab = gptq_model_vocab_size(m);
    int packed = 0;
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (int w = 0; w < GPTQ_LIN_COUNT; w++)
            packed += gptq_model_linear_packed(m, l, (gptq_linear_id)w) != NULL;
    if (gptq_kv_create(m, 1, n_prompt + n_gen, &kv))
        goto fail;
    ids = malloc((size_t)n_prompt * sizeof *ids);
    logits = malloc((size_t)vocab * sizeof *logits);
    if (!ids || !logits) {
        fprintf(stderr, "serve_one: out of memory\n");
        goto done;
    }
    uint32_t r = 12345; /* a fixed LCG: the same prompt every run */
    for (int i = 0; i < n_prompt; i++) {
        r = r * 1664525u + 1013904223u;
        ids[i] = (int32_t)((r >> 8) % (uint32_t)vocab);
    }
    double prefill_s, decode_s;
    if (warmup) {
        if (serve(m, kv, ids, n_prompt, 1, logits, &prefill_s, &decode_s))
            goto fail;
        gptq_kv_truncate(kv, 0, 0);
    }
    if (serve(m, kv, ids, n_prompt, n_gen, logits, &prefill_s, &decode_s))
        goto fail;
    printf("{\"layers\": %d, \"hidden\": %d, \"vocab\": %d, "
           "\"packed_linears\": %d, \"weights_bytes\": %zu, \"load_s\": %.3f, "
           "\"prefill_tokens\": %d, \"prefill_tok_s\": %.3f, \"decode_tokens\": %d, "
           "\"decode_tok_s\": %.3f, \"load_peak_rss_kb\": %ld, \"rss_after_load_kb\": %ld, \"rss_end_kb\": %ld, "
           "\"peak_rss_kb\": %ld, \"blas_core\": \"%s\"}\n",
           c->num_hidden_layers, c->hidden_size, vocab, packed, gptq_model_bytes(m), load_s,
           n_prompt, n_prompt / prefill_s, n_gen, n_gen / decode_s, load_peak, rss_after_load, rss_kb(),
           peak_rss_kb(), gptq_cpu_blas_core());
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "serve_one: %s: %s\n", path, gptq_errmsg());
done:
    gptq_kv_free(kv);
    gptq_model_free(m);
    free(ids);
    free(logits);
    return rc;
}
