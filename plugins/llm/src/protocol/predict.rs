//! OpenAI embeddings over Vertex AI's `:predict` (its text embedding models), as APISIX converts
//! them: each `input` text becomes one `instances[].content`, each prediction's
//! `embeddings.values` one OpenAI embedding, and the predictions' summed
//! `embeddings.statistics.token_count` the usage. `dimensions` is passed as Vertex's
//! `parameters.outputDimensionality`.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use switchyard_sdk::{Ctx, Usage};

use super::{openai_error, ConvertError};

/// The predict request for an OpenAI embeddings request. The client's `model` is kept in it:
/// the `:predict` URL takes it out (`Endpoint::predict_call`).
pub fn request_to_predict(client: &Value) -> Result<Map<String, Value>, ConvertError> {
    let texts: Vec<String> = match client.get("input") {
        None | Some(Value::Null) => return Err(ConvertError("`input` is required for embeddings".into())),
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(text.clone()),
                // A list of pieces (or token ids) is one text, its pieces joined by spaces.
                Value::Array(pieces) => Ok(pieces.iter().map(piece_text).collect::<Vec<_>>().join(" ")),
                _ => Err(ConvertError(format!("unsupported input type at index {i}"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ConvertError("`input` must be a string or an array".into())),
    };
    let instances: Vec<Value> = texts.into_iter().map(|text| json!({"content": text})).collect();
    let mut predict = Map::new();
    predict.insert("instances".into(), Value::Array(instances));
    if let Some(dimensions) = client.get("dimensions").filter(|d| d.is_u64()) {
        predict.insert("parameters".into(), json!({"outputDimensionality": dimensions}));
    }
    if let Some(model) = client.get("model").filter(|m| m.is_string()) {
        predict.insert("model".into(), model.clone());
    }
    Ok(predict)
}

fn piece_text(piece: &Value) -> String {
    match piece {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The response side: a predict answer made an OpenAI embeddings list.
#[derive(Debug, Clone, Default)]
pub struct PredictToEmbeddings {
    /// The model the list names (the one asked for; `:predict` answers name none).
    pub model: Option<String>,
}

impl PredictToEmbeddings {
    /// Converts a whole answer; an error answer is given OpenAI's error shape.
    pub fn whole(&mut self, status: u16, body: Value) -> Value {
        if status >= 400 {
            return openai_error(status, body);
        }
        let Some(predictions) = body.get("predictions").and_then(Value::as_array) else {
            return error("the Vertex AI answer has no predictions");
        };
        let mut data = Vec::with_capacity(predictions.len());
        let mut tokens = 0u64;
        for (index, prediction) in predictions.iter().enumerate() {
            let Some(values) = prediction.pointer("/embeddings/values").filter(|v| v.is_array()) else {
                return error(&format!("the Vertex AI answer has no embedding at index {index}"));
            };
            tokens += prediction.pointer("/embeddings/statistics/token_count").and_then(token_count).unwrap_or(0);
            data.push(json!({"object": "embedding", "index": index, "embedding": values}));
        }
        json!({
            "object": "list",
            "data": data,
            "model": self.model.as_deref().unwrap_or("unknown"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })
    }
}

/// Vertex reports token counts as numbers, sometimes with a fraction (`5.0`).
fn token_count(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| value.as_f64().filter(|n| *n >= 0.0).map(|n| n as u64))
}

fn error(message: &str) -> Value {
    json!({"error": {"message": message, "type": "upstream_error", "code": "invalid_upstream_response"}})
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    predictions: Vec<Prediction>,
}

#[derive(Deserialize)]
struct Prediction {
    #[serde(default)]
    embeddings: Option<Embeddings>,
}

#[derive(Deserialize)]
struct Embeddings {
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Deserialize)]
struct Statistics {
    #[serde(default)]
    token_count: Option<f64>,
}

/// Usage of a predict answer, for the access log: the predictions' token counts summed. Only
/// the counts are built, not the vectors.
pub fn record_usage(ctx: &mut Ctx, json: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<Answer>(json) else { return };
    let tokens: f64 = answer
        .predictions
        .iter()
        .filter_map(|p| p.embeddings.as_ref()?.statistics.as_ref()?.token_count)
        .filter(|n| *n >= 0.0)
        .sum();
    let tokens = tokens as u64;
    ctx.log.usage = Some(Usage { prompt_tokens: tokens, total_tokens: tokens, ..Usage::default() });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_become_instances_and_dimensions_parameters() {
        let request = json!({"model": "text-embedding-005", "input": ["a", ["b", "c"], [1, 2]], "dimensions": 8});
        assert_eq!(
            Value::Object(request_to_predict(&request).unwrap()),
            json!({"instances": [{"content": "a"}, {"content": "b c"}, {"content": "1 2"}],
                "parameters": {"outputDimensionality": 8}, "model": "text-embedding-005"})
        );
        assert_eq!(
            Value::Object(request_to_predict(&json!({"input": "hi"})).unwrap()),
            json!({"instances": [{"content": "hi"}]})
        );
        assert!(request_to_predict(&json!({"input": [true]})).unwrap_err().0.contains("index 0"));
        assert!(request_to_predict(&json!({"model": "m"})).unwrap_err().0.contains("`input` is required"));
    }

    #[test]
    fn predictions_become_an_embeddings_list_with_usage() {
        let answer = json!({"predictions": [
            {"embeddings": {"values": [0.1, 0.2], "statistics": {"token_count": 3, "truncated": false}}},
            {"embeddings": {"values": [0.3], "statistics": {"token_count": 4.0}}}
        ], "metadata": {"billableCharacterCount": 9}});
        let mut stage = PredictToEmbeddings { model: Some("text-embedding-005".into()) };
        assert_eq!(
            stage.whole(200, answer.clone()),
            json!({"object": "list", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
                {"object": "embedding", "index": 1, "embedding": [0.3]}
            ], "model": "text-embedding-005", "usage": {"prompt_tokens": 7, "total_tokens": 7}})
        );
        let mut ctx = Ctx::new("r".into(), ([127, 0, 0, 1], 1).into(), http::HeaderValue::from_static("id"));
        record_usage(&mut ctx, answer.to_string().as_bytes());
        assert_eq!(ctx.log.usage.map(|u| (u.prompt_tokens, u.total_tokens)), Some((7, 7)));
        let google = json!({"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}});
        assert_eq!(stage.whole(403, google.clone()), google, "JSON errors pass as they are");
        assert!(stage.whole(200, json!({}))["error"]["message"].as_str().unwrap().contains("no predictions"));
    }
}
