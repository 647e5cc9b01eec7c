/* common/file.c: see file.h. */
#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static gptq_status errno_status(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR: return GPTQ_ERR_NOTFOUND;
    case EACCES:
    case EPERM: return GPTQ_ERR_PERMISSION;
    case ENOMEM: return GPTQ_ERR_NOMEM;
    default: return GPTQ_ERR_IO;
    }
}

gptq_status gptq_file_open_at(int dirfd, const char *path, int *fd)
{
    *fd = -1;
    int f = openat(dirfd, path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (f < 0) {
        int err = errno;
        return gptq_fail(errno_status(err), "%s: %s", path, strerror(err));
    }
    struct stat sb;
    if (fstat(f, &sb) < 0) {
        int err = errno;
        close(f);
        return gptq_fail(GPTQ_ERR_IO, "%s: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        return gptq_fail(GPTQ_ERR_IO, "%s: not a regular file (%s)", path,
                         S_ISDIR(sb.st_mode)    ? "a folder"
                         : S_ISFIFO(sb.st_mode) ? "a FIFO"
                         : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device"
                         : S_ISSOCK(sb.st_mode) ? "a socket"
                                                : "not a file");
    }
    int fl = fcntl(f, F_GETFL);
    if (fl >= 0)
        fcntl(f, F_SETFL, fl & ~O_NONBLOCK);
    *fd = f;
    return GPTQ_OK;
}

gptq_status gptq_file_open(const char *path, int *fd)
{
    return gptq_file_open_at(AT_FDCWD, path, fd);
}

gptq_status gptq_file_read_fd(int fd, const char *name, size_t max_bytes, char **data,
                              size_t *len)
{
    *data = NULL;
    *len = 0;
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return gptq_fail(GPTQ_ERR_IO, "%s: %s", name, strerror(errno));
    if (sb.st_size < 0 || (uint64_t)sb.st_size > max_bytes)
        return gptq_fail(GPTQ_ERR_LIMIT, "%s: %lld bytes, more than the %zu this file may have",
                         name, (long long)sb.st_size, max_bytes);
    size_t want = (size_t)sb.st_size, got = 0;
    char *buf = malloc(want + 1);
    if (!buf)
        return gptq_fail(GPTQ_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, want + 1);
    while (got < want) {
        ssize_t n = pread(fd, buf + got, want - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : 0;
            free(buf);
            return gptq_fail(GPTQ_ERR_IO, "%s: %s after %zu of %zu bytes", name,
                             err ? strerror(err) : "the file ended (truncated while read?)", got,
                             want);
        }
        got += (size_t)n;
    }
    buf[want] = '\0';
    *data = buf;
    *len = want;
    return GPTQ_OK;
}

gptq_status gptq_file_read(const char *path, size_t max_bytes, char **data, size_t *len)
{
    int fd;
    gptq_status st = gptq_file_open(path, &fd);
    if (st)
        return st;
    st = gptq_file_read_fd(fd, path, max_bytes, data, len);
    close(fd);
    return st;
}
