#!/usr/bin/env python3
"""tests/gguf_spm.py: a SentencePiece vocabulary read from GGUF metadata
encodes and decodes as SentencePiece itself does.

    gguf_spm.py TOKENIZE_CLI [GGUF_EXPORT_CLI]

A BPE SentencePiece model is trained here on the fixture's calib.txt (byte
fallback, identity normalization, whitespace kept: Llama 2's settings) and
written as GGUF tokenizer metadata the way llama.cpp's converter writes one
(tokenizer.ggml.model "llama": pieces, scores, token types, BOS/EOS/UNK,
add_bos). gptqd rebuilds a tokenizer from that (merges from the scores) and
must give the `sentencepiece` library's ids on the lines of eval.txt and on
varied text, and its text back when decoding.

With GGUF_EXPORT_CLI, the file also carries a small random model, and the
GGUF our writer makes of it (model/gguf_write.c: tokenizer.json back to
tokenizer.ggml.*, scores from the vocabulary order) must hold the same
pieces and token types and tokenize as SentencePiece too. Exits 77 without
sentencepiece, gguf or the fixtures."""
import io
import os
import subprocess
import sys
import tempfile

try:
    import gguf
    import sentencepiece as spm
except ImportError as e:
    print(f"SKIP: {e} (pip install sentencepiece gguf)")
    sys.exit(77)

EXTRA = ["Hello world", "naïve café résumé 日本語のテキスト 🤖 emoji 👨‍👩‍👧",
         "  two  spaces and   three", "tab\there\tand there", "numbers 12345 67.89 0x1F",
         "x", "Ελληνικά Русский العربية हिन्दी", "trailing space "]


def main():
    cli = sys.argv[1]
    export_cli = sys.argv[2] if len(sys.argv) > 2 else None
    fdir = os.path.join(os.environ.get("GPTQ_FIXTURES", "../shared/fixtures"), "tiny-llama")
    if not os.path.exists(os.path.join(fdir, "calib.txt")):
        print(f"SKIP: {fdir} not found")
        return 77
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        input=os.path.join(fdir, "calib.txt"), model_writer=proto, vocab_size=2000,
        model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=False, character_coverage=0.9995,
        unk_id=0, bos_id=1, eos_id=2, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "spm.gguf")
        g = gguf.GGUFWriter(path, "llama")
        tokens, scores, types = [], [], []
        for i in range(sp.get_piece_size()):
            tokens.append(sp.id_to_piece(i))
            scores.append(sp.get_score(i))
            types.append(gguf.TokenType.UNKNOWN if sp.is_unknown(i) else
                         gguf.TokenType.CONTROL if sp.is_control(i) else
                         gguf.TokenType.UNUSED if sp.is_unused(i) else
                         gguf.TokenType.BYTE if sp.is_byte(i) else gguf.TokenType.NORMAL)
        g.add_tokenizer_model("llama")
        g.add_token_list(tokens)
        g.add_token_scores(scores)
        g.add_token_types(types)
        g.add_bos_token_id(1)
        g.add_eos_token_id(2)
        g.add_unk_token_id(0)
        g.add_add_bos_token(True)
        if export_cli:  # a small random Llama around the vocabulary
            import numpy as np
            rng = np.random.default_rng(5)
            n, d, ff = sp.get_piece_size(), 64, 128
            g.add_context_length(256)
            g.add_embedding_length(d)
            g.add_block_count(1)
            g.add_feed_forward_length(ff)
            g.add_head_count(4)
            g.add_head_count_kv(2)
            g.add_layer_norm_rms_eps(1e-5)
            g.add_rope_freq_base(10000.0)
            shapes = {"token_embd.weight": (n, d), "output_norm.weight": (d,),
                      "blk.0.attn_norm.weight": (d,), "blk.0.ffn_norm.weight": (d,),
                      "blk.0.attn_q.weight": (d, d), "blk.0.attn_k.weight": (d // 2, d),
                      "blk.0.attn_v.weight": (d // 2, d), "blk.0.attn_output.weight": (d, d),
                      "blk.0.ffn_gate.weight": (ff, d), "blk.0.ffn_up.weight": (ff, d),
                      "blk.0.ffn_down.weight": (d, ff)}
            for name, shape in shapes.items():
                g.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))
        g.write_header_to_file()
        g.write_kv_data_to_file()
        g.write_tensors_to_file()
        g.close()

        text = open(os.path.join(fdir, "eval.txt"), encoding="utf-8").read()
        lines = [l for l in EXTRA + text.split("\n") if l][:2000]
        inp = os.path.join(tmp, "lines.txt")
        with open(inp, "w", encoding="utf-8") as f:
            f.write("".join(l + "\n" for l in lines))
        out = subprocess.run([cli, path, inp, "--lines"], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"FAIL: tokenize_cli: {out.stderr.strip()}")
            return 1
        ours = [[int(x) for x in l.split()] for l in out.stdout.split("\n")[:-1]]
        # our CLI keeps each line's newline; SentencePiece sees it as a byte
        want = [sp.encode(l + "\n") for l in lines]
        bad = [i for i, (a, b) in enumerate(zip(ours, want)) if a != b]
        if len(ours) != len(want) or bad:
            i = bad[0] if bad else 0
            print(f"FAIL: {len(bad)} of {len(lines)} lines differ from SentencePiece, first "
                  f"{lines[i]!r}: ours {ours[i] if i < len(ours) else None} sp {want[i]}")
            failures += 1
        else:
            print(f"encode: {len(lines)} lines as SentencePiece")
        # with the BOS the metadata asks for, and decoding back
        ids_path = os.path.join(tmp, "ids.txt")
        for l in EXTRA:
            with open(inp, "w", encoding="utf-8") as f:
                f.write(l)
            got = subprocess.run([cli, path, inp, "--special"], capture_output=True, text=True)
            got_ids = [int(x) for x in got.stdout.split()]
            if got_ids != [1] + sp.encode(l):
                print(f"FAIL: {l!r} with BOS: ours {got_ids} sp {[1] + sp.encode(l)}")
                failures += 1
            with open(ids_path, "w") as f:
                f.write(" ".join(map(str, sp.encode(l))))
            dec = subprocess.run([cli, path, "--decode", ids_path], capture_output=True)
            if dec.stdout.decode("utf-8") != sp.decode(sp.encode(l)):
                print(f"FAIL: decode of {l!r}: ours {dec.stdout!r} sp {sp.decode(sp.encode(l))!r}")
                failures += 1
        if not failures:
            print(f"BOS and decode: {len(EXTRA)} texts as SentencePiece")
        # Control tokens written in the text: SentencePiece spells them out,
        # HF tokenizers and llama.cpp (parse_special) match them; we do as HF.
        with open(inp, "w", encoding="utf-8") as f:
            f.write("a</s>")
        got = subprocess.run([cli, path, inp], capture_output=True, text=True)
        ids = [int(x) for x in got.stdout.split()]
        if ids[-1:] != [2]:
            print(f"FAIL: '</s>' in the text is not the EOS token: {ids}")
            failures += 1
        if export_cli:
            failures += check_export(export_cli, cli, path, tmp, lines, sp)
    print("ok" if not failures else f"{failures} failure(s)")
    return 1 if failures else 0


