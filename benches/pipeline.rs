//! `cargo bench`: the pieces of one review, each alone (BENCHMARKS.md). Nothing here is timed in
//! the tests; these are for comparing builds.
//!
//! Keys and tokens come from the development issuer (a real HTTPS issuer on loopback), fetched
//! through the gateway's own key store, so the verified keys are exactly the ones it serves with.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};
use tokenreview_gateway::authn::{Authenticator, jwt};
use tokenreview_gateway::config::{JwtAuthenticator, Settings};
use tokenreview_gateway::dev::DevIssuer;
use tokenreview_gateway::mapping::ClaimMapper;
use tokenreview_gateway::metrics::Metrics;
use tokenreview_gateway::review::{ApiVersion, ReadyAnswer, ReviewRequest, ReviewResponse};
use tokenreview_gateway::state::fetch_keys_at_startup;
use tokenreview_gateway::verdict::Outcome;

// NB: no EdDSA: the development issuer cannot sign with it (jsonwebtoken refuses the Ed25519
// PKCS#8 that rcgen writes), and the algorithm is opt-in.
const ALGORITHMS: [Algorithm; 4] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    issuer: DevIssuer,
    settings: Settings,
}

fn kid(alg: Algorithm) -> String {
    format!("{alg:?}-1").to_lowercase()
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let issuer = runtime.block_on(DevIssuer::start(&ALGORITHMS)).unwrap();
    let mut settings = issuer.gateway_settings("127.0.0.1:0");
    settings.jwt[0].algorithms = Some(ALGORITHMS.iter().map(|a| format!("{a:?}")).collect());
    Fixture { runtime, issuer, settings }
}

impl Fixture {
    fn authenticator(&self, cache_entries: u64) -> Authenticator {
        let mut settings = self.settings.clone();
        settings.cache.max_entries = cache_entries;
        self.runtime.block_on(async {
            let a = Authenticator::new(&settings, Arc::new(Metrics::new())).unwrap();
            fetch_keys_at_startup(&a, Duration::from_secs(10)).await;
            a
        })
    }

    fn token(&self, alg: Algorithm, groups: usize) -> String {
        let mut claims = self.issuer.claims("bench");
        claims["groups"] = json!((0..groups).map(|i| format!("team-{i:03}")).collect::<Vec<_>>());
        claims["hd"] = json!("example.com");
        self.issuer.sign(&kid(alg), &claims).unwrap()
    }
}

