//! switchyard's LLM layer, shared by `ai-proxy`, `ai-proxy-multi` and the model API: provider
//! descriptors over one module per wire family ([`providers`]), a compiled provider call
//! ([`instance::Instance`]) with its plugin-level settings ([`instance::CallSettings`]), the
//! config fields every AI plugin shares ([`config`]), the request body check ([`body`]), the
//! client protocols and the conversions between them ([`protocol`]), usage reading on the way
//! back ([`observe`], in bounded memory: [`body_window`], [`json_scan`]), joining a taken-up
//! stream onto a broken one ([`resume`]), model names fit for metric labels ([`labels`]), and
//! Google Cloud access tokens for Vertex AI ([`gcp`]).

pub mod body;
pub mod body_window;
pub mod config;
pub mod gcp;
pub mod instance;
pub mod json_scan;
pub mod labels;
pub mod observe;
pub mod protocol;
pub mod providers;
pub mod resume;
pub mod usage_scan;
