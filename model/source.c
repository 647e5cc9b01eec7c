/* model/source.c: HF folders and GGUF files behind one tensor lookup (see
 * source.h). */
#include "model/source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "model/gguf.h"
#include "model/gguf_hf.h"
#include "model/safetensors.h"

struct gptq_model_source {
    char *label;
    gptq_hf_files files;
    gptq_model_config cfg;
    gptq_safetensors **st; /* HF folder: the weight files */
    int n_st;
    gptq_gguf *gguf;       /* GGUF file */
};

static gptq_status errno_status(int err)
{
    return err == ENOENT || err == ENOTDIR ? GPTQ_ERR_NOTFOUND
           : err == EACCES || err == EPERM ? GPTQ_ERR_PERMISSION
                                           : GPTQ_ERR_IO;
}

/* One safetensors file of the folder. */
static gptq_status open_st(gptq_model_source *s, int rootfd, const char *dir, const char *name,
                           gptq_safetensors **out)
{
    char path[8192];
    int fd;
    snprintf(path, sizeof path, "%s/%s", s->label, name);
    gptq_status st = gptq_file_open_in(rootfd, dir, name, &fd);
    if (st)
        return st;
    st = gptq_safetensors_open_fd(fd, path, out);
    close(fd);
    return st;
}

/* The weight files of a folder: model.safetensors, or the distinct shards
 * named by model.safetensors.index.json's weight_map (plain file names in
 * the folder only). */
static gptq_status open_weights(gptq_model_source *s, int rootfd, const char *dir)
{
    gptq_status st;
    char path[4096], *index = NULL;
    size_t len;
    json_t *root = NULL;
    int fd;
    st = gptq_file_open_in(rootfd, dir, "model.safetensors.index.json", &fd);
    if (st == GPTQ_ERR_NOTFOUND) {
        gptq_clear_error();
        s->st = calloc(1, sizeof *s->st);
        if (!s->st)
            return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", s->label);
        if ((st = open_st(s, rootfd, dir, "model.safetensors", &s->st[0])))
            return st == GPTQ_ERR_NOTFOUND
                       ? gptq_fail(st, "%s: no model.safetensors or model.safetensors.index.json",
                                   s->label)
                       : st;
        s->n_st = 1;
        return GPTQ_OK;
    }
    if (st)
        return st;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", s->label);
    st = gptq_file_read_fd(fd, path, GPTQ_HF_FILE_MAX_BYTES, &index, &len);
    close(fd);
    if (st)
        return st;
    json_error_t jerr;
    root = json_loadb(index, len, 0, &jerr);
    free(index);
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map) || json_object_size(map) == 0) {
        json_decref(root);
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: %s", path,
                         root ? "weight_map is missing or empty" : "not valid JSON");
    }
    s->st = calloc(json_object_size(map), sizeof *s->st);
    if (!s->st) {
        json_decref(root);
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", s->label);
    }
    const char *tensor;
    json_t *file;
    json_object_foreach(map, tensor, file) {
        const char *name = json_string_value(file);
        if (!name || !*name || strchr(name, '/') || !strcmp(name, "..") || !strcmp(name, ".")) {
            st = gptq_fail(GPTQ_ERR_FORMAT,
                           "%s: weight_map[\"%.96s\"] must be a file name in the model folder",
                           path, tensor);
            break;
        }
        int seen = 0;
        for (int i = 0; i < s->n_st && !seen; i++) {
            const char *p = gptq_safetensors_path(s->st[i]);
            seen = strcmp(strrchr(p, '/') + 1, name) == 0;
        }
        if (seen)
            continue;
        if ((st = open_st(s, rootfd, dir, name, &s->st[s->n_st])))
            break;
        s->n_st++;
    }
    json_decref(root);
    return st;
}

static gptq_status parse_config(gptq_model_source *s)
{
    size_t len;
    char what[4200];
    const char *text = gptq_hf_files_get(&s->files, "config.json", &len);
    snprintf(what, sizeof what, "%s/config.json", s->label);
    gptq_status st = gptq_config_parse(text, len, what, &s->cfg);
    if (st)
        return st;
    if ((text = gptq_hf_files_get(&s->files, "generation_config.json", &len))) {
        snprintf(what, sizeof what, "%s/generation_config.json", s->label);
        st = gptq_config_merge_generation(&s->cfg, text, len, what);
    }
    return st;
}

