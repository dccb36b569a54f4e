//! The wire protocols clients speak to the gateway, how a request's protocol is detected (the
//! APISIX 3.18 rules), and which conversion carries it to a provider that speaks another one.
//!
//! One file per conversion: [`messages_request`] and [`messages_response`] (an Anthropic
//! Messages client over an OpenAI chat provider), [`responses_request`] and
//! [`responses_response`] (an OpenAI Responses client over a chat provider), [`chat_over_messages`]
//! (an OpenAI chat client over an Anthropic Messages provider), [`converse_request`] and
//! [`converse_response`] (an OpenAI chat client over Bedrock Converse, whose streams
//! [`converse_stream`] decodes), [`predict`] (OpenAI embeddings over Vertex AI's `:predict`).
//! [`rewrite`] runs the response side of a conversion on the way back, and [`usage`] reads token
//! counts from each protocol.

pub mod attempt;
pub mod chat_over_messages;
pub mod converse_request;
pub mod converse_response;
pub mod converse_stream;
pub mod event;
pub mod messages_request;
pub mod messages_response;
pub mod predict;
pub mod responses_request;
pub mod responses_response;
pub mod rewrite;
pub mod usage;

use serde_json::Value;
use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::ErrorStyle;

/// A client or provider wire protocol, by its APISIX name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    OpenAiChat,
    OpenAiResponses,
    OpenAiEmbeddings,
    AnthropicMessages,
    BedrockConverse,
    /// Vertex AI's `:predict` of a text embedding model: a provider protocol only (clients send
    /// OpenAI embeddings, converted).
    VertexPredict,
    /// Any other JSON object: forwarded to the provider's host at the client's path.
    Passthrough,
}

impl Protocol {
    pub const ALL: [Protocol; 7] = [
        Protocol::OpenAiChat,
        Protocol::OpenAiResponses,
        Protocol::OpenAiEmbeddings,
        Protocol::AnthropicMessages,
        Protocol::BedrockConverse,
        Protocol::VertexPredict,
        Protocol::Passthrough,
    ];

    /// The APISIX name (`override.request_body` is keyed by it).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::OpenAiChat => "openai-chat",
            Protocol::OpenAiResponses => "openai-responses",
            Protocol::OpenAiEmbeddings => "openai-embeddings",
            Protocol::AnthropicMessages => "anthropic-messages",
            Protocol::BedrockConverse => "bedrock-converse",
            Protocol::VertexPredict => "vertex-predict",
            Protocol::Passthrough => "passthrough",
        }
    }

    /// A protocol by its APISIX name; `openai` is accepted for `openai-chat`.
    pub fn from_name(name: &str) -> Option<Protocol> {
        if name == "openai" {
            return Some(Protocol::OpenAiChat);
        }
        Protocol::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Detects a request's protocol from its path and top-level fields, first match wins
    /// (APISIX 3.18): `bedrock-converse` (path ends `/converse` and `messages` is an array),
    /// `anthropic-messages` (path ends `/v1/messages`), `openai-responses` (path ends
    /// `/v1/responses` and `input` is present), `openai-chat` (`messages` is an object or
    /// array), `openai-embeddings` (`input` is present), `passthrough` (any other non-empty
    /// object). `None` for `{}`. Reads only the field index `RawBody` already built.
    pub fn detect(path: &str, body: &RawBody) -> Option<Protocol> {
        let messages = body.raw("messages").map(|raw| raw.trim_start().as_bytes().first().copied());
        let messages_is = |open: u8| messages == Some(Some(open));
        // APISIX knows `/converse`; an AWS SDK's `ConverseStream` calls `/converse-stream`.
        if (path.ends_with("/converse") || path.ends_with("/converse-stream")) && messages_is(b'[') {
            return Some(Protocol::BedrockConverse);
        }
        if path.ends_with("/v1/messages") {
            return Some(Protocol::AnthropicMessages);
        }
        let input = body.raw("input").is_some();
        if path.ends_with("/v1/responses") && input {
            return Some(Protocol::OpenAiResponses);
        }
        if messages_is(b'[') || messages_is(b'{') {
            return Some(Protocol::OpenAiChat);
        }
        if input {
            return Some(Protocol::OpenAiEmbeddings);
        }
        (!body.is_empty()).then_some(Protocol::Passthrough)
    }

    /// How errors are rendered to a client of this protocol.
    pub fn error_style(self) -> ErrorStyle {
        match self {
            Protocol::AnthropicMessages => ErrorStyle::Anthropic,
            _ => ErrorStyle::OpenAi,
        }
    }

    /// The request field the access log shows with `logging.payloads`.
    pub fn payload_field(self) -> &'static str {
        match self {
            Protocol::OpenAiResponses | Protocol::OpenAiEmbeddings => "input",
            _ => "messages",
        }
    }
}

