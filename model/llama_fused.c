/* model/llama_fused.c: a model's tensors as its family's files hold them:
 * under the family's names (gptq_config_file_name: OPT's model.decoder.*),
 * and fused where the family fuses.
 *
 * gptqd runs every family with separate q/k/v and gate/up linears. A family
 * whose files fuse them (gptq_config_fused: Phi-3's self_attn.qkv_proj and
 * mlp.gate_up_proj) reads each part as rows of the fused tensor
 * (model/source.c) and is written back fused here: the walk of
 * gptq_model_foreach_tensor, with each group of parts joined into one
 * tensor (rows concatenated) or one packed linear (v1 arrays concatenated
 * along the output rows, zero points as one bit stream, the g_idx all
 * parts share). */
#include "model/llama_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/linear.h"

typedef struct part {
    const void *data; /* dense weight, or NULL */
    gptq_dtype dt;
    int64_t rows, cols;
    const gptq_linear *L; /* packed, or NULL */
    const float *bias;
} part;

typedef struct fuser {
    const gptq_model_config *cfg;
    int concat;            /* parts concatenated (llama.cpp's layout), not the family's */
    gptq_tensor_visit visit;
    void *user;
    gptq_kept *keep;       /* where joined copies go: the caller's, or own (freed per group) */
    gptq_kept own;
    const gptq_fused_group *g; /* the group whose parts are held, or NULL */
    int layer;
    part parts[3];
} fuser;

static gptq_status kept(gptq_kept *k, void *p)
{
    if (!p)
        return gptq_fail(GPTQ_ERR_NOMEM, "fused tensors: out of memory");
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 16;
        void **grown = realloc(k->p, cap * sizeof *grown);
        if (!grown) {
            free(p);
            return gptq_fail(GPTQ_ERR_NOMEM, "fused tensors: out of memory");
        }
        k->p = grown, k->cap = cap;
    }
    k->p[k->n++] = p;
    return GPTQ_OK;
}

void gptq_kept_free(gptq_kept *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->p[i]);
    free(k->p);
    memset(k, 0, sizeof *k);
}

/* The parts' packed linears as one v1 linear (perm NULL: checkpoint column
 * order), its arrays in f->keep. */
static gptq_status fuse_packed(fuser *f, const gptq_fused_group *g, const char *name,
                               gptq_linear **out)
{
    gptq_packed v[3] = {{0}};
    gptq_status st = GPTQ_OK;
    int rows = 0;
    for (int i = 0; i < g->n && !st; i++) {
        st = gptq_linear_to_v1(f->parts[i].L, &v[i]);
        rows += v[i].rows;
        if (!st && i && (v[i].bits != v[0].bits || v[i].cols != v[0].cols ||
                         v[i].groups != v[0].groups ||
                         memcmp(v[i].g_idx, v[0].g_idx, (size_t)v[0].cols * sizeof(int32_t))))
            st = gptq_fail(GPTQ_ERR_ARG, "'%s': its parts differ in bits, groups or g_idx, so "
                           "they cannot be stored as one linear", name);
    }
    gptq_linear *L = NULL;
    if (!st) {
        const int bits = v[0].bits, cols = v[0].cols, ng = v[0].groups;
        const size_t words = (size_t)cols * bits / 32;
        L = calloc(1, sizeof *L);
        gptq_packed *P = L ? &L->P : NULL;
        if ((st = kept(f->keep, L)) ||
            (st = kept(f->keep, P->qweight = malloc(words * rows * sizeof(int32_t)))) ||
            (st = kept(f->keep, P->qzeros = calloc((size_t)ng * rows * bits / 32 + 1,
                                                   sizeof(int32_t)))) ||
            (st = kept(f->keep, P->scales = malloc((size_t)ng * rows * sizeof(uint16_t)))) ||
            (st = kept(f->keep, P->g_idx = malloc((size_t)cols * sizeof(int32_t)))))
            L = NULL;
        const int gi = (int)(g - gptq_fused_groups);
        for (int i = 0; L && i < g->n; i++) {
            const int r = v[i].rows;
            for (int j = 0; j < r; j++) { /* output row j of the part: fused row fr */
                const size_t fr = (size_t)gptq_config_fused_row(f->cfg, gi, i, f->concat, j);
                for (size_t w = 0; w < words; w++)
                    P->qweight[w * rows + fr] = v[i].qweight[w * r + j];
                for (int k = 0; k < ng; k++) {
                    P->scales[(size_t)k * rows + fr] = v[i].scales[(size_t)k * r + j];
                    gptq_bits_put(P->qzeros + (size_t)k * rows * bits / 32, 1, bits, fr,
                                  gptq_bits_get(v[i].qzeros + (size_t)k * r * bits / 32, 1,
                                                bits, (size_t)j));
                }
            }
        }
        if (L) {
            memcpy(P->g_idx, v[0].g_idx, (size_t)cols * sizeof(int32_t));
            P->bits = bits, P->rows = rows, P->cols = cols, P->groups = ng;
            P->group_size = v[0].group_size;
        }
    }
    for (int i = 0; i < g->n; i++)
        gptq_packed_free(&v[i]);
    *out = L;
    return st;
}

