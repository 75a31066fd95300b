//! Liveness and readiness.

use jsonwebtoken::Algorithm;
use tokenreview_gateway::dev::DevIssuer;

use crate::helpers::*;

#[tokio::test]
async fn liveness_answers_ok() {
    let app = spawn_app().await;
    for path in ["/healthz", "/livez"] {
        assert_eq!(app.get(path).await, (reqwest::StatusCode::OK, "ok\n".to_string()), "{path}");
    }
}

#[tokio::test]
async fn ready_when_every_issuer_has_keys() {
    let app = spawn_app().await;
    assert_eq!(app.get("/readyz").await, (reqwest::StatusCode::OK, "ok\n".to_string()));
}

#[tokio::test]
async fn not_ready_while_an_issuer_has_no_keys_and_the_body_says_which() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let url = issuer.url().to_string();
    issuer.stop().await;
    let app = spawn_gateway(issuer, |s| s.keys.startup_wait_seconds = 2).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.starts_with("not ready:\n"), "{body}");
    assert!(body.contains(&format!("issuer {url} has no signing keys")), "{body}");
}
