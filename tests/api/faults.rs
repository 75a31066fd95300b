//! Fault injection against the real HTTPS issuer: rotation, outages, floods, hostile answers.
//! Assertions are on counts and outcomes, never on durations.

use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, Header};
use serde_json::json;
use tokenreview_gateway::dev::{DevIssuer, Fault};

use crate::helpers::*;

#[tokio::test]
async fn rotation_accepts_the_new_kid_after_one_fetch_and_rejects_a_removed_kid_after_a_refresh() {
    let app = spawn_app_with(fast_keys).await;
    let new_kid = app.issuer.add_key(Algorithm::RS256).unwrap();
    assert_eq!(app.review(&app.token(&new_kid, "alice")).await, authenticated(V1, "alice"));
    assert_eq!(app.issuer.jwks_requests(), 2, "exactly one fetch for the new kid");

    app.issuer.unpublish("rs256-1");
    app.fetch_until("ok").await;
    assert_eq!(app.review(&app.token("rs256-1", "bob")).await, rejected(V1), "removed key");
    assert_eq!(app.review(&app.token(&new_kid, "carol")).await, authenticated(V1, "carol"));
}

#[tokio::test]
async fn an_outage_of_every_kind_keeps_known_keys_working_and_recovery_brings_new_keys() {
    let app = spawn_app_with(fast_keys).await;
    // Keys "expire" every second, so the outage outlasts the cache lifetime many times over.
    app.issuer.set_max_age(Some(1));
    let mut n = 0;
    let mut assert_still_authenticated = async |app: &TestApp| {
        n += 1;
        let sub = format!("user{n}");
        assert_eq!(app.review(&app.token("es256-1", &sub)).await, authenticated(V1, &sub));
    };
    for (fault, result) in [
        (Fault::Status(500), "http_status"),
        (Fault::Garbage, "invalid_document"),
        (Fault::EmptyKeys, "no_usable_keys"),
        (Fault::HtmlContentType, "not_json"),
    ] {
        app.issuer.set_fault(fault);
        app.fetch_until(result).await;
        assert_still_authenticated(&app).await;
    }
    app.issuer.stop().await;
    app.fetch_until("request_failed").await;
    assert_still_authenticated(&app).await;
    assert_eq!(app.get("/readyz").await.0, 200, "the last good keys are still fresh enough");

    app.issuer.set_fault(Fault::None);
    app.issuer.resume().unwrap();
    let new_kid = app.issuer.add_key(Algorithm::ES256).unwrap();
    assert!(app.eventually_authenticated(&new_kid).await, "a key published after the outage is accepted");
}

#[tokio::test]
async fn keys_older_than_the_maximum_staleness_are_not_trusted_until_a_fetch_succeeds() {
    let app = spawn_app_with(|s| {
        fast_keys(s);
        s.keys.max_staleness_seconds = 1;
    })
    .await;
    app.issuer.stop().await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let answer = app.review(&app.token("rs256-1", "alice")).await;
    assert_eq!(answer["status"]["authenticated"], false);
    assert!(answer["status"]["error"].is_string(), "stale keys are a transient failure: {answer}");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("has only stale signing keys"), "{body}");

    app.issuer.resume().unwrap();
    assert!(app.eventually_authenticated("rs256-1").await);
    assert_eq!(app.get("/readyz").await.0, 200);
}