/* Join the held parts and visit them under the fused name. */
static gptq_status flush(fuser *f)
{
    const gptq_fused_group *g = f->g;
    if (!g)
        return GPTQ_OK;
    f->g = NULL;
    const int gi = (int)(g - gptq_fused_groups);
    /* names kept too: a writer may hold them until it writes */
    char *name, *wname, *bname;
    gptq_status st;
    if ((st = kept(f->keep, name = malloc(192))) || (st = kept(f->keep, wname = malloc(200))) ||
        (st = kept(f->keep, bname = malloc(200))))
        return st;
    snprintf(name, 192, "model.layers.%d.%s", f->layer, g->fused);
    snprintf(wname, 200, "%s.weight", name);
    snprintf(bname, 200, "%s.bias", name);
    int packed = 0, dense = 0, biases = 0;
    int64_t rows = 0;
    for (int i = 0; i < g->n; i++) {
        packed += f->parts[i].L != NULL, dense += f->parts[i].data != NULL;
        biases += f->parts[i].bias != NULL;
        rows += f->parts[i].rows;
    }
    if (!(packed == g->n || dense == g->n) || (biases && biases != g->n))
        return gptq_fail(GPTQ_ERR_ARG, "'%s': its parts are not all packed, or not all dense, "
                         "or not all with a bias: they cannot be stored as one tensor", name);
    const int64_t cols = f->parts[0].cols;
    if (packed) {
        gptq_linear *L;
        if ((st = fuse_packed(f, g, name, &L)))
            return st;
        int64_t shape[2] = {rows, cols};
        st = f->visit(f->user, name, NULL, GPTQ_DT_I32, 2, shape, L);
    } else {
        /* one dtype for all: the parts' own, or float32 when they differ */
        gptq_dtype dt = f->parts[0].dt;
        for (int i = 1; i < g->n; i++)
            if (f->parts[i].dt != dt)
                dt = GPTQ_DT_F32;
        const size_t es = gptq_dtype_size(dt);
        char *buf = malloc((size_t)(rows * cols) * es);
        if ((st = kept(f->keep, buf)))
            return st;
        for (int i = 0; i < g->n; i++) {
            const part *p = &f->parts[i];
            const size_t pes = gptq_dtype_size(p->dt);
            for (int64_t j = 0; j < p->rows; j++) {
                char *dst = buf + (size_t)gptq_config_fused_row(f->cfg, gi, i, f->concat, j) * cols * es;
                const char *src = (const char *)p->data + (size_t)j * cols * pes;
                if (p->dt == dt)
                    memcpy(dst, src, (size_t)cols * es);
                else if (gptq_dtype_to_f32(p->dt, src, (float *)dst, (size_t)cols))
                    return gptq_fail(GPTQ_ERR_ARG, "'%s': a part has dtype %s", name,
                                     gptq_dtype_name(p->dt));
            }
        }
        int64_t shape[2] = {rows, cols};
        st = f->visit(f->user, wname, buf, dt, 2, shape, NULL);
    }
    if (st || !biases)
        return st;
    float *b = malloc((size_t)rows * sizeof *b);
    if ((st = kept(f->keep, b)))
        return st;
    for (int i = 0; i < g->n; i++)
        for (int64_t j = 0; j < f->parts[i].rows; j++)
            b[gptq_config_fused_row(f->cfg, gi, i, f->concat, j)] = f->parts[i].bias[j];
    int64_t bshape[1] = {rows};
    return f->visit(f->user, bname, b, GPTQ_DT_F32, 1, bshape, NULL);
}

