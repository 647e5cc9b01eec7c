/* tests/test_cuda_select.c: gptq_backend_select falls back to the CPU with a
 * reason, and an explicit "cuda:N" that cannot be had is an error that says
 * why. Runs everywhere: on a GPU machine it checks the other side (auto
 * picks CUDA, a device number past the last is refused). */
#include <stdio.h>
#include <string.h>

#include "kernels/backend_select.h"
#include "testutil.h"

int main(void)
{
    char why[1024];
    const gptq_backend *be = NULL;

    CHECK_OK(gptq_backend_select("cpu", &be, why, sizeof why));
    CHECK(be == gptq_backend_cpu(), "cpu: got %s", be ? be->name : "NULL");

    gptq_status st = gptq_backend_select("auto", &be, why, sizeof why);
    CHECK(st == GPTQ_OK, "auto must not fail: %s", gptq_errmsg());
    CHECK(be != NULL, "auto: no backend");
    CHECK(why[0] != 0, "auto: empty reason");
    printf("auto -> %s (%s)\n", be ? be->name : "NULL", why);
    const int have_gpu = be && be != gptq_backend_cpu();

    if (!have_gpu) {
        CHECK(!be->ipc_alloc && !be->sync && be->hessian_create && be->qgemm,
              "the CPU backend: no IPC or sync entries, GPTQ and qgemm present");
        st = gptq_backend_select("cuda:0", &be, why, sizeof why);
        CHECK(st == GPTQ_ERR_DEVICE, "cuda:0 without a GPU: got %s", gptq_status_name(st));
        CHECK(be == gptq_backend_cpu(), "cuda:0 failure must leave the CPU backend in *out");
        CHECK(strstr(gptq_errmsg(), "cuda:0") != NULL && strlen(why) > 10,
              "cuda:0: message should name the device and the reason: '%s' / '%s'",
              gptq_errmsg(), why);
        printf("cuda:0 -> %s: %s\n", gptq_status_name(st), gptq_errmsg());
    } else {
        CHECK(be->ipc_alloc && be->sync && be->hessian_create && be->device && be->sm_count > 0,
              "%s lacks device entries", be->name);
        CHECK(strcmp(be->name, "cuda:0") == 0, "auto picked %s, want cuda:0", be->name);
        const gptq_backend *again = NULL;
        CHECK_OK(gptq_backend_select("cuda:0", &again, why, sizeof why));
        CHECK(again == be, "cuda:0 twice gives two tables");
        st = gptq_backend_select("cuda:999", &again, why, sizeof why);
        CHECK(st == GPTQ_ERR_DEVICE, "cuda:999: got %s", gptq_status_name(st));
        printf("cuda:999 -> %s: %s\n", gptq_status_name(st), gptq_errmsg());
    }

    const char *bad[] = {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:0x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = gptq_backend_select(bad[i], &be, why, sizeof why);
        CHECK(st == GPTQ_ERR_ARG, "'%s': got %s", bad[i], gptq_status_name(st));
        CHECK(be == gptq_backend_cpu(), "'%s': *out must be the CPU backend", bad[i]);
    }
    return test_result();
}
