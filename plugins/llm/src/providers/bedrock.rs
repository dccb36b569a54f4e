//! AWS Bedrock's runtime API: where a Converse call goes (`/model/{model}/converse`, or
//! `/converse-stream` for a streamed answer, on `bedrock-runtime.<region>.amazonaws.com`), and
//! how it is authenticated (AWS Signature Version 4, computed by the AWS-maintained `aws-sigv4`
//! crate over the final body when the core sends the request). The Converse conversions live in
//! `crate::protocol` (`converse_request`, `converse_response`, `converse_stream`).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Uri};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::Value;
use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::{ConfigError, CredentialError, UpstreamIo, UpstreamRequest};

use super::{AuthConfig, BaseUrls, Endpoint, Provider};

/// The SigV4 service name of Bedrock's runtime API.
const SERVICE: &str = "bedrock";

/// Everything but RFC 3986's unreserved characters is escaped in the model's path segment, so a
/// model id (`anthropic.claude-3-haiku-20240307-v1:0`), an inference profile id or an ARN
/// (`arn:aws:bedrock:...:inference-profile/...`, its `/` included) stays one segment.
const MODEL_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The message of the 400 for a Converse call whose model is named nowhere (APISIX's words).
pub const NO_MODEL: &str = "could not resolve upstream path: ensure the route or request body specifies a model, \
     or that override.endpoint includes a path";

/// `auth.aws`: static AWS credentials (an assumed role's carry a `session_token`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsAuth {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
}

/// Never prints the secret key or the session token.
impl fmt::Debug for AwsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsAuth").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl AwsAuth {
    /// Where its secrets sit, relative to the `auth.aws` object.
    pub const SECRET_FIELDS: &[&str] = &["secret_access_key", "session_token"];

    /// Checks the fields (errors name them relative to `at`, never repeat a value).
    fn check(&self, at: &str) -> Result<(), ConfigError> {
        for (field, value) in
            [("access_key_id", Some(&self.access_key_id)), ("secret_access_key", Some(&self.secret_access_key))]
                .into_iter()
                .chain([("session_token", self.session_token.as_ref())])
        {
            let Some(value) = value else { continue };
            if value.trim().is_empty() {
                return Err(ConfigError::new(format!("{at}.{field}"), "must not be empty"));
            }
            if HeaderValue::from_str(value).is_err() {
                return Err(ConfigError::new(
                    format!("{at}.{field}"),
                    "must be usable in an HTTP header: no line breaks or other control characters",
                ));
            }
        }
        Ok(())
    }
}

/// The JSON credentials a model API provider key of the `bedrock` adapter holds in `secret`
/// (AISIX's shape): `region` may instead come from the key's `api_base`.
#[derive(Deserialize)]
struct KeySecret {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

/// Signs Bedrock calls with one set of credentials for one region.
pub struct SigV4Signer {
    credentials: Credentials,
    region: String,
}

impl SigV4Signer {
    fn new(auth: &AwsAuth, region: &str) -> SigV4Signer {
        let credentials = Credentials::new(
            auth.access_key_id.clone(),
            auth.secret_access_key.clone(),
            auth.session_token.clone(),
            None,
            "switchyard",
        );
        SigV4Signer { credentials, region: region.to_string() }
    }
}

/// The core applies it to every request to a Bedrock endpoint just before sending (after every
/// plugin's `before_proxy`, on every attempt), so the signature covers the request as sent.
#[async_trait::async_trait]
impl switchyard_sdk::Credentials for SigV4Signer {
    async fn apply(&self, request: &mut UpstreamRequest, _io: &dyn UpstreamIo) -> Result<(), CredentialError> {
        self.sign(&request.method, &request.url, &mut request.headers, &request.body)
            .map_err(|err| CredentialError(format!("the request could not be signed: {err}")))
    }
}

impl SigV4Signer {
    /// Signs `content-type`, `host`, `x-amz-date` and (with a session token)
    /// `x-amz-security-token` over the body's SHA-256. Pure computation; `Err` never holds a
    /// credential.
    pub fn sign(&self, method: &Method, url: &Uri, headers: &mut HeaderMap, body: &[u8]) -> Result<(), String> {
        // AWS headers a client sent are not its to set: the signature owns them.
        let clients: Vec<HeaderName> = headers.keys().filter(|n| n.as_str().starts_with("x-amz-")).cloned().collect();
        for name in clients {
            headers.remove(name);
        }
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|err| err.to_string())?
            .into();
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| ("content-type", v));
        let url = url.to_string();
        let request = SignableRequest::new(method.as_str(), url, content_type.into_iter(), SignableBody::Bytes(body))
            .map_err(|err| err.to_string())?;
        let (instructions, _signature) = sign(request, &params).map_err(|err| err.to_string())?.into_parts();
        let (signed, _query) = instructions.into_parts();
        for header in signed {
            let mut value =
                HeaderValue::from_str(header.value()).map_err(|_| format!("{} is no header value", header.name()))?;
            // The signature is as good as a credential until it expires.
            value.set_sensitive(header.sensitive() || header.name() == "authorization");
            headers.insert(HeaderName::from_static(header.name()), value);
        }
        Ok(())
    }
}