/// Decoding, signature and registered claims: `jwt::decode` then `jwt::verify` with the
/// issuer's admitted key (parsed once, at admission); and the same token through jsonwebtoken's
/// `decode` with a `DecodingKey` from the same JWK, the path this replaced.
fn verify(c: &mut Criterion) {
    let f = fixture();
    let authenticator = f.authenticator(0);
    let issuer = authenticator.issuers().next().unwrap();
    let set = issuer.keys.current().expect("keys fetched");
    let policy = jwt::ClaimPolicy::new(&[f.issuer.url()], &["kubernetes".to_string()], 60);
    let mut group = c.benchmark_group("verify");
    for alg in ALGORITHMS {
        let token = f.token(alg, 1);
        let ours: jwt::Alg = format!("{alg:?}").parse().unwrap();
        let jwt::Candidates::Keys(keys) = jwt::candidates(&set, ours, Some(&kid(alg))) else { panic!("no key") };
        let verify = |t: &str| jwt::verify(jwt::decode(t)?, &keys, &policy);
        assert!(verify(&token).is_ok());
        group.bench_function(format!("{alg:?}"), |b| b.iter(|| verify(black_box(&token))));
    }
    group.finish();

    let mut group = c.benchmark_group("verify_jsonwebtoken");
    for alg in ALGORITHMS {
        let token = f.token(alg, 1);
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(f.issuer.public_jwk(&kid(alg)).unwrap()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_issuer(&[f.issuer.url()]);
        validation.set_audience(&["kubernetes"]);
        let verify = |t: &str| jsonwebtoken::decode::<Map<String, Value>>(t, &key, &validation);
        assert!(verify(&token).is_ok());
        group.bench_function(format!("{alg:?}"), |b| b.iter(|| verify(black_box(&token))));
    }
    group.finish();

    // The whole uncached review: peek, route, key, verify, map (cache off).
    let mut group = c.benchmark_group("review_uncached");
    for alg in ALGORITHMS {
        let token = f.token(alg, 1);
        group.bench_function(format!("{alg:?}"), |b| {
            b.iter(|| {
                let v = f.runtime.block_on(authenticator.review(black_box(&token), &[]));
                assert!(matches!(v.outcome, Outcome::Authenticated(_)));
            })
        });
    }
    group.finish();
}

/// A cache hit: hash of token and audiences, lookup, the ready answer.
fn cache_hit(c: &mut Criterion) {
    let f = fixture();
    let authenticator = f.authenticator(100_000);
    let mut group = c.benchmark_group("cache_hit");
    for groups in [1, 200] {
        let token = f.token(Algorithm::ES256, groups);
        let audiences = vec!["https://kubernetes.default.svc".to_string()];
        let first = f.runtime.block_on(authenticator.review(&token, &audiences));
        assert!(matches!(first.outcome, Outcome::Authenticated(_)));
        group.throughput(Throughput::Bytes(token.len() as u64));
        group.bench_with_input(BenchmarkId::new("token_bytes", token.len()), &token, |b, token| {
            b.iter(|| {
                let hit = f.runtime.block_on(authenticator.review_ready(black_box(token), &audiences));
                assert!(hit.verdict.cached);
                hit
            })
        });
    }
    group.finish();
}

fn claims(groups: usize) -> Map<String, Value> {
    let groups: Vec<String> = (0..groups).map(|i| format!("team-{i:03}")).collect();
    let v = json!({
        "iss": "https://idp.example.com", "sub": "u-123", "aud": "kubernetes", "exp": 4_000_000_000u64,
        "email": "dev@example.com", "email_verified": true, "hd": "example.com", "jti": "j-1",
        "groups": groups,
    });
    v.as_object().cloned().unwrap()
}

fn mapper(entry: Value) -> ClaimMapper {
    let a: JwtAuthenticator = serde_json::from_value(entry).unwrap();
    ClaimMapper::from_settings(&a).unwrap()
}

/// Mapping alone: claim + prefix mappings with claim rules and group rules, and the same
/// through CEL expressions.
fn mapping(c: &mut Criterion) {
    let issuer = json!({"url": "https://idp.example.com", "audiences": ["kubernetes"]});
    let rules = mapper(json!({
        "issuer": issuer,
        "claimMappings": {
            "username": {"claim": "email", "prefix": ""},
            "groups": {"claim": "groups", "prefix": "oidc:"},
            "uid": {"claim": "sub"},
        },
        "claimValidationRules": [{"claim": "hd", "requiredValue": "example.com"}],
        "groupRules": {"rename": {"team-000": "admins"}, "deny": ["-tmp$"]},
    }));
    let cel = mapper(json!({
        "issuer": issuer,
        "claimMappings": {
            "username": {"expression": "claims.email"},
            "groups": {"expression": "claims.groups.map(g, 'oidc:' + g)"},
            "uid": {"expression": "claims.sub"},
            "extra": [{"key": "example.com/domain", "valueExpression": "claims.hd"}],
        },
        "claimValidationRules": [{"expression": "claims.hd == 'example.com'", "message": "wrong domain"}],
        "userValidationRules": [{"expression": "!user.username.startsWith('admin')", "message": "no"}],
    }));
    let mut group = c.benchmark_group("mapping");
    for groups in [3, 200] {
        let claims = claims(groups);
        assert!(rules.map(&claims).is_ok() && cel.map(&claims).is_ok());
        group.bench_with_input(BenchmarkId::new("claim_rules", groups), &claims, |b, c| b.iter(|| rules.map(c)));
        group.bench_with_input(BenchmarkId::new("cel", groups), &claims, |b, c| b.iter(|| cel.map(c)));
    }
    group.finish();
}

/// The wire format: parsing a request, serialising an answer, and the answer kept ready.
fn wire(c: &mut Criterion) {
    let f = fixture();
    let token = f.token(Algorithm::RS256, 8);
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token, "audiences": ["https://kubernetes.default.svc"]}})
    .to_string();
    let authenticator = f.authenticator(0);
    let verdict = f.runtime.block_on(authenticator.review(&token, &[]));
    let status = verdict.outcome.status();
    let ready = ReadyAnswer::new(&status);
    let mut group = c.benchmark_group("tokenreview");
    group.bench_function("parse", |b| b.iter(|| ReviewRequest::parse(black_box(body.as_bytes())).unwrap()));
    group.bench_function("serialise", |b| {
        b.iter(|| serde_json::to_vec(&ReviewResponse::new(ApiVersion::V1, status.clone())).unwrap())
    });
    group.bench_function("ready_answer", |b| b.iter(|| ready.body(black_box(ApiVersion::V1))));
    group.finish();
}

criterion_group!(benches, verify, cache_hit, mapping, wire);
criterion_main!(benches);
