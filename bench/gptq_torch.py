#!/usr/bin/env python3
"""bench/gptq_torch.py: the GPTQ algorithm (Frantar et al., 2023, as its
reference implementation runs it) in plain PyTorch, float32, as the yardstick
bench/quantize compares its per-layer time against ("at least 2x faster than
the torch version of the same algorithm on the same GPU").

It builds one decoder layer of the given shape with random weights (the seven
linears of a Llama layer), accumulates the four input Hessians (q/k/v share
one, o, gate/up share one, down) from random activations of nsamples x seqlen
tokens, generated batch by batch so that they never exist whole, and runs
GPTQ on each linear. Device time is measured with CUDA events after a
warm-up (wall time on the CPU). Prints one JSON object on stdout, nothing
else; progress goes to stderr.

What this baseline does and does not do, so that the ratio reads right:
- one Hessian per input group (the reference keeps one per linear, so it
  accumulates q/k/v's three times and gate/up's twice): the torch figure is
  the cheaper of the two ways;
- no losses or other bookkeeping in the column loop, only what the
  quantization needs;
- by default no decoder-layer forward passes (random X for the Hessians);
  with --pipeline the layer's inputs are random hidden states and each
  Hessian comes from the layer's own forward as the calibration pipeline
  runs it true-sequentially (forward to the group's input with the earlier
  groups already quantized, then a closing forward with all seven
  quantized): the like-for-like figure for bench/quantize's per-layer time;
- float32 throughout, matmuls in full float32 (TF32 off, PyTorch's
  default). The reference implementation runs its forwards in fp16.

Also: --check-vectors DIR runs the same function on the fixture layers
(fixtures/gptq-vectors: W and H of two real layers and the reference
implementation's dequantized result per configuration) and prints how far
our Q is from the reference's, as JSON, for the configurations it
implements (asymmetric or symmetric min-max, any bits, group size and block
size; no act-order, no static groups).

Usage:
  gptq_torch.py [--hidden 4096] [--inter 11008] [--kv-dim HIDDEN]
                [--nsamples 128] [--seqlen 2048] [--batch 8] [--bits 4]
                [--group-size 128] [--block-size 128] [--damp 0.01] [--sym]
                [--heads N] [--pipeline] [--device cuda:0|cpu] [--seed 0]
  gptq_torch.py --check-vectors DIR [--device cpu]
Exit 0 on success, 1 on a failure (message on stderr), 77 when torch or the
asked-for device is missing (a bench tool: nothing in CI needs torch).
"""
import argparse
import json
import struct
import sys
import time

try:
    import torch
except ImportError as e:  # a bench tool: its absence is a skip, not a failure
    print(f"gptq_torch: no torch ({e}); pip install torch to run this baseline", file=sys.stderr)
    sys.exit(77)


# ---- the algorithm ---------------------------------------------------------

def hessian_add(H, n_samples, X):
    """Running mean H <- H n/(n+b) + (2/(n+b)) X^T X for a batch X of b
    samples [b, seqlen, cols]. Returns the new sample count n + b."""
    b = X.shape[0]
    X = X.reshape(-1, X.shape[-1]).float()
    H.mul_(n_samples / (n_samples + b))
    H.addmm_(X.t(), X, alpha=2.0 / (n_samples + b))
    return n_samples + b


def group_params(W, bits, sym):
    """Per-row min-max (scale, zero) of W [rows, n], the range widened to
    include 0; a row of zeros gets the range [-1, 1]."""
    maxq = 2 ** bits - 1
    xmin = W.min(dim=1).values.clamp(max=0)
    xmax = W.max(dim=1).values.clamp(min=0)
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    flat = (xmin == 0) & (xmax == 0)
    xmin = torch.where(flat, -torch.ones_like(xmin), xmin)
    xmax = torch.where(flat, torch.ones_like(xmax), xmax)
    scale = (xmax - xmin) / maxq
    if sym:
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        zero = torch.round(-xmin / scale)
    return scale, zero


def quantize(w, scale, zero, maxq):
    """Dequantized value of the nearest code, codes clamped to [0, maxq]."""
    code = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
    return scale * (code - zero)


