//! The authenticator: from a bearer token to a verdict.
//!
//! Order of work, cheapest first: size and shape checks, the result cache, the unverified peek
//! that routes by exact `iss`, the issuer's keys, signature and registered claims, then mapping.
//! Nothing before the signature check can make a token pass; everything fails closed.

pub mod distributed;
pub mod fetch;
pub mod introspect;
pub mod jwt;
pub mod keys;
pub mod strict_json;
pub mod userinfo;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation};
use moka::future::Cache;

use crate::config::{DEFAULT_ALGORITHMS, JwtAuthenticator, Settings};
use crate::mapping::ClaimMapper;
use crate::metrics::{IssuerResultLabels, Metrics};
use crate::review::{ReadyAnswer, ReviewStatus, UserInfo};
use keys::{KeySource, KeyStore, KeyTiming};

/// Why a token was refused. A small fixed vocabulary: used as log field and metric label, never
/// sent to the caller (a definite rejection carries no `error`, so kube-apiserver caches it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `spec.token` was empty.
    EmptyToken,
    /// Longer than `server.maxTokenBytes`.
    TokenTooLarge,
    /// Not a compact JWS, bad base64url or JSON, duplicate header or routing fields.
    MalformedToken,
    /// `iss` names no configured issuer.
    UnknownIssuer,
    /// No `iss` claim.
    MissingIssuer,
    /// `iss` is not a string, or does not match after verification.
    WrongIssuer,
    /// A header parameter we refuse (`jku`, `jwk`, `x5u`, `x5c`, `crit`, ...).
    HeaderNotAllowed,
    /// `alg` is not in the issuer's allow-list.
    AlgorithmNotAllowed,
    /// `kid` not in the issuer's key set, even after a refresh.
    UnknownKid,
    /// No key of the right type for the token's `alg`.
    NoMatchingKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// No `exp` claim.
    MissingExpiry,
    /// No `aud` claim.
    MissingAudience,
    /// `aud` contains none of the issuer's audiences.
    WrongAudience,
    /// A registered claim has the wrong type, or a mapped claim is not a string.
    InvalidClaim,
    /// The username claim is absent.
    UsernameClaimMissing,
    /// The username claim is the empty string.
    EmptyUsername,
    /// Username from `email` but `email_verified` is not `true`.
    EmailNotVerified,
    /// A name from a claim starts with `system:`.
    ReservedName,
    /// Groups claim is neither a string nor a list of strings.
    InvalidGroups,
    /// The configured uid claim is absent.
    UidClaimMissing,
    /// Control characters in a mapped name.
    InvalidCharacters,
    /// A `claimValidationRules` `claim` + `requiredValue` rule failed.
    ClaimRuleFailed,
    /// More groups than `groupRules.maxGroups`.
    TooManyGroups,
    /// A mapping or rule expression failed to evaluate (a missing claim, say) or gave a value
    /// of the wrong type.
    ExpressionFailed,
    /// A `userValidationRules` expression was not true.
    UserRuleFailed,
    /// The introspection endpoint did not say `active: true` (a JSON boolean).
    Inactive,
    /// The introspection response's `token_type` is not one of the endpoint's `tokenTypes`.
    WrongTokenType,
    /// The header `typ` is not one of the issuer's `headerTypes`.
    TypeNotAllowed,
    /// `exp - iat` is longer than the issuer's `maxLifetimeSeconds`.
    LifetimeTooLong,
    /// No numeric `iat`, and the issuer has a `maxLifetimeSeconds`.
    MissingIssuedAt,
    /// A distributed claim the mapping needs points at no source, at a source off the
    /// issuer's hosts, or its answer is not a valid JWT of the issuer holding the claim.
    DistributedClaimInvalid,
}

impl Reason {
    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::EmptyToken => "empty_token",
            Reason::TokenTooLarge => "token_too_large",
            Reason::MalformedToken => "malformed_token",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::MissingIssuer => "missing_issuer",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::HeaderNotAllowed => "header_not_allowed",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::UnknownKid => "unknown_kid",
            Reason::NoMatchingKey => "no_matching_key",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::MissingExpiry => "missing_exp",
            Reason::MissingAudience => "missing_aud",
            Reason::WrongAudience => "wrong_audience",
            Reason::InvalidClaim => "invalid_claim",
            Reason::UsernameClaimMissing => "username_claim_missing",
            Reason::EmptyUsername => "empty_username",
            Reason::EmailNotVerified => "email_not_verified",
            Reason::ReservedName => "reserved_name",
            Reason::InvalidGroups => "invalid_groups",
            Reason::UidClaimMissing => "uid_claim_missing",
            Reason::InvalidCharacters => "invalid_characters",
            Reason::ClaimRuleFailed => "claim_rule_failed",
            Reason::TooManyGroups => "too_many_groups",
            Reason::ExpressionFailed => "expression_failed",
            Reason::UserRuleFailed => "user_rule_failed",
            Reason::Inactive => "inactive",
            Reason::WrongTokenType => "wrong_token_type",
            Reason::TypeNotAllowed => "type_not_allowed",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::MissingIssuedAt => "missing_iat",
            Reason::DistributedClaimInvalid => "distributed_claim_invalid",
        }
    }
}

