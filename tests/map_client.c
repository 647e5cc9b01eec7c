/* tests/map_client.c: a process that maps a resident model of a running
 * gptqd (gptq_map), generates greedily from it in its own process, and then
 * holds the mapping until stdin closes, so that a test can look at its
 * /proc/PID/smaps and kill it to see the lease reclaimed.
 *
 *   map_client SOCKET MODEL PROMPT MAX_TOKENS
 *
 * stdout, one line each: "mapped <tensors> <arena bytes> <lease>",
 * then "text <completion as a JSON string>" (or "text-unavailable <why>"
 * when this build cannot run mapped weights), then "ready". On stdin EOF it
 * unmaps and exits 0. Greedy decoding matches gptqd's: the prompt encoded
 * with special tokens, argmax (first index on ties), stop at EOS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gptq/client.h"
#include "gptq/model.h"
#include "gptq/tokenizer.h"
#include "testgen.h"

static gptq_status generate(gptq_mapping *m, const char *prompt, int max_tokens, char **text)
{
    gptq_model *model = NULL;
    gptq_status st = gptq_mapping_model(m, &model);
    *text = NULL;
    return st ? st : test_greedy_text(model, gptq_mapping_tokenizer_path(m), prompt, max_tokens,
                                      text);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: map_client SOCKET MODEL PROMPT MAX_TOKENS\n");
        return 2;
    }
    gptq_client *c = NULL;
    gptq_mapping *m = NULL;
    if (gptq_client_connect(argv[1], &c)) {
        fprintf(stderr, "map_client: %s\n", gptq_errmsg());
        return 3;
    }
    if (gptq_map(c, argv[2], &m)) {
        fprintf(stderr, "map_client: map %s: %s\n", argv[2], gptq_client_errmsg(c));
        gptq_client_close(c);
        return 1;
    }
    size_t n = 0;
    const gptq_mapped_tensor *t = gptq_mapping_tensors(m, &n);
    /* Touch every page, so that smaps counts the whole arena as resident. */
    volatile unsigned sum = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < t[i].bytes; b += 4096)
            sum += ((const unsigned char *)t[i].data)[b];
    printf("mapped %zu %zu %llu\n", n, gptq_mapping_bytes(m),
           (unsigned long long)gptq_mapping_lease(m));
    char *text = NULL;
    gptq_status st = generate(m, argv[3], atoi(argv[4]), &text);
    if (st == GPTQ_OK) {
        json_t *s = json_string(text);
        char *quoted = json_dumps(s, JSON_ENCODE_ANY);
        printf("text %s\n", quoted ? quoted : "\"\"");
        free(quoted);
        json_decref(s);
    } else {
        printf("text-unavailable %s: %s\n", gptq_status_name(st), gptq_errmsg());
    }
    free(text);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin))
        ;
    st = gptq_unmap(c, m);
    if (st)
        fprintf(stderr, "map_client: unmap: %s\n", gptq_client_errmsg(c));
    gptq_client_close(c);
    return st ? 1 : 0;
}
