//! Opaque tokens through RFC 7662 introspection, against a real authorization server
//! (panva/oidc-provider on Node.js, started here over HTTPS with a generated CA), and userinfo
//! groups. The dev issuer's hand-written `/introspect` serves only answers no real server gives.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokenreview_gateway::config::{IntrospectionEndpoint, Settings, UserInfoSettings};

use crate::helpers::{TestApp, V1, now, spawn_app_with};

/// The real authorization server, killed on drop. (The login tests use it too.)
pub struct AuthServer {
    child: Child,
    pub url: String,
    pub ca_pem: String,
    _dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// `npm ci` once per test run when the package is not installed yet (`.ci/run` does it first).
fn ensure_installed() {
    static INSTALL: Mutex<bool> = Mutex::new(false);
    let mut done = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if *done || provider_dir().join("node_modules/oidc-provider").is_dir() {
        *done = true;
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(provider_dir())
        .status()
        .expect("npm runs (Node.js and npm are needed for the introspection tests)");
    assert!(status.success(), "npm ci in tests/oidc-provider failed");
    *done = true;
}

impl AuthServer {
    async fn start() -> AuthServer {
        AuthServer::start_with(&[]).await
    }

    /// Starts it with extra environment variables (see server.mjs).
    pub async fn start_with(env: &[(&str, &str)]) -> AuthServer {
        ensure_installed();
        let ca = tokenreview_gateway::certs::Ca::new("introspection test CA", 1).unwrap();
        let leaf = ca.server(&["127.0.0.1".to_string(), "localhost".to_string()], 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).unwrap();
        let signing = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(dir.path().join("signing.pem"), signing.serialize_pem()).unwrap();
        // Node picks its port and prints it: no window in which another test takes it.
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(provider_dir())
            .env("TLS_CERT", dir.path().join("cert.pem"))
            .env("TLS_KEY", dir.path().join("key.pem"))
            .env("SIGNING_KEY", dir.path().join("signing.pem"))
            .env_remove("PORT")
            .env_remove("ISSUER")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().unwrap();
        // The first line says the server is up; the rest is drained so Node never writes to a
        // closed pipe (which would end it).
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            lines.for_each(drop);
        });
        let stderr = || std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
        let Ok(line) = tokio::time::timeout(Duration::from_secs(60), rx).await else {
            let _ = child.kill();
            panic!("oidc-provider starts in time; its stderr: {}", stderr());
        };
        let line =
            line.unwrap().unwrap_or_else(|| panic!("oidc-provider printed its port; stderr: {}", stderr())).unwrap();
        let port: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("oidc-provider said {line:?}"));
        let url = format!("https://127.0.0.1:{}", port["port"]);
        let root = reqwest::Certificate::from_pem(ca.pair.cert_pem.as_bytes()).unwrap();
        let http = reqwest::Client::builder().tls_certs_only([root]).build().unwrap();
        AuthServer { child, url, ca_pem: ca.pair.cert_pem, _dir: dir, http }
    }

    /// An opaque access token from the client credentials grant.
    async fn token_for(&self, client: &str, scope: &str) -> String {
        let response = self
            .http
            .post(format!("{}/token", self.url))
            .basic_auth(client, Some(format!("{client}-secret")))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[("grant_type", "client_credentials"), ("scope", scope)]))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let response: Value = serde_json::from_str(&response).unwrap();
        let token = response["access_token"].as_str().unwrap_or_else(|| panic!("a token, got {response}"));
        assert!(!token.contains('.'), "oidc-provider issues opaque tokens here: {token}");
        token.to_string()
    }

    async fn revoke(&self, client: &str, token: &str) {
        let status = self
            .http
            .post(format!("{}/token/revocation", self.url))
            .basic_auth(client, Some(format!("{client}-secret")))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[("token", token)]))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "revocation answered {status}");
    }

    /// Requests the server received at its introspection endpoint.
    async fn introspections(&self) -> u64 {
        let counts = self.http.get(format!("{}/__test/counts", self.url)).send().await.unwrap().text().await.unwrap();
        let counts: Value = serde_json::from_str(&counts).unwrap();
        counts["/token/introspection"].as_u64().unwrap_or(0)
    }

    /// An `introspection` entry for this server, with `overrides` merged in.
    fn endpoint(&self, overrides: Value) -> IntrospectionEndpoint {
        endpoint_for(&format!("{}/token/introspection", self.url), &self.ca_pem, "gateway", overrides)
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn secret_file(secret: &str) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), secret).unwrap();
    // Kept for the life of the test process: the gateway reads it at load.
    file.into_temp_path().keep().unwrap().display().to_string()
}

