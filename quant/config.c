/* quant/config.c: defaults and validation of gptq_quant_config. */
#include "quant/options.h"

#include <stddef.h>
#include <strings.h>

#include "quant/ggml_blocks.h"

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

/* The grids: name, code bits, inputs per (sub-)group, symmetry, ggml type
 * (quant/ggml_blocks.h); a recipe has type -1 and base, the K grid it
 * starts from. */
static const struct {
    const char *name;
    int bits, group, sym, type, base;
} grids[GPTQ_GRID_COUNT] = {
    [GPTQ_GRID_NONE] = {"none", 0, 0, 0, -1, 0},
    [GPTQ_GRID_Q4_0] = {"q4_0", 4, 32, 1, GPTQ_GGML_Q4_0, 0},
    [GPTQ_GRID_Q8_0] = {"q8_0", 8, 32, 1, GPTQ_GGML_Q8_0, 0},
    [GPTQ_GRID_Q4_1] = {"q4_1", 4, 32, 0, GPTQ_GGML_Q4_1, 0},
    [GPTQ_GRID_Q5_0] = {"q5_0", 5, 32, 1, GPTQ_GGML_Q5_0, 0},
    [GPTQ_GRID_Q5_1] = {"q5_1", 5, 32, 0, GPTQ_GGML_Q5_1, 0},
    [GPTQ_GRID_Q2_K] = {"q2_k", 2, 16, 0, GPTQ_GGML_Q2_K, 0},
    [GPTQ_GRID_Q3_K] = {"q3_k", 3, 16, 1, GPTQ_GGML_Q3_K, 0},
    [GPTQ_GRID_Q4_K] = {"q4_k", 4, 32, 0, GPTQ_GGML_Q4_K, 0},
    [GPTQ_GRID_Q5_K] = {"q5_k", 5, 32, 0, GPTQ_GGML_Q5_K, 0},
    [GPTQ_GRID_Q6_K] = {"q6_k", 6, 16, 1, GPTQ_GGML_Q6_K, 0},
    [GPTQ_GRID_Q4_K_M] = {"q4_k_m", 0, 0, 0, -1, GPTQ_GRID_Q4_K},
    [GPTQ_GRID_Q5_K_M] = {"q5_k_m", 0, 0, 0, -1, GPTQ_GRID_Q5_K},
};

static int grid_valid(int grid) { return grid >= GPTQ_GRID_NONE && grid < GPTQ_GRID_COUNT; }

int gptq_grid_from_name(const char *name)
{
    for (int g = GPTQ_GRID_Q4_0; g < GPTQ_GRID_COUNT; g++)
        if (name && !strcasecmp(name, grids[g].name))
            return g;
    return -1;
}

const char *gptq_grid_name(int grid)
{
    return grid > GPTQ_GRID_NONE && grid < GPTQ_GRID_COUNT ? grids[grid].name : "none";
}

int gptq_grid_ggml_type(int grid) { return grid_valid(grid) ? grids[grid].type : -1; }
int gptq_grid_is_recipe(int grid) { return grid_valid(grid) && grids[grid].base != 0; }
int gptq_grid_is_block(int grid)
{
    return grid_valid(grid) && gptq_ggml_is_block_grid(grids[grid].type);
}

int gptq_grid_of_recipe(int grid, gptq_recipe_role role, int layer, int layers, int cols)
{
    int g = grid;
    if (gptq_grid_is_recipe(grid)) {
        /* llama.cpp's use_more_bits(i_layer, n_layers) */
        const int more = layer < layers / 8 || layer >= 7 * layers / 8 ||
                         (layer - layers / 8) % 3 == 2;
        g = grids[grid].base;
        if ((role == GPTQ_ROLE_ATTN_V || role == GPTQ_ROLE_FFN_DOWN) && more)
            g = GPTQ_GRID_Q6_K;
        else if (role == GPTQ_ROLE_ATTN_QKV)
            g = grid == GPTQ_GRID_Q4_K_M ? GPTQ_GRID_Q5_K : GPTQ_GRID_Q6_K;
        if (cols % 256 != 0) /* llama.cpp's tensor_type_fallback */
            g = g == GPTQ_GRID_Q4_K   ? GPTQ_GRID_Q5_0
                : g == GPTQ_GRID_Q5_K ? GPTQ_GRID_Q5_1
                                      : GPTQ_GRID_Q8_0;
    }
    if (g != GPTQ_GRID_NONE && cols % gptq_ggml_block_elems(grids[g].type) != 0)
        return -1;
    return g;
}

gptq_status gptq_quant_config_use_grid(gptq_quant_config *cfg, int grid, int bits_given,
                                       int group_given)
{
    if (!grid_valid(grid))
        return gptq_fail(GPTQ_ERR_ARG, "grid %d: use q4_0, q8_0, q4_1, q5_0, q5_1, q2_k, "
                         "q3_k, q4_k, q5_k, q6_k, q4_k_m or q5_k_m", grid);
    cfg->grid = grid;
    if (grid == GPTQ_GRID_NONE)
        return GPTQ_OK;
    const char *name = grids[grid].name;
    if (gptq_grid_is_recipe(grid)) {
        if (bits_given || group_given)
            return gptq_fail(GPTQ_ERR_ARG, "recipe %s chooses each tensor's grid: drop --bits "
                             "and --group-size", name);
        if (cfg->act_order)
            cfg->static_groups = 1;
        return GPTQ_OK;
    }
    if ((bits_given && bits_given != grids[grid].bits) ||
        (group_given && group_given != grids[grid].group))
        return gptq_fail(GPTQ_ERR_ARG, "grid %s fixes %d bits in groups of %d: drop --bits "
                         "and --group-size", name, grids[grid].bits, grids[grid].group);
    cfg->bits = grids[grid].bits;
    cfg->group_size = grids[grid].group;
    cfg->sym = grids[grid].sym;
    cfg->fp16_scales = 1;
    if (cfg->act_order)
        cfg->static_groups = 1;
    return GPTQ_OK;
}

