#!/usr/bin/env python3
"""bench/peer_stack.py: a Llama-7B-shaped stack of decoder layers with random
weights, written as one F16 GGUF file that llama.cpp and gptqd both load, so
that bench/peer measures large shapes on identical weights.

Shape: Llama-2-7B's layer (hidden 4096, intermediate 11008, 32 heads of 128
dims, no GQA, RMSNorm eps 1e-5, RoPE base 10000), LAYERS of them, and a small
vocabulary (default 1024, untied output head) so that the layers, not the
head, are what is measured. Linears and embeddings are N(0, 0.02^2) in F16,
norms are ones (F32). The Q and K rows are random, so llama.cpp's row order
for them (its converter permutes HF rows for interleaved RoPE) needs no
permuting: both programs read the same numbers as the same model.

The tokenizer is a made-up SentencePiece ("llama") vocabulary of VOCAB
pieces: <unk> <s> </s>, the 256 byte tokens <0x00>..<0xFF>, then single
characters and pairs, scores decreasing. Both loaders need one; the
benchmark feeds token ids, never text.

Needs numpy and the gguf package (llama.cpp's gguf-py, which bench/peer puts
on PYTHONPATH from the llama.cpp sources it builds). Tensors are generated
and written one at a time: memory stays at one tensor, not the file.

Usage: peer_stack.py OUT.gguf [--layers N] [--vocab N] [--seed N]
The file is written to OUT.gguf.part and renamed when complete.
"""
import argparse
import os
import string
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("peer_stack.py: the gguf package is missing: put llama.cpp's gguf-py on "
             "PYTHONPATH (bench/peer does) or pip install gguf")

HIDDEN, INTER, HEADS, HEAD_DIM = 4096, 11008, 32, 128
STD = 0.02


def spm_vocab(n):
    """tokens, scores, types of a SentencePiece-style vocabulary of n pieces."""
    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL]
    tokens += ["<0x%02X>" % b for b in range(256)]
    types += [T.BYTE] * 256
    space = "\u2581"  # SentencePiece's word boundary
    chars = [space] + [c for c in string.printable if c not in string.whitespace]
    pieces = chars + [space + c for c in string.ascii_letters]
    pieces += [a + b for a in string.ascii_lowercase for b in string.ascii_lowercase]
    need = n - len(tokens)
    if need > len(pieces):
        sys.exit("peer_stack.py: --vocab %d is too large for the made-up vocabulary (at most %d)"
                 % (n, len(tokens) + len(pieces)))
    tokens += pieces[:need]
    types += [T.NORMAL] * need
    scores = [0.0] * 259 + [-float(i) for i in range(need)]
    return tokens, scores, types


def tensors(layers, vocab):
    """(name, numpy shape [rows, cols] or [n], dtype) in file order."""
    out = [("token_embd.weight", (vocab, HIDDEN), np.float16)]
    for i in range(layers):
        b = "blk.%d." % i
        out += [
            (b + "attn_norm.weight", (HIDDEN,), np.float32),
            (b + "attn_q.weight", (HEADS * HEAD_DIM, HIDDEN), np.float16),
            (b + "attn_k.weight", (HEADS * HEAD_DIM, HIDDEN), np.float16),
            (b + "attn_v.weight", (HEADS * HEAD_DIM, HIDDEN), np.float16),
            (b + "attn_output.weight", (HIDDEN, HEADS * HEAD_DIM), np.float16),
            (b + "ffn_norm.weight", (HIDDEN,), np.float32),
            (b + "ffn_gate.weight", (INTER, HIDDEN), np.float16),
            (b + "ffn_up.weight", (INTER, HIDDEN), np.float16),
            (b + "ffn_down.weight", (HIDDEN, INTER), np.float16),
        ]
    out += [("output_norm.weight", (HIDDEN,), np.float32),
            ("output.weight", (vocab, HIDDEN), np.float16)]
    return out


def main():
    ap = argparse.ArgumentParser(description="a random Llama-7B-shaped layer stack as F16 GGUF")
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.layers < 1 or a.vocab < 300:
        sys.exit("peer_stack.py: need --layers >= 1 and --vocab >= 300")

    part = a.out + ".part"
    w = gguf.GGUFWriter(part, "llama")
    w.add_name("random Llama-7B-shaped stack, %d layers" % a.layers)
    w.add_context_length(4096)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(a.layers)
    w.add_feed_forward_length(INTER)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(a.vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    tokens, scores, types = spm_vocab(a.vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    plan = tensors(a.layers, a.vocab)
    for name, shape, dtype in plan:
        w.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(a.seed)
    for name, shape, dtype in plan:
        if dtype == np.float32:  # norms
            t = np.ones(shape, dtype=np.float32)
        else:
            t = (rng.standard_normal(shape, dtype=np.float32) * STD).astype(np.float16)
        w.write_tensor_data(t)
        del t
    w.close()
    os.replace(part, a.out)


if __name__ == "__main__":
    main()
