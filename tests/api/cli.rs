//! The binary: `dev`, `review`, `check`, `kubeconfig` as a user runs them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokenreview_gateway::dev::DevIssuer;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_tokenreview-gateway");

async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN).args(&args).env_remove("RUST_LOG").stdin(Stdio::null()).output().unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn the_dev_command_prints_a_token_that_its_gateway_accepts() {
    let mut child = Command::new(BIN)
        .args(["dev", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (gateway, token, curl) = tokio::task::spawn_blocking(move || {
        let (mut gateway, mut token) = (String::new(), String::new());
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(g) = line.strip_prefix("gateway: ") {
                gateway = g.to_string();
            } else if let Some(t) = line.strip_prefix("token: ") {
                token = t.to_string();
            } else if line.starts_with("curl ") {
                return (gateway, token, line);
            }
        }
        panic!("dev ended before printing a curl command");
    })
    .await
    .unwrap();
    assert!(curl.contains(&gateway) && curl.contains(&token), "{curl}");
    let text = reqwest::Client::new()
        .post(&gateway)
        .header("Content-Type", "application/json")
        .body(review_body(V1, &token).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {gateway}: {e:?}"))
        .text()
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(
        answer,
        json!({"apiVersion": V1, "kind": "TokenReview", "status": {"authenticated": true,
            "user": {"username": "dev@example.com", "uid": "dev", "groups": ["oidc:developers"]}}})
    );
}

#[tokio::test]
async fn review_prints_the_answer_and_exits_0_for_a_valid_token() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let token = issuer.sign("rs256-1", &issuer.claims("alice")).unwrap();
    let out = run(args(&["review", "--config", config.path().to_str().unwrap(), "--token", &token])).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answer,
        json!({"apiVersion": V1, "kind": "TokenReview", "status": {"authenticated": true,
            "user": {"username": "alice@example.com", "groups": ["oidc:developers"]}}})
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("authenticated as \"alice@example.com\""));
}

#[tokio::test]
async fn review_reads_the_token_from_stdin() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let token = issuer.sign("rs256-1", &issuer.claims("alice")).unwrap();
    let path = config.path().to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(["review", "--config", &path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{token}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn review_exits_1_with_the_reason_for_a_rejected_token() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let mut claims = issuer.claims("alice");
    claims["exp"] = json!(now() - 3600);
    let expired = issuer.sign("rs256-1", &claims).unwrap();
    let out = run(args(&["review", "--config", config.path().to_str().unwrap(), "--token", &expired])).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), rejected(V1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rejected: expired"), "{stderr}");
    assert!(!stderr.contains(&expired), "the token must not be printed");
}

#[tokio::test]
async fn review_exits_2_when_the_issuer_cannot_be_reached() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let token = issuer.sign("rs256-1", &issuer.claims("alice")).unwrap();
    issuer.stop().await;
    let out = run(args(&["review", "--config", config.path().to_str().unwrap(), "--token", &token])).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not decide: issuer_keys_unavailable"), "{stderr}");
}

#[tokio::test]
async fn check_exits_0_and_lists_each_issuers_keys_when_all_is_well() {
    let issuer = DevIssuer::start(&[Algorithm::RS256, Algorithm::ES256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let out = run(args(&["check", "--config", config.path().to_str().unwrap()])).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("configuration is valid: 1 issuer(s)"), "{stdout}");
    assert!(stdout.contains(&format!("ok    {}: 2 signing key(s)", issuer.url())), "{stdout}");
}

#[tokio::test]
async fn check_exits_1_and_says_why_when_an_issuer_is_unreachable() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    issuer.stop().await;
    let out = run(args(&["check", "--config", config.path().to_str().unwrap()])).await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "FAIL  {}: request to {}/.well-known/openid-configuration failed",
            issuer.url(),
            issuer.url()
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_exits_1_and_names_the_field_of_an_invalid_config() {
    let config = config_file("http://idp.example.com", "", "");
    let out = run(args(&["check", "--config", config.path().to_str().unwrap()])).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("jwt[0].issuer.url: must use https"), "{stderr}");
}

#[tokio::test]
async fn kubeconfig_prints_a_webhook_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let out =
        run(args(&["kubeconfig", "--server", "https://127.0.0.1:8443/authenticate", "--ca", ca.to_str().unwrap()]))
            .await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("apiVersion: v1\nkind: Config\n"), "{text}");
    assert!(text.contains("server: \"https://127.0.0.1:8443/authenticate\""), "{text}");
    assert!(text.contains("certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="), "{text}");
    assert!(text.contains("current-context: webhook"), "{text}");
}

