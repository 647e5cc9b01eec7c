/* bench/random_model.c: see random_model.h. */
#include "random_model.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/dtype.h"
#include "model/safetensors.h"

static uint64_t rng = 88172645463325252ull;
static uint16_t rand_f16(float scale)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    float u = (float)(rng >> 40) * 0x1p-24f - 0.5f;
    return gptq_f32_to_f16(u * scale);
}

int random_model_write(const char *dir, int layers, int hidden, int inter, int vocab, int gqa,
                       size_t *f32_bytes)
{
    char path[4096];
    int heads = hidden / 64, kv_heads = heads / gqa > 0 ? heads / gqa : 1;
    if (layers > 100 || hidden % 64 || gqa < 1) {
        gptq_fail(GPTQ_ERR_ARG, "random model: up to 100 layers, hidden a multiple of 64");
        return -1;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
               "\"hidden_size\": %d, \"intermediate_size\": %d, \"num_attention_heads\": %d, "
               "\"num_key_value_heads\": %d, \"num_hidden_layers\": %d, \"vocab_size\": %d, "
               "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"max_position_embeddings\": 4096, "
               "\"tie_word_embeddings\": false, \"torch_dtype\": \"float16\", \"hidden_act\": \"silu\"}\n",
            hidden, inter, heads, kv_heads, layers, vocab);
    fclose(f);
    gptq_st_writer *w;
    if (gptq_st_writer_create(&w))
        return -1;
    char names[1024][96];
    uint16_t *bufs[1024];
    int n = 0;
    size_t params = 0;
#define ADD(nm, rows, cols, scale)                                                                \
    do {                                                                                          \
        snprintf(names[n], sizeof names[0], "%s", nm);                                            \
        size_t cnt = (size_t)(rows) * (size_t)(cols);                                             \
        bufs[n] = malloc(cnt * 2);                                                                \
        for (size_t i = 0; i < cnt; i++)                                                          \
            bufs[n][i] = (scale) == 0 ? gptq_f32_to_f16(1.0f) : rand_f16(scale);                  \
        int64_t shape[2] = {rows, cols};                                                          \
        if (gptq_st_writer_add(w, names[n], GPTQ_DT_F16, (cols) == 1 ? 1 : 2, shape, bufs[n]))    \
            return -1;                                                                            \
        params += cnt;                                                                            \
        n++;                                                                                      \
    } while (0)
    int kv = kv_heads * 64;
    ADD("model.embed_tokens.weight", vocab, hidden, 0.1f);
    for (int l = 0; l < layers; l++) {
        char nm[96];
        const char *attn[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        int outs[4] = {hidden, kv, kv, hidden};
        for (int k = 0; k < 4; k++) {
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.%s.weight", l, attn[k]);
            ADD(nm, outs[k], hidden, 0.06f);
        }
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.gate_proj.weight", l);
        ADD(nm, inter, hidden, 0.06f);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.up_proj.weight", l);
        ADD(nm, inter, hidden, 0.06f);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.down_proj.weight", l);
        ADD(nm, hidden, inter, 0.04f);
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        ADD(nm, hidden, 1, 0);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(nm, hidden, 1, 0);
    }
    ADD("model.norm.weight", hidden, 1, 0);
    ADD("lm_head.weight", vocab, hidden, 0.06f);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = gptq_st_writer_write(w, path) ? -1 : 0;
    gptq_st_writer_destroy(w);
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    *f32_bytes = params * 4;
    return rc;
}

