//! The open file limit (`RLIMIT_NOFILE`) and how the gateway shares it out between client
//! connections, so that a flood of proxy connections can never leave the admin API, the store or
//! the log without a descriptor.

/// The soft limit before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub before: u64,
    pub now: u64,
}

/// Raises the soft open file limit to the hard limit, as nginx's `worker_rlimit_nofile` does.
/// Runs once at process start, before any listener is bound: a soft limit of 1024 (the usual
/// default) is reached by about a thousand idle clients.
pub fn raise_open_file_limit() -> std::io::Result<OpenFileLimit> {
    let (before, _hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let now = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(OpenFileLimit { before, now })
}

/// The soft open file limit in force, or `None` when the platform does not tell.
pub fn open_file_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
}

/// The most descriptors kept back from proxy connections.
const MAX_RESERVE: u64 = 256;

/// How many client connections each kind of listener may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Proxy client connections: `proxy.max_connections`, lowered to fit the descriptor limit.
    pub proxy: usize,
    /// What the descriptor limit allows for proxy connections (`proxy` is at most this).
    pub proxy_budget: usize,
    /// Admin connections, taken from the reserve.
    pub admin: usize,
    /// Descriptors never used by proxy connections: admin connections, the store, etcd, health
    /// probes, listeners and logs.
    pub reserve: usize,
}

impl ConnectionCaps {
    /// Shares out `open_files` descriptors: a reserve of a quarter of them (at most 256) for
    /// everything but proxy clients (a quarter of the reserve for admin connections), and half of
    /// the rest for proxy clients, because each proxied request may hold an upstream connection
    /// as well. Runs once when a node starts.
    pub fn plan(open_files: Option<u64>, max_connections: usize) -> ConnectionCaps {
        // An unknown or unlimited limit is treated as large; 2^20 keeps the arithmetic small.
        let files = open_files.unwrap_or(u64::MAX).min(1 << 20);
        let reserve = (files / 4).min(MAX_RESERVE);
        let proxy_budget = usize::try_from((files - reserve) / 2).unwrap_or(usize::MAX).max(1);
        let reserve = usize::try_from(reserve).unwrap_or(usize::MAX);
        ConnectionCaps { proxy: max_connections.min(proxy_budget), proxy_budget, admin: (reserve / 4).max(2), reserve }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_soft_limit_leaves_a_reserve_and_halves_the_rest() {
        let caps = ConnectionCaps::plan(Some(1024), 10240);
        assert_eq!(caps, ConnectionCaps { proxy: 384, proxy_budget: 384, admin: 64, reserve: 256 });
        let small = ConnectionCaps::plan(Some(256), 10240);
        assert_eq!(small, ConnectionCaps { proxy: 96, proxy_budget: 96, admin: 16, reserve: 64 });
    }

    #[test]
    fn a_large_limit_keeps_the_configured_cap() {
        let caps = ConnectionCaps::plan(Some(1_048_576), 10240);
        assert_eq!((caps.proxy, caps.admin, caps.reserve), (10240, 64, 256));
        assert_eq!(ConnectionCaps::plan(None, 5000).proxy, 5000);
        assert_eq!(ConnectionCaps::plan(Some(u64::MAX), 5000).proxy, 5000);
    }

    #[test]
    fn a_tiny_limit_still_leaves_one_connection_of_each_kind() {
        let caps = ConnectionCaps::plan(Some(3), 10240);
        assert!(caps.proxy >= 1 && caps.admin >= 1, "{caps:?}");
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let before = open_file_limit().unwrap();
        let raised = raise_open_file_limit().unwrap();
        assert!(raised.now >= raised.before && raised.before >= before.min(raised.before));
        assert_eq!(open_file_limit(), Some(raised.now));
    }
}
