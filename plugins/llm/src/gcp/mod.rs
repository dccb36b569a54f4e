//! Google Cloud credentials for Vertex AI: an access token minted from a service account's key
//! (a signed JWT traded at the key's `token_uri`, [`service_account`]) and cached per credential
//! ([`token_cache`]).
//!
//! Where the cache lives: in the compiled config that holds the credential (an `ai-proxy`
//! instance, an `ai-proxy-multi` member, a model API provider key, whose models share it), as an
//! [`AccessTokens`] behind the endpoint's `Arc`. It lives as long as that compiled config: a
//! reload that keeps the config keeps its token, and one that changes it starts afresh, so a
//! changed key never serves a token minted from the old one. It is here, in the LLM layer,
//! because it is part of how a provider is called (like the URL or the auth headers); the IO it
//! needs is the core's, lent per call ([`switchyard_sdk::Credentials`]).

pub mod service_account;
pub mod token_cache;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method};
use serde::Deserialize;
use switchyard_sdk::{
    AttemptTiming, ClientHandle, CredentialError, Credentials, SendError, UpstreamIo, UpstreamRequest,
};

pub use service_account::ServiceAccount;
pub use token_cache::{TokenCache, TokenPolicy};

/// The most of a token endpoint's answer that is read.
const MAX_TOKEN_ANSWER: u64 = 64 * 1024;

/// The most of a token endpoint's error that is repeated in the gateway's.
const MAX_QUOTED_ERROR: usize = 200;

/// Access tokens of one service account, cached: the credentials of a Vertex AI endpoint.
pub struct AccessTokens {
    account: ServiceAccount,
    cache: TokenCache,
}

/// A token endpoint's answer (RFC 6749 §5.1, §5.2).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

impl AccessTokens {
    pub fn new(account: ServiceAccount, policy: TokenPolicy) -> AccessTokens {
        AccessTokens { account, cache: TokenCache::new(policy) }
    }

    /// Asks the token endpoint for a token, with the pool and timeout of the request it is for.
    async fn fetch(
        &self,
        io: &dyn UpstreamIo,
        client: ClientHandle,
        timeout: Duration,
    ) -> Result<token_cache::Fetched, CredentialError> {
        let endpoint = &self.account.token_uri;
        let failed = |what: String| CredentialError(format!("token endpoint {endpoint} {what}"));
        let assertion = self
            .account
            .assertion(crate::protocol::attempt::unix_now())
            .map_err(|_| CredentialError("the service account key could not sign the token request".into()))?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let request = UpstreamRequest {
            method: Method::POST,
            url: self.account.token_url.clone(),
            headers,
            body: Bytes::from(body),
            client,
            timeout,
            max_duration: None,
            max_response_bytes: Some(MAX_TOKEN_ANSWER),
            flush_interval: None,
            label: Arc::from("gcp-token"),
            timing: AttemptTiming::default(),
            credentials: None,
        };
        let answer = io.fetch(request, MAX_TOKEN_ANSWER).await.map_err(|err| match err {
            SendError::Connect => failed("could not be reached".into()),
            SendError::Timeout => failed("did not answer in time".into()),
            SendError::Failed => failed("failed to answer".into()),
        })?;
        let parsed = serde_json::from_slice::<TokenAnswer>(&answer.body).ok();
        if !answer.status.is_success() {
            let said = parsed
                .and_then(|a| match (a.error, a.error_description) {
                    (Some(error), Some(description)) => Some(format!("{error}: {description}")),
                    (error, description) => error.or(description),
                })
                .map(|said| format!(" ({})", quoted(&said)))
                .unwrap_or_default();
            return Err(failed(format!("answered {}{said}", answer.status.as_u16())));
        }
        let Some(TokenAnswer { access_token: Some(token), expires_in, .. }) = parsed else {
            return Err(failed("answered without an access_token".into()));
        };
        let mut bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| failed("answered an access_token that is no header value".into()))?;
        bearer.set_sensitive(true);
        Ok(token_cache::Fetched { bearer, expires_in })
    }
}

/// `text` cut to [`MAX_QUOTED_ERROR`] bytes (on a character boundary).
fn quoted(text: &str) -> &str {
    let mut end = text.len().min(MAX_QUOTED_ERROR);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[async_trait]
impl Credentials for AccessTokens {
    /// Sets `Authorization: Bearer <access token>`, replacing any `auth.header` one.
    async fn apply(&self, request: &mut UpstreamRequest, io: &dyn UpstreamIo) -> Result<(), CredentialError> {
        let (client, timeout) = (request.client.clone(), request.timeout);
        let bearer = self.cache.token(|| self.fetch(io, client, timeout)).await?;
        request.headers.insert(AUTHORIZATION, bearer);
        Ok(())
    }
}
