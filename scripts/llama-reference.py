#!/usr/bin/env python3
"""Records llama.cpp's greedy continuations, top-5 logprobs and tokenizations for one GGUF,
by driving `llama-server` (the llama.cpp of llama-cpp-python 0.3.36, built by scripts/bench
into ~/.cache/wick/llama.cpp/bin). Standard library only.

    llama-reference.py LLAMA_SERVER MODEL_GGUF OUT_JSON [--suite synthetic|gemma3]

Settings: 2 threads, one slot, context 512, prompt evaluated in one batch, no prompt cache,
greedy sampling (only the temperature sampler, at 0), n_probs 5 (logprobs of the raw logits over the whole
vocabulary, before sampling).

`kept_steps` of each prompt is the number of leading greedy steps whose top-1/top-2 logprob
gap in llama.cpp is at least GAP nats: past the first step with a smaller gap, rounding noise
(8-bit activation quantization in llama.cpp and in wick, summed in different orders) can
legitimately pick the other token, so the tests compare only the kept steps. How GAP was
chosen: wick's top-5 logprobs differ from llama.cpp's by at most N (measured per
architecture, 0.03-0.15 nats on the random-weight files, written next to the tests), so a
gap can shrink by at most 2N; GAP = 0.3 is at least twice the largest 2N.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

GAP = 0.3
N_PREDICT = 32

PROMPTS = {
    "synthetic": [
        ("code", "def fibonacci(n):\n    if n < 2:\n        return n\n"),
        ("prose", "The quick brown fox jumps over the lazy dog. It"),
        ("rust", "fn main() {\n    let xs = vec![1, 2, 3];\n"),
        ("sql", "SELECT name, COUNT(*) FROM users WHERE"),
        ("json", '{"name": "wick", "version": "0.1.0", "dependencies": {'),
        ("story", "Once upon a time, in a small village by the sea,"),
        ("html", "<!DOCTYPE html>\n<html>\n<head>\n    <title>"),
        ("bash", "#!/bin/bash\nfor f in *.txt; do\n"),
    ],
    "gemma3": [
        ("code", "def fibonacci(n):\n    if n < 2:\n        return n\n"),
        ("prose", "The capital of France is"),
        ("list", "Here are three tips for writing clean code:\n1."),
        ("rust", "fn main() {\n    println!("),
        ("unicode", "Übersetzung: «Guten Morgen» heißt"),
        ("sql", "SELECT name, COUNT(*) FROM users WHERE"),
        ("json", '{"name": "wick", "version": "0.1.0", "dependencies": {'),
        ("story", "Once upon a time, in a small village by the sea,"),
        ("python_class", "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"),
        ("html", "<!DOCTYPE html>\n<html>\n<head>\n    <title>"),
        ("math", "The derivative of x^2 is"),
        ("bash", "#!/bin/bash\nfor f in *.txt; do\n"),
    ],
}

TOKENIZER_STRINGS = [
    "", " ", "  leading spaces", "trailing spaces   ", "tabs\tand\nnewlines\r\n",
    "12345678901234567890", "def f(x):\n    return x * 2\n", "日本語のテキスト",
    "한국어 텍스트", "Привет, мир", "Καλημέρα", "emoji 👍🏽 👨‍👩‍👧", "café naïve “quotes”",
    "nbsp\u00a0zero\u200bwidth", "<start_of_turn>user\nhi<end_of_turn>", "a  b   c    d",
    "CamelCaseIdentifier snake_case_name", "https://example.com/path?q=1&r=2",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def start(server: str, model: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-t", "2",
            "-tb", "2", "-c", "512", "-b", "512", "-ub", "512", "-np", "1", "-fa", "off",
            "--no-warmup"]
    log = os.path.join(tempfile.gettempdir(), os.path.basename(model) + ".llama-server.log")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit(f"error: llama-server exited (see {log})")
        time.sleep(0.2)
    proc.kill()
    sys.exit("error: llama-server did not become healthy")


def tokenize(url: str, text: str, add_special: bool) -> list[int]:
    return post(url + "/tokenize", {"content": text, "add_special": add_special,
                                    "parse_special": True})["tokens"]


def complete(url: str, ids: list[int], n_predict: int) -> dict:
    r = post(url + "/completion", {
        "prompt": ids, "n_predict": n_predict, "temperature": 0.0, "n_probs": 5,
        "cache_prompt": False, "return_tokens": True, "samplers": ["temperature"],
    })
    steps = r.get("completion_probabilities", [])
    top = [[{"id": e["id"], "logprob": round(e["logprob"], 5)} for e in s["top_logprobs"]]
           for s in steps]
    gen = [s["id"] for s in steps]
    kept = 0
    for s in top:
        if len(s) < 2 or s[0]["logprob"] - s[1]["logprob"] < GAP:
            break
        kept += 1
    return {"generated_ids": gen, "kept_steps": kept, "top_logprobs": top,
            "stop": r.get("stop_type"), "timings": r.get("timings", {})}


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: llama-reference.py LLAMA_SERVER MODEL_GGUF OUT_JSON [--suite NAME]")
    server, model, out = sys.argv[1:4]
    suite = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--suite" else "synthetic"
    proc, url = start(server, model)
    try:
        props = json.load(urllib.request.urlopen(url + "/props", timeout=10))
        prompts = []
        for name, text in PROMPTS[suite]:
            ids = tokenize(url, text, True)
            r = complete(url, ids, N_PREDICT)
            prompts.append({"name": name, "prompt": text, "prompt_ids": ids, **r})
        tok = [{"text": s, "ids": tokenize(url, s, False),
                "ids_add_special": tokenize(url, s, True)}
               for s in (TOKENIZER_STRINGS if suite == "gemma3" else [])]
    finally:
        proc.terminate()
        proc.wait()
    doc = {
        "format": 1,
        "model": {"file": os.path.basename(model), "sha256": sha256(model)},
        "producer": {"engine": "llama.cpp llama-server (llama-cpp-python 0.3.36 sources)",
                     "build": props.get("build_info"),
                     "settings": "2 threads, n_ctx 512, n_batch 512, greedy, n_probs 5"},
        "gap_threshold": GAP,
        "n_predict": N_PREDICT,
        "prompts": prompts,
        "tokenizer": tok,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for p in prompts:
        print(f"{os.path.basename(model)} {p['name']}: kept {p['kept_steps']}/{len(p['generated_ids'])}"
              f" steps, decode {p['timings'].get('predicted_per_second', 0):.1f} tok/s")


if __name__ == "__main__":
    main()
