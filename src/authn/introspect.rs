//! RFC 7662 token introspection: for opaque access tokens, and for revocation checks of JWTs of
//! issuers configured with `introspect`.
//!
//! The token goes to exactly one configured endpoint, chosen by the operator's prefix rule and
//! never by anything the token says. Only a boolean `active: true` with every configured field
//! check passing counts; anything the server does wrong is a transient error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use regex::Regex;
use serde_json::{Map, Value};

use super::fetch::{self, FetchError, Fetched};
use crate::config::{DEFAULT_OPAQUE_TOKEN_PATTERN, IntrospectionEndpoint};
use crate::mapping::ClaimMapper;
use crate::metrics::{EndpointResultLabels, Metrics};
use crate::verdict::{Reason, Unavailable};

/// One compiled `introspection` entry.
pub struct Endpoint {
    /// The entry's `name`.
    pub name: Arc<str>,
    /// `introspection:<name>`: what logs and metrics show in place of an issuer.
    pub label: Arc<str>,
    url: String,
    client: reqwest::Client,
    post_credentials: bool,
    client_id: String,
    secret: String,
    route: Option<Route>,
    issuer: Option<String>,
    audiences: Vec<String>,
    token_types: Vec<String>,
    require_exp: bool,
    cache_max: Duration,
    leeway: u64,
    max_response_bytes: usize,
    budget: Budget,
    /// The entry's mapping, for opaque tokens (absent on an entry used only for JWTs).
    pub mapper: Option<ClaimMapper>,
    metrics: Arc<Metrics>,
}

struct Route {
    prefix: String,
    pattern: Regex,
}

/// Why introspection did not produce an active token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A definite answer against the token.
    Rejected(Reason),
    /// The endpoint could not give one.
    Unavailable(Unavailable),
}

/// An active token: the response and how long it may be trusted.
pub struct Active {
    /// The introspection response.
    pub claims: Map<String, Value>,
    /// `exp`, capped by `cacheMaxSeconds` from now.
    pub trust_until: SystemTime,
}

