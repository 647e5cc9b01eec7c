#!/usr/bin/env python3
"""tests/test_family_daemon.py: every model family of tests/data/families
through one private gptqd, as a user drives it with gptqctl: load, a
greedy generation (OPT's learned positions cap it at the model's 256 and
gptqd says so), RTN and GPTQ at 4 bits, evaluation against the float model,
and the GPTQ model saved as a checkpoint and loaded back.

Checks, each against something independent of the step it checks:
  - GPTQ's mean KL to the float model is below RTN's on the same grid (the
    paper's claim, on every family);
  - the saved checkpoint, loaded again, gives the quantized model's
    perplexity (the writer's names and layout read back by the loader);
  - a generation asked for more tokens than an OPT model has positions ends
    at its context with the reason given, and the daemon keeps answering;
  - OPT, which llama.cpp does not run, and these Gemma fixtures, whose
    attention scale llama.cpp cannot take, are refused by name when saved
    as .gguf, leaving no file.
(The forward itself is held to transformers' logits by test_families.)
Exits 77 without gptqd or gptqctl."""
import json
import os
import subprocess
import sys
import tempfile

import gptqd_proc

GPTQD = os.environ.get("GPTQD", "")
GPTQCTL = os.environ.get("GPTQCTL", "")
ROOT = os.environ.get("GPTQ_SOURCE_ROOT",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FAMILIES = ["qwen3", "phi3", "opt", "opt-postln", "bloom", "gemma2", "gemma3"]
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg)
    if not ok:
        failures.append(msg)


def main():
    if not (GPTQD and GPTQCTL and os.path.exists(GPTQD) and os.path.exists(GPTQCTL)):
        print("SKIP: set GPTQD and GPTQCTL")
        return 77
    fam_dir = os.path.join(ROOT, "tests", "data", "families")
    data_dir = os.path.join(ROOT, "data")
    calib = os.path.join(data_dir, "calib-default.txt")
    text = os.path.join(data_dir, "eval-default.txt")
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "gptqd.sock")
        d = gptqd_proc.start_daemon(GPTQD, GPTQCTL, tmp, sock, [fam_dir, data_dir, tmp])

        def ctl(*args):
            r = subprocess.run([GPTQCTL, "--socket", sock, "--json", *args], capture_output=True,
                               text=True, timeout=300)
            if r.returncode:
                return None, (r.stderr.strip().splitlines() or ["?"])[-1]
            return json.loads(r.stdout), r.stderr

        try:
            for fam in FAMILIES:
                f = "f-" + fam
                out, err = ctl("load", f, os.path.join(fam_dir, fam))
                check(out is not None, f"{fam}: load ({err if out is None else 'resident'})")
                if out is None:
                    continue
                out, err = ctl("infer", f, "Once upon a time", "--max-tokens", "8")
                check(out is not None and out.get("tokens", 0) >= 1,
                      f"{fam}: greedy generation ({out.get('tokens') if out else err} tokens)")
                kl = {}
                for method in ("rtn", "gptq"):
                    q = f"{method}-{fam}"
                    args = ["quantize", f, "--as", q, "--bits", "4", "--group-size", "32"]
                    if method == "rtn":
                        args += ["--method", "rtn"]
                    else:
                        args += ["--calib", calib, "--nsamples", "16", "--seqlen", "128"]
                    out, err = ctl(*args)
                    check(out is not None, f"{fam}: quantize {method} ({err if out is None else 'ok'})")
                    ev, err = ctl("eval", q, "--text", text, "--seqlen", "128", "--max-windows", "16",
                                  "--kl-base", f)
                    check(ev is not None and "kl" in ev, f"{fam}: eval {method} against float ({err if ev is None else ev.get('kl')})")
                    if ev:
                        kl[method] = ev
                if len(kl) == 2:
                    check(kl["gptq"]["kl"] < kl["rtn"]["kl"],
                          f"{fam}: GPTQ's KL {kl['gptq']['kl']:.6f} below RTN's {kl['rtn']['kl']:.6f}")
                    saved = os.path.join(tmp, "saved-" + fam)
                    out, err = ctl("save", f"gptq-{fam}", saved)
                    check(out is not None, f"{fam}: save the GPTQ model ({err if out is None else 'ok'})")
                    out, err = ctl("load", f"back-{fam}", saved)
                    ev, err2 = ctl("eval", f"back-{fam}", "--text", text, "--seqlen", "128",
                                   "--max-windows", "16")
                    want = kl["gptq"]["perplexity"]
                    got = ev["perplexity"] if ev else float("nan")
                    check(ev is not None and abs(got - want) <= 1e-6 * want,
                          f"{fam}: its checkpoint loaded back: perplexity {got:.6f}, in memory {want:.6f}")
                if fam.startswith("opt") or fam.startswith("gemma"):
                    # OPT has no GGUF form (llama.cpp has no OPT); these Gemma fixtures
                    # scale scores by query_pre_attn_scalar 24, which llama.cpp cannot
                    # take (tests/test_gguf_export.py exports Gemma, and BLOOM, with
                    # llama.cpp's checks)
                    want = "query_pre_attn_scalar 24" if fam.startswith("gemma") else \
                        "has no llama.cpp form"
                    out, err = ctl("save", f, os.path.join(tmp, fam + ".gguf"))
                    check(out is None and want in err and
                          not os.path.exists(os.path.join(tmp, fam + ".gguf")),
                          f"{fam}: save as GGUF refused by name ({err})")
                for name in (f"back-{fam}", f"gptq-{fam}", f"rtn-{fam}"):
                    ctl("unload", name)
            # OPT has 256 learned positions: a longer generation stops there
            r = subprocess.run([GPTQCTL, "--socket", sock, "--json", "infer", "f-opt", "Once",
                                "--max-tokens", "1000"], capture_output=True, text=True, timeout=300)
            out = json.loads(r.stdout) if r.returncode == 0 else None
            check(out is not None and out["tokens"] <= 256 and "lowered" in r.stderr,
                  f"opt: 1000 tokens asked, {out['tokens'] if out else r.stderr.strip()} generated "
                  f"within its 256 positions, and said so")
            out, err = ctl("status")
            check(out is not None, "gptqd answers status afterwards")
        finally:
            gptqd_proc.stop_daemon(d)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
