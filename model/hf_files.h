/* model/hf_files.h: the small text files of a Hugging Face model folder
 * (config.json, generation_config.json, the tokenizer's files), held in
 * memory. A model keeps them from load to save, so that a checkpoint or a
 * folder written later does not read the source folder again (which may
 * have changed, or never existed: a GGUF file's are synthesized from its
 * metadata). */
#ifndef GPTQ_MODEL_HF_FILES_H
#define GPTQ_MODEL_HF_FILES_H

#include <stddef.h>

#include "gptq/error.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { GPTQ_HF_FILES_MAX = 12 };

typedef struct gptq_hf_file {
    char name[48]; /* a plain file name, e.g. "tokenizer.json" */
    char *text;    /* NUL-terminated, len bytes (may hold NULs in binary files) */
    size_t len;
} gptq_hf_file;

typedef struct gptq_hf_files {
    gptq_hf_file file[GPTQ_HF_FILES_MAX];
    int n;
} gptq_hf_files;

/* The files a model folder may carry besides its weights, in the order
 * they are read and written. config.json is the only required one. */
extern const char *const gptq_hf_file_names[];
extern const int gptq_hf_file_count;

/* Largest such file read (tokenizer.json of a 256k vocabulary is ~20 MB). */
#define GPTQ_HF_FILE_MAX_BYTES ((size_t)256 << 20)

/* Read every name of gptq_hf_file_names present in folder `dir` (regular
 * files only, opened with gptq_file_open_in: beneath rootfd unless it is
 * AT_FDCWD; `label` names the folder in messages). Absent files are
 * skipped; config.json must exist.
 * Errors: GPTQ_ERR_NOTFOUND (no config.json), common/file.h's.
 * *files is zeroed first; free with gptq_hf_files_free. */
gptq_status gptq_hf_files_read_in(int rootfd, const char *dir, const char *label,
                                  gptq_hf_files *files);

/* The same for the folder at `dir`. */
gptq_status gptq_hf_files_read(const char *dir, gptq_hf_files *files);

/* The text of file `name`, or NULL (and *len 0) if absent. */
const char *gptq_hf_files_get(const gptq_hf_files *files, const char *name, size_t *len);

/* Put a copy of text[len] under `name`, replacing an earlier one.
 * Errors: GPTQ_ERR_ARG (name not a plain file name, or no room),
 * GPTQ_ERR_NOMEM. */
gptq_status gptq_hf_files_set(gptq_hf_files *files, const char *name, const char *text,
                              size_t len);

/* Deep copy. Errors: GPTQ_ERR_NOMEM (dst left empty). */
gptq_status gptq_hf_files_copy(const gptq_hf_files *src, gptq_hf_files *dst);

/* Write every file into the folder open at dirfd (new files; `dir` names
 * it in messages), each fsync'ed; files named in `skip` (NULL-terminated
 * list, or NULL) are left out. Errors: GPTQ_ERR_IO naming the file. */
gptq_status gptq_hf_files_write(const gptq_hf_files *files, int dirfd, const char *dir,
                                const char *const *skip);

void gptq_hf_files_free(gptq_hf_files *files);

#ifdef __cplusplus
}
#endif
#endif
