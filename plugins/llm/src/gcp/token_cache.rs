//! One credential's access token, cached until it is due for renewal, with at most one renewal
//! in flight: requests that find the token due while another renews it wait for that renewal
//! and share its outcome (a token, or its failure), so fifty requests at expiry make one token
//! request, not fifty.
//!
//! The token lives `expires_in` seconds (an hour when the endpoint does not say), less
//! `expire_early_secs` (when the token outlives that), capped at `max_ttl`: APISIX's policy.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use http::HeaderValue;
use switchyard_sdk::CredentialError;
use tokio::time::Instant;

/// When a token is renewed; `auth.gcp`'s `max_ttl` and `expire_early_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    pub max_ttl: Option<Duration>,
    pub expire_early: Duration,
}

impl TokenPolicy {
    /// How long a token the endpoint says lives `expires_in` seconds is used.
    pub fn lifetime(&self, expires_in: Option<u64>) -> Duration {
        let mut lifetime = Duration::from_secs(expires_in.unwrap_or(3600));
        if lifetime > self.expire_early {
            lifetime -= self.expire_early;
        }
        match self.max_ttl {
            Some(max) if lifetime > max => max,
            _ => lifetime,
        }
    }
}

/// A token as a token endpoint answered it: the `Authorization` value and its lifetime.
pub struct Fetched {
    pub bearer: HeaderValue,
    pub expires_in: Option<u64>,
}

struct Current {
    bearer: HeaderValue,
    renew_at: Instant,
}

struct Failure {
    at: Instant,
    error: CredentialError,
}

/// The cache of one credential's token.
pub struct TokenCache {
    policy: TokenPolicy,
    /// Read by every request: held only to copy the token out.
    current: Mutex<Option<Current>>,
    /// Held for the whole of a renewal (the single flight), with the last renewal's failure.
    renewal: tokio::sync::Mutex<Option<Failure>>,
}

impl TokenCache {
    pub fn new(policy: TokenPolicy) -> TokenCache {
        TokenCache { policy, current: Mutex::new(None), renewal: tokio::sync::Mutex::new(None) }
    }

    /// The token to send now: the cached one while it is not due, else a new one from `fetch`,
    /// run by one caller at a time. A caller that waited for another's renewal takes its result:
    /// its token, or (when it failed after this caller asked) its error, without a second try.
    pub async fn token<F, Fut>(&self, fetch: F) -> Result<HeaderValue, CredentialError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, CredentialError>>,
    {
        let asked_at = Instant::now();
        if let Some(bearer) = self.fresh(asked_at) {
            return Ok(bearer);
        }
        let mut last_failure = self.renewal.lock().await;
        if let Some(bearer) = self.fresh(Instant::now()) {
            return Ok(bearer);
        }
        if let Some(failure) = last_failure.as_ref().filter(|failure| failure.at > asked_at) {
            return Err(failure.error.clone());
        }
        // A token's lifetime counts from when it was asked for, not from when it arrived.
        let sent_at = Instant::now();
        match fetch().await {
            Ok(fetched) => {
                let renew_at = sent_at + self.policy.lifetime(fetched.expires_in);
                let bearer = fetched.bearer;
                *self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Some(Current { bearer: bearer.clone(), renew_at });
                *last_failure = None;
                Ok(bearer)
            }
            Err(error) => {
                *last_failure = Some(Failure { at: Instant::now(), error: error.clone() });
                Err(error)
            }
        }
    }

    /// The cached token, unless it is due for renewal at `now`.
    fn fresh(&self, now: Instant) -> Option<HeaderValue> {
        let current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        current.as_ref().filter(|c| now < c.renew_at).map(|c| c.bearer.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn policy(max_ttl: Option<u64>, early: u64) -> TokenPolicy {
        TokenPolicy { max_ttl: max_ttl.map(Duration::from_secs), expire_early: Duration::from_secs(early) }
    }

    #[test]
    fn lifetime_follows_apisix() {
        assert_eq!(policy(None, 60).lifetime(Some(3600)), Duration::from_secs(3540));
        assert_eq!(policy(None, 60).lifetime(None), Duration::from_secs(3540));
        assert_eq!(policy(None, 60).lifetime(Some(30)), Duration::from_secs(30), "a short token is kept whole");
        assert_eq!(policy(Some(100), 60).lifetime(Some(3600)), Duration::from_secs(100));
        assert_eq!(policy(Some(5000), 0).lifetime(Some(3600)), Duration::from_secs(3600));
    }

    /// A fetch that counts its calls, takes `takes` to answer, and fails while `failing`.
    async fn fetch(calls: &AtomicUsize, takes: Duration, failing: bool) -> Result<Fetched, CredentialError> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(takes).await;
        if failing {
            return Err(CredentialError("token endpoint answered 500".into()));
        }
        Ok(Fetched { bearer: HeaderValue::from_str(&format!("Bearer t{n}")).unwrap(), expires_in: Some(120) })
    }

    #[tokio::test(start_paused = true)]
    async fn one_token_per_lifetime_and_one_renewal_for_many_waiters() {
        let cache = Arc::new(TokenCache::new(policy(None, 60)));
        let calls = Arc::new(AtomicUsize::new(0));
        let take = || {
            let (cache, calls) = (Arc::clone(&cache), Arc::clone(&calls));
            tokio::spawn(async move { cache.token(|| fetch(&calls, Duration::from_millis(200), false)).await })
        };
        assert_eq!(take().await.unwrap().unwrap(), "Bearer t1");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(take().await.unwrap().unwrap(), "Bearer t1", "not due before 120 - 60 s");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        let waiting: Vec<_> = (0..50).map(|_| take()).collect();
        for waiter in waiting {
            assert_eq!(waiter.await.unwrap().unwrap(), "Bearer t2");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "fifty requests at expiry: one renewal");
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_share_a_failed_renewal_and_the_next_request_tries_again() {
        let cache = Arc::new(TokenCache::new(policy(None, 60)));
        let calls = Arc::new(AtomicUsize::new(0));
        let waiting: Vec<_> = (0..10)
            .map(|_| {
                let (cache, calls) = (Arc::clone(&cache), Arc::clone(&calls));
                tokio::spawn(async move { cache.token(|| fetch(&calls, Duration::from_millis(200), true)).await })
            })
            .collect();
        for waiter in waiting {
            assert!(waiter.await.unwrap().unwrap_err().0.contains("500"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let token = cache.token(|| fetch(&calls, Duration::ZERO, false)).await.unwrap();
        assert_eq!(token, "Bearer t2");
    }
}
