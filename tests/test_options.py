#!/usr/bin/env python3
"""tests/test_options.py: every option of quantize, eval and infer is defined
once, so gptqctl, gptqd and the library accept and refuse alike.

For each numeric option, at each boundary (min-1, min, max, max+1; for real
numbers the nearest float outside and inside a bound, and NaN) and unset,
the value goes three ways:
  - gptqctl ($GPTQCTL) against a gptqd ($GPTQD) on a private socket;
  - gptqd directly, through libgptqclient ($OPTIONS_PROBE daemon);
  - the library's setter and check ($OPTIONS_PROBE lib).
All three must accept it, or refuse it with the same message, which must be
the one written below by hand from the bounds chosen in quant/config.c and
model/options.c ("NAME VALUE: use RANGE"). The jobs go to a model that is
not resident: gptqd checks a request before it looks the model up, so
"accepted" is its "not resident" answer, at once, with no work started.
Where a route cannot carry a value at all (a negative count in the wire's
unsigned field, a 0 the wire reads as unset, a NaN libgptqclient reads as
unset, a negative seed) the row says which routes it takes.

`gptqctl VERB --help` must show each default. With the fixtures
($GPTQ_FIXTURES/tiny-llama), jobs at the extremes also run for real on it
(generate 1 token, 1 eval window, two 1-window quantizations); without
them those are reported as SKIP. Exits 77 without gptqd, gptqctl or the
probe.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import gptqd_proc

GPTQD = os.environ.get("GPTQD", "")
GPTQCTL = os.environ.get("GPTQCTL", "")
PROBE = os.environ.get("OPTIONS_PROBE", "")
FIXTURES = os.environ.get("GPTQ_FIXTURES", "")
ABSENT = "no-such-model"

# The bounds chosen in quant/config.c and model/options.c, written out by
# hand: (default as --help shows it, legal values as messages say them).
OPTIONS = {
    "quantize": {
        "bits": ("4", "2, 3, 4 or 8"),
        "group-size": ("128", "-1 (per channel) or 1 to 65536"),
        "damp": ("0.01", "a value in [0, 1)"),
        "nsamples": ("128", "1 to 65536"),
        "seqlen": ("2048", "2 to 131072"),
        "block-size": ("128", "1 to 4096"),
        "seed": ("0", "0 to 18446744073709551615"),
    },
    "eval": {
        "seqlen": ("256", "2 to 131072"),
        "max-windows": ("0", "0 to 2147483647"),
    },
    "infer": {
        "max-tokens": ("128", "1 to 1048576"),
        "temperature": ("0", "a value in [0, 100]"),
        "top-k": ("0", "0 to 1048576"),
        "top-p": ("1", "a value in (0, 1]"),
        "seed": ("0", "0 to 18446744073709551615"),
    },
}

# Floats next to the bounds: the smallest denormal, the float below 1, the
# floats above 1 and 100 (each written in the fewest digits that read back
# as that float, as the messages print them).
TINY, BELOW_1, ABOVE_1, ABOVE_100 = "1.4013e-45", "0.99999994", "1.0000001", "100.00001"
ALL, NO_WIRE, CLI_ONLY = ("gptqctl", "daemon", "lib"), ("gptqctl", "lib"), ("gptqctl",)

# (option, value, shown in the refusal or None if legal, routes, other options)
CASES = {
    "quantize": [
        ("bits", "1", "1", ALL, []), ("bits", "2", None, ALL, []), ("bits", "3", None, ALL, []),
        ("bits", "4", None, ALL, []), ("bits", "5", "5", ALL, []), ("bits", "7", "7", ALL, []),
        ("bits", "8", None, ALL, []), ("bits", "9", "9", ALL, []),
        ("group-size", "-2", "-2", ALL, []), ("group-size", "-1", None, ALL, []),
        ("group-size", "0", "0", NO_WIRE, []), ("group-size", "1", None, ALL, []),
        ("group-size", "65536", None, ALL, []), ("group-size", "65537", "65537", ALL, []),
        ("damp", "-" + TINY, "-" + TINY, ALL, []), ("damp", "0", None, ALL, []),
        ("damp", BELOW_1, None, ALL, []), ("damp", "1", "1", ALL, []),
        ("damp", "nan", "nan", NO_WIRE, []),
        ("nsamples", "0", "0", NO_WIRE, []), ("nsamples", "1", None, ALL, []),
        ("nsamples", "65536", None, ALL, [("seqlen", "64")]),
        ("nsamples", "65537", "65537", ALL, [("seqlen", "64")]),
        ("seqlen", "1", "1", ALL, []), ("seqlen", "2", None, ALL, []),
        ("seqlen", "131072", None, ALL, [("nsamples", "32")]),
        ("seqlen", "131073", "131073", ALL, [("nsamples", "32")]),
        ("block-size", "0", "0", NO_WIRE, []), ("block-size", "1", None, ALL, []),
        ("block-size", "4096", None, ALL, []), ("block-size", "4097", "4097", ALL, []),
        ("seed", "-1", "-1", CLI_ONLY, []), ("seed", "0", None, ALL, []),
        ("seed", "18446744073709551615", None, ALL, []),
        ("seed", "18446744073709551616", "18446744073709551616", CLI_ONLY, []),
    ],
    "eval": [
        ("seqlen", "1", "1", ALL, []), ("seqlen", "2", None, ALL, []),
        ("seqlen", "131072", None, ALL, []), ("seqlen", "131073", "131073", ALL, []),
        ("max-windows", "-1", "-1", NO_WIRE, []), ("max-windows", "0", None, ALL, []),
        ("max-windows", "1", None, ALL, []), ("max-windows", "2147483647", None, ALL, []),
        ("max-windows", "2147483648", "2147483648", ALL, []),
    ],
    "infer": [
        ("max-tokens", "0", "0", NO_WIRE, []), ("max-tokens", "1", None, ALL, []),
        ("max-tokens", "1048576", None, ALL, []), ("max-tokens", "1048577", "1048577", ALL, []),
        ("temperature", "-" + TINY, "-" + TINY, ALL, []), ("temperature", "0", None, ALL, []),
        ("temperature", "100", None, ALL, []), ("temperature", ABOVE_100, ABOVE_100, ALL, []),
        ("temperature", "nan", "nan", NO_WIRE, []),
        ("top-k", "-1", "-1", NO_WIRE, []), ("top-k", "0", None, ALL, []),
        ("top-k", "1048576", None, ALL, []), ("top-k", "1048577", "1048577", ALL, []),
        ("top-p", "0", "0", ALL, []), ("top-p", TINY, None, ALL, []),
        ("top-p", "1", None, ALL, []), ("top-p", ABOVE_1, ABOVE_1, ALL, []),
        ("seed", "-1", "-1", CLI_ONLY, []), ("seed", "0", None, ALL, []),
        ("seed", "18446744073709551615", None, ALL, []),
    ],
}

# Rows that are not one option at a bound: (verb, options, expected
# (status, message) or None if legal, routes, and the library's own verdict
# where it differs from gptqd's by design).
STATIC_PER_CHANNEL = ("bad argument", "static-groups needs groups: use a group-size other than "
                      "-1 (per channel)")
EXTRA = [
    ("quantize", [], None, ALL, None),
    ("eval", [], None, ALL, None),
    ("infer", [], None, ALL, None),
    # across options: the library's check of the whole struct
    ("quantize", [("group-size", "-1"), ("static-groups", "1")], STATIC_PER_CHANNEL, ALL, None),
    # gptqd's own limit, not an option's bound: the calibration tokens it
    # holds (daemon/validate.h); the library (and so gptqctl's local check)
    # takes it, gptqd refuses it, and gptqctl shows gptqd's message
    ("quantize", [("nsamples", "65536")],
     ("limit exceeded", "nsamples x seqlen: 65536 x 2048 = 134217728 calibration tokens, "
      "gptqd holds at most 4194304: lower nsamples or seqlen"), ALL, "OK"),
]

failures = []
checked = {"gptqctl": 0, "daemon": 0, "lib": 0}


def check(cond, what, detail=""):
    if not cond:
        failures.append(what)
        print(f"FAIL {what}" + (f": {detail}" if detail else ""), file=sys.stderr, flush=True)
    return cond


def cli_args(opts):
    return ["--static-groups" if n == "static-groups" else f"--{n}={v}" for n, v in opts]


def probe_args(opts):
    return [x for n, v in opts for x in (n, v)]


def via_gptqctl(sock, verb, opts):
    """gptqctl's verdict: ("OK", "") or (status, message)."""
    head = {"quantize": ["quantize", ABSENT, "--as", ABSENT + "-q"], "eval": ["eval", ABSENT],
            "infer": ["infer", ABSENT, "hello"]}[verb]
    p = subprocess.run([GPTQCTL, "--socket", sock, "--json"] + head + cli_args(opts),
                       capture_output=True, text=True, timeout=60)
    if p.returncode == 2:  # refused before connecting: the library's message, as a usage error
        m = re.fullmatch(rf"gptqctl {verb}: (.*) \(see gptqctl {verb} --help\)\n", p.stderr, re.S)
        return ("bad argument", m.group(1)) if m else ("usage", p.stderr.strip())
    if p.returncode == 1:
        try:
            err = json.loads(p.stdout)["error"]
            return err["status"], err["message"]
        except (ValueError, KeyError, TypeError):
            return "exit 1", p.stdout.strip() + p.stderr.strip()
    return ("OK", "") if p.returncode == 0 else (f"exit {p.returncode}", p.stderr.strip())


