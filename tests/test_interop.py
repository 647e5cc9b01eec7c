#!/usr/bin/env python3
"""tests/test_interop.py: what transformers 5 and GPTQModel made, as gptqd reads it.

    test_interop.py LOGITS_CLI

The references are in tests/data/interop, made by scripts/interop-check
--make-fixtures with the pinned Python stack (transformers, GPTQModel), from
the bundled model models/tiny-llama:
  - tf5-config.json, tf5-ids.i32, tf5-logits.f32: the model under a
    transformers-5 config (rope_parameters, theta 50000) and transformers'
    logits of those ids: ours must match, and differ from theta 10000's.
  - gptqmodel-v2.safetensors / .json: GPTQModel's gptq_v2 checkpoint of the
    model (its quantized tensors; the float ones are the bundled model's,
    rounded to BF16 as GPTQModel saves them)
    and transformers' perplexity and greedy continuation of it: gptqd loads
    the folder and must give the same perplexity (within 1e-4) and text.
  - gptqmodel-phi3.safetensors / .json: GPTQModel's 3-bit act-order
    checkpoint of tests/data/families/phi3 (qkv_proj fused, gate_proj and
    up_proj apart: a layout transformers itself refuses): gptqd loads it and
    saves it back in the family's fused layout, and every linear's weights
    there equal GPTQModel's (decoded by tests/gptq_checkpoint_numpy.py; the
    fused gate_up_proj split at intermediate_size); its KL to the float
    model is small.
  - gptqmodel-{qwen3,opt,bloom,gemma2,gemma3}.safetensors / .json: GPTQModel's
    4-bit g32 checkpoints of those family folders and transformers'
    perplexity of each (8 windows of 128): gptqd runs each within 1e-3 of it
    (its serving path rounds activations to int8), with a small KL to the
    float model, and saves every linear back equal to GPTQModel's under the
    family's own names.
Exits 77 without numpy or gptqd."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("SKIP: numpy not installed")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gptq_checkpoint_numpy as ckpt  # noqa: E402
import gptqd_proc  # noqa: E402

ROOT = os.environ.get("GPTQ_SOURCE_ROOT", os.path.dirname(HERE))
DATA = os.path.join(ROOT, "tests", "data", "interop")
MODEL = os.path.join(ROOT, "models", "tiny-llama")
GPTQD, GPTQCTL = os.environ.get("GPTQD"), os.environ.get("GPTQCTL")
failures = []


def check(cond, what, detail=""):
    print(f"{'ok  ' if cond else 'FAIL'} {what}" + (f": {detail}" if not cond and detail else ""),
          flush=True)
    if not cond:
        failures.append(what)
    return cond


def folder_with(tmp, name, config):
    """A copy of models/tiny-llama under a new config.json (copies: gptqd
    refuses links that leave its model folders)."""
    d = os.path.join(tmp, name)
    os.mkdir(d)
    for f in os.listdir(MODEL):
        if f != "config.json":
            shutil.copy(os.path.join(MODEL, f), os.path.join(d, f))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return d


def logits(cli, model, ids_path, tmp):
    out = os.path.join(tmp, "logits.f32")
    p = subprocess.run([cli, model, ids_path, out], capture_output=True, text=True, timeout=300)
    if not check(p.returncode == 0, f"logits_cli {os.path.basename(model)}", p.stderr[-400:]):
        return None
    return np.fromfile(out, np.float32)


def test_tf5(cli, tmp):
    cfg = json.load(open(os.path.join(DATA, "tf5-config.json")))
    ids = os.path.join(DATA, "tf5-ids.i32")
    want = np.fromfile(os.path.join(DATA, "tf5-logits.f32"), np.float32)
    got = logits(cli, folder_with(tmp, "tf5", cfg), ids, tmp)
    plain = logits(cli, MODEL, ids, tmp)
    if got is None or plain is None:
        return
    scale = np.abs(want).max()
    err = np.abs(got - want).max() / scale
    off = np.abs(plain - want).max() / scale
    check(err < 1e-4, "a transformers-5 config (rope_parameters, theta 50000) gives transformers' "
          f"logits (max rel {err:.1e})", f"{err:.3e}")
    check(off > 100 * max(err, 1e-6), f"... which theta 10000 would not (max rel {off:.2e})",
          f"{off:.3e}")


def gptqmodel_tensors(d, float_src, fixture, float_dtype):
    """d/model.safetensors as GPTQModel saved it: float_src's tensors but the
    quantized linears' weights, in float_dtype (BF16: rounded to nearest even,
    as torch does), and the fixture's quantized tensors."""
    quant = ckpt.read_safetensors(os.path.join(DATA, fixture))
    packed = {k[:-len(".qweight")] for k in quant if k.endswith(".qweight")}
    tensors = {}
    for k, (dt, a) in ckpt.read_safetensors(os.path.join(float_src, "model.safetensors")).items():
        # the quantized linears' float weights, fused ones included (Phi-3's
        # gate_up_proj, whose parts GPTQModel writes apart)
        if k.endswith("_proj.weight") or (k.endswith(".weight") and k[:-len(".weight")] in packed):
            continue
        if float_dtype == "BF16":
            f = a.astype(np.float32).view(np.uint32).astype(np.uint64)
            tensors[k] = ("BF16", ((f + 0x7FFF + ((f >> 16) & 1)) >> 16).astype(np.uint16))
        else:
            tensors[k] = (dt, a)
    tensors.update(quant)
    ckpt.write_safetensors(os.path.join(d, "model.safetensors"), tensors)