/// A failure on our side: the caller gets `status.error`, which kube-apiserver does not cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The token's issuer has no usable keys yet (provider down since startup, or misconfigured).
    IssuerKeys,
    /// `server.maxInFlight` reviews are already running.
    Busy,
    /// The review did not finish within `server.reviewTimeoutSeconds`.
    Timeout,
    /// The introspection endpoint failed, timed out or answered something that is not RFC 7662.
    Introspection,
    /// The introspection endpoint's call budget is spent for now.
    IntrospectionBudget,
    /// The issuer's userinfo endpoint, needed for the token's groups, failed or is not known.
    UserInfo,
    /// A distributed claims source the mapping needs failed, or its answer's key is not known yet.
    DistributedClaims,
}

impl Unavailable {
    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Unavailable::IssuerKeys => "issuer_keys_unavailable",
            Unavailable::Busy => "busy",
            Unavailable::Timeout => "timeout",
            Unavailable::Introspection => "introspection_unavailable",
            Unavailable::IntrospectionBudget => "introspection_budget_exhausted",
            Unavailable::UserInfo => "userinfo_unavailable",
            Unavailable::DistributedClaims => "distributed_claims_unavailable",
        }
    }

    /// The text sent in `status.error`: fixed, no URL, no token data.
    pub fn message(self) -> &'static str {
        match self {
            Unavailable::IssuerKeys => "signing keys for the token's issuer are not available yet; try again later",
            Unavailable::Busy => "the token review gateway is at capacity; try again later",
            Unavailable::Timeout => "the token review did not finish in time; try again later",
            Unavailable::Introspection => "the token introspection endpoint did not answer usably; try again later",
            Unavailable::IntrospectionBudget => {
                "the token introspection endpoint is at its call budget; try again later"
            }
            Unavailable::UserInfo => "the issuer's userinfo endpoint did not answer usably; try again later",
            Unavailable::DistributedClaims => "the token's claims source did not answer usably; try again later",
        }
    }
}

/// The steps of one review, for `review --explain`. Off on the serving path: nothing is
/// formatted unless it is on.
pub struct Trace {
    steps: Option<Vec<String>>,
}

impl Trace {
    /// Records nothing.
    pub fn off() -> Self {
        Trace { steps: None }
    }

    /// Records every step.
    pub fn on() -> Self {
        Trace { steps: Some(Vec::new()) }
    }

    /// Records a line.
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(steps) = &mut self.steps {
            steps.push(line());
        }
    }

    /// Records a step's result and passes it through.
    pub fn step<T: std::fmt::Debug>(
        &mut self,
        name: impl FnOnce() -> String,
        result: Result<T, Reason>,
    ) -> Result<T, Reason> {
        if let Some(steps) = &mut self.steps {
            match &result {
                Ok(value) => steps.push(format!("{}: ok {value:?}", name())),
                Err(reason) => steps.push(format!("{}: FAILED ({})", name(), reason.as_str())),
            }
        }
        result
    }

    /// The recorded lines.
    pub fn into_steps(self) -> Vec<String> {
        self.steps.unwrap_or_default()
    }
}

/// The result of a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A verified user.
    Authenticated(Arc<UserInfo>),
    /// A definite verdict against the token.
    Rejected(Reason),
    /// We could not decide.
    Unavailable(Unavailable),
}

impl Outcome {
    /// The TokenReview status for this outcome.
    pub fn status(&self) -> ReviewStatus {
        match self {
            Outcome::Authenticated(user) => {
                ReviewStatus { authenticated: true, user: Some(UserInfo::clone(user)), error: None }
            }
            Outcome::Rejected(_) => ReviewStatus { authenticated: false, user: None, error: None },
            Outcome::Unavailable(u) => {
                ReviewStatus { authenticated: false, user: None, error: Some(u.message().to_string()) }
            }
        }
    }

    /// `authenticated`, `rejected` or `error`.
    pub fn result_label(&self) -> &'static str {
        match self {
            Outcome::Authenticated(_) => "authenticated",
            Outcome::Rejected(_) => "rejected",
            Outcome::Unavailable(_) => "error",
        }
    }

    /// The reason label, empty when authenticated.
    pub fn reason_label(&self) -> &'static str {
        match self {
            Outcome::Authenticated(_) => "",
            Outcome::Rejected(r) => r.as_str(),
            Outcome::Unavailable(u) => u.as_str(),
        }
    }
}

/// An outcome plus what the logs need to know about it.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The outcome.
    pub outcome: Outcome,
    /// The issuer that handled the token, when routing got that far.
    pub issuer: Option<Arc<str>>,
    /// Whether it came from the result cache.
    pub cached: bool,
}

impl Verdict {
    /// A transient failure decided outside the authenticator (capacity, deadline).
    pub fn unavailable(why: Unavailable) -> Self {
        Verdict { outcome: Outcome::Unavailable(why), issuer: None, cached: false }
    }

    fn new(outcome: Outcome, issuer: Option<&Arc<Issuer>>) -> Self {
        Verdict { outcome, issuer: issuer.map(|i| Arc::clone(&i.url)), cached: false }
    }

    fn introspected(outcome: Outcome, endpoint: &introspect::Endpoint) -> Self {
        Verdict { outcome, issuer: Some(Arc::clone(&endpoint.label)), cached: false }
    }
}

static TOKEN_HASH_KEY: std::sync::OnceLock<aws_lc_rs::hmac::Key> = std::sync::OnceLock::new();

