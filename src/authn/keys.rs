//! An issuer's signing keys: discovery, JWKS fetch (each key admitted by `jwk`), and the last good set.
//!
//! The key set lives in our own structure, not a TTL cache: a failed refresh must never evict
//! the only good copy while the identity provider is down. Only after `keys.maxStalenessSeconds`
//! without a successful fetch do we stop trusting it (fail closed). Fetches triggered by tokens
//! (an unknown `kid`, or no keys yet) run as detached tasks, collapse into the fetch already in
//! flight, and are rate limited per issuer, so a flood of junk tokens cannot hammer the provider
//! and a cancelled request cannot cancel or restart a fetch.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::fetch::{FetchError, Fetched, get_bounded};
pub use super::jwk::{AdmittedKey, DroppedKey, KeyKind, KeySet, admit_key, parse_jwks, parse_jwks_explained};
pub use super::jws::{Alg, MAX_KID_BYTES};
use crate::metrics::{IssuerResultLabels, Metrics};

/// Recently unknown kids remembered per issuer.
const UNKNOWN_KID_MEMORY: u64 = 1024;

/// Where to fetch from and how often.
pub struct KeySource {
    /// The configured issuer URL; discovery must name it exactly.
    pub issuer: String,
    /// Discovery document URL.
    pub discovery_url: String,
    /// The issuer's own client (CA, timeouts, no redirects, no proxy).
    pub client: reqwest::Client,
    /// Hosts allowed in `jwks_uri`: the issuer's own plus configured ones.
    pub jwks_hosts: Vec<String>,
    /// Whether `http://` on loopback is allowed (tests and dev stacks only).
    pub allow_loopback_http: bool,
    /// Response size cap.
    pub max_response_bytes: usize,
    /// Algorithms the issuer allows; a JWK naming another one is ignored.
    pub algorithms: Vec<Alg>,
    /// Timing policy.
    pub timing: KeyTiming,
}

/// When to refresh, retry and give up.
#[derive(Debug, Clone)]
pub struct KeyTiming {
    /// Refresh period without `Cache-Control: max-age`.
    pub default_refresh: Duration,
    /// Clamp for `max-age`.
    pub min_refresh: Duration,
    /// Clamp for `max-age`.
    pub max_refresh: Duration,
    /// Discovery re-fetch period.
    pub discovery_refresh: Duration,
    /// First retry delay.
    pub retry: Duration,
    /// Longest retry delay.
    pub max_retry: Duration,
    /// Keys older than this (since the last success) are not used.
    pub max_staleness: Duration,
    /// Minimum time between token-triggered fetches.
    pub cooldown: Duration,
}

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    last_success: Option<Instant>,
    jwks_uri: Option<String>,
    userinfo_endpoint: Option<String>,
    discovered_at: Option<Instant>,
    last_error: Option<String>,
    consecutive_failures: u32,
    next_refresh: Option<Instant>,
    /// Whether the newest completed fetch succeeded.
    last_fetch_ok: bool,
    /// The number ([`KeyStore::attempts`] after it) of the newest successful fetch.
    last_success_attempt: u64,
    /// A fetch is running.
    fetching: bool,
    /// The entries the last JWKS fetched dropped.
    dropped: Vec<DroppedKey>,
}

/// What `/readyz` and `check` say about an issuer's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyHealth {
    /// Keys held and fresh.
    Ready(usize),
    /// No fetch ever succeeded.
    Missing(Option<String>),
    /// The last success is older than the maximum staleness.
    Stale(Option<String>),
}

/// The key store of one issuer.
pub struct KeyStore {
    source: KeySource,
    runtime: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    state: RwLock<State>,
    // Serialises fetches; waiters check `attempts` to reuse the result of the one before them.
    fetch_lock: tokio::sync::Mutex<()>,
    attempts: AtomicU64,
    last_triggered_fetch: Mutex<Option<Instant>>,
    unknown_kids: moka::future::Cache<String, ()>,
}