def ctl_on(sock):
    """gptqctl --json on sock: the reply, or None (a failed check)."""
    def ctl(*args):
        p = subprocess.run([GPTQCTL, "--socket", sock, "--json"] + list(args),
                           capture_output=True, text=True, timeout=300)
        check(p.returncode == 0, "gptqctl " + " ".join(args[:2]), p.stderr[-400:])
        return json.loads(p.stdout) if p.returncode == 0 else None
    return ctl


def run_gptqmodel_fixture(tmp, fam, fixture, ref):
    """GPTQModel's checkpoint of tests/data/families/FAM (its config with the
    fixture's quantization_config, gptqmodel_tensors) through one gptqd:
    loaded, evaluated against the float folder (ref's windows, else 8 of 128
    of data/eval-default.txt) and saved back. (folder, saved folder, eval
    reply, config), or None when gptqd is missing or a step failed."""
    src = os.path.join(ROOT, "tests", "data", "families", fam)
    d = os.path.join(tmp, fixture)
    shutil.copytree(src, d)
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["quantization_config"] = ref["quantization_config"]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    gptqmodel_tensors(d, src, fixture + ".safetensors", ref["float_dtype"])
    if not GPTQD or not os.access(GPTQD, os.X_OK) or not GPTQCTL:
        print(f"SKIP GPTQModel's {fam} checkpoint: gptqd not built", flush=True)
        return None
    sock = os.path.join(tmp, f"gptqd-{fam}.sock")
    daemon = gptqd_proc.start_daemon(GPTQD, GPTQCTL, tmp, sock, [tmp, os.path.join(ROOT, "data")])
    back = os.path.join(tmp, f"{fam}-back")
    ctl = ctl_on(sock)
    try:
        shutil.copytree(src, os.path.join(tmp, f"{fam}-float"))
        if not (ctl("load", "gm", d) and ctl("load", "fl", os.path.join(tmp, f"{fam}-float"))):
            return None
        e = ctl("eval", "gm", "--text",
                os.path.join(ROOT, ref.get("text", os.path.join("data", "eval-default.txt"))),
                "--seqlen", str(ref.get("seqlen", 128)), "--max-windows",
                str(ref.get("windows", 8)), "--kl-base", "fl")
        if not ctl("save", "gm", back):
            return None
    finally:
        gptqd_proc.stop_daemon(daemon, wait_s=10)
    return d, back, e, cfg


def test_gptqmodel_phi3(tmp):
    ref = json.load(open(os.path.join(DATA, "gptqmodel-phi3.json")))
    run = run_gptqmodel_fixture(tmp, "phi3", "gptqmodel-phi3", ref)
    if run is None:
        return
    d, back, e, cfg = run
    if e:
        check(0 < e["kl"] < 0.05, f"GPTQModel's Phi-3 checkpoint runs: KL to the float model "
              f"{e['kl']:.2e}")
    _, theirs = ckpt.checkpoint_weights(d)
    _, ours = ckpt.checkpoint_weights(back)
    inter = cfg["intermediate_size"]
    names = set(ckpt.read_safetensors(os.path.join(back, "model.safetensors")))
    check("model.layers.0.mlp.gate_up_proj.qweight" in names and
          "model.layers.0.mlp.gate_proj.qweight" not in names,
          "saved back in Phi-3's own layout: gate_up_proj fused")
    worst = 0.0
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        pairs = [(theirs[p + "self_attn.qkv_proj.weight"], ours.get(p + "self_attn.qkv_proj.weight")),
                 (theirs[p + "self_attn.o_proj.weight"], ours.get(p + "self_attn.o_proj.weight")),
                 (theirs[p + "mlp.down_proj.weight"], ours.get(p + "mlp.down_proj.weight"))]
        gu = ours.get(p + "mlp.gate_up_proj.weight")
        if gu is not None:
            pairs += [(theirs[p + "mlp.gate_proj.weight"], gu[:inter]),
                      (theirs[p + "mlp.up_proj.weight"], gu[inter:])]
        for a, b in pairs:
            if b is None or a.shape != b.shape:
                worst = float("inf")
            else:
                worst = max(worst, float(np.abs(a - b).max()))
    check(worst == 0, f"every linear gptqd saves back equals GPTQModel's (max diff {worst:g})")


