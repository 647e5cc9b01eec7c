"""tests/gptqd_proc.py: a private gptqd for the Python tests that drive it
through gptqctl (test_gptqctl.py, test_options.py): start it on a socket in
the test's own folder, wait until `gptqctl status` answers, stop it."""
import os
import signal
import subprocess
import time


def start_daemon(gptqd, gptqctl, tmp, sock, model_dirs, wait_s=30):
    """gptqd on `sock` (CPU, the given model folders, log in tmp/gptqd.log);
    returns the process once `gptqctl status` answers, or when it exits or
    wait_s passes (the caller checks poll() and the socket)."""
    log = open(os.path.join(tmp, "gptqd.log"), "w")
    env = dict(os.environ)
    env.pop("GPTQD_SOCKET", None)
    dirs = [a for d in model_dirs for a in ("--model-dir", d)]
    d = subprocess.Popen([gptqd, "--socket", sock, "--device", "cpu"] + dirs, stdout=log,
                         stderr=subprocess.STDOUT, env=env, cwd="/")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and d.poll() is None:
        if os.path.exists(sock) and subprocess.run([gptqctl, "--socket", sock, "status"],
                                                   capture_output=True).returncode == 0:
            return d
        time.sleep(0.05)
    return d


def stop_daemon(d, wait_s=15):
    """SIGTERM, then SIGKILL after wait_s."""
    if d.poll() is None:
        d.send_signal(signal.SIGTERM)
        try:
            d.wait(wait_s)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()