impl KeyStore {
    /// A store with no keys yet. Detached fetches run on `runtime`.
    pub fn new(source: KeySource, runtime: tokio::runtime::Handle, metrics: Arc<Metrics>) -> Self {
        let unknown_kids = moka::future::Cache::builder()
            .max_capacity(UNKNOWN_KID_MEMORY)
            .time_to_live(source.timing.cooldown)
            .build();
        metrics.keys_held.get_or_create(&Metrics::issuer(&source.issuer)).set(0);
        KeyStore {
            source,
            runtime,
            metrics,
            state: RwLock::new(State::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            last_triggered_fetch: Mutex::new(None),
            unknown_kids,
        }
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.source.issuer
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The key set to verify with: `None` before the first success and once the last success is
    /// older than the maximum staleness (fail closed).
    pub fn current(&self) -> Option<Arc<KeySet>> {
        let state = self.read_state();
        let fresh = state.last_success.is_some_and(|t| t.elapsed() <= self.source.timing.max_staleness);
        if fresh { state.keys.clone() } else { None }
    }

    /// Whether the issuer's keys can be used, and if not, why.
    pub fn health(&self) -> KeyHealth {
        let state = self.read_state();
        match (&state.keys, state.last_success) {
            (Some(set), Some(t)) if t.elapsed() <= self.source.timing.max_staleness => KeyHealth::Ready(set.keys.len()),
            (Some(_), _) => KeyHealth::Stale(state.last_error.clone()),
            (None, _) => KeyHealth::Missing(state.last_error.clone()),
        }
    }

    /// The entries of the last JWKS fetched that were dropped, and why.
    pub fn dropped_keys(&self) -> Vec<DroppedKey> {
        self.read_state().dropped.clone()
    }

    /// The last fetch error, cleared by a successful fetch.
    pub fn last_error(&self) -> Option<String> {
        self.read_state().last_error.clone()
    }

    /// How long the scheduler should wait before the next refresh.
    pub fn next_refresh_in(&self) -> Duration {
        let state = self.read_state();
        match state.next_refresh {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => self.source.timing.retry,
        }
    }

    /// Updates the scrape-time gauges (staleness).
    pub fn observe(&self) {
        let state = self.read_state();
        if let Some(t) = state.last_success {
            let labels = Metrics::issuer(&self.source.issuer);
            self.metrics.key_staleness.get_or_create(&labels).set(t.elapsed().as_secs_f64());
        }
    }

    /// Fetches now (scheduled refresh, `check`). Returns how many keys are held. On failure the
    /// previous key set stays in place.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        let _guard = self.fetch_lock.lock().await;
        self.fetch().await
    }

    /// The first fetch: runs only if no fetch has completed yet, so the startup wait, the
    /// scheduler and a token arriving early share one discovery and one JWKS request.
    pub async fn initial_fetch(&self) {
        let _guard = self.fetch_lock.lock().await;
        if self.attempts.load(Ordering::SeqCst) == 0 {
            let _ = self.fetch().await;
        }
    }

    /// Whether `kid` was looked for by a recent fetch and not found.
    pub fn recently_unknown(&self, kid: &str) -> bool {
        self.unknown_kids.contains_key(kid)
    }

    /// Remembers that a fetch did not bring `kid`, for one cooldown.
    pub async fn remember_unknown(&self, kid: &str) {
        self.unknown_kids.insert(kid.to_string(), ()).await;
    }

    /// Whether a `kid` missing from the current set is known not to be the issuer's, so that a
    /// definite rejection (which the gateway and kube-apiserver cache) is right: no fetch is
    /// running, the newest fetch succeeded, and it completed after the review looked at the keys
    /// (`seen`, from [`KeyStore::attempts`]) or within the cooldown. After a failed fetch, during
    /// a fetch, or with only an old success to go on, the kid may be a rotation we could not see
    /// yet: the review is then a transient failure, never cached, and the same token is accepted
    /// once a fetch brings the key.
    pub fn absence_is_definite(&self, seen: u64) -> bool {
        let state = self.read_state();
        let recent = |t: Instant| t.elapsed() < self.source.timing.cooldown || state.last_success_attempt > seen;
        !state.fetching && state.last_fetch_ok && state.last_success.is_some_and(recent)
    }

    /// How many fetches have completed. Read it *before* looking at the keys and pass it to
    /// [`KeyStore::refresh_for_token`], so a fetch that completes in between is not repeated.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::SeqCst)
    }

    /// A fetch requested on behalf of a token (unknown `kid`, or no usable keys) that looked at
    /// the keys after `seen` fetches had completed. Runs detached; if any fetch completed since,
    /// its result is used instead; otherwise at most one per cooldown. Waits for the outcome at
    /// most `wait`.
    pub async fn refresh_for_token(self: &Arc<Self>, seen: u64, wait: Duration) {
        let store = Arc::clone(self);
        let task = self.runtime.spawn(async move {
            let _guard = store.fetch_lock.lock().await;
            if store.attempts.load(Ordering::SeqCst) != seen {
                return;
            }
            {
                let mut last = store.last_triggered_fetch.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_some_and(|t| t.elapsed() < store.source.timing.cooldown) {
                    store.metrics.key_cooldown_hits.get_or_create(&Metrics::issuer(&store.source.issuer)).inc();
                    return;
                }
                *last = Some(Instant::now());
            }
            let _ = store.fetch().await;
        });
        let _ = tokio::time::timeout(wait, task).await;
    }

