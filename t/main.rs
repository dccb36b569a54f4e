//! switchyard's integration tests: the real gateway in-process on 127.0.0.1:0, driven through its
//! admin API, against mock upstreams.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly by design")]

mod harness;

mod admin;
mod admin_fuzz;
mod ai_proxy;
mod ai_proxy_multi;
mod etcd;
mod model_api;
mod process;
mod proxying;
mod reload;
mod routing;
mod store_contract;
