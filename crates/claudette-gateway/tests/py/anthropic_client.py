"""The official Anthropic Python SDK against a Claudette gateway.

Usage: anthropic_client.py BASE_URL API_KEY THROTTLED_BASE_URL
Runs each scenario, checks what the SDK returned, and prints one JSON object with the
observations for the Rust side to check again. Exits non-zero on the first failed check.
"""

import json
import sys

import anthropic

base_url, api_key, throttled_url = sys.argv[1], sys.argv[2], sys.argv[3]
client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
out = {}

# Non-streaming.
message = client.messages.create(
    model="claude-fake",
    max_tokens=50,
    system="be brief",
    messages=[{"role": "user", "content": "hello"}],
)
assert message.type == "message" and message.role == "assistant", message
assert message.stop_reason == "end_turn", message.stop_reason
out["json"] = {
    "text": message.content[0].text,
    "input_tokens": message.usage.input_tokens,
    "output_tokens": message.usage.output_tokens,
}

# Streaming through the SDK's helper: text_stream and the accumulated final message.
with client.messages.stream(
    model="cl-stream", max_tokens=50, messages=[{"role": "user", "content": "hello"}]
) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert final.content[0].text == text, (final, text)
out["stream"] = {
    "text": text,
    "stop_reason": final.stop_reason,
    "input_tokens": final.usage.input_tokens,
    "output_tokens": final.usage.output_tokens,
}

# Tool use streamed from an OpenAI-shaped upstream, accumulated by the SDK.
with client.messages.stream(
    model="oa-tool-stream",
    max_tokens=50,
    messages=[{"role": "user", "content": "add"}],
    tools=[{"name": "add", "description": "adds", "input_schema": {"type": "object"}}],
) as stream:
    final = stream.get_final_message()
block = [b for b in final.content if b.type == "tool_use"][0]
out["tool"] = {"name": block.name, "input": block.input, "stop_reason": final.stop_reason}

# A failure after commit: the SDK raises rather than ending quietly.
pieces = []
try:
    with client.messages.stream(
        model="cl-cut", max_tokens=50, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        for t in stream.text_stream:
            pieces.append(t)
    raise AssertionError("expected an error mid-stream")
except anthropic.APIError as e:
    out["cut"] = {"text": "".join(pieces), "error": type(e).__name__}

# Token counts, as Claude Code asks before its requests: the plain and the beta endpoint
# (`?beta=true`), from a backend that counts; the raw answer says it is exact.
count_args = dict(
    model="cl-count",
    system="be brief",
    messages=[{"role": "user", "content": "count me"}],
    tools=[{"name": "add", "description": "adds", "input_schema": {"type": "object"}}],
)
raw = client.messages.with_raw_response.count_tokens(**count_args)
counted = raw.parse()
beta = client.beta.messages.count_tokens(**count_args)
out["count"] = {
    "input_tokens": counted.input_tokens,
    "beta_input_tokens": beta.input_tokens,
    "how": raw.headers.get("x-claudette-token-count"),
    "backend": raw.headers.get("x-claudette-backend"),
}

# Web search, as Claude Code's WebSearch asks for it: the server tool's blocks, the cited text
# and the searches come out of the SDK's stream accumulator as out of its JSON call, and the
# turn goes back as the SDK hands it over.
search_args = dict(
    model="cl-search",
    max_tokens=200,
    messages=[{"role": "user", "content": "When was Claude Shannon born?"}],
    tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
)
with client.messages.stream(**search_args) as stream:
    streamed = stream.get_final_message()
created = client.messages.create(**search_args)


def searched(m):
    return {
        "kinds": [b.type for b in m.content if b.type != "text"],
        "text": "".join(b.text for b in m.content if b.type == "text"),
        "cited": [c.url for b in m.content if b.type == "text" for c in (b.citations or [])],
        "query": [b.input["query"] for b in m.content if b.type == "server_tool_use"],
        "results": [r.url for b in m.content if b.type == "web_search_tool_result" for r in b.content],
        "searches": m.usage.server_tool_use.web_search_requests,
        "stop_reason": m.stop_reason,
    }


assert searched(streamed) == searched(created), (searched(streamed), searched(created))
again = client.messages.create(
    model="cl-search",
    max_tokens=200,
    messages=search_args["messages"]
    + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in streamed.content]},
        {"role": "user", "content": "Thanks. And where?"},
    ],
    tools=search_args["tools"],
)
out["search"] = dict(searched(streamed), again=again.content[0].text)

# Claude Code's `/fast` through the SDK's beta surface: the flags go as `betas`, `speed` in the
# body; the answer says it was served fast and costs 6x.
raw = client.beta.messages.with_raw_response.create(
    model="cl-fast",
    max_tokens=50,
    betas=["fast-mode-2026-02-01", "context-1m-2025-08-07"],
    messages=[{"role": "user", "content": "quick"}],
    extra_body={"speed": "fast"},
)
fast = raw.parse()
out["fast"] = {
    "text": fast.content[0].text,
    "speed": getattr(fast.usage, "speed", None),
    "cost": raw.headers.get("x-claudette-cost"),
}

# Unknown model: NotFoundError.
try:
    client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected NotFoundError")
except anthropic.NotFoundError as e:
    out["not_found"] = {"status": e.status_code}

# Every backend throttled: RateLimitError, twice (the second answered by the gateway alone).
throttled = anthropic.Anthropic(base_url=throttled_url, api_key="unused", max_retries=0, timeout=30)
statuses = []
for _ in range(2):
    try:
        throttled.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        raise AssertionError("expected RateLimitError")
    except anthropic.RateLimitError as e:
        statuses.append((e.status_code, e.response.headers.get("retry-after")))
out["throttled"] = statuses

print(json.dumps(out))