gptq_status gptq_grid_sym_check(int grid, int sym_given)
{
    if (sym_given < 0 || grid <= GPTQ_GRID_NONE || !grid_valid(grid))
        return GPTQ_OK;
    if (gptq_grid_is_recipe(grid))
        return gptq_fail(GPTQ_ERR_ARG, "recipe %s mixes symmetric and asymmetric grids: drop "
                         "--%s", grids[grid].name, sym_given ? "sym" : "asym");
    if (sym_given != grids[grid].sym)
        return gptq_fail(GPTQ_ERR_ARG, "grid %s is %s: drop --%s", grids[grid].name,
                         grids[grid].sym ? "symmetric" : "asymmetric", sym_given ? "sym" : "asym");
    return GPTQ_OK;
}

gptq_quant_config gptq_quant_config_on_grid(const gptq_quant_config *cfg, int grid)
{
    gptq_quant_config c = *cfg;
    (void)gptq_quant_config_use_grid(&c, grid, 0, 0);
    return c;
}

gptq_status gptq_quant_options_check(const gptq_quant_config *cfg)
{
    gptq_quant_config table = *cfg; /* a block grid's 5 and 6 bits are its own, not the table's */
    if (gptq_grid_is_block(cfg->grid) && cfg->bits == grids[cfg->grid].bits)
        table.bits = 4;
    gptq_status st = gptq_options_check(gptq_quant_options, gptq_quant_n_options, &table);
    if (st)
        return st;
    if (cfg->static_groups && cfg->group_size == -1)
        return gptq_fail(GPTQ_ERR_ARG, "static-groups needs groups: use a group-size other "
                         "than -1 (per channel)");
    if (!grid_valid(cfg->grid))
        return gptq_fail(GPTQ_ERR_ARG, "grid %d: no such grid", cfg->grid);
    if (cfg->grid != GPTQ_GRID_NONE) {
        const char *g = grids[cfg->grid].name;
        if (gptq_grid_is_recipe(cfg->grid)) {
            if (cfg->act_order && !cfg->static_groups)
                return gptq_fail(GPTQ_ERR_ARG, "recipe %s with act-order needs static-groups "
                                 "(GGUF stores no g_idx)", g);
            return GPTQ_OK;
        }
        if (cfg->bits != grids[cfg->grid].bits || cfg->group_size != grids[cfg->grid].group)
            return gptq_fail(GPTQ_ERR_ARG, "grid %s has %d bits in groups of %d: leave bits "
                             "and group-size unset (asked: bits %d, group-size %d)", g,
                             grids[cfg->grid].bits, grids[cfg->grid].group, cfg->bits,
                             cfg->group_size);
        if (cfg->sym != grids[cfg->grid].sym || !cfg->fp16_scales)
            return gptq_fail(GPTQ_ERR_ARG, "grid %s is %s with fp16 scales: drop --asym/--sym",
                             g, grids[cfg->grid].sym ? "symmetric" : "asymmetric");
        if (cfg->act_order && !cfg->static_groups)
            return gptq_fail(GPTQ_ERR_ARG, "grid %s with act-order needs static-groups (GGUF "
                             "stores no g_idx: groups stay in the original column order)", g);
        if (gptq_grid_is_block(cfg->grid) && cfg->mse)
            return gptq_fail(GPTQ_ERR_ARG, "grid %s searches its own scales: drop --mse", g);
    }
    return GPTQ_OK;
}

gptq_status gptq_quant_config_check(const gptq_quant_config *cfg, int cols)
{
    if (cols <= 0)
        return gptq_fail(GPTQ_ERR_ARG, "layer has %d input columns", cols);
    gptq_status st = gptq_quant_options_check(cfg);
    if (st)
        return st;
    if (gptq_grid_is_recipe(cfg->grid))
        return gptq_fail(GPTQ_ERR_ARG, "recipe %s names a grid per tensor: a layer is "
                         "quantized on the grid gptq_grid_of_recipe gives it",
                         grids[cfg->grid].name);
    const int block = cfg->grid ? gptq_ggml_block_elems(grids[cfg->grid].type) : 1;
    if (cols % block != 0)
        return gptq_fail(GPTQ_ERR_ARG, "grid %s quantizes blocks of %d inputs; this layer has %d"
                         "%s", grids[cfg->grid].name, block, cols,
                         block == 256 ? " (the q4_k_m and q5_k_m recipes fall back to 32-input "
                                        "grids there, as llama.cpp does)" : "");
    return GPTQ_OK;
}

int gptq_quant_groups(const gptq_quant_config *cfg, int cols)
{
    if (cfg->group_size == -1)
        return 1;
    return (cols + cfg->group_size - 1) / cfg->group_size;
}
