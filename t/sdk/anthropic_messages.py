"""Drives the official `anthropic` SDK against the gateway: `messages.create`, `messages.stream`
and one tool-use round trip. Env: BASE_URL, API_KEY, MODEL. Prints one JSON object."""

import json
import os

import anthropic

client = anthropic.Anthropic(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"], max_retries=0)
model = os.environ["MODEL"]
out = {}

message = client.messages.create(
    model=model,
    max_tokens=200,
    system="Be brief.",
    stop_sequences=["END"],
    metadata={"user_id": "user-42"},
    messages=[{"role": "user", "content": "Say hello."}],
)
out["create"] = {
    "type": message.type,
    "role": message.role,
    "model": message.model,
    "text": "".join(block.text for block in message.content if block.type == "text"),
    "stop_reason": message.stop_reason,
    "input_tokens": message.usage.input_tokens,
    "output_tokens": message.usage.output_tokens,
    "cache_read_input_tokens": message.usage.cache_read_input_tokens,
}

with client.messages.stream(
    model=model, max_tokens=200, messages=[{"role": "user", "content": "Say hello, slowly."}]
) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
out["stream"] = {
    "text": text,
    "model": final.model,
    "stop_reason": final.stop_reason,
    "input_tokens": final.usage.input_tokens,
    "output_tokens": final.usage.output_tokens,
}

tools = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
question = {"role": "user", "content": "What is the weather in Paris?"}
first = client.messages.create(model=model, max_tokens=200, tools=tools, messages=[question])
tool_use = next(block for block in first.content if block.type == "tool_use")
second = client.messages.create(
    model=model,
    max_tokens=200,
    tools=tools,
    messages=[
        question,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny, 24C"}]},
    ],
)
out["tools"] = {
    "first_stop_reason": first.stop_reason,
    "tool_name": tool_use.name,
    "tool_input": tool_use.input,
    "tool_use_id": tool_use.id,
    "second_stop_reason": second.stop_reason,
    "second_text": "".join(block.text for block in second.content if block.type == "text"),
}

print(json.dumps(out))
