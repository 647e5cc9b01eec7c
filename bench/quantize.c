/* bench/quantize.c: a whole model quantized end to end with GPTQ (4-bit,
 * group 128 by default) on the device the calibration pipeline runs on,
 * timed per layer and in total, beside the same layer shape through the
 * PyTorch version of the algorithm (bench/gptq_torch.py) on the same device.
 *
 * By default: a random-weight Llama-7B-shaped model (32 layers, hidden 4096,
 * intermediate 11008, vocabulary 32000, 32 heads of 128 dims, no GQA) is
 * written to a temporary folder (bench/random_model.c, F16 safetensors),
 * opened streaming (gptq_model_open_streaming: one layer's float weights in
 * host memory at a time), and quantized on cuda:0 with 128 random
 * calibration windows of 2048 tokens. Target (the issue): under 3 minutes on
 * one H100, and at least 2x faster per layer than the torch version.
 *
 * What is printed: the device; writing and opening the model, each on its
 * own line; per layer the wall seconds, of which GPTQ itself (the rest is
 * the captures and forwards of the pipeline), with min / median / max;
 * the total; the calibration activations' size and the peak host (and
 * device) memory; then the torch figures and the ratios, or one line saying
 * why torch was not measured (no python3, no torch, no CUDA in torch).
 * The torch figure is gptq_torch.py --pipeline: one layer of the same shape
 * quantized the way the pipeline does it (true-sequential captures through
 * the layer's own forwards, GPTQ, closing forward), in float32; the ratio is
 * given for the whole layer and for GPTQ alone.
 *
 * Per-layer seconds are the time between consecutive layers' last linears
 * (so layer l holds the forward that produced its inputs); layer 0 also holds
 * the embedding of the windows; the last layer's closing forward is printed
 * as "tail".
 *
 * Usage: quantize [--model DIR] [--layers N] [--hidden N] [--inter N]
 *                 [--vocab N] [--nsamples N] [--seqlen N] [--batch N]
 *                 [--bits N] [--group-size N] [--device cpu|cuda:N]
 *                 [--torch-script PATH] [--no-torch] [--keep]
 *   --model DIR   an existing HF folder instead of a random model (the shape
 *                 flags are then ignored)
 *   --keep        keep the random model's folder (its path is printed)
 * Environment: PYTHON (default python3) runs the torch script.
 * Exit: 0 done, 1 error, 2 usage, 77 when a CUDA device was asked for and
 * none answers. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernels/backend_select.h"
#include "model/calib.h"
#include "model/llama.h"
#include "random_model.h"
#include "benchutil.h"

#ifndef GPTQ_TORCH_SCRIPT
#define GPTQ_TORCH_SCRIPT "bench/gptq_torch.py"
#endif

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* min, median, max of v [n] (n >= 1); v is left unsorted. */
static void summary(const double *v, int n, double *lo, double *mid, double *hi)
{
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) {
        *lo = *mid = *hi = 0;
        return;
    }
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    *lo = s[0], *hi = s[n - 1];
    *mid = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
}

/* What the progress callback records. */
typedef struct run_log {
    int layers;
    double *layer_end;                     /* [layers] pipeline seconds at its last linear */
    double *layer_gptq;                    /* [layers] GPTQ seconds of its linears */
    double gptq_by_linear[GPTQ_LIN_COUNT]; /* summed over layers */
    int count_by_linear[GPTQ_LIN_COUNT];
    const gptq_backend *cuda;              /* a device backend, NULL on the CPU */
    size_t min_free;                       /* least free device memory seen */
} run_log;

