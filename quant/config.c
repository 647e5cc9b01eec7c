/* quant/config.c: defaults and validation of gptq_quant_config. */
#include "gptq/quant.h"

void gptq_quant_config_default(gptq_quant_config *cfg)
{
    cfg->bits = 4;
    cfg->group_size = 128;
    cfg->sym = 0;
    cfg->act_order = 0;
    cfg->static_groups = 0;
    cfg->damp = 0.01f;
    cfg->block_size = 128;
    cfg->mse = 0;
    cfg->v1_zeros = 1;
    cfg->fp16_scales = 1;
}

gptq_status gptq_quant_config_check(const gptq_quant_config *cfg, int cols)
{
    if (cfg->bits != 2 && cfg->bits != 3 && cfg->bits != 4 && cfg->bits != 8)
        return gptq_fail(GPTQ_ERR_ARG, "bits %d: use 2, 3, 4 or 8", cfg->bits);
    if (cfg->group_size != -1 && cfg->group_size <= 0)
        return gptq_fail(GPTQ_ERR_ARG, "group size %d: use -1 (per channel) or a positive size",
                         cfg->group_size);
    if (cols <= 0)
        return gptq_fail(GPTQ_ERR_ARG, "layer has %d input columns", cols);
    if (!(cfg->damp >= 0.0f && cfg->damp < 1e6f))
        return gptq_fail(GPTQ_ERR_ARG, "damp %g: use a value >= 0 (0.01 is usual)",
                         (double)cfg->damp);
    if (cfg->block_size <= 0 || cfg->block_size > 4096)
        return gptq_fail(GPTQ_ERR_ARG, "block size %d: use 1 to 4096 (128 is usual)",
                         cfg->block_size);
    if (cfg->static_groups && cfg->group_size == -1)
        return gptq_fail(GPTQ_ERR_ARG, "static groups need a group size (got per channel)");
    return GPTQ_OK;
}

int gptq_quant_groups(const gptq_quant_config *cfg, int cols)
{
    if (cfg->group_size == -1)
        return 1;
    return (cols + cfg->group_size - 1) / cfg->group_size;
}
