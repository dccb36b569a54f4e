//! Test harness: an in-process gateway, its admin client, mock upstreams (checking the protocol of
//! what they receive), a real etcd, and the official Python SDKs.

pub mod bedrock_mock;
pub mod etcd;
pub mod faulty;
pub mod gateway;
pub mod gcp_mock;
pub mod logs;
pub mod mock;
pub mod node;
pub mod otlp;
pub mod prom;
pub mod python;
pub mod raw;
pub mod redis;
pub mod wire;

pub use etcd::Etcd;
pub use gateway::TestGateway;
pub use mock::{Behaviour, MockUpstream};