pub(crate) fn endpoint_for(url: &str, ca_pem: &str, client: &str, overrides: Value) -> IntrospectionEndpoint {
    let mut entry = json!({
        "name": "oidc-provider",
        "url": url,
        "certificateAuthority": ca_pem,
        "clientAuthentication": {"clientID": client, "clientSecretFile": secret_file(&format!("{client}-secret"))},
        "opaqueTokens": {"prefix": ""},
        "audiences": ["ci-deployer"],
        "tokenTypes": ["Bearer"],
        "requireExp": true,
        "claimMappings": {
            "username": {"claim": "client_id", "prefix": "oauth:"},
            "groups": {"expression": "claims.scope.split(' ').map(s, 'scope:' + s)"},
        },
    });
    entry.as_object_mut().unwrap().extend(overrides.as_object().unwrap().clone());
    serde_json::from_value(entry).expect("a valid introspection entry")
}

fn with_endpoints(endpoints: Vec<IntrospectionEndpoint>) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| s.introspection = endpoints
}

fn authenticated_as(username: &str, groups: &[&str]) -> Value {
    json!({"apiVersion": V1, "kind": "TokenReview",
           "status": {"authenticated": true, "user": {"username": username, "groups": groups}}})
}

fn rejected() -> Value {
    json!({"apiVersion": V1, "kind": "TokenReview", "status": {"authenticated": false}})
}

async fn reviews(app: &TestApp, result: &str, reason: &str) -> f64 {
    let labels = [("issuer", "introspection:oidc-provider"), ("result", result), ("reason", reason)];
    app.metric("tokenreview_gateway_reviews_total", &labels).await
}

#[tokio::test]
async fn an_active_opaque_token_is_mapped_like_a_jwt() {
    let server = AuthServer::start().await;
    let app = spawn_app_with(with_endpoints(vec![server.endpoint(json!({}))])).await;
    let token = server.token_for("ci-deployer", "deploy read").await;

    assert_eq!(app.review(&token).await, authenticated_as("oauth:ci-deployer", &["scope:deploy", "scope:read"]));
    // The second review is answered from the cache.
    assert_eq!(app.review(&token).await, authenticated_as("oauth:ci-deployer", &["scope:deploy", "scope:read"]));
    assert_eq!(server.introspections().await, 1);
    assert_eq!(reviews(&app, "authenticated", "").await, 2.0);
}

#[tokio::test]
async fn client_secret_post_works_and_a_wrong_secret_is_a_transient_error() {
    let server = AuthServer::start().await;
    let url = format!("{}/token/introspection", server.url);
    let post = endpoint_for(
        &url,
        &server.ca_pem,
        "gateway-post",
        json!({"clientAuthentication": {
        "method": "client_secret_post", "clientID": "gateway-post",
        "clientSecretFile": secret_file("gateway-post-secret")}}),
    );
    let app = spawn_app_with(with_endpoints(vec![post])).await;
    let token = server.token_for("ci-deployer", "deploy").await;
    assert_eq!(app.review(&token).await, authenticated_as("oauth:ci-deployer", &["scope:deploy"]));

    let wrong = endpoint_for(
        &url,
        &server.ca_pem,
        "gateway",
        json!({"clientAuthentication": {
        "clientID": "gateway", "clientSecretFile": secret_file("not-the-secret")}}),
    );
    let app = spawn_app_with(with_endpoints(vec![wrong])).await;
    let answer = app.review(&token).await;
    assert_eq!(answer["status"]["authenticated"], json!(false));
    assert!(answer["status"]["error"].as_str().unwrap().contains("introspection"), "{answer}");
    let labels = [("endpoint", "oidc-provider"), ("result", "http_status")];
    assert_eq!(app.metric("tokenreview_gateway_introspection_requests_total", &labels).await, 1.0);
}

