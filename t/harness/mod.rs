//! Test harness: an in-process gateway, its admin client, mock upstreams, and a real etcd.

pub mod etcd;
pub mod faulty;
pub mod gateway;
pub mod logs;
pub mod mock;
pub mod node;
pub mod otlp;
pub mod prom;
pub mod raw;
pub mod redis;

pub use etcd::Etcd;
pub use gateway::TestGateway;
pub use mock::{Behaviour, MockUpstream};
