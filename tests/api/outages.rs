//! A new `kid` while the issuer cannot be reached: never a definite "no" (which the gateway and
//! kube-apiserver would cache), and the token works as soon as a fetch brings its key.

use jsonwebtoken::Algorithm;
use serde_json::Value;
use tokenreview_gateway::dev::Fault;

use crate::helpers::*;

fn is_transient(answer: &Value) -> bool {
    answer["status"]["authenticated"] == false && answer["status"]["error"].is_string()
}

#[tokio::test]
async fn a_kid_rotated_in_during_an_outage_is_transient_and_accepted_once_the_issuer_is_back() {
    let app = spawn_app_with(|s| {
        fast_keys(s);
        // Long enough that a cached rejection would outlive this test.
        s.cache.negative_ttl_seconds = 300;
    })
    .await;
    let rotated = app.issuer.add_unpublished_key(Algorithm::ES256).unwrap();
    app.issuer.set_fault(Fault::Status(500));
    app.fetch_until("http_status").await;
    app.issuer.publish(&rotated);

    // The fetch for this kid fails (or the cooldown after the failed one holds): no decision.
    let token = app.token(&rotated, "alice");
    for _ in 0..3 {
        let answer = app.review(&token).await;
        assert!(is_transient(&answer), "a failed fetch proves nothing about the kid: {answer}");
    }

    // The same token, not a fresh one: nothing was cached against it.
    app.issuer.set_fault(Fault::None);
    let mut accepted = false;
    for _ in 0..50 {
        let answer = app.review(&token).await;
        if answer == authenticated(V1, "alice") {
            accepted = true;
            break;
        }
        assert!(is_transient(&answer), "until a fetch succeeds: {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(accepted, "the token is accepted once a fetch brings its key");
}

#[tokio::test]
async fn a_kid_missing_from_a_successful_fetch_is_a_definite_rejection() {
    let app = spawn_app_with(fast_keys).await;
    app.issuer.set_fault(Fault::Status(500));
    app.fetch_until("http_status").await;
    app.issuer.set_fault(Fault::None);
    app.fetch_until("ok").await;
    // Within the cooldown after that success, and after any fetch it triggers: definite.
    assert_eq!(app.review(&app.token_with_unknown_kid("never-published")).await, rejected(V1));
}

#[tokio::test]
async fn a_review_whose_key_fetch_hangs_is_transient_every_time() {
    // Equal review deadline and fetch timeout (as by default, 10 s each): whether the fetch
    // fails first or the deadline passes first, the answer is the same kind. With the deadline
    // longer, the failed fetch always comes first; it too proves nothing about the kid.
    for (review_timeout, fetch_timeout) in [(1, 1), (2, 1)] {
        let app = spawn_app_with(|s| {
            fast_keys(s);
            s.server.review_timeout_seconds = review_timeout;
            s.keys.request_timeout_seconds = fetch_timeout;
            s.keys.connect_timeout_seconds = 1;
        })
        .await;
        app.issuer.set_fault(Fault::Drip);
        for i in 0..3 {
            let answer = app.review(&app.token_with_unknown_kid(&format!("rotated-{i}"))).await;
            assert!(is_transient(&answer), "{review_timeout}/{fetch_timeout} s, attempt {i}: {answer}");
        }
    }
}
