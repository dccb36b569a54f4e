//! switchyard: an AI gateway with an APISIX-style plugin pipeline.
//!
//! Config goes live one way only: admin API → [`store`] → watch → [`reload`] → [`snapshot`];
//! the [`proxy`] handler loads the snapshot once per request and runs the matched route's chain.
//!
//! # Futures on the request path
//!
//! The functions a request passes through on its way to the upstream and back (`proxy::handle`,
//! `pipeline::run`, `serve`, `attempt`, `send`, the upstream client's `request`, the body
//! readers) are plain functions returning an `async move` block, not `async fn`s. An `async fn`
//! moves each argument into a local of its future and keeps the argument's own slot too (rustc
//! does not overlap the two, rust-lang/rust#62958), so a `Ctx` or a request passed down five
//! levels was stored ten times. The block uses its captures in place. The request's future went
//! from 7,888 to 5,896 bytes; it is moved whole into hyper's per-connection slot for every
//! request, and smaller futures are cheaper to move between the states of their parents too.

pub mod admin;
pub mod allocator;
pub mod background;
pub mod cache;
pub mod client_io;
pub mod compiled;
pub mod compiler;
pub mod config;
pub mod error;
pub mod gateway;
pub mod limits;
pub mod limits_store;
pub mod mirror;
pub mod observe;
pub mod plugins;
pub mod proxy;
pub mod reload;
pub mod resource;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod transport;
pub mod upstream;
pub mod vars;

pub use config::Config;
pub use gateway::Gateway;
