#!/usr/bin/env python3
"""tests/gptq_checkpoint_numpy.py: an independent reader of GPTQ checkpoints.

Written from the format description alone (docs/ARCHITECTURE.md "Formats", the ecosystem's
checkpoint_format "gptq", and GPTQModel's "gptq_v2"), not from our C code: parse safetensors
with the standard library + numpy, unpack qweight/qzeros as little-endian bit streams
of int32 words, add 1 to the stored zeros (v1; gptq_v2 stores the zeros), and dequantize
    W[o, i] = scales[g_idx[i], o] * (q[i, o] - z[g_idx[i], o]).

Usage: gptq_checkpoint_numpy.py CHECKPOINT_DIR EXPECTED.safetensors
EXPECTED holds, for each quantized linear NAME, the float32 tensor
NAME.weight [out, in] that our runtime dequantizes; exits 0 when every one
matches exactly, 1 otherwise, 77 when numpy is missing.

       gptq_checkpoint_numpy.py --to-v2 CHECKPOINT_DIR NEW_DIR
writes NEW_DIR, the same checkpoint in GPTQModel's checkpoint_format
"gptq_v2": every qzeros value is the zero itself (v1's stored value + 1),
repacked here, and the quantization configs say gptq_v2.
"""
import json
import os
import struct
import sys

try:
    import numpy as np
except ImportError:
    print("SKIP: numpy not installed")
    sys.exit(77)

DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "BF16": None,
          "I64": np.int64, "U8": np.uint8, "I8": np.int8}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = data[base + b: base + e]
        if t["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=DTYPES[t["dtype"]])
        out[name] = (t["dtype"], arr.reshape(t["shape"]))
    return out


def unpack_stream(words, bits, count):
    """words: uint32 [n_words, cols] -> values [count, cols]: value k of a
    column at bit bits*k of the column's stream of words (low bits first)."""
    words = words.astype(np.uint64)
    out = np.zeros((count, words.shape[1]), dtype=np.int64)
    for k in range(count):
        bit = k * bits
        w, off = divmod(bit, 32)
        v = words[w] >> np.uint64(off)
        if off + bits > 32:
            v |= words[w + 1] << np.uint64(32 - off)
        out[k] = (v & np.uint64((1 << bits) - 1)).astype(np.int64)
    return out


def pack_stream(values, bits, n_words):
    """values: int [count, cols] -> uint32 words [n_words, cols], the
    inverse of unpack_stream."""
    words = np.zeros((n_words, values.shape[1]), dtype=np.uint64)
    for k in range(values.shape[0]):
        bit = k * bits
        w, off = divmod(bit, 32)
        v = values[k].astype(np.uint64)
        words[w] |= (v << np.uint64(off)) & np.uint64(0xFFFFFFFF)
        if off + bits > 32:
            words[w + 1] |= v >> np.uint64(32 - off)
    return words.astype(np.uint32)


def write_safetensors(path, tensors):
    header, blobs, at = {}, [], 0
    for name, (dt, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def to_v2(src, dst):
    os.mkdir(dst)
    for fn in sorted(os.listdir(src)):
        path = os.path.join(src, fn)
        if fn.endswith(".safetensors"):
            tensors = read_safetensors(path)
            cfg = json.load(open(os.path.join(src, "config.json")))
            bits = int(cfg["quantization_config"]["bits"])
            for name, (dt, arr) in list(tensors.items()):
                if name.endswith(".qzeros"):
                    rows = arr.shape[1] * 32 // bits
                    z = unpack_stream(arr.view(np.uint32).T, bits, rows) + 1   # [rows, groups]
                    assert z.max() < (1 << bits), name
                    tensors[name] = (dt, pack_stream(z, bits, arr.shape[1]).T.view(np.int32))
            write_safetensors(os.path.join(dst, fn), tensors)
        elif fn in ("config.json", "quantize_config.json"):
            j = json.load(open(path))
            q = j["quantization_config"] if fn == "config.json" else j
            q["checkpoint_format"] = "gptq_v2"
            json.dump(j, open(os.path.join(dst, fn), "w"), indent=2)
        elif os.path.isfile(path):
            open(os.path.join(dst, fn), "wb").write(open(path, "rb").read())


def checkpoint_weights(folder):
    """(config, {HF tensor name: float32 array}) of a checkpoint folder (or a
    float folder): each packed linear dequantized as above under NAME.weight
    [out, in] (v1 or gptq_v2 zeros, as its config says), every other tensor
    as stored, widened to float32."""
    cfg = json.load(open(os.path.join(folder, "config.json")))
    q = cfg.get("quantization_config") or {}
    fmt = q.get("checkpoint_format", q.get("format", "gptq"))
    zero_offset = 1 if fmt == "gptq" else 0
    tensors = {}
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".safetensors"):
            tensors.update(read_safetensors(os.path.join(folder, fn)))
    out = {}
    for name, (dt, a) in tensors.items():
        if name.endswith(".qweight"):
            base = name[: -len(".qweight")]
            bits = int(q["bits"])
            qzeros = tensors[base + ".qzeros"][1]
            scales = tensors[base + ".scales"][1].astype(np.float32)
            g = tensors[base + ".g_idx"][1].astype(np.int64)
            in_f, out_f = a.shape[0] * 32 // bits, a.shape[1]
            codes = unpack_stream(a.view(np.uint32), bits, in_f)
            zeros = unpack_stream(qzeros.view(np.uint32).T, bits, out_f).T + zero_offset
            out[base + ".weight"] = (scales[g] * (codes - zeros[g]).astype(np.float32)).T
        elif not name.endswith((".qzeros", ".scales", ".g_idx")) and dt != "BF16":
            out[name] = a.astype(np.float32)
    return cfg, out


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--to-v2":
        to_v2(sys.argv[2], sys.argv[3])
        return
    ckpt, expected_path = sys.argv[1], sys.argv[2]
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    q = cfg["quantization_config"]
    qc = json.load(open(os.path.join(ckpt, "quantize_config.json")))
    assert q["quant_method"] == "gptq" and qc["quant_method"] == "gptq", "quant_method"
    fmt = q.get("checkpoint_format", "gptq")
    assert fmt in ("gptq", "gptq_v2") and qc.get("checkpoint_format", "gptq") == fmt, fmt
    zero_offset = 1 if fmt == "gptq" else 0  # v1 stores zero-1, gptq_v2 the zero
    bits = int(q["bits"])
    assert bits == qc["bits"]
    tensors = {}
    for fn in sorted(os.listdir(ckpt)):
        if fn.endswith(".safetensors"):
            tensors.update(read_safetensors(os.path.join(ckpt, fn)))
    expected = read_safetensors(expected_path)
    bad = 0
    n = 0
    for name, (_, want) in expected.items():
        base = name[: -len(".weight")]
        qdt, qweight = tensors[base + ".qweight"]
        zdt, qzeros = tensors[base + ".qzeros"]
        sdt, scales = tensors[base + ".scales"]
        gdt, g_idx = tensors[base + ".g_idx"]
        assert (qdt, zdt, sdt, gdt) == ("I32", "I32", "F16", "I32"), (base, qdt, zdt, sdt, gdt)
        out_f, in_f = want.shape
        groups = scales.shape[0]
        assert qweight.shape == (in_f * bits // 32, out_f), (base, qweight.shape)
        assert qzeros.shape == (groups, out_f * bits // 32), (base, qzeros.shape)
        assert scales.shape == (groups, out_f) and g_idx.shape == (in_f,)
        codes = unpack_stream(qweight.view(np.uint32), bits, in_f)          # [in, out]
        zeros = unpack_stream(qzeros.view(np.uint32).T, bits, out_f).T + zero_offset  # [groups, out]
        s = scales.astype(np.float32)
        g = g_idx.astype(np.int64)
        W = (s[g] * (codes - zeros[g]).astype(np.float32)).T                # [out, in]
        diff = np.abs(W - want).max()
        n += 1
        if diff != 0.0:
            bad += 1
            print(f"MISMATCH {base}: max |numpy - runtime| = {diff}")
    print(f"{n} quantized linears dequantized by numpy; {bad} differ from the runtime's")
    sys.exit(1 if bad or n == 0 else 0)


if __name__ == "__main__":
    main()