/// Where one Bedrock endpoint's Converse calls go (its signer is the endpoint's `credentials`).
pub struct Bedrock {
    /// `scheme://host[:port]`, and the base URL's own path (a mirror under a prefix).
    base: String,
    /// `override.endpoint`'s path, used for every call as it is (APISIX); `None`: the model's
    /// Converse path.
    fixed_path: Option<String>,
}

impl fmt::Debug for Bedrock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bedrock")
            .field("base", &self.base)
            .field("fixed_path", &self.fixed_path)
            .finish_non_exhaustive()
    }
}

impl Bedrock {
    /// Whether a call needs a model to find its path (no `override.endpoint` path fixes it).
    pub fn needs_model(&self) -> bool {
        self.fixed_path.is_none()
    }

    /// One Converse call: its URL, and `body` without the fields that steer the gateway rather
    /// than the model (`model` names the path, `stream` picks `/converse-stream`; Bedrock
    /// refuses both in a body). The model is the body's (where `options.model` was put), else
    /// the one in the client's path (`/model/{id}/converse`, as AWS SDKs call). `None` when no
    /// model is named and no fixed path is set, or the body is not a JSON object. Runs per
    /// attempt.
    pub fn call(&self, body: &Bytes, client_path: &str) -> Option<(Uri, Bytes)> {
        let parsed = RawBody::parse(body.clone()).ok()?;
        // An AWS SDK streams by its path; other clients say `"stream": true`.
        let stream =
            parsed.get::<Value>("stream") == Some(Value::Bool(true)) || client_path.ends_with("/converse-stream");
        let model = parsed.str_field("model").or_else(|| model_in_path(client_path));
        let path = match (&self.fixed_path, model) {
            (Some(path), _) => path.clone(),
            (None, Some(model)) => converse_path(&model, stream),
            (None, None) => return None,
        };
        let mut edit = parsed.edit();
        for field in ["model", "stream"] {
            if parsed.raw(field).is_some() {
                edit.remove(field);
            }
        }
        let url = format!("{}{path}", self.base).parse().ok()?;
        Some((url, edit.into_bytes()))
    }
}

/// `/model/{escaped model}/converse`, or `/converse-stream`.
pub fn converse_path(model: &str, stream: bool) -> String {
    let suffix = if stream { "converse-stream" } else { "converse" };
    format!("/model/{}/{suffix}", utf8_percent_encode(model, MODEL_SEGMENT))
}

/// The model an AWS SDK names in its path (`.../model/{id}/converse`), unescaped.
pub fn model_in_path(path: &str) -> Option<String> {
    let rest = path.strip_suffix("/converse").or_else(|| path.strip_suffix("/converse-stream"))?;
    let (before, escaped) = rest.rsplit_once('/')?;
    if !before.ends_with("/model") || escaped.is_empty() {
        return None;
    }
    Some(percent_encoding::percent_decode_str(escaped).decode_utf8_lossy().into_owned())
}

/// The region of `provider_conf`, checked: it is a host name label.
fn region_of(provider_conf: Option<&Value>) -> Result<String, ConfigError> {
    let region = provider_conf
        .and_then(|conf| conf.get("region"))
        .ok_or_else(|| ConfigError::new("provider_conf.region", "is required for provider bedrock"))?;
    let region = region.as_str().ok_or_else(|| ConfigError::new("provider_conf.region", "must be a string"))?;
    check_region(region).map_err(|message| ConfigError::new("provider_conf.region", message))?;
    Ok(region.to_string())
}

fn check_region(region: &str) -> Result<(), &'static str> {
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("must be an AWS region such as us-east-1");
    }
    Ok(())
}