def via_probe(args):
    """The probe's verdict, or None when the route cannot carry the value (exit 3)."""
    p = subprocess.run([PROBE] + args, capture_output=True, text=True, timeout=60)
    if p.returncode == 3:
        return None
    if p.returncode != 0:
        return (f"probe exit {p.returncode}", p.stderr.strip())
    line = p.stdout.rstrip("\n")
    return ("OK", "") if line == "OK" else tuple(line.split("\t", 1))


def run_row(sock, verb, opts, expected, routes, lib_expected, absent_answer):
    what = f"{verb} {' '.join(cli_args(opts)) or '(all unset)'}"
    got = {"gptqctl": via_gptqctl(sock, verb, opts),
           "daemon": via_probe(["daemon", sock, ABSENT, verb] + probe_args(opts)),
           "lib": via_probe(["lib", verb] + probe_args(opts))}
    # accepted: the library says OK, gptqd (and gptqctl, through it) answers
    # that the model is not resident
    want = {r: expected or absent_answer for r in ("gptqctl", "daemon")}
    want["lib"] = ("OK", "") if expected is None or lib_expected == "OK" else expected
    for route in ("gptqctl", "daemon", "lib"):
        if route not in routes:
            check(got[route] is None or route == "gptqctl", f"{what}: {route} cannot carry it",
                  f"got {got[route]}")
            continue
        checked[route] += 1
        check(got[route] == want[route], f"{what}: {route}",
              f"want {want[route]}, got {got[route]}")


