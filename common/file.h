/* common/file.h: opening and reading files that a client or a model folder
 * names, without trusting them: a FIFO, a device or a directory where a
 * regular file is expected is refused at once (opened O_NONBLOCK, checked
 * with fstat before any read), sizes are bounded before memory is
 * allocated, and a file that shrinks while it is read gives an error. */
#ifndef GPTQ_COMMON_FILE_H
#define GPTQ_COMMON_FILE_H

#include <dirent.h>
#include <stddef.h>

#include "gptq/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The status of a failed system call's errno: ENOENT, ENOTDIR ->
 * GPTQ_ERR_NOTFOUND; EACCES, EPERM -> GPTQ_ERR_PERMISSION; ENOMEM ->
 * GPTQ_ERR_NOMEM; anything else GPTQ_ERR_IO. */
gptq_status gptq_errno_status(int err);

/* A stream over the entries of the folder open as `fd`, which it takes over
 * (closedir closes it; closed here on failure). NULL when fd < 0 or fd is
 * not a folder. Pass dup(dirfd) to keep dirfd. */
DIR *gptq_dir_stream(int fd);

/* Open `path` read-only (O_RDONLY|O_NONBLOCK|O_CLOEXEC, relative to dirfd
 * when it is not AT_FDCWD and path is relative), make sure it is a regular
 * file, and clear O_NONBLOCK. *fd is the caller's to close.
 * Errors: GPTQ_ERR_NOTFOUND, GPTQ_ERR_PERMISSION, GPTQ_ERR_IO (naming the
 * path and the reason; "not a regular file" for FIFOs, devices, folders). */
gptq_status gptq_file_open_at(int dirfd, const char *path, int *fd);
gptq_status gptq_file_open(const char *path, int *fd);

/* Read all of the regular file open at fd (at most max_bytes) into a new
 * NUL-terminated buffer *data of *len bytes (free() it). `name` labels
 * messages. Errors: GPTQ_ERR_LIMIT (larger than max_bytes), GPTQ_ERR_IO
 * (a read failed, or the file shrank while being read), GPTQ_ERR_NOMEM. */
gptq_status gptq_file_read_fd(int fd, const char *name, size_t max_bytes, char **data,
                              size_t *len);

/* Open `rel` (a relative path) beneath the directory rootfd: every step of
 * the resolution, symbolic links included, must stay inside rootfd's tree
 * (openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS; on kernels without
 * openat2, a component-by-component O_NOFOLLOW walk that refuses symbolic
 * links altogether). want_dir: 1 a folder, 0 a regular file (checked as
 * gptq_file_open_at does), -1 either. `rel` may not be absolute; ".."
 * may appear only where it stays beneath.
 * Errors: GPTQ_ERR_PERMISSION ("leads outside", naming rel),
 * gptq_file_open_at's. */
gptq_status gptq_open_beneath(int rootfd, const char *rel, int want_dir, int *fd);

/* A regular file "dir/name": beneath rootfd when rootfd is not AT_FDCWD
 * (dir relative to it, "" for the root itself), else plainly (dir may then
 * be absolute). The one way model readers open a folder's files. */
gptq_status gptq_file_open_in(int rootfd, const char *dir, const char *name, int *fd);

/* gptq_file_open + gptq_file_read_fd + close. */
gptq_status gptq_file_read(const char *path, size_t max_bytes, char **data, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