/// The conversion between a client's protocol and the one its provider is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conversion {
    /// The provider speaks the client's protocol: the body goes as it is (options applied).
    Native,
    /// An Anthropic Messages client, an OpenAI chat provider.
    MessagesOverChat,
    /// An OpenAI chat client, a provider that speaks only Anthropic Messages.
    ChatOverMessages,
    /// An OpenAI Responses client, an OpenAI chat provider.
    ResponsesOverChat,
    /// An OpenAI Responses client, an Anthropic Messages provider (through OpenAI chat).
    ResponsesOverMessages,
    /// An OpenAI chat client, a Bedrock Converse provider.
    ChatOverConverse,
    /// An Anthropic Messages client, a Bedrock Converse provider (through OpenAI chat).
    MessagesOverConverse,
    /// An OpenAI Responses client, a Bedrock Converse provider (through OpenAI chat).
    ResponsesOverConverse,
    /// An OpenAI embeddings client, Vertex AI's `:predict`.
    EmbeddingsOverPredict,
}

impl Conversion {
    /// Whether an OpenAI chat client's answer is made by the gateway from another protocol's
    /// (so it gets a usage chunk only when it asked with `stream_options.include_usage`).
    pub fn makes_chat_answer(self) -> bool {
        matches!(self, Conversion::ChatOverMessages | Conversion::ChatOverConverse)
    }
}

/// What one provider call of a request sends: the protocol the provider gets, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub client: Protocol,
    pub target: Protocol,
    pub conversion: Conversion,
}

impl Plan {
    /// How a `client` request reaches a provider that speaks `speaks`; `None` when no
    /// conversion exists. Runs per attempt: a table lookup.
    pub fn new(client: Protocol, speaks: &[Protocol]) -> Option<Plan> {
        let native = |target| Some(Plan { client, target, conversion: Conversion::Native });
        if client == Protocol::Passthrough || speaks.contains(&client) {
            return native(client);
        }
        let has = |p: Protocol| speaks.contains(&p);
        let (target, conversion) = match client {
            Protocol::AnthropicMessages if has(Protocol::OpenAiChat) => {
                (Protocol::OpenAiChat, Conversion::MessagesOverChat)
            }
            Protocol::OpenAiChat if has(Protocol::AnthropicMessages) => {
                (Protocol::AnthropicMessages, Conversion::ChatOverMessages)
            }
            Protocol::OpenAiResponses if has(Protocol::OpenAiChat) => {
                (Protocol::OpenAiChat, Conversion::ResponsesOverChat)
            }
            Protocol::OpenAiResponses if has(Protocol::AnthropicMessages) => {
                (Protocol::AnthropicMessages, Conversion::ResponsesOverMessages)
            }
            Protocol::OpenAiChat if has(Protocol::BedrockConverse) => {
                (Protocol::BedrockConverse, Conversion::ChatOverConverse)
            }
            Protocol::AnthropicMessages if has(Protocol::BedrockConverse) => {
                (Protocol::BedrockConverse, Conversion::MessagesOverConverse)
            }
            Protocol::OpenAiResponses if has(Protocol::BedrockConverse) => {
                (Protocol::BedrockConverse, Conversion::ResponsesOverConverse)
            }
            Protocol::OpenAiEmbeddings if has(Protocol::VertexPredict) => {
                (Protocol::VertexPredict, Conversion::EmbeddingsOverPredict)
            }
            _ => return None,
        };
        Some(Plan { client, target, conversion })
    }

    /// The message of the 400 for a protocol no conversion carries to `provider`.
    pub fn unsupported(provider: &str, client: Protocol) -> String {
        format!("provider {provider} does not support {} protocol", client.name())
    }
}

/// A request that cannot be converted (answered 400 in the client's protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError(pub String);

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The client's body in the protocol the provider is sent. `Native` keeps the body as it is;
/// the others parse the client's JSON once and build the converted request. Runs once per
/// request and conversion, not per attempt.
pub fn convert_request(conversion: Conversion, body: &RawBody) -> Result<RawBody, ConvertError> {
    let client = || {
        serde_json::from_slice::<Value>(body.original())
            .map_err(|err| ConvertError(format!("request body is not valid JSON: {err}")))
    };
    let converted = match conversion {
        Conversion::Native => return Ok(body.clone()),
        Conversion::MessagesOverChat => messages_request::to_chat(&client()?)?,
        Conversion::ChatOverMessages => chat_over_messages::request_to_messages(&client()?),
        Conversion::ResponsesOverChat => responses_request::to_chat(&client()?)?,
        Conversion::ResponsesOverMessages => {
            chat_over_messages::request_to_messages(&Value::Object(responses_request::to_chat(&client()?)?))
        }
        Conversion::ChatOverConverse => converse_request::from_chat(&client()?)?,
        Conversion::MessagesOverConverse => {
            converse_request::from_chat(&Value::Object(messages_request::to_chat(&client()?)?))?
        }
        Conversion::ResponsesOverConverse => {
            converse_request::from_chat(&Value::Object(responses_request::to_chat(&client()?)?))?
        }
        Conversion::EmbeddingsOverPredict => predict::request_to_predict(&client()?)?,
    };
    Ok(RawBody::from_object(converted))
}