static int is_gguf(int fd)
{
    char magic[4];
    return pread(fd, magic, 4, 0) == 4 && memcmp(magic, "GGUF", 4) == 0;
}

/* The model at rel: a folder or a regular file (opened beneath rootfd
 * unless it is AT_FDCWD). */
static gptq_status open_top(int rootfd, const char *rel, int *fd, struct stat *sb)
{
    gptq_status st;
    *fd = -1;
    if (rootfd == AT_FDCWD) {
        *fd = open(rel, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (*fd < 0) {
            int err = errno;
            return gptq_fail(errno_status(err), "%s: %s", rel, strerror(err));
        }
    } else if ((st = gptq_open_beneath(rootfd, rel, -1, fd))) {
        return st;
    }
    if (fstat(*fd, sb) != 0) {
        int err = errno;
        close(*fd);
        *fd = -1;
        return gptq_fail(GPTQ_ERR_IO, "%s: %s", rel, strerror(err));
    }
    if (!S_ISDIR(sb->st_mode) && !S_ISREG(sb->st_mode)) {
        close(*fd);
        *fd = -1;
        return gptq_fail(GPTQ_ERR_IO, "%s: neither a model folder nor a GGUF file", rel);
    }
    int fl = fcntl(*fd, F_GETFL);
    if (fl >= 0)
        fcntl(*fd, F_SETFL, fl & ~O_NONBLOCK);
    return GPTQ_OK;
}

gptq_status gptq_source_open_in(int rootfd, const char *rel, const char *label,
                                gptq_model_source **out)
{
    gptq_status st;
    *out = NULL;
    gptq_model_source *s = calloc(1, sizeof *s);
    if (!s || !(s->label = strdup(label))) {
        free(s);
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory", label);
    }
    int fd;
    struct stat sb;
    if ((st = open_top(rootfd, rel, &fd, &sb)))
        goto fail;
    if (S_ISDIR(sb.st_mode)) {
        if ((st = gptq_hf_files_read_in(rootfd, rel, label, &s->files)) ||
            (st = parse_config(s)) || (st = open_weights(s, rootfd, rel)))
            goto fail;
    } else if (is_gguf(fd)) {
        if ((st = gptq_gguf_open_fd(fd, label, &s->gguf)) ||
            (st = gptq_gguf_hf_files(s->gguf, &s->files)) || (st = parse_config(s)))
            goto fail;
    } else {
        st = gptq_fail(GPTQ_ERR_FORMAT, "%s: neither a model folder nor a GGUF file", label);
        goto fail;
    }
    close(fd);
    *out = s;
    return GPTQ_OK;
fail:
    if (fd >= 0)
        close(fd);
    gptq_source_free(s);
    return st;
}

gptq_status gptq_source_open(const char *path, gptq_model_source **out)
{
    return gptq_source_open_in(AT_FDCWD, path, path, out);
}

/* The sizes of the folder's *.safetensors files, as the runtime will hold
 * them: weight matrices keep their dtype (only norms and biases, a few
 * vectors, widen to float32: left out). */
static uint64_t folder_estimate(int dirfd, const gptq_model_config *cfg)
{
    DIR *d = gptq_dir_stream(dup(dirfd));
    uint64_t total = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        struct stat sb;
        if (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors") &&
            fstatat(dirfd, e->d_name, &sb, 0) == 0 && S_ISREG(sb.st_mode))
            total += (uint64_t)sb.st_size;
    }
    closedir(d);
    (void)cfg;
    return total;
}

/* Bytes the runtime holds for a GGUF tensor: 16-bit matrices as stored,
 * everything else as float32 (dequantized). */
static uint64_t gguf_resident(const gptq_gguf_tensor *g)
{
    int half = g->n_dims == 2 && (g->type == GPTQ_GGML_F16 || g->type == GPTQ_GGML_BF16);
    return (uint64_t)g->numel * (half ? 2 : sizeof(float));
}

