/* model/checkpoint.c: model folder writer: GPTQ checkpoints and float HF
 * folders (see checkpoint.h). */
#include "model/checkpoint.h"

#include "quant/ggml_blocks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/dtype.h"
#include "common/file.h"
#include "kernels/linear.h"
#include "model/safetensors.h"

typedef struct save_ctx {
    gptq_st_writer *w;
    gptq_dtype dtype;      /* of the float tensors */
    int bits;              /* 0: a float model, every linear dense */
    int v2;                /* qzeros as gptq_v2 (zeros as they are), not v1 (zero-1) */
    void **owned;          /* converted buffers, freed after the write */
    size_t n_owned, cap_owned;
    char **names;          /* tensor names, alive until the write */
    size_t n_names, cap_names;
} save_ctx;

static int keep(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        void **a = realloc(*arr, nc * sizeof *a);
        if (!a)
            return -1;
        *arr = a;
        *cap = nc;
    }
    (*arr)[(*n)++] = p;
    return 0;
}

static const char *keep_name(save_ctx *c, const char *base, const char *suffix)
{
    size_t len = strlen(base) + strlen(suffix) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    snprintf(s, len, "%s%s", base, suffix);
    if (keep((void ***)&c->names, &c->n_names, &c->cap_names, s)) {
        free(s);
        return NULL;
    }
    return s;
}

static gptq_status add_tensor(save_ctx *c, const char *base, const char *suffix, gptq_dtype dt,
                              int ndim, const int64_t *shape, const void *data)
{
    const char *name = keep_name(c, base, suffix);
    if (!name)
        return gptq_fail(GPTQ_ERR_NOMEM, "checkpoint: out of memory");
    return gptq_st_writer_add(c->w, name, dt, ndim, shape, data);
}

static gptq_status visit(void *user, const char *name, const void *data, gptq_dtype dt, int ndim,
                         const int64_t *shape, const gptq_linear *L)
{
    save_ctx *c = user;
    if (!L) {
        size_t n = 1;
        for (int i = 0; i < ndim; i++)
            n *= (size_t)shape[i];
        if (dt == c->dtype) /* stored as resident: no conversion */
            return add_tensor(c, name, "", dt, ndim, shape, data);
        /* through float32 (exact from 16 bits); rounded to nearest even when
         * narrowed */
        void *buf = malloc(n * (sizeof(float) + (c->dtype != GPTQ_DT_F32 ? sizeof(uint16_t) : 0)));
        if (!buf || keep(&c->owned, &c->n_owned, &c->cap_owned, buf)) {
            free(buf);
            return gptq_fail(GPTQ_ERR_NOMEM, "checkpoint: out of memory");
        }
        float *f = buf;
        if (gptq_dtype_to_f32(dt, data, f, n) != 0)
            return gptq_fail(GPTQ_ERR_ARG, "checkpoint: '%s' has dtype %s", name,
                             gptq_dtype_name(dt));
        if (c->dtype == GPTQ_DT_F32)
            return add_tensor(c, name, "", c->dtype, ndim, shape, f);
        uint16_t *h = (uint16_t *)(f + n);
        for (size_t i = 0; i < n; i++)
            h[i] = c->dtype == GPTQ_DT_BF16 ? gptq_f32_to_bf16(f[i]) : gptq_f32_to_f16(f[i]);
        return add_tensor(c, name, "", c->dtype, ndim, shape, h);
    }
    if (!c->bits)
        return gptq_fail(GPTQ_ERR_ARG, "save: '%s' is packed; a float model folder needs every "
                         "linear dense", name);
    if (L->P.bits != c->bits)
        return gptq_fail(GPTQ_ERR_ARG, "checkpoint: '%s' is packed with %d bits, the checkpoint "
                         "has %d", name, L->P.bits, c->bits);
    /* On disk always v1, in the checkpoint's column order: an act-order
     * linear is converted back (its arrays live until the file is written). */
    gptq_packed v1 = L->P;
    const gptq_packed *P = &L->P;
    if (L->perm) {
        gptq_status st = gptq_linear_to_v1(L, &v1);
        if (st != GPTQ_OK)
            return gptq_fail_context(st, "checkpoint: '%s'", name);
        void *arrays[4] = {v1.qweight, v1.qzeros, v1.scales, v1.g_idx};
        for (int i = 0; i < 4; i++)
            if (keep(&c->owned, &c->n_owned, &c->cap_owned, arrays[i])) {
                for (int k = i; k < 4; k++) /* keep() owns only what it took */
                    free(arrays[k]);
                return gptq_fail(GPTQ_ERR_NOMEM, "checkpoint: out of memory");
            }
        P = &v1;
    }
    const int64_t qw[2] = {(int64_t)P->cols * P->bits / 32, P->rows};
    const int64_t qz[2] = {P->groups, (int64_t)P->rows * P->bits / 32};
    const int32_t *qzeros = P->qzeros;
    if (c->v2) { /* a copy moved to v2 (the resident words stay v1) */
        size_t bytes = (size_t)qz[0] * (size_t)qz[1] * sizeof(int32_t);
        int32_t *z = malloc(bytes ? bytes : 1);
        if (!z || keep(&c->owned, &c->n_owned, &c->cap_owned, z)) {
            free(z);
            return gptq_fail(GPTQ_ERR_NOMEM, "checkpoint: out of memory");
        }
        memcpy(z, P->qzeros, bytes);
        gptq_status zst = gptq_qzeros_v1_to_v2(z, P->groups, P->rows, P->bits);
        if (zst != GPTQ_OK)
            return gptq_fail_context(zst, "checkpoint: '%s'", name);
        qzeros = z;
    }
    const int64_t sc[2] = {P->groups, P->rows};
    const int64_t gi[1] = {P->cols};
    gptq_status st;
    if ((st = add_tensor(c, name, ".qweight", GPTQ_DT_I32, 2, qw, P->qweight)) ||
        (st = add_tensor(c, name, ".qzeros", GPTQ_DT_I32, 2, qz, qzeros)) ||
        (st = add_tensor(c, name, ".scales", GPTQ_DT_F16, 2, sc, P->scales)) ||
        (st = add_tensor(c, name, ".g_idx", GPTQ_DT_I32, 1, gi, P->g_idx)))
        return st;
    return GPTQ_OK;
}

