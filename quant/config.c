/* quant/config.c: defaults and validation of gptq_quant_config. */
#include "quant/options.h"

#include <stddef.h>
#include <strings.h>

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
    cfg->grid = GPTQ_GRID_NONE;
}

static const struct {
    const char *name;
    int bits;
} grids[] = {[GPTQ_GRID_NONE] = {"none", 0}, [GPTQ_GRID_Q4_0] = {"q4_0", 4},
             [GPTQ_GRID_Q8_0] = {"q8_0", 8}};

int gptq_grid_from_name(const char *name)
{
    for (int g = GPTQ_GRID_Q4_0; g <= GPTQ_GRID_Q8_0; g++)
        if (name && !strcasecmp(name, grids[g].name))
            return g;
    return -1;
}

const char *gptq_grid_name(int grid)
{
    return grid > GPTQ_GRID_NONE && grid <= GPTQ_GRID_Q8_0 ? grids[grid].name : "none";
}

gptq_status gptq_quant_config_use_grid(gptq_quant_config *cfg, int grid, int bits_given,
                                       int group_given)
{
    if (grid < GPTQ_GRID_NONE || grid > GPTQ_GRID_Q8_0)
        return gptq_fail(GPTQ_ERR_ARG, "grid %d: use q4_0 or q8_0", grid);
    cfg->grid = grid;
    if (grid == GPTQ_GRID_NONE)
        return GPTQ_OK;
    if ((bits_given && bits_given != grids[grid].bits) || (group_given && group_given != 32))
        return gptq_fail(GPTQ_ERR_ARG, "grid %s fixes %d bits in groups of 32: drop --bits "
                         "and --group-size", grids[grid].name, grids[grid].bits);
    cfg->bits = grids[grid].bits;
    cfg->group_size = 32;
    cfg->sym = 1;
    cfg->fp16_scales = 1;
    if (cfg->act_order)
        cfg->static_groups = 1;
    return GPTQ_OK;
}

gptq_status gptq_quant_options_check(const gptq_quant_config *cfg)
{
    gptq_status st = gptq_options_check(gptq_quant_options, gptq_quant_n_options, cfg);
    if (st)
        return st;
    if (cfg->static_groups && cfg->group_size == -1)
        return gptq_fail(GPTQ_ERR_ARG, "static-groups needs groups: use a group-size other "
                         "than -1 (per channel)");
    if (cfg->grid < GPTQ_GRID_NONE || cfg->grid > GPTQ_GRID_Q8_0)
        return gptq_fail(GPTQ_ERR_ARG, "grid %d: use q4_0 or q8_0", cfg->grid);
    if (cfg->grid != GPTQ_GRID_NONE) {
        const char *g = grids[cfg->grid].name;
        if (cfg->bits != grids[cfg->grid].bits || cfg->group_size != 32)
            return gptq_fail(GPTQ_ERR_ARG, "grid %s has %d bits in groups of 32: leave bits "
                             "and group-size unset (asked: bits %d, group-size %d)", g,
                             grids[cfg->grid].bits, cfg->bits, cfg->group_size);
        if (!cfg->sym || !cfg->fp16_scales)
            return gptq_fail(GPTQ_ERR_ARG, "grid %s is symmetric with fp16 scales: drop --asym",
                             g);
        if (cfg->act_order && !cfg->static_groups)
            return gptq_fail(GPTQ_ERR_ARG, "grid %s with act-order needs static-groups (GGUF "
                             "stores no g_idx: groups stay in the original column order)", g);
    }
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