#[tokio::test]
async fn serve_logs_reviews_by_fingerprint_never_the_token_and_stops_on_sigterm() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), "fingerprint-key-0123456789").unwrap();
    let logging = format!("logging:\n  tokenHashKeyFile: {}\n", key_file.path().display());
    let config = config_file(issuer.url(), issuer.ca_pem(), &logging);
    let (child, port, reader) = spawn_serve(config.path(), "trace").await;
    let valid = issuer.sign("rs256-1", &issuer.claims("alice")).unwrap();
    let mut claims = issuer.claims("bob");
    claims["exp"] = json!(now() - 3600);
    let expired = issuer.sign("rs256-1", &claims).unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/authenticate");
    let post = |body: String| client.post(&url).header("Content-Type", "application/json").body(body).send();
    let answer = post(review_body(V1, &valid).to_string()).await.unwrap().text().await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&answer).unwrap()["status"]["authenticated"], true);
    post(review_body(V1, &expired).to_string()).await.unwrap();
    let malformed = format!(r#"{{"kind":"TokenReview","spec":{{"token":"{valid}"}}"#);
    assert_eq!(post(malformed).await.unwrap().status(), 400);

    let status = terminate(child).await;
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status:?}");
    let logs = reader.join().unwrap();

    for token in [&valid, &expired] {
        for (i, segment) in token.split('.').enumerate() {
            assert!(!logs.contains(segment), "segment {i} of a token appears in the logs");
        }
    }
    let reviews: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["message"] == "token review")
        .collect();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"fingerprint-key-0123456789");
    let tag = aws_lc_rs::hmac::sign(&key, valid.as_bytes());
    let fingerprint: String = tag.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        reviews.iter().any(|e| e["token"] == fingerprint.as_str() && e["result"] == "authenticated"),
        "{reviews:?}"
    );
    assert!(reviews.iter().any(|e| e["result"] == "rejected" && e["reason"] == "expired"), "{reviews:?}");
}

/// A `serve` child that is killed if the test ends (or fails) without [`terminate`], so a failed
/// assertion does not leave a server running after the tests.
pub(crate) struct Serving(Option<std::process::Child>);

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `serve` on a random port with JSON logs at `level`; returns the child, its port and a
/// thread collecting its log lines.
pub(crate) async fn spawn_serve(
    config: &std::path::Path,
    level: &str,
) -> (Serving, u16, std::thread::JoinHandle<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap(), "--log-format", "json", "--log-level", level])
        .env("TOKENREVIEW_GATEWAY__SERVER__LISTEN", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = Serving(Some(child));
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && event["message"] == "serving"
            {
                port_tx.send(event["port"].as_u64().unwrap() as u16).unwrap();
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let port = tokio::task::spawn_blocking(move || port_rx.recv_timeout(std::time::Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("serve logs the port it listens on");
    (child, port, reader)
}

/// Sends SIGTERM and waits for the exit.
pub(crate) async fn terminate(mut serving: Serving) -> std::process::ExitStatus {
    let mut child = serving.0.take().expect("terminated once");
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap()
}

#[tokio::test]
async fn sigterm_lets_reviews_in_flight_finish_before_exiting() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "  requestTimeoutSeconds: 3\n");
    let (child, port, _logs) = spawn_serve(config.path(), "info").await;
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
    let status = terminate(child).await;
    let response = in_flight.await.unwrap().expect("the in-flight review is answered");
    assert_eq!(response.status(), 200);
    // The fetch for the new kid fails (its JWKS drips past the timeout): no decision about the
    // kid, so a transient answer, not a rejection kube-apiserver would cache.
    let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(answer["status"]["authenticated"], false, "{answer}");
    assert!(answer["status"]["error"].is_string(), "{answer}");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn review_explain_shows_each_step_up_to_the_first_failure() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let path = config.path().to_str().unwrap().to_string();
    let token = issuer.sign("rs256-1", &issuer.claims("alice")).unwrap();
    let out = run(args(&["review", "--config", &path, "--explain", "--token", &token])).await;
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for step in [
        "token shape (compact JWS, header, iss): ok".to_string(),
        format!("issuer: ok {}", issuer.url()),
        "algorithm: ok RS256".to_string(),
        "key: ok 1 candidate(s) for kid Some(\"rs256-1\")".to_string(),
        "signature, iss, aud, exp, nbf: ok".to_string(),
        "username: ok \"alice@example.com\"".to_string(),
        "groups: ok [\"oidc:developers\"]".to_string(),
        "authenticated as \"alice@example.com\"".to_string(),
    ] {
        assert!(stderr.contains(&step), "missing {step:?} in\n{stderr}");
    }

    let mut claims = issuer.claims("bob");
    claims["groups"] = json!(["system:masters"]);
    let bad = issuer.sign("rs256-1", &claims).unwrap();
    let out = run(args(&["review", "--config", &path, "--explain", "--token", &bad])).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("username: ok \"bob@example.com\""), "{stderr}");
    assert!(stderr.contains("groups: FAILED (reserved_name)"), "{stderr}");
    assert!(stderr.contains("rejected: reserved_name"), "{stderr}");
    assert!(!stderr.contains(&bad), "the token is never printed");
}

