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
