/* bench/peer_quantize.c: the 4-bit model bench/peer serves on gptqd's side:
 * a float model (a GGUF file or an HF folder) quantized to 4-bit, group 128
 * (asymmetric, no act-order, v1 zeros: gptq_quant_config_default) and saved
 * as a GPTQ checkpoint folder, which bench/serve_one then loads the way a
 * server would (packed linears from the file, no float copy first).
 *
 * Two ways of choosing the codes:
 *   GPTQ (default): the calibration pipeline (model/calib.h) on NSAMPLES
 *     windows of SEQLEN tokens of the text file CALIB, tokenized with the
 *     model's own tokenizer;
 *   --rtn: round to nearest (gptq_calib_rtn), no calibration; for random
 *     weights, where GPTQ has nothing to learn. Serving speed does not
 *     depend on how the codes were chosen (bench/decode.c says the same).
 * Embeddings, norms and the output head stay float (saved as F16).
 *
 * Prints one JSON object on stdout: {"method", "nsamples", "seqlen",
 * "seconds", "peak_rss_kb"}.
 * Usage: peer_quantize [--rtn] [--calib FILE] [--nsamples N] [--seqlen N]
 *                      SRC OUT_DIR          (OUT_DIR must not exist)
 * Exit: 0 done, 1 error (message on stderr), 2 usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "gptq/tokenizer.h"
#include "model/calib.h"
#include "model/checkpoint.h"
#include "model/llama.h"
#include "model/source.h"
#include "benchutil.h"

/* Calibration text is a corpus excerpt, not a book. */
#define CALIB_MAX_BYTES ((size_t)64 << 20)

static int usage(void)
{
    fprintf(stderr, "usage: peer_quantize [--rtn] [--calib FILE] [--nsamples N] [--seqlen N] "
                    "SRC OUT_DIR\n"
                    "  SRC: a float model (GGUF file or HF folder); OUT_DIR must not exist\n"
                    "  GPTQ needs --calib; --rtn rounds to nearest instead\n");
    return 2;
}

/* The ids of the text file `path`, tokenized whole without special tokens
 * (as the daemon's quantize job does) with the tokenizer of `files`. */
static gptq_status calib_tokens(const gptq_hf_files *files, const char *path, int32_t **ids,
                                size_t *n_ids)
{
    size_t json_len = 0, text_len = 0;
    const char *json = gptq_hf_files_get(files, "tokenizer.json", &json_len);
    if (!json)
        return gptq_fail(GPTQ_ERR_NOTFOUND, "the model has no tokenizer.json: GPTQ needs one to "
                         "tokenize %s (or use --rtn)", path);
    gptq_tokenizer *tok = NULL;
    char *text = NULL;
    gptq_status st = gptq_tokenizer_load_json(json, json_len, "tokenizer.json", &tok);
    if (!st)
        st = gptq_file_read(path, CALIB_MAX_BYTES, &text, &text_len);
    if (!st)
        st = gptq_tokenizer_encode(tok, text, text_len, 0, ids, n_ids);
    free(text);
    gptq_tokenizer_free(tok);
    return st;
}

int main(int argc, char **argv)
{
    int rtn = 0, nsamples = 64, seqlen = 512;
    const char *calib = NULL, *src_path = NULL, *out_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rtn"))
            rtn = 1;
        else if (!strcmp(argv[i], "--calib") && i + 1 < argc)
            calib = argv[++i];
        else if (!strcmp(argv[i], "--nsamples") && i + 1 < argc)
            nsamples = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seqlen") && i + 1 < argc)
            seqlen = atoi(argv[++i]);
        else if (argv[i][0] == '-')
            return usage();
        else if (!src_path)
            src_path = argv[i];
        else if (!out_dir)
            out_dir = argv[i];
        else
            return usage();
    }
    if (!src_path || !out_dir || (!rtn && !calib) || nsamples < 1 || seqlen < 1)
        return usage();

    gptq_model_source *src = NULL;
    gptq_model *m = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    gptq_calib_options o;
    gptq_calib_options_default(&o);
    o.nsamples = nsamples;
    o.seqlen = seqlen;
    double t0 = now();
    gptq_status st = gptq_source_open(src_path, &src);
    if (!st)
        st = gptq_model_load_source(src, &m);
    if (!st && rtn)
        st = gptq_calib_rtn(m, &o.quant, 0, NULL, NULL);
    if (!st && !rtn)
        st = calib_tokens(gptq_source_files(src), calib, &ids, &n_ids);
    if (!st && !rtn)
        st = gptq_calib_quantize(m, ids, n_ids, &o, NULL, NULL);
    double seconds = now() - t0;
    gptq_checkpoint_meta meta = {.quant = o.quant, .true_sequential = o.true_sequential};
    if (!st)
        st = gptq_checkpoint_save(m, gptq_source_files(src), &meta, GPTQ_DT_F16, out_dir);
    if (st) {
        fprintf(stderr, "peer_quantize: %s -> %s: %s\n", src_path, out_dir, gptq_errmsg());
    } else {
        printf("{\"method\": \"%s\", \"bits\": %d, \"group_size\": %d, \"nsamples\": %d, "
               "\"seqlen\": %d, \"calib_tokens\": %zu, \"seconds\": %.1f, \"peak_rss_kb\": %ld}\n",
               rtn ? "rtn" : "gptq", o.quant.bits, o.quant.group_size, rtn ? 0 : nsamples,
               rtn ? 0 : seqlen, n_ids, seconds, peak_rss_kb());
    }
    free(ids);
    gptq_model_free(m);
    gptq_source_free(src);
    return st ? 1 : 0;
}
