/* bench/layer_error.c: GPTQ against RTN on the two real layers of the
 * fixture model (gptq-vectors: layer 1 q_proj and down_proj with the
 * Hessian of their calibration inputs): the layer error
 * tr((W-Q) H (W-Q)ᵀ) of each, side by side, for every bits/group setting.
 * Usage: layer_error [vectors.safetensors] */
#include <stdio.h>
#include <stdlib.h>

#include "gptq/quant.h"
#include "model/safetensors.h"

static float *tensor(gptq_safetensors *st, const char *name, int64_t numel)
{
    const gptq_st_tensor *t = gptq_safetensors_find(st, name);
    float *x = t && t->numel == numel ? malloc((size_t)numel * sizeof *x) : NULL;
    if (!x || gptq_st_tensor_to_f32(t, x, (size_t)numel) != GPTQ_OK) {
        fprintf(stderr, "layer_error: tensor %s missing or malformed\n", name);
        exit(1);
    }
    return x;
}

int main(int argc, char **argv)
{
    char def[4096];
    const char *fx = getenv("GPTQ_FIXTURES");
    snprintf(def, sizeof def, "%s/gptq-vectors/vectors.safetensors", fx ? fx : "../shared/fixtures");
    const char *path = argc > 1 ? argv[1] : def;
    gptq_safetensors *st;
    if (gptq_safetensors_open(path, &st) != GPTQ_OK) {
        fprintf(stderr, "layer_error: %s\n", gptq_errmsg());
        return 1;
    }
    const struct { const char *name; int rows, cols; } layers[] = {
        {"layer1.q_proj", 256, 256}, {"layer1.down_proj", 256, 768}};
    const int bits[] = {2, 3, 4, 8}, groups[] = {-1, 128, 64, 32};
    printf("%-18s %4s %6s %12s %12s %9s %8s\n", "layer", "bits", "group", "RTN error",
           "GPTQ error", "GPTQ/RTN", "GPTQ s");
    for (int l = 0; l < 2; l++) {
        char name[128];
        snprintf(name, sizeof name, "%s.W", layers[l].name);
        float *W = tensor(st, name, (int64_t)layers[l].rows * layers[l].cols);
        snprintf(name, sizeof name, "%s.H", layers[l].name);
        float *H = tensor(st, name, (int64_t)layers[l].cols * layers[l].cols);
        for (int b = 0; b < 4; b++)
            for (int g = 0; g < 4; g++) {
                gptq_quant_config cfg;
                gptq_quant_config_default(&cfg);
                cfg.bits = bits[b];
                cfg.group_size = groups[g];
                gptq_quant_result rg, rr;
                if (gptq_quantize_layer(W, H, layers[l].rows, layers[l].cols, &cfg, &rg) ||
                    gptq_rtn_layer(W, layers[l].rows, layers[l].cols, &cfg, &rr)) {
                    fprintf(stderr, "layer_error: %s\n", gptq_errmsg());
                    return 1;
                }
                double eg = gptq_layer_error(W, rg.Q, H, layers[l].rows, layers[l].cols);
                double er = gptq_layer_error(W, rr.Q, H, layers[l].rows, layers[l].cols);
                printf("%-18s %4d %6d %12.5g %12.5g %9.3f %8.3f\n", layers[l].name, bits[b],
                       groups[g], er, eg, eg / er, rg.seconds_total);
                gptq_quant_result_free(&rg);
                gptq_quant_result_free(&rr);
            }
        free(W);
        free(H);
    }
    gptq_safetensors_close(st);
    return 0;
}
