//! Model names as metric label values. The requested model is the one value a client chooses, so
//! it becomes a label only when the route's config names it; anything else is `other`. That keeps
//! the number of series a function of config, whatever clients send.

use std::sync::Arc;

use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::ModelLabels;

/// The label of every requested model the config does not name.
pub const OTHER: &str = "other";

/// The model names one plugin's config knows, compiled with their JSON spelling.
#[derive(Debug, Clone)]
pub struct KnownModels {
    /// Each name, and the name as a JSON string (what a client's `"model"` field holds).
    names: Vec<(Arc<str>, String)>,
    other: Arc<str>,
}

impl KnownModels {
    /// Built when the plugin compiles, from the model names its config pins.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut known: Vec<(Arc<str>, String)> = Vec::new();
        for name in names {
            if !known.iter().any(|(k, _)| &**k == name) {
                known.push((Arc::from(name), serde_json::Value::from(name).to_string()));
            }
        }
        Self { names: known, other: Arc::from(OTHER) }
    }

    /// The label of the client's requested model: the known name it equals, else `other`. Runs
    /// per request; compares the field's raw JSON with each name's, so it allocates nothing.
    pub fn requested(&self, body: &RawBody) -> Arc<str> {
        let raw = body.raw("model");
        let known = raw.and_then(|raw| self.names.iter().find(|(_, json)| json == raw));
        Arc::clone(known.map_or(&self.other, |(name, _)| name))
    }

    /// The labels of an attempt at an instance that pins `pinned` (or lets the client choose).
    pub fn labels(&self, body: &RawBody, pinned: Option<&Arc<str>>) -> ModelLabels {
        let requested = self.requested(body);
        let upstream = pinned.map_or_else(|| Arc::clone(&requested), Arc::clone);
        ModelLabels { requested: Some(requested), upstream: Some(upstream) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn body(json: &str) -> RawBody {
        RawBody::parse(Bytes::from(json.to_string())).unwrap()
    }

    #[test]
    fn only_configured_names_become_labels() {
        let known = KnownModels::new(["gpt-4o", "deepseek-chat", "gpt-4o"]);
        assert_eq!(&*known.requested(&body(r#"{"model":"gpt-4o"}"#)), "gpt-4o");
        assert_eq!(&*known.requested(&body(r#"{"model":"anything-a-client-likes"}"#)), OTHER);
        assert_eq!(&*known.requested(&body(r#"{"messages":[]}"#)), OTHER);
        assert_eq!(&*known.requested(&body(r#"{"model":42}"#)), OTHER);
        let pinned: Arc<str> = Arc::from("deepseek-chat");
        let labels = known.labels(&body(r#"{"model":"x"}"#), Some(&pinned));
        assert_eq!((labels.requested.as_deref(), labels.upstream.as_deref()), (Some(OTHER), Some("deepseek-chat")));
        let labels = known.labels(&body(r#"{"model":"gpt-4o"}"#), None);
        assert_eq!(labels.upstream.as_deref(), Some("gpt-4o"));
    }
}
