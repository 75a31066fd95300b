//! An issuer's signing keys: discovery, JWKS fetch, per-key admission, and the last good set.
//!
//! The key set lives in our own structure, not a TTL cache: a failed refresh must never evict
//! the only good copy while the identity provider is down. Only after `keys.maxStalenessSeconds`
//! without a successful fetch do we stop trusting it (fail closed). Fetches triggered by tokens
//! (an unknown `kid`, or no keys yet) run as detached tasks, collapse into the fetch already in
//! flight, and are rate limited per issuer, so a flood of junk tokens cannot hammer the provider
//! and a cancelled request cannot cancel or restart a fetch.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

use super::fetch::{FetchError, Fetched, get_bounded};
use crate::metrics::{IssuerResultLabels, Metrics};

/// Longest `kid` we keep or look up; longer ones are junk.
pub const MAX_KID_BYTES: usize = 256;
/// Most keys accepted in one JWKS document.
const MAX_KEYS_PER_SET: usize = 100;
/// Recently unknown kids remembered per issuer.
const UNKNOWN_KID_MEMORY: u64 = 1024;
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// The curve or family a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RS256/384/512 and PS256/384/512.
    Rsa,
    /// ES256.
    EcP256,
    /// ES384.
    EcP384,
    /// EdDSA.
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg`.
    pub fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::EcP256, ES256)
                | (KeyKind::EcP384, ES384)
                | (KeyKind::Ed25519, EdDSA)
        )
    }
}

/// A key that passed admission.
pub struct AdmittedKey {
    /// The key id, if the JWK had one.
    pub kid: Option<String>,
    /// What it verifies.
    pub kind: KeyKind,
    /// When the JWK names an algorithm, the key verifies only that one.
    pub alg: Option<Algorithm>,
    /// The verifier.
    pub key: DecodingKey,
}

impl AdmittedKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.verifies(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// One fetched key set.
pub struct KeySet {
    /// Admitted keys in document order.
    pub keys: Vec<AdmittedKey>,
}

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
    pub algorithms: Vec<Algorithm>,
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

/// Parses a JWKS document key by key, so one odd key cannot poison the set. Keys that share a
/// `kid` are ambiguous and all dropped. Returns the admitted keys and how many were dropped, or
/// `None` when the document itself is not a JWKS.
pub fn parse_jwks(body: &[u8], allowed: &[Algorithm]) -> Option<(Vec<AdmittedKey>, usize)> {
    parse_jwks_explained(body, allowed).map(|(keys, dropped)| (keys, dropped.len()))
}

/// A JWKS entry that did not pass admission, and why, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedKey {
    /// Its `kid` (at most 64 characters of it), if it had one.
    pub kid: Option<String>,
    /// Why it cannot verify tokens.
    pub why: String,
}

/// [`parse_jwks`], with the reason each dropped entry was dropped.
pub fn parse_jwks_explained(body: &[u8], allowed: &[Algorithm]) -> Option<(Vec<AdmittedKey>, Vec<DroppedKey>)> {
    #[derive(Deserialize)]
    struct Jwks {
        keys: Vec<Value>,
    }
    // serde's derive would also read `[[...]]` positionally as `{"keys": [...]}` (found by
    // fuzzing): a JWKS is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let doc: Jwks = serde_json::from_slice(body).ok()?;
    if doc.keys.len() > MAX_KEYS_PER_SET {
        return None;
    }
    let mut dropped = Vec::new();
    let mut keys: Vec<AdmittedKey> = doc
        .keys
        .iter()
        .filter_map(|k| match admit_key(k, allowed) {
            Ok(key) => Some(key),
            Err(why) => {
                let kid = k.get("kid").and_then(Value::as_str).map(|kid| kid.chars().take(64).collect::<String>());
                tracing::debug!(kid = %kid.as_deref().unwrap_or("").escape_debug(), why, "JWKS entry ignored");
                dropped.push(DroppedKey { kid, why: explain(k, why) });
                None
            }
        })
        .collect();
    let mut kid_counts: HashMap<&str, usize> = HashMap::new();
    for kid in keys.iter().filter_map(|k| k.kid.as_deref()) {
        *kid_counts.entry(kid).or_default() += 1;
    }
    let ambiguous: Vec<String> = kid_counts.into_iter().filter(|(_, n)| *n > 1).map(|(k, _)| k.to_string()).collect();
    if !ambiguous.is_empty() {
        tracing::warn!(kids = ?ambiguous, "the JWKS publishes several keys under one kid; those keys are ignored");
        keys.retain(|k| {
            let shared = k.kid.as_ref().is_some_and(|kid| ambiguous.contains(kid));
            if shared {
                let why = "another key in the set has the same kid, so neither can be told apart".to_string();
                dropped.push(DroppedKey { kid: k.kid.clone(), why });
            }
            !shared
        });
    }
    Some((keys, dropped))
}

/// [`admit_key`]'s reason, with the configuration change that would admit the key when there
/// is one.
fn explain(jwk: &Value, why: &'static str) -> String {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str).unwrap_or("");
    match why {
        "alg is not allowed for this issuer" => {
            format!("{} is not allowed for this issuer: add it to `algorithms`", member("alg"))
        }
        "no allowed algorithm uses this key type" => {
            let algs = match (member("kty"), member("crv")) {
                ("RSA", _) => "RS256/RS384/RS512/PS256/PS384/PS512",
                ("EC", "P-256") => "ES256",
                ("EC", "P-384") => "ES384",
                ("OKP", _) => "EdDSA",
                _ => "its algorithm",
            };
            format!("{algs} is not allowed for this issuer: add it to `algorithms`")
        }
        other => other.to_string(),
    }
}

/// Decides whether one JWK may verify tokens. Refuses anything that is not a public signing key
/// of a kind and size we trust.
pub fn admit_key(jwk: &Value, allowed: &[Algorithm]) -> Result<AdmittedKey, &'static str> {
    let obj = jwk.as_object().ok_or("not an object")?;
    let str_field = |name: &str| -> Result<Option<&str>, &'static str> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err("a member has the wrong type"),
        }
    };
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| obj.contains_key(*m)) {
        tracing::warn!("the JWKS publishes private or symmetric key material; that key is ignored");
        return Err("private or symmetric key material");
    }
    if str_field("use")?.is_some_and(|u| u != "sig") {
        return Err("use is not sig");
    }
    if let Some(ops) = obj.get("key_ops") {
        let ops = ops.as_array().ok_or("key_ops is not a list")?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return Err("key_ops does not include verify");
        }
    }
    let kid = str_field("kid")?;
    if kid.is_some_and(|k| k.len() > MAX_KID_BYTES) {
        return Err("kid too long");
    }
    let alg = match str_field("alg")? {
        None => None,
        Some(a) => {
            let alg: Algorithm = a.parse().map_err(|_| "alg is not a supported signature algorithm")?;
            if !allowed.contains(&alg) {
                return Err("alg is not allowed for this issuer");
            }
            Some(alg)
        }
    };
    let kind = match (str_field("kty")?, str_field("crv")?) {
        (Some("RSA"), _) => {
            let n = decode_b64(str_field("n")?)?;
            let e = decode_b64(str_field("e")?)?;
            let bits = bit_length(&n);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err("RSA modulus size outside 2048..=8192 bits");
            }
            let e_is_odd = e.last().is_some_and(|b| b & 1 == 1);
            if !e_is_odd || bit_length(&e) < 2 {
                return Err("RSA exponent must be odd and at least 3");
            }
            KeyKind::Rsa
        }
        (Some("EC"), Some("P-256")) => KeyKind::EcP256,
        (Some("EC"), Some("P-384")) => KeyKind::EcP384,
        (Some("OKP"), Some("Ed25519")) => KeyKind::Ed25519,
        (Some("EC" | "OKP"), _) => return Err("unsupported curve"),
        _ => return Err("unsupported key type"),
    };
    if let Some(a) = alg
        && !kind.verifies(a)
    {
        return Err("alg does not match the key type");
    }
    if !allowed.iter().any(|a| kind.verifies(*a)) {
        return Err("no allowed algorithm uses this key type");
    }
    let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(|_| "malformed JWK")?;
    let key = DecodingKey::from_jwk(&parsed).map_err(|_| "malformed JWK")?;
    Ok(AdmittedKey { kid: kid.map(str::to_string), kind, alg, key })
}

fn decode_b64(s: Option<&str>) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD.decode(s.ok_or("missing key member")?).map_err(|_| "key member is not base64url")
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => (big_endian.len() - i) * 8 - big_endian[i].leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALL: [Algorithm; 4] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384];

    fn rsa_jwk(bits: usize) -> Value {
        let n = URL_SAFE_NO_PAD.encode(vec![0xc1u8; bits / 8]);
        json!({"kty": "RSA", "kid": "r", "n": n, "e": "AQAB"})
    }

    fn ec_jwk() -> Value {
        // A real P-256 point is required for DecodingKey; the generator point of P-256.
        json!({"kty": "EC", "crv": "P-256", "kid": "e",
            "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
            "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"})
    }

    #[test]
    fn rsa_2048_is_admitted_and_binds_no_alg_without_one() {
        let k = admit_key(&rsa_jwk(2048), &ALL).unwrap();
        assert_eq!(k.kind, KeyKind::Rsa);
        assert!(k.accepts(Algorithm::RS256) && k.accepts(Algorithm::PS256));
        assert!(!k.accepts(Algorithm::ES256));
    }

    #[test]
    fn rsa_under_2048_bits_is_refused() {
        assert_eq!(admit_key(&rsa_jwk(1024), &ALL).err(), Some("RSA modulus size outside 2048..=8192 bits"));
    }

    #[test]
    fn a_jwk_alg_binds_the_key_to_that_alg() {
        let mut j = rsa_jwk(2048);
        j["alg"] = json!("RS256");
        let k = admit_key(&j, &ALL).unwrap();
        assert!(k.accepts(Algorithm::RS256));
        assert!(!k.accepts(Algorithm::PS256));
    }

    #[test]
    fn wrong_purpose_and_secret_keys_are_refused() {
        let cases = [
            (json!({"kty": "oct", "k": "c2VjcmV0"}), "private or symmetric key material"),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["use"] = json!("enc");
                    j
                },
                "use is not sig",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["key_ops"] = json!(["encrypt"]);
                    j
                },
                "key_ops does not include verify",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["alg"] = json!("RSA-OAEP");
                    j
                },
                "alg is not a supported signature algorithm",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["alg"] = json!("RS512");
                    j
                },
                "alg is not allowed for this issuer",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["alg"] = json!("ES256");
                    j
                },
                "alg does not match the key type",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["d"] = json!("AQAB");
                    j
                },
                "private or symmetric key material",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["kid"] = json!("k".repeat(300));
                    j
                },
                "kid too long",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["e"] = json!("AQ");
                    j
                },
                "RSA exponent must be odd and at least 3",
            ),
            (json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}), "unsupported curve"),
            (json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}), "unsupported curve"),
            (json!({"kty": "XYZ"}), "unsupported key type"),
            (json!("a string"), "not an object"),
        ];
        for (jwk, want) in cases {
            assert_eq!(admit_key(&jwk, &ALL).err(), Some(want), "{jwk}");
        }
    }

    #[test]
    fn one_odd_key_does_not_poison_the_set() {
        let doc = json!({"keys": [{"kty": "weird"}, rsa_jwk(2048), ec_jwk(), {"kty": "oct", "k": "AA"}]});
        let (keys, dropped) = parse_jwks(doc.to_string().as_bytes(), &ALL).unwrap();
        assert_eq!(keys.iter().map(|k| k.kind).collect::<Vec<_>>(), vec![KeyKind::Rsa, KeyKind::EcP256]);
        assert_eq!(dropped, 2);
    }

    #[test]
    fn dropped_keys_say_what_would_admit_them() {
        let mut eddsa =
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let doc = json!({"keys": [eddsa.clone(), {"kty": "oct", "kid": "hmac", "k": "AA"}, ec_jwk()]});
        let (keys, dropped) = parse_jwks_explained(doc.to_string().as_bytes(), &[Algorithm::RS256]).unwrap();
        assert!(keys.is_empty());
        assert_eq!(
            dropped,
            vec![
                DroppedKey {
                    kid: Some("ed".into()),
                    why: "EdDSA is not allowed for this issuer: add it to `algorithms`".into()
                },
                DroppedKey { kid: Some("hmac".into()), why: "private or symmetric key material".into() },
                DroppedKey {
                    kid: Some("e".into()),
                    why: "ES256 is not allowed for this issuer: add it to `algorithms`".into()
                },
            ]
        );
        eddsa["alg"] = json!("EdDSA");
        let (_, dropped) = parse_jwks_explained(json!({"keys": [eddsa]}).to_string().as_bytes(), &ALL).unwrap();
        assert_eq!(dropped[0].why, "EdDSA is not allowed for this issuer: add it to `algorithms`");
    }

    #[test]
    fn keys_sharing_a_kid_are_ambiguous_and_dropped() {
        let mut other = rsa_jwk(2048);
        other["n"] = json!(URL_SAFE_NO_PAD.encode(vec![0xd3u8; 256]));
        let doc = json!({"keys": [rsa_jwk(2048), other, ec_jwk()]});
        let (keys, dropped) = parse_jwks(doc.to_string().as_bytes(), &ALL).unwrap();
        assert_eq!(keys.iter().map(|k| k.kid.as_deref()).collect::<Vec<_>>(), vec![Some("e")]);
        assert_eq!(dropped, 2);
    }

    #[test]
    fn a_document_that_is_not_a_jwks_is_refused_whole() {
        assert!(parse_jwks(b"<html>", &ALL).is_none());
        assert!(parse_jwks(b"{\"keys\": {}}", &ALL).is_none());
        // A derived struct would take an array positionally; a JWKS is an object (found by fuzzing).
        assert!(parse_jwks(format!(" \n{}", json!([[ec_jwk()]])).as_bytes(), &ALL).is_none());
        assert_eq!(parse_jwks(json!({"keys": [ec_jwk()]}).to_string().as_bytes(), &ALL).unwrap().0.len(), 1);
        let many = json!({"keys": vec![rsa_jwk(2048); 101]});
        assert!(parse_jwks(many.to_string().as_bytes(), &ALL).is_none());
    }

    #[test]
    fn keys_for_algorithms_the_issuer_does_not_allow_are_ignored() {
        assert_eq!(admit_key(&ec_jwk(), &[Algorithm::RS256]).err(), Some("no allowed algorithm uses this key type"));
    }

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

    #[test]
    fn bit_length_ignores_leading_zero_bytes() {
        assert_eq!(bit_length(&[0, 0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[]), 0);
    }
}