def test_gptqmodel(tmp):
    ref = json.load(open(os.path.join(DATA, "gptqmodel-v2.json")))
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    cfg["quantization_config"] = ref["quantization_config"]
    d = folder_with(tmp, "gptqmodel-v2", cfg)
    os.remove(os.path.join(d, "model.safetensors"))
    gptqmodel_tensors(d, MODEL, "gptqmodel-v2.safetensors", ref.get("float_dtype"))
    if not GPTQD or not os.access(GPTQD, os.X_OK) or not GPTQCTL:
        print("SKIP the GPTQModel checkpoint: gptqd not built", flush=True)
        return
    sock = os.path.join(tmp, "gptqd.sock")
    daemon = gptqd_proc.start_daemon(GPTQD, GPTQCTL, tmp, sock, [tmp, os.path.join(ROOT, "data")])
    ctl = ctl_on(sock)
    try:
        if not ctl("load", "gm", d):
            return
        e = ctl("eval", "gm", "--text", os.path.join(ROOT, ref["text"]), "--seqlen",
                str(ref["seqlen"]), "--max-windows", str(ref["windows"]))
        g = ctl("infer", "gm", ref["prompt"], "--temperature", "0", "--max-tokens",
                str(len(ref["greedy_ids"])))
        if e:
            rel = abs(e["perplexity"] / ref["perplexity"] - 1)
            check(rel < 1e-4, f"GPTQModel's gptq_v2 checkpoint: perplexity {e['perplexity']:.4f} "
                  f"vs transformers' {ref['perplexity']:.4f} (rel {rel:.1e})")
        if g:
            check(g["text"] == ref["greedy_text"], "... and transformers' greedy continuation",
                  f"{g['text']!r} vs {ref['greedy_text']!r}")
    finally:
        gptqd_proc.stop_daemon(daemon, wait_s=10)


def test_gptqmodel_family(tmp, fam):
    """GPTQModel's 4-bit checkpoint of tests/data/families/FAM, as gptqd runs
    and saves it: transformers' perplexity of it on the same windows, a small
    KL to the float model, and every linear saved back equal to GPTQModel's
    (the family's own module names on both sides)."""
    fixture = f"gptqmodel-{fam}"
    if not check(os.path.exists(os.path.join(DATA, fixture + ".json")),
                 f"{fixture}: fixture present (scripts/interop-check --make-fixtures)"):
        return
    ref = json.load(open(os.path.join(DATA, fixture + ".json")))
    run = run_gptqmodel_fixture(tmp, fam, fixture, ref)
    if run is None:
        return
    d, back, e, _ = run
    if e:
        rel = abs(e["perplexity"] / ref["perplexity"] - 1)
        # gptqd serves packed linears with int8 activations: up to a few 1e-4
        # on Gemma's large activations (bench/RESULTS.md), 1e-6 elsewhere
        check(rel < 1e-3 and 0 < e["kl"] < 0.05,
              f"GPTQModel's {fam} checkpoint: perplexity {e['perplexity']:.4f} vs "
              f"transformers' {ref['perplexity']:.4f} (rel {rel:.1e}), KL to the float "
              f"model {e['kl']:.2e}")
    _, theirs = ckpt.checkpoint_weights(d)
    _, ours = ckpt.checkpoint_weights(back)
    packed = ckpt.read_safetensors(os.path.join(DATA, fixture + ".safetensors"))
    quantized = [k for k in theirs if k[:-len(".weight")] + ".qweight" in packed]
    worst = 0.0 if quantized else float("inf")
    for k in quantized:
        b = ours.get(k)
        worst = max(worst, float("inf") if b is None or b.shape != theirs[k].shape
                    else float(np.abs(theirs[k] - b).max()))
    check(worst == 0, f"{fam}: all {len(quantized)} linears gptqd saves back equal GPTQModel's "
          f"(max diff {worst:g})")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if not os.path.exists(os.path.join(DATA, "rope.json")):
        print(f"FAIL: {DATA} holds no fixtures (scripts/interop-check --make-fixtures)")
        return 1
    tmp = tempfile.mkdtemp(prefix="gptq-interop-")
    try:
        test_tf5(sys.argv[1], tmp)
        test_gptqmodel(tmp)
        test_gptqmodel_phi3(tmp)
        for fam in ("qwen3", "opt", "bloom", "gemma2", "gemma3"):
            test_gptqmodel_family(tmp, fam)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