#[tokio::test]
async fn check_lists_each_dropped_key_with_the_fix_and_fails_an_issuer_left_without_keys() {
    // EdDSA is not in the default algorithms: an Ed25519 key is dropped (RFC 8037's example key).
    let ed25519 =
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "eddsa-1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    issuer.publish_raw(ed25519.clone());
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let out = run(args(&["check", "--config", config.path().to_str().unwrap()])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(&format!("ok    {}: 1 signing key(s)", issuer.url())), "{stdout}");
    let dropped = format!(
        "warn  {}: key \"eddsa-1\" dropped: EdDSA is not allowed for this issuer: add it to `algorithms`",
        issuer.url()
    );
    assert!(stdout.contains(&dropped), "{stdout}");

    let only_eddsa = DevIssuer::start(&[]).await.unwrap();
    only_eddsa.publish_raw(ed25519);
    let config = config_file(only_eddsa.url(), only_eddsa.ca_pem(), "");
    let out = run(args(&["check", "--config", config.path().to_str().unwrap()])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("FAIL  {}: JWKS at", only_eddsa.url())), "{stdout}");
    assert!(stdout.contains("EdDSA is not allowed for this issuer: add it to `algorithms`"), "{stdout}");
}

#[tokio::test]
async fn check_probes_each_introspection_endpoint_unless_offline() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let ca: String = issuer.ca_pem().lines().map(|l| format!("        {l}\n")).collect();
    let endpoint = |name: &str, path: &str, prefix: &str| {
        format!(
            "  - name: {name}\n    url: {}{path}\n    certificateAuthority: |\n{ca}    \
             clientAuthentication: {{clientID: gw, clientSecretFile: {}}}\n    opaqueTokens: {{prefix: \"{prefix}\"}}\n    \
             claimMappings:\n      username: {{claim: client_id, prefix: 'x:'}}\n",
            issuer.url(),
            secret.display()
        )
    };
    let extra =
        format!("introspection:\n{}{}", endpoint("good", "/introspect", ""), endpoint("wrong", "/nothing", "w_"));
    let config = config_file(issuer.url(), issuer.ca_pem(), &extra);
    let path = config.path().to_str().unwrap();

    let out = run(args(&["check", "--config", path])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let good =
        format!("ok    introspection good: {}/introspect (answers active: false for a made-up token)", issuer.url());
    assert!(stdout.contains(&good), "{stdout}");
    assert!(
        stdout.contains(&format!("FAIL  introspection wrong: {}/nothing answered HTTP 404", issuer.url())),
        "{stdout}"
    );
    assert_eq!(issuer.introspection_requests(), 1, "the probe reached the endpoint");
    assert!(!stdout.contains("s3cret"), "{stdout}");

    let offline = run(args(&["check", "--offline", "--config", path])).await;
    assert_eq!(offline.status.code(), Some(0));
    assert_eq!(issuer.introspection_requests(), 1, "--offline calls nothing");
}

#[tokio::test]
async fn malformed_http_from_a_client_is_counted_not_logged_as_an_error() {
    use std::io::{Read, Write};
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let (child, port, logs) = spawn_serve(config.path(), "info").await;
    let garbage = [
        "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        "GET /healthz HTTP/9.9\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03\r\n\r\n",
    ];
    tokio::task::spawn_blocking(move || {
        for request in garbage {
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            conn.write_all(request.as_bytes()).unwrap();
            let mut answer = Vec::new();
            let _ = conn.read_to_end(&mut answer);
            assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"), "{request:?}");
        }
    })
    .await
    .unwrap();
    let (status, _) = {
        let resp = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap();
        (resp.status(), ())
    };
    assert_eq!(status, 200, "still serving");
    assert!(terminate(child).await.success());
    let logs = tokio::task::spawn_blocking(move || logs.join().unwrap()).await.unwrap();
    let errors: Vec<&str> = logs.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let summary = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["message"].as_str().is_some_and(|m| m.starts_with("connections closed for malformed")))
        .unwrap_or_else(|| panic!("a summary at exit:\n{logs}"));
    assert_eq!(summary["level"], "WARN");
    assert_eq!(summary["connections"], 3);
}
