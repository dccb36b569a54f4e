//! switchyard's integration tests: the real gateway in-process on 127.0.0.1:0, driven through its
//! admin API, against mock upstreams.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly by design")]

mod harness;

mod admin;
mod admin_fuzz;
mod ai_proxy;
mod ai_proxy_multi;
mod ai_rate_limiting;
mod apisix_objects;
mod bedrock;
mod chash;
mod connections;
mod consumers;
mod descriptors;
mod etcd;
mod failover;
mod global_rules;
mod model_api;
mod model_api_protocols;
mod model_api_rate_limits;
mod model_resources;
mod native_fallback;
mod observe;
mod plugin_errors;
mod process;
mod protocols;
mod proxying;
mod redis_batching;
mod redis_policies;
mod reload;
mod request_id;
mod routing;
mod sdk_clients;
mod secrets;
mod shutdown;
mod store_contract;
mod upstream_connections;
mod vars;
mod vertex;
