#!/usr/bin/env python3
"""Seed inputs for the cargo-fuzz targets, written into CORPUS_DIR/TARGET/ (scripts/fuzz
passes fuzz/corpus, which git ignores). Each file is named by the SHA-1 of its bytes, as
libFuzzer names what it adds, so running this again adds nothing twice.

From an empty corpus libFuzzer needs a long time to find a GGUF magic followed by a
consistent header, or a chat body that gets past the first field check; with these it
starts from inputs that reach the deep code: a small valid GGUF with every metadata type,
chat bodies with every role, tools and options, every tool-parser case of
parsers/tests/*.jsonl, and a few JSON objects.
"""
import hashlib
import json
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def gguf(version=3, alignment=None, tensors=True):
    """A small GGUF file (version 2 or 3): one metadata key of each type, two tensors, aligned data."""

    def s(text):
        b = text.encode()
        return struct.pack("<Q", len(b)) + b

    kv = [
        ("general.architecture", 8, s("llama")),
        ("general.name", 8, s("seed")),
        ("t.u8", 0, struct.pack("<B", 7)),
        ("t.i8", 1, struct.pack("<b", -7)),
        ("t.u16", 2, struct.pack("<H", 700)),
        ("t.i16", 3, struct.pack("<h", -700)),
        ("t.u32", 4, struct.pack("<I", 70000)),
        ("t.i32", 5, struct.pack("<i", -70000)),
        ("t.f32", 6, struct.pack("<f", 1.5)),
        ("t.bool", 7, struct.pack("<B", 1)),
        ("t.u64", 10, struct.pack("<Q", 1 << 40)),
        ("t.i64", 11, struct.pack("<q", -(1 << 40))),
        ("t.f64", 12, struct.pack("<d", 2.5)),
        ("t.arr_u32", 9, struct.pack("<IQ", 4, 3) + struct.pack("<3I", 1, 2, 3)),
        ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + s("a") + s("b") + s("<|im_end|>")),
    ]
    if alignment is not None:
        kv.append(("general.alignment", 4, struct.pack("<I", alignment)))
    align = alignment or 32
    infos = []
    if tensors:
        # name, dims, ggml type (0 = F32, 2 = Q4_0: 32 elements in 18 bytes), offset
        infos = [("a.weight", [4, 2], 0, 0), ("b.weight", [32], 2, 64)]
    out = b"GGUF" + struct.pack("<IQQ", version, len(infos), len(kv))
    for key, ty, value in kv:
        out += s(key) + struct.pack("<I", ty) + value
    for name, dims, ty, offset in infos:
        out += s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", ty, offset)
    out += b"\0" * (-len(out) % align)
    if infos:
        out += bytes(range(32)) + b"\0" * 32 + bytes(18)
    return out


def chat_bodies():
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
    yield {"messages": [{"role": "user", "content": "hi"}]}
    yield {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
    yield {
        "model": "m",
        "messages": [
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny.", "reasoning_content": "look it up"},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [tool],
        "tool_choice": "auto",
    }
    yield {
        "messages": [{"role": "user", "content": "x"}],
        "tools": [tool],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    }
    yield {"messages": [{"role": "user", "content": "x"}], "tools": [tool], "tool_choice": "required"}
    yield {"messages": [{"role": "user", "content": "x"}], "tool_choice": "none"}
    yield {
        "messages": [{"role": "user", "content": "json please"}],
        "response_format": {"type": "json_object"},
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 16,
        "max_completion_tokens": 16,
        "seed": 7,
        "stop": ["\n\n", "</s>"],
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "n": 1,
        "logprobs": True,
        "top_logprobs": 3,
        "logit_bias": {"42": -100},
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u",
    }
    yield {"messages": [{"role": "user", "content": "x"}], "stop": "END", "stream": False}
    yield {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": [1, 2.5, None, True]}}}]},
            {"role": "tool", "tool_call_id": "c", "name": "f", "content": [{"type": "text", "text": "ok"}]},
        ]
    }
    yield {"messages": [{"role": "user", "content": "\u00e9\ud83d\ude00 \\n \"q\""}], "response_format": {"type": "text"}}


def tool_texts():
    for name in ("cases.jsonl", "own_cases.jsonl"):
        path = ROOT / "parsers" / "tests" / name
        if not path.exists():
            continue
        for i, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                text = json.loads(line)["input"]
                # The first byte picks the chunk size (byte % 8 + 1).
                yield bytes([i % 8]) + text.encode()


JSON_OBJECTS = [
    b"{}",
    b'{"a": 1}',
    b'{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2.5e3, -0.1], "ok": true, "x": null}}',
    b'{"s": "\\u00e9\\n\\"\\\\ \xc3\xa9 \xf0\x9f\x98\x80", "n": {"m": {"o": []}}, "f": false}',
    b'  {\n\t"k" : [ { } , [ ] , "" , 0 , -0 , 1E+2 ] }',
]


def write(corpus, target, inputs):
    folder = corpus / target
    folder.mkdir(parents=True, exist_ok=True)
    for data in inputs:
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    corpus = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus")
    write(corpus, "gguf_header", [gguf(), gguf(version=2), gguf(alignment=64), gguf(tensors=False)])
    write(corpus, "chat_request", [json.dumps(b).encode() for b in chat_bodies()])
    write(corpus, "tool_parsers", list(tool_texts()))
    write(corpus, "json_constraint", JSON_OBJECTS)


if __name__ == "__main__":
    main()
