#!/usr/bin/env python3
"""Golden chat-template renders made by Python jinja2 the way Hugging Face transformers'
`apply_chat_template` renders them; `tests/template_goldens.rs` checks wick byte for byte
against them.

HF semantics: an ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the
loopcontrols extension; `tojson` is `json.dumps(x, ensure_ascii=False, indent, separators,
sort_keys)`; `raise_exception(msg)` raises; `strftime_now(fmt)` formats "now" (pinned here to
NOW so goldens are reproducible); the context is messages, tools (None when absent),
documents=None, add_generation_prompt, bos_token, eos_token.

The OpenAI request in each case is first normalized by the rules documented in
src/template/normalize.rs, implemented again here independently.

Usage: python3 tests/templates/gen_goldens.py [--templates DIR] [--models DIR]
  DIR defaults: the fetch_templates.sh cache and ~/.cache/wick/models.
Needs jinja2 (3.1.6 made the committed goldens).
"""

import argparse
import copy
import hashlib
import json
import os
import re
import struct
import sys
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = Path(__file__).resolve().parent
NOW = 1768478400  # 2026-01-15 12:00:00 UTC

# golden id -> (template file in the fetch cache, bos_token, eos_token)
REAL_TEMPLATES = {
    "qwen2.5": ("Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>"),
    "qwen3": ("Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>"),
    "qwen3-coder": ("Qwen3-Coder.jinja", "", "<|im_end|>"),
    "qwq": ("Qwen-QwQ-32B.jinja", "", "<|im_end|>"),
    "llama3.1": ("meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2": ("meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    "mistral-nemo": ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>"),
    "mistral-small-3.2": ("Mistral-Small-3.2-24B-Instruct-2506.jinja", "<s>", "</s>"),
    "devstral": ("unsloth-mistral-Devstral-Small-2507.jinja", "<s>", "</s>"),
    "deepseek-v3.1": ("deepseek-ai-DeepSeek-V3.1.jinja", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "deepseek-r1-qwen": ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "deepseek-r1-llama": ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "hermes2-pro": ("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", "<|begin_of_text|>", "<|im_end|>"),
}
GGUF_MODELS = {
    "gguf-qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct.gguf",
    "gguf-smollm2-135m": "smollm2-135m-instruct-q4_1.gguf",
}


# --- HF environment -------------------------------------------------------------------------

class RaisedError(Exception):
    pass


def raise_exception(message):
    raise RaisedError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.fromtimestamp(NOW, timezone.utc).strftime(fmt)


def hf_environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# --- OpenAI request -> template variables (rules of src/template/normalize.rs) ---------------

def arguments_as_string(source):
    """True when the template concatenates `arguments` with `+` (no filter in between)."""
    ref = r"arguments['\"\]]*"
    if re.search(ref + r"\s*\+", source):
        return True
    return re.search(r"\+\s*[\w.\[\]'\"]*" + ref + r"\s*-?\}\}", source) is not None


def tests_content_for_none(source):
    return re.search(r"(?<!\w)content['\"\]]*\s+is\s+(not\s+)?none\b", source) is not None


def normalize(request, args_as_string, null_content):
    out = []
    for m in request["messages"]:
        m = copy.deepcopy(m)
        if m["role"] == "developer":
            m["role"] = "system"
        content = m.get("content")
        if isinstance(content, list):
            content = "\n".join(p["text"] for p in content if p["type"] == "text")
        if content is None and not (null_content and m["role"] == "assistant" and m.get("tool_calls")):
            content = ""
        if m["role"] == "system" and content == "":
            continue
        m["content"] = content
        for call in m.get("tool_calls") or []:
            fn = call.get("function", call)
            args = fn.get("arguments")
            if not args_as_string and isinstance(args, str):
                try:
                    fn["arguments"] = json.loads(args)
                except ValueError:
                    pass
            elif args_as_string and args is not None and not isinstance(args, str):
                fn["arguments"] = json.dumps(args, ensure_ascii=False)
        if m["role"] == "tool" and "name" not in m and "tool_call_id" in m:
            for earlier in reversed(out):
                hit = [c for c in earlier.get("tool_calls") or [] if c.get("id") == m["tool_call_id"]]
                if hit:
                    m["name"] = hit[0].get("function", hit[0])["name"]
                    break
        out.append(m)
    tools = request.get("tools") or None
    if request.get("tool_choice") == "none":
        tools = None
    return out, tools


def render(env, source, bos, eos, case):
    template = env.from_string(source)
    messages, tools = normalize(case["request"], arguments_as_string(source), tests_content_for_none(source))
    try:
        prompt = template.render(
            messages=messages,
            tools=tools,
            documents=None,
            add_generation_prompt=case.get("add_generation_prompt", True),
            bos_token=bos,
            eos_token=eos,
        )
        return {"name": case["name"], "prompt": prompt}
    except RaisedError as e:
        return {"name": case["name"], "error": {"kind": "raised", "message": str(e)}}
    except Exception as e:  # a Python-level failure; wick must fail too (message may differ)
        return {"name": case["name"], "error": {"kind": "render", "message": f"{type(e).__name__}: {e}"}}


# --- GGUF metadata (just enough to read the template and bos/eos text) -----------------------

def read_gguf_metadata(path):
    with open(path, "rb") as f:
        magic, version = struct.unpack("<4sI", f.read(8))
        if magic != b"GGUF" or version < 2:
            sys.exit(f"error: {path} is not a GGUF v2+ file")
        _n_tensors, n_kv = struct.unpack("<QQ", f.read(16))
        scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

        def string():
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n).decode("utf-8", errors="replace")

        def value(t):
            if t == 8:
                return string()
            if t == 9:
                et, n = struct.unpack("<IQ", f.read(12))
                return [value(et) for _ in range(n)]
            fmt = scalar[t]
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        meta = {}
        for _ in range(n_kv):
            key = string()
            (t,) = struct.unpack("<I", f.read(4))
            meta[key] = value(t)
        return meta


def main():
    ap = argparse.ArgumentParser()
    default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wick"
    ap.add_argument("--templates", type=Path, default=Path(os.environ.get("WICK_TEMPLATES_DIR", default_cache / "templates")))
    ap.add_argument("--models", type=Path, default=Path(os.environ.get("WICK_TEST_MODELS_DIR", default_cache / "models")))
    args = ap.parse_args()

    cases = json.loads((HERE / "cases.json").read_text(encoding="utf-8"))
    env = hf_environment()
    sources = {}
    for gid, (file, bos, eos) in REAL_TEMPLATES.items():
        path = args.templates / file
        if not path.exists():
            sys.exit(f"error: {path} missing: run tests/templates/fetch_templates.sh")
        sources[gid] = (file, path.read_text(encoding="utf-8"), bos, eos)
    for gid, file in GGUF_MODELS.items():
        meta = read_gguf_metadata(args.models / file)
        tokens = meta["tokenizer.ggml.tokens"]
        bos = tokens[meta["tokenizer.ggml.bos_token_id"]]
        eos = tokens[meta["tokenizer.ggml.eos_token_id"]]
        sources[gid] = ("gguf:" + file, meta["tokenizer.chat_template"], bos, eos)

    outdir = HERE / "goldens"
    outdir.mkdir(exist_ok=True)
    for gid, (origin, source, bos, eos) in sources.items():
        golden = {
            "template": origin,
            "sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
            "bos_token": bos,
            "eos_token": eos,
            "now": NOW,
            "generator": f"gen_goldens.py, jinja2 {jinja2.__version__}",
            "cases": [render(env, source, bos, eos, c) for c in cases],
        }
        text = json.dumps(golden, indent=1, ensure_ascii=False) + "\n"
        (outdir / f"{gid}.json").write_text(text, encoding="utf-8")
        errors = sum(1 for c in golden["cases"] if "error" in c)
        print(f"{gid}: {len(cases)} cases, {errors} errors")


if __name__ == "__main__":
    main()
