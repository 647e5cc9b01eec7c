#!/usr/bin/env python3
"""tests/client_exports.py: libgptqclient exports exactly what its installed
headers declare. The declared functions are read from the headers given on
the command line; the exported ones from `nm -D --defined-only` of the
built library. A function declared but not exported fails (a program
using it would not link), and so does any exported symbol no installed
header declares (internal code leaking into the ABI).

Usage: client_exports.py LIBGPTQCLIENT.so HEADER.h...
"""
import re
import subprocess
import sys


def declared(headers):
    names = set()
    for h in headers:
        with open(h, encoding="utf-8") as f:
            text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
        text = re.sub(r"#define[^\n]*", "", text)
        # a name followed by "(" declares a function; "gptq_status (*fn)(" is
        # the return type of a function pointer type, not a function
        names.update(m.group(1) for m in re.finditer(r"\b(gptq_\w+)\s*\((?!\s*\*)", text))
    return names


def exported(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True,
                         text=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] not in ("A",):  # A: version nodes
            syms.add(parts[2].split("@")[0])
    return syms


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    want, have = declared(sys.argv[2:]), exported(sys.argv[1])
    missing, extra = sorted(want - have), sorted(have - want)
    print("%d functions declared by %d installed headers, %d symbols exported"
          % (len(want), len(sys.argv) - 2, len(have)))
    for n in missing:
        print("FAIL: %s is declared but not exported" % n)
    for n in extra:
        print("FAIL: %s is exported but no installed header declares it" % n)
    return 1 if missing or extra else 0


if __name__ == "__main__":
    sys.exit(main())
