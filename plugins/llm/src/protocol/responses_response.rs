//! An OpenAI chat response as the Responses API answer its client expects: whole completions
//! become a `response` object with message, reasoning and function-call output items; chat
//! chunks become the Responses event sequence (`response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.output_text.delta`, ..., `response.completed`), each
//! with its `sequence_number`, usage included. Errors keep OpenAI's shape, which Responses
//! clients read as they are.

use serde_json::{json, Value};

use super::event::{Data, Event};

/// Chat usage as Responses usage.
fn usage(usage: Option<&Value>) -> Value {
    let Some(usage) = usage.filter(|u| u.is_object()) else { return Value::Null };
    let number = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (number("/prompt_tokens"), number("/completion_tokens"));
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": number("/prompt_tokens_details/cached_tokens")},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": number("/completion_tokens_details/reasoning_tokens")},
        "total_tokens": usage.get("total_tokens").and_then(Value::as_u64).unwrap_or(input.saturating_add(output)),
    })
}

/// The `response` object around `output`.
fn response(id: &str, created: u64, model: &Value, status: &str, output: Vec<Value>, usage: Value) -> Value {
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    json!({
        "id": id, "object": "response", "created_at": created, "status": status, "error": null,
        "incomplete_details": incomplete, "instructions": null, "max_output_tokens": null, "model": model,
        "output": output, "parallel_tool_calls": true, "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null}, "store": false, "temperature": null,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": null,
        "truncation": "disabled", "usage": usage, "user": null, "metadata": {},
    })
}

fn status_for(finish: Option<&str>) -> &'static str {
    if finish == Some("length") {
        "incomplete"
    } else {
        "completed"
    }
}

fn suffix_of(id: Option<&Value>) -> String {
    let id = id.and_then(Value::as_str).unwrap_or("switchyard");
    id.strip_prefix("chatcmpl-").unwrap_or(id).to_string()
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [], "content": [{"type": "reasoning_text", "text": text}]})
}

fn call_item(id: &str, call_id: &Value, name: &Value, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": status})
}

/// Translates a whole chat completion.
pub fn completion_to_response(completion: &Value, created: u64) -> Value {
    let suffix = suffix_of(completion.get("id"));
    let choice = completion.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut output = Vec::new();
    let reasoning = message.get("reasoning_content").or_else(|| message.get("reasoning")).and_then(Value::as_str);
    if let Some(reasoning) = reasoning.filter(|r| !r.is_empty()) {
        output.push(reasoning_item(&format!("rs_{suffix}"), reasoning));
    }
    let calls = message.get("tool_calls").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    match message.get("content").and_then(Value::as_str) {
        Some(text) if !text.is_empty() || calls.is_empty() => {
            output.push(message_item(&format!("msg_{suffix}"), text, "completed"));
        }
        _ => {}
    }
    for call in calls {
        let call_id = call.get("id").cloned().unwrap_or(Value::Null);
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        let name = call.pointer("/function/name").cloned().unwrap_or(Value::Null);
        let id = format!("fc_{}", call_id.as_str().unwrap_or(""));
        output.push(call_item(&id, &call_id, &name, arguments, "completed"));
    }
    let model = completion.get("model").cloned().unwrap_or(Value::Null);
    let status = status_for(choice.get("finish_reason").and_then(Value::as_str));
    response(&format!("resp_{suffix}"), created, &model, status, output, usage(completion.get("usage")))
}

/// An output item being streamed.
#[derive(Debug, Clone)]
enum Item {
    Message { id: String, text: String },
    Reasoning { id: String, text: String },
    Call { id: String, chat_index: u64, call_id: Value, name: Value, arguments: String },
}

/// The response side of a Responses client over a chat provider, one chunk at a time.
#[derive(Debug, Clone, Default)]
pub struct ChatToResponses {
    created: u64,
    id: String,
    suffix: String,
    model: Value,
    sequence: u64,
    started: bool,
    finished: bool,
    /// Closed items, in output order.
    done: Vec<Value>,
    open: Option<Item>,
    finish: Option<String>,
    usage: Option<Value>,
}

impl ChatToResponses {
    pub fn new(created: u64) -> Self {
        Self { created, ..Self::default() }
    }

    /// A whole response; error bodies (OpenAI's shape) stay as they are.
    pub fn whole(&mut self, status: u16, body: Value) -> Value {
        if (200..300).contains(&status) {
            completion_to_response(&body, self.created)
        } else {
            super::openai_error(status, body)
        }
    }