/* The shortest decimal that reads back as float f, as a double: JSON then
 * says 0.01, not 0.0099999997764825821 (float 0.01 widened). */
static double float_decimal(float f)
{
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return strtod(buf, NULL);
}

json_t *gptq_checkpoint_quant_config(const gptq_checkpoint_meta *meta)
{
    const gptq_quant_config *q = &meta->quant;
    json_t *m = json_pack("{s:[s], s:f, s:b, s:b, s:b, s:i}", "quantizer", "gptqd:" GPTQ_VERSION,
                          "damp_percent", float_decimal(q->damp), "static_groups", q->static_groups,
                          "true_sequential", meta->true_sequential, "mse", q->mse, "block_size",
                          q->block_size);
    return json_pack("{s:i, s:i, s:b, s:b, s:f, s:b, s:b, s:s, s:s, s:s, s:b, s:o}", "bits",
                     q->bits, "group_size", q->group_size, "desc_act", q->act_order, "sym", q->sym,
                     "damp_percent", float_decimal(q->damp), "true_sequential",
                     meta->true_sequential, "static_groups", q->static_groups, "quant_method",
                     "gptq", "checkpoint_format", meta->v2 ? "gptq_v2" : "gptq",
                     "model_file_base_name", "model", "mse",
                     q->mse, "meta", m);
}

static gptq_status write_json(int dirfd, const char *dir, const char *file, json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s/%s: out of memory", dir, file);
    gptq_hf_files one = {0};
    gptq_status st = gptq_hf_files_set(&one, file, text, strlen(text));
    free(text);
    if (!st)
        st = gptq_hf_files_write(&one, dirfd, dir, NULL);
    gptq_hf_files_free(&one);
    return st;
}

/* The marker that says a *.tmp.PID folder is a save of ours in progress:
 * gptqd removes such folders left by a crash when it starts. */
#define SAVE_MARKER ".gptqd-save"

/* Everything in the folder `name` of parentfd, then the folder (files
 * only: we made it, flat). */
