//! Attack matrix, section W (HTTP-level abuse of the webhook). W02, W03, W06, W11, W14–W16, W18
//! and W20 are covered by `requests.rs`, `operations.rs` and `token_review.rs` (see
//! docs/security-tests.md); these add the rest.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Sends raw bytes on a fresh connection and reads until the server closes or `wait` passes.
async fn raw_exchange(app: &TestApp, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let addr = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    out
}

fn assert_constant_400(status: reqwest::StatusCode, text: &str, sent: &str) {
    assert_eq!(status, 400, "{sent:?}");
    let body: Value = serde_json::from_str(text).unwrap();
    let code = body["error"].as_str().unwrap();
    assert!(["malformed_json", "not_a_token_review"].contains(&code), "{text}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{text}");
}

/// W01: truncated bodies, trailing garbage, an empty body, a bare value: 400 with a fixed body
/// that never quotes the input, and the server keeps answering.
#[tokio::test]
async fn malformed_json_bodies_get_a_constant_400() {
    let app = spawn_app().await;
    let good = review_body(V1, "secret-looking-token").to_string();
    let cases = [
        "".to_string(),
        "{\"spec\":".to_string(),
        good[..good.len() - 3].to_string(),
        format!("{good}garbage"),
        format!("{good}{good}"),
        "null".to_string(),
        "[]".to_string(),
        "\u{feff}{}".to_string(),
        // serde's derive would read these positionally (found by fuzzing).
        format!(r#"["{V1}","TokenReview",{{"token":"secret-looking-token"}}]"#),
        format!(r#"{{"apiVersion":"{V1}","kind":"TokenReview","spec":["secret-looking-token"]}}"#),
    ];
    for body in &cases {
        let (status, text) = app.post_raw("/authenticate", Some("application/json"), body.clone()).await;
        assert_constant_400(status, &text, body);
        assert!(!text.contains("secret-looking"), "{text}");
    }
    assert_eq!(app.review(&app.token("rs256-1", "alice")).await, authenticated(V1, "alice"));
}

/// W04: empty and blank tokens are definite rejections with no outbound request.
#[tokio::test]
async fn empty_or_blank_tokens_cause_no_outbound_request() {
    let app = spawn_app().await;
    let before = app.issuer.requests();
    for token in ["", " ", "\t", "\n", "   .   .   "] {
        assert_eq!(app.review(token).await, rejected(V1), "{token:?}");
    }
    assert_eq!(app.issuer.requests(), before);
}

/// W05: a 1 MB `spec.token` is cut off by the body cap (413); a 100 KB one that fits the body is
/// refused by the token cap before any decoding, with no outbound request.
#[tokio::test]
async fn a_megabyte_token_is_refused_before_any_decoding() {
    let app = spawn_app().await;
    let before = app.issuer.requests();
    let (status, _) = app.post_review(&review_body(V1, &"a".repeat(1 << 20))).await;
    assert_eq!(status, 413);
    let jwt_shaped = format!("{}.{}.{}", "eyJ".repeat(20_000), "e30", "c2ln".repeat(10_000));
    let before_refused = app.refused(false, "token_too_large").await;
    assert_eq!(app.review(&jwt_shaped).await, rejected(V1));
    let after_refused = app.refused(false, "token_too_large").await;
    assert_eq!(after_refused - before_refused, 1.0);
    assert_eq!(app.issuer.requests(), before);
}

/// W07: 50 000 nested arrays (fits the body cap). In a member we act on (`spec.audiences`) the
/// depth limit makes it a 400; in one we ignore, serde skips it without recursing and the token
/// is judged. Either way no stack overflow, and the next request is served.
#[tokio::test]
async fn a_deeply_nested_body_is_a_400_not_a_crash() {
    let app = spawn_app().await;
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let in_audiences =
        format!(r#"{{"apiVersion":"{V1}","kind":"TokenReview","spec":{{"token":"t","audiences":{deep}}}}}"#);
    let (status, text) = app.post_raw("/authenticate", Some("application/json"), in_audiences).await;
    assert_constant_400(status, &text, "deep audiences");
    let ignored = format!(r#"{{"apiVersion":"{V1}","kind":"TokenReview","spec":{{"token":"t","x":{deep}}}}}"#);
    let (status, text) = app.post_raw("/authenticate", Some("application/json"), ignored).await;
    assert_eq!((status.as_u16(), serde_json::from_str::<Value>(&text).unwrap()), (200, rejected(V1)));
    assert_eq!(app.review(&app.token("rs256-1", "alice")).await, authenticated(V1, "alice"));
}

/// W08: a request head sent slowly (and never finished) gets 408 and the connection is closed.
#[tokio::test]
async fn a_slow_request_head_gets_408() {
    let app = spawn_app().await;
    let answer =
        raw_exchange(&app, b"POST /authenticate HTTP/1.1\r\nHost: x\r\nContent-Ty", Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
}

/// W10: invalid UTF-8 and lone surrogates are 400; a NUL inside the token is valid JSON and a
/// plain rejection.
#[tokio::test]
async fn bad_encodings_are_refused() {
    let app = spawn_app().await;
    let mut invalid = format!(r#"{{"apiVersion":"{V1}","kind":"TokenReview","spec":{{"token":""#).into_bytes();
    invalid.extend_from_slice(&[0xc3, 0x28, 0xff]);
    invalid.extend_from_slice(br#""}}"#);
    let (status, text) = app.post_raw("/authenticate", Some("application/json"), invalid).await;
    assert_constant_400(status, &text, "invalid utf-8");
    // Invalid UTF-8 in a member the gateway does not read is still not JSON (found by fuzzing).
    let mut in_metadata = format!(r#"{{"apiVersion":"{V1}","kind":"TokenReview","metadata":{{"c"#).into_bytes();
    in_metadata.extend_from_slice(&[0xa4]);
    in_metadata.extend_from_slice(br#"":null},"spec":{"token":"t"}}"#);
    let (status, text) = app.post_raw("/authenticate", Some("application/json"), in_metadata).await;
    assert_constant_400(status, &text, "invalid utf-8 in metadata");
    let surrogate = format!(r#"{{"apiVersion":"{V1}","kind":"TokenReview","spec":{{"token":"\ud800"}}}}"#);
    let (status, text) = app.post_raw("/authenticate", Some("application/json"), surrogate).await;
    assert_constant_400(status, &text, "lone surrogate");
    let good = app.token("rs256-1", "alice");
    for token in [format!("{good}\u{0}"), format!("\u{0}{good}"), good.replacen('.', "\u{0}.", 1)] {
        assert_eq!(app.review(&token).await, rejected(V1));
    }
}

/// W12: 200 requests pipelined in one write are all answered, in order, each with its own
/// verdict; the connection is not a way around the per-request limits.
#[tokio::test]
async fn pipelined_requests_are_each_answered() {
    let app = spawn_app().await;
    let good = review_body(V1, &app.token("rs256-1", "alice")).to_string();
    let bad = review_body(V1, "garbage").to_string();
    let mut wire = Vec::new();
    for i in 0..200 {
        let body = if i % 2 == 0 { &good } else { &bad };
        wire.extend_from_slice(
            format!(
                "POST /authenticate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    wire.extend_from_slice(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answer = raw_exchange(&app, &wire, Duration::from_secs(60)).await;
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 200, "{}", &text[..text.len().min(500)]);
    assert_eq!(text.matches(r#""authenticated":true"#).count(), 100);
    assert_eq!(text.matches(r#""authenticated":false"#).count(), 100);
    assert!(text.contains("HTTP/1.1 404"));
}

/// W23: the server speaks HTTP/1.1 only: an HTTP/2 prior-knowledge preface gets no HTTP/2
/// SETTINGS frame back (so Rapid Reset and CONTINUATION floods have nothing to hit).
#[tokio::test]
async fn http2_is_not_spoken() {
    let app = spawn_app().await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let answer = raw_exchange(&app, preface, Duration::from_secs(10)).await;
    // An HTTP/2 server answers with a SETTINGS frame: type 0x04 in the fourth byte.
    assert!(answer.len() < 9 || answer[3] != 0x04 || answer.starts_with(b"HTTP/1.1"), "{answer:?}");
    assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 4"), "{:?}", String::from_utf8_lossy(&answer));
    assert_eq!(app.review(&app.token("rs256-1", "alice")).await, authenticated(V1, "alice"));
}

/// W18 variant: audiences in the request never appear in the answer, for a rejected token
/// either, and an audience-shaped token value is not reflected.
#[tokio::test]
async fn the_answer_is_built_from_scratch() {
    let app = spawn_app().await;
    let mut body = review_body(V1, "not-a-jwt");
    body["spec"]["audiences"] = json!(["vault"]);
    body["status"] = json!({"authenticated": true, "user": {"username": "system:admin"}, "audiences": ["vault"]});
    body["metadata"] = json!({"name": "x"});
    let (status, answer) = app.post_review(&body).await;
    assert_eq!(status, 200);
    assert_eq!(answer, rejected(V1));
}
