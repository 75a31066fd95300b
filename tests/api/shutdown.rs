//! Stopping `serve`: SIGINT (Ctrl-C) drains like SIGTERM.

use jsonwebtoken::Algorithm;
use serde_json::Value;
use tokenreview_gateway::dev::DevIssuer;

use crate::cli::{spawn_serve, stop_with};
use crate::helpers::*;

#[tokio::test]
async fn sigint_lets_reviews_in_flight_finish_like_sigterm() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "  requestTimeoutSeconds: 3\n");
    let (child, port, _logs) = spawn_serve(config.path(), "info").await;
    // A review that waits on a key fetch the issuer answers slowly: in flight when SIGINT comes.
    issuer.set_fault(tokenreview_gateway::dev::Fault::Drip);
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rotated-in".into());
    let token = issuer.sign_with_header("rs256-1", &header, &issuer.claims("alice")).unwrap();
    let before = issuer.jwks_requests();
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/authenticate"))
            .header("Content-Type", "application/json")
            .body(review_body(V1, &token).to_string())
            .send()
            .await
    });
    while issuer.jwks_requests() == before {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let status = stop_with(child, "-INT").await;
    let response = in_flight.await.unwrap().expect("the in-flight review is answered, not cut off");
    assert_eq!(response.status(), 200);
    // The fetch for the new kid fails (its JWKS drips past the timeout): a transient answer.
    let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(answer["status"]["authenticated"], false, "{answer}");
    assert!(answer["status"]["error"].is_string(), "{answer}");
    assert!(status.success(), "{status:?}");
}
