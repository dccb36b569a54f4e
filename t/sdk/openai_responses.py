"""Drives the official `openai` SDK's Responses API against the gateway: `responses.create`,
whole and streamed. Env: BASE_URL, API_KEY, MODEL. Prints one JSON object."""

import json
import os

import openai

client = openai.OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"], max_retries=0)
model = os.environ["MODEL"]
out = {}

response = client.responses.create(model=model, instructions="Be brief.", input="Say hello.", max_output_tokens=100)
out["create"] = {
    "object": response.object,
    "model": response.model,
    "status": response.status,
    "text": response.output_text,
    "input_tokens": response.usage.input_tokens,
    "output_tokens": response.usage.output_tokens,
    "total_tokens": response.usage.total_tokens,
}

events = []
text = ""
completed = None
stream = client.responses.create(
    model=model,
    input=[{"role": "user", "content": [{"type": "input_text", "text": "Say hello, slowly."}]}],
    stream=True,
)
for event in stream:
    events.append(event.type)
    if event.type == "response.output_text.delta":
        text += event.delta
    if event.type == "response.completed":
        completed = event.response
out["stream"] = {
    "events": events,
    "text": text,
    "model": completed.model,
    "completed_text": completed.output_text,
    "total_tokens": completed.usage.total_tokens,
}

print(json.dumps(out))
