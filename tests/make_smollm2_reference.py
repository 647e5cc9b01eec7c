#!/usr/bin/env python3
"""tests/make_smollm2_reference.py: the independent reference the real-model
tests compare against (tests/data/smollm2-reference.json).

    make_smollm2_reference.py MODEL.gguf LLAMA_TOKENIZE EVAL_TXT OUT.json

Nothing here shares code with gptqd:
  * token ids come from llama.cpp's own tokenizer (the llama-tokenize tool,
    built from the llama-cpp-python sdist), for the evaluation text and for
    a set of varied strings (code, digits, scripts, normal forms, whitespace
    runs, special tokens);
  * the forward pass is a plain float64 numpy Llama written from llama.cpp's
    conventions: tensors as the GGUF stores them (dequantized by the `gguf`
    package), so the Q/K rows stay in llama.cpp's permuted order and RoPE
    rotates adjacent pairs (x[2i], x[2i+1]) -- gptqd un-permutes them and
    uses HF's rotate_half instead, so agreement checks that mapping too.

It records: the tokenizer vectors, the greedy continuation of a prompt with
the smallest top-1/top-2 logit margin met on the way (a float32 run must not
flip a near tie), and the perplexity of the first windows of the text, with
the ids of those windows."""
import json
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

# The chat template's turn markers (special tokens); of the prompts tried,
# the one whose greedy path has no near ties (smallest top-2 margin 0.35
# logits, where a float32 run differs by ~1e-4).
PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
N_NEW = 24
SEQLEN = 256
N_WINDOWS = 4

TEXTS = [
    "Hello world",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "Prices: $1,234.56 and 12345678901234567890, 3.14159e-10, 0x1F2E",
    "naïve café résumé Zürich — «quotes» ‘single’ “double”",
    "Ελληνικά, Русский текст, العربية, हिन्दी, 日本語のテキスト, 中文, 한국어",
    "emoji 🤖🚀 👨‍👩‍👧 flags 🇫🇷🇩🇪",
    "decomposed cafe\u0301 and composed caf\u00e9, ﬁ ligature, ＡＢＣ fullwidth",
    "tabs\tand\t\tspaces    runs\n\n\n  leading and trailing   \r\nCRLF",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after a special token",
    "I'm sure you'll see they've done it, WE'RE done.",
    "   ",
    "a",
]


def tokenize(tool, model, text):
    with tempfile.NamedTemporaryFile("wb", suffix=".txt") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        out = subprocess.run([tool, "-m", model, "-f", f.name, "--ids", "--log-disable",
                              "--no-bos"], capture_output=True, check=True).stdout.decode()
    line = [l for l in out.splitlines() if l.startswith("[")][-1]
    return json.loads(line)


class Model:
    def __init__(self, path):
        r = GGUFReader(path)
        f = {k: v for k, v in r.fields.items()}

        def val(key):
            fld = f[key]
            return fld.parts[fld.data[0]].tolist()[0]

        self.n_layer = val("llama.block_count")
        self.n_head = val("llama.attention.head_count")
        self.n_kv = val("llama.attention.head_count_kv")
        self.d = val("llama.embedding_length")
        self.eps = float(val("llama.attention.layer_norm_rms_epsilon"))
        self.base = float(val("llama.rope.freq_base"))
        self.hd = self.d // self.n_head
        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type).astype(np.float64)
            self.w[t.name] = a.reshape([int(x) for x in reversed(t.shape)])  # [rows, cols]
        self.out = self.w.get("output.weight", self.w["token_embd.weight"])

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        # llama.cpp rope mode 0: pairs of adjacent elements
        half = self.hd // 2
        inv = self.base ** (-np.arange(half) * 2.0 / self.hd)
        ang = pos[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        y = np.empty_like(x)
        y[..., 0::2] = x0 * c - x1 * s
        y[..., 1::2] = x0 * s + x1 * c
        return y

    def forward(self, ids):
        T = len(ids)
        pos = np.arange(T, dtype=np.float64)
        h = self.w["token_embd.weight"][ids]
        mask = np.triu(np.full((T, T), -np.inf), 1)
        g = self.n_head // self.n_kv
        for l in range(self.n_layer):
            p = f"blk.{l}."
            x = self.rms(h, self.w[p + "attn_norm.weight"])
            q = (x @ self.w[p + "attn_q.weight"].T).reshape(T, self.n_head, self.hd)
            k = (x @ self.w[p + "attn_k.weight"].T).reshape(T, self.n_kv, self.hd)
            v = (x @ self.w[p + "attn_v.weight"].T).reshape(T, self.n_kv, self.hd)
            q, k = self.rope(q, pos), self.rope(k, pos)
            att = np.empty((T, self.n_head, self.hd))
            for hh in range(self.n_head):
                kk, vv = k[:, hh // g], v[:, hh // g]
                s = q[:, hh] @ kk.T / np.sqrt(self.hd) + mask
                s = np.exp(s - s.max(axis=1, keepdims=True))
                att[:, hh] = (s / s.sum(axis=1, keepdims=True)) @ vv
            h = h + att.reshape(T, self.d) @ self.w[p + "attn_output.weight"].T
            x = self.rms(h, self.w[p + "ffn_norm.weight"])
            gate = x @ self.w[p + "ffn_gate.weight"].T
            up = x @ self.w[p + "ffn_up.weight"].T
            h = h + (gate / (1 + np.exp(-gate)) * up) @ self.w[p + "ffn_down.weight"].T
        return self.rms(h, self.w["output_norm.weight"]) @ self.out.T


def main():
    model_path, tool, eval_path, out_path = sys.argv[1:5]
    ref = {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "tokenizer": []}
    for text in TEXTS:
        ref["tokenizer"].append({"text": text, "ids": tokenize(tool, model_path, text)})
    m = Model(model_path)
    ids = tokenize(tool, model_path, PROMPT)
    prompt_len, margin = len(ids), 1e9
    for _ in range(N_NEW):
        logits = m.forward(np.array(ids))[-1]
        top = np.sort(logits)[-2:]
        margin = min(margin, float(top[1] - top[0]))
        ids.append(int(np.argmax(logits)))
    ref["greedy"] = {"prompt": PROMPT, "prompt_ids": ids[:prompt_len],
                     "new_ids": ids[prompt_len:], "min_top2_margin": margin}
    with open(eval_path, encoding="utf-8") as f:
        text = f.read()
    all_ids = tokenize(tool, model_path, text)
    windows, nll = [], []
    for w in range(N_WINDOWS):
        win = all_ids[w * SEQLEN:(w + 1) * SEQLEN]
        logits = m.forward(np.array(win))
        lse = np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1)) + logits.max(axis=1)
        nll.append(float(np.mean(lse[:-1] - logits[np.arange(SEQLEN - 1), win[1:]])))
        windows.append(win)
    ref["perplexity"] = {"seqlen": SEQLEN, "windows": windows, "mean_nll": float(np.mean(nll)),
                         "perplexity": float(np.exp(np.mean(nll))),
                         "protocol": "mean over windows of the mean NLL of the seqlen-1 "
                                     "predicted tokens, exp; float64 numpy forward"}
    ref["eval_ids_first"] = all_ids[:2048]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False, indent=1)
    print(f"greedy min margin {margin:.3f}, perplexity {ref['perplexity']['perplexity']:.4f}")


if __name__ == "__main__":
    main()
