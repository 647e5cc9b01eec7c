/* bench/quant_memory.c: quantizing a model bigger than the memory it is
 * given. Writes a random-weight Llama-shaped model (F16 safetensors) to a
 * temporary folder, then a child process streams it (gptq_model_open_streaming:
 * one layer's float32 weights at a time), quantizes it with GPTQ and saves
 * the checkpoint, inside a memory cgroup whose limit is a fraction of the
 * model's float32 size. Prints the child's peak resident memory beside the
 * float32 size (the baseline: what loading the model whole would need).
 * Without a writable memory cgroup (v1 /sys/fs/cgroup/memory or v2) the
 * limit is not enforced and only the peak is compared.
 * Usage: quant_memory [LAYERS HIDDEN INTERMEDIATE VOCAB NSAMPLES SEQLEN LIMIT_FRACTION]
 * Exit 0 when the child succeeded and its peak stayed under the limit. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/dtype.h"
#include "model/calib.h"
#include "model/checkpoint.h"
#include "model/hf_files.h"
#include "model/safetensors.h"
#include "random_model.h"
#include "benchutil.h"

/* Make a fresh memory cgroup limited to `limit` bytes; its path goes to
 * `cg` ("" when none could be made). The child joins it (join_cgroup). */
static void make_cgroup(size_t limit, char *cg, size_t n)
{
    const char *roots[2] = {"/sys/fs/cgroup/memory", "/sys/fs/cgroup"};
    const char *limit_file[2] = {"memory.limit_in_bytes", "memory.max"};
    cg[0] = 0;
    for (int i = 0; i < 2; i++) {
        char dir[512], file[600];
        snprintf(dir, sizeof dir, "%s/gptqd-bench-%d", roots[i], (int)getpid());
        if (mkdir(dir, 0755) != 0)
            continue;
        snprintf(file, sizeof file, "%s/%s", dir, limit_file[i]);
        FILE *f = fopen(file, "w");
        int ok = f && fprintf(f, "%zu\n", limit) > 0;
        if (f)
            ok = (fclose(f) == 0) && ok;
        if (ok) {
            snprintf(cg, n, "%s", dir);
            return;
        }
        rmdir(dir);
    }
}

static int join_cgroup(const char *cg)
{
    char file[700];
    snprintf(file, sizeof file, "%s/cgroup.procs", cg);
    FILE *f = fopen(file, "w");
    int ok = f && fprintf(f, "%d\n", (int)getpid()) > 0;
    if (f)
        ok = (fclose(f) == 0) && ok;
    return ok ? 0 : -1;
}

static long rss_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) {
            kb = atol(line + n + 1);
            break;
        }
    if (f)
        fclose(f);
    return kb;
}

/* With GPTQ_MEMORY_TRACE set, the resident set after every linear. */
static gptq_status trace(void *user, const gptq_calib_progress *p)
{
    (void)user;
    fprintf(stderr, "layer %d %s: RSS %ld kB, peak %ld kB\n", p->layer,
            gptq_linear_name(p->which), rss_kb("VmRSS:"), rss_kb("VmHWM:"));
    return GPTQ_OK;
}

