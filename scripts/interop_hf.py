"""scripts/interop_hf.py: the Python stack's side of scripts/interop-check.

Runs inside the interop virtualenv (transformers, optimum, GPTQModel and
torch from PyPI), never in gptqd. One JSON object per call on stdout.

  interop_hf.py quantize SRC OUT CALIB --bits B --group-size G [--sym]
                [--act-order] [--format gptq|gptq_v2] [--nsamples N] [--seqlen L]
      GPTQModel quantizes the float folder SRC on windows of CALIB (the
      same draw as gptqd's: consecutive windows from the start) into OUT.
  interop_hf.py eval MODEL TEXT --windows N --seqlen L --prompt P --tokens K
      transformers loads MODEL (float32 on the CPU): the perplexity of the
      first N non-overlapping windows of TEXT tokenized whole (gptqd's
      protocol), and greedy decoding of K tokens after P.
  interop_hf.py dequant MODEL OUT.npz
      the weights of every quantized linear as GPTQModel's kernel holds them
      (dequantized from its own unpacking), float32 [out, in].
  interop_hf.py rope OUT.json
      transformers' inverse RoPE frequencies for a set of configs (every
      rope_type it defines for decoder-only models), for tests/test_config.
  interop_hf.py logits MODEL IDS.i32 OUT.f32
      float32 logits of one sequence (a float folder; for the
      transformers-5 config fixture).
"""
import argparse
import json
import math
import os
import sys

