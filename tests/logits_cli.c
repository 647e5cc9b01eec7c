/* tests/logits_cli.c: the logits our runtime gives a model, for the Python
 * tests that compare them with another implementation's (llama.cpp).
 *
 *   logits_cli MODEL IDS OUT
 *
 * MODEL: an HF folder or a GGUF file (gptq_model_load). IDS: little-endian
 * int32 token ids, one sequence. OUT: float32 logits [n_ids, vocab],
 * row-major, computed in one forward from position 0 without a cache.
 * Exit status 0, or 1 with the library's message on stderr. */
#include <stdio.h>
#include <stdlib.h>

#include "gptq/model.h"
#include "model/llama.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: logits_cli MODEL IDS OUT\n");
        return 2;
    }
    gptq_model *m = NULL;
    if (gptq_model_load(argv[1], &m)) {
        fprintf(stderr, "logits_cli: %s\n", gptq_errmsg());
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    int32_t *ids = malloc(1 << 20);
    size_t n = f && ids ? fread(ids, sizeof *ids, (1 << 20) / sizeof *ids, f) : 0;
    if (f)
        fclose(f);
    const int vocab = gptq_model_get_config(m)->vocab_size;
    float *logits = n ? malloc(n * (size_t)vocab * sizeof *logits) : NULL;
    int rc = 1;
    if (!logits)
        fprintf(stderr, "logits_cli: no ids read from %s\n", argv[2]);
    else if (gptq_model_forward(m, NULL, ids, 1, (int)n, NULL, NULL, 0, logits))
        fprintf(stderr, "logits_cli: %s\n", gptq_errmsg());
    else if (!(f = fopen(argv[3], "wb")) ||
             fwrite(logits, sizeof *logits, n * (size_t)vocab, f) != n * (size_t)vocab ||
             fclose(f) != 0)
        fprintf(stderr, "logits_cli: cannot write %s\n", argv[3]);
    else
        rc = 0;
    free(ids);
    free(logits);
    gptq_model_free(m);
    return rc;
}
