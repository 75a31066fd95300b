//! One configured issuer, compiled from its `jwt` entry: the exact `iss`, its key store, its
//! algorithm allow-list and claim policy, its claim mapper, and the optional introspection and
//! userinfo steps.

use std::sync::Arc;
use std::time::Duration;

use super::jwt::{Alg, ClaimPolicy};
use super::keys::{KeySource, KeyStore, KeyTiming};
use super::{fetch, introspect};
use crate::config::{DEFAULT_ALGORITHMS, JwtAuthenticator, Settings};
use crate::mapping::ClaimMapper;
use crate::metrics::Metrics;

/// One configured issuer, compiled.
pub struct Issuer {
    /// The exact `iss` value.
    pub url: Arc<str>,
    /// Its keys.
    pub keys: Arc<KeyStore>,
    /// The algorithms its tokens may be signed with (never HS* or `none`).
    pub(super) algorithms: Vec<Alg>,
    /// `iss`, `aud`, the clock skew.
    pub(super) policy: ClaimPolicy,
    pub(super) mapper: ClaimMapper,
    /// `introspect`: the endpoint that must also call a verified token active.
    pub(super) introspect: Option<Arc<introspect::Endpoint>>,
    /// `userInfo`: the groups claim to fetch when a verified token lacks it.
    pub(super) user_info_groups: Option<String>,
    /// `headerTypes`: the `typ` values allowed (unset: any).
    pub(super) header_types: Option<Vec<String>>,
    /// `maxLifetimeSeconds`.
    pub(super) max_lifetime: Option<u64>,
    /// The claims resolved when distributed: the groups `claim:`, unless userinfo supplies groups.
    pub(super) mapped_claims: Vec<String>,
}

// Kubernetes keeps one legacy exception to exact issuer matching (Google's old `iss`).
pub(super) const GOOGLE_LEGACY_ISS: &str = "accounts.google.com";
pub(super) const GOOGLE_ISSUER: &str = "https://accounts.google.com";

pub(super) fn compile_issuer(
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
    let algorithms: Vec<Alg> = names
        .iter()
        .map(|n| {
            n.parse::<Alg>().ok().filter(|a| Alg::ASYMMETRIC.contains(a)).ok_or(format!("unsupported algorithm {n:?}"))
        })
        .collect::<Result<_, _>>()?;
    let mut accepted_iss = vec![url.as_str()];
    if url == GOOGLE_ISSUER {
        accepted_iss.push(GOOGLE_LEGACY_ISS);
    }
    let leeway = a.clock_skew_seconds.unwrap_or(60);
    let policy = ClaimPolicy::new(&accepted_iss, &a.issuer.audiences, leeway);
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
        algorithms,
        policy,
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

/// The claims resolved when distributed: only the groups claim (`claim:` mapping), as in
/// kube-apiserver. A distributed username or uid is absent, so rejected as missing: resolving
/// them would take one claim from the answer while its companions (`email_verified` for an
/// `email` username) still come from the token. With `userInfo`, groups come from userinfo.
fn mapped_claims(a: &JwtAuthenticator) -> Vec<String> {
    let groups = a.claim_mappings.groups.as_ref().and_then(|g| g.claim.clone()).filter(|_| a.user_info.is_none());
    groups.into_iter().collect()
}
