#!/usr/bin/env python3
"""Anthropic Python SDK against `wick serve` (`/v1/messages`, `/v1/messages/count_tokens`).

Talks to wick only through the official `anthropic` package, as Claude Code's own SDK
does: a chat, max_tokens and stop_sequence stops, a stream (event order), tool use with
`tool_choice` any and tool (plain and streamed), the tool_result round trip, count_tokens,
and each error shape (400 invalid_request_error naming the block, 401
authentication_error via x-api-key, 404 not_found_error, 429 rate_limit_error).
Where the small model would be unreliable the request constrains it (tool_choice), so
every check is about wick. Exits non-zero on the first failure.

    pip install anthropic
    python3 tests/clients/anthropic_smoke.py --wick target/debug/wick \
        --model ~/.cache/wick/models/qwen2.5-coder-0.5b-instruct.gguf
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anthropic  # noqa: E402
from anthropic import Anthropic  # noqa: E402
from wick_server import check, served_model, start, stop  # noqa: E402

GREEDY = {"temperature": 0}  # the SDK 2.x has no temperature argument: it goes in the body
TOOLS = [
    {"name": "get_weather", "description": "Get the current weather in a city",
     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                      "required": ["city"]}},
    {"name": "get_time", "description": "Get the current time in a city",
     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                      "required": ["city"]}},
]
WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def chat(client, model):
    r = client.messages.create(model=model, max_tokens=16, system="You are terse.",
                               messages=[{"role": "user", "content": "Say hello."}],
                               extra_body=GREEDY)
    check(r.type == "message" and r.role == "assistant", "a message comes back")
    check(r.content and r.content[0].type == "text" and text_of(r), "it has a text block")
    check(r.stop_reason in ("end_turn", "max_tokens"), f"stop_reason {r.stop_reason}")
    check(r.usage.input_tokens > 5 and 0 < r.usage.output_tokens <= 16, "usage is reported")

    r = client.messages.create(model=model, max_tokens=3, extra_body=GREEDY,
                               messages=[{"role": "user", "content": "Write a long poem about the sea."}])
    check(r.stop_reason == "max_tokens" and r.usage.output_tokens == 3, "max_tokens stops with stop_reason max_tokens")

    r = client.messages.create(model=model, max_tokens=40, stop_sequences=[" "], extra_body=GREEDY,
                               messages=[{"role": "user", "content": "Write one sentence about cats."}])
    check(r.stop_reason == "stop_sequence" and r.stop_sequence == " ", "a stop sequence is reported by name")
    check(" " not in text_of(r), "the stop sequence is not in the text")

    r = client.messages.create(model=model, max_tokens=8, extra_body=GREEDY,
                               system=[{"type": "text", "text": "Answer in French."}],
                               messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    check(text_of(r), "system and content as blocks")


def streaming(client, model):
    with client.messages.stream(model=model, max_tokens=12, extra_body=GREEDY,
                                messages=[{"role": "user", "content": "Count to five."}]) as s:
        kinds = [e.type for e in s]
        final = s.get_final_message()
    check(kinds[0] == "message_start" and kinds[-1] == "message_stop", "stream opens and closes")
    check("content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds,
          "stream has block start/stop and message_delta")
    check(text_of(final) and final.usage.output_tokens > 0, "the streamed message adds up")

    with client.messages.stream(model=model, max_tokens=60, tools=TOOLS, extra_body=GREEDY,
                                tool_choice={"type": "any"}, messages=WEATHER) as s:
        raw = [e for e in s]
        final = s.get_final_message()
    deltas = [e.delta.type for e in raw if e.type == "content_block_delta"]
    check("input_json_delta" in deltas, "a streamed tool call sends input_json_delta")
    uses = [b for b in final.content if b.type == "tool_use"]
    check(uses and isinstance(uses[0].input, dict) and final.stop_reason == "tool_use",
          "the streamed tool call folds into a tool_use block")


def tools(client, model):
    r = client.messages.create(model=model, max_tokens=60, tools=TOOLS, extra_body=GREEDY,
                               tool_choice={"type": "any"}, messages=WEATHER)
    uses = [b for b in r.content if b.type == "tool_use"]
    check(r.stop_reason == "tool_use" and uses, "tool_choice any forces a tool_use")
    check(uses[0].name in ("get_weather", "get_time") and isinstance(uses[0].input, dict), "with a declared name and an input object")
    check(uses[0].id.startswith("toolu_"), "tool_use ids read toolu_")

    r = client.messages.create(model=model, max_tokens=60, tools=TOOLS, extra_body=GREEDY,
                               tool_choice={"type": "tool", "name": "get_time"}, messages=WEATHER)
    uses = [b for b in r.content if b.type == "tool_use"]
    check(uses and uses[0].name == "get_time", "tool_choice tool forces that tool")

    first = client.messages.create(model=model, max_tokens=60, tools=TOOLS, extra_body=GREEDY,
                                   tool_choice={"type": "tool", "name": "get_weather"}, messages=WEATHER)
    use = next(b for b in first.content if b.type == "tool_use")
    follow = WEATHER + [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": [{"type": "text", "text": "18 degrees, sunny"}]}]},
    ]
    # `none`: the answer must be text, whatever the small model would prefer.
    r = client.messages.create(model=model, max_tokens=30, tools=TOOLS, extra_body=GREEDY,
                               tool_choice={"type": "none"}, messages=follow)
    check(text_of(r) and r.stop_reason in ("end_turn", "max_tokens"), "the tool_result round trip answers in text")
    follow[-1]["content"][0]["is_error"] = True
    r = client.messages.create(model=model, max_tokens=8, tools=TOOLS, extra_body=GREEDY,
                               tool_choice={"type": "none"}, messages=follow)
    check(r.content, "an is_error tool_result is accepted")


def count_tokens(client, model):
    short = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "Hi"}])
    longer = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "Hi " * 50}])
    with_tools = client.messages.count_tokens(model=model, tools=TOOLS, messages=[{"role": "user", "content": "Hi"}])
    check(0 < short.input_tokens < longer.input_tokens, "count_tokens counts the prompt")
    check(with_tools.input_tokens > short.input_tokens, "count_tokens counts the tools")
    r = client.messages.create(model=model, max_tokens=1, messages=[{"role": "user", "content": "Hi"}])
    check(r.usage.input_tokens == short.input_tokens, "count_tokens agrees with usage.input_tokens")


def error_shape(e, kind):
    body = e.body
    return isinstance(body, dict) and body.get("type") == "error" and body["error"]["type"] == kind


def errors(client, base, model):
    try:
        client.post("/v1/messages", cast_to=object,
                    body={"model": model, "messages": [{"role": "user", "content": "Hi"}]})
        check(False, "a request without max_tokens is refused")
    except anthropic.BadRequestError as e:
        check(error_shape(e, "invalid_request_error") and "max_tokens" in e.body["error"]["message"],
              "no max_tokens: 400 invalid_request_error")
    try:
        client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}])
        check(False, "an image block is refused")
    except anthropic.BadRequestError as e:
        check(error_shape(e, "invalid_request_error") and "messages[0].content[1]" in e.body["error"]["message"],
              "an image block: 400 naming the block")
    try:
        Anthropic(base_url=base, api_key="wrong", max_retries=0).messages.create(
            model=model, max_tokens=5, messages=WEATHER)
        check(False, "a wrong x-api-key is refused")
    except anthropic.AuthenticationError as e:
        check(error_shape(e, "authentication_error"), "wrong x-api-key: 401 authentication_error")
    try:
        client.messages.create(model="claude-no-such-model", max_tokens=5, messages=WEATHER)
        check(False, "an unknown model is refused")
    except anthropic.NotFoundError as e:
        check(error_shape(e, "not_found_error"), "unknown model: 404 not_found_error")


def rate_limit(wick, model_file):
    # A second server with --parallel 1 --max-queue 0: while one stream generates, the next
    # request is over capacity.
    proc, base = start(wick, model_file, "--parallel", "1", "--max-queue", "0")
    try:
        client = Anthropic(base_url=base, api_key="unused", max_retries=0)
        model = served_model(base, "unused")
        over_capacity(client, model)
    finally:
        stop(proc)


def over_capacity(client, model):
    with client.messages.stream(model=model, max_tokens=200, extra_body=GREEDY,
                                messages=[{"role": "user", "content": "Write a long story."}]) as s:
        next(iter(s))
        try:
            client.messages.create(model=model, max_tokens=5, messages=WEATHER)
            check(False, "a request over capacity is refused")
        except anthropic.RateLimitError as e:
            check(error_shape(e, "rate_limit_error"), "over capacity: 429 rate_limit_error")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wick", default="target/release/wick")
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/wick/models/qwen2.5-coder-0.5b-instruct.gguf"))
    args = ap.parse_args()
    proc, base = start(args.wick, args.model, "--api-key", "sk-smoke")
    try:
        # The SDK sends the key as x-api-key; retries off so 429 reaches the test.
        client = Anthropic(base_url=base, api_key="sk-smoke", max_retries=0)
        model = served_model(base, "sk-smoke")
        chat(client, model)
        streaming(client, model)
        tools(client, model)
        count_tokens(client, model)
        errors(client, base, model)
    finally:
        stop(proc)
    rate_limit(args.wick, args.model)
    print("all ok")


if __name__ == "__main__":
    main()
