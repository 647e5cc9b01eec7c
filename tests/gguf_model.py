#!/usr/bin/env python3
"""tests/gguf_model.py: a model read from GGUF is the model that was written.

    gguf_model.py TEST_GGUF_MODEL TOKENIZE_CLI

The fixture model (tiny-llama, F16 safetensors) is converted to GGUF here the
way llama.cpp's convert_hf_to_gguf.py does it -- written independently with
the `gguf` package: tensors renamed, Q and K rows permuted for llama.cpp's
interleaved RoPE, the tokenizer as tokenizer.ggml.* metadata -- once with
F16 linears and once with Q8_0 ones. tests/test_gguf_model then loads each
file and must give the fixture's reference logits (computed independently
from the safetensors weights) and the fixture tokenizer's ids. The
tokenizer.json that gptqd synthesizes from the GGUF is also run through HF
`tokenizers` against the fixture's own tokenizer.json.
Exits 77 without numpy, gguf, tokenizers or the fixtures."""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import gguf
    from gguf.quants import quantize
    from tokenizers import Tokenizer
except ImportError as e:
    print(f"SKIP: {e} (pip install numpy gguf tokenizers)")
    sys.exit(77)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = {"F16": np.float16, "F32": np.float32, "BF16": np.uint16}[info["dtype"]]
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dt).reshape(info["shape"])
    return out


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute, written from its definition:
    rows (head, half, i) become (head, i, half)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_gguf(path, fdir, linear_type):
    cfg = json.load(open(os.path.join(fdir, "config.json")))
    tok = json.load(open(os.path.join(fdir, "tokenizer.json"), encoding="utf-8"))
    w = read_safetensors(os.path.join(fdir, "model.safetensors"))
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    g = gguf.GGUFWriter(path, "llama")
    g.add_name("tiny-llama")
    g.add_block_count(cfg["num_hidden_layers"])
    g.add_context_length(cfg["max_position_embeddings"])
    g.add_embedding_length(cfg["hidden_size"])
    g.add_feed_forward_length(cfg["intermediate_size"])
    g.add_head_count(nh)
    g.add_head_count_kv(nkv)
    g.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    g.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    g.add_vocab_size(cfg["vocab_size"])
    g.add_rope_dimension_count(cfg["hidden_size"] // nh)
    g.add_file_type(1 if linear_type == gguf.GGMLQuantizationType.F16 else 7)
    # tokenizer: byte-level BPE, GPT-2's split
    vocab = tok["model"]["vocab"]
    n = max(max(vocab.values()), max(a["id"] for a in tok["added_tokens"])) + 1
    tokens, types = [f"[PAD{i}]" for i in range(n)], [gguf.TokenType.UNUSED] * n
    for t, i in vocab.items():
        tokens[i], types[i] = t, gguf.TokenType.NORMAL
    for a in tok["added_tokens"]:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = gguf.TokenType.CONTROL if a["special"] else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    g.add_tokenizer_model("gpt2")
    g.add_tokenizer_pre("gpt-2")
    g.add_token_list(tokens)
    g.add_token_types(types)
    g.add_token_merges(merges)
    g.add_bos_token_id(cfg["bos_token_id"])
    g.add_eos_token_id(cfg["eos_token_id"])
    g.add_add_bos_token(False)

    def tensor(name, a, qtype=None):
        a = np.ascontiguousarray(a)
        if qtype is None or qtype == gguf.GGMLQuantizationType.F16:
            g.add_tensor(name, a.astype(np.float16 if qtype else np.float32))
        else:
            q = quantize(a.astype(np.float32), qtype)
            g.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)

    f16 = gguf.GGMLQuantizationType.F16
    tensor("token_embd.weight", w["model.embed_tokens.weight"], f16)
    tensor("output_norm.weight", w["model.norm.weight"].astype(np.float32))
    if not cfg.get("tie_word_embeddings"):
        tensor("output.weight", w["lm_head.weight"], f16)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        tensor(f"blk.{l}.attn_norm.weight", w[p + "input_layernorm.weight"].astype(np.float32))
        tensor(f"blk.{l}.ffn_norm.weight", w[p + "post_attention_layernorm.weight"].astype(np.float32))
        for hf, gg in names.items():
            a = w[p + hf + ".weight"]
            if gg == "attn_q":
                a = permute(a, nh)
            elif gg == "attn_k":
                a = permute(a, nkv)
            tensor(f"blk.{l}.{gg}.weight", a, linear_type)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


def main():
    test_bin, tokenize_cli = sys.argv[1:3]
    fixtures = os.environ.get("GPTQ_FIXTURES", "../shared/fixtures")
    fdir = os.path.join(fixtures, "tiny-llama")
    if not os.path.exists(os.path.join(fdir, "model.safetensors")):
        print(f"SKIP: {fdir} not found")
        return 77
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        # the last field: what the linears are held in (F16 as stored; a
        # quantized type dequantized to float32)
        for label, qtype, tol, held in (("f16", gguf.GGMLQuantizationType.F16, "1e-5", "F16"),
                                        ("q8_0", gguf.GGMLQuantizationType.Q8_0, "5e-3", "F32")):
            path = os.path.join(tmp, f"tiny-{label}.gguf")
            write_gguf(path, fdir, qtype)
            r = subprocess.run([test_bin, path, fdir, tol, held], capture_output=True, text=True)
            print(f"--- {label}: {os.path.getsize(path)} bytes\n{r.stdout}{r.stderr}", end="")
            if r.returncode != 0:
                failures += 1
        # the tokenizer.json gptqd makes of the metadata, in HF tokenizers
        out = os.path.join(tmp, "from-gguf.json")
        r = subprocess.run([tokenize_cli, os.path.join(tmp, "tiny-f16.gguf"), "--export-json", out],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL: tokenize_cli --export-json: {r.stderr}")
            failures += 1
        else:
            ours, theirs = Tokenizer.from_file(out), Tokenizer.from_file(os.path.join(fdir, "tokenizer.json"))
            text = open(os.path.join(fdir, "eval.txt"), encoding="utf-8").read()
            extra = "Hello wörld 12345 <|endoftext|> 日本語 🤖 \t tabs  \n\n"
            for what, t in (("eval.txt", text), ("extra", extra)):
                a, b = ours.encode(t).ids, theirs.encode(t).ids
                ok = a == b
                print(f"HF tokenizers, synthesized vs fixture tokenizer.json on {what}: "
                      f"{'equal' if ok else 'DIFFERENT'} ({len(a)} ids)")
                failures += not ok
    print("ok" if not failures else f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
