#!/usr/bin/env python3
"""tests/daemon_unit.py: `systemd-analyze verify` on the configured unit.

The unit's ExecStart must exist for verify to pass, so a copy is verified
with ExecStart pointing at the built gptqd. verify returns 0 even for
warnings, so its output must be empty.
Usage: daemon_unit.py BUILD/systemd/gptqd.service BUILD/daemon/gptqd
Exit 77 (skip) without systemd-analyze."""
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main():
    unit, gptqd = sys.argv[1], os.path.abspath(sys.argv[2])
    tool = shutil.which("systemd-analyze")
    if not tool:
        print("systemd-analyze not found: skipped")
        return 77
    text = open(unit).read()
    for key in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=gptqd",
                "Group=gptq", "RuntimeDirectory=gptqd", "UMask=0007", "ProtectSystem=strict",
                "DevicePolicy=closed", "DeviceAllow=char-nvidia-frontend rw",
                "RestrictAddressFamilies=AF_UNIX", "NoNewPrivileges=yes"):
        if key not in text:
            print(f"FAIL: {unit} lacks {key}")
            return 1
    if re.search(r"^PrivateDevices=yes", text, re.M):
        print("FAIL: PrivateDevices=yes hides the GPU device nodes")
        return 1
    text, n = re.subn(r"^ExecStart=\S+", f"ExecStart={gptqd}", text, flags=re.M)
    if n != 1:
        print("FAIL: no ExecStart= line")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "gptqd.service")
        with open(copy, "w") as f:
            f.write(text)
        run = subprocess.run([tool, "verify", copy], capture_output=True, text=True)
        out = (run.stdout + run.stderr).strip()
        if run.returncode != 0 or out:
            print(f"FAIL: systemd-analyze verify returned {run.returncode}:\n{out}")
            return 1
        sec = subprocess.run([tool, "security", "--offline=true", copy], capture_output=True,
                             text=True)
        last = (sec.stdout.strip().splitlines() or ["?"])[-1]
        print(f"systemd-analyze verify: clean; security: {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
