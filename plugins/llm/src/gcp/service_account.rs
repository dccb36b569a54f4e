//! A Google service account's JSON key (as `gcloud iam service-accounts keys create` writes it),
//! checked when a config compiles, and the signed assertion (an RS256 JWT) it trades for an
//! access token in OAuth2's JWT-bearer grant (RFC 7523).

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the access tokens may do: Vertex AI, as every Google Cloud client library asks.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Where a key that names no `token_uri` trades its assertion.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The lifetime an assertion asks for, in seconds: the most Google grants.
const ASSERTION_LIFETIME: u64 = 3600;

/// The fields of the JSON key the grant needs; the others (`type`, `client_id`, ...) are ignored.
#[derive(Deserialize)]
struct KeyFile {
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    project_id: Option<String>,
}

/// The assertion's claims (Google's "service account" flow).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// A service account, its key parsed and proven able to sign.
pub struct ServiceAccount {
    pub client_email: String,
    /// The key's id, sent as the assertion's `kid`.
    key_id: Option<String>,
    key: EncodingKey,
    /// The token endpoint (also the assertion's audience), as written in the key.
    pub token_uri: String,
    /// Parsed once: every token request goes there.
    pub token_url: http::Uri,
    /// The project the key belongs to, when the key says.
    pub project_id: Option<String>,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount").field("client_email", &self.client_email).finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Parses a JSON key: a string holding it (APISIX's `auth.gcp.service_account_json`) or the
    /// object itself (AISIX's provider key secret). Runs when a config compiles. `Err` is a
    /// message for the field that holds the key, and never repeats any of it.
    pub fn parse(value: &Value) -> Result<ServiceAccount, String> {
        let parsed: Result<KeyFile, _> = match value {
            Value::String(text) => serde_json::from_str(text),
            Value::Object(_) => serde_json::from_value(value.clone()),
            _ => return Err("must be the service account's JSON key (a string or an object)".into()),
        };
        let file = parsed.map_err(|_| "is not a service account JSON key: it does not parse as one".to_string())?;
        let client_email = file
            .client_email
            .filter(|email| !email.trim().is_empty())
            .ok_or("has no client_email: it must be a service account's JSON key")?;
        let pem = file.private_key.ok_or("has no private_key: it must be a service account's JSON key")?;
        let key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| "has a private_key that is not an RSA private key in PEM form".to_string())?;
        let token_uri = file.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
        let token_url = url::Url::parse(&token_uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .and_then(|u| u.as_str().parse::<http::Uri>().ok())
            .ok_or("has a token_uri that is not an http(s) URL")?;
        let account = ServiceAccount {
            client_email,
            key_id: file.private_key_id,
            key,
            token_uri,
            token_url,
            project_id: file.project_id,
        };
        // A PEM block can hold bytes that are no RSA key at all: only signing tells.
        account.assertion(0).map_err(|_| "has a private_key that cannot sign: it is not a usable RSA key")?;
        Ok(account)
    }

    /// The signed assertion for a token request made at `now` (seconds since the Unix epoch).
    pub fn assertion(&self, now: u64) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + ASSERTION_LIFETIME,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_that_cannot_be_used_are_refused_without_repeating_them() {
        let pem = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n";
        let cases = [
            (json!(42), "must be the service account's JSON key"),
            (json!("{not json"), "does not parse"),
            (json!({"private_key": pem}), "has no client_email"),
            (json!({"client_email": "sa@p.iam.gserviceaccount.com"}), "has no private_key"),
            (json!({"client_email": "a@b", "private_key": "secret-bytes"}), "not an RSA private key in PEM form"),
            (json!({"client_email": "a@b", "private_key": pem}), "private_key"),
            (json!(json!({"client_email": "a@b", "private_key": pem}).to_string()), "private_key"),
        ];
        for (key, expected) in cases {
            let err = ServiceAccount::parse(&key).unwrap_err();
            assert!(err.contains(expected), "{key}: {err}");
            assert!(!err.contains("secret-bytes") && !err.contains("c2VjcmV0"), "{err}");
        }
    }
}
