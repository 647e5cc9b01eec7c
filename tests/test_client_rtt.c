/* tests/test_client_rtt.c: a helper of test_gptqctl.py, not a test by
 * itself: connects once to a running gptqd and times `n` Status and `n`
 * List round trips through libgptqclient, so that "answers within 50 ms"
 * measures the daemon and not the start of a gptqctl process.
 *
 *   test_client_rtt SOCKET N   ->  {"status_ms": [...], "list_ms": [...]} */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gptq/client.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_client_rtt SOCKET N\n");
        return 2;
    }
    int n = atoi(argv[2]);
    gptq_client *c = NULL;
    if (gptq_client_connect(argv[1], &c)) {
        fprintf(stderr, "test_client_rtt: %s\n", gptq_errmsg());
        return 3;
    }
    int rc = 0;
    for (int kind = 0; kind < 2 && !rc; kind++) {
        printf(kind ? ", \"list_ms\": [" : "{\"status_ms\": [");
        for (int i = 0; i < n; i++) {
            double t0 = now_ms();
            gptq_status st;
            if (kind) {
                gptq_client_models *list = NULL;
                st = gptq_client_list(c, &list);
                gptq_client_models_free(list);
            } else {
                gptq_client_status_info *s = NULL;
                st = gptq_client_status(c, &s);
                gptq_client_status_free(s);
            }
            if (st) {
                fprintf(stderr, "test_client_rtt: %s\n", gptq_client_errmsg(c));
                rc = 1;
                break;
            }
            printf("%s%.3f", i ? ", " : "", now_ms() - t0);
        }
        printf("]");
    }
    printf("}\n");
    gptq_client_close(c);
    return rc;
}