gptq_status gptq_source_estimate_in(int rootfd, const char *rel, const char *label,
                                    gptq_model_config *cfg, uint64_t *bytes)
{
    gptq_status st;
    char *text = NULL, what[4200];
    size_t len = 0;
    int fd, cfd = -1;
    struct stat sb;
    *bytes = 0;
    if ((st = open_top(rootfd, rel, &fd, &sb)))
        return st;
    if (S_ISDIR(sb.st_mode)) {
        snprintf(what, sizeof what, "%s/config.json", label);
        if ((st = gptq_file_open_in(rootfd, rel, "config.json", &cfd)) ||
            (st = gptq_file_read_fd(cfd, what, GPTQ_HF_FILE_MAX_BYTES, &text, &len)) ||
            (st = gptq_config_parse(text, len, what, cfg)))
            goto done;
        struct stat ws;
        if (fstatat(fd, "model.safetensors", &ws, 0) != 0 &&
            fstatat(fd, "model.safetensors.index.json", &ws, 0) != 0) {
            st = gptq_fail(GPTQ_ERR_NOTFOUND, "%s: no model.safetensors or "
                           "model.safetensors.index.json", label);
            goto done;
        }
        *bytes = folder_estimate(fd, cfg);
    } else if (is_gguf(fd)) {
        gptq_gguf *g = NULL;
        snprintf(what, sizeof what, "%s (config)", label);
        if (!(st = gptq_gguf_open_fd(fd, label, &g)) && !(st = gptq_gguf_hf_config(g, &text, &len)))
            st = gptq_config_parse(text, len, what, cfg);
        for (size_t i = 0; !st && i < gptq_gguf_tensor_count(g); i++)
            *bytes += gguf_resident(gptq_gguf_tensor_at(g, i));
        gptq_gguf_close(g);
    } else {
        st = gptq_fail(GPTQ_ERR_FORMAT, "%s: neither a model folder nor a GGUF file", label);
    }
done:
    free(text);
    if (cfd >= 0)
        close(cfd);
    close(fd);
    return st;
}

gptq_status gptq_source_estimate(const char *path, gptq_model_config *cfg, uint64_t *bytes)
{
    return gptq_source_estimate_in(AT_FDCWD, path, path, cfg, bytes);
}

void gptq_source_free(gptq_model_source *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_st; i++)
        gptq_safetensors_close(s->st[i]);
    free(s->st);
    gptq_gguf_close(s->gguf);
    gptq_hf_files_free(&s->files);
    free(s->label);
    free(s);
}

int gptq_source_is_gguf(const gptq_model_source *s) { return s->gguf != NULL; }
const char *gptq_source_label(const gptq_model_source *s) { return s->label; }
const gptq_hf_files *gptq_source_files(const gptq_model_source *s) { return &s->files; }
const gptq_model_config *gptq_source_config(const gptq_model_source *s) { return &s->cfg; }

/* Bytes the runtime holds for one stored tensor: a packed linear's integer
 * tensors and fp16 scales as stored; matrices (ndim 2) of 16-bit floats as
 * stored (model/llama_load.c keeps them); other floats as float32. */
static uint64_t resident(const char *name, gptq_dtype dt, int ndim, int64_t numel, uint64_t bytes)
{
    size_t n = strlen(name);
    if (dt == GPTQ_DT_I32 || (n > 7 && !strcmp(name + n - 7, ".scales")))
        return bytes;
    if (ndim == 2 && (dt == GPTQ_DT_F16 || dt == GPTQ_DT_BF16))
        return (uint64_t)numel * 2;
    return (uint64_t)numel * sizeof(float);
}

uint64_t gptq_source_resident_bytes(const gptq_model_source *s)
{
    uint64_t total = 0;
    if (s->gguf)
        for (size_t i = 0; i < gptq_gguf_tensor_count(s->gguf); i++)
            total += gguf_resident(gptq_gguf_tensor_at(s->gguf, i));
    for (int i = 0; i < s->n_st; i++)
        for (size_t k = 0; k < gptq_safetensors_count(s->st[i]); k++) {
            const gptq_st_tensor *t = gptq_safetensors_at(s->st[i], k);
            total += resident(t->name, t->dtype, t->ndim, t->numel, t->bytes);
        }
    return total;
}