int main(int argc, char **argv)
{
    int layers = 16, hidden = 1024, inter = 2816, vocab = 4096, nsamples = 16, seqlen = 256;
    double fraction = 0.5;
    if (argc == 8) {
        layers = atoi(argv[1]), hidden = atoi(argv[2]), inter = atoi(argv[3]);
        vocab = atoi(argv[4]), nsamples = atoi(argv[5]), seqlen = atoi(argv[6]);
        fraction = atof(argv[7]);
    } else if (argc != 1) {
        fprintf(stderr, "usage: quant_memory [LAYERS HIDDEN INTERMEDIATE VOCAB NSAMPLES SEQLEN "
                        "LIMIT_FRACTION]\n");
        return 2;
    }
    char tmpl[] = "/tmp/gptqd-quant-memory-XXXXXX";
    char *dir = mkdtemp(tmpl);
    size_t f32_bytes = 0;
    if (!dir || random_model_write(dir, layers, hidden, inter, vocab, 4, &f32_bytes) != 0) {
        fprintf(stderr, "quant_memory: cannot write the model: %s\n", gptq_errmsg());
        return 1;
    }
    size_t limit = (size_t)(fraction * (double)f32_bytes);
    char out_dir[4200];
    snprintf(out_dir, sizeof out_dir, "%s/quantized", dir);
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return 1;
    char cg[600];
    make_cgroup(limit, cg, sizeof cg);
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        if (cg[0] && join_cgroup(cg) != 0)
            _exit(4);
        /* Big buffers come and go once per layer: keep them in their own
         * mappings (glibc would otherwise raise its mmap threshold after the
         * first free and recycle them through a fragmenting heap). */
        mallopt(M_MMAP_THRESHOLD, 1 << 20);
        double t0 = now();
        gptq_model *m;
        gptq_status st = gptq_model_open_streaming(dir, &m);
        if (getenv("GPTQ_MEMORY_TRACE"))
            fprintf(stderr, "opened: RSS %ld kB\n", rss_kb("VmRSS:"));
        int32_t *ids = malloc((size_t)nsamples * (seqlen + 1) * sizeof *ids);
        size_t n_ids = (size_t)nsamples * (seqlen + 1);
        for (size_t i = 0; i < n_ids; i++)
            ids[i] = (int32_t)((i * 2654435761u) % (unsigned)vocab);
        gptq_calib_options o;
        gptq_calib_options_default(&o);
        o.nsamples = nsamples;
        o.seqlen = seqlen;
        if (!st)
            st = gptq_calib_quantize(m, ids, n_ids, &o, getenv("GPTQ_MEMORY_TRACE") ? trace : NULL, NULL);
        double t_quant = now() - t0;
        gptq_checkpoint_meta meta = {.quant = o.quant, .true_sequential = 1};
        gptq_hf_files files = {0};
        if (!st)
            st = gptq_hf_files_read(dir, &files);
        if (!st)
            st = gptq_checkpoint_save(m, &files, &meta, GPTQ_DT_COUNT, out_dir);
        gptq_hf_files_free(&files);
        long peak = peak_rss_kb();
        char report[1024];
        snprintf(report, sizeof report, "%d %ld %.2f|%s", st, peak, t_quant,
                 st ? gptq_errmsg() : "");
        if (write(pipefd[1], report, strlen(report)) < 0)
            _exit(3);
        _exit(st ? 1 : 0);
    }
    close(pipefd[1]);
    char report[1024] = {0};
    ssize_t got = read(pipefd[0], report, sizeof report - 1);
    int wst;
    waitpid(pid, &wst, 0);
    int st = -1;
    long peak = -1;
    double secs = 0;
    char *msg = strchr(report, '|');
    if (got > 0)
        sscanf(report, "%d %ld %lf", &st, &peak, &secs);
    printf("model: %d layers, hidden %d, intermediate %d, vocab %d: float32 %.0f MB "
           "(file, F16: %.0f MB)\n",
           layers, hidden, inter, vocab, f32_bytes / 1e6, f32_bytes / 2e6);
    printf("limit: %.0f MB (%.0f%% of float32) %s\n", limit / 1e6, 100 * fraction,
           cg[0] ? "enforced by a memory cgroup" : "NOT enforced (no writable cgroup)");
    if (!WIFEXITED(wst) || st != 0) {
        printf("quantization FAILED (%s %d): %s\n", 
               WIFSIGNALED(wst) ? "killed, e.g. by the cgroup OOM killer" : "error", WIFSIGNALED(wst) ? WTERMSIG(wst) : WEXITSTATUS(wst),
               msg ? msg + 1 : "no report");
    } else {
        printf("GPTQ 4-bit g128, %d x %d calibration tokens: %.1f s, peak RSS %.0f MB = %.2fx "
               "the float32 model\n",
               nsamples, seqlen, secs, peak / 1e3, peak * 1e3 / (double)f32_bytes);
    }
    if (cg[0])
        rmdir(cg);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    int ok = WIFEXITED(wst) && st == 0 && peak > 0 && (size_t)peak * 1024 < limit;
    return ok ? 0 : 1;
}
