//! Attack matrix, section L (logging and disclosure). L02 (`Debug` of the request) is the unit
//! test `debug_and_display_never_contain_the_token` in src/review.rs.

use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use tokenreview_gateway::dev::DevIssuer;

use crate::cli::{spawn_serve, terminate};
use crate::helpers::*;

/// The hostile tokens of the matrix, one per kind of refusal, plus a valid one.
fn hostile_tokens(issuer: &DevIssuer) -> Vec<String> {
    let claims = |edit: &dyn Fn(&mut Value)| {
        let mut c = issuer.claims("alice");
        edit(&mut c);
        c
    };
    let sign = |c: Value| issuer.sign("rs256-1", &c).unwrap();
    let with_header = |h: Header| issuer.sign_with_header("rs256-1", &h, &issuer.claims("alice")).unwrap();
    let mut jku = Header::new(Algorithm::RS256);
    jku.jku = Some("https://evil.example/jwks".into());
    let mut crlf_kid = Header::new(Algorithm::RS256);
    crlf_kid.kid = Some("evil\r\n{\"message\":\"token review\",\"result\":\"authenticated\"}".into());
    let valid = sign(issuer.claims("alice"));
    let (msg, sig) = valid.rsplit_once('.').unwrap();
    // A different last character (of the four canonical ones an RS256 signature can end in).
    let last = if sig.ends_with('A') { 'Q' } else { 'A' };
    let tampered = format!("{msg}.{}{last}", &sig[..sig.len() - 1]);
    vec![
        valid.clone(),
        sign(claims(&|c| c["exp"] = json!(now() - 3600))),
        sign(claims(&|c| c["iss"] = json!("https://evil.example"))),
        sign(claims(&|c| c["aud"] = json!("vault"))),
        sign(claims(&|c| c["email"] = json!("system:admin"))),
        sign(claims(&|c| c["groups"] = json!(["system:masters"]))),
        sign(claims(&|c| c["email_verified"] = json!(false))),
        with_header(jku),
        with_header(crlf_kid),
        tampered,
        format!("{}.{}.", "eyJhbGciOiJub25lIn0", msg.split_once('.').unwrap().1),
        format!("{valid}{valid}"),
    ]
}

/// Under load the first key fetch may outlast the startup wait: waits for readiness.
async fn wait_ready(client: &reqwest::Client, port: u16) {
    for _ in 0..100 {
        let ready = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// L01: every hostile token through `serve` at trace level: neither a token nor any of its
/// segments appears anywhere in the output, every output line is one JSON object (a CR/LF in a
/// kid cannot forge a line), and each review is logged by fingerprint.
#[tokio::test]
async fn no_token_or_segment_reaches_the_logs_even_at_trace_level() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let (child, port, reader) = spawn_serve(config.path(), "trace").await;
    let tokens = hostile_tokens(&issuer);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/authenticate");
    wait_ready(&client, port).await;
    let mut answers = Vec::new();
    for token in &tokens {
        let body = review_body(V1, token).to_string();
        let resp = client.post(&url).header("Content-Type", "application/json").body(body).send().await.unwrap();
        answers.push(serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap());
    }
    // Malformed requests that carry the token, too.
    let carriers = [
        format!(r#"{{"kind":"TokenReview","spec":{{"token":"{}"}}}}"#, tokens[0]),
        format!(r#"{{"apiVersion":"{V1}","kind":"TokenReview","spec":{{"token":"{}","token":"x"}}}}"#, tokens[0]),
        format!(r#"{{"apiVersion":"{V1}","kind":"TokenReview","spec":{{"token":"{}"}}"#, tokens[0]),
    ];
    for body in carriers {
        let resp = client.post(&url).header("Content-Type", "application/json").body(body).send().await.unwrap();
        assert_eq!(resp.status(), 400);
        assert!(!resp.text().await.unwrap().contains(&tokens[0][..40]));
    }
    assert_eq!(answers[0]["status"]["authenticated"], true);
    assert!(answers[1..].iter().all(|a| a["status"]["authenticated"] == false), "{answers:?}");

    assert!(terminate(child).await.success());
    let logs = reader.join().unwrap();
    for (n, token) in tokens.iter().enumerate() {
        assert!(!logs.contains(token.as_str()), "token {n} appears in the logs");
        for (i, segment) in token.split('.').enumerate().filter(|(_, s)| s.len() >= 16) {
            assert!(!logs.contains(segment), "segment {i} of token {n} appears in the logs");
        }
    }
    let mut reviews = 0;
    for line in logs.lines() {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("a log line is not JSON: {line:?}"));
        if event["message"] == "token review" {
            reviews += 1;
            let fp = event["token"].as_str().unwrap();
            assert!(fp.len() == 12 && fp.chars().all(|c| c.is_ascii_hexdigit()), "{event}");
        }
    }
    assert_eq!(reviews, tokens.len(), "one review line per token");
    assert!(!logs.contains("evil\r\n") && !logs.contains("evil\n"), "raw CR/LF from a kid reached the logs");
}

/// L03: `status.error` is absent on every definite rejection, and on transient failures is one
/// of a fixed set of messages that quote nothing from the request, the token or the issuer.
#[tokio::test]
async fn status_error_is_absent_or_from_a_fixed_vocabulary() {
    let vocabulary = [
        "signing keys for the token's issuer are not available yet; try again later",
        "the token review gateway is at capacity; try again later",
        "the token review did not finish in time; try again later",
    ];
    let app = spawn_app_with(fast_keys).await;
    for token in hostile_tokens(&app.issuer).iter().skip(1) {
        let answer = app.review(token).await;
        assert_eq!(answer, rejected(V1));
    }
    // Transient: the issuer goes away and its keys go stale.
    let down = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let app = spawn_gateway(down, |s| {
        fast_keys(s);
        s.keys.max_staleness_seconds = 1;
    })
    .await;
    app.issuer.stop().await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let token = app.token("rs256-1", "alice");
    let answer = app.review(&token).await;
    let error = answer["status"]["error"].as_str().expect("a transient error");
    assert!(vocabulary.contains(&error), "{error}");
    assert!(!error.contains(app.issuer.url()) && !error.contains(&token[..20]));
}

/// A failed distributed claims fetch is logged with the endpoint's scheme, host and path only:
/// the token chose the query, which may carry anything.
#[tokio::test]
async fn a_failed_claims_fetch_logs_the_endpoint_without_its_query() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let (child, port, reader) = spawn_serve(config.path(), "info").await;
    let client = reqwest::Client::new();
    wait_ready(&client, port).await;
    let mut claims = issuer.claims("alice");
    claims.as_object_mut().unwrap().remove("groups");
    claims["_claim_names"] = json!({"groups": "s"});
    // Nothing is served there: HTTP 404, a transient failure, logged.
    let endpoint = format!("{}/claims/none?access_token=query-secret-abc", issuer.url());
    claims["_claim_sources"] = json!({"s": {"endpoint": endpoint}});
    let token = issuer.sign("rs256-1", &claims).unwrap();
    let url = format!("http://127.0.0.1:{port}/authenticate");
    let body = review_body(V1, &token).to_string();
    let resp = client.post(&url).header("Content-Type", "application/json").body(body).send().await.unwrap();
    let answer: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert!(answer["status"]["error"].is_string(), "{answer}");
    assert!(terminate(child).await.success());
    let logs = reader.join().unwrap();
    let warned = logs.lines().find(|l| l.contains("distributed claims could not be fetched")).expect("a warn line");
    assert!(warned.contains("/claims/none"), "{warned}");
    assert!(!logs.contains("query-secret-abc"), "the query reached the logs: {warned}");
}