def gptq(W, H, bits=4, group_size=128, block_size=128, damp=0.01, sym=False):
    """GPTQ of W [rows, cols] with Hessian H [cols, cols] (neither modified).
    Returns the dequantized weights Q [rows, cols]. Raises RuntimeError with a
    hint when the damped H is not positive definite."""
    W = W.clone().float()
    H = H.clone()
    rows, cols = W.shape
    maxq = 2 ** bits - 1
    if group_size == -1:  # per channel: fitted before dead columns are zeroed
        scale, zero = group_params(W, bits, sym)

    dead = torch.diagonal(H) == 0  # inputs never seen non-zero
    H[dead, dead] = 1
    W[:, dead] = 0

    diag = torch.diagonal(H)
    diag.add_(damp * diag.mean())
    # Hinv: the upper Cholesky factor of H^-1 (its rows are the error
    # feedback of each column onto the later ones).
    L, info = torch.linalg.cholesky_ex(H)
    if int(info) != 0:
        raise RuntimeError(f"Cholesky of the damped Hessian failed at column {int(info)}: "
                           f"raise --damp (now {damp})")
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)

    Q = torch.zeros_like(W)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()  # the block, updated column by column
        Err = torch.zeros_like(W1)
        Hb = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if group_size != -1 and col % group_size == 0:
                # entering a group: fitted on W as of the last lazy update
                scale, zero = group_params(W[:, col:col + group_size], bits, sym)
            w = W1[:, i]
            q = quantize(w, scale, zero, maxq)
            Q[:, col] = q
            e = (w - q) / Hb[i, i]
            W1[:, i:] -= e.unsqueeze(1) * Hb[i, i:].unsqueeze(0)
            Err[:, i] = e
        # the lazy batch: the block's errors reach all later columns at once
        W[:, i2:] -= Err @ Hinv[i1:i2, i2:]
    return Q


# ---- one Llama decoder layer (HF semantics, float32) --------------------------

def rmsnorm(x, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # weights are 1


def rope(x, inv_freq):
    """HF rotate_half RoPE on x [b, heads, seq, head_dim], positions 0..seq-1."""
    pos = torch.arange(x.shape[2], device=x.device, dtype=torch.float32)
    ang = torch.outer(pos, inv_freq)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


def layer_forward(h, W, heads, kv_heads, stop=None):
    """Run the layer on h [b, seq, hidden] with weights W (name -> [out, in]).
    stop: the input group whose input to return instead of running on
    ("qkv", "o", "gate_up", "down"); None: the layer's output."""
    b, seq, hidden = h.shape
    hd = W["q_proj"].shape[0] // heads
    x = rmsnorm(h)
    if stop == "qkv":
        return x
    q = (x @ W["q_proj"].t()).view(b, seq, heads, hd).transpose(1, 2)
    k = (x @ W["k_proj"].t()).view(b, seq, kv_heads, hd).transpose(1, 2)
    v = (x @ W["v_proj"].t()).view(b, seq, kv_heads, hd).transpose(1, 2)
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, device=h.device).float() / hd))
    q, k = rope(q, inv_freq), rope(k, inv_freq)
    if kv_heads != heads:
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
    a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    a = a.transpose(1, 2).reshape(b, seq, heads * hd)
    if stop == "o":
        return a
    h = h + a @ W["o_proj"].t()
    x = rmsnorm(h)
    if stop == "gate_up":
        return x
    m = torch.nn.functional.silu(x @ W["gate_proj"].t()) * (x @ W["up_proj"].t())
    if stop == "down":
        return m
    return h + m @ W["down_proj"].t()


# ---- timing ----------------------------------------------------------------