    async fn fetch(&self) -> Result<usize, FetchError> {
        self.write_state().fetching = true;
        // A fetch whose future is dropped (a caller's timeout) must not leave the flag set.
        let _running = Running(self);
        let result = self.fetch_inner().await;
        // NB: `attempts` is bumped only after the state is written (end of this function), so a
        // request that reads the new count also sees the new keys; otherwise it could trigger a
        // second fetch for keys that had just arrived.
        let _bump = Bump(&self.attempts);
        let issuer = &self.source.issuer;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.metrics
            .key_fetches
            .get_or_create(&IssuerResultLabels { issuer: issuer.clone(), result: outcome.into() })
            .inc();
        let mut state = self.write_state();
        let now = Instant::now();
        state.fetching = false;
        state.last_fetch_ok = result.is_ok();
        match result {
            Ok((set, max_age)) => {
                let n = set.keys.len();
                tracing::info!(issuer = %issuer, keys = n, "fetched signing keys");
                state.keys = Some(set);
                state.last_success = Some(now);
                // The number this fetch gets when `_bump` runs (fetches are serialised).
                state.last_success_attempt = self.attempts.load(Ordering::SeqCst) + 1;
                state.last_error = None;
                state.consecutive_failures = 0;
                state.next_refresh = Some(now + refresh_delay(&self.source.timing, max_age));
                let labels = Metrics::issuer(issuer);
                self.metrics.keys_held.get_or_create(&labels).set(n as i64);
                let unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
                self.metrics.key_last_success.get_or_create(&labels).set(unix);
                self.metrics.key_staleness.get_or_create(&labels).set(0.0);
                Ok(n)
            }
            Err(e) => {
                match &state.keys {
                    Some(held) => tracing::warn!(
                        issuer = %issuer, error = %e, keys = held.keys.len(),
                        "key fetch failed; still verifying with the keys fetched before"
                    ),
                    None => tracing::warn!(
                        issuer = %issuer, error = %e,
                        "key fetch failed; no keys for this issuer yet, so its tokens cannot be verified"
                    ),
                }
                state.last_error = Some(e.to_string());
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                state.next_refresh = Some(now + jitter(backoff(&self.source.timing, state.consecutive_failures)));
                // Rediscover next time: the provider may have moved its JWKS.
                state.jwks_uri = None;
                Err(e)
            }
        }
    }

    async fn fetch_inner(&self) -> Result<(Arc<KeySet>, Option<Duration>), FetchError> {
        let src = &self.source;
        let cached_uri = {
            let state = self.read_state();
            let fresh = state.discovered_at.is_some_and(|t| t.elapsed() < src.timing.discovery_refresh);
            if fresh { state.jwks_uri.clone() } else { None }
        };
        let jwks_uri = match cached_uri {
            Some(uri) => uri,
            None => {
                let (uri, userinfo) = self.discover().await?;
                let mut state = self.write_state();
                state.jwks_uri = Some(uri.clone());
                state.userinfo_endpoint = userinfo;
                state.discovered_at = Some(Instant::now());
                uri
            }
        };
        let Fetched { body, max_age } = get_bounded(&src.client, &jwks_uri, src.max_response_bytes).await?;
        let (keys, dropped) = parse_jwks_explained(&body, &src.algorithms)
            .ok_or_else(|| FetchError::InvalidDocument { url: jwks_uri.clone(), what: "JWKS" })?;
        let count = dropped.len();
        self.write_state().dropped = dropped;
        if keys.is_empty() {
            return Err(FetchError::NoUsableKeys { url: jwks_uri, dropped: count });
        }
        if count > 0 {
            tracing::info!(issuer = %src.issuer, dropped = count, "ignored JWKS entries that are not usable signing keys (`check` says why)");
        }
        Ok((Arc::new(KeySet { keys }), max_age))
    }

