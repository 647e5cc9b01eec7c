/* gptq/error.h: status codes and error messages shared by every gptqd library.
 *
 * Functions that can fail return a gptq_status (GPTQ_OK == 0) and, on
 * failure, leave a message naming the thing and the fix in a thread-local
 * buffer read with gptq_errmsg() (sqlite's errcode + errmsg, per thread so
 * that the daemon's job threads do not overwrite each other's messages). */
#ifndef GPTQ_ERROR_H
#define GPTQ_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* The numbers travel on the wire (gptqd's replies and job results) and in
 * gptqctl --json, so each is fixed: never renumber or reuse one; a new
 * status takes the next number. tests/test_error.c pins them. */
typedef enum gptq_status {
    GPTQ_OK = 0,
    GPTQ_ERR_ARG = 1,             /* a bad argument or option value */
    GPTQ_ERR_IO = 2,              /* open/read/write/mmap/rename failed */
    GPTQ_ERR_FORMAT = 3,          /* a file or message is corrupt or not what it claims */
    GPTQ_ERR_NOMEM = 4,           /* allocation failed or a configured memory limit was hit */
    GPTQ_ERR_NUMERIC = 5,         /* e.g. Cholesky of the Hessian failed */
    GPTQ_ERR_NOTFOUND = 6,        /* unknown model, tensor, job, file */
    GPTQ_ERR_EXISTS = 7,          /* the name is taken */
    GPTQ_ERR_BUSY = 8,            /* in use (leased model, running job) */
    GPTQ_ERR_UNSUPPORTED = 9,     /* valid, but not something we implement */
    GPTQ_ERR_CANCELED = 10,       /* a job was cancelled */
    GPTQ_ERR_PROTOCOL = 11,       /* malformed request or reply, wrong version */
    GPTQ_ERR_PERMISSION = 12,     /* outside the configured model directories, EACCES */
    GPTQ_ERR_LIMIT = 13,          /* a configured limit (message size, jobs, tokens) */
    GPTQ_ERR_DEVICE = 14,         /* CUDA / accelerator failure */
    GPTQ_ERR_UNREACHABLE = 15,    /* the daemon cannot be reached */
    GPTQ_ERR_INTERNAL = 16,       /* a bug: an invariant of ours did not hold */
    GPTQ_STATUS_COUNT = 17 /* one past the last */
} gptq_status;

/* Short stable name of a status ("ok", "bad argument", ...). Never NULL. */
const char *gptq_status_name(gptq_status status);

/* The message of the last failure on the calling thread ("" if none).
 * The pointer stays valid until the next gptq_ call on this thread. */
const char *gptq_errmsg(void);

/* Set the thread's message (printf-style) and return `status`, so that a
 * failure reads `return gptq_fail(GPTQ_ERR_ARG, "bits %d: use 2, 3, 4 or 8", b);` */
gptq_status gptq_fail(gptq_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepend context to the thread's current message ("layer 3 q_proj: " +
 * old message) and return `status`; for callers that add where it happened. */
gptq_status gptq_fail_context(gptq_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Forget the thread's message. */
void gptq_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
