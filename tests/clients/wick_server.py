"""Starts `wick serve --port 0` for a client test and waits until the model is loaded.

Shared by the SDK tests under tests/clients/ (anthropic_smoke.py, responses_smoke.py).
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request


def start(wick, model, *extra):
    """Returns (process, base URL). Extra arguments go to `wick serve`."""
    proc = subprocess.Popen(
        [wick, "serve", "--port", "0", "--ctx-size", "2048", "--model", model, *extra],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
    for line in proc.stderr:
        if line.startswith("wick: listening on "):
            base = line.split("listening on ", 1)[1].strip()
            break
    else:
        sys.exit("wick serve exited before printing its address")
    # Keep draining the log so the server never blocks on a full pipe (shown with -v).
    verbose = os.environ.get("WICK_TEST_VERBOSE")
    threading.Thread(target=lambda: [verbose and sys.stderr.write(l) for l in proc.stderr],
                     daemon=True).start()
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/health") as r:
                if r.status == 200:
                    return proc, base
        except Exception:
            time.sleep(0.3)
    proc.kill()
    sys.exit("the server never became ready")


def stop(proc):
    proc.terminate()
    proc.wait(timeout=30)


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def served_model(base, key):
    """The model id the server answers to (GET /v1/models)."""
    req = urllib.request.Request(base + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["data"][0]["id"]
