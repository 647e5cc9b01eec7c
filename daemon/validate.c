/* daemon/validate.c: request field checks. */
#include "daemon/validate.h"

#include <string.h>
#include <strings.h>

gptq_status gptqd_validate_name(const char *field, const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0)
        return gptq_fail(GPTQ_ERR_ARG, "%s: missing (a model name of 1 to %d characters "
                         "[A-Za-z0-9._-])", field, GPTQD_NAME_MAX);
    if (n > GPTQD_NAME_MAX)
        return gptq_fail(GPTQ_ERR_ARG, "%s: %zu characters, at most %d", field, n,
                         GPTQD_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return gptq_fail(GPTQ_ERR_ARG, "%s: character %zu (0x%02x) is not one of "
                             "[A-Za-z0-9._-]", field, i, (unsigned char)c);
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return gptq_fail(GPTQ_ERR_ARG, "%s: '%s' is not a name", field, name);
    return GPTQ_OK;
}

static gptq_status check_string(const char *field, const char *s, size_t max, int required)
{
    size_t n = s ? strlen(s) : 0;
    if (required && n == 0)
        return gptq_fail(GPTQ_ERR_ARG, "%s: missing", field);
    if (n > max)
        return gptq_fail(GPTQ_ERR_ARG, "%s: %zu bytes, at most %zu", field, n, max);
    return GPTQ_OK;
}

static gptq_status check_range_u(const char *field, unsigned long long v, unsigned long long lo,
                                 unsigned long long hi)
{
    if (v < lo || v > hi)
        return gptq_fail(GPTQ_ERR_ARG, "%s: %llu is outside %llu..%llu", field, v, lo, hi);
    return GPTQ_OK;
}

#define TRY(call)                                                                                 \
    do {                                                                                          \
        gptq_status st_ = (call);                                                                 \
        if (st_)                                                                                  \
            return st_;                                                                           \
    } while (0)

/* The options only GPTQ's calibration reads, as a request sets them: the
 * first one set, or NULL. */
static const char *calibration_option(const Gptqd__QuantizeRequest *q)
{
    if (q->act_order) return "act_order";
    if (q->static_groups) return "static_groups";
    if (q->has_damp_case) return "damp";
    if (q->calib_path && q->calib_path[0]) return "calib_path";
    if (q->nsamples) return "nsamples";
    if (q->seqlen) return "seqlen";
    if (q->has_seed_case) return "seed";
    if (q->block_size) return "block_size";
    if (q->no_true_sequential) return "no_true_sequential";
    return NULL;
}

gptq_status gptqd_quantize_options(const Gptqd__QuantizeRequest *q, gptq_calib_options *o,
                                   int *rtn)
{
    gptq_calib_options_default(o);
    *rtn = 0;
    if (q->method && q->method[0]) {
        if (!strcmp(q->method, "rtn"))
            *rtn = 1;
        else if (strcmp(q->method, "gptq"))
            return gptq_fail(GPTQ_ERR_ARG, "quantize.method '%.16s': use gptq or rtn (or leave "
                             "it empty)", q->method);
    }
    const char *calib_only = *rtn ? calibration_option(q) : NULL;
    if (calib_only)
        return gptq_fail(GPTQ_ERR_ARG, "quantize.%s: method rtn rounds each weight to nearest "
                         "without calibration; drop it or use method gptq", calib_only);
    o->quant.act_order = q->act_order;
    o->quant.sym = q->has_sym_case ? q->sym : GPTQ_TOOL_DEFAULT_SYM;
    o->quant.static_groups = q->static_groups;
    o->quant.mse = q->mse;
    o->true_sequential = !q->no_true_sequential;
    if (q->has_seed_case)
        o->seed = q->seed; /* every seed is legal */
    if (q->bits)
        TRY(gptq_calib_options_set(o, "bits", q->bits));
    if (q->group_size)
        TRY(gptq_calib_options_set(o, "group-size", q->group_size));
    if (q->has_damp_case)
        TRY(gptq_calib_options_set(o, "damp", q->damp));
    if (q->nsamples)
        TRY(gptq_calib_options_set(o, "nsamples", q->nsamples));
    if (q->seqlen)
        TRY(gptq_calib_options_set(o, "seqlen", q->seqlen));
    if (q->block_size)
        TRY(gptq_calib_options_set(o, "block-size", q->block_size));
    if (q->grid && q->grid[0]) {
        int grid = gptq_grid_from_name(q->grid);
        if (grid < 0)
            return gptq_fail(GPTQ_ERR_ARG, "quantize.grid '%.16s': use q4_0, q8_0, q4_1, q5_0, "
                             "q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, q4_k_m or q5_k_m (or leave it "
                             "empty)", q->grid);
        TRY(gptq_grid_sym_check(grid, q->has_sym_case ? (int)q->sym : -1));
        TRY(gptq_quant_config_use_grid(&o->quant, grid, (int)q->bits, q->group_size));
    }
    return gptq_calib_options_check(o);
}