/// Sends `count` reviews with at most 64 in flight; returns how many were authenticated.
async fn flood(app: &TestApp, count: usize, token: impl Fn(usize) -> String) -> usize {
    use futures_util::StreamExt;
    let authenticated = AtomicUsize::new(0);
    futures_util::stream::iter(0..count)
        .for_each_concurrent(64, |i| {
            let body = review_body(V1, &token(i));
            let authenticated = &authenticated;
            async move {
                let (status, answer) = app.post_review(&body).await;
                assert_eq!(status, 200);
                if answer["status"]["authenticated"] == true {
                    authenticated.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    authenticated.into_inner()
}

#[tokio::test]
async fn ten_thousand_random_kids_cause_at_most_one_fetch_per_cooldown() {
    let app = spawn_app().await;
    let before = app.issuer.jwks_requests();
    let header = |i: usize| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(format!("random-{i}"));
        h
    };
    let claims = app.issuer.claims("eve");
    let tokens: Vec<String> =
        (0..10_000).map(|i| app.issuer.sign_with_header("es256-1", &header(i), &claims).unwrap()).collect();
    assert_eq!(flood(&app, tokens.len(), |i| tokens[i].clone()).await, 0);
    assert!(app.issuer.jwks_requests() - before <= 1, "{} fetches", app.issuer.jwks_requests() - before);
    assert_eq!(app.review(&app.token("rs256-1", "alice")).await, authenticated(V1, "alice"), "valid tokens unaffected");
}

#[tokio::test]
async fn ten_thousand_random_issuers_cause_no_fetch() {
    let app = spawn_app().await;
    let before = app.issuer.requests();
    let tokens: Vec<String> = (0..10_000)
        .map(|i| {
            let mut claims = app.issuer.claims("eve");
            claims["iss"] = json!(format!("https://issuer-{i}.example.com"));
            app.issuer.sign("es256-1", &claims).unwrap()
        })
        .collect();
    assert_eq!(flood(&app, tokens.len(), |i| tokens[i].clone()).await, 0);
    assert_eq!(app.issuer.requests(), before);
}

#[tokio::test]
async fn a_cold_start_under_load_makes_one_discovery_and_one_jwks_request() {
    let issuer = DevIssuer::start(&[Algorithm::ES256]).await.unwrap();
    let token = issuer.sign("es256-1", &issuer.claims("alice")).unwrap();
    let app = spawn_gateway(issuer, |s| s.keys.startup_wait_seconds = 0).await;
    assert_eq!(flood(&app, 1000, |_| token.clone()).await, 1000);
    assert_eq!((app.issuer.discovery_requests(), app.issuer.jwks_requests()), (1, 1));
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let app = spawn_app_with(fast_keys).await;
    let elsewhere = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    app.issuer.set_fault(Fault::Redirect(format!("{}/keys", elsewhere.url())));
    app.fetch_until("http_status").await;
    assert_eq!(elsewhere.requests(), 0);
    assert_eq!(app.review(&app.token("rs256-1", "alice")).await, authenticated(V1, "alice"));
}

#[tokio::test]
async fn a_ten_megabyte_jwks_is_cut_off_at_the_cap() {
    let app = spawn_app_with(fast_keys).await;
    app.issuer.set_fault(Fault::Huge(10 * 1024 * 1024));
    app.fetch_until("too_large").await;
    assert_eq!(app.review(&app.token("rs256-1", "alice")).await, authenticated(V1, "alice"));
}

#[tokio::test]
async fn a_dripping_jwks_is_abandoned_at_the_deadline() {
    let app = spawn_app_with(|s| {
        fast_keys(s);
        s.keys.request_timeout_seconds = 2;
    })
    .await;
    app.issuer.set_fault(Fault::Drip);
    app.fetch_until("request_failed").await;
    assert_eq!(app.review(&app.token("rs256-1", "alice")).await, authenticated(V1, "alice"));
}

#[tokio::test]
async fn unusable_keys_are_dropped_and_the_good_ones_kept() {
    let issuer = DevIssuer::start(&[Algorithm::RS256, Algorithm::ES256]).await.unwrap();
    issuer.publish_raw(json!({"kty": "weird", "kid": "weird-1"}));
    let weak_modulus = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [0xc5u8; 128]);
    issuer.publish_raw(json!({"kty": "RSA", "kid": "weak-1", "n": weak_modulus, "e": "AQAB"}));
    let mut for_encryption = issuer.public_jwk("rs256-1").unwrap();
    for_encryption["kid"] = json!("enc-1");
    for_encryption["use"] = json!("enc");
    issuer.publish_raw(for_encryption);
    let app = spawn_gateway(issuer, |_| {}).await;

    let url = app.issuer.url().to_string();
    assert_eq!(app.metric("tokenreview_gateway_keys", &[("issuer", &url)]).await, 2.0);
    assert_eq!(app.review(&app.token("rs256-1", "alice")).await, authenticated(V1, "alice"));
    assert_eq!(app.review(&app.token("es256-1", "bob")).await, authenticated(V1, "bob"));
    // The enc key is the very key rs256-1 signs with: only its `use` keeps it out.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("enc-1".into());
    let token = app.issuer.sign_with_header("rs256-1", &header, &app.issuer.claims("mallory")).unwrap();
    assert_eq!(app.review(&token).await, rejected(V1));
}

#[tokio::test]
async fn keys_of_one_issuer_never_verify_tokens_of_another() {
    let other = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let (other_url, other_ca) = (other.url().to_string(), other.ca_pem().to_string());
    let app = spawn_app_with(|s| {
        let mut second = s.jwt[0].clone();
        second.issuer.url = other_url.clone();
        second.issuer.certificate_authority = Some(other_ca);
        s.jwt.push(second);
    })
    .await;
    // Both issuers publish a key named rs256-1; ours signs a token claiming the other issuer.
    let mut claims = app.issuer.claims("mallory");
    claims["iss"] = json!(other_url);
    assert_eq!(app.review(&app.issuer.sign("rs256-1", &claims).unwrap()).await, rejected(V1));
    let genuine = other.sign("rs256-1", &claims).unwrap();
    assert_eq!(app.review(&genuine).await["status"]["authenticated"], true);
}

#[tokio::test]
async fn a_slow_issuer_does_not_stall_another() {
    let fast = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let (fast_url, fast_ca) = (fast.url().to_string(), fast.ca_pem().to_string());
    let app = spawn_app_with(|s| {
        s.keys.request_timeout_seconds = 20;
        let mut second = s.jwt[0].clone();
        second.issuer.url = fast_url.clone();
        second.issuer.certificate_authority = Some(fast_ca);
        s.jwt.push(second);
    })
    .await;
    app.issuer.set_fault(Fault::Drip);
    let slow_review = {
        let body = review_body(V1, &app.token_with_unknown_kid("rotated-in"));
        let (client, url) = (app.client.clone(), format!("{}/authenticate", app.address));
        tokio::spawn(async move {
            client.post(url).header("Content-Type", "application/json").body(body.to_string()).send().await
        })
    };
    // Give the slow fetch time to start, then use the other issuer.
    while app.issuer.jwks_requests() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let token = fast.sign("rs256-1", &fast.claims("alice")).unwrap();
    assert_eq!(app.review(&token).await, authenticated(V1, "alice"));
    assert!(!slow_review.is_finished(), "the other issuer's fetch is still dripping");
    slow_review.abort();
}

#[tokio::test]
async fn a_jwks_uri_on_another_host_is_refused_unless_allowed() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let port = issuer.url().rsplit(':').next().unwrap().to_string();
    issuer.set_jwks_uri(&format!("https://localhost:{port}/keys"));
    let refused = spawn_gateway(issuer, |_| {}).await;
    assert_eq!(refused.fetches("bad_jwks_uri").await, 1.0);
    assert_eq!(refused.issuer.jwks_requests(), 0);

    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let port = issuer.url().rsplit(':').next().unwrap().to_string();
    issuer.set_jwks_uri(&format!("https://localhost:{port}/keys"));
    let allowed = spawn_gateway(issuer, |s| s.jwt[0].jwks_hosts = vec!["localhost".into()]).await;
    assert_eq!(allowed.review(&allowed.token("rs256-1", "alice")).await, authenticated(V1, "alice"));
}
