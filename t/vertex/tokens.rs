//! The access token's life: minted once per credential and lifetime, renewed
//! `expire_early_secs` before it expires (one renewal for many requests), capped by `max_ttl`;
//! and what the client sees when the token endpoint or Vertex refuses.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::{gateway, hello, json_of, last_bearer, post, put_vertex_route, vertex_plugin};
use crate::harness::gcp_mock::{service_account_json, stranger_key, GcpMock, TokenBehaviour};

#[tokio::test]
async fn a_token_serves_every_request_of_its_lifetime_and_is_renewed_early() {
    let mock = GcpMock::start().await;
    // Tokens live 3 s and are renewed 2 s early: used for 1 s.
    mock.behave(TokenBehaviour { expires_in: 3, ..TokenBehaviour::default() });
    let gw = gateway().await;
    let plugin = vertex_plugin(&mock, mock.service_account(), json!({"expire_early_secs": 2}), json!({}));
    put_vertex_route(&gw, "vertex-renew", plugin).await;
    for _ in 0..3 {
        assert_eq!(post(&gw, "vertex-renew", hello()).await.status(), StatusCode::OK);
    }
    assert_eq!(mock.token_requests(), 1, "one token for every request of its lifetime");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(&gw, "vertex-renew", hello()).await.status(), StatusCode::OK);
    assert_eq!(mock.token_requests(), 2, "renewed once due, before it expired");
    assert_eq!(last_bearer(&mock), "Bearer ya29.mock-2");
    assert_eq!(post(&gw, "vertex-renew", hello()).await.status(), StatusCode::OK);
    assert_eq!(mock.token_requests(), 2);
    assert_eq!(mock.unauthenticated(), 0, "no request went out with an expired token");
}

#[tokio::test]
async fn max_ttl_caps_how_long_a_token_is_used() {
    let mock = GcpMock::start().await;
    let gw = gateway().await;
    let plugin = vertex_plugin(&mock, mock.service_account(), json!({"max_ttl": 1}), json!({}));
    put_vertex_route(&gw, "vertex-max-ttl", plugin).await;
    assert_eq!(post(&gw, "vertex-max-ttl", hello()).await.status(), StatusCode::OK);
    assert_eq!(post(&gw, "vertex-max-ttl", hello()).await.status(), StatusCode::OK);
    assert_eq!(mock.token_requests(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(&gw, "vertex-max-ttl", hello()).await.status(), StatusCode::OK);
    assert_eq!(mock.token_requests(), 2, "an hour-long token is used for max_ttl only");
}

#[tokio::test]
async fn fifty_concurrent_requests_at_expiry_make_one_token_request() {
    let mock = GcpMock::start().await;
    // Used for 1 s; a renewal takes 300 ms, so all fifty arrive while it is in flight.
    mock.behave(TokenBehaviour { expires_in: 2, delay: Duration::from_millis(300), ..TokenBehaviour::default() });
    let gw = gateway().await;
    let plugin = vertex_plugin(&mock, mock.service_account(), json!({"expire_early_secs": 1}), json!({}));
    put_vertex_route(&gw, "vertex-herd", plugin).await;
    assert_eq!(post(&gw, "vertex-herd", hello()).await.status(), StatusCode::OK);
    assert_eq!(mock.token_requests(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let requests = (0..50).map(|_| post(&gw, "vertex-herd", hello()));
    let responses = futures_util::future::join_all(requests).await;
    assert!(responses.iter().all(|r| r.status() == StatusCode::OK));
    assert_eq!(mock.token_requests(), 2, "fifty requests, one renewal");
    let bearers: Vec<String> =
        mock.seen().iter().skip(1).map(|s| s.headers["authorization"].to_str().unwrap().to_string()).collect();
    assert_eq!(bearers.len(), 50);
    assert!(bearers.iter().all(|b| b == "Bearer ya29.mock-2"), "{bearers:?}");
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_or_failing_is_a_502_naming_it() {
    let mock = GcpMock::start().await;
    let gw = gateway().await;
    // Nothing listens at the token URI.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_uri = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    let plugin = vertex_plugin(
        &mock,
        service_account_json(crate::harness::gcp_mock::test_key(), &dead_uri),
        json!({}),
        json!({}),
    );
    put_vertex_route(&gw, "vertex-token-down", plugin).await;
    let response = post(&gw, "vertex-token-down", hello()).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let error = json_of(response).await;
    assert_eq!(error["error"]["code"], "upstream_auth_failed", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("token endpoint {dead_uri} could not be reached")), "{message}");
    assert!(mock.seen().is_empty(), "nothing went to Vertex without a token");

    mock.behave(TokenBehaviour { fail_with: Some(500), ..TokenBehaviour::default() });
    put_vertex_route(&gw, "vertex-token-500", vertex_plugin(&mock, mock.service_account(), json!({}), json!({}))).await;
    let response = post(&gw, "vertex-token-500", hello()).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let message = json_of(response).await["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("answered 500 (internal_failure: the mock is down)"), "{message}");
    // The endpoint is back: the next request mints a token.
    mock.behave(TokenBehaviour::default());
    assert_eq!(post(&gw, "vertex-token-500", hello()).await.status(), StatusCode::OK);
    let line = crate::harness::logs::access_line("vertex-token-down").await;
    assert!(line.contains("status=502") && line.contains("upstream_auth_failed"), "{line}");
}

#[tokio::test]
async fn refused_credentials_surface_to_the_client() {
    let mock = GcpMock::start().await;
    let gw = gateway().await;
    // A key the token endpoint does not know: its assertion's signature does not verify.
    let stranger = service_account_json(stranger_key(), &mock.token_uri());
    put_vertex_route(&gw, "vertex-stranger", vertex_plugin(&mock, stranger, json!({}), json!({}))).await;
    let response = post(&gw, "vertex-stranger", hello()).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let message = json_of(response).await["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("answered 400 (invalid_grant: Invalid JWT"), "{message}");
    assert!(mock.refused()[0].contains("InvalidSignature"), "{:?}", mock.refused());
    assert!(mock.seen().is_empty());

    // A bearer Vertex does not accept: its 401 reaches the client as Vertex sent it.
    let plugin = json!({"provider": "vertex-ai", "auth": {"header": {"Authorization": "Bearer ya29.revoked"}},
        "provider_conf": {"project_id": crate::harness::gcp_mock::PROJECT, "region": crate::harness::gcp_mock::REGION},
        "options": {"model": "google/gemini-2.0-flash"}, "override": {"endpoint": mock.base_url()}});
    put_vertex_route(&gw, "vertex-bad-bearer", plugin).await;
    let response = post(&gw, "vertex-bad-bearer", hello()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let error = json_of(response).await;
    assert_eq!(error["error"]["status"], "UNAUTHENTICATED", "{error}");
    assert_eq!(mock.unauthenticated(), 1);
    assert_eq!(last_bearer(&mock), "Bearer ya29.revoked");
    // The same bearer, once Vertex accepts it, serves as a pre-minted token.
    mock.accept("ya29.revoked");
    assert_eq!(post(&gw, "vertex-bad-bearer", hello()).await.status(), StatusCode::OK);
    assert_eq!(mock.token_requests(), 1, "only the stranger's grant");
}