def check_export(export_cli, cli, path, tmp, lines, sp):
    """Our GGUF writer on the SentencePiece model: the same pieces and types,
    BOS added, and SentencePiece's ids."""
    out = os.path.join(tmp, "exported.gguf")
    p = subprocess.run([export_cli, path, out], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"FAIL: gguf_export_cli: {p.stderr.strip()}")
        return 1
    a, b = gguf.GGUFReader(path), gguf.GGUFReader(out)
    fails = 0
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token"):
        fa, fb = a.fields.get(key), b.fields.get(key)
        va = fa.contents() if fa else None
        vb = fb.contents() if fb else None
        if va != vb:
            print(f"FAIL: exported {key}: {str(vb)[:80]} where the source has {str(va)[:80]}")
            fails += 1
    scores = b.fields["tokenizer.ggml.scores"].contents()
    types = b.fields["tokenizer.ggml.token_type"].contents()
    normal = [scores[i] for i in range(len(scores)) if types[i] == 1]
    if normal != sorted(normal, reverse=True):
        print("FAIL: exported scores do not rank the pieces in vocabulary order")
        fails += 1
    inp = os.path.join(tmp, "lines.txt")
    with open(inp, "w", encoding="utf-8") as f:
        f.write("".join(l + "\n" for l in lines))
    got = subprocess.run([cli, out, inp, "--lines"], capture_output=True, text=True)
    ours = [[int(x) for x in l.split()] for l in got.stdout.split("\n")[:-1]]
    want = [sp.encode(l + "\n") for l in lines]
    if got.returncode != 0 or ours != want:
        print(f"FAIL: the exported tokenizer differs from SentencePiece ({got.stderr.strip()})")
        fails += 1
    if not fails:
        print(f"export: pieces, types and {len(lines)} lines' ids as SentencePiece")
    return fails


if __name__ == "__main__":
    sys.exit(main())