impl Endpoint {
    /// Builds the client, reads the secret, compiles the route and the mapping.
    pub fn compile(e: &IntrospectionEndpoint, metrics: Arc<Metrics>) -> Result<Self, String> {
        let client = fetch::issuer_client(
            e.certificate_authority.as_deref(),
            Duration::from_secs(e.connect_timeout_seconds),
            Duration::from_secs(e.request_timeout_seconds),
            e.allow_loopback_http,
        )?;
        if e.allow_loopback_http {
            tracing::warn!(endpoint = %e.name, "allowLoopbackHTTP is set: tokens may be sent without TLS (tests only)");
        }
        let route = match &e.opaque_tokens {
            None => None,
            Some(r) => {
                let pattern = r.pattern.as_deref().unwrap_or(DEFAULT_OPAQUE_TOKEN_PATTERN);
                let pattern =
                    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("opaqueTokens.pattern: {e}"))?;
                Some(Route { prefix: r.prefix.clone(), pattern })
            }
        };
        let auth = &e.client_authentication;
        Ok(Endpoint {
            name: Arc::from(e.name.as_str()),
            label: Arc::from(format!("introspection:{}", e.name)),
            url: e.url.clone(),
            client,
            post_credentials: auth.method == "client_secret_post",
            client_id: auth.client_id.clone(),
            secret: auth.secret().map_err(|m| format!("clientAuthentication: {m}"))?,
            route,
            issuer: e.issuer.clone(),
            audiences: e.audiences.clone(),
            token_types: e.token_types.clone(),
            require_exp: e.require_exp,
            cache_max: Duration::from_secs(e.cache_max_seconds),
            leeway: e.clock_skew_seconds,
            max_response_bytes: e.max_response_bytes,
            budget: Budget::new(e.max_requests_per_second, e.burst),
            mapper: e.claim_mappings.as_ref().map(|_| ClaimMapper::from_settings(&e.as_mapping())).transpose()?,
            metrics,
        })
    }

    /// Whether the token has the shape this endpoint's tokens have (checked before any call).
    pub fn accepts_format(&self, token: &str) -> bool {
        self.route.as_ref().is_some_and(|r| r.pattern.is_match(token))
    }

    /// Asks the endpoint about `token` and applies every check.
    pub async fn introspect(&self, token: &str) -> Result<Active, Failure> {
        if !self.budget.try_take(Instant::now()) {
            self.count("budget_exhausted");
            tracing::warn!(endpoint = %self.name, "introspection budget exhausted; answering with a transient error");
            return Err(Failure::Unavailable(Unavailable::IntrospectionBudget));
        }
        let response = match self.call(token).await {
            Ok(r) => r,
            Err(e) => {
                self.count(e.label());
                tracing::warn!(endpoint = %self.name, error = %e, "introspection failed");
                return Err(Failure::Unavailable(Unavailable::Introspection));
            }
        };
        let result = check_response(response, self, SystemTime::now());
        self.count(match &result {
            Ok(_) => "active",
            Err(Failure::Rejected(Reason::Inactive)) => "inactive",
            Err(_) => "refused",
        });
        result
    }

    /// For `check`: asks about a made-up token. A working endpoint authenticates our client
    /// and answers `active: false`; anything else names the endpoint and what went wrong.
    pub async fn probe(&self) -> Result<(), String> {
        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness for a probe token".to_string())?;
        let token: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        match self.call(&format!("tokenreview-gateway-check-{token}")).await {
            Ok(answer) => match answer.get("active") {
                Some(Value::Bool(false)) => Ok(()),
                Some(Value::Bool(true)) => Err(format!("{} calls a made-up token active", self.url)),
                _ => Err(format!("{} answered without a boolean `active` (not RFC 7662)", self.url)),
            },
            Err(FetchError::Status { url, status: status @ (401 | 403) }) => Err(format!(
                "{url} answered HTTP {status}: it did not accept our client credentials (clientAuthentication)"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn call(&self, token: &str) -> Result<Map<String, Value>, FetchError> {
        let mut form = vec![("token", token), ("token_type_hint", "access_token")];
        let mut request = self.client.post(&self.url);
        if self.post_credentials {
            form.push(("client_id", &self.client_id));
            form.push(("client_secret", &self.secret));
        } else {
            // RFC 6749 2.3.1: both parts are form-urlencoded before they are joined.
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(encode(&self.client_id), Some(encode(&self.secret)));
        }
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let request = request.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body);
        let Fetched { body, .. } = fetch::send_bounded(request, &self.url, self.max_response_bytes).await?;
        super::strict_json::object(&body)
            .ok_or(FetchError::InvalidDocument { url: self.url.clone(), what: "introspection response" })
    }

    fn count(&self, result: &str) {
        let labels = EndpointResultLabels { endpoint: self.name.to_string(), result: result.to_string() };
        self.metrics.introspection_requests.get_or_create(&labels).inc();
    }
}

/// RFC 7662 section 2.2 plus the configured field checks, in a fixed order.
fn check_response(claims: Map<String, Value>, e: &Endpoint, now: SystemTime) -> Result<Active, Failure> {
    use Failure::Rejected;
    if claims.get("active") != Some(&Value::Bool(true)) {
        return Err(Rejected(Reason::Inactive));
    }
    let now_secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let number = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or(Rejected(Reason::InvalidClaim)),
        Some(_) => Err(Rejected(Reason::InvalidClaim)),
    };
    let exp = number("exp")?;
    match exp {
        None if e.require_exp => return Err(Rejected(Reason::MissingExpiry)),
        Some(exp) if exp + e.leeway as f64 <= now_secs => return Err(Rejected(Reason::Expired)),
        _ => {}
    }
    if number("nbf")?.is_some_and(|nbf| nbf > now_secs + e.leeway as f64) {
        return Err(Rejected(Reason::NotYetValid));
    }
    if let Some(issuer) = &e.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
    {
        return Err(Rejected(Reason::WrongIssuer));
    }
    if !e.audiences.is_empty() {
        let mut presented: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        presented.extend(claims.get("client_id").and_then(Value::as_str));
        if !presented.iter().any(|p| e.audiences.iter().any(|a| a == p)) {
            return Err(Rejected(Reason::WrongAudience));
        }
    }
    if !e.token_types.is_empty() {
        let token_type = claims.get("token_type").and_then(Value::as_str).unwrap_or("");
        if !e.token_types.iter().any(|t| t.eq_ignore_ascii_case(token_type)) {
            return Err(Rejected(Reason::WrongTokenType));
        }
    }
    let window = now + e.cache_max;
    let trust_until = match exp {
        Some(exp) => (UNIX_EPOCH + Duration::from_secs_f64(exp.clamp(0.0, 1e12))).min(window),
        None => window,
    };
    Ok(Active { claims, trust_until })
}

/// The endpoints that take opaque tokens, longest prefix first.
#[derive(Default)]
pub struct Router {
    endpoints: Vec<Arc<Endpoint>>,
}

impl Router {
    /// Orders the routed endpoints for [`Router::route`].
    pub fn new(all: &[Arc<Endpoint>]) -> Self {
        let mut endpoints: Vec<Arc<Endpoint>> = all.iter().filter(|e| e.route.is_some()).cloned().collect();
        endpoints.sort_by_key(|e| std::cmp::Reverse(e.route.as_ref().map_or(0, |r| r.prefix.len())));
        Router { endpoints }
    }

    /// The one endpoint whose prefix is the longest that the token starts with.
    pub fn route(&self, token: &str) -> Option<&Arc<Endpoint>> {
        self.endpoints.iter().find(|e| e.route.as_ref().is_some_and(|r| token.starts_with(&r.prefix)))
    }
}

/// A token bucket: `rate` calls per second sustained, `burst` at once. Refused calls never
/// reach the endpoint, so a flood of random strings costs the provider a bounded rate.
struct Budget {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Budget { rate: f64::from(rate), burst, state: Mutex::new((burst, Instant::now())) }
    }

    fn try_take(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = *state;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        let (left, ok) = if refilled >= 1.0 { (refilled - 1.0, true) } else { (refilled, false) };
        *state = (left, now.max(last));
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoint(extra: Value) -> Endpoint {
        // One file per endpoint: tests run in parallel.
        let secret = tempfile::NamedTempFile::new().unwrap().into_temp_path().keep().unwrap();
        std::fs::write(&secret, "s3cret").unwrap();
        let mut entry = json!({
            "name": "test",
            "url": "https://idp.example.com/introspect",
            "clientAuthentication": {"clientID": "gw", "clientSecretFile": secret},
            "opaqueTokens": {"prefix": ""},
            "claimMappings": {"username": {"claim": "sub", "prefix": "x:"}},
        });
        entry.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let e: IntrospectionEndpoint = serde_json::from_value(entry).unwrap();
        Endpoint::compile(&e, Arc::new(Metrics::new())).unwrap()
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const NOW: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn only_a_boolean_true_active_counts() {
        let e = endpoint(json!({}));
        for bad in [json!({"active": "true"}), json!({"active": 1}), json!({}), json!({"active": false})] {
            assert_eq!(
                check_response(claims(bad.clone()), &e, at(NOW)).err(),
                Some(Failure::Rejected(Reason::Inactive)),
                "{bad}"
            );
        }
        assert!(check_response(claims(json!({"active": true, "sub": "a"})), &e, at(NOW)).is_ok());
    }

    #[test]
    fn a_past_exp_is_a_rejection_even_when_active() {
        let e = endpoint(json!({}));
        let r = check_response(claims(json!({"active": true, "exp": NOW - 1})), &e, at(NOW));
        assert_eq!(r.err(), Some(Failure::Rejected(Reason::Expired)));
        let r = check_response(claims(json!({"active": true, "exp": "soon"})), &e, at(NOW));
        assert_eq!(r.err(), Some(Failure::Rejected(Reason::InvalidClaim)));
        let r = check_response(claims(json!({"active": true, "nbf": NOW + 60})), &e, at(NOW));
        assert_eq!(r.err(), Some(Failure::Rejected(Reason::NotYetValid)));
        let e = endpoint(json!({"requireExp": true}));
        let r = check_response(claims(json!({"active": true})), &e, at(NOW));
        assert_eq!(r.err(), Some(Failure::Rejected(Reason::MissingExpiry)));
    }

    #[test]
    fn trust_ends_at_exp_or_the_revocation_window_whichever_is_first() {
        let e = endpoint(json!({"cacheMaxSeconds": 30}));
        let soon = check_response(claims(json!({"active": true, "exp": NOW + 10})), &e, at(NOW)).unwrap();
        assert_eq!(soon.trust_until, at(NOW + 10));
        let late = check_response(claims(json!({"active": true, "exp": NOW + 3600})), &e, at(NOW)).unwrap();
        assert_eq!(late.trust_until, at(NOW + 30));
        let none = check_response(claims(json!({"active": true})), &e, at(NOW)).unwrap();
        assert_eq!(none.trust_until, at(NOW + 30));
    }

    #[test]
    fn required_issuer_audience_and_token_type_are_enforced() {
        let e = endpoint(
            json!({"issuer": "https://idp.example.com", "audiences": ["kubernetes"], "tokenTypes": ["Bearer"]}),
        );
        let ok = json!({"active": true, "iss": "https://idp.example.com", "client_id": "kubernetes", "token_type": "bearer"});
        assert!(check_response(claims(ok.clone()), &e, at(NOW)).is_ok());
        let with = |k: &str, v: Value| {
            let mut c = claims(ok.clone());
            c.insert(k.into(), v);
            check_response(c, &e, at(NOW)).err()
        };
        assert_eq!(with("iss", json!("https://other")), Some(Failure::Rejected(Reason::WrongIssuer)));
        assert_eq!(with("client_id", json!("other-app")), Some(Failure::Rejected(Reason::WrongAudience)));
        assert_eq!(with("token_type", json!("refresh_token")), Some(Failure::Rejected(Reason::WrongTokenType)));
        // `aud` may name the audience instead of client_id.
        let mut by_aud = claims(ok.clone());
        by_aud.insert("client_id".into(), json!("some-app"));
        by_aud.insert("aud".into(), json!(["x", "kubernetes"]));
        assert!(check_response(by_aud, &e, at(NOW)).is_ok());
    }

    #[test]
    fn duplicate_keys_make_the_response_invalid() {
        assert!(crate::authn::strict_json::object(br#"{"active":false,"active":true}"#).is_none());
        assert!(crate::authn::strict_json::object(br#"[true]"#).is_none());
        assert_eq!(crate::authn::strict_json::object(br#"{"active":true}"#).unwrap()["active"], json!(true));
    }

    #[test]
    fn the_budget_allows_the_burst_then_the_rate() {
        let b = Budget::new(10, 5);
        let t0 = Instant::now();
        assert_eq!((0..20).filter(|_| b.try_take(t0)).count(), 5);
        // 10 per second: one more call every 100 ms.
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(150)));
        assert_eq!((0..20).filter(|_| b.try_take(t0 + Duration::from_secs(60))).count(), 5);
    }

    #[test]
    fn the_default_format_gate_refuses_what_no_server_issues() {
        let e = endpoint(json!({}));
        assert!(e.accepts_format("glpat-AbCdEfGhIjKlMnOpQrSt"));
        for bad in ["short", "has space in it 123456", "quote\"quote\"quote\"quote", &"a".repeat(5000)] {
            assert!(!e.accepts_format(bad), "{bad}");
        }
    }
}