gptq_status gptqd_generate_options(const Gptqd__GenerateRequest *g, gptq_generate_params *p)
{
    gptq_generate_params_default(p);
    if (g->has_seed_case)
        p->sample.seed = g->seed;
    if (g->max_tokens)
        TRY(gptq_generate_params_set(p, "max-tokens", g->max_tokens));
    if (g->has_temperature_case)
        TRY(gptq_generate_params_set(p, "temperature", g->temperature));
    if (g->has_top_k_case)
        TRY(gptq_generate_params_set(p, "top-k", g->top_k));
    if (g->has_top_p_case)
        TRY(gptq_generate_params_set(p, "top-p", g->top_p));
    return gptq_generate_params_check(p);
}

gptq_status gptqd_eval_options(const Gptqd__EvalRequest *e, gptq_eval_params *p)
{
    gptq_eval_params_default(p);
    if (e->seqlen)
        TRY(gptq_eval_params_set(p, "seqlen", e->seqlen));
    if (e->max_windows)
        TRY(gptq_eval_params_set(p, "max-windows", e->max_windows));
    return gptq_eval_params_check(p);
}

static gptq_status validate_quantize(const Gptqd__QuantizeRequest *q)
{
    TRY(gptqd_validate_name("quantize.name", q->name));
    TRY(gptqd_validate_name("quantize.new_name", q->new_name));
    if (strcmp(q->name, q->new_name) == 0)
        return gptq_fail(GPTQ_ERR_ARG, "quantize.new_name: '%s' is the source model's name; "
                         "pick a new one", q->new_name);
    TRY(check_string("quantize.calib_path", q->calib_path, GPTQD_PATH_MAX, 0));
    TRY(check_string("quantize.save_dir", q->save_dir, GPTQD_PATH_MAX, 0));
    const int grid = q->grid ? gptq_grid_from_name(q->grid) : -1;
    const size_t save_len = q->save_dir ? strlen(q->save_dir) : 0;
    if ((gptq_grid_is_block(grid) || gptq_grid_is_recipe(grid)) && save_len &&
        (save_len < 5 || strcasecmp(q->save_dir + save_len - 5, ".gguf")))
        return gptq_fail(GPTQ_ERR_ARG, "quantize.save_dir: grid %s keeps GGUF blocks, which "
                         "only a GGUF file holds: name a FILE.gguf", gptq_grid_name(grid));
    if (q->n_skip_modules > GPTQD_MAX_SKIP)
        return gptq_fail(GPTQ_ERR_ARG, "quantize.skip_modules: %zu entries, at most %d",
                         q->n_skip_modules, GPTQD_MAX_SKIP);
    for (size_t i = 0; i < q->n_skip_modules; i++)
        TRY(check_string("quantize.skip_modules[]", q->skip_modules[i], 128, 1));
    gptq_calib_options o;
    int rtn;
    TRY(gptqd_quantize_options(q, &o, &rtn));
    /* gptqd's own limit: the calibration activations it will hold */
    unsigned long long tokens = (unsigned long long)o.nsamples * (unsigned long long)o.seqlen;
    if (tokens > GPTQD_MAX_CALIB_TOKENS)
        return gptq_fail(GPTQ_ERR_LIMIT, "nsamples x seqlen: %d x %d = %llu calibration tokens, "
                         "gptqd holds at most %d: lower nsamples or seqlen", o.nsamples,
                         o.seqlen, tokens, GPTQD_MAX_CALIB_TOKENS);
    return GPTQ_OK;
}