def help_defaults():
    for verb, options in OPTIONS.items():
        p = subprocess.run([GPTQCTL, verb, "--help"], capture_output=True, text=True, timeout=30)
        check(p.returncode == 0, f"gptqctl {verb} --help exits 0", p.stderr)
        for name, (default, _) in options.items():
            line = next((l for l in p.stdout.splitlines() if l.strip().startswith(f"--{name} ")),
                        "")
            check(line.rstrip().endswith(f"({default})"),
                  f"gptqctl {verb} --help: --{name} shows its default {default}", repr(line))
            check(f"[--{name} {default}]" in p.stdout,
                  f"gptqctl {verb} --help: synopsis [--{name} {default}]", p.stdout[:300])


def start_daemon(tmp, sock):
    dirs = [tmp] + ([FIXTURES] if os.path.isdir(FIXTURES) else [])
    return gptqd_proc.start_daemon(GPTQD, GPTQCTL, tmp, sock, dirs)


def ctl(sock, *args):
    return subprocess.run([GPTQCTL, "--socket", sock, "--json"] + list(args), capture_output=True,
                          text=True, timeout=300)


def real_jobs(sock):
    """Values at the extremes run on the fixture model: accepted means a job that works."""
    model = os.path.join(FIXTURES, "tiny-llama")
    if not os.path.isfile(os.path.join(model, "config.json")):
        print(f"SKIP real jobs: no fixture model at {model}")
        return
    p = ctl(sock, "load", "tiny", model)
    if not check(p.returncode == 0, "load tiny", p.stderr):
        return
    p = ctl(sock, "infer", "tiny", "The list of", "--max-tokens=1", "--temperature=100",
            "--top-k=1048576", "--top-p=" + TINY, "--seed=18446744073709551615")
    check(p.returncode == 0 and json.loads(p.stdout or "{}").get("tokens") == 1,
          "infer at the extremes: 1 token", p.stdout + p.stderr)
    p = ctl(sock, "eval", "tiny", "--seqlen=2", "--max-windows=1")
    r = json.loads(p.stdout or "{}") if p.returncode == 0 else {}
    check(r.get("seqlen") == 2 and r.get("perplexity", 0) > 1,
          "eval with 1 window of 2 tokens", p.stdout + p.stderr)
    for new, flags in (("tiny-max", ["--bits=8", "--group-size=65536", "--damp=" + BELOW_1,
                                     "--nsamples=1", "--seqlen=64", "--block-size=4096",
                                     "--seed=18446744073709551615"]),
                       ("tiny-min", ["--bits=2", "--group-size=1", "--damp=0.5", "--nsamples=1",
                                     "--seqlen=2", "--block-size=1", "--seed=0"])):
        t0 = time.monotonic()
        p = ctl(sock, "quantize", "tiny", "--as", new, *flags)
        r = json.loads(p.stdout or "{}") if p.returncode == 0 else {}
        check(r.get("model") == new, f"quantize {' '.join(flags)}", p.stdout + p.stderr)
        print(f"quantize {new}: {time.monotonic() - t0:.1f} s, exit {p.returncode}")