static int find_stored(const gptq_model_source *s, const char *name, gptq_source_tensor *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < s->n_st; i++) {
        const gptq_st_tensor *x = gptq_safetensors_find(s->st[i], name);
        if (!x)
            continue;
        if (x->ndim > 4)
            return 0;
        *t = (gptq_source_tensor){.name = x->name, .dtype = x->dtype, .ndim = x->ndim,
                                  .numel = x->numel, .data = x->data, .bytes = x->bytes,
                                  .impl_ = x};
        memcpy(t->shape, x->shape, sizeof t->shape);
        return 1;
    }
    if (!s->gguf)
        return 0;
    int permute = 0;
    const gptq_gguf_tensor *g = gptq_gguf_hf_tensor(s->gguf, &s->cfg, name, &permute);
    if (!g)
        return 0;
    t->name = g->name;
    /* 16-bit floats keep their type (gptq_source_read_raw copies them);
     * every other type reads as float32 (dequantized) */
    t->dtype = g->type == GPTQ_GGML_F16    ? GPTQ_DT_F16
               : g->type == GPTQ_GGML_BF16 ? GPTQ_DT_BF16
                                           : GPTQ_DT_F32;
    t->ndim = g->n_dims;
    for (int d = 0; d < g->n_dims; d++)
        t->shape[d] = g->ne[g->n_dims - 1 - d]; /* ne[0] is the fastest: HF's last */
    t->numel = g->numel;
    t->bytes = (size_t)g->numel * gptq_dtype_size(t->dtype);
    t->impl_ = g;
    t->permute_heads_ = permute;
    return 1;
}


/* The stored tensor gptqd calls `name`: under the family's name, or that
 * name without the family's base-model prefix. A GGUF file is read under
 * gptqd's names (model/gguf_hf.c maps them to llama.cpp's). */
static int find_file(const gptq_model_source *s, const char *name, gptq_source_tensor *t)
{
    if (s->gguf)
        return find_stored(s, name, t);
    char buf[256];
    const char *f = gptq_config_file_name(&s->cfg, name, buf, sizeof buf);
    const char *base = gptq_config_base_prefix(&s->cfg);
    const size_t b = base ? strlen(base) : 0;
    return find_stored(s, f, t) || (b && !strncmp(f, base, b) && find_stored(s, f + b, t));
}

/* `name` as a part of a fused tensor: 1 and *t filled, else 0. */
static int find_part(const gptq_model_source *s, const char *name, gptq_source_tensor *t)
{
    int layer, at = 0;
    if (!gptq_config_fused(&s->cfg) || sscanf(name, "model.layers.%d.%n", &layer, &at) != 1 || !at)
        return 0;
    const char *rest = name + at;
    for (int i = 0; i < GPTQ_FUSED_GROUPS * 3; i++) {
        const int g = i / 3, k = i % 3;
        const gptq_fused_group *fg = &gptq_fused_groups[g];
        if (k >= fg->n || !gptq_config_fuses(&s->cfg, g))
            continue;
        size_t n = strlen(fg->parts[k]);
        if (strncmp(rest, fg->parts[k], n) || rest[n] != '.')
            continue;
        static const char *const suffixes[] = {"weight", "bias", "qweight", "scales", "qzeros"};
        const char *suffix = rest + n + 1;
        for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++)
            if (!strcmp(suffix, suffixes[k]))
                suffix = suffixes[k]; /* static: the part keeps it */
        char fname[192];
        snprintf(fname, sizeof fname, "model.layers.%d.%s.%s", layer, fg->fused, suffix);
        if (!find_file(s, fname, t))
            return 0;
        if (!strcmp(suffix, "g_idx"))
            return 1; /* one column order for all parts */
        int last = strcmp(suffix, "weight") && strcmp(suffix, "bias");
        if (last && strcmp(suffix, "qweight") && strcmp(suffix, "scales") &&
            strcmp(suffix, "qzeros"))
            return 0;
        int64_t start, rows, total, block, period;
        /* a GGUF holds llama.cpp's concatenated layout */
        gptq_config_fused_rows(&s->cfg, g, k, s->gguf != NULL, &start, &rows, &total, &block,
                               &period);
        const int axis = last ? t->ndim - 1 : 0;
        int64_t extent = t->shape[axis];
        if (!strcmp(suffix, "qzeros")) {
            /* zero points packed along the rows: bits = words * 32 / rows;
             * every run's rows * bits is a multiple of 32 (the packing
             * check the loader makes, and BLOOM's heads), so the parts
             * split on words. A fused tensor that does not fit leaves the
             * part's shape wrong, which the loader's shape check names. */
            int64_t bits = extent * 32 % total ? 0 : extent * 32 / total;
            if (block * bits % 32)
                return 1;
            start = start * bits / 32, rows = rows * bits / 32, total = extent;
            block = block * bits / 32, period = period * bits / 32;
        }
        if (extent != total || !block) /* the loader's shape check names the tensor */
            return 1;
        t->part_of_ = fg->fused;
        t->part_suffix_ = suffix;
        t->part_layer_ = layer;
        t->name = name;
        t->part_last_axis_ = last;
        t->part_start_ = start;
        t->part_block_ = block;
        t->part_period_ = period;
        t->shape[axis] = rows;
        t->numel = t->numel / extent * rows;
        t->bytes = (size_t)t->numel * gptq_dtype_size(t->dtype);
        t->data = NULL;
        return 1;
    }
    return 0;
}

