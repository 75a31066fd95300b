//! Key fetching seen from outside: rotation, unknown kids, and an issuer that is down or lies.

use jsonwebtoken::Algorithm;
use serde_json::json;
use tokenreview_gateway::dev::DevIssuer;

use crate::helpers::*;

#[tokio::test]
async fn startup_fetches_discovery_and_jwks_once() {
    let app = spawn_app().await;
    assert_eq!((app.issuer.discovery_requests(), app.issuer.jwks_requests()), (1, 1));
    app.review(&app.token("rs256-1", "alice")).await;
    app.review(&app.token("es256-1", "bob")).await;
    assert_eq!((app.issuer.discovery_requests(), app.issuer.jwks_requests()), (1, 1));
}

#[tokio::test]
async fn a_rotated_in_key_is_fetched_once_and_further_unknown_kids_wait_for_the_cooldown() {
    let app = spawn_app().await;
    let rotated = app.issuer.add_key(Algorithm::RS256).unwrap();
    assert_eq!(app.issuer.jwks_requests(), 1);

    // The new kid is unknown to the gateway: exactly one refetch, and the token is accepted.
    assert_eq!(app.review(&app.token(&rotated, "alice")).await, authenticated(V1, "alice"));
    assert_eq!(app.issuer.jwks_requests(), 2);

    // Another unknown kid within the cooldown: no fetch, rejected.
    let later = app.issuer.add_key(Algorithm::RS256).unwrap();
    assert_eq!(app.review(&app.token(&later, "bob")).await, rejected(V1));
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("random-kid".into());
    let junk = app.issuer.sign_with_header("rs256-1", &header, &app.issuer.claims("eve")).unwrap();
    assert_eq!(app.review(&junk).await, rejected(V1));
    assert_eq!(app.issuer.jwks_requests(), 2);
    assert_eq!(app.issuer.discovery_requests(), 1);
}

#[tokio::test]
async fn concurrent_tokens_with_an_unknown_kid_cause_one_fetch() {
    let app = spawn_app().await;
    let rotated = app.issuer.add_key(Algorithm::ES256).unwrap();
    let token = app.token(&rotated, "alice");
    let answers = futures_util::future::join_all((0..20).map(|i| {
        let body = review_body(V1, &token);
        let app = &app;
        async move {
            // Distinct audiences keep the result cache from answering the later ones.
            let mut body = body;
            body["spec"]["audiences"] = json!([format!("aud-{i}")]);
            app.post_review(&body).await.1
        }
    }))
    .await;
    for answer in answers {
        assert_eq!(answer, authenticated(V1, "alice"));
    }
    assert_eq!(app.issuer.jwks_requests(), 2);
}

#[tokio::test]
async fn an_issuer_that_is_down_gives_a_transient_error_not_a_rejection() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let token = issuer.sign("rs256-1", &issuer.claims("alice")).unwrap();
    issuer.stop().await;
    let app = spawn_gateway(issuer, |s| s.keys.startup_wait_seconds = 2).await;
    let answer = app.review(&token).await;
    assert_eq!(
        answer,
        json!({
            "apiVersion": V1,
            "kind": "TokenReview",
            "status": {
                "authenticated": false,
                "error": "signing keys for the token's issuer are not available yet; try again later"
            }
        })
    );
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_not_trusted() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    issuer.set_advertised_issuer("https://evil.example.com");
    let app = spawn_gateway(issuer, |_| {}).await;
    assert_eq!(app.issuer.discovery_requests(), 1);
    assert_eq!(app.issuer.jwks_requests(), 0, "the JWKS of a mismatched issuer is never fetched");
    let answer = app.review(&app.token("rs256-1", "alice")).await;
    assert_eq!(answer["status"]["authenticated"], json!(false));
    assert!(answer["status"]["error"].is_string(), "{answer}");
}

#[tokio::test]
async fn an_issuer_certificate_from_an_untrusted_ca_is_refused() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let other_ca = tokenreview_gateway::dev::LoopbackTls::generate().unwrap().ca_pem;
    let app = spawn_gateway(issuer, |s| s.jwt[0].issuer.certificate_authority = Some(other_ca)).await;
    assert_eq!(app.issuer.requests(), 0, "no request completes over an unverified TLS connection");
    let answer = app.review(&app.token("rs256-1", "alice")).await;
    assert_eq!(answer["status"]["authenticated"], json!(false));
    assert!(answer["status"]["error"].is_string(), "{answer}");
}
