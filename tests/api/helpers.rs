//! The harness: an HTTPS issuer with a generated CA, the gateway on port 0, typed helpers.

use jsonwebtoken::Algorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokenreview_gateway::config::Settings;
use tokenreview_gateway::dev::DevIssuer;
use tokenreview_gateway::startup::Application;

pub const V1: &str = "authentication.k8s.io/v1";
pub const V1BETA1: &str = "authentication.k8s.io/v1beta1";

pub struct TestApp {
    pub address: String,
    pub issuer: DevIssuer,
    pub client: reqwest::Client,
}

/// An issuer publishing `rs256-1`, `es256-1` and `ps256-1`, and a gateway trusting it.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let issuer =
        DevIssuer::start(&[Algorithm::RS256, Algorithm::ES256, Algorithm::PS256]).await.expect("dev issuer starts");
    spawn_gateway(issuer, configure).await
}

/// Starts a gateway for an issuer prepared by the test.
pub async fn spawn_gateway(issuer: DevIssuer, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = issuer.gateway_settings("127.0.0.1:0");
    settings.keys.startup_wait_seconds = 5;
    configure(&mut settings);
    settings.validate().expect("test settings are valid");
    let app = Application::build(&settings, None).await.expect("gateway builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp { address, issuer, client: reqwest::Client::new() }
}

pub fn review_body(api_version: &str, token: &str) -> Value {
    json!({"apiVersion": api_version, "kind": "TokenReview", "spec": {"token": token}})
}

pub fn rejected(api_version: &str) -> Value {
    json!({"apiVersion": api_version, "kind": "TokenReview", "status": {"authenticated": false}})
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

impl TestApp {
    /// POSTs raw bytes to a path with an optional content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, String) {
        let mut req = self.client.post(format!("{}{path}", self.address)).body(body);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let resp = req.send().await.expect("request is sent");
        let status = resp.status();
        (status, resp.text().await.expect("body is read"))
    }

    /// POSTs a JSON document to `/authenticate`.
    pub async fn post_review(&self, body: &Value) -> (StatusCode, Value) {
        let (status, text) = self.post_raw("/authenticate", Some("application/json"), body.to_string()).await;
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON answer, got {text:?}")))
    }

    /// Reviews a token in v1 and returns the whole answer; the status must be 200.
    pub async fn review(&self, token: &str) -> Value {
        let (status, body) = self.post_review(&review_body(V1, token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self.client.get(format!("{}{path}", self.address)).send().await.expect("request is sent");
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }

    /// A valid token for `sub` signed with `kid`.
    pub fn token(&self, kid: &str, sub: &str) -> String {
        self.issuer.sign(kid, &self.issuer.claims(sub)).unwrap()
    }

    /// A token signed with `rs256-1` whose claims were edited by `edit`.
    pub fn token_with(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.issuer.claims("alice");
        edit(&mut claims);
        self.issuer.sign("rs256-1", &claims).unwrap()
    }
}

/// The answer for an authenticated `sub` under the dev mapping.
pub fn authenticated(api_version: &str, sub: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "TokenReview",
        "status": {
            "authenticated": true,
            "user": {"username": format!("{sub}@example.com"), "uid": sub, "groups": ["oidc:developers"]}
        }
    })
}

impl TestApp {
    /// The value of one series on `/metrics`, 0 when absent. `labels` must be given in the order
    /// they are rendered.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, text) = self.get("/metrics").await;
        let rendered: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let series = if labels.is_empty() { name.to_string() } else { format!("{name}{{{}}}", rendered.join(",")) };
        text.lines()
            .find_map(|l| l.strip_prefix(&series).and_then(|rest| rest.strip_prefix(' ')))
            .map(|v| v.parse().unwrap())
            .unwrap_or(0.0)
    }

    /// Key fetches of the (first) issuer that ended with `result`.
    pub async fn fetches(&self, result: &str) -> f64 {
        let issuer = self.issuer.url().to_string();
        self.metric("tokenreview_gateway_key_fetches_total", &[("issuer", &issuer), ("result", result)]).await
    }

    /// A well-formed token naming a kid nobody published (its signature is junk).
    pub fn token_with_unknown_kid(&self, kid: &str) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        self.issuer.sign_with_header("rs256-1", &header, &self.issuer.claims("nobody")).unwrap()
    }

    /// Sends tokens with fresh unknown kids until the gateway has made one more key fetch that
    /// ended with `result` (bounded: the cooldown in these tests is one second).
    pub async fn fetch_until(&self, result: &str) {
        let before = self.fetches(result).await;
        for attempt in 0..100 {
            self.review(&self.token_with_unknown_kid(&format!("probe-{attempt}-{}", now()))).await;
            if self.fetches(result).await > before {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("no key fetch ended with {result}");
    }
}

impl TestApp {
    /// Reviews fresh tokens signed with `kid` until one is authenticated (bounded: about ten
    /// seconds of one-second cooldowns and retries).
    pub async fn eventually_authenticated(&self, kid: &str) -> bool {
        for i in 0..50 {
            let sub = format!("retry{i}");
            if self.review(&self.token(kid, &sub)).await == authenticated(V1, &sub) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        false
    }
}

/// Settings for fault tests: a one-second cooldown, a one-second floor on max-age and fast
/// retries, so each phase can trigger its own fetch and short max-ages are honoured.
pub fn fast_keys(s: &mut Settings) {
    s.keys.unknown_kid_cooldown_seconds = 1;
    s.keys.min_refresh_seconds = 1;
    s.keys.retry_interval_seconds = 1;
    s.keys.max_retry_interval_seconds = 1;
}

/// A YAML config file trusting `issuer_url` with `ca_pem`, mapping as the dev gateway does;
/// `extra` is appended at the top level (for example a `server:` block).
pub fn config_file(issuer_url: &str, ca_pem: &str, extra: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::io::Write::write_all(&mut f, config_yaml(&[(issuer_url, ca_pem)], extra).as_bytes()).unwrap();
    f
}

/// The YAML of a config trusting each `(url, ca)` issuer.
pub fn config_yaml(issuers: &[(&str, &str)], extra: &str) -> String {
    let mut yaml = format!("keys:\n  startupWaitSeconds: 3\n{extra}jwt:\n");
    for (url, ca_pem) in issuers {
        let ca: String = ca_pem.lines().map(|l| format!("        {l}\n")).collect();
        yaml.push_str(&format!(
            "  - issuer:\n      url: {url}\n      audiences: [kubernetes]\n      certificateAuthority: |\n{ca}    claimMappings:\n      username: {{claim: email, prefix: \"\"}}\n      groups: {{claim: groups, prefix: \"oidc:\"}}\n"
        ));
    }
    yaml
}
