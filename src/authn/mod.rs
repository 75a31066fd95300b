//! The authenticator: from a bearer token to a verdict.
//!
//! Order of work, cheapest first, as README's "What is checked, in order" numbers it: size and
//! shape checks, the result cache, the unverified peek that routes by exact `iss`, the issuer's
//! keys, signature and registered claims, then mapping. Nothing before the signature check can
//! make a token pass; everything fails closed.

mod cache;
pub mod distributed;
mod explain;
pub mod fetch;
pub mod introspect;
mod issuer;
pub mod jwk;
pub mod jws;
pub mod jwt;
pub mod keys;
pub mod sign;
pub mod strict_json;
pub mod userinfo;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Settings;
use crate::fingerprint::{Fingerprint, TokenHash};
use crate::metrics::{IssuerResultLabels, Metrics};
use crate::verdict::{Outcome, Reason, Reviewed, Trace, Unavailable, Verdict};
use cache::ResultCache;
pub use issuer::Issuer;
use issuer::{GOOGLE_ISSUER, GOOGLE_LEGACY_ISS, compile_issuer};

/// Reviews tokens against the configured issuers.
pub struct Authenticator {
    issuers: HashMap<String, Arc<Issuer>>,
    opaque: introspect::Router,
    cache: Option<ResultCache>,
    max_token_bytes: usize,
    metrics: Arc<Metrics>,
    token_fetch_wait: Duration,
}

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
        let k = &settings.keys;
        Ok(Authenticator {
            issuers,
            opaque: introspect::Router::new(&endpoints),
            cache: ResultCache::new(&settings.cache),
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
        // 1. Size.
        if token.is_empty() {
            return uncached(verdict_of(Outcome::Rejected(Reason::EmptyToken), None));
        }
        if token.len() > self.max_token_bytes {
            return uncached(verdict_of(Outcome::Rejected(Reason::TokenTooLarge), None));
        }
        // 2. The result cache.
        let Some(cache) = &self.cache else {
            return uncached(self.review_uncached(token).await.0);
        };
        // One pass over the token for the key now and the fingerprint on a miss.
        let hash = TokenHash::of(token);
        let key = hash.key_with(audiences);
        if let Some(reviewed) = cache.get(&key).await {
            self.metrics.cache_hits.inc();
            return reviewed;
        }
        self.metrics.cache_misses.inc();
        let (verdict, expires_at) = self.review_uncached(token).await;
        cache.insert(key, hash.fingerprint(), verdict, expires_at).await
    }

    /// Reviews a token without the cache, recording every step (`review --explain`).
    pub async fn explain(&self, token: &str) -> (Verdict, Vec<String>) {
        let mut trace = Trace::on();
        let verdict = if token.is_empty() {
            verdict_of(Outcome::Rejected(Reason::EmptyToken), None)
        } else if token.len() > self.max_token_bytes {
            verdict_of(Outcome::Rejected(Reason::TokenTooLarge), None)
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
        let rejected = |r, issuer| (verdict_of(Outcome::Rejected(r), issuer), None);
        // 3. Shape. Only a token that cannot be a JOSE object may be introspected, and only at the
        // one endpoint the operator's prefix rule picks: a JWT that fails its checks never leaks
        // to an introspection endpoint. (A token that decodes is JOSE-shaped, so the shape is
        // only asked of one that does not: a JWT's header is decoded once.)
        let jws = match jwt::decode(token) {
            Ok(jws) => {
                trace.note(|| explain::token(&jws));
                jws
            }
            Err(r) => {
                if !jwt::is_jose_shaped(token)
                    && let Some(endpoint) = self.opaque.route(token)
                {
                    return self.review_opaque(endpoint, token, trace).await;
                }
                trace.note(|| format!("token: FAILED ({}): not a compact JWS this gateway accepts", r.as_str()));
                return rejected(r, None);
            }
        };
        // 4. Route by the unverified `iss`, exactly: an unknown issuer costs no network I/O.
        let iss = jws.iss();
        let issuer = self
            .issuers
            .get(iss)
            .or_else(|| (iss == GOOGLE_LEGACY_ISS).then(|| self.issuers.get(GOOGLE_ISSUER)).flatten());
        let Some(issuer) = issuer else {
            trace.note(|| format!("issuer: FAILED (unknown_issuer): no configured issuer is {iss:?}"));
            return rejected(Reason::UnknownIssuer, None);
        };
        trace.note(|| format!("issuer: ok {}", issuer.url));
        // 5. The issuer's algorithm allow-list, and its `headerTypes`.
        if !issuer.algorithms.contains(&jws.alg) {
            trace.note(|| {
                let allowed: Vec<&str> = issuer.algorithms.iter().map(|a| a.name()).collect();
                format!("algorithm: FAILED (algorithm_not_allowed): {} is not one of {}", jws.alg, allowed.join(", "))
            });
            return rejected(Reason::AlgorithmNotAllowed, Some(issuer));
        }
        trace.note(|| format!("algorithm: ok {}", jws.alg));
        if let Some(types) = &issuer.header_types
            && !jwt::type_allowed(jws.typ.as_deref(), types)
        {
            trace.note(|| format!("typ: FAILED ({:?} is not one of {types:?})", jws.typ));
            return rejected(Reason::TypeNotAllowed, Some(issuer));
        }

        // 6. The key, by `kid`, from this issuer's key set only.
        let (alg, kid) = (jws.alg, jws.kid.as_deref());
        let seen_fetches = issuer.keys.attempts();
        let mut key_set = issuer.keys.current();
        let kid_unknown = |set: &Option<Arc<keys::KeySet>>| {
            set.as_ref().is_some_and(|s| matches!(jwt::candidates(s, alg, kid), jwt::Candidates::UnknownKid))
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
            trace.note(|| match issuer.keys.last_error() {
                Some(e) => {
                    format!("keys: FAILED (issuer_keys_unavailable): no signing keys; the last fetch failed: {e}")
                }
                None => "keys: FAILED (issuer_keys_unavailable): no signing keys yet".into(),
            });
            return (verdict_of(Outcome::Unavailable(Unavailable::IssuerKeys), Some(issuer)), None);
        };
        let keys = match jwt::candidates(&set, alg, kid) {
            jwt::Candidates::Keys(keys) => keys,
            jwt::Candidates::UnknownKid if !known_absent(seen_fetches) => {
                // Perhaps a rotation that a failed or unfinished fetch could not show us: a
                // rejection would be cached, and lock the user out after the provider is back.
                trace.note(|| {
                    format!(
                        "key: FAILED (issuer_keys_unavailable): kid {:?} is unknown, and no fetch since the token \
                         was first seen succeeded",
                        kid.unwrap_or_default()
                    )
                });
                return (verdict_of(Outcome::Unavailable(Unavailable::IssuerKeys), Some(issuer)), None);
            }
            jwt::Candidates::UnknownKid => {
                trace.note(|| {
                    format!(
                        "key: FAILED (unknown_kid): kid {:?} is not in the issuer's key set",
                        kid.unwrap_or_default()
                    )
                });
                trace.because(|| explain::dropped(kid, &issuer.keys.dropped_keys()));
                return rejected(Reason::UnknownKid, Some(issuer));
            }
            jwt::Candidates::NoMatchingKey => {
                trace.note(|| "key: FAILED (no_matching_key): no key of the issuer fits this algorithm and kid".into());
                trace.because(|| explain::dropped(kid, &issuer.keys.dropped_keys()));
                return rejected(Reason::NoMatchingKey, Some(issuer));
            }
        };
        trace.note(|| explain::key(kid, keys.len()));
        // 7. Payload member names unique, signature, then `iss`, `aud`, `exp`, `nbf`; the lifetime.
        let claims = match jwt::verify(jws, &keys, &issuer.policy) {
            Ok(claims) => {
                trace.note(|| explain::verified(&claims));
                claims
            }
            Err(r) => {
                trace.note(|| {
                    let line = format!("signature, iss, aud, exp, nbf: FAILED ({})", r.as_str());
                    match explain::claim_check_failure(r, token, &issuer.policy) {
                        Some(detail) => format!("{line}: {detail}"),
                        None => line,
                    }
                });
                return rejected(r, Some(issuer));
            }
        };
        if let Some(max) = issuer.max_lifetime {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            let lifetime = jwt::lifetime_within(&claims, max, issuer.policy.leeway, now);
            if let Err(r) = trace.step(|| format!("lifetime (at most {max} s, iat not in the future)"), lifetime) {
                return rejected(r, Some(issuer));
            }
        }
        // 8. Distributed claims the mapping needs; groups from userinfo, when configured and the
        // token lacks them.
        let mut claims = claims;
        let wanted: Vec<&str> = issuer.mapped_claims.iter().map(String::as_str).collect();
        let resolver = distributed::Resolver {
            keys: &issuer.keys,
            algorithms: &issuer.algorithms,
            policy: &issuer.policy,
            token_fetch_wait: self.token_fetch_wait,
        };
        let distributed_exp = match resolver.resolve(&mut claims, &wanted).await {
            Ok(exp) => exp,
            Err(distributed::Failure::Unavailable(why)) => {
                tracing::warn!(issuer = %issuer.url, error = %why, "distributed claims could not be fetched");
                trace.note(|| format!("distributed claims: FAILED ({why})"));
                return (verdict_of(Outcome::Unavailable(Unavailable::DistributedClaims), Some(issuer)), None);
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
                    return (verdict_of(Outcome::Unavailable(Unavailable::UserInfo), Some(issuer)), None);
                }
            }
        }
        // 9. Mapping.
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
        // 10. The introspection endpoint must also call the token active.
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
                    return (verdict_of(outcome, Some(issuer)), None);
                }
            }
        }
        (verdict_of(Outcome::Authenticated(Arc::new(user)), Some(issuer)), expires_at)
    }

    /// An opaque token at its one introspection endpoint: format gate, call, checks, mapping.
    async fn review_opaque(
        &self,
        endpoint: &introspect::Endpoint,
        token: &str,
        trace: &mut Trace,
    ) -> (Verdict, Option<SystemTime>) {
        trace.note(|| format!("opaque token: routed to introspection endpoint {}", endpoint.name));
        let finish = |outcome| (introspected(outcome, endpoint), None);
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
            Ok(user) => (introspected(Outcome::Authenticated(Arc::new(user)), endpoint), Some(active.trust_until)),
            Err(r) => finish(Outcome::Rejected(r)),
        }
    }
}

/// The verdict of a JWT, with the issuer that handled it when routing got that far.
fn verdict_of(outcome: Outcome, issuer: Option<&Arc<Issuer>>) -> Verdict {
    Verdict { outcome, issuer: issuer.map(|i| Arc::clone(&i.url)), cached: false }
}

/// The verdict of a token sent to an introspection endpoint, labelled with the endpoint.
fn introspected(outcome: Outcome, endpoint: &introspect::Endpoint) -> Verdict {
    Verdict { outcome, issuer: Some(Arc::clone(&endpoint.label)), cached: false }
}