class Timer:
    """Seconds of device time between start() and stop(): CUDA events on a
    GPU (synchronized), wall time on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def start(self):
        if self.cuda:
            self.t0 = torch.cuda.Event(enable_timing=True)
            self.t1 = torch.cuda.Event(enable_timing=True)
            self.t0.record()
        else:
            self.w0 = time.perf_counter()

    def stop(self):
        if self.cuda:
            self.t1.record()
            self.t1.synchronize()
            return self.t0.elapsed_time(self.t1) / 1e3
        return time.perf_counter() - self.w0


def bench(args, device):
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    hidden, inter, kv = args.hidden, args.inter, args.kv_dim or args.hidden
    # (input group, input features, its linears as (name, rows))
    groups = [("qkv", hidden, [("q_proj", hidden), ("k_proj", kv), ("v_proj", kv)]),
              ("o", hidden, [("o_proj", hidden)]),
              ("gate_up", hidden, [("gate_proj", inter), ("up_proj", inter)]),
              ("down", inter, [("down_proj", hidden)])]
    qargs = dict(bits=args.bits, group_size=args.group_size, block_size=args.block_size,
                 damp=args.damp, sym=args.sym)

    # Warm-up: CUDA context, cuBLAS / cuSOLVER handles, the kernels the loop uses.
    Xw = torch.randn(2, 64, 256, device=device, generator=gen)
    Hw = torch.zeros(256, 256, device=device)
    hessian_add(Hw, 0, Xw)
    gptq(torch.rand(256, 256, device=device, generator=gen) - 0.5, Hw, **qargs)
    if device.type == "cuda":
        torch.cuda.synchronize()

    timer = Timer(device)
    if args.pipeline:
        return pipeline(args, device, gen, groups, qargs, timer)
    hessian_s, gptq_s = {}, {}
    for gname, cols, linears in groups:
        print(f"gptq_torch: Hessian {gname} [{cols}, {cols}] over {args.nsamples} x "
              f"{args.seqlen} tokens", file=sys.stderr)
        H = torch.zeros(cols, cols, device=device)
        n = 0
        timer.start()
        for b0 in range(0, args.nsamples, args.batch):
            b = min(args.batch, args.nsamples - b0)
            X = torch.randn(b, args.seqlen, cols, device=device, generator=gen)
            n = hessian_add(H, n, X)
            del X
        hessian_s[gname] = timer.stop()
        for name, rows in linears:
            W = random_weight(name, rows, cols, device, gen)
            timer.start()
            Q = gptq(W, H, **qargs)
            gptq_s[name] = timer.stop()
            if not torch.isfinite(Q).all():
                raise RuntimeError(f"{name}: non-finite quantized weights")
            print(f"gptq_torch: {name} [{rows}, {cols}] {gptq_s[name]:.3f} s", file=sys.stderr)
            del W, Q
        del H

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "device": str(device), "device_name": name, "torch": torch.__version__,
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "shape": {"hidden": hidden, "inter": inter, "kv_dim": kv},
        "nsamples": args.nsamples, "seqlen": args.seqlen, "batch": args.batch,
        "bits": args.bits, "group_size": args.group_size, "block_size": args.block_size,
        "damp": args.damp, "sym": args.sym,
        "mode": "random-x", "hessian_seconds": hessian_s, "gptq_seconds": gptq_s,
        "hessian_total": sum(hessian_s.values()), "gptq_total": sum(gptq_s.values()),
        "layer_seconds": sum(hessian_s.values()) + sum(gptq_s.values()),
    }


def random_weight(name, rows, cols, device, gen):
    """random_model's weights: uniform, scale 0.06 (0.04 for down_proj)."""
    return (torch.rand(rows, cols, device=device, generator=gen) - 0.5) * \
        (0.04 if name == "down_proj" else 0.06)