/// Bedrock's runtime host for `region`.
pub fn default_base(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// The region named by a Bedrock runtime host (`bedrock-runtime[-fips].<region>.amazonaws.com`).
pub fn region_in_url(url: &str) -> Option<String> {
    let host = url::Url::parse(url).ok()?.host_str()?.to_string();
    let mut labels = host.split('.');
    let service = labels.next()?;
    let region = labels.next()?;
    (service.starts_with("bedrock-runtime") && labels.next() == Some("amazonaws") && check_region(region).is_ok())
        .then(|| region.to_string())
}

/// Compiles a route instance's Bedrock endpoint: `auth.aws` and `provider_conf.region` are
/// required (a 400 naming the field otherwise); `override.endpoint` (or the node's
/// `providers.bedrock.base_url`) replaces the regional host. Runs at config build.
pub fn endpoint(
    provider: &'static Provider,
    auth: &AuthConfig,
    provider_conf: Option<&Value>,
    override_endpoint: Option<&str>,
    base_urls: &BaseUrls,
) -> Result<Endpoint, ConfigError> {
    let aws = auth.aws.as_ref().ok_or_else(|| ConfigError::new("auth.aws", "is required for provider bedrock"))?;
    aws.check("auth.aws")?;
    let region = region_of(provider_conf)?;
    let (url, from_endpoint) = match override_endpoint {
        Some(endpoint) => (endpoint.to_string(), true),
        None => (base_urls.get(provider.name).cloned().unwrap_or_else(|| default_base(&region)), false),
    };
    build(provider, auth, &url, from_endpoint, SigV4Signer::new(aws, &region))
}

/// Compiles the endpoint of a model API provider key of the `bedrock` adapter: its `secret` is
/// the JSON credentials (`{access_key_id, secret_access_key, session_token?, region?}`), the
/// region in it or named by `api_base` (a `bedrock-runtime.<region>.amazonaws.com` URL);
/// `api_base` (if any) replaces the regional host. Errors name `secret` or `api_base` and never
/// repeat the secret.
pub fn key_endpoint(
    provider: &'static Provider,
    secret: &str,
    api_base: Option<&str>,
) -> Result<Endpoint, ConfigError> {
    let shape =
        "must be the JSON credentials {\"access_key_id\", \"secret_access_key\", \"session_token\" (optional), \
                 \"region\"} of the bedrock adapter";
    let key: KeySecret = serde_json::from_str(secret).map_err(|_| ConfigError::new("secret", shape))?;
    let aws = AwsAuth {
        access_key_id: key.access_key_id,
        secret_access_key: key.secret_access_key,
        session_token: key.session_token,
    };
    aws.check("secret")?;
    let region = match key.region.filter(|r| !r.is_empty()) {
        Some(region) => {
            check_region(&region).map_err(|message| ConfigError::new("secret.region", message))?;
            region
        }
        None => api_base.and_then(region_in_url).ok_or_else(|| {
            ConfigError::new(
                "secret.region",
                "is required unless api_base is a regional Bedrock URL (https://bedrock-runtime.<region>.amazonaws.com)",
            )
        })?,
    };
    let url = api_base.map_or_else(|| default_base(&region), str::to_string);
    build(provider, &AuthConfig::default(), &url, false, SigV4Signer::new(&aws, &region)).map_err(|err| {
        if err.path == "override.endpoint" {
            ConfigError::new("api_base", err.message)
        } else {
            err
        }
    })
}

/// The endpoint at `url` (an `override.endpoint` when `from_endpoint`: its path, if any, is used
/// as it is; else a base URL, whose path prefixes the model paths), its requests signed.
fn build(
    provider: &'static Provider,
    auth: &AuthConfig,
    url: &str,
    from_endpoint: bool,
    signer: SigV4Signer,
) -> Result<Endpoint, ConfigError> {
    let parsed = url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| ConfigError::new("override.endpoint", "must be an http(s) URL"))?;
    let origin = parsed[..url::Position::BeforePath].to_string();
    let path = parsed.path();
    let (base, fixed_path) = match from_endpoint && path != "/" {
        true => (origin.clone(), Some(parsed[url::Position::BeforePath..].to_string())),
        false => (format!("{origin}{}", path.trim_end_matches('/')), None),
    };
    // The generic parts (headers of `auth.header`, the passthrough target, the probe URL).
    let generic = if from_endpoint { url.to_string() } else { base.clone() };
    let mut endpoint = Endpoint::compile(provider, auth, Some(&generic), &BaseUrls::new())?;
    endpoint.bedrock = Some(Arc::new(Bedrock { base, fixed_path }));
    endpoint.credentials = Some(Arc::new(signer));
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn aws() -> AuthConfig {
        AuthConfig {
            aws: Some(AwsAuth {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: Some("token".into()),
            }),
            ..AuthConfig::default()
        }
    }

    fn provider() -> &'static Provider {
        super::super::lookup("bedrock").unwrap()
    }

    #[test]
    fn region_and_credentials_are_required_and_named() {
        let conf = json!({"region": "us-east-1"});
        let err = endpoint(provider(), &AuthConfig::default(), Some(&conf), None, &BaseUrls::new()).unwrap_err();
        assert_eq!(err.path, "auth.aws");
        let err = endpoint(provider(), &aws(), None, None, &BaseUrls::new()).unwrap_err();
        assert_eq!(err.path, "provider_conf.region");
        let bad = json!({"region": "us east"});
        assert_eq!(
            endpoint(provider(), &aws(), Some(&bad), None, &BaseUrls::new()).unwrap_err().path,
            "provider_conf.region"
        );
        let endpoint = endpoint(provider(), &aws(), Some(&conf), None, &BaseUrls::new()).unwrap();
        assert_eq!(endpoint.uri.to_string(), "https://bedrock-runtime.us-east-1.amazonaws.com/");
    }

    #[test]
    fn model_ids_and_arns_are_one_escaped_segment() {
        let conf = json!({"region": "eu-west-1"});
        let endpoint = endpoint(provider(), &aws(), Some(&conf), None, &BaseUrls::new()).unwrap();
        let bedrock = endpoint.bedrock.unwrap();
        let arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0";
        let body = Bytes::from(json!({"model": arn, "stream": true, "messages": []}).to_string());
        let (url, sent) = bedrock.call(&body, "/chat").unwrap();
        assert_eq!(
            url.to_string(),
            "https://bedrock-runtime.eu-west-1.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3A\
             inference-profile%2Feu.anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
        );
        assert_eq!(sent, Bytes::from_static(b"{\"messages\":[]}"));
        // No model in the body: the one of an AWS SDK's path.
        let body = Bytes::from_static(b"{\"messages\":[]}");
        let (url, _) = bedrock.call(&body, "/bedrock/model/amazon.nova-lite-v1%3A0/converse").unwrap();
        assert_eq!(url.path(), "/model/amazon.nova-lite-v1%3A0/converse");
        assert!(bedrock.call(&body, "/bedrock/converse").is_none());
    }

    #[test]
    fn key_secrets_are_json_and_the_region_may_come_from_api_base() {
        let secret = r#"{"access_key_id":"AK","secret_access_key":"SK","region":"us-west-2"}"#;
        let endpoint = key_endpoint(provider(), secret, None).unwrap();
        assert_eq!(endpoint.uri.to_string(), "https://bedrock-runtime.us-west-2.amazonaws.com/");
        let no_region = r#"{"access_key_id":"AK","secret_access_key":"SK"}"#;
        let endpoint =
            key_endpoint(provider(), no_region, Some("https://bedrock-runtime.ap-south-1.amazonaws.com")).unwrap();
        assert_eq!(endpoint.uri.host(), Some("bedrock-runtime.ap-south-1.amazonaws.com"));
        assert_eq!(key_endpoint(provider(), no_region, Some("http://127.0.0.1:9")).unwrap_err().path, "secret.region");
        let err = key_endpoint(provider(), "sk-not-json", None).unwrap_err();
        assert_eq!(err.path, "secret");
        assert!(!err.message.contains("sk-not-json"));
    }

    #[test]
    fn signing_adds_the_signature_headers_and_drops_the_clients() {
        let signer = SigV4Signer::new(aws().aws.as_ref().unwrap(), "us-east-1");
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-amz-security-token", HeaderValue::from_static("the-clients"));
        let url: Uri = "http://127.0.0.1:9/model/m/converse".parse().unwrap();
        signer.sign(&Method::POST, &url, &mut headers, b"{}").unwrap();
        let authorization = headers["authorization"].to_str().unwrap();
        assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{authorization}");
        assert!(authorization.contains("/us-east-1/bedrock/aws4_request"), "{authorization}");
        assert!(authorization.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"));
        assert_eq!(headers["x-amz-security-token"], "token");
        assert!(headers["authorization"].is_sensitive());
    }
}
