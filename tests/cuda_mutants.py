#!/usr/bin/env python3
"""tests/cuda_mutants.py: proof that the emulated CUDA tests catch the bugs
CUDA code has. Each mutant plants one fault in a copy of one .cu file,
rebuilds that file and the emulated module (libgptq_cuda_emu.so) with the
build's own commands into a temporary folder, and runs the CUDA tests on
the mutant module (GPTQ_CUDA_EMULATE=1, GPTQ_CUDA_EMU_MODULE=mutant). A
mutant is caught when a test fails. The sources in the tree are never
touched.

The control row rebuilds an unmodified copy the same way and must pass:
otherwise a "caught" could be the harness's own breakage. A mutant whose
snippet is no longer in its file is reported as stale (the kernels moved
on: update the snippet), never silently skipped.

Usage: tests/cuda_mutants.py BUILD_DIR [--only NAME ...] [--markdown FILE]
BUILD_DIR is a configured build with the emulated module; the ASan build
(scripts/test's BUILD-asan) also catches out-of-bounds accesses to shared
memory. Exit status 0 when the control passes and every mutant expected
to be caught is; 1 otherwise.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, fault kind, file, [(old, new), ...], expected to be caught)
MUTANTS = [
    ("control", "none (unmodified copy)", "kernels/cuda/rmsnorm.cu", [], False),
    ("att-window-off-by-one", "index off by one",
     "kernels/cuda/attention.cu",
     [("qpos - window + 1 > 0 ? qpos - window + 1 : 0",
       "qpos - window > 0 ? qpos - window : 0")], True),
    ("qgemm-no-barrier", "removed __syncthreads",
     "kernels/cuda/qgemm.cu",
     [("""    __syncthreads();
    for (int i = threadIdx.x; i < BT * nch; i += PK_THREADS) {""",
       """    for (int i = threadIdx.x; i < BT * nch; i += PK_THREADS) {""")], True),
    ("fit-shuffle-lane", "wrong shuffle lane",
     "kernels/cuda/gptq.cu",
     [("const float a = __shfl_xor_sync(0xffffffffu, xmin, o);",
       "const float a = __shfl_xor_sync(0xffffffffu, xmin, o ^ 1);")], True),
    ("mse-shuffle-mask", "wrong shuffle mask",
     "kernels/cuda/gptq.cu",
     [("const int bi = __shfl_xor_sync(0xffffffffu, best_i, o);",
       "const int bi = __shfl_xor_sync(0x7fffffffu, best_i, o);")], True),
    ("rmsnorm-shared-short", "shared array one element short",
     "kernels/cuda/rmsnorm.cu",
     [("__shared__ float scratch[32];", "__shared__ float scratch[31];")], True),
    ("qgemm-dequant-group", "wrong group index",
     "kernels/cuda/qgemm.cu",
     [("const int c = chunk * QCHUNK + k, g = g_idx[c];",
       "const int c = chunk * QCHUNK + k, g = g_idx[chunk * QCHUNK];")], True),
    ("gemm-transpose", "swapped transpose flag (cuBLAS GEMM)",
     "kernels/cuda/gemm.cu",
     [("cublasGemmEx(g_cuda.cublas, CUBLAS_OP_T, CUBLAS_OP_N,",
       "cublasGemmEx(g_cuda.cublas, CUBLAS_OP_N, CUBLAS_OP_N,")], True),
    ("gptq-update-transpose", "swapped transpose flag (GPTQ lazy update)",
     "kernels/cuda/gptq.cu",
     [("g_cuda.cublas, CUBLAS_OP_N, CUBLAS_OP_T, cols - i2, rows, count,",
       "g_cuda.cublas, CUBLAS_OP_T, CUBLAS_OP_T, cols - i2, rows, count,")], True),
    ("qgemm-dequant-tail", "missing bounds check on the tail",
     "kernels/cuda/qgemm.cu",
     [("""    const int r = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (r >= rows)
        return;
    uint32_t w[BITS];
    chunk_words<BITS>(reinterpret_cast<const uint32_t *>(qweight), rows, chunk, r, w);""",
       """    const int r = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    uint32_t w[BITS];
    chunk_words<BITS>(reinterpret_cast<const uint32_t *>(qweight), rows, chunk, r, w);""")], True),
    ("qgemm-stale-dot", "stale accumulator",
     "kernels/cuda/qgemm.cu",
     [("""            float dot[4][BT];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int b = 0; b < BT; b++)
                    dot[i][b] = 0.0f;
            const float *xc""",
       """            const float *xc"""),
      ("""        float scale[4], zero[4];
        for (int c = warp; c < nch; c += PK_WARPS) {""",
       """        float scale[4], zero[4];
        float dot[4][BT];
        for (int i = 0; i < 4; i++)
            for (int b = 0; b < BT; b++)
                dot[i][b] = 0.0f;
        for (int c = warp; c < nch; c += PK_WARPS) {""")], True),
    ("qgemm-no-perm", "act-order permutation ignored (packed kernel)",
     "kernels/cuda/qgemm.cu",
     [("b0 + b < n ? to_float(x[(size_t)(b0 + b) * cols + (perm ? perm[col] : col)]) : 0.0f;",
       "b0 + b < n ? to_float(x[(size_t)(b0 + b) * cols + col]) : 0.0f;")], True),
    ("gptq-walk-no-barrier", "removed __syncthreads (GPTQ column walk)",
     "kernels/cuda/gptq.cu",
     [("""        __syncthreads();
        hs = hsm;""", """        hs = hsm;""")], True),
    # Blocks run one at a time on the CPU, so a read-modify-write between
    # blocks never interleaves: a lost atomic is invisible here (GPU work).
    ("qgemm-no-atomic", "atomicAdd replaced by += (race between blocks)",
     "kernels/cuda/qgemm.cu",
     [("            atomicAdd(dst, s);", "            *dst += s;")], False),
]

# Cheapest first; calib_cuda (minutes) only when the others all pass.
TESTS = [("cuda_kernels", []), ("gptq_cuda", []), ("daemon_cuda", ["daemon/gptqd"]),
         ("calib_cuda", [])]


def ninja_commands(build):
    out = subprocess.run(["ninja", "-C", build, "-t", "commands", "kernels/libgptq_cuda_emu.so"],
                         check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def build_mutant(build, cmds, rel, source_text, tmp):
    """Translate, compile and link a module with source_text in place of
    rel's; returns the module's path."""
    base = os.path.splitext(os.path.basename(rel))[0]
    cu = os.path.join(tmp, os.path.basename(rel))
    with open(cu, "w", encoding="utf-8") as f:
        f.write(source_text)
    gen = next(c for c in cmds if "translate.py" in c and c.split()[-2].endswith("/" + rel))
    gen_out = gen.split()[-1]
    cc = os.path.join(tmp, base + ".cc")
    subprocess.run([sys.executable, os.path.join(ROOT, "kernels/cuda/emu/translate.py"), cu, cc],
                   check=True)
    comp = next(c for c in cmds if c.endswith("-c " + gen_out))
    argv = shlex.split(comp)
    obj_old = argv[argv.index("-o") + 1]
    obj = os.path.join(tmp, base + ".o")
    # drop the dependency-file flags, point input and output at tmp
    clean = []
    skip = 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        if a in ("-MQ", "-MF"):
            skip = 1
            continue
        if a == "-MD":
            continue
        clean.append(a)
    clean = [obj if a == obj_old else cc if a == gen_out else a for a in clean]
    r = subprocess.run(clean, cwd=build, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("compile failed:\n" + r.stderr[-3000:])
    link = next(c for c in cmds if " -o kernels/libgptq_cuda_emu.so " in c)
    so = os.path.join(tmp, "libgptq_cuda_emu.so")
    argv = [obj if a == obj_old else so if a == "kernels/libgptq_cuda_emu.so" else a
            for a in shlex.split(link)]
    r = subprocess.run(argv, cwd=build, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("link failed:\n" + r.stderr[-3000:])
    return so


WHY = re.compile(r"FAIL[: ].*|ERROR: AddressSanitizer: [\w-]+|runtime error: .*|"
                 r"kernel fault.*|.*never completes.*|.*__syncthreads reached.*|"
                 r".*leaves out the calling lane.*|.*reads lane.*outside mask.*|"
                 r".*CUBLAS_STATUS_\w+.*|.*emulated.*error.*")


def first_reason(text):
    for line in text.splitlines():
        m = WHY.search(line)
        if m:
            return " ".join(m.group(0).split())[:160]
    return ""


def run_tests(build, module):
    env = dict(os.environ)
    fixtures = os.path.join(ROOT, "..", "shared", "fixtures")
    env.update({"GPTQ_CUDA_EMULATE": "1", "GPTQ_CUDA_EMU_MODULE": module,
                "GPTQ_CUDA_EMU_QUIET": "1", "GPTQ_FIXTURES": fixtures,
                "GPTQ_SOURCE_ROOT": ROOT, "OMP_NUM_THREADS": "2",
                "OMP_WAIT_POLICY": "passive",
                "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0",
                "UBSAN_OPTIONS": "print_stacktrace=0:halt_on_error=1"})
    failed = []
    for name, args in TESTS:
        if name == "calib_cuda" and failed:
            break
        exe = os.path.join(build, "tests", "test_" + name)
        t0 = time.time()
        try:
            r = subprocess.run([exe] + [os.path.join(build, a) for a in args], env=env,
                               capture_output=True, text=True, timeout=900, errors="replace")
            rc, text = r.returncode, r.stdout + r.stderr
        except subprocess.TimeoutExpired:
            rc, text = -1, "timed out after 900 s"
        if rc == 77:
            raise RuntimeError("%s skipped: is the emulated module built?" % name)
        if rc != 0:
            failed.append((name, first_reason(text) or "exit status %d" % rc,
                           time.time() - t0))
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    subprocess.run(["ninja", "-C", build], check=True, capture_output=True)
    cmds = ninja_commands(build)
    rows, bad = [], 0
    for name, kind, rel, edits, expect in MUTANTS:
        if a.only and name not in a.only and name != "control":
            continue
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            text = f.read()
        stale = [old for old, _ in edits if text.count(old) != 1]
        if stale:
            verdict, detail = "STALE", "snippet found %d times" % text.count(stale[0])
            bad += 1
        else:
            for old, new in edits:
                text = text.replace(old, new)
            t0 = time.time()
            with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
                try:
                    failed = run_tests(build, build_mutant(build, cmds, rel, text, tmp))
                except RuntimeError as e:
                    failed = [("build", str(e).splitlines()[0], 0)]
            caught = bool(failed)
            detail = "; ".join("%s: %s" % (t, why) for t, why, _ in failed) or "all tests pass"
            if name == "control":
                verdict = "ok" if not caught else "HARNESS BROKEN"
                bad += caught
            else:
                verdict = "caught" if caught else ("survived (expected)" if not expect
                                                   else "SURVIVED")
                bad += expect and not caught
            detail += " (%.0f s)" % (time.time() - t0)
        rows.append((name, kind, rel, verdict, detail))
        print("%-24s %-44s %-10s %s" % (name, kind, verdict, detail), flush=True)
    if a.markdown:
        with open(a.markdown, "w", encoding="utf-8") as f:
            f.write("| mutant | fault | file | verdict | failing test: first reason |\n")
            f.write("|---|---|---|---|---|\n")
            for r in rows:
                f.write("| %s | %s | `%s` | %s | %s |\n" % tuple(
                    x.replace("|", "\\|") for x in r))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