static gptq_status flush_group(fuser *f);

static gptq_status fuse_visit(void *user, const char *name, const void *data, gptq_dtype dt,
                              int ndim, const int64_t *shape, const gptq_linear *L)
{
    fuser *f = user;
    int layer, at = 0;
    if (sscanf(name, "model.layers.%d.%n", &layer, &at) == 1 && at) {
        const char *rest = name + at;
        for (size_t gi = 0; gi < GPTQ_FUSED_GROUPS; gi++)
            for (int i = 0; i < gptq_fused_groups[gi].n && gptq_config_fuses(f->cfg, (int)gi);
                 i++) {
                size_t n = strlen(gptq_fused_groups[gi].parts[i]);
                const char *suffix = rest + n;
                if (strncmp(rest, gptq_fused_groups[gi].parts[i], n) ||
                    (*suffix && strcmp(suffix, ".weight") && strcmp(suffix, ".bias")))
                    continue;
                gptq_status st;
                if ((f->g != &gptq_fused_groups[gi] || f->layer != layer) && (st = flush_group(f)))
                    return st;
                if (!f->g) {
                    f->g = &gptq_fused_groups[gi], f->layer = layer;
                    memset(f->parts, 0, sizeof f->parts);
                }
                part *p = &f->parts[i];
                if (!strcmp(suffix, ".bias")) {
                    p->bias = data;
                } else {
                    p->data = L ? NULL : data, p->L = L, p->dt = dt;
                    p->rows = shape[0], p->cols = ndim == 2 ? shape[1] : 0;
                }
                return GPTQ_OK;
            }
    }
    gptq_status st = flush_group(f);
    return st ? st : f->visit(f->user, name, data, dt, ndim, shape, L);
}

/* flush, its copies freed after the visit unless the caller keeps them */
static gptq_status flush_group(fuser *f)
{
    gptq_status st = flush(f);
    if (f->keep == &f->own)
        gptq_kept_free(&f->own);
    return st;
}

/* The caller's visit, under the family's names. */
typedef struct renamer {
    const gptq_model_config *cfg;
    gptq_tensor_visit visit;
    void *user;
} renamer;

static gptq_status rename_visit(void *user, const char *name, const void *data, gptq_dtype dt,
                                int ndim, const int64_t *shape, const gptq_linear *L)
{
    const renamer *r = user;
    char file[256];
    return r->visit(r->user, gptq_config_file_name(r->cfg, name, file, sizeof file), data, dt,
                    ndim, shape, L);
}

gptq_status gptq_model_foreach_file_tensor(const gptq_model *m, gptq_tensor_visit visit,
                                           void *user, gptq_kept *keep, int family_names)
{
    renamer r = {.cfg = &m->cfg, .visit = visit, .user = user};
    gptq_tensor_visit v = family_names ? rename_visit : visit;
    void *u = family_names ? (void *)&r : user;
    if (!gptq_config_fused(&m->cfg))
        return gptq_model_foreach_tensor(m, v, u);
    fuser f = {.cfg = &m->cfg, .concat = !family_names, .visit = v, .user = u, .keep = keep};
    if (!keep)
        f.keep = &f.own;
    gptq_status st = gptq_model_foreach_tensor(m, fuse_visit, &f);
    if (!st)
        st = flush_group(&f);
    gptq_kept_free(&f.own);
    return st;
}
