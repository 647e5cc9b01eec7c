/* daemon/paths.c: confine client paths to the model directories (paths.h). */
#include "daemon/paths.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"

enum { MAX_COMPONENTS = 512 };

/* The components of an absolute path, lexically: "", "." dropped, ".."
 * taking one off (above "/" it stays at "/"). Returns the count, -1 if too
 * many or too long. comps point into buf. */
static int split(const char *path, char *buf, size_t buf_len, const char **comps)
{
    if (strlen(path) >= buf_len)
        return -1;
    strcpy(buf, path);
    int n = 0;
    for (char *save = NULL, *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, "."))
            continue;
        if (!strcmp(c, "..")) {
            if (n > 0)
                n--;
            continue;
        }
        if (n == MAX_COMPONENTS)
            return -1;
        comps[n++] = c;
    }
    return n;
}

static void join(char *out, size_t len, const char *const *comps, int n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s", i ? "/" : "", comps[i]);
}

/* The model directory holding the (lexically normalized) path: its index,
 * and the components that follow it (*rest). The configured spelling and
 * the real path of each directory both count. -1 if none. */
static int find_root(const gptqd_conf *conf, const char *const *comps, int n, int *rest)
{
    for (int i = 0; i < conf->n_model_dirs; i++) {
        char real[PATH_MAX];
        const char *spellings[2] = {conf->model_dirs[i], realpath(conf->model_dirs[i], real)};
        for (int k = 0; k < 2; k++) {
            char buf[PATH_MAX];
            const char *dir[MAX_COMPONENTS];
            if (!spellings[k])
                continue;
            int m = split(spellings[k], buf, sizeof buf, dir);
            if (m < 0 || m > n)
                continue;
            int same = 1;
            for (int j = 0; j < m && same; j++)
                same = strcmp(dir[j], comps[j]) == 0;
            if (same) {
                *rest = m;
                return i;
            }
        }
    }
    return -1;
}

static gptq_status outside(const gptqd_conf *conf, const char *field, const char *path)
{
    if (conf->n_model_dirs == 0)
        return gptq_fail(GPTQ_ERR_PERMISSION,
                         "%s '%s': no model directories are configured: start gptqd with "
                         "--model-dir DIR (or model-dir = DIR in its config)", field, path);
    return gptq_fail(GPTQ_ERR_PERMISSION,
                     "%s '%s' is outside the model directories (%s%s): move it there or add "
                     "--model-dir", field, path, conf->model_dirs[0],
                     conf->n_model_dirs > 1 ? ", ..." : "");
}

/* Place `path` (drop_last: its parent, the last component going to
 * out->name) under a model directory; opens the root. */
static gptq_status place(const gptqd_conf *conf, const char *field, const char *path,
                         int drop_last, gptqd_place *out)
{
    char buf[PATH_MAX];
    const char *comps[MAX_COMPONENTS];
    out->root = -1;
    out->rel[0] = out->name[0] = out->path[0] = '\0';
    if (path[0] != '/')
        return gptq_fail(GPTQ_ERR_ARG, "%s '%s': give an absolute path", field, path);
    int n = split(path, buf, sizeof buf, comps), rest = 0;
    if (n < 0)
        return gptq_fail(GPTQ_ERR_ARG, "%s: path too long", field);
    snprintf(out->path, sizeof out->path, "/");
    join(out->path + 1, sizeof out->path - 1, comps, n);
    if (drop_last) {
        /* the last component as the client wrote it: "x/.." names no folder */
        size_t len = strlen(path);
        while (len > 1 && path[len - 1] == '/')
            len--;
        const char *base = (const char *)memrchr(path, '/', len) + 1;
        size_t base_len = len - (size_t)(base - path);
        if (base_len == 0 || base_len >= sizeof out->name || (base_len == 1 && base[0] == '.') ||
            (base_len == 2 && base[0] == '.' && base[1] == '.'))
            return gptq_fail(GPTQ_ERR_ARG, "%s '%s': name a new folder", field, path);
        memcpy(out->name, base, base_len);
        out->name[base_len] = '\0';
        n--;
    }
    int root = find_root(conf, comps, n, &rest);
    if (root < 0)
        return outside(conf, field, path);
    if (rest == n)
        snprintf(out->rel, sizeof out->rel, ".");
    else
        join(out->rel, sizeof out->rel, comps + rest, n - rest);
    out->root = open(conf->model_dirs[root], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (out->root < 0)
        return gptq_fail(GPTQ_ERR_NOTFOUND, "%s '%s': model directory %s: %s", field, path,
                         conf->model_dirs[root], strerror(errno));
    return GPTQ_OK;
}

gptq_status gptqd_place_open(const gptqd_place *p, int want_dir, int *fd)
{
    if (p->root == AT_FDCWD) {
        if (want_dir == 0)
            return gptq_file_open(p->rel, fd);
        *fd = open(p->rel, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (want_dir > 0 ? O_DIRECTORY : 0));
        return *fd < 0 ? gptq_fail(errno == ENOENT ? GPTQ_ERR_NOTFOUND : GPTQ_ERR_IO, "%s: %s",
                                   p->rel, strerror(errno))
                       : GPTQ_OK;
    }
    gptq_status st = gptq_open_beneath(p->root, p->rel, want_dir, fd);
    return st ? gptq_fail_context(st, "%s", p->path) : GPTQ_OK;
}

gptq_status gptqd_place_for_reading(const gptqd_conf *conf, const char *field, const char *path,
                                    int want_dir, gptqd_place *out)
{
    int fd;
    gptq_status st = place(conf, field, path, 0, out);
    if (!st && (st = gptqd_place_open(out, want_dir, &fd)) == GPTQ_OK)
        close(fd);
    if (st) {
        gptq_fail_context(st, "%s", field);
        gptqd_place_close(out);
    }
    return st;
}

gptq_status gptqd_place_for_writing(const gptqd_conf *conf, const char *field, const char *path,
                                    gptqd_place *out)
{
    int fd;
    gptq_status st = place(conf, field, path, 1, out);
    if (!st && (st = gptqd_place_open(out, 1, &fd)) == GPTQ_OK)
        close(fd);
    if (st) {
        gptq_fail_context(st, "%s (its parent folder)", field);
        gptqd_place_close(out);
    }
    return st;
}

gptq_status gptqd_place_trusted(const char *path, gptqd_place *out)
{
    memset(out, 0, sizeof *out);
    out->root = AT_FDCWD;
    if ((size_t)snprintf(out->rel, sizeof out->rel, "%s", path) >= sizeof out->rel)
        return gptq_fail(GPTQ_ERR_ARG, "%s: path too long", path);
    snprintf(out->path, sizeof out->path, "%s", path);
    return GPTQ_OK;
}

gptq_status gptqd_place_read(const gptqd_place *p, size_t max_bytes, char **text, size_t *len)
{
    int fd;
    gptq_status st = gptqd_place_open(p, 0, &fd);
    if (st)
        return st;
    st = gptq_file_read_fd(fd, p->path, max_bytes, text, len);
    close(fd);
    return st;
}

void gptqd_place_close(gptqd_place *p)
{
    if (p && p->root >= 0)
        close(p->root);
    if (p)
        p->root = -1;
}