/// Sets the key of [`token_fingerprint`] (from `logging.tokenHashKeyFile`), so replicas and
/// restarts log the same fingerprint for the same token. Only the first call has an effect;
/// without one, a random per-process key is used.
pub fn set_token_hash_key(key: &[u8]) {
    let _ = TOKEN_HASH_KEY.set(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key));
}

/// A short token identifier for logs: the first 12 hex digits of HMAC-SHA-256 under a key the
/// log reader does not have, so a fingerprint neither reveals the token nor lets someone who
/// holds a token confirm that it was used.
pub fn token_fingerprint(token: &str) -> String {
    Fingerprint::of(token).to_string()
}

/// [`token_fingerprint`] before it is formatted: six bytes, no allocation, kept in cache entries
/// so a cache hit does not run the HMAC over the token again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 6]);

impl Fingerprint {
    /// The fingerprint of a token.
    pub fn of(token: &str) -> Fingerprint {
        let key = TOKEN_HASH_KEY.get_or_init(|| {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
                aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &std::process::id().to_le_bytes())
            })
        });
        let tag = aws_lc_rs::hmac::sign(key, token.as_bytes());
        let mut short = [0; 6];
        short.copy_from_slice(&tag.as_ref()[..6]);
        Fingerprint(short)
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// One configured issuer, compiled.
pub struct Issuer {
    /// The exact `iss` value.
    pub url: Arc<str>,
    /// Its keys.
    pub keys: Arc<KeyStore>,
    validations: Vec<(Algorithm, Validation)>,
    mapper: ClaimMapper,
    /// `introspect`: the endpoint that must also call a verified token active.
    introspect: Option<Arc<introspect::Endpoint>>,
    /// `userInfo`: the groups claim to fetch when a verified token lacks it.
    user_info_groups: Option<String>,
    /// `headerTypes`: the `typ` values allowed (unset: any).
    header_types: Option<Vec<String>>,
    /// `maxLifetimeSeconds`.
    max_lifetime: Option<u64>,
    /// The claims the mapping takes by name (`claim:`), resolved when distributed.
    mapped_claims: Vec<String>,
}

/// A verdict and, when it is one the cache keeps, its answer serialised ready to send.
#[derive(Debug, Clone)]
pub struct Reviewed {
    /// The verdict. NB: from a cache hit (`verdict.cached`), an authenticated user carries the
    /// username only (what the log line needs); the whole user is in `answer`, and
    /// [`Authenticator::review`] reads it back from there.
    pub verdict: Verdict,
    /// The whole response body in both versions; `None` for answers that are not cached
    /// (transient failures, or with the cache off): those are serialised when sent.
    pub answer: Option<ReadyAnswer>,
    /// The token's fingerprint, for the log line.
    pub fingerprint: Fingerprint,
}

/// A cache entry. NB: it lives inside moka's own entry and a hit clones it, so it holds no
/// allocation but the answer (and the issuer's shared name): the user is kept once, in the
/// answer's bytes, and the log line's username is read back from there.
#[derive(Clone)]
struct CachedVerdict {
    answer: ReadyAnswer,
    issuer: Option<Arc<str>>,
    outcome: CachedOutcome,
    fingerprint: Fingerprint,
    /// Served only while [`CacheClock::now`] is below this.
    deadline: u64,
}

/// The outcomes the cache keeps: transient failures are never cached.
#[derive(Debug, Clone, Copy)]
enum CachedOutcome {
    Authenticated,
    Rejected(Reason),
}

impl CachedVerdict {
    /// The reviewed answer, unless the entry is past its deadline (or, which cannot happen, its
    /// username does not read back): then it must not be served.
    fn reviewed(self, now: u64) -> Option<Reviewed> {
        if now >= self.deadline {
            return None;
        }
        let outcome = match self.outcome {
            CachedOutcome::Authenticated => {
                let username = self.answer.username()?;
                Outcome::Authenticated(Arc::new(UserInfo { username, ..UserInfo::default() }))
            }
            CachedOutcome::Rejected(reason) => Outcome::Rejected(reason),
        };
        let verdict = Verdict { outcome, issuer: self.issuer, cached: true };
        Some(Reviewed { verdict, answer: Some(self.answer), fingerprint: self.fingerprint })
    }
}

/// The entries' clock: whole milliseconds since the cache was made, on the monotonic clock.
///
/// NB: each entry carries its own deadline and [`Authenticator::review_ready`] checks it on every
/// hit, instead of moka's per-entry expiry, which keeps a timer-wheel node per entry (memory,
/// issue 8). moka's own `time_to_live` is only the longest lifetime any entry can have, so stale
/// entries still leave without being asked for.
struct CacheClock(Instant);

impl CacheClock {
    /// Now, in milliseconds.
    fn now(&self) -> u64 {
        whole_millis(self.0.elapsed())
    }

    /// Now, exactly.
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    /// The deadline of an entry made at `made` (from [`CacheClock::elapsed`]) that may live
    /// `ttl`. Both ends round down, so an entry is never served late: `now() < deadline` means
    /// floor(t) < floor(made + ttl), hence t < floor(t) + 1 <= made + ttl.
    fn deadline(made: Duration, ttl: Duration) -> u64 {
        whole_millis(made.saturating_add(ttl))
    }
}