def pipeline(args, device, gen, groups, qargs, timer):
    """One layer as the calibration pipeline quantizes it, true-sequential:
    per input group, forward every batch to that input and accumulate its
    Hessian (the capture), GPTQ the group's linears and put the quantized
    weights in; then one closing forward makes the next layer's inputs."""
    hidden = args.hidden
    heads = args.heads or max(1, hidden // 128)
    hd = hidden // heads
    kv_heads = max(1, (args.kv_dim or hidden) // hd)
    W = {name: random_weight(name, rows, cols, device, gen)
         for _, cols, linears in groups for name, rows in linears}
    # the layer's inputs (an embedding's scale); all resident, as in the pipeline
    hs = torch.randn(args.nsamples, args.seqlen, hidden, device=device, generator=gen) * 0.1
    layer_forward(hs[:1, :16], W, heads, kv_heads)  # warm the attention kernels
    capture_s, gptq_s = {}, {}
    for gname, cols, linears in groups:
        print(f"gptq_torch: capture {gname} [{cols}, {cols}]", file=sys.stderr)
        H = torch.zeros(cols, cols, device=device)
        n = 0
        timer.start()
        for b0 in range(0, args.nsamples, args.batch):
            X = layer_forward(hs[b0:b0 + args.batch], W, heads, kv_heads, stop=gname)
            n = hessian_add(H, n, X)
            del X
        capture_s[gname] = timer.stop()
        for name, rows in linears:
            timer.start()
            Q = gptq(W[name], H, **qargs)
            gptq_s[name] = timer.stop()
            if not torch.isfinite(Q).all():
                raise RuntimeError(f"{name}: non-finite quantized weights")
            W[name] = Q
            print(f"gptq_torch: {name} [{rows}, {cols}] {gptq_s[name]:.3f} s", file=sys.stderr)
        del H
    timer.start()
    for b0 in range(0, args.nsamples, args.batch):  # in place, as the pipeline does
        hs[b0:b0 + args.batch] = layer_forward(hs[b0:b0 + args.batch], W, heads, kv_heads)
    closing_s = timer.stop()
    if not torch.isfinite(hs).all():
        raise RuntimeError("non-finite layer outputs")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "mode": "pipeline", "device": str(device), "device_name": name,
        "torch": torch.__version__, "tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "shape": {"hidden": hidden, "inter": args.inter, "kv_dim": kv_heads * hd,
                  "heads": heads, "kv_heads": kv_heads},
        "nsamples": args.nsamples, "seqlen": args.seqlen, "batch": args.batch,
        "bits": args.bits, "group_size": args.group_size, "block_size": args.block_size,
        "damp": args.damp, "sym": args.sym,
        "capture_seconds": capture_s, "closing_forward_seconds": closing_s,
        "gptq_seconds": gptq_s, "gptq_total": sum(gptq_s.values()),
        "layer_seconds": sum(capture_s.values()) + closing_s + sum(gptq_s.values()),
    }


# ---- the fixture check ------------------------------------------------------

def read_safetensors(path):
    """{name: float32 tensor} of an F32-only safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        data = bytearray(blob[8 + hlen + a:8 + hlen + b])
        out[name] = torch.frombuffer(data, dtype=torch.float32).reshape(t["shape"])
    return out


def check_vectors(directory, device):
    with open(f"{directory}/vectors.json") as f:
        spec = json.load(f)
    tensors = read_safetensors(f"{directory}/vectors.safetensors")
    results = []
    for layer in spec["layers"]:
        W = tensors[layer["name"] + ".W"].to(device)
        H = tensors[layer["name"] + ".H"].to(device)
        for c in spec["configs"]:
            if c.get("act_order") or c.get("static_groups"):
                continue
            Q = gptq(W, H, bits=c["bits"], group_size=c["group_size"],
                     block_size=c["blocksize"], damp=c["damp"], sym=bool(c.get("sym"))).cpu()
            R = tensors[f"{layer['name']}.Q.{c['tag']}"]
            diff = (Q - R).abs()
            step = (R.max() - R.min()).item() / (2 ** c["bits"] - 1)  # a rough grid step
            results.append({"layer": layer["name"], "config": c["tag"],
                            "max_abs_diff": diff.max().item(),
                            "identical": (diff == 0).float().mean().item(),
                            "within_1e-6": (diff <= 1e-6).float().mean().item(),
                            "grid_step": step})
    return {"device": str(device), "torch": torch.__version__, "results": results}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--inter", type=int, default=11008)
    p.add_argument("--kv-dim", type=int, default=0, help="k/v rows (default: hidden)")
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8, help="samples per Hessian batch")
    p.add_argument("--bits", type=int, default=4, choices=[2, 3, 4, 8])
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--damp", type=float, default=0.01)
    p.add_argument("--sym", action="store_true")
    p.add_argument("--heads", type=int, default=0, help="attention heads (default hidden/128)")
    p.add_argument("--pipeline", action="store_true",
                   help="Hessians from the layer's own true-sequential forwards")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-vectors", metavar="DIR")
    args = p.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gptq_torch: {args.device} asked for, but torch sees no CUDA device",
              file=sys.stderr)
        return 77
    try:
        if args.check_vectors:
            out = check_vectors(args.check_vectors, device)
        else:
            out = bench(args, device)
    except (RuntimeError, ValueError, OSError, KeyError) as e:
        print(f"gptq_torch: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
