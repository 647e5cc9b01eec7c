/* common/sigbus.c: see sigbus.h. */
#include "common/sigbus.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>

static _Thread_local sigjmp_buf *guard;
static pthread_once_t installed = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *info, void *uctx)
{
    (void)info;
    (void)uctx;
    if (guard)
        siglongjmp(*guard, 1);
    /* not a guarded read: the default action, as if we were not here */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
    raise(sig);
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

gptq_status gptq_guarded_call(void (*fn)(void *ctx), void *ctx, const char *what)
{
    pthread_once(&installed, install);
    sigjmp_buf jb;
    sigjmp_buf *volatile outer = guard;
    if (sigsetjmp(jb, 1)) {
        guard = outer;
        return gptq_fail(GPTQ_ERR_IO, "%s: the file shrank while being read (truncated under "
                         "gptqd?): load it again once it is whole", what);
    }
    guard = &jb;
    fn(ctx);
    guard = outer;
    return GPTQ_OK;
}

typedef struct copy_args {
    void *dst;
    const void *src;
    size_t n;
} copy_args;

static void do_copy(void *ctx)
{
    copy_args *a = ctx;
    memcpy(a->dst, a->src, a->n);
}

gptq_status gptq_guarded_copy(void *dst, const void *src, size_t n, const char *what)
{
    copy_args a = {dst, src, n};
    return gptq_guarded_call(do_copy, &a, what);
}
