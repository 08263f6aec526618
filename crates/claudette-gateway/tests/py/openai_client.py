"""The official OpenAI Python SDK against a Claudette gateway.

Usage: openai_client.py BASE_URL API_KEY
Runs each scenario, checks what the SDK returned, and prints one JSON object with the
observations for the Rust side to check again. Exits non-zero on the first failed check.
"""

import json
import sys

import openai

base_url, api_key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=30)
out = {}

# Non-streaming, with the raw response to read Claudette's headers.
raw = client.chat.completions.with_raw_response.create(
    model="oa-json", messages=[{"role": "user", "content": "hello"}], max_tokens=20
)
completion = raw.parse()
assert completion.object == "chat.completion", completion
assert completion.choices[0].message.role == "assistant"
assert completion.choices[0].finish_reason == "stop"
assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
out["json"] = {
    "content": completion.choices[0].message.content,
    "prompt_tokens": completion.usage.prompt_tokens,
    "completion_tokens": completion.usage.completion_tokens,
    "cached_tokens": completion.usage.prompt_tokens_details.cached_tokens,
    "backend": raw.headers.get("x-claudette-backend"),
    "attempts": raw.headers.get("x-claudette-attempts"),
}

# Streaming with usage.
stream = client.chat.completions.create(
    model="oa-stream",
    messages=[{"role": "user", "content": "hello"}],
    stream=True,
    stream_options={"include_usage": True},
)
pieces, usage, finish = [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
assert usage is not None, "include_usage must yield a usage chunk"
out["stream"] = {"text": "".join(pieces), "finish": finish, "completion_tokens": usage.completion_tokens}

# Tool calls: arguments arrive as a JSON string.
tool = client.chat.completions.create(
    model="oa-tool",
    messages=[{"role": "user", "content": "add 1 and 2"}],
    tools=[{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}],
)
call = tool.choices[0].message.tool_calls[0]
out["tool"] = {"name": call.function.name, "arguments": json.loads(call.function.arguments)}

# Unknown model: the SDK's NotFoundError.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected NotFoundError")
except openai.NotFoundError as e:
    out["not_found"] = {"status": e.status_code, "code": e.code}

# A failure after commit: the SDK raises instead of returning a truncated answer as complete.
pieces = []
try:
    for chunk in client.chat.completions.create(
        model="oa-cut", messages=[{"role": "user", "content": "x"}], stream=True
    ):
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    raise AssertionError("expected an error mid-stream")
except openai.APIError as e:
    out["cut"] = {"text": "".join(pieces), "error": type(e).__name__}

# A wrong gateway key: AuthenticationError.
bad = openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong-key", max_retries=0)
try:
    bad.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected AuthenticationError")
except openai.AuthenticationError as e:
    out["auth"] = {"status": e.status_code}

# Claude thinking between its tool calls, through the SDK's own stream helper: the signed
# blocks and their order come once, in one chunk, so its accumulator keeps them (a list that
# came twice without `index`es made it raise); the message it assembles, sent back as it is,
# carries them upstream.
read = {
    "type": "function",
    "function": {
        "name": "read",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
            "additionalProperties": False,
        },
    },
}
question = {"role": "user", "content": "read /a and /b"}
with client.chat.completions.stream(
    model="cl-interleaved", messages=[question], tools=[read], reasoning_effort="medium", max_tokens=16000
) as s:
    for _ in s:
        pass
    final = s.get_final_completion()
message = final.choices[0].message
extra = message.model_extra or {}
assert final.choices[0].finish_reason == "tool_calls", final
results = [{"role": "tool", "tool_call_id": c.id, "content": "ok"} for c in message.tool_calls]
again = client.chat.completions.create(
    model="cl-interleaved", messages=[question, message, *results], tools=[read], max_tokens=16000
)
out["interleaved"] = {
    "block_order": extra.get("block_order"),
    "thinking_blocks": len(extra.get("thinking_blocks") or []),
    "calls": [c.function.name for c in message.tool_calls],
    "again": again.choices[0].message.content,
}

# Web search through `web_search_options`, served by Claude's search: the cited sources come
# back as `url_citation` annotations, from the SDK's stream accumulator as from its JSON call.
search_args = dict(
    model="cl-oa-search",
    messages=[{"role": "user", "content": "When was Claude Shannon born?"}],
    web_search_options={
        "search_context_size": "low",
        "user_location": {"type": "approximate", "approximate": {"country": "US", "city": "Petoskey"}},
    },
)
with client.chat.completions.stream(**search_args) as s:
    for _ in s:
        pass
    streamed = s.get_final_completion().choices[0].message
created = client.chat.completions.create(**search_args).choices[0].message


def cited(m):
    return [
        {"url": a.url_citation.url, "title": a.url_citation.title,
         "text": m.content[a.url_citation.start_index:a.url_citation.end_index]}
        for a in (m.annotations or [])
    ]


assert streamed.content == created.content, (streamed.content, created.content)
assert cited(streamed) == cited(created), (cited(streamed), cited(created))
out["search"] = {"content": created.content, "cited": cited(created)}

print(json.dumps(out))