    /// The discovery document's `jwks_uri` and, when it passes the same rules, its
    /// `userinfo_endpoint`.
    async fn discover(&self) -> Result<(String, Option<String>), FetchError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: Option<String>,
            userinfo_endpoint: Option<String>,
        }
        let src = &self.source;
        let url = &src.discovery_url;
        let Fetched { body, .. } = get_bounded(&src.client, url, src.max_response_bytes).await?;
        let invalid = || FetchError::InvalidDocument { url: url.clone(), what: "discovery document" };
        // As for the JWKS: an object, not an array read positionally.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(invalid());
        }
        let doc: Discovery = serde_json::from_slice(&body).map_err(|_| invalid())?;
        if doc.issuer != src.issuer {
            return Err(FetchError::IssuerMismatch {
                url: url.clone(),
                expected: src.issuer.clone(),
                found: doc.issuer,
            });
        }
        let jwks_uri =
            doc.jwks_uri.filter(|u| self.endpoint_allowed(u)).ok_or(FetchError::BadJwksUri { url: url.clone() })?;
        let userinfo = doc.userinfo_endpoint.filter(|u| {
            let allowed = self.endpoint_allowed(u);
            if !allowed {
                tracing::warn!(issuer = %src.issuer, "ignoring a userinfo_endpoint that is not https on an allowed host");
            }
            allowed
        });
        Ok((jwks_uri, userinfo))
    }

    /// An endpoint named by discovery (or by a verified token's distributed claims) may be
    /// called only over https (or loopback http when
    /// allowed), on the issuer's host or a `jwksHosts` entry, without credentials in the URL.
    pub fn endpoint_allowed(&self, uri: &str) -> bool {
        let src = &self.source;
        let Ok(parsed) = url::Url::parse(uri) else { return false };
        let scheme_ok = parsed.scheme() == "https"
            || (parsed.scheme() == "http" && src.allow_loopback_http && crate::config::is_loopback(&parsed));
        let host_ok = parsed.host_str().is_some_and(|h| src.jwks_hosts.iter().any(|a| a.eq_ignore_ascii_case(h)));
        scheme_ok && host_ok && parsed.username().is_empty() && parsed.password().is_none()
    }

    /// The `userinfo_endpoint` of the last discovery, if it named an allowed one.
    pub fn userinfo_endpoint(&self) -> Option<String> {
        self.read_state().userinfo_endpoint.clone()
    }

    /// The issuer's HTTPS client (its CA, timeouts, no redirects, no proxy).
    pub fn client(&self) -> &reqwest::Client {
        &self.source.client
    }

    /// `keys.maxResponseBytes`.
    pub fn max_response_bytes(&self) -> usize {
        self.source.max_response_bytes
    }
}

/// Increments the attempt counter when dropped, i.e. after everything else in `fetch`.
struct Bump<'a>(&'a AtomicU64);

impl Drop for Bump<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Clears [`State::fetching`] when a fetch ends, however it ends.
struct Running<'a>(&'a KeyStore);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.write_state().fetching = false;
    }
}

/// When to refresh after a successful fetch: the JWKS `max-age` (or the default interval),
/// clamped to the configured bounds, then jittered. Never later than two thirds of
/// `maxStalenessSeconds`: with `max-age` at the 24 h maximum and +10 % jitter, the refresh would
/// otherwise come after the keys went stale (`/readyz` failing), and a failed refresh must still
/// leave time for retries.
fn refresh_delay(t: &KeyTiming, max_age: Option<Duration>) -> Duration {
    let period = max_age.unwrap_or(t.default_refresh).clamp(t.min_refresh, t.max_refresh);
    jitter(period.min(t.max_staleness.mul_f64(0.6)))
}

/// retry × 2^(failures−1), capped at the longest retry delay.
fn backoff(t: &KeyTiming, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    t.retry.saturating_mul(factor).min(t.max_retry)
}

/// ±10 %, so replicas and issuers do not refresh in lockstep.
fn jitter(d: Duration) -> Duration {
    let r = RandomState::new().hash_one(Instant::now()) % 2001; // 0..=2000
    d.mul_f64(0.9 + r as f64 / 10_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults of `keys:`.
    fn default_timing() -> KeyTiming {
        let secs = Duration::from_secs;
        KeyTiming {
            default_refresh: secs(3600),
            min_refresh: secs(300),
            max_refresh: secs(86400),
            discovery_refresh: secs(86400),
            retry: secs(10),
            max_retry: secs(300),
            max_staleness: secs(86400),
            cooldown: secs(30),
        }
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let secs = Duration::from_secs;
        let t = default_timing();
        let delays: Vec<u64> = (1..=7).map(|f| backoff(&t, f).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(&t, u32::MAX), secs(300));
    }

    #[test]
    fn the_scheduled_refresh_always_comes_well_before_the_keys_go_stale() {
        let secs = Duration::from_secs;
        let t = default_timing();
        for _ in 0..200 {
            for max_age in [Some(secs(86400)), Some(secs(10 * 86400)), Some(secs(86399))] {
                let d = refresh_delay(&t, max_age);
                assert!(d <= t.max_staleness.mul_f64(2.0 / 3.0), "{d:?} for max-age {max_age:?}");
            }
            // Below the cap, max-age and the default interval still decide (±10 %).
            let d = refresh_delay(&t, None).as_secs_f64();
            assert!((3240.0..=3960.0).contains(&d), "{d}");
            let d = refresh_delay(&t, Some(secs(60))).as_secs_f64();
            assert!((270.0..=330.0).contains(&d), "min_refresh: {d}");
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(100)).as_secs_f64();
            assert!((90.0..=110.0).contains(&j), "{j}");
        }
    }
}
