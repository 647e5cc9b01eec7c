/* daemon/paths.h: which files a client may name, and how they are opened.
 *
 * A path in a request (load, calibration and evaluation texts, save
 * folders) is placed lexically under one of the configured model
 * directories and kept as (that directory, open; the path relative to it).
 * Every later open resolves the relative path beneath the directory
 * (common/file.h: openat2 RESOLVE_BENEATH), so neither a symbolic link nor
 * a folder swapped for one between a check and an open can reach outside:
 * there is no check-then-open by name. */
#ifndef GPTQD_PATHS_H
#define GPTQD_PATHS_H

#include <limits.h>
#include <stddef.h>

#include "daemon/conf.h"
#include "gptq/error.h"

typedef struct gptqd_place {
    int root;            /* the model directory (owned fd), or AT_FDCWD for a trusted
                            path from the daemon's own configuration (preloads) */
    char rel[PATH_MAX];  /* the path beneath root ("." for root itself); the absolute
                            path when root is AT_FDCWD; for writing, the parent folder */
    char name[256];      /* for writing: the folder to create in rel; "" otherwise */
    char path[PATH_MAX]; /* the client's path, normalized: what messages show */
} gptqd_place;

/* An existing file (want_dir 0), folder (1) or either (-1) `path` to read.
 * It is opened once here to answer at once: not found, not allowed, not a
 * regular file (a FIFO never blocks anything). `field` names the request
 * field in messages. *out holds an open fd: gptqd_place_close it.
 * Errors: GPTQ_ERR_ARG (relative path), GPTQ_ERR_PERMISSION (outside every
 * model directory, or a link leading out), GPTQ_ERR_NOTFOUND, GPTQ_ERR_IO. */
gptq_status gptqd_place_for_reading(const gptqd_conf *conf, const char *field, const char *path,
                                    int want_dir, gptqd_place *out);

/* A new folder `path` to create: its parent must be an existing folder
 * beneath a model directory. Errors: as above, GPTQ_ERR_ARG for a last
 * component that names no new folder ("", ".", ".."). */
gptq_status gptqd_place_for_writing(const gptqd_conf *conf, const char *field, const char *path,
                                    gptqd_place *out);

/* A path from the daemon's own configuration (a preload): not confined. */
gptq_status gptqd_place_trusted(const char *path, gptqd_place *out);

/* Open the place (its parent folder when it is for writing): want_dir as
 * above. *fd is the caller's. */
gptq_status gptqd_place_open(const gptqd_place *p, int want_dir, int *fd);

/* A text file's whole contents (at most max_bytes), NUL-terminated. */
gptq_status gptqd_place_read(const gptqd_place *p, size_t max_bytes, char **text, size_t *len);

/* Close the root; *p becomes unusable. NULL is fine. */
void gptqd_place_close(gptqd_place *p);

#endif