static void remove_tree_at(int parentfd, const char *name)
{
    DIR *d =
        gptq_dir_stream(openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!d) {
        unlinkat(parentfd, name, AT_REMOVEDIR);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    unlinkat(parentfd, name, AT_REMOVEDIR);
}

static const char *dtype_json(gptq_dtype dt)
{
    return dt == GPTQ_DT_BF16 ? "bfloat16" : dt == GPTQ_DT_F32 ? "float32" : "float16";
}

gptq_status gptq_checkpoint_save(const gptq_model *m, const gptq_hf_files *files,
                                 const gptq_checkpoint_meta *meta, gptq_dtype float_dtype,
                                 const char *dir)
{
    char parent[4096];
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    const char *slash = memrchr(dir, '/', len);
    if (len >= sizeof parent)
        return gptq_fail(GPTQ_ERR_ARG, "checkpoint folder path is too long");
    snprintf(parent, sizeof parent, "%.*s", slash ? (int)(slash == dir ? 1 : slash - dir) : 1,
             slash ? dir : ".");
    char name[4096];
    snprintf(name, sizeof name, "%.*s", (int)(len - (size_t)(slash ? slash + 1 - dir : 0)),
             slash ? slash + 1 : dir);
    int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        return gptq_fail(errno == ENOENT ? GPTQ_ERR_NOTFOUND : GPTQ_ERR_IO, "%s: %s", parent,
                         strerror(errno));
    gptq_status st = gptq_checkpoint_save_at(m, files, meta, float_dtype, pfd, name, dir);
    close(pfd);
    return st;
}

gptq_status gptq_checkpoint_save_at(const gptq_model *m, const gptq_hf_files *files,
                                    const gptq_checkpoint_meta *meta, gptq_dtype float_dtype,
                                    int parentfd, const char *name, const char *dir)
{
    char tmp[4096];
    struct stat sb;
    save_ctx c = {.bits = meta ? meta->quant.bits : 0, .v2 = meta && meta->v2};
    gptq_kept fused = {0}; /* a fused family's joined tensors, until written */
    json_t *config = NULL, *qc = NULL;
    gptq_status st = GPTQ_OK;
    int tfd = -1;
    if (strlen(name) > 3000 || !name[0] || strchr(name, '/') || !strcmp(name, ".") ||
        !strcmp(name, ".."))
        return gptq_fail(GPTQ_ERR_ARG, "%s: not a folder name to create", dir);
    if (fstatat(parentfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
        return gptq_fail(GPTQ_ERR_EXISTS, "%s already exists: choose a new folder or remove it",
                         dir);
    const gptq_model_config *mc = gptq_model_get_config(m);
    int bl;
    gptq_linear_id bw;
    if (gptq_model_first_block_linear(m, &bl, &bw) == 0) {
        int type;
        gptq_model_linear_blocks(m, bl, bw, &type);
        return gptq_fail(GPTQ_ERR_UNSUPPORTED, "%s: layer %d %s holds GGUF %s blocks (a block "
                         "grid's scales and minimums), which no GPTQ checkpoint or float folder "
                         "holds as they are: save it as a .gguf file", dir, bl,
                         gptq_linear_name(bw), gptq_ggml_type_name(type));
    }
    /* a GPTQ checkpoint holds every decoder linear packed: asked of the
     * model, whatever names the family's files give them */
    for (int l = 0; meta && l < mc->num_hidden_layers; l++)
        for (int w = 0; w < GPTQ_LIN_COUNT; w++)
            if (gptq_config_has_linear(mc, (gptq_linear_id)w) &&
                !gptq_model_linear_packed(m, l, (gptq_linear_id)w)) {
                char path[128];
                return gptq_fail(GPTQ_ERR_ARG, "checkpoint: layer %d %s is not quantized; a "
                                 "GPTQ checkpoint needs every decoder linear packed", l,
                                 gptq_linear_file_path(mc, (gptq_linear_id)w, path,
                                                       sizeof path));
            }
    const gptq_dtype src_dt = mc->torch_dtype;
    if (float_dtype == GPTQ_DT_COUNT) /* the model's own; a GPTQ checkpoint's are 16-bit */
        float_dtype = meta && src_dt == GPTQ_DT_F32 ? GPTQ_DT_F16 : src_dt;
    if (float_dtype != GPTQ_DT_F16 && float_dtype != GPTQ_DT_BF16 && float_dtype != GPTQ_DT_F32)
        return gptq_fail(GPTQ_ERR_ARG, "save: dtype %s; use F16, BF16 or F32",
                         gptq_dtype_name(float_dtype));
    c.dtype = float_dtype;
    size_t config_len = 0;
    const char *config_text = gptq_hf_files_get(files, "config.json", &config_len);
    json_error_t jerr;
    if (!config_text || !(config = json_loadb(config_text, config_len, JSON_REJECT_DUPLICATES,
                                              &jerr)) || !json_is_object(config)) {
        json_decref(config);
        return gptq_fail(GPTQ_ERR_FORMAT, "save: the model's config.json is %s",
                         config_text ? "not a JSON object" : "missing");
    }
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", name, (int)getpid());
    if (mkdirat(parentfd, tmp, 0755) != 0) {
        json_decref(config);
        return gptq_fail(GPTQ_ERR_IO, "%s.tmp.%d: cannot create: %s", dir, (int)getpid(),
                         strerror(errno));
    }
    tfd = openat(parentfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int marker = tfd >= 0 ? openat(tfd, SAVE_MARKER, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)
                          : -1;
    if (marker < 0) {
        st = gptq_fail(GPTQ_ERR_IO, "%s.tmp.%d: %s", dir, (int)getpid(), strerror(errno));
        goto fail;
    }
    close(marker);

    /* config.json: the model's, with quantization_config (or without any) */
    if (meta) {
        if (!(qc = gptq_checkpoint_quant_config(meta))) {
            st = gptq_fail(GPTQ_ERR_NOMEM, "checkpoint: out of memory");
            goto fail;
        }
        json_object_set(config, "quantization_config", qc);
    } else {
        json_object_del(config, "quantization_config");
    }
    json_object_set_new(config, "torch_dtype", json_string(dtype_json(c.dtype)));
    const char *const ours[] = {"config.json", "quantize_config.json", NULL};
    char label[4200], path[4300];
    snprintf(label, sizeof label, "%s.tmp.%d", dir, (int)getpid());
    if ((st = write_json(tfd, label, "config.json", config)) ||
        (qc && (st = write_json(tfd, label, "quantize_config.json", qc))) ||
        (st = gptq_hf_files_write(files, tfd, label, ours)))
        goto fail;

    if ((st = gptq_st_writer_create(&c.w)) ||
        (st = gptq_model_foreach_file_tensor(m, visit, &c, &fused, 1)) ||
        (st = gptq_st_writer_set_metadata(c.w, "format", "pt")))
        goto fail;
    snprintf(path, sizeof path, "%s/model.safetensors", label);
    if ((st = gptq_st_writer_write_at(c.w, tfd, "model.safetensors", path)))
        goto fail;
    if (fsync(tfd) != 0 || renameat(parentfd, tmp, parentfd, name) != 0) {
        st = gptq_fail(GPTQ_ERR_IO, "rename %s -> %s: %s", label, dir, strerror(errno));
        goto fail;
    }
    unlinkat(tfd, SAVE_MARKER, 0); /* the folder is final now */
    fsync(parentfd);
    goto done;
fail:
    remove_tree_at(parentfd, tmp);
done:
    if (tfd >= 0)
        close(tfd);
    gptq_st_writer_destroy(c.w);
    gptq_kept_free(&fused);
    for (size_t i = 0; i < c.n_owned; i++)
        free(c.owned[i]);
    for (size_t i = 0; i < c.n_names; i++)
        free(c.names[i]);
    free(c.owned);
    free(c.names);
    json_decref(config);
    json_decref(qc);
    return st;
}

/* A folder "<anything>.tmp.<pid>" holding the marker, of a process that no
 * longer runs and owned by us. */
static int stale_save(int dirfd, const char *name)
{
    const char *dot = strstr(name, ".tmp.");
    if (!dot)
        return 0;
    char *end;
    const char *digits;
    while ((digits = strstr(dot + 1, ".tmp.")))
        dot = digits;
    long pid = strtol(dot + 5, &end, 10);
    struct stat sb;
    if (*end || pid <= 0 || end == dot + 5)
        return 0;
    if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(sb.st_mode) ||
        sb.st_uid != geteuid())
        return 0;
    if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
        return 0;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int marked = faccessat(fd, SAVE_MARKER, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    close(fd);
    return marked;
}

static int clean_in(int dirfd, int depth)
{
    int removed = 0;
    DIR *d = gptq_dir_stream(dup(dirfd));
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (stale_save(dirfd, e->d_name)) {
            remove_tree_at(dirfd, e->d_name);
            removed++;
            continue;
        }
        if (depth > 0 && e->d_type == DT_DIR) {
            int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                removed += clean_in(sub, depth - 1);
                close(sub);
            }
        }
    }
    closedir(d);
    return removed;
}

int gptq_checkpoint_clean_stale(const char *root, int depth)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int removed = clean_in(fd, depth);
    close(fd);
    return removed;
}