int gptq_source_find(const gptq_model_source *s, const char *name, gptq_source_tensor *t)
{
    return find_file(s, name, t) || find_part(s, name, t);
}

/* Part t's values from the whole fused tensor: read (as f32 or as stored)
 * into a temporary, then its runs of rows (or columns) copied out. */
static gptq_status read_part(const gptq_model_source *s, const gptq_source_tensor *t, int f32,
                             void *out)
{
    gptq_source_tensor whole;
    char fname[192];
    snprintf(fname, sizeof fname, "model.layers.%d.%s.%s", t->part_layer_, t->part_of_,
             t->part_suffix_);
    if (!find_file(s, fname, &whole))
        return gptq_fail(GPTQ_ERR_NOTFOUND, "%s: '%s' is gone", s->label, fname);
    const size_t esize = f32 ? sizeof(float) : gptq_dtype_size(t->dtype);
    char *tmp = malloc((size_t)whole.numel * esize + 1);
    if (!tmp)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot allocate '%.96s'", s->label, whole.name);
    gptq_status st = f32 ? gptq_source_read_f32(s, &whole, (float *)tmp)
                         : gptq_source_read_raw(s, &whole, tmp);
    gptq_source_release(s, &whole);
    if (!st) {
        /* a row slice is one run of rows after another; a column slice
         * the runs of the part's columns in each row of the other axes */
        const int64_t cols = t->part_last_axis_ ? t->shape[t->ndim - 1] : t->numel,
                      wide = t->part_last_axis_ ? whole.shape[t->ndim - 1] : whole.numel,
                      step = t->part_last_axis_ ? 1 : whole.numel / whole.shape[0],
                      runs = t->shape[t->part_last_axis_ ? t->ndim - 1 : 0] / t->part_block_,
                      run = t->part_block_ * step;
        for (int64_t o = 0; o < t->numel / cols; o++)
            for (int64_t r = 0; r < runs; r++)
                memcpy((char *)out + (size_t)(o * cols + r * run) * esize,
                       tmp + (size_t)(o * wide + (t->part_start_ + r * t->part_period_) * step) *
                                 esize,
                       (size_t)run * esize);
    }
    free(tmp);
    return st;
}

gptq_status gptq_source_read_f32(const gptq_model_source *s, const gptq_source_tensor *t,
                                 float *out)
{
    if (t->part_of_)
        return read_part(s, t, 1, out);
    if (s->gguf && !t->data)
        return gptq_gguf_hf_read(s->gguf, t->impl_, t->permute_heads_, out);
    if (t->dtype != GPTQ_DT_F32 && t->dtype != GPTQ_DT_F16 && t->dtype != GPTQ_DT_BF16)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '%.96s' has dtype %s; weights must be F16, "
                         "BF16 or F32", s->label, t->name, gptq_dtype_name(t->dtype));
    gptq_status st = gptq_st_tensor_convert(t->impl_, out);
    return st ? gptq_fail_context(st, "%s", s->label) : GPTQ_OK;
}

gptq_status gptq_source_read_raw(const gptq_model_source *s, const gptq_source_tensor *t,
                                 void *out)
{
    if (t->part_of_)
        return read_part(s, t, 0, out);
    if (s->gguf && !t->data && (t->dtype == GPTQ_DT_F16 || t->dtype == GPTQ_DT_BF16))
        return gptq_gguf_hf_read_raw(s->gguf, t->impl_, t->permute_heads_, out);
    if (!t->data)
        return gptq_fail(GPTQ_ERR_FORMAT, "%s: tensor '%.96s' is not stored as %s", s->label,
                         t->name, gptq_dtype_name(t->dtype));
    gptq_status st = gptq_st_tensor_copy(t->impl_, out);
    return st ? gptq_fail_context(st, "%s", s->label) : GPTQ_OK;
}

void gptq_source_release(const gptq_model_source *s, const gptq_source_tensor *t)
{
    if (!s->gguf && t->impl_ && !t->part_of_)
        gptq_st_tensor_release(t->impl_);
}