    /// One upstream chunk; the Responses events it becomes go to `out`.
    pub fn event(&mut self, event: Event, out: &mut Vec<Event>) {
        let chunk = match event.data {
            Data::Done => return self.end(out),
            Data::Other(_) => return out.push(event),
            Data::Json(chunk) => chunk,
        };
        if self.finished {
            return;
        }
        if let Some(error) = chunk.get("error") {
            let message = error.get("message").cloned().unwrap_or_else(|| json!("upstream error"));
            let code = error.get("code").cloned().unwrap_or(Value::Null);
            return self.emit(out, json!({"type": "error", "code": code, "message": message, "param": null}));
        }
        self.start(&chunk, out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else { return };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        let reasoning = delta.get("reasoning_content").or_else(|| delta.get("reasoning")).and_then(Value::as_str);
        if let Some(text) = reasoning.filter(|t| !t.is_empty()) {
            if !matches!(self.open, Some(Item::Reasoning { .. })) {
                let id = format!("rs_{}", self.suffix);
                self.open_item(Item::Reasoning { id, text: String::new() }, out);
            }
            self.append(text, out);
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            if !matches!(self.open, Some(Item::Message { .. })) {
                let id = format!("msg_{}", self.suffix);
                self.open_item(Item::Message { id, text: String::new() }, out);
            }
            self.append(text, out);
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let chat_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            if !matches!(&self.open, Some(Item::Call { chat_index: open, .. }) if *open == chat_index) {
                let call_id = call.get("id").cloned().unwrap_or(Value::Null);
                let id = format!("fc_{}", call_id.as_str().unwrap_or(""));
                let name = call.pointer("/function/name").cloned().unwrap_or(Value::Null);
                self.open_item(Item::Call { id, chat_index, call_id, name, arguments: String::new() }, out);
            }
            let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
            if !arguments.is_empty() {
                self.append(arguments, out);
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(finish.to_string());
            self.close_item(out);
        }
    }

    /// The upstream stream ended: closes the open item and completes the response, once.
    pub fn end(&mut self, out: &mut Vec<Event>) {
        if self.finished {
            return;
        }
        self.start(&Value::Null, out);
        self.close_item(out);
        self.finished = true;
        let status = status_for(self.finish.as_deref());
        let output = std::mem::take(&mut self.done);
        let body = response(&self.id, self.created, &self.model, status, output, usage(self.usage.as_ref()));
        let kind = if status == "incomplete" { "response.incomplete" } else { "response.completed" };
        self.emit(out, json!({"type": kind, "response": body}));
    }

    fn emit(&mut self, out: &mut Vec<Event>, mut data: Value) {
        data["sequence_number"] = self.sequence.into();
        self.sequence += 1;
        out.push(Event::typed(data));
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<Event>) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        self.suffix = suffix_of(chunk.get("id"));
        self.id = format!("resp_{}", self.suffix);
        self.model = chunk.get("model").cloned().unwrap_or(Value::Null);
        let body = response(&self.id, self.created, &self.model, "in_progress", Vec::new(), Value::Null);
        self.emit(out, json!({"type": "response.created", "response": body.clone()}));
        self.emit(out, json!({"type": "response.in_progress", "response": body}));
    }

    fn output_index(&self) -> usize {
        self.done.len()
    }

    fn open_item(&mut self, item: Item, out: &mut Vec<Event>) {
        self.close_item(out);
        let index = self.output_index();
        match &item {
            Item::Message { id, .. } => {
                let added =
                    json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
                self.emit(out, json!({"type": "response.output_item.added", "output_index": index, "item": added}));
                let part = json!({"type": "output_text", "text": "", "annotations": []});
                self.emit(out, json!({"type": "response.content_part.added", "item_id": id, "output_index": index, "content_index": 0, "part": part}));
            }
            Item::Reasoning { id, .. } => {
                let added = json!({"type": "reasoning", "id": id, "summary": [], "content": []});
                self.emit(out, json!({"type": "response.output_item.added", "output_index": index, "item": added}));
                let part = json!({"type": "reasoning_text", "text": ""});
                self.emit(out, json!({"type": "response.content_part.added", "item_id": id, "output_index": index, "content_index": 0, "part": part}));
            }
            Item::Call { id, call_id, name, .. } => {
                let added = call_item(id, call_id, name, "", "in_progress");
                self.emit(out, json!({"type": "response.output_item.added", "output_index": index, "item": added}));
            }
        }
        self.open = Some(item);
    }

    /// Streams `delta` into the open item.
    fn append(&mut self, delta: &str, out: &mut Vec<Event>) {
        let index = self.output_index();
        let Some(item) = self.open.as_mut() else { return };
        let event = match item {
            Item::Message { id, text } => {
                text.push_str(delta);
                json!({"type": "response.output_text.delta", "item_id": id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": []})
            }
            Item::Reasoning { id, text } => {
                text.push_str(delta);
                json!({"type": "response.reasoning_text.delta", "item_id": id, "output_index": index, "content_index": 0, "delta": delta})
            }
            Item::Call { id, arguments, .. } => {
                arguments.push_str(delta);
                json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": index, "delta": delta})
            }
        };
        self.emit(out, event);
    }

    fn close_item(&mut self, out: &mut Vec<Event>) {
        let Some(item) = self.open.take() else { return };
        let index = self.output_index();
        let done = match item {
            Item::Message { id, text } => {
                self.emit(out, json!({"type": "response.output_text.done", "item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}));
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                self.emit(out, json!({"type": "response.content_part.done", "item_id": id, "output_index": index, "content_index": 0, "part": part}));
                message_item(&id, &text, "completed")
            }
            Item::Reasoning { id, text } => {
                self.emit(out, json!({"type": "response.reasoning_text.done", "item_id": id, "output_index": index, "content_index": 0, "text": text}));
                let part = json!({"type": "reasoning_text", "text": text});
                self.emit(out, json!({"type": "response.content_part.done", "item_id": id, "output_index": index, "content_index": 0, "part": part}));
                reasoning_item(&id, &text)
            }
            Item::Call { id, call_id, name, arguments, .. } => {
                self.emit(out, json!({"type": "response.function_call_arguments.done", "item_id": id, "output_index": index, "name": name, "arguments": arguments}));
                call_item(&id, &call_id, &name, &arguments, "completed")
            }
        };
        self.emit(out, json!({"type": "response.output_item.done", "output_index": index, "item": done}));
        self.done.push(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_become_response_objects() {
        let completion = json!({"id": "chatcmpl-9", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hello."}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}}});
        let response = ChatToResponses::new(5).whole(200, completion);
        assert_eq!(response["id"], "resp_9");
        assert_eq!(response["object"], "response");
        assert_eq!(response["status"], "completed");
        assert_eq!(
            response["output"][0]["content"][0],
            json!({"type": "output_text", "text": "Hello.", "annotations": []})
        );
        assert_eq!(
            response["usage"],
            json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 2},
            "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 13})
        );
        let calls = json!({"id": "x", "choices": [{"finish_reason": "tool_calls", "message": {"content": null,
            "tool_calls": [{"id": "c1", "function": {"name": "w", "arguments": "{}"}}]}}]});
        let response = completion_to_response(&calls, 1);
        assert_eq!(response["output"].as_array().unwrap().len(), 1);
        assert_eq!(response["output"][0]["type"], "function_call");
        assert_eq!(response["output"][0]["call_id"], "c1");
    }

    #[test]
    fn chunks_become_numbered_response_events() {
        let mut stage = ChatToResponses::new(1);
        let mut out = Vec::new();
        let chunk = |delta: Value, finish: Value| {
            Event::unnamed(
                json!({"id": "chatcmpl-s", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
            )
        };
        stage.event(chunk(json!({"role": "assistant", "content": ""}), Value::Null), &mut out);
        stage.event(chunk(json!({"content": "Hi"}), Value::Null), &mut out);
        stage.event(chunk(json!({"content": "!"}), json!("stop")), &mut out);
        stage.event(
            Event::unnamed(json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}})),
            &mut out,
        );
        stage.event(Event::done(), &mut out);
        let names: Vec<&str> = out.iter().map(|e| e.name.as_deref().unwrap_or("-")).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        for (i, event) in out.iter().enumerate() {
            assert_eq!(event.json().unwrap()["sequence_number"], i as u64);
        }
        let completed = out.last().unwrap().json().unwrap();
        assert_eq!(completed["response"]["output"][0]["content"][0]["text"], "Hi!");
        assert_eq!(completed["response"]["usage"]["total_tokens"], 6);
        assert_eq!(completed["response"]["id"], "resp_s");
    }
}
