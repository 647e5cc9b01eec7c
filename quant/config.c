/* quant/config.c: defaults and validation of gptq_quant_config. */
#include "quant/options.h"

#include <stddef.h>

/* Each numeric option of a quantizer defined once: its name as users see it,
 * default and bounds (docs/ARCHITECTURE.md "Options"). */
const gptq_option gptq_quant_options[] = {
    /* Bits per code: the widths the v1 checkpoint layout and the kernels
     * (qgemm, its CUDA twin) implement, as the reference does. */
    {.name = "bits", .type = GPTQ_OPTION_INT, .offset = offsetof(gptq_quant_config, bits),
     .def = 4, .min = 2, .max = 8, .choices = 1u << 2 | 1u << 3 | 1u << 4 | 1u << 8},
    /* Input columns per quantization group, or -1: one group per output row.
     * 65536 is above the input width of any linear in the models loaded here
     * (Llama 3 405B's down_proj has 53248); a group at least as wide as the
     * layer is one group per row already. */
    {.name = "group-size", .type = GPTQ_OPTION_INT,
     .offset = offsetof(gptq_quant_config, group_size), .def = 128, .min = 1, .max = 65536,
     .has_extra = 1, .extra = -1, .extra_means = "per channel"},
    /* lambda of H += lambda * mean(diag H) * I: a fraction of the mean
     * diagonal, [0, 1). GPTQModel takes damp_percent in (0, 1); 1 and more
     * would swamp the Hessian with the identity (GPTQ tending to RTN). 0
     * stays legal here, no dampening, for experiments: a Hessian that is
     * then not positive definite fails with a message to raise damp. */
    {.name = "damp", .type = GPTQ_OPTION_FLOAT, .offset = offsetof(gptq_quant_config, damp),
     .def = 0.01, .min = 0, .max = 1, .max_open = 1},
    /* Columns per lazy block update (the reference's blocksize, 128). A block
     * wider than the layer is the whole layer; 4096 bounds the [rows, B]
     * error block held per update. */
    {.name = "block-size", .type = GPTQ_OPTION_INT,
     .offset = offsetof(gptq_quant_config, block_size), .def = 128, .min = 1, .max = 4096},
};
const size_t gptq_quant_n_options = sizeof gptq_quant_options / sizeof gptq_quant_options[0];

void gptq_quant_config_default(gptq_quant_config *cfg)
{
    gptq_options_default(gptq_quant_options, gptq_quant_n_options, cfg);
    cfg->sym = 0;
    cfg->act_order = 0;
    cfg->static_groups = 0;
    cfg->mse = 0;
    cfg->v1_zeros = 1;
    cfg->fp16_scales = 1;
}

gptq_status gptq_quant_options_check(const gptq_quant_config *cfg)
{
    gptq_status st = gptq_options_check(gptq_quant_options, gptq_quant_n_options, cfg);
    if (st)
        return st;
    if (cfg->static_groups && cfg->group_size == -1)
        return gptq_fail(GPTQ_ERR_ARG, "static-groups needs groups: use a group-size other "
                         "than -1 (per channel)");
    return GPTQ_OK;
}

gptq_status gptq_quant_config_check(const gptq_quant_config *cfg, int cols)
{
    if (cols <= 0)
        return gptq_fail(GPTQ_ERR_ARG, "layer has %d input columns", cols);
    return gptq_quant_options_check(cfg);
}

int gptq_quant_groups(const gptq_quant_config *cfg, int cols)
{
    if (cfg->group_size == -1)
        return 1;
    return (cols + cfg->group_size - 1) / cfg->group_size;
}
