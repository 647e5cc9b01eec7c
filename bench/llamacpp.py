"""bench/llamacpp.py: llama.cpp as a benchmark baseline, shared by bench/peer
and bench/gguf-quality.

The llama.cpp vendored in the llama-cpp-python source distribution (PyPI)
is downloaded once (its SHA-256 pinned), unpacked and built with cmake into a
cache outside the tree (CPU only, Release, -march=native): only the tools a
script asks for. Nothing of it is linked into gptqd. Also: the cache folder,
running commands with their output kept in a log, and the manifest that
tells a file this script made from a truncated or foreign one.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

LLAMA_CPP_PYTHON = "0.3.36"
LLAMA_CPP_PYTHON_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
VERBOSE = False
PREFIX = "bench"


def cache_dir():
    """$GPTQ_CACHE/peer, else ${XDG_CACHE_HOME:-~/.cache}/gptqd/peer."""
    return os.path.join(os.environ.get("GPTQ_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gptqd"), "peer")


def say(msg):
    print(PREFIX + ": " + msg, file=sys.stderr, flush=True)


def die(msg):
    say(msg)
    sys.exit(1)


def run(cmd, log=None, env=None, check=True):
    """Run cmd (a list); its output goes to `log` (a path) when given, else
    is captured. Returns the CompletedProcess."""
    if VERBOSE:
        say("$ " + " ".join(cmd))
    if log:
        with open(log, "ab") as f:
            p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    else:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        where = ("see " + log) if log else (p.stderr or p.stdout or "").strip()[-2000:]
        die("%s failed (exit %d): %s" % (os.path.basename(cmd[0]), p.returncode, where))
    return p


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def need_tool(name, package):
    if not shutil.which(name):
        die("%s is missing: apt-get install %s" % (name, package))


# ---- llama.cpp: source and build -------------------------------------------------------

def fetch_llama_cpp(cache):
    """The llama.cpp sources vendored in llama-cpp-python's sdist, unpacked
    once; returns the llama.cpp folder."""
    src = os.path.join(cache, "src")
    os.makedirs(src, exist_ok=True)
    tarball = os.path.join(src, "llama_cpp_python-%s.tar.gz" % LLAMA_CPP_PYTHON)
    top = os.path.join(src, "llama_cpp_python-%s" % LLAMA_CPP_PYTHON)
    stamp = os.path.join(top, ".unpacked")
    if os.path.exists(stamp):
        return os.path.join(top, "vendor", "llama.cpp")
    if not os.path.exists(tarball):
        if run([sys.executable, "-m", "pip", "--version"], check=False).returncode != 0:
            die("pip is missing for %s: apt-get install python3-pip" % sys.executable)
        say("downloading llama-cpp-python %s (source) from PyPI into %s" % (LLAMA_CPP_PYTHON, src))
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", "-d", src, "llama-cpp-python==" + LLAMA_CPP_PYTHON])
    got = sha256(tarball)
    if got != LLAMA_CPP_PYTHON_SHA256:
        os.remove(tarball)
        die("%s has SHA-256 %s, expected %s: removed; run again" % (tarball, got,
                                                                   LLAMA_CPP_PYTHON_SHA256))
    shutil.rmtree(top, ignore_errors=True)
    run(["tar", "-xzf", tarball, "-C", src])
    if not os.path.isfile(os.path.join(top, "vendor", "llama.cpp", "CMakeLists.txt")):
        die("%s holds no vendor/llama.cpp: not the sdist this script expects" % tarball)
    open(stamp, "w").close()
    return os.path.join(top, "vendor", "llama.cpp")


def build_llama_cpp(llama_src, build, extra_flags="",
                    targets=("llama-bench", "llama-quantize")):
    """The tools `targets` in `build` (configured once; only missing tools are
    built). Returns the bin folder."""
    bindir = os.path.join(build, "bin")
    targets = [t for t in targets if not os.access(os.path.join(bindir, t), os.X_OK)]
    if not targets:
        return bindir
    need_tool("cmake", "cmake")
    if not (shutil.which("c++") or shutil.which("g++")):
        die("a C++ compiler is missing: apt-get install g++")
    log = build + ".log"
    say("building llama.cpp (CPU, Release, -march=native%s) in %s; log: %s; this takes a "
        "while (12 min on 2 busy cores)" % (", AMX off" if extra_flags else "", build, log))
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    flags = []
    if extra_flags:
        flags = ["-DCMAKE_C_FLAGS=" + extra_flags, "-DCMAKE_CXX_FLAGS=" + extra_flags]
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        run(["nice", "cmake", "-S", llama_src, "-B", build] + gen + [
            "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DGGML_CUDA=OFF",
            "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_OPENSSL=OFF"] + flags,
            log=log)
    run(["nice", "cmake", "--build", build, "--target"] + targets +
        ["-j", str(os.cpu_count() or 2)], log=log)
    return bindir


class Manifest:
    """Sizes of the files this script made, so that a truncated or foreign
    file under a cached name is made again instead of measured."""

    def __init__(self, folder):
        self.path = os.path.join(folder, "manifest.json")
        try:
            with open(self.path) as f:
                self.sizes = json.load(f)
        except (OSError, ValueError):
            self.sizes = {}

    def fresh(self, path):
        name = os.path.basename(path)
        if not os.path.exists(path):
            return False
        if self.sizes.get(name) == tree_bytes(path):
            return True
        say("%s is not what this script made (size differs from its record): making it again"
            % path)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        return False

    def record(self, path):
        self.sizes[os.path.basename(path)] = tree_bytes(path)
        with open(self.path + ".part", "w") as f:
            json.dump(self.sizes, f, indent=1, sort_keys=True)
        os.replace(self.path + ".part", self.path)


def llama_quantize(bindir, src, out, ftype, manifest, extra=()):
    """llama-quantize src -> out as ftype (extra: options such as --imatrix)."""
    if manifest.fresh(out):
        return
    say("llama-quantize %s -> %s (%s%s)" % (os.path.basename(src), os.path.basename(out), ftype,
                                           " " + " ".join(extra) if extra else ""))
    part, log = out + ".part", out + ".log"
    if os.path.exists(log):
        os.remove(log)
    run(["nice", os.path.join(bindir, "llama-quantize"), "--allow-requantize"] + list(extra) +
        [src, part, ftype, "2"], log=log)
    os.replace(part, out)
    manifest.record(out)


