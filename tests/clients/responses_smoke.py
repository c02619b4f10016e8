#!/usr/bin/env python3
"""OpenAI Python SDK `client.responses` against `wick serve` (`/v1/responses`).

Talks to wick only through the official `openai` package, as Codex CLI's wire does: text
(string input and items, instructions), max_output_tokens → status incomplete, the typed
stream events in order with sequence numbers, a function call (tool_choice required and
named) and its round trip through function_call_output, previous_response_id with a
stored response, a 404 for an unknown id, non-function tools ignored with a header, and
json_object output. Where the small model would be unreliable the request constrains it
(tool_choice), so every check is about wick. Exits non-zero on the first failure.

    pip install openai
    python3 tests/clients/responses_smoke.py --wick target/debug/wick \
        --model ~/.cache/wick/models/qwen2.5-coder-0.5b-instruct.gguf
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openai  # noqa: E402
from openai import OpenAI  # noqa: E402
from wick_server import check, served_model, start, stop  # noqa: E402

TOOLS = [{"type": "function", "name": "get_weather", "description": "Get the current weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def text(client, model):
    r = client.responses.create(model=model, input="Say hello.", instructions="You are terse.",
                                temperature=0, max_output_tokens=16)
    check(r.object == "response" and r.status in ("completed", "incomplete"), f"a response comes back ({r.status})")
    check(r.output_text, "output_text is the message text")
    check(r.usage.input_tokens > 5 and 0 < r.usage.output_tokens <= 16, "usage is reported")

    r = client.responses.create(model=model, temperature=0, max_output_tokens=3,
                                input=[{"role": "user", "content": [{"type": "input_text", "text": "Write a long poem."}]}])
    check(r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens",
          "max_output_tokens gives status incomplete, reason max_output_tokens")

    r = client.responses.create(model=model, temperature=0, max_output_tokens=40,
                                text={"format": {"type": "json_object"}},
                                input="Give a JSON object with a key 'a' set to 1.")
    check(isinstance(json.loads(r.output_text), dict), "text.format json_object gives a JSON object")


def streaming(client, model):
    events = list(client.responses.create(model=model, input="Count to five.", temperature=0,
                                          max_output_tokens=12, stream=True))
    kinds = [e.type for e in events]
    check(kinds[:2] == ["response.created", "response.in_progress"], "stream opens with created, in_progress")
    check(kinds[-1] in ("response.completed", "response.incomplete"), "stream ends with the final response")
    for want in ["response.output_item.added", "response.content_part.added", "response.output_text.delta",
                 "response.output_text.done", "response.content_part.done", "response.output_item.done"]:
        check(want in kinds, f"stream has {want}")
    seq = [e.sequence_number for e in events]
    check(seq == list(range(len(seq))), "sequence_number counts from 0")
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    check(deltas and deltas == events[-1].response.output_text, "the deltas add up to the final text")

    events = list(client.responses.create(model=model, input="Weather in Paris?", tools=TOOLS,
                                          tool_choice="required", temperature=0, max_output_tokens=60, stream=True))
    kinds = [e.type for e in events]
    check("response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds,
          "a streamed call sends function_call_arguments delta and done")
    calls = [o for o in events[-1].response.output if o.type == "function_call"]
    check(calls and isinstance(json.loads(calls[0].arguments), dict), "the streamed call is in the final output")


def function_calls(client, model):
    r = client.responses.create(model=model, input="What is the weather in Paris?", tools=TOOLS,
                                tool_choice={"type": "function", "name": "get_weather"},
                                temperature=0, max_output_tokens=60)
    calls = [o for o in r.output if o.type == "function_call"]
    check(calls and calls[0].name == "get_weather", "a named tool_choice forces the function call")
    args = json.loads(calls[0].arguments)
    check(isinstance(args, dict) and calls[0].call_id, "with JSON arguments and a call_id")

    follow = [{"role": "user", "content": "What is the weather in Paris?"},
              {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
               "arguments": calls[0].arguments},
              {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 degrees, sunny"}]
    r = client.responses.create(model=model, input=follow, tools=TOOLS, tool_choice="none",
                                temperature=0, max_output_tokens=30)
    check(r.output_text and r.output[0].type == "message", "the function_call_output round trip answers in text")

    # Codex sends tools it runs itself: ignored by rule, named in a header, never a 500.
    raw = client.responses.with_raw_response.create(
        model=model, input="Hi", temperature=0, max_output_tokens=4,
        tools=TOOLS + [{"type": "web_search"}, {"type": "local_shell"}])
    check(raw.headers.get("x-wick-ignored-tools") == "web_search, local_shell",
          "non-function tools are ignored and named in x-wick-ignored-tools")


def previous_response(client, model):
    first = client.responses.create(model=model, input="What is the weather in Paris?", tools=TOOLS,
                                    tool_choice="required", temperature=0, max_output_tokens=60, store=True)
    call = next(o for o in first.output if o.type == "function_call")
    second = client.responses.create(
        model=model, previous_response_id=first.id, tools=TOOLS, tool_choice="none",
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees"}],
        temperature=0, max_output_tokens=30)
    check(second.output_text, "previous_response_id continues a stored conversation")
    full = client.responses.create(
        model=model, tools=TOOLS, tool_choice="none", temperature=0, max_output_tokens=30,
        input=[{"role": "user", "content": "What is the weather in Paris?"},
               {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees"}])
    check(second.usage.input_tokens == full.usage.input_tokens,
          "the follow-up prompt is the stored turn plus the new input")
    check(second.previous_response_id == first.id, "the response names its previous response")
    try:
        client.responses.create(model=model, previous_response_id="resp_unknown", input="Hi", max_output_tokens=4)
        check(False, "an unknown previous_response_id is refused")
    except openai.NotFoundError as e:
        check(e.body.get("code") == "previous_response_not_found", "unknown previous_response_id: 404")
    unstored = client.responses.create(model=model, input="Hi", store=False, max_output_tokens=2)
    try:
        client.responses.create(model=model, previous_response_id=unstored.id, input="Hi", max_output_tokens=2)
        check(False, "a response made with store: false is not kept")
    except openai.NotFoundError:
        check(True, "a response made with store: false is not kept")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wick", default="target/release/wick")
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/wick/models/qwen2.5-coder-0.5b-instruct.gguf"))
    args = ap.parse_args()
    proc, base = start(args.wick, args.model, "--api-key", "sk-smoke")
    try:
        client = OpenAI(base_url=base + "/v1", api_key="sk-smoke", max_retries=0)
        model = served_model(base, "sk-smoke")
        text(client, model)
        streaming(client, model)
        function_calls(client, model)
        previous_response(client, model)
        print("all ok")
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
