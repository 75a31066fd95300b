//! Attack matrix, section K (keys, discovery, JWKS refresh). K01–K04, K08, K11 and K12 are
//! covered by `faults.rs` and `keys.rs` (see docs/security-tests.md); these add the rest.

use std::process::Command;

use jsonwebtoken::{Algorithm, Header};
use serde_json::json;
use tokenreview_gateway::dev::DevIssuer;

use crate::attack_kit::*;
use crate::helpers::*;

/// K06: wrong-purpose keys (beyond `use: enc` in `faults.rs`): an encryption `alg`, `key_ops`
/// without `verify`, private members. Each is the very key `rs256-1` signs with under another
/// kid, so only admission keeps it out.
#[tokio::test]
async fn wrong_purpose_keys_are_skipped_even_when_the_signature_would_verify() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let jwk = issuer.public_jwk("rs256-1").unwrap();
    let variants = [
        ("oaep", json!({"alg": "RSA-OAEP"})),
        ("wrap", json!({"key_ops": ["wrapKey", "encrypt"]})),
        ("ops-not-list", json!({"key_ops": "verify"})),
        ("private", json!({"d": "AQAB", "p": "AQAB", "q": "AQAB"})),
        ("use-num", json!({"use": 1})),
    ];
    for (kid, extra) in &variants {
        let mut k = jwk.clone();
        k["kid"] = json!(kid);
        for (name, value) in extra.as_object().unwrap() {
            k[name] = value.clone();
        }
        issuer.publish_raw(k);
    }
    let mut verifies = jwk.clone();
    verifies["kid"] = json!("ops-verify");
    verifies["key_ops"] = json!(["verify"]);
    issuer.publish_raw(verifies);
    let app = spawn_gateway(issuer, |_| {}).await;
    let url = app.issuer.url().to_string();
    assert_eq!(app.metric("tokenreview_gateway_keys", &[("issuer", &url)]).await, 2.0);
    let sign_as = |kid: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        app.issuer.sign_with_header("rs256-1", &header, &app.issuer.claims("alice")).unwrap()
    };
    for (kid, _) in &variants {
        assert_eq!(app.review(&sign_as(kid)).await, rejected(V1), "{kid}");
    }
    // Control: the same key with key_ops [verify] is admitted and verifies.
    assert_eq!(app.review(&sign_as("ops-verify")).await, authenticated(V1, "alice"));
}

/// K13: `HTTPS_PROXY` and friends in the environment are ignored: `check` reaches the issuer
/// directly and the would-be proxy sees no connection.
#[tokio::test]
async fn proxy_environment_variables_are_ignored() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let proxy = Tripwire::new();
    let proxy_url = proxy.url("").replace("https", "http");
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tokenreview-gateway"))
            .args(["check", "--config", config.path().to_str().unwrap()])
            .env("HTTPS_PROXY", &proxy_url)
            .env("https_proxy", &proxy_url)
            .env("ALL_PROXY", &proxy_url)
            .env("all_proxy", &proxy_url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(proxy.connections(), 0);
    assert!(issuer.jwks_requests() >= 1);
}

/// K14: no wildcard issuers: an issuer URL containing `*` is an exact string, so a concrete
/// issuer it would "match" is unknown and causes no request.
#[tokio::test]
async fn a_wildcard_issuer_url_matches_only_itself() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let pattern = format!("{}/id/*", issuer.url());
    let app = spawn_gateway(issuer, |s| s.jwt[0].issuer.url = pattern.clone()).await;
    let before = app.issuer.requests();
    let tokens: Vec<String> = [format!("{}/id/abc", app.issuer.url()), format!("{}/id/", app.issuer.url())]
        .iter()
        .map(|iss| app.token_with(|c| c["iss"] = json!(iss)))
        .collect();
    app.all_refused_because(false, "unknown_issuer", &tokens).await;
    assert_eq!(app.issuer.requests(), before);
}