os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, os.cpu_count() or 1)))
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def windows(tok, path, n, seqlen):
    ids = tok(open(path, encoding="utf-8").read(), return_tensors="pt").input_ids[0]
    return [ids[i * seqlen:(i + 1) * seqlen] for i in range(min(n, len(ids) // seqlen))]


def cmd_quantize(a):
    from gptqmodel import GPTQModel, QuantizeConfig
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(a.src)
    calib = [{"input_ids": w.unsqueeze(0), "attention_mask": torch.ones(1, len(w), dtype=torch.long)}
             for w in windows(tok, a.calib, a.nsamples, a.seqlen)]
    qc = QuantizeConfig(bits=a.bits, group_size=a.group_size, desc_act=a.act_order, sym=a.sym,
                        format=a.format)
    m = GPTQModel.load(a.src, qc, device="cpu")
    m.quantize(calib, batch_size=1)
    m.save(a.out)
    print(json.dumps({"saved": a.out}))


def load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    m = AutoModelForCausalLM.from_pretrained(path, device_map="cpu", dtype=torch.float32)
    return m, AutoTokenizer.from_pretrained(path)


def cmd_eval(a):
    m, tok = load(a.model)
    nll = []
    with torch.no_grad():
        for w in windows(tok, a.text, a.windows, a.seqlen):
            lg = m(w.unsqueeze(0)).logits.float()[0]
            lp = torch.log_softmax(lg[:-1], -1)
            nll.append(-lp.gather(1, w[1:].unsqueeze(1)).mean().item())
        p = tok(a.prompt, return_tensors="pt")
        out = m.generate(**p, max_new_tokens=a.tokens, do_sample=False, top_k=None, top_p=None,
                         temperature=None, output_scores=True, return_dict_in_generate=True)
    new = out.sequences[0][p.input_ids.shape[1]:]
    # how close each greedy choice was: top-1 minus top-2 logit, and the
    # text up to each step (to find where another implementation parted)
    margins = [float(t[0].topk(2).values[0] - t[0].topk(2).values[1]) for t in out.scores]
    # as gptqd prints a generation: ended by the end-of-text token, not showing it
    prefixes = [tok.decode(new[:k + 1], skip_special_tokens=True) for k in range(len(new))]
    # the class of the first attention linear (q_proj, or a fused qkv_proj)
    # (OPT's decoder layers are model.decoder.layers; BLOOM's transformer.h
    # with self_attention.query_key_value)
    base = m.get_decoder() if hasattr(m, "get_decoder") else m.model
    layer0 = base.layers[0] if hasattr(base, "layers") else base.h[0]
    attn = getattr(layer0, "self_attn", None) or layer0.self_attention
    kernel = next(type(mod).__name__ for name, mod in attn.named_children()
                  if name.endswith("_proj") or name == "query_key_value")
    print(json.dumps({"perplexity": math.exp(sum(nll) / len(nll)), "windows": len(nll),
                      "greedy_ids": new.tolist(),
                      "greedy_text": tok.decode(new, skip_special_tokens=True),
                      "margins": margins, "prefixes": prefixes, "kernel": kernel}))


def cmd_dequant(a):
    m, _ = load(a.model)
    out = {}
    for name, mod in m.named_modules():
        if hasattr(mod, "qweight") and hasattr(mod, "dequantize_weight"):
            w = mod.dequantize_weight()
            w = w.T if w.shape[0] == mod.in_features and w.shape[1] == mod.out_features else w
            out[name] = w.float().contiguous().numpy()
    np.savez(a.out, **out)
    print(json.dumps({"linears": len(out), "class": type(mod).__name__ if out else None}))


def cmd_rope(a):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    cases = {
        "default": {"rope_type": "default", "rope_theta": 10000.0},
        "theta50000": {"rope_type": "default", "rope_theta": 50000.0},
        "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
        "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192},
        "dynamic": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
        "yarn": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                 "original_max_position_embeddings": 4096},
        "longrope": {"rope_type": "longrope", "rope_theta": 10000.0,
                     "short_factor": [1.0] * 16, "long_factor": [2.0] * 16,
                     "original_max_position_embeddings": 4096},
    }
    res = {}
    for name, rp in cases.items():
        cfg = LlamaConfig(hidden_size=256, num_attention_heads=8, num_key_value_heads=2,
                          head_dim=32, max_position_embeddings=16384, rope_parameters=dict(rp))
        fn = ROPE_INIT_FUNCTIONS.get(rp["rope_type"]) if rp["rope_type"] != "default" else None
        if fn is None:
            dim = 32
            inv = 1.0 / (rp["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.int64)
                                                 .float() / dim))
            scale = 1.0
        else:
            inv, scale = fn(cfg, "cpu")
        res[name] = {"rope_parameters": rp, "head_dim": 32, "inv_freq": inv.tolist(),
                     "attention_scaling": float(scale)}
    import transformers
    with open(a.out, "w") as f:
        json.dump({"transformers": transformers.__version__, "cases": res}, f, indent=1)
    print(json.dumps({"cases": len(res)}))


def cmd_logits(a):
    m, _ = load(a.model)
    ids = torch.from_numpy(np.fromfile(a.ids, dtype="<i4").astype(np.int64)).unsqueeze(0)
    with torch.no_grad():
        m(ids).logits[0].float().numpy().astype("<f4").tofile(a.out)
    print(json.dumps({"tokens": ids.shape[1]}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantize")
    q.add_argument("src")
    q.add_argument("out")
    q.add_argument("calib")
    q.add_argument("--bits", type=int, required=True)
    q.add_argument("--group-size", type=int, required=True)
    q.add_argument("--sym", action="store_true")
    q.add_argument("--act-order", action="store_true")
    q.add_argument("--format", default="gptq")
    q.add_argument("--nsamples", type=int, default=16)
    q.add_argument("--seqlen", type=int, default=256)
    e = sub.add_parser("eval")
    e.add_argument("model")
    e.add_argument("text")
    e.add_argument("--windows", type=int, default=32)
    e.add_argument("--seqlen", type=int, default=256)
    e.add_argument("--prompt", default="The history of the")
    e.add_argument("--tokens", type=int, default=16)
    d = sub.add_parser("dequant")
    d.add_argument("model")
    d.add_argument("out")
    r = sub.add_parser("rope")
    r.add_argument("out")
    lg = sub.add_parser("logits")
    lg.add_argument("model")
    lg.add_argument("ids")
    lg.add_argument("out")
    a = ap.parse_args()
    {"quantize": cmd_quantize, "eval": cmd_eval, "dequant": cmd_dequant, "rope": cmd_rope,
     "logits": cmd_logits}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
