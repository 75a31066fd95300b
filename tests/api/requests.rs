//! Requests that are not TokenReviews: precise 4xx answers with fixed bodies.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

fn error_body(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("JSON error body, got {text:?}"))
}

#[tokio::test]
async fn each_malformed_request_gets_a_400_that_names_the_problem() {
    let app = spawn_app().await;
    let cases = [
        ("{\"spec\":", "malformed_json", "request body is not valid JSON"),
        ("[]", "not_a_token_review", "request body is not a TokenReview object"),
        (
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SubjectAccessReview","spec":{"token":"t"}}"#,
            "wrong_kind",
            "kind must be TokenReview",
        ),
        (
            r#"{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview","spec":{"token":"t"}}"#,
            "unsupported_api_version",
            "apiVersion must be authentication.k8s.io/v1 or authentication.k8s.io/v1beta1",
        ),
        (
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{}}"#,
            "missing_token",
            "spec.token is required and must be a string",
        ),
        (
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":12}}"#,
            "missing_token",
            "spec.token is required and must be a string",
        ),
        (
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview"}"#,
            "missing_token",
            "spec.token is required and must be a string",
        ),
        (
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"t","audiences":"x"}}"#,
            "invalid_audiences",
            "spec.audiences must be a list of strings",
        ),
    ];
    for (body, code, message) in cases {
        let (status, text) = app.post_raw("/authenticate", Some("application/json"), body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_body(&text), json!({"error": code, "message": message}), "{body}");
    }
}

#[tokio::test]
async fn a_malformed_request_body_is_never_quoted_back() {
    let app = spawn_app().await;
    let secret = app.token("rs256-1", "alice");
    let body = format!(
        r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":{{"t":"{secret}"}}}}}}"#
    );
    let (status, text) = app.post_raw("/authenticate", Some("application/json"), body).await;
    assert_eq!(status, 400);
    assert!(!text.contains(&secret[..20]), "{text}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let app = spawn_app_with(|s| {
        s.server.max_body_bytes = 8192;
        s.server.max_token_bytes = 4096;
    })
    .await;
    let body = review_body(V1, &"a".repeat(10_000)).to_string();
    let (status, text) = app.post_raw("/authenticate", Some("application/json"), body).await;
    assert_eq!(status, 413);
    assert_eq!(
        error_body(&text),
        json!({"error": "payload_too_large", "message": "request body exceeds the limit of 8192 bytes"})
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_with_413() {
    let app = spawn_app_with(|s| {
        s.server.max_body_bytes = 8192;
        s.server.max_token_bytes = 4096;
    })
    .await;
    // No Content-Length: the limit must hold while streaming.
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /authenticate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
    for _ in 0..20 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break; // the server may close once it has answered
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains(r#""error":"payload_too_large""#), "{response}");
}

#[tokio::test]
async fn a_request_without_a_json_content_type_gets_415() {
    let app = spawn_app().await;
    let body = review_body(V1, &app.token("rs256-1", "alice")).to_string();
    for ct in
        [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/json; charset=utf-16")]
    {
        let (status, text) = app.post_raw("/authenticate", ct, body.clone()).await;
        assert_eq!(status, 415, "{ct:?}");
        assert_eq!(
            error_body(&text),
            json!({"error": "unsupported_media_type", "message": "Content-Type must be application/json"})
        );
    }
    let (status, _) = app.post_raw("/authenticate", Some("application/json; charset=UTF-8"), body).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_query_string_is_ignored_and_root_is_an_alias() {
    let app = spawn_app().await;
    let body = review_body(V1, &app.token("rs256-1", "alice")).to_string();
    for path in ["/authenticate?timeout=30s", "/"] {
        let (status, text) = app.post_raw(path, Some("application/json"), body.clone()).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(error_body(&text), authenticated(V1, "alice"), "{path}");
    }
}

#[tokio::test]
async fn other_methods_and_paths_get_fixed_json_errors() {
    let app = spawn_app().await;
    let (status, text) = app.get("/authenticate").await;
    assert_eq!(status, 405);
    assert_eq!(error_body(&text)["error"], "method_not_allowed");
    let (status, text) = app.post_raw("/other", Some("application/json"), "{}").await;
    assert_eq!(status, 404);
    assert_eq!(
        error_body(&text),
        json!({"error": "not_found", "message": "no such endpoint; POST a TokenReview to /authenticate"})
    );
}