#[tokio::test]
async fn a_revoked_token_is_rejected_once_the_revocation_window_has_passed() {
    let server = AuthServer::start().await;
    let app = spawn_app_with(with_endpoints(vec![server.endpoint(json!({"cacheMaxSeconds": 1}))])).await;
    let token = server.token_for("ci-deployer", "deploy").await;
    assert_eq!(app.review(&token).await, authenticated_as("oauth:ci-deployer", &["scope:deploy"]));

    server.revoke("ci-deployer", &token).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let answer = app.review(&token).await;
    let (_, metrics) = app.get("/metrics").await;
    assert_eq!(answer, rejected(), "{metrics}");
    assert_eq!(reviews(&app, "rejected", "inactive").await, 1.0);
    assert_eq!(server.introspections().await, 2, "the window expired, so the server was asked again");
}

#[tokio::test]
async fn a_token_issued_to_another_client_is_rejected_although_active() {
    let server = AuthServer::start().await;
    let app = spawn_app_with(with_endpoints(vec![server.endpoint(json!({}))])).await;
    let token = server.token_for("other-app", "read").await;
    assert_eq!(app.review(&token).await, rejected());
    assert_eq!(reviews(&app, "rejected", "wrong_audience").await, 1.0);
}

#[tokio::test]
async fn an_endpoint_that_is_down_gives_a_transient_error_that_is_not_cached() {
    let server = AuthServer::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = endpoint_for(&format!("https://127.0.0.1:{closed}/introspect"), &server.ca_pem, "gateway", json!({}));
    let app = spawn_app_with(with_endpoints(vec![down])).await;
    let token = server.token_for("ci-deployer", "deploy").await;
    for _ in 0..2 {
        let answer = app.review(&token).await;
        assert_eq!(answer["status"]["authenticated"], json!(false));
        assert!(answer["status"]["error"].is_string(), "{answer}");
    }
    let labels = [("endpoint", "oidc-provider"), ("result", "request_failed")];
    assert_eq!(app.metric("tokenreview_gateway_introspection_requests_total", &labels).await, 2.0);
    assert_eq!(reviews(&app, "error", "introspection_unavailable").await, 2.0);
}

