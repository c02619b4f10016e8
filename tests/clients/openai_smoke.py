#!/usr/bin/env python3
"""OpenAI Python SDK smoke test against `wick serve`.

Starts `wick serve --port 0` (or uses --base-url), then talks to it only through the
official `openai` package: a chat, a stream with usage, a tool call and its round trip, a
forced tool choice, a FIM completion and an error. Exits non-zero on the first failure.

    pip install openai
    python3 tests/clients/openai_smoke.py --wick target/release/wick \
        --model ~/.cache/wick/models/qwen2.5-coder-0.5b-instruct.gguf
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import openai
from openai import OpenAI

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}]


def start(wick, model):
    proc = subprocess.Popen(
        [wick, "serve", "--port", "0", "--ctx-size", "2048", "--model", model,
         "--api-key", "sk-smoke"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"})
    for line in proc.stderr:
        if line.startswith("wick: listening on "):
            base = line.split("listening on ", 1)[1].strip()
            break
    else:
        sys.exit("wick serve exited before printing its address")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
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


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def run(client, model):
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}],
        temperature=0, max_tokens=8)
    check(r.choices[0].message.content, "chat returns content")
    check(r.usage and r.usage.completion_tokens <= 8, "chat reports usage")

    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Count to three."}],
        temperature=0, max_tokens=6, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text, "stream returns content")
    check(chunks[-1].usage and chunks[-1].usage.completion_tokens == 6, "stream ends with usage")

    question = [{"role": "user", "content": "What is the weather in Paris in celsius?"}]
    r = client.chat.completions.create(
        model=model, messages=question, tools=TOOLS, temperature=0, max_tokens=60)
    calls = r.choices[0].message.tool_calls
    check(calls and calls[0].function.name == "get_weather", "tool call parsed")
    check(json.loads(calls[0].function.arguments).get("city") == "Paris", "arguments are a JSON string")
    check(r.choices[0].finish_reason == "tool_calls", "finish_reason tool_calls")

    messages = question + [r.choices[0].message.model_dump(exclude_none=True),
                           {"role": "tool", "tool_call_id": calls[0].id,
                            "content": json.dumps({"temperature": 18})}]
    r = client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, temperature=0, max_tokens=30)
    check(r.choices[0].message.content, "tool round trip answers in text")

    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0, max_tokens=40)
    check(r.choices[0].message.tool_calls[0].function.name == "get_weather", "named tool_choice forces the call")

    r = client.completions.create(
        model=model, prompt="def add(a, b):\n    return ", suffix="\n\nprint(add(1, 2))\n",
        temperature=0, max_tokens=8)
    check(r.choices[0].text, "FIM completion")

    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        check(False, "unknown model is refused")
    except openai.NotFoundError as e:
        check(e.body.get("code") == "model_not_found", "unknown model is a 404 model_not_found")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wick", default="target/release/wick")
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/wick/models/qwen2.5-coder-0.5b-instruct.gguf"))
    args = ap.parse_args()
    proc, base = start(args.wick, args.model)
    try:
        client = OpenAI(base_url=base + "/v1", api_key="sk-smoke")
        model = client.models.list().data[0].id
        try:
            OpenAI(base_url=base + "/v1", api_key="wrong").models.list()
            check(False, "a wrong key is refused")
        except openai.AuthenticationError:
            check(True, "a wrong key is refused with 401")
        run(client, model)
        print("all ok")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
