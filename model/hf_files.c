/* model/hf_files.c: see hf_files.h. */
#include "model/hf_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"

const char *const gptq_hf_file_names[] = {
    "config.json",           "generation_config.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json",            "merges.txt",             "chat_template.jinja",
    "added_tokens.json",
};
const int gptq_hf_file_count = (int)(sizeof gptq_hf_file_names / sizeof gptq_hf_file_names[0]);

static int plain_name(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n < sizeof((gptq_hf_file *)0)->name && !strchr(name, '/') &&
           strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

gptq_status gptq_hf_files_read_in(int rootfd, const char *dir, const char *label,
                                  gptq_hf_files *files)
{
    memset(files, 0, sizeof *files);
    for (int i = 0; i < gptq_hf_file_count; i++) {
        const char *name = gptq_hf_file_names[i];
        int fd;
        gptq_status st = gptq_file_open_in(rootfd, dir, name, &fd);
        if (st == GPTQ_ERR_NOTFOUND && i > 0) {
            gptq_clear_error();
            continue;
        }
        if (st)
            goto fail;
        gptq_hf_file *f = &files->file[files->n];
        char what[4096];
        snprintf(what, sizeof what, "%s/%s", label, name);
        st = gptq_file_read_fd(fd, what, GPTQ_HF_FILE_MAX_BYTES, &f->text, &f->len);
        close(fd);
        if (st)
            goto fail;
        snprintf(f->name, sizeof f->name, "%s", name);
        files->n++;
        continue;
    fail:
        gptq_hf_files_free(files);
        return st == GPTQ_ERR_NOTFOUND
                   ? gptq_fail(GPTQ_ERR_NOTFOUND, "%s: no config.json: not a Hugging Face model "
                               "folder", label)
                   : gptq_fail_context(st, "%s", label);
    }
    return GPTQ_OK;
}

gptq_status gptq_hf_files_read(const char *dir, gptq_hf_files *files)
{
    return gptq_hf_files_read_in(AT_FDCWD, dir, dir, files);
}

const char *gptq_hf_files_get(const gptq_hf_files *files, const char *name, size_t *len)
{
    for (int i = 0; i < files->n; i++)
        if (strcmp(files->file[i].name, name) == 0) {
            if (len)
                *len = files->file[i].len;
            return files->file[i].text;
        }
    if (len)
        *len = 0;
    return NULL;
}

gptq_status gptq_hf_files_set(gptq_hf_files *files, const char *name, const char *text,
                              size_t len)
{
    if (!plain_name(name))
        return gptq_fail(GPTQ_ERR_ARG, "model file name '%.64s' is not a plain file name", name);
    char *copy = malloc(len + 1);
    if (!copy)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: out of memory (%zu bytes)", name, len + 1);
    memcpy(copy, text, len);
    copy[len] = '\0';
    for (int i = 0; i < files->n; i++)
        if (strcmp(files->file[i].name, name) == 0) {
            free(files->file[i].text);
            files->file[i].text = copy;
            files->file[i].len = len;
            return GPTQ_OK;
        }
    if (files->n == GPTQ_HF_FILES_MAX) {
        free(copy);
        return gptq_fail(GPTQ_ERR_ARG, "%s: a model holds at most %d such files", name,
                         GPTQ_HF_FILES_MAX);
    }
    gptq_hf_file *f = &files->file[files->n++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->text = copy;
    f->len = len;
    return GPTQ_OK;
}

gptq_status gptq_hf_files_copy(const gptq_hf_files *src, gptq_hf_files *dst)
{
    memset(dst, 0, sizeof *dst);
    for (int i = 0; i < src->n; i++) {
        gptq_status st = gptq_hf_files_set(dst, src->file[i].name, src->file[i].text,
                                           src->file[i].len);
        if (st) {
            gptq_hf_files_free(dst);
            return st;
        }
    }
    return GPTQ_OK;
}

static int skipped(const char *name, const char *const *skip)
{
    for (; skip && *skip; skip++)
        if (strcmp(*skip, name) == 0)
            return 1;
    return 0;
}

gptq_status gptq_hf_files_write(const gptq_hf_files *files, int dirfd, const char *dir,
                                const char *const *skip)
{
    char path[4096];
    for (int i = 0; i < files->n; i++) {
        const gptq_hf_file *f = &files->file[i];
        if (skipped(f->name, skip))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, f->name);
        int fd = openat(dirfd, f->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
            return gptq_fail(GPTQ_ERR_IO, "%s: %s", path, strerror(errno));
        size_t done = 0;
        while (done < f->len) {
            ssize_t n = write(fd, f->text + done, f->len - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                int err = errno;
                close(fd);
                return gptq_fail(GPTQ_ERR_IO, "%s: write failed: %s", path, strerror(err));
            }
            done += (size_t)n;
        }
        if (fsync(fd) != 0) {
            int err = errno;
            close(fd);
            return gptq_fail(GPTQ_ERR_IO, "%s: fsync failed: %s", path, strerror(err));
        }
        close(fd);
    }
    return GPTQ_OK;
}

void gptq_hf_files_free(gptq_hf_files *files)
{
    for (int i = 0; i < files->n; i++)
        free(files->file[i].text);
    memset(files, 0, sizeof *files);
}
