//! Test harness: an in-process gateway, its admin client, and mock upstreams.

pub mod gateway;
pub mod logs;
pub mod mock;

pub use gateway::TestGateway;
pub use mock::{Behaviour, MockUpstream};
