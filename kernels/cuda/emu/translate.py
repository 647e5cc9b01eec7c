#!/usr/bin/env python3
"""kernels/cuda/emu/translate.py: a .cu file as host C++ for the emulated
module (emu.h says how its kernels run). Only the two pieces of CUDA
syntax that C++ cannot parse are rewritten, on their own lines, so that
every line keeps its number and compiler messages point into the .cu file:

    kernel<T, 4><<<grid, block, smem, stream>>>(args...)
        -> ::gptq_emu::launch(kernel<T, 4>, "kernel<T, 4>", __FILE__, __LINE__,
                               grid, block, smem, stream)(args...)
    extern __shared__ float4 smem[];
        -> float4 *const smem = ::gptq_emu::dynamic_shared<float4>();

Anything else that looks like a launch (<<< without its >>>( on the same
line) is an error, so a launch the rewrite cannot see fails the build
instead of being skipped.

Usage: translate.py IN.cu OUT.cc
"""
import re
import sys

LAUNCH = re.compile(
    r"(?P<callee>[A-Za-z_]\w*(?:\s*<[^<>;()]*>)?)\s*<<<(?P<cfg>.*?)>>>\s*\(")
EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?(?P<type>[A-Za-z_][\w:]*)\s+"
    r"(?P<name>[A-Za-z_]\w*)\s*\[\s*\]\s*;")


def translate(text, path):
    out = ['#include "kernels/cuda/emu/emu.h"\n', '#line 1 "%s"\n' % path]
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        def launch(m):
            callee = " ".join(m.group("callee").split())
            return '::gptq_emu::launch(%s, "%s", __FILE__, __LINE__, %s)(' % (
                callee, callee, m.group("cfg").strip())
        line = LAUNCH.sub(launch, line)
        line = EXTERN_SHARED.sub(
            lambda m: "%s *const %s = ::gptq_emu::dynamic_shared<%s>();" % (
                m.group("type"), m.group("name"), m.group("type")), line)
        if "<<<" in line or ">>>" in line or re.search(r"extern\s+__shared__", line):
            sys.exit("%s:%d: a kernel launch or dynamic shared array the emulator cannot "
                     "translate: keep `kernel<<<...>>>(` on one line" % (path, number))
        out.append(line)
    return "".join(out)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    with open(dst, "w", encoding="utf-8") as f:
        f.write(translate(text, src))


if __name__ == "__main__":
    main()