static gptq_status on_progress(void *user, const gptq_calib_progress *p)
{
    run_log *log = user;
    log->layer_end[p->layer] = p->elapsed;
    log->layer_gptq[p->layer] += p->seconds;
    log->gptq_by_linear[p->which] += p->seconds;
    log->count_by_linear[p->which]++;
    size_t free_bytes, total_bytes;
    if (log->cuda && log->cuda->mem_info(log->cuda, &free_bytes, &total_bytes) == GPTQ_OK &&
        free_bytes < log->min_free)
        log->min_free = free_bytes;
    int per_layer = p->total / p->layers;
    if (per_layer > 0 && p->done % per_layer == 0) {
        double start = p->layer ? log->layer_end[p->layer - 1] : 0.0;
        fprintf(stderr, "quantize: layer %d/%d done: %.2f s (GPTQ %.2f s), %.1f s so far\n",
                p->layer + 1, p->layers, p->elapsed - start, log->layer_gptq[p->layer],
                p->elapsed);
    }
    return GPTQ_OK;
}

/* random_model writes heads of 64 dims; Llama-7B has 32 heads of 128. The
 * weights' shapes are the same (no GQA), so only config.json changes. */
static int set_heads(const char *dir, int heads)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t err;
    json_t *cfg = json_load_file(path, 0, &err);
    int rc = cfg ? 0 : -1;
    if (!rc)
        rc = json_object_set_new(cfg, "num_attention_heads", json_integer(heads)) ||
             json_object_set_new(cfg, "num_key_value_heads", json_integer(heads)) ||
             json_dump_file(cfg, path, JSON_INDENT(1));
    if (rc)
        fprintf(stderr, "quantize: cannot rewrite %s: %s\n", path, cfg ? "write failed" : err.text);
    json_decref(cfg);
    return rc ? -1 : 0;
}

/* Run bench/gptq_torch.py for one layer of the model's shape on the same
 * device; its JSON object, or NULL with the reason in why. */
static json_t *run_torch(const char *script, const gptq_model_config *c,
                         const gptq_calib_options *o, const char *device, char *why, size_t n)
{
    const char *python = getenv("PYTHON") ? getenv("PYTHON") : "python3";
    int cuda = strncmp(device, "cuda", 4) == 0;
    char cmd[8192];
    if (strchr(script, '\'') || strchr(python, '\'')) {
        snprintf(why, n, "the script path or $PYTHON contains a quote");
        return NULL;
    }
    if (access(script, R_OK) != 0) {
        snprintf(why, n, "%s not found (pass --torch-script)", script);
        return NULL;
    }
    snprintf(cmd, sizeof cmd,
             "'%s' -c 'import sys, torch; sys.exit(0 if %s else 3)' >/dev/null 2>&1", python,
             cuda ? "torch.cuda.is_available()" : "True");
    int rc = system(cmd);
    if (rc != 0) {
        int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
        snprintf(why, n, "%s", code == 3   ? "torch sees no CUDA device"
                               : code == 127 ? "no python3 (set $PYTHON)"
                                             : "python3 cannot import torch (pip install torch)");
        return NULL;
    }
    int kv_dim = c->num_key_value_heads * c->head_dim;
    snprintf(cmd, sizeof cmd,
             "'%s' '%s' --pipeline --hidden %d --inter %d --heads %d --kv-dim %d --nsamples %d "
             "--seqlen %d --batch %d --bits %d --group-size %d --block-size %d --damp %g%s "
             "--device %s",
             python, script, c->hidden_size, c->intermediate_size, c->num_attention_heads, kv_dim,
             o->nsamples, o->seqlen,
             o->batch, o->quant.bits, o->quant.group_size, o->quant.block_size,
             (double)o->quant.damp, o->quant.sym ? " --sym" : "", device);
    fprintf(stderr, "quantize: %s\n", cmd);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, n, "cannot start %s", python);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    while (out) {
        size_t got = fread(out + len, 1, cap - len - 1, p);
        len += got;
        if (got == 0)
            break;
        if (len + 1 == cap) {
            char *bigger = realloc(out, cap *= 2);
            if (!bigger)
                free(out);
            out = bigger;
        }
    }
    rc = pclose(p);
    if (!out) {
        snprintf(why, n, "out of memory reading the torch script's output");
        return NULL;
    }
    out[len] = 0;
    json_error_t err;
    json_t *j = rc == 0 ? json_loads(out, 0, &err) : NULL;
    if (!j)
        snprintf(why, n, "%s failed (exit %d%s%s)", script, WIFEXITED(rc) ? WEXITSTATUS(rc) : -1,
                 rc == 0 ? ", bad JSON: " : "", rc == 0 ? err.text : "");
    free(out);
    return j;
}