fn whole_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// moka refuses a `time_to_live` over 1000 years; no entry needs one over a year.
const MAX_CACHE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Reviews tokens against the configured issuers.
pub struct Authenticator {
    issuers: HashMap<String, Arc<Issuer>>,
    opaque: introspect::Router,
    cache: Option<Cache<[u8; 32], CachedVerdict>>,
    clock: CacheClock,
    ttl: Duration,
    negative_ttl: Duration,
    max_token_bytes: usize,
    metrics: Arc<Metrics>,
    token_fetch_wait: Duration,
}

// Kubernetes keeps one legacy exception to exact issuer matching (Google's old `iss`).
const GOOGLE_LEGACY_ISS: &str = "accounts.google.com";
const GOOGLE_ISSUER: &str = "https://accounts.google.com";

impl Authenticator {
    /// Compiles validated settings. Must run inside a Tokio runtime: key fetches triggered by
    /// tokens are spawned onto it.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| "no Tokio runtime".to_string())?;
        let endpoints = settings
            .introspection
            .iter()
            .enumerate()
            .map(|(i, e)| {
                introspect::Endpoint::compile(e, Arc::clone(&metrics))
                    .map(Arc::new)
                    .map_err(|m| format!("introspection[{i}]: {m}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut issuers = HashMap::new();
        for (i, a) in settings.jwt.iter().enumerate() {
            let mut issuer = compile_issuer(a, settings, runtime.clone(), Arc::clone(&metrics))
                .map_err(|e| format!("jwt[{i}]: {e}"))?;
            issuer.introspect = a.introspect.as_ref().and_then(|n| endpoints.iter().find(|e| &*e.name == n)).cloned();
            issuers.insert(a.issuer.url.clone(), Arc::new(issuer));
        }
        let c = &settings.cache;
        let (ttl, negative_ttl) = (Duration::from_secs(c.ttl_seconds), Duration::from_secs(c.negative_ttl_seconds));
        let cache = (c.max_entries > 0).then(|| {
            Cache::builder()
                .max_capacity(c.max_entries)
                .weigher(entry_weight)
                .time_to_live(ttl.max(negative_ttl).min(MAX_CACHE_LIFETIME))
                .build()
        });
        let k = &settings.keys;
        Ok(Authenticator {
            issuers,
            opaque: introspect::Router::new(&endpoints),
            cache,
            clock: CacheClock(Instant::now()),
            ttl,
            negative_ttl,
            max_token_bytes: settings.server.max_token_bytes,
            metrics,
            token_fetch_wait: Duration::from_secs(k.request_timeout_seconds * 2 + k.connect_timeout_seconds),
        })
    }

    /// The configured issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.issuers.values()
    }

    /// Reviews one token. `audiences` (from `spec.audiences`) only partitions the cache: like
    /// kube-apiserver's own JWT authenticator we are audience-agnostic and return no audiences.
    pub async fn review(&self, token: &str, audiences: &[String]) -> Verdict {
        let Reviewed { mut verdict, answer, .. } = self.review_ready(token, audiences).await;
        if let (true, Outcome::Authenticated(_), Some(answer)) = (verdict.cached, &verdict.outcome, &answer) {
            match answer.user() {
                Some(user) => verdict.outcome = Outcome::Authenticated(Arc::new(user)),
                // Cannot happen (we wrote those bytes); decide again rather than guess.
                None => return self.review_uncached(token).await.0,
            }
        }
        verdict
    }

    /// [`Authenticator::review`], plus the answer ready to send when the verdict is cacheable.
    /// The fast path: a hit costs one hash of the token and audiences and one lookup, before any
    /// JWT work, and hands out bytes serialised when the entry was made.
    pub async fn review_ready(&self, token: &str, audiences: &[String]) -> Reviewed {
        let uncached = |verdict| Reviewed { verdict, answer: None, fingerprint: Fingerprint::of(token) };
        if token.is_empty() {
            return uncached(Verdict::new(Outcome::Rejected(Reason::EmptyToken), None));
        }
        if token.len() > self.max_token_bytes {
            return uncached(Verdict::new(Outcome::Rejected(Reason::TokenTooLarge), None));
        }
        let Some(cache) = &self.cache else {
            return uncached(self.review_uncached(token).await.0);
        };
        let key = cache_key(token, audiences);
        if let Some(hit) = cache.get(&key).await {
            if let Some(reviewed) = hit.reviewed(self.clock.now()) {
                self.metrics.cache_hits.inc();
                return reviewed;
            }
            // Past its deadline (moka keeps every entry for the longest lifetime any may have): a
            // miss, and gone.
            cache.invalidate(&key).await;
        }
        self.metrics.cache_misses.inc();
        let (verdict, expires_at) = self.review_uncached(token).await;
        // Read before the wall clock that `ttl` counts from, so the deadline errs early.
        let made = self.clock.elapsed();
        let Some(ttl) = cache_ttl(&verdict.outcome, expires_at, SystemTime::now(), self.ttl, self.negative_ttl) else {
            return uncached(verdict);
        };
        let outcome = match &verdict.outcome {
            Outcome::Authenticated(_) => CachedOutcome::Authenticated,
            Outcome::Rejected(reason) => CachedOutcome::Rejected(*reason),
            Outcome::Unavailable(_) => return uncached(verdict),
        };
        let (answer, fingerprint) = (ReadyAnswer::new(&verdict.outcome.status()), Fingerprint::of(token));
        let entry = CachedVerdict {
            answer: answer.clone(),
            issuer: verdict.issuer.clone(),
            outcome,
            fingerprint,
            deadline: CacheClock::deadline(made, ttl),
        };
        cache.insert(key, entry).await;
        Reviewed { verdict, answer: Some(answer), fingerprint }
    }

    /// Reviews a token without the cache, recording every step (`review --explain`).
    pub async fn explain(&self, token: &str) -> (Verdict, Vec<String>) {
        let mut trace = Trace::on();
        let verdict = if token.is_empty() {
            Verdict::new(Outcome::Rejected(Reason::EmptyToken), None)
        } else if token.len() > self.max_token_bytes {
            Verdict::new(Outcome::Rejected(Reason::TokenTooLarge), None)
        } else {
            self.review_traced(token, &mut trace).await.0
        };
        (verdict, trace.into_steps())
    }

    /// Returns the verdict and, when authenticated, the token's expiry.
    async fn review_uncached(&self, token: &str) -> (Verdict, Option<SystemTime>) {
        self.review_traced(token, &mut Trace::off()).await
    }

    async fn review_traced(&self, token: &str, trace: &mut Trace) -> (Verdict, Option<SystemTime>) {
        let rejected = |r, issuer| (Verdict::new(Outcome::Rejected(r), issuer), None);
        // Only a token that cannot be a JOSE object may be introspected, and only at the one
        // endpoint the operator's prefix rule picks: a JWT that fails its checks never leaks to
        // an introspection endpoint.
        if !jwt::is_jose_shaped(token)
            && let Some(endpoint) = self.opaque.route(token)
        {
            return self.review_opaque(endpoint, token, trace).await;
        }
        let peeked = match trace.step(|| "token shape (compact JWS, header, iss)".into(), jwt::peek(token)) {
            Ok(p) => p,
            Err(r) => return rejected(r, None),
        };
        let issuer = self
            .issuers
            .get(&peeked.iss)
            .or_else(|| (peeked.iss == GOOGLE_LEGACY_ISS).then(|| self.issuers.get(GOOGLE_ISSUER)).flatten());
        let Some(issuer) = issuer else {
            trace.note(|| format!("issuer: FAILED (no configured issuer is {:?})", peeked.iss));
            return rejected(Reason::UnknownIssuer, None);
        };
        trace.note(|| format!("issuer: ok {}", issuer.url));
        let Some((_, validation)) = issuer.validations.iter().find(|(a, _)| *a == peeked.alg) else {
            trace.note(|| format!("algorithm: FAILED ({:?} is not allowed for this issuer)", peeked.alg));
            return rejected(Reason::AlgorithmNotAllowed, Some(issuer));
        };
        trace.note(|| format!("algorithm: ok {:?}", peeked.alg));
        if let Some(types) = &issuer.header_types
            && !jwt::type_allowed(peeked.typ.as_deref(), types)
        {
            trace.note(|| format!("typ: FAILED ({:?} is not one of {types:?})", peeked.typ));
            return rejected(Reason::TypeNotAllowed, Some(issuer));
        }

        let kid = peeked.kid.as_deref();
        let seen_fetches = issuer.keys.attempts();
        let mut key_set = issuer.keys.current();
        let kid_unknown = |set: &Option<Arc<keys::KeySet>>| {
            set.as_ref().is_some_and(|s| matches!(jwt::candidates(s, peeked.alg, kid), jwt::Candidates::UnknownKid))
        };
        let known_absent = |seen| issuer.keys.absence_is_definite(seen);
        if kid_unknown(&key_set) && kid.is_some_and(|k| issuer.keys.recently_unknown(k)) && known_absent(seen_fetches) {
            return rejected(Reason::UnknownKid, Some(issuer));
        }
        if key_set.is_none() || kid_unknown(&key_set) {
            // Whether this request's fetch ran or another one's did (or the cooldown held), the
            // freshest set is whatever the store holds now.
            issuer.keys.refresh_for_token(seen_fetches, self.token_fetch_wait).await;
            key_set = issuer.keys.current();
            if let Some(kid) = kid.filter(|_| kid_unknown(&key_set) && known_absent(seen_fetches)) {
                issuer.keys.remember_unknown(kid).await;
            }
        }
        let Some(set) = key_set else {
            trace.note(|| "keys: FAILED (the issuer has no usable signing keys; see `check`)".into());
            return (Verdict::new(Outcome::Unavailable(Unavailable::IssuerKeys), Some(issuer)), None);
        };
        let keys = match jwt::candidates(&set, peeked.alg, peeked.kid.as_deref()) {
            jwt::Candidates::Keys(keys) => keys,
            jwt::Candidates::UnknownKid if !known_absent(seen_fetches) => {
                // Perhaps a rotation that a failed or unfinished fetch could not show us: a
                // rejection would be cached, and lock the user out after the provider is back.
                trace.note(|| format!("key: FAILED (kid {:?} unknown, and no recent fetch succeeded)", peeked.kid));
                return (Verdict::new(Outcome::Unavailable(Unavailable::IssuerKeys), Some(issuer)), None);
            }
            jwt::Candidates::UnknownKid => {
                trace.note(|| format!("key: FAILED (kid {:?} is not in the issuer's key set)", peeked.kid));
                return rejected(Reason::UnknownKid, Some(issuer));
            }
            jwt::Candidates::NoMatchingKey => {
                trace.note(|| "key: FAILED (no key of the issuer fits this algorithm and kid)".into());
                return rejected(Reason::NoMatchingKey, Some(issuer));
            }
        };
        trace.note(|| format!("key: ok {} candidate(s) for kid {:?}", keys.len(), peeked.kid));
        let claims = match jwt::verify(token, &keys, validation) {
            Ok(claims) => {
                trace.note(|| {
                    format!("signature, iss, aud, exp, nbf: ok (claims: {:?})", claims.keys().collect::<Vec<_>>())
                });
                claims
            }
            Err(r) => {
                trace.note(|| format!("signature, iss, aud, exp, nbf: FAILED ({})", r.as_str()));
                return rejected(r, Some(issuer));
            }
        };
        if let Some(max) = issuer.max_lifetime {
            let lifetime = match jwt::lifetime(&claims) {
                None => Err(Reason::MissingIssuedAt),
                Some(l) if l > max as f64 => Err(Reason::LifetimeTooLong),
                Some(l) => Ok(l),
            };
            if let Err(r) = trace.step(|| format!("lifetime (at most {max} s)"), lifetime) {
                return rejected(r, Some(issuer));
            }
        }
        let mut claims = claims;
        let wanted: Vec<&str> = issuer.mapped_claims.iter().map(String::as_str).collect();
        let resolver = distributed::Resolver { keys: &issuer.keys, validations: &issuer.validations };
        let distributed_exp = match resolver.resolve(&mut claims, &wanted).await {
            Ok(exp) => exp,
            Err(distributed::Failure::Unavailable(why)) => {
                tracing::warn!(issuer = %issuer.url, error = %why, "distributed claims could not be fetched");
                trace.note(|| format!("distributed claims: FAILED ({why})"));
                return (Verdict::new(Outcome::Unavailable(Unavailable::DistributedClaims), Some(issuer)), None);
            }
            Err(distributed::Failure::Refused(why)) => {
                trace.note(|| format!("distributed claims: FAILED ({why})"));
                return rejected(Reason::DistributedClaimInvalid, Some(issuer));
            }
        };
        if let Some(groups_claim) = &issuer.user_info_groups
            && userinfo::groups_missing(&claims, groups_claim)
        {
            let keys = &issuer.keys;
            let sub = claims.get("sub").and_then(serde_json::Value::as_str);
            let endpoint = keys.userinfo_endpoint();
            let fetched = userinfo::fetch_groups(
                keys.client(),
                endpoint.as_deref(),
                token,
                sub,
                groups_claim,
                keys.max_response_bytes(),
            )
            .await;
            let result = fetched.as_ref().map_or_else(userinfo::UserInfoError::label, |_| "ok");
            let labels = IssuerResultLabels { issuer: issuer.url.to_string(), result: result.to_string() };
            self.metrics.userinfo_requests.get_or_create(&labels).inc();
            match fetched {
                Ok(groups) => {
                    trace.note(|| format!("userinfo groups: ok {groups}"));
                    claims.insert(groups_claim.clone(), groups);
                }
                Err(e) => {
                    tracing::warn!(issuer = %issuer.url, error = %e, "userinfo groups lookup failed");
                    trace.note(|| format!("userinfo groups: FAILED ({e})"));
                    return (Verdict::new(Outcome::Unavailable(Unavailable::UserInfo), Some(issuer)), None);
                }
            }
        }
        let user = match issuer.mapper.map_traced(&claims, trace) {
            Ok(user) => user,
            Err(r) => return rejected(r, Some(issuer)),
        };
        let exp = claims.get("exp").and_then(serde_json::Value::as_f64).filter(|e| *e > 0.0);
        // A distributed claim is trusted until its own answer expires, at most.
        let exp = match (exp, distributed_exp) {
            (Some(e), Some(d)) => Some(e.min(d.max(0.0))),
            (e, _) => e,
        };
        let mut expires_at = exp.map(|e| UNIX_EPOCH + Duration::from_secs_f64(e.min(1e12)));
        if let Some(endpoint) = &issuer.introspect {
            match endpoint.introspect(token).await {
                Ok(active) => {
                    trace.note(|| format!("introspection at {}: ok (active)", endpoint.name));
                    expires_at = expires_at.map(|e| e.min(active.trust_until));
                }
                Err(failure) => {
                    trace.note(|| format!("introspection at {}: FAILED ({failure:?})", endpoint.name));
                    let outcome = match failure {
                        introspect::Failure::Rejected(r) => Outcome::Rejected(r),
                        introspect::Failure::Unavailable(u) => Outcome::Unavailable(u),
                    };
                    return (Verdict::new(outcome, Some(issuer)), None);
                }
            }
        }
        (Verdict::new(Outcome::Authenticated(Arc::new(user)), Some(issuer)), expires_at)
    }

    /// An opaque token at its one introspection endpoint: format gate, call, checks, mapping.
    async fn review_opaque(
        &self,
        endpoint: &introspect::Endpoint,
        token: &str,
        trace: &mut Trace,
    ) -> (Verdict, Option<SystemTime>) {
        trace.note(|| format!("opaque token: routed to introspection endpoint {}", endpoint.name));
        let finish = |outcome| (Verdict::introspected(outcome, endpoint), None);
        if !endpoint.accepts_format(token) {
            trace.note(|| "token format: FAILED (does not match the endpoint's opaqueTokens.pattern)".into());
            return finish(Outcome::Rejected(Reason::MalformedToken));
        }
        let active = match endpoint.introspect(token).await {
            Ok(active) => active,
            Err(introspect::Failure::Rejected(r)) => {
                trace.note(|| format!("introspection: FAILED ({})", r.as_str()));
                return finish(Outcome::Rejected(r));
            }
            Err(introspect::Failure::Unavailable(u)) => {
                trace.note(|| format!("introspection: FAILED ({})", u.as_str()));
                return finish(Outcome::Unavailable(u));
            }
        };
        trace.note(|| format!("introspection: ok active (fields: {:?})", active.claims.keys().collect::<Vec<_>>()));
        // Validation requires claimMappings on an endpoint that takes opaque tokens.
        let Some(mapper) = &endpoint.mapper else { return finish(Outcome::Rejected(Reason::UsernameClaimMissing)) };
        match mapper.map_traced(&active.claims, trace) {
            Ok(user) => {
                (Verdict::introspected(Outcome::Authenticated(Arc::new(user)), endpoint), Some(active.trust_until))
            }
            Err(r) => finish(Outcome::Rejected(r)),
        }
    }
}

fn compile_issuer(
    a: &JwtAuthenticator,
    settings: &Settings,
    runtime: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
) -> Result<Issuer, String> {
    let k = &settings.keys;
    let url = a.issuer.url.clone();
    let discovery_url = a
        .issuer
        .discovery_url
        .clone()
        .unwrap_or_else(|| format!("{}/.well-known/openid-configuration", url.trim_end_matches('/')));
    let names: Vec<String> = match &a.algorithms {
        Some(list) => list.clone(),
        None => DEFAULT_ALGORITHMS.iter().map(|s| s.to_string()).collect(),
    };
    let algorithms: Vec<Algorithm> = names
        .iter()
        .map(|n| n.parse::<Algorithm>().map_err(|_| format!("unsupported algorithm {n:?}")))
        .collect::<Result<_, _>>()?;
    let mut accepted_iss = vec![url.as_str()];
    if url == GOOGLE_ISSUER {
        accepted_iss.push(GOOGLE_LEGACY_ISS);
    }
    let leeway = a.clock_skew_seconds.unwrap_or(60);
    let validations = algorithms
        .iter()
        .map(|alg| (*alg, jwt::validation_for(*alg, &accepted_iss, &a.issuer.audiences, leeway)))
        .collect();
    let client = fetch::issuer_client(
        a.issuer.certificate_authority.as_deref(),
        Duration::from_secs(k.connect_timeout_seconds),
        Duration::from_secs(k.request_timeout_seconds),
        a.allow_loopback_http,
    )?;
    if a.allow_loopback_http {
        tracing::warn!(issuer = %url, "allowLoopbackHTTP is set: keys may be fetched without TLS (tests and local stacks only)");
    }
    let issuer_host = url::Url::parse(&url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
    let secs = Duration::from_secs;
    let source = KeySource {
        issuer: url.clone(),
        discovery_url,
        client,
        jwks_hosts: std::iter::once(issuer_host).chain(a.jwks_hosts.iter().cloned()).collect(),
        allow_loopback_http: a.allow_loopback_http,
        max_response_bytes: k.max_response_bytes,
        algorithms: algorithms.clone(),
        timing: KeyTiming {
            default_refresh: secs(k.refresh_interval_seconds),
            min_refresh: secs(k.min_refresh_seconds),
            max_refresh: secs(k.max_refresh_seconds),
            discovery_refresh: secs(k.discovery_refresh_seconds),
            retry: secs(k.retry_interval_seconds),
            max_retry: secs(k.max_retry_interval_seconds),
            max_staleness: secs(k.max_staleness_seconds),
            cooldown: secs(k.unknown_kid_cooldown_seconds),
        },
    };
    Ok(Issuer {
        url: Arc::from(url.as_str()),
        keys: Arc::new(KeyStore::new(source, runtime, metrics)),
        validations,
        mapper: ClaimMapper::from_settings(a)?,
        introspect: None,
        user_info_groups: a.user_info.as_ref().and_then(|u| {
            u.groups_claim.clone().or_else(|| a.claim_mappings.groups.as_ref().and_then(|g| g.claim.clone()))
        }),
        header_types: a.header_types.clone(),
        max_lifetime: a.max_lifetime_seconds,
        mapped_claims: mapped_claims(a),
    })
}

/// The claims `claimMappings` takes by name, which kube-apiserver resolves when they are
/// distributed (it does so for groups; we for username and uid too). With `userInfo`, the
/// groups claim comes from userinfo instead, as before.
fn mapped_claims(a: &JwtAuthenticator) -> Vec<String> {
    let m = &a.claim_mappings;
    let groups = m.groups.as_ref().and_then(|g| g.claim.clone()).filter(|_| a.user_info.is_none());
    let mut names: Vec<String> =
        [m.username.as_ref().and_then(|u| u.claim.clone()), groups, m.uid.as_ref().and_then(|u| u.claim.clone())]
            .into_iter()
            .flatten()
            .collect();
    names.sort();
    names.dedup();
    names
}

/// Bytes of answer that count as one entry of `cache.maxEntries`. A typical answer is under
/// this; one with hundreds of groups counts as many entries, so the capacity
/// bounds memory whatever the tokens look like, not just the number of entries.
const ENTRY_WEIGHT_BYTES: usize = 640;

fn entry_weight(_key: &[u8; 32], entry: &CachedVerdict) -> u32 {
    let bytes = entry.answer.len();
    u32::try_from(bytes / ENTRY_WEIGHT_BYTES).unwrap_or(u32::MAX).max(1)
}

/// How long a verdict may be reused: a positive one until the token's `exp` at most, a definite
/// rejection briefly, a transient failure never.
fn cache_ttl(
    outcome: &Outcome,
    expires_at: Option<SystemTime>,
    now: SystemTime,
    ttl: Duration,
    negative_ttl: Duration,
) -> Option<Duration> {
    let ttl = match outcome {
        Outcome::Authenticated(_) => expires_at?.duration_since(now).ok()?.min(ttl),
        Outcome::Rejected(_) => negative_ttl,
        Outcome::Unavailable(_) => return None,
    };
    (!ttl.is_zero()).then_some(ttl)
}

/// SHA-256 over length-prefixed token and audiences, so no two different requests share a key.
fn cache_key(token: &str, audiences: &[String]) -> [u8; 32] {
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in std::iter::once(token).chain(audiences.iter().map(String::as_str)) {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let mut key = [0; 32];
    key.copy_from_slice(h.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_differ_when_audiences_or_their_split_differ() {
        let a = cache_key("tok", &["x".into()]);
        assert_ne!(a, cache_key("tok", &[]));
        assert_ne!(a, cache_key("tok", &["y".into()]));
        assert_ne!(cache_key("tok", &["ab".into()]), cache_key("tok", &["a".into(), "b".into()]));
        assert_eq!(a, cache_key("tok", &["x".into()]));
    }

    #[test]
    fn a_large_answer_weighs_as_many_entries_as_it_is_long() {
        let entry = |groups: usize| {
            let user = UserInfo {
                username: "dev@example.com".into(),
                groups: (0..groups).map(|i| format!("oidc:engineering-team-{i:04}")).collect(),
                ..UserInfo::default()
            };
            let answer = ReadyAnswer::new(&Outcome::Authenticated(Arc::new(user)).status());
            let (outcome, fingerprint) = (CachedOutcome::Authenticated, Fingerprint::of("t"));
            CachedVerdict { answer, issuer: None, outcome, fingerprint, deadline: 1 }
        };
        assert_eq!(entry_weight(&[0; 32], &entry(2)), 1);
        let big = entry(200);
        assert!(entry_weight(&[0; 32], &big) as usize >= big.answer.len() / ENTRY_WEIGHT_BYTES);
        assert!(entry_weight(&[0; 32], &big) > 5, "{} bytes", big.answer.len());
    }

    #[test]
    fn a_cache_entry_stays_within_48_bytes_besides_its_answer() {
        // moka keeps the value inline in its own entry block; every 16 bytes more here is 1.5 MiB
        // at the default capacity (issue 8: 128 MiB with 100k cached reviews).
        assert!(std::mem::size_of::<CachedVerdict>() <= 48, "{}", std::mem::size_of::<CachedVerdict>());
    }

    #[test]
    fn positive_answers_are_never_cached_past_the_tokens_exp() {
        let now = SystemTime::now();
        let user = Outcome::Authenticated(Arc::new(UserInfo::default()));
        let (ttl, neg) = (Duration::from_secs(300), Duration::from_secs(10));
        let exp_in = |s| Some(now + Duration::from_secs(s));
        assert_eq!(cache_ttl(&user, exp_in(60), now, ttl, neg), Some(Duration::from_secs(60)));
        assert_eq!(cache_ttl(&user, exp_in(3600), now, ttl, neg), Some(ttl));
        assert_eq!(cache_ttl(&user, Some(now - Duration::from_secs(5)), now, ttl, neg), None);
        assert_eq!(cache_ttl(&user, None, now, ttl, neg), None);
    }

    #[test]
    fn rejections_are_cached_briefly_and_transient_failures_never() {
        let now = SystemTime::now();
        let (ttl, neg) = (Duration::from_secs(300), Duration::from_secs(10));
        assert_eq!(cache_ttl(&Outcome::Rejected(Reason::Expired), None, now, ttl, neg), Some(neg));
        assert_eq!(cache_ttl(&Outcome::Rejected(Reason::Expired), None, now, ttl, Duration::ZERO), None);
        assert_eq!(cache_ttl(&Outcome::Unavailable(Unavailable::IssuerKeys), None, now, ttl, neg), None);
    }

    #[test]
    fn an_entry_is_never_served_at_or_past_its_deadline() {
        let micros = Duration::from_micros;
        for made in (0..3000).step_by(7).map(micros) {
            for ttl in [0, 1, 999, 1000, 1001, 2500].map(micros) {
                let deadline = CacheClock::deadline(made, ttl);
                for t in (made.as_micros() as u64..made.as_micros() as u64 + 4000).map(micros) {
                    if whole_millis(t) < deadline {
                        assert!(t < made + ttl, "served at {t:?}, made {made:?} for {ttl:?}");
                    }
                }
            }
        }
        assert_eq!(whole_millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn fingerprint_is_short_hex_and_not_the_token() {
        let f = token_fingerprint("eyJhbGciOiJSUzI1NiJ9.e30.c2ln");
        assert_eq!(f.len(), 12);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(f, token_fingerprint("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"));
        assert_eq!(f, Fingerprint::of("eyJhbGciOiJSUzI1NiJ9.e30.c2ln").to_string());
    }

    #[test]
    fn the_cache_key_is_sha256_of_the_length_prefixed_parts() {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in ["tok", "aud"] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(cache_key("tok", &["aud".into()]), expected);
    }
}
