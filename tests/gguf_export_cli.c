/* tests/gguf_export_cli.c: a model written as GGUF by the library, for the
 * Python tests that read the file with other tools (tests/gguf_spm.py).
 *
 *   gguf_export_cli MODEL OUT.gguf
 *
 * MODEL: an HF folder or a GGUF file; OUT must not exist. The float
 * matrices keep the model's precision. Exit 0, or 1 with the message. */
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf_write.h"
#include "model/llama.h"
#include "model/source.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: gguf_export_cli MODEL OUT.gguf\n");
        return 2;
    }
    gptq_model_source *src = NULL;
    gptq_model *m = NULL;
    char dir[4096], base[4096];
    snprintf(dir, sizeof dir, "%s", argv[2]);
    snprintf(base, sizeof base, "%s", argv[2]);
    int parent = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    gptq_status st = parent < 0 ? gptq_fail(GPTQ_ERR_IO, "%s: cannot open its folder", argv[2])
                                : gptq_source_open(argv[1], &src);
    if (!st)
        st = gptq_model_load_source(src, &m);
    if (!st)
        st = gptq_gguf_save_at(m, gptq_source_files(src), NULL, parent, basename(base), argv[2]);
    if (st)
        fprintf(stderr, "gguf_export_cli: %s\n", gptq_errmsg());
    gptq_model_free(m);
    gptq_source_free(src);
    if (parent >= 0)
        close(parent);
    return st ? 1 : 0;
}