#[tokio::test]
async fn a_flood_of_random_strings_costs_the_server_a_bounded_number_of_calls() {
    let server = AuthServer::start().await;
    let app =
        spawn_app_with(with_endpoints(vec![server.endpoint(json!({"maxRequestsPerSecond": 1, "burst": 5}))])).await;
    let started = Instant::now();
    let mut transient = 0;
    for i in 0..40 {
        let answer = app.review(&format!("random-opaque-string-{i:04}-{}", now())).await;
        assert_eq!(answer["status"]["authenticated"], json!(false));
        transient += usize::from(answer["status"]["error"].is_string());
    }
    // Strings no server issues never leave the gateway.
    for junk in ["short", "with spaces that are not token characters", "quote\"quote\"quote\"quote"] {
        assert_eq!(app.review(junk).await, rejected());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = server.introspections().await as f64;
    let allowed = 5.0 + elapsed.ceil();
    assert!(calls <= allowed, "{calls} calls in {elapsed:.1}s with a budget of 5 + 1/s");
    assert!(transient >= 40 - allowed as usize, "{transient} reviews were refused by the budget");
    let labels = [("endpoint", "oidc-provider"), ("result", "budget_exhausted")];
    assert_eq!(app.metric("tokenreview_gateway_introspection_requests_total", &labels).await, transient as f64);
}

#[tokio::test]
async fn jwt_shaped_tokens_never_reach_introspection() {
    let server = AuthServer::start().await;
    let app = spawn_app_with(with_endpoints(vec![server.endpoint(json!({}))])).await;
    let good = app.token("rs256-1", "alice");
    let (head, rest) = good.split_once('.').unwrap();
    for token in [
        format!("{head}.{rest}x"),                                   // bad signature
        format!("{head}.garbage"),                                   // JOSE header, garbage after
        app.token_with(|c| c["iss"] = json!("https://idp.invalid")), // unknown issuer
        app.token_with(|c| c["exp"] = json!(now() - 3600)),          // expired
    ] {
        assert_eq!(app.review(&token).await, rejected(), "{token}");
    }
    assert_eq!(server.introspections().await, 0);
}

#[tokio::test]
async fn answers_no_real_server_gives_are_not_taken_as_active() {
    // The dev issuer's hand-written endpoint serves exactly these bodies.
    let app = spawn_app_with(|_| {}).await;
    let cases = [
        ("tok-string-active-0000", r#"{"active":"true","client_id":"ci-deployer","token_type":"Bearer","exp":4000000000,"scope":"x"}"#.to_string()),
        ("tok-missing-active-000", r#"{"client_id":"ci-deployer","token_type":"Bearer","exp":4000000000,"scope":"x"}"#.to_string()),
        ("tok-expired-but-active", format!(r#"{{"active":true,"client_id":"ci-deployer","token_type":"Bearer","exp":{},"scope":"x"}}"#, now() - 10)),
        ("tok-refresh-token-0000", r#"{"active":true,"client_id":"ci-deployer","token_type":"refresh_token","exp":4000000000,"scope":"x"}"#.to_string()),
        ("tok-duplicate-active-0", r#"{"active":false,"active":true,"client_id":"ci-deployer","token_type":"Bearer","exp":4000000000,"scope":"x"}"#.to_string()),
    ];
    for (token, body) in &cases {
        app.issuer.set_introspection_response(token, body);
    }
    let url = format!("{}/introspect", app.issuer.url());
    let fake = endpoint_for(&url, app.issuer.ca_pem(), "gateway", json!({}));
    let app = crate::helpers::spawn_gateway(app.issuer, with_endpoints(vec![fake])).await;
    for (token, _) in &cases {
        let answer = app.review(token).await;
        assert_eq!(answer["status"]["authenticated"], json!(false), "{token}: {answer}");
    }
    for reason in ["inactive", "expired", "wrong_token_type"] {
        let n = if reason == "inactive" { 2.0 } else { 1.0 };
        assert_eq!(reviews(&app, "rejected", reason).await, n, "{reason}");
    }
    assert_eq!(reviews(&app, "error", "introspection_unavailable").await, 1.0, "duplicate keys");
    assert_eq!(app.issuer.introspection_requests(), cases.len());
}

#[tokio::test]
async fn an_opaque_token_goes_only_to_the_endpoint_its_prefix_names() {
    let server = AuthServer::start().await;
    let app = spawn_app_with(|_| {}).await;
    app.issuer.set_introspection_response(
        "kc_0123456789abcdef",
        r#"{"active":true,"client_id":"ci-deployer","token_type":"Bearer","exp":4000000000,"scope":"kc"}"#,
    );
    let mut kc = endpoint_for(&format!("{}/introspect", app.issuer.url()), app.issuer.ca_pem(), "gateway", json!({}));
    kc.name = "keycloak".into();
    kc.opaque_tokens.as_mut().unwrap().prefix = "kc_".into();
    let app = crate::helpers::spawn_gateway(app.issuer, with_endpoints(vec![server.endpoint(json!({})), kc])).await;

    assert_eq!(app.review("kc_0123456789abcdef").await, authenticated_as("oauth:ci-deployer", &["scope:kc"]));
    assert_eq!((app.issuer.introspection_requests(), server.introspections().await), (1, 0));
    let token = server.token_for("ci-deployer", "read").await;
    assert_eq!(app.review(&token).await, authenticated_as("oauth:ci-deployer", &["scope:read"]));
    assert_eq!((app.issuer.introspection_requests(), server.introspections().await), (1, 1));
}

#[tokio::test]
async fn an_issuer_configured_to_introspect_its_jwts_needs_them_active() {
    let app = spawn_app_with(|_| {}).await;
    let active = app.token("rs256-1", "alice");
    let revoked = app.token("rs256-1", "bob");
    app.issuer.set_introspection_response(
        &active,
        r#"{"active":true,"client_id":"kubernetes","token_type":"Bearer","exp":4000000000}"#,
    );
    let url = format!("{}/introspect", app.issuer.url());
    let mut revocation = endpoint_for(&url, app.issuer.ca_pem(), "gateway", json!({"audiences": ["kubernetes"]}));
    revocation.opaque_tokens = None;
    revocation.claim_mappings = None;
    let app = crate::helpers::spawn_gateway(app.issuer, |s: &mut Settings| {
        s.jwt[0].introspect = Some("oidc-provider".into());
        s.introspection = vec![revocation];
    })
    .await;
    assert_eq!(app.review(&active).await, crate::helpers::authenticated(V1, "alice"));
    assert_eq!(app.review(&revoked).await, rejected());
    // A JWT that fails its own checks is never sent.
    let (head, rest) = active.split_once('.').unwrap();
    assert_eq!(app.review(&format!("{head}.{rest}x")).await, rejected());
    assert_eq!(app.issuer.introspection_requests(), 2);
}

fn userinfo_groups(s: &mut Settings) {
    s.jwt[0].user_info = Some(UserInfoSettings { groups_claim: None });
}

#[tokio::test]
async fn groups_missing_from_a_token_come_from_userinfo() {
    let app = spawn_app_with(userinfo_groups).await;
    app.issuer.set_userinfo("carol", json!({"groups": ["platform", "oncall"]}));
    let thin = app.token_with(|c| {
        c["sub"] = json!("carol");
        c["email"] = json!("carol@example.com");
        c.as_object_mut().unwrap().remove("groups");
    });
    let answer = app.review(&thin).await;
    assert_eq!(answer["status"]["user"]["groups"], json!(["oidc:platform", "oidc:oncall"]), "{answer}");
    assert_eq!(app.issuer.userinfo_requests(), 1);
    // A token that carries its groups costs no call.
    assert_eq!(app.review(&app.token("rs256-1", "dave")).await, crate::helpers::authenticated(V1, "dave"));
    assert_eq!(app.issuer.userinfo_requests(), 1);
}

#[tokio::test]
async fn a_userinfo_answer_naming_groups_twice_grants_nothing() {
    let app = spawn_app_with(userinfo_groups).await;
    app.issuer.set_userinfo_raw(Some(r#"{"sub":"alice","groups":["developers"],"groups":["system:masters"]}"#));
    let thin = app.token_with(|c| drop(c.as_object_mut().unwrap().remove("groups")));
    let answer = app.review(&thin).await;
    assert_eq!(answer["status"]["authenticated"], json!(false), "{answer}");
    assert!(answer["status"]["error"].as_str().unwrap().contains("userinfo"), "{answer}");
    // The same answer without the repeat is used.
    app.issuer.set_userinfo_raw(Some(r#"{"sub":"alice","groups":["developers"]}"#));
    let answer = app.review(&thin).await;
    assert_eq!(answer["status"]["user"]["groups"], json!(["oidc:developers"]), "{answer}");
}

#[tokio::test]
async fn userinfo_down_is_a_transient_error() {
    let app = spawn_app_with(userinfo_groups).await;
    app.issuer.set_userinfo_status(Some(503));
    let thin = app.token_with(|c| {
        c.as_object_mut().unwrap().remove("groups");
    });
    for _ in 0..2 {
        let answer = app.review(&thin).await;
        assert_eq!(answer["status"]["authenticated"], json!(false));
        assert!(answer["status"]["error"].as_str().unwrap().contains("userinfo"), "{answer}");
    }
    assert_eq!(app.issuer.userinfo_requests(), 2, "transient errors are not cached");
}

#[tokio::test]
async fn a_hanging_endpoint_times_out_into_a_transient_error() {
    // Accepts connections and never answers: neither the TLS handshake nor a response comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}/introspect", silent.local_addr().unwrap().port());
    let app = spawn_app_with(|_| {}).await;
    let hanging = endpoint_for(&url, app.issuer.ca_pem(), "gateway", json!({"requestTimeoutSeconds": 1}));
    let app = crate::helpers::spawn_gateway(app.issuer, with_endpoints(vec![hanging])).await;
    let answer = app.review("opaque-token-that-waits-0001").await;
    assert_eq!(answer["status"]["authenticated"], json!(false));
    assert!(answer["status"]["error"].as_str().unwrap().contains("introspection"), "{answer}");
    assert_eq!(reviews(&app, "error", "introspection_unavailable").await, 1.0);
    drop(silent);
}

#[test]
fn check_reads_the_client_secret_and_names_each_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let config = dir.path().join("gateway.yaml");
    let yaml = format!(
        "introspection:\n  - name: hydra\n    url: https://hydra.example.com/admin/oauth2/introspect\n    \
         clientAuthentication: {{clientID: gw, clientSecretFile: {}}}\n    opaqueTokens: {{prefix: ory_at_}}\n    \
         claimMappings:\n      username: {{claim: client_id, prefix: 'hydra:'}}\n",
        secret.display()
    );
    std::fs::write(&config, yaml).unwrap();
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_tokenreview-gateway"))
            .args(["check", "--offline", "--config", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let missing = check();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(stderr.contains("introspection[0]: clientAuthentication: clientSecretFile cannot be read"), "{stderr}");

    std::fs::write(&secret, "s3cret\n").unwrap();
    let ok = check();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}{}", String::from_utf8_lossy(&ok.stderr));
    assert!(
        stdout.contains("ok    introspection hydra: https://hydra.example.com/admin/oauth2/introspect"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"), "{stdout}");
}
