//! The node config (`conf/config.yaml`): listeners, admin keys, store, provider hosts, logging.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The admin key shipped in `conf/config.yaml`: accepted on loopback listeners only.
pub const DEFAULT_ADMIN_KEY: &str = "admin-local-only-change-me";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The gateway group whose resources this node serves.
    pub gateway_group_id: String,
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    /// Per built-in provider: a replacement for its default host (mirrors, proxies, tests).
    pub providers: BTreeMap<String, ProviderConfig>,
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            gateway_group_id: "default".into(),
            proxy: ProxyConfig::default(),
            admin: AdminConfig::default(),
            store: StoreConfig::default(),
            providers: BTreeMap::new(),
            log: LogConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    pub listen: Vec<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self { listen: vec!["0.0.0.0:9080".into(), "0.0.0.0:3000".into()] }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: Vec<String>,
    pub keys: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: vec!["127.0.0.1:7080".into(), "127.0.0.1:3001".into()], keys: vec![DEFAULT_ADMIN_KEY.into()] }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Embedded,
    Etcd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// The embedded store's folder (its database file is `switchyard.redb` inside it).
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { backend: StoreBackend::Embedded, path: PathBuf::from("data/") }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter such as `switchyard=debug`).
    pub level: String,
    /// One line per proxied request, at target `access`.
    pub access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), access_log: true }
    }
}

/// Why a config cannot be used. The CLI exits with code 2 on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: serde_yaml::Error },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads and validates a YAML config file.
    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigFileError::Read { path: path.to_path_buf(), source })?;
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(&text).map_err(|source| ConfigFileError::Parse { path: path.to_path_buf(), source })?
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: addresses parse, keys exist, and the shipped admin key is never
    /// exposed beyond loopback.
    pub fn validate(&self) -> Result<(), ConfigFileError> {
        let invalid = |msg: String| Err(ConfigFileError::Invalid(msg));
        if self.gateway_group_id.is_empty() || self.gateway_group_id.contains('/') {
            return invalid("gateway_group_id must be a non-empty name without '/'".into());
        }
        let proxy = parse_addrs("proxy.listen", &self.proxy.listen)?;
        let admin = parse_addrs("admin.listen", &self.admin.listen)?;
        if proxy.is_empty() {
            return invalid("proxy.listen must name at least one address".into());
        }
        if self.admin.keys.is_empty() || self.admin.keys.iter().any(|k| k.trim().is_empty()) {
            return invalid("admin.keys must hold at least one non-empty key".into());
        }
        let exposed = admin.iter().find(|a| !a.ip().is_loopback());
        if let Some(addr) = exposed {
            if self.admin.keys.iter().any(|k| k == DEFAULT_ADMIN_KEY) {
                return invalid(format!(
                    "admin.listen has the non-loopback address {addr} while admin.keys holds the \
                     default key `{DEFAULT_ADMIN_KEY}`: set your own admin key first"
                ));
            }
        }
        for (name, provider) in &self.providers {
            if let Some(url) = &provider.base_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return invalid(format!("providers.{name}.base_url must start with http:// or https://"));
                }
            }
        }
        Ok(())
    }

    pub fn proxy_addrs(&self) -> Result<Vec<SocketAddr>, ConfigFileError> {
        parse_addrs("proxy.listen", &self.proxy.listen)
    }

    pub fn admin_addrs(&self) -> Result<Vec<SocketAddr>, ConfigFileError> {
        parse_addrs("admin.listen", &self.admin.listen)
    }
}

fn parse_addrs(field: &str, addrs: &[String]) -> Result<Vec<SocketAddr>, ConfigFileError> {
    addrs
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|_| ConfigFileError::Invalid(format!("{field}: `{a}` is not an address like 0.0.0.0:9080")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ports() {
        let config = Config::default();
        assert_eq!(config.proxy.listen, ["0.0.0.0:9080", "0.0.0.0:3000"]);
        assert_eq!(config.admin.listen, ["127.0.0.1:7080", "127.0.0.1:3001"]);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn default_key_on_public_admin_listener_is_refused() {
        let mut config = Config::default();
        config.admin.listen = vec!["0.0.0.0:7080".into()];
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("default key"), "{err}");
        config.admin.keys = vec!["my-own-secret".into()];
        assert!(config.validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_yaml::from_str::<Config>("proxy:\n  listn: []\n").unwrap_err();
        assert!(err.to_string().contains("listn"));
    }
}