def method_rows(sock, absent):
    """quantize --method: rtn is accepted alone and with the quantizer's options; with an
    option only GPTQ's calibration reads, gptqctl and gptqd refuse it, naming the option."""
    got = via_probe(["daemon", sock, ABSENT, "quantize", "method", "rtn", "bits", "3",
                     "group-size", "-1"])
    check(got == absent, "quantize method rtn bits 3 group-size -1: accepted by gptqd", str(got))
    got = via_probe(["daemon", sock, ABSENT, "quantize", "method", "gptq"])
    check(got == absent, "quantize method gptq: accepted by gptqd", str(got))
    for name, value, field in (("nsamples", "16", "nsamples"), ("seed", "1", "seed"),
                               ("static-groups", "1", "static_groups"),
                               ("damp", "0.1", "damp")):
        got = via_probe(["daemon", sock, ABSENT, "quantize", "method", "rtn", name, value])
        check(got is not None and got[0] == "bad argument" and
              got[1].startswith(f"quantize.{field}: method rtn rounds"),
              f"quantize method rtn {name} {value}: refused by gptqd, naming it", str(got))
        got = via_gptqctl(sock, "quantize", [("method", "rtn"), (name, value)])
        check(got[0] in ("bad argument", "usage") and "--method rtn rounds" in got[1],
              f"gptqctl quantize --method rtn --{name}: refused before connecting", str(got))
    got = via_probe(["daemon", sock, ABSENT, "quantize", "method", "awq"])
    check(got == ("bad argument", "quantize.method 'awq': use gptq or rtn (or leave it empty)"),
          "quantize method awq: refused by gptqd", str(got))


def main():
    for what, path in (("gptqd", GPTQD), ("gptqctl", GPTQCTL), ("options_probe", PROBE)):
        if not path or not os.access(path, os.X_OK):
            print(f"SKIP: no {what} ({path or 'unset'})")
            return 77
    help_defaults()
    tmp = tempfile.mkdtemp(prefix="gptq-options-")
    sock = os.path.join(tmp, "gptqd.sock")
    d = start_daemon(tmp, sock)
    try:
        if not check(d.poll() is None, "gptqd starts"):
            print(open(os.path.join(tmp, "gptqd.log")).read(), file=sys.stderr)
            return 1
        absent = via_probe(["daemon", sock, ABSENT, "eval"])
        check(absent and absent[0] == "not found" and ABSENT in absent[1],
              "a job on a model that is not resident: not found", str(absent))
        rows = 0
        for verb, cases in CASES.items():
            for name, value, shown, routes, others in cases:
                expected = None
                if shown is not None:
                    expected = ("bad argument", f"{name} {shown}: use {OPTIONS[verb][name][1]}")
                run_row(sock, verb, others + [(name, value)], expected, routes, None, absent)
                rows += 1
        for verb, opts, expected, routes, lib in EXTRA:
            run_row(sock, verb, opts, expected, routes, lib, absent)
            rows += 1
        print(f"{rows} rows: {checked['gptqctl']} through gptqctl, {checked['daemon']} through "
              f"gptqd directly, {checked['lib']} through the library")
        method_rows(sock, absent)
        real_jobs(sock)
        check(d.poll() is None, "gptqd still serves")
    finally:
        gptqd_proc.stop_daemon(d)
        for f in os.listdir(tmp):
            if f.endswith(".log") and failures:
                print(open(os.path.join(tmp, f)).read()[-3000:], file=sys.stderr)
        subprocess.run(["rm", "-rf", tmp])
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