gptq_status gptqd_validate_request(const Gptqd__Request *req)
{
    if (req->version != GPTQD__VERSION__PROTOCOL_VERSION)
        return gptq_fail(GPTQ_ERR_PROTOCOL, "version: %u; this gptqd speaks protocol version %d: "
                         "use a matching client", req->version,
                         GPTQD__VERSION__PROTOCOL_VERSION);
    TRY(check_string("client", req->client, GPTQD_CLIENT_MAX, 0));
    if (req->client_pid > 0x3fffffff)
        return gptq_fail(GPTQ_ERR_ARG, "client_pid: %u is not a process id", req->client_pid);
    switch (req->body_case) {
    case GPTQD__REQUEST__BODY_PING:
        if (req->ping->payload.len > GPTQD_MAX_PING)
            return gptq_fail(GPTQ_ERR_ARG, "ping.payload: %zu bytes, at most %d",
                             req->ping->payload.len, GPTQD_MAX_PING);
        return GPTQ_OK;
    case GPTQD__REQUEST__BODY_STATUS_REQUEST:
    case GPTQD__REQUEST__BODY_LIST:
    case GPTQD__REQUEST__BODY_JOBS:
        return GPTQ_OK;
    case GPTQD__REQUEST__BODY_LOAD:
        TRY(gptqd_validate_name("load.name", req->load->name));
        TRY(check_string("load.path", req->load->path, GPTQD_PATH_MAX, 1));
        if (req->load->head && req->load->head[0] && gptq_head_grid_from_name(req->load->head) < 0)
            return gptq_fail(GPTQ_ERR_ARG, "load.head '%.16s': use none or q8_0 (or leave it "
                             "empty: the daemon's head setting)", req->load->head);
        return GPTQ_OK;
    case GPTQD__REQUEST__BODY_UNLOAD:
        return gptqd_validate_name("unload.name", req->unload->name);
    case GPTQD__REQUEST__BODY_QUANTIZE:
        return validate_quantize(req->quantize);
    case GPTQD__REQUEST__BODY_GENERATE: {
        const Gptqd__GenerateRequest *g = req->generate;
        gptq_generate_params p;
        TRY(gptqd_validate_name("generate.name", g->name));
        TRY(check_string("generate.prompt", g->prompt, GPTQD_PROMPT_MAX, 0));
        return gptqd_generate_options(g, &p);
    }
    case GPTQD__REQUEST__BODY_EVAL: {
        const Gptqd__EvalRequest *e = req->eval;
        gptq_eval_params p;
        TRY(gptqd_validate_name("eval.name", e->name));
        TRY(check_string("eval.text_path", e->text_path, GPTQD_PATH_MAX, 0));
        if (e->kl_base && e->kl_base[0])
            TRY(gptqd_validate_name("eval.kl_base", e->kl_base));
        return gptqd_eval_options(e, &p);
    }
    case GPTQD__REQUEST__BODY_SAVE: {
        const char *dt = req->save->dtype;
        TRY(gptqd_validate_name("save.name", req->save->name));
        TRY(check_string("save.dtype", dt, 8, 0));
        if (dt[0] && strcmp(dt, "f16") && strcmp(dt, "bf16") && strcmp(dt, "f32"))
            return gptq_fail(GPTQ_ERR_ARG, "save.dtype '%s': use f16, bf16 or f32 (or leave it "
                             "empty for the model's own)", dt);
        const char *fmt = req->save->format;
        TRY(check_string("save.format", fmt, 8, 0));
        TRY(check_string("save.embedding_type", req->save->embedding_type, 8, 0));
        if (fmt[0] && strcmp(fmt, "v1") && strcmp(fmt, "v2") && strcmp(fmt, "gguf"))
            return gptq_fail(GPTQ_ERR_ARG, "save.format '%s': use v1, v2 or gguf (or leave it "
                             "empty: gguf for a name ending in .gguf, else v1)", fmt);
        return check_string("save.dir", req->save->dir, GPTQD_PATH_MAX, 1);
    }
    case GPTQD__REQUEST__BODY_POLL:
        if (req->poll->job == 0)
            return gptq_fail(GPTQ_ERR_ARG, "poll.job: missing (job ids start at 1)");
        return check_range_u("poll.wait_ms", req->poll->wait_ms, 0, GPTQD_MAX_WAIT_MS);
    case GPTQD__REQUEST__BODY_CANCEL:
        if (req->cancel->job == 0)
            return gptq_fail(GPTQ_ERR_ARG, "cancel.job: missing (job ids start at 1)");
        return GPTQ_OK;
    case GPTQD__REQUEST__BODY_MAP:
        TRY(gptqd_validate_name("map.name", req->map->name));
        return GPTQ_OK;
    case GPTQD__REQUEST__BODY_UNMAP:
        if (req->unmap->lease == 0)
            return gptq_fail(GPTQ_ERR_ARG, "unmap.lease: missing (lease ids start at 1)");
        return GPTQ_OK;
    case GPTQD__REQUEST__BODY__NOT_SET:
    default:
        return gptq_fail(GPTQ_ERR_PROTOCOL, "body: missing or unknown request body (this gptqd "
                         "speaks protocol version %d)", GPTQD__VERSION__PROTOCOL_VERSION);
    }
}
