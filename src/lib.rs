//! switchyard: an AI gateway with an APISIX-style plugin pipeline.
//!
//! Config goes live one way only: admin API → [`store`] → watch → [`reload`] → [`snapshot`];
//! the [`proxy`] handler loads the snapshot once per request and runs the matched route's chain.

pub mod admin;
pub mod background;
pub mod cache;
pub mod client_io;
pub mod compiled;
pub mod compiler;
pub mod config;
pub mod error;
pub mod gateway;
pub mod limits;
pub mod mirror;
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

pub use config::Config;
pub use gateway::Gateway;