static double json_num(json_t *obj, const char *key)
{
    return json_number_value(json_object_get(obj, key));
}

static void usage(void)
{
    fprintf(stderr, "usage: quantize [--model DIR] [--layers N] [--hidden N] [--inter N] "
                    "[--vocab N] [--nsamples N] [--seqlen N] [--batch N] [--bits N] "
                    "[--group-size N] [--device cpu|cuda:N] [--torch-script PATH] [--no-torch] "
                    "[--keep]\n");
}

int main(int argc, char **argv)
{
    int layers = 32, hidden = 4096, inter = 11008, vocab = 32000, keep = 0, no_torch = 0;
    const char *model_dir = NULL, *device = "cuda:0", *script = GPTQ_TORCH_SCRIPT;
    gptq_calib_options o;
    gptq_calib_options_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *num = !strcmp(a, "--layers")       ? &layers
                   : !strcmp(a, "--hidden")     ? &hidden
                   : !strcmp(a, "--inter")      ? &inter
                   : !strcmp(a, "--vocab")      ? &vocab
                   : !strcmp(a, "--nsamples")   ? &o.nsamples
                   : !strcmp(a, "--seqlen")     ? &o.seqlen
                   : !strcmp(a, "--batch")      ? &o.batch
                   : !strcmp(a, "--bits")       ? &o.quant.bits
                   : !strcmp(a, "--group-size") ? &o.quant.group_size
                                                : NULL;
        if (num && v) {
            *num = atoi(v), i++;
        } else if (!strcmp(a, "--model") && v) {
            model_dir = v, i++;
        } else if (!strcmp(a, "--device") && v) {
            device = v, i++;
        } else if (!strcmp(a, "--torch-script") && v) {
            script = v, i++;
        } else if (!strcmp(a, "--no-torch")) {
            no_torch = 1;
        } else if (!strcmp(a, "--keep")) {
            keep = 1;
        } else {
            usage();
            return 2;
        }
    }
    if (layers < 1 || hidden < 64 || inter < 1 || vocab < 2 || o.nsamples < 1 || o.seqlen < 2) {
        usage();
        return 2;
    }

    /* The device first: no point writing 13 GB for a GPU that is not there. */
    const gptq_backend *be;
    char why[512];
    gptq_status st = gptq_backend_select(device, &be, why, sizeof why);
    if (st == GPTQ_ERR_DEVICE) {
        printf("SKIP: %s asked for, but no CUDA device answers: %s\n", device, why);
        return 77;
    }
    if (st) {
        fprintf(stderr, "quantize: --device %s: %s\n", device, gptq_errmsg());
        return 2;
    }
    const gptq_backend *cuda = be != gptq_backend_cpu() ? be : NULL;
    o.backend = be;
    if (cuda)
        printf("device: %s = %s, %d SMs, %.1f GiB\n", be->name, cuda->device, cuda->sm_count,
               cuda->total_memory / 1073741824.0);
    else
        printf("device: %s (%s)\n", be->name, why);

    char tmpl[] = "/tmp/gptqd-bench-quantize-XXXXXX";
    const char *dir = model_dir;
    double t_write = 0;
    int rc = 1;
    json_t *torch = NULL;
    run_log log = {0};
    gptq_model *m = NULL;
    int32_t *ids = NULL;
    if (!model_dir) {
        size_t f32_bytes = 0;
        double t0 = now();
        dir = mkdtemp(tmpl);
        if (!dir || random_model_write(dir, layers, hidden, inter, vocab, 1, &f32_bytes) != 0 ||
            (hidden % 128 == 0 && set_heads(dir, hidden / 128) != 0)) {
            fprintf(stderr, "quantize: cannot write the random model in %s: %s\n",
                    dir ? dir : "/tmp", gptq_errmsg());
            goto done;
        }
        t_write = now() - t0;
        printf("write random model: %.1f s (%s, F16 file %.2f GB)\n", t_write, dir,
               f32_bytes / 2e9);
    }

    double t0 = now();
    if ((st = gptq_model_open_streaming(dir, &m))) {
        fprintf(stderr, "quantize: open %s: %s\n", dir, gptq_errmsg());
        goto done;
    }
    double t_open = now() - t0;
    const gptq_model_config *c = gptq_model_get_config(m);
    printf("open streaming: %.2f s; model: %d layers, hidden %d, intermediate %d, vocab %d, "
           "%d heads of %d (%d kv), %.1f M parameters\n",
           t_open, c->num_hidden_layers, c->hidden_size, c->intermediate_size, c->vocab_size,
           c->num_attention_heads, c->head_dim, c->num_key_value_heads,
           gptq_model_params(m) / 1e6);

    /* Random calibration text: windows are drawn from it as from a real one. */
    size_t n_ids = (size_t)o.nsamples * (size_t)(o.seqlen + 1);
    ids = malloc(n_ids * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "quantize: %zu calibration ids: out of memory\n", n_ids);
        goto done;
    }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n_ids; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        ids[i] = (int32_t)(s % (uint64_t)c->vocab_size);
    }

    log.layers = c->num_hidden_layers;
    log.layer_end = calloc((size_t)log.layers, sizeof *log.layer_end);
    log.layer_gptq = calloc((size_t)log.layers, sizeof *log.layer_gptq);
    log.cuda = cuda;
    log.min_free = (size_t)-1;
    if (!log.layer_end || !log.layer_gptq)
        goto done;
    double act_bytes = (double)o.nsamples * o.seqlen * c->hidden_size * 4.0;
    printf("calibration: %d windows x %d tokens, batch %d; layer inputs %d x %d x %d float32 = "
           "%.2f GiB alive for the whole run\n",
           o.nsamples, o.seqlen, o.batch, o.nsamples, o.seqlen, c->hidden_size,
           act_bytes / 1073741824.0);
    printf("quantizer: %d-bit, group %d, %s, damp %g, block %d, true-sequential\n", o.quant.bits,
           o.quant.group_size, o.quant.sym ? "sym" : "asym", (double)o.quant.damp,
           o.quant.block_size);
    fflush(stdout);

    t0 = now();
    st = gptq_calib_quantize(m, ids, n_ids, &o, on_progress, &log);
    double total = now() - t0;
    if (st) {
        fprintf(stderr, "quantize: %s\n", gptq_errmsg());
        goto done;
    }

    /* Per layer: wall seconds, of which GPTQ. */
    double *per_layer = malloc((size_t)log.layers * sizeof *per_layer);
    if (!per_layer)
        goto done;
    printf("%5s %9s %9s %9s\n", "layer", "seconds", "GPTQ", "other");
    for (int l = 0; l < log.layers; l++) {
        per_layer[l] = log.layer_end[l] - (l ? log.layer_end[l - 1] : 0.0);
        printf("%5d %9.3f %9.3f %9.3f\n", l, per_layer[l], log.layer_gptq[l],
               per_layer[l] - log.layer_gptq[l]);
    }
    double lo, mid, hi, glo, gmid, ghi, gsum = 0;
    summary(per_layer, log.layers, &lo, &mid, &hi);
    summary(log.layer_gptq, log.layers, &glo, &gmid, &ghi);
    for (int l = 0; l < log.layers; l++)
        gsum += log.layer_gptq[l];
    free(per_layer);
    printf("per layer: min %.3f s, median %.3f s, max %.3f s; GPTQ alone: min %.3f, median "
           "%.3f, max %.3f s\n",
           lo, mid, hi, glo, gmid, ghi);
    printf("GPTQ per linear (mean over layers):");
    for (int w = 0; w < GPTQ_LIN_COUNT; w++)
        if (log.count_by_linear[w])
            printf(" %s %.3f", gptq_linear_name((gptq_linear_id)w),
                   log.gptq_by_linear[w] / log.count_by_linear[w]);
    printf(" s\n");
    printf("tail (last layer's closing forward): %.3f s\n", total - log.layer_end[log.layers - 1]);
    printf("total: %.1f s quantizing (GPTQ %.1f s, captures and forwards %.1f s); %.1f s with "
           "opening the model",
           total, gsum, total - gsum, total + t_open);
    if (!model_dir)
        printf(", %.1f s with writing it too", total + t_open + t_write);
    printf("\n");
    printf("peak host RSS: %.2f GiB", peak_rss_kb() / 1048576.0);
    if (cuda && log.min_free != (size_t)-1)
        printf("; device memory in use (sampled after each linear, all processes): up to %.2f "
               "GiB of %.2f",
               (cuda->total_memory - log.min_free) / 1073741824.0,
               cuda->total_memory / 1073741824.0);
    printf("\n");
    fflush(stdout);
    int is_7b = c->num_hidden_layers == 32 && c->hidden_size == 4096 &&
                c->intermediate_size == 11008 && o.nsamples == 128 && o.seqlen == 2048;

    /* The torch baseline, one layer of the same shape, same device. */
    gptq_model_config shape = *c;
    gptq_model_free(m);
    m = NULL;
    char twhy[512] = "--no-torch";
    if (!no_torch)
        torch = run_torch(script, &shape, &o, cuda ? be->name : "cpu", twhy, sizeof twhy);
    if (!torch) {
        printf("torch baseline: not measured: %s\n", twhy);
    } else {
        json_t *cs = json_object_get(torch, "capture_seconds");
        json_t *gs = json_object_get(torch, "gptq_seconds");
        double t_layer = json_num(torch, "layer_seconds"), t_gptq = json_num(torch, "gptq_total");
        printf("torch %s on %s (float32, TF32 %s), one layer the same way: %.3f s = captures "
               "(forward + Hessian)",
               json_string_value(json_object_get(torch, "torch")),
               json_string_value(json_object_get(torch, "device_name")),
               json_is_true(json_object_get(torch, "tf32")) ? "on" : "off", t_layer);
        const char *key;
        json_t *val;
        json_object_foreach(cs, key, val)
            printf(" %s %.3f", key, json_number_value(val));
        printf(" + closing forward %.3f + GPTQ %.3f s (", json_num(torch, "closing_forward_seconds"),
               t_gptq);
        json_object_foreach(gs, key, val)
            printf(" %s %.3f", key, json_number_value(val));
        printf(" )\n");
        printf("ratio ours/torch per layer (our median): whole layer %.3f (%.1fx faster); GPTQ "
               "alone %.3f (%.1fx faster)\n",
               mid / t_layer, t_layer / mid, gmid / t_gptq, t_gptq / gmid);
        if (is_7b)
            printf("target (7B shape): total %.1f s %s 180 s; whole layer %.1fx %s 2x torch\n",
                   total, total < 180 ? "<" : ">=", t_layer / mid, t_layer / mid >= 2 ? ">=" : "<");
    }
    if (is_7b && !torch)
        printf("target (7B shape): total %.1f s %s 180 s; torch ratio not measured\n", total,
               total < 180 ? "<" : ">=");
    rc = 0;
done:
    json_decref(torch);
    gptq_model_free(m);
    free(ids);
    free(log.layer_end);
    free(log.layer_gptq);
    if (!model_dir && dir) {
        char cmd[4300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (keep)
            printf("random model kept in %s\n", dir);
        else if (system(cmd) != 0)
            fprintf(stderr, "quantize: could not remove %s\n", dir);
    }
    return rc;
}
