"""The official OpenAI Python SDK's Responses API against a Claudette gateway.

Usage: responses_client.py BASE_URL API_KEY
Runs each scenario, checks what the SDK returned (its typed models, not raw JSON), and prints
one JSON object with the observations for the Rust side to check again. Exits non-zero on the
first failed check.
"""

import json
import sys

import openai
import pydantic
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
)

base_url, api_key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=30)
out = {}

# The SDK builds its models without validating them; validate what came over the wire against
# them, so a missing required field or a value outside a Literal fails here.
EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


def strict_response(response):
    return Response.model_validate(response.to_dict())


def strict_event(event):
    return EVENT.validate_python(event.to_dict())


def events(**kwargs):
    for event in client.responses.create(stream=True, **kwargs):
        strict_event(event)
        yield event


ADD = {
    "type": "function",
    "name": "add",
    "description": "Adds two numbers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
    "strict": True,
}

# JSON, with the raw response to read Claudette's headers.
raw = client.responses.with_raw_response.create(
    model="oa-json", input="hello", instructions="be brief", max_output_tokens=20, store=True
)
response = raw.parse()
assert isinstance(response, Response), type(response)
strict_response(response)
assert response.object == "response" and response.status == "completed", response
assert isinstance(response.output[0], ResponseOutputMessage), response.output
assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
assert response.store is False, "nothing is stored, and the answer says so"
out["json"] = {
    "text": response.output_text,
    "id_prefix": response.id[:5],
    "instructions": response.instructions,
    "input_tokens": response.usage.input_tokens,
    "cached_tokens": response.usage.input_tokens_details.cached_tokens,
    "backend": raw.headers.get("x-claudette-backend"),
}

# Streaming, as raw events: every one typed, numbered in order, ending in response.completed.
kinds, pieces, final, numbers = [], [], None, []
for event in events(model="oa-stream", input="hello"):
    if not kinds:
        assert isinstance(event, ResponseCreatedEvent), event
    kinds.append(event.type)
    numbers.append(event.sequence_number)
    if isinstance(event, ResponseTextDeltaEvent):
        pieces.append(event.delta)
    if isinstance(event, ResponseCompletedEvent):
        final = event.response
assert isinstance(final, Response), kinds
assert numbers == list(range(len(numbers))), numbers
out["stream"] = {
    "text": "".join(pieces),
    "output_text": final.output_text,
    "first": kinds[0],
    "last": kinds[-1],
    "output_tokens": final.usage.output_tokens,
}

# The SDK's stream helper rebuilds the response from the events and checks they agree.
with client.responses.stream(model="oa-stream", input="hello") as stream:
    for _ in stream:
        pass
    helper = stream.get_final_response()
out["stream_helper"] = helper.output_text

# A function tool: the call, then the next turn with its output, sent whole (stateless).
first = client.responses.create(model="oa-tool", input="add 1 and 2", tools=[ADD])
strict_response(first)
calls = [item for item in first.output if isinstance(item, ResponseFunctionToolCall)]
assert len(calls) == 1, first.output
call = calls[0]
history = [{"role": "user", "content": "add 1 and 2"}] + first.output
history.append({"type": "function_call_output", "call_id": call.call_id, "output": "3"})
second = client.responses.create(model="oa-json", input=history, tools=[ADD])
out["tool"] = {
    "name": call.name,
    "call_id": call.call_id,
    "arguments": json.loads(call.arguments),
    "next": second.output_text,
}

# A streamed function call: the arguments arrive in deltas and whole in the done event.
arguments = None
for event in events(model="oa-tool-stream", input="add", tools=[ADD]):
    if event.type == "response.function_call_arguments.done":
        arguments = event.arguments
out["tool_stream"] = json.loads(arguments)

# A failure after the stream committed: an error event, then response.failed, never completed.
kinds, pieces, error, last = [], [], None, None
for event in events(model="oa-cut", input="x"):
    kinds.append(event.type)
    last = event
    if isinstance(event, ResponseTextDeltaEvent):
        pieces.append(event.delta)
    if isinstance(event, ResponseErrorEvent):
        error = event
assert isinstance(error, ResponseErrorEvent), kinds
out["cut"] = {
    "text": "".join(pieces),
    "tail": kinds[-2:],
    "completed": "response.completed" in kinds,
    "code": error.code,
    "failed_status": last.response.status if isinstance(last, ResponseFailedEvent) else None,
}

# What a stateless router cannot do: the SDK's BadRequestError, naming the field.
try:
    client.responses.create(model="auto", input="x", previous_response_id="resp_123")
    raise AssertionError("expected BadRequestError")
except openai.BadRequestError as e:
    out["stateful"] = {"status": e.status_code, "param": e.param}

# Web search, served by Claude's: the search call and the annotated text as the SDK's typed
# models hold them, from the JSON answer and from the stream (every event validated), with the
# sources `include` asks for.
search_args = dict(
    model="cl-search",
    input="When was Claude Shannon born?",
    tools=[{"type": "web_search", "user_location": {"type": "approximate", "city": "Paris"}}],
    include=["web_search_call.action.sources"],
)


def searched(response):
    calls = [i for i in response.output if i.type == "web_search_call"]
    parts = [p for i in response.output if i.type == "message" for p in i.content]
    return {
        "calls": [{"status": c.status, "query": c.action.query, "sources": [s.url for s in c.action.sources]}
                  for c in calls],
        "text": response.output_text,
        "cited": [{"url": a.url, "text": p.text[a.start_index:a.end_index]} for p in parts for a in p.annotations],
    }


created = strict_response(client.responses.create(**search_args))
kinds = []
for event in events(**search_args):
    kinds.append(event.type)
    if event.type == "response.completed":
        streamed = strict_response(event.response)
assert searched(created) == searched(streamed), (searched(created), searched(streamed))
out["search"] = dict(searched(created), events=[k for k in kinds if "web_search" in k or "annotation" in k])

print(json.dumps(out))
