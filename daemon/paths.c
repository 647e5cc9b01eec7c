/* daemon/paths.c: confine client paths to the model directories. */
#include "daemon/paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int inside(const char *dir, const char *path)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/')
        return 1;
    return strncmp(dir, path, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* resolved must already be a real path. */
static gptq_status check_inside(const gptqd_conf *conf, const char *field, const char *path,
                                const char *resolved)
{
    if (conf->n_model_dirs == 0)
        return gptq_fail(GPTQ_ERR_PERMISSION,
                         "%s '%s': no model directories are configured: start gptqd with "
                         "--model-dir DIR (or model-dir = DIR in its config)", field, path);
    for (int i = 0; i < conf->n_model_dirs; i++) {
        char dir[PATH_MAX];
        if (!realpath(conf->model_dirs[i], dir))
            continue; /* a missing model dir allows nothing */
        if (inside(dir, resolved))
            return GPTQ_OK;
    }
    return gptq_fail(GPTQ_ERR_PERMISSION,
                     "%s '%s' is outside the model directories (%s%s): move it there or add "
                     "--model-dir", field, path, conf->model_dirs[0],
                     conf->n_model_dirs > 1 ? ", ..." : "");
}

gptq_status gptqd_path_for_reading(const gptqd_conf *conf, const char *field, const char *path,
                                   char *resolved)
{
    if (path[0] != '/')
        return gptq_fail(GPTQ_ERR_ARG, "%s '%s': give an absolute path", field, path);
    if (!realpath(path, resolved)) {
        int e = errno;
        /* Say "not found" only for paths that would be allowed, so that the
         * reply does not reveal which files exist elsewhere. */
        gptq_status st = check_inside(conf, field, path, path);
        if (st)
            return st;
        return gptq_fail(e == ENOENT || e == ENOTDIR ? GPTQ_ERR_NOTFOUND : GPTQ_ERR_IO,
                         "%s '%s': %s", field, path, strerror(e));
    }
    return check_inside(conf, field, path, resolved);
}

gptq_status gptqd_path_for_writing(const gptqd_conf *conf, const char *field, const char *path,
                                   char *resolved)
{
    if (path[0] != '/')
        return gptq_fail(GPTQ_ERR_ARG, "%s '%s': give an absolute path", field, path);
    char parent[PATH_MAX];
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    const char *slash = memrchr(path, '/', len);
    const char *base = slash + 1;
    size_t base_len = len - (size_t)(base - path);
    if (base_len == 0 || (base_len == 1 && base[0] == '.') ||
        (base_len == 2 && base[0] == '.' && base[1] == '.'))
        return gptq_fail(GPTQ_ERR_ARG, "%s '%s': name a new folder", field, path);
    size_t parent_len = slash == path ? 1 : (size_t)(slash - path);
    memcpy(parent, path, parent_len);
    parent[parent_len] = '\0';
    char real_parent[PATH_MAX];
    if (!realpath(parent, real_parent)) {
        int e = errno;
        gptq_status st = check_inside(conf, field, path, parent);
        if (st)
            return st;
        return gptq_fail(GPTQ_ERR_NOTFOUND, "%s '%s': parent folder: %s", field, path,
                         strerror(e));
    }
    gptq_status st = check_inside(conf, field, path, real_parent);
    if (st)
        return st;
    if ((size_t)snprintf(resolved, PATH_MAX, "%s/%.*s", strcmp(real_parent, "/") ? real_parent : "",
                         (int)base_len, base) >= PATH_MAX)
        return gptq_fail(GPTQ_ERR_ARG, "%s '%s': path too long", field, path);
    return GPTQ_OK;
}