/// An upstream error body for an OpenAI-shaped client: JSON stays as it is, the text of an
/// error page becomes `{"error":{"message","type","code"}}`.
pub(crate) fn openai_error(status: u16, body: Value) -> Value {
    match body {
        Value::String(text) => {
            let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
            switchyard_sdk::respond::error_body(status, ErrorStyle::OpenAi, &text, "upstream_error")
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn detect(path: &str, body: &str) -> Option<Protocol> {
        Protocol::detect(path, &RawBody::parse(Bytes::from(body.to_string())).unwrap())
    }

    #[test]
    fn detection_follows_apisix_first_match_order() {
        assert_eq!(detect("/model/x/converse", r#"{"messages":[]}"#), Some(Protocol::BedrockConverse));
        assert_eq!(detect("/model/x/converse-stream", r#"{"messages":[]}"#), Some(Protocol::BedrockConverse));
        assert_eq!(detect("/converse", r#"{"messages":{}}"#), Some(Protocol::OpenAiChat));
        assert_eq!(detect("/a/v1/messages", r#"{"messages":[]}"#), Some(Protocol::AnthropicMessages));
        assert_eq!(detect("/a/v1/messages", r#"{"x":1}"#), Some(Protocol::AnthropicMessages));
        assert_eq!(detect("/v1/responses", r#"{"input":"hi"}"#), Some(Protocol::OpenAiResponses));
        assert_eq!(detect("/v1/responses", r#"{"messages":[]}"#), Some(Protocol::OpenAiChat));
        assert_eq!(detect("/chat", r#"{"messages": [], "input": 1}"#), Some(Protocol::OpenAiChat));
        assert_eq!(detect("/chat", r#"{"input":["a"]}"#), Some(Protocol::OpenAiEmbeddings));
        assert_eq!(detect("/v1/images/generations", r#"{"prompt":"otter"}"#), Some(Protocol::Passthrough));
        assert_eq!(detect("/chat", r#"{"messages":"text"}"#), Some(Protocol::Passthrough));
        assert_eq!(detect("/chat", "{}"), None);
    }

    #[test]
    fn plans_prefer_native_then_convert_then_refuse() {
        use Protocol::*;
        let openai = [OpenAiChat, OpenAiResponses, OpenAiEmbeddings];
        let compatible = [OpenAiChat, OpenAiEmbeddings];
        let messages_only = [AnthropicMessages];
        let plan = |client, speaks: &[Protocol]| Plan::new(client, speaks).map(|p| (p.target, p.conversion));
        assert_eq!(plan(OpenAiResponses, &openai), Some((OpenAiResponses, Conversion::Native)));
        assert_eq!(plan(OpenAiResponses, &compatible), Some((OpenAiChat, Conversion::ResponsesOverChat)));
        assert_eq!(plan(AnthropicMessages, &compatible), Some((OpenAiChat, Conversion::MessagesOverChat)));
        assert_eq!(plan(OpenAiChat, &messages_only), Some((AnthropicMessages, Conversion::ChatOverMessages)));
        assert_eq!(plan(OpenAiResponses, &messages_only), Some((AnthropicMessages, Conversion::ResponsesOverMessages)));
        assert_eq!(plan(Passthrough, &messages_only), Some((Passthrough, Conversion::Native)));
        assert_eq!(plan(OpenAiEmbeddings, &messages_only), None);
        assert_eq!(plan(BedrockConverse, &openai), None);
        let converse = [BedrockConverse];
        assert_eq!(plan(BedrockConverse, &converse), Some((BedrockConverse, Conversion::Native)));
        assert_eq!(plan(OpenAiChat, &converse), Some((BedrockConverse, Conversion::ChatOverConverse)));
        assert_eq!(plan(AnthropicMessages, &converse), Some((BedrockConverse, Conversion::MessagesOverConverse)));
        assert_eq!(plan(OpenAiResponses, &converse), Some((BedrockConverse, Conversion::ResponsesOverConverse)));
        assert_eq!(plan(OpenAiEmbeddings, &converse), None);
        let vertex = [OpenAiChat, VertexPredict];
        assert_eq!(plan(OpenAiEmbeddings, &vertex), Some((VertexPredict, Conversion::EmbeddingsOverPredict)));
        assert_eq!(plan(AnthropicMessages, &vertex), Some((OpenAiChat, Conversion::MessagesOverChat)));
        assert_eq!(
            Plan::unsupported("anthropic", OpenAiEmbeddings),
            "provider anthropic does not support openai-embeddings protocol"
        );
    }

    #[test]
    fn protocol_names_round_trip() {
        for protocol in Protocol::ALL {
            assert_eq!(Protocol::from_name(protocol.name()), Some(protocol));
        }
        assert_eq!(Protocol::from_name("openai"), Some(Protocol::OpenAiChat));
        assert_eq!(Protocol::from_name("soap"), None);
    }
}
