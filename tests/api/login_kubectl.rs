//! kubectl itself as the client: a kubeconfig whose user runs `tokenreview-gateway login`,
//! pointed at a small HTTPS server that records the bearer token kubectl sends. That token must
//! be the one the gateway (`serve`, trusting the same provider) authenticates with the expected
//! username and groups.
//!
//! kubectl comes from the machine image (Debian package `kubectl`); see README "Testing".

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokenreview_gateway::config::Settings;
use tokenreview_gateway::startup::Application;

use crate::helpers::V1;
use crate::login::{BIN, Login, claims, finish};

/// An HTTPS "cluster" that answers every request and records its Authorization header.
struct Recorder {
    url: String,
    ca_file: tempfile::NamedTempFile,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn record(req: HttpRequest, seen: web::Data<Arc<Mutex<Vec<String>>>>) -> HttpResponse {
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    seen.lock().unwrap().push(auth);
    HttpResponse::Ok().json(json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-recorder"}))
}

impl Recorder {
    fn start() -> Recorder {
        let ca = tokenreview_gateway::certs::Ca::new("kubectl test cluster CA", 1).unwrap();
        let leaf = ca.server(&["127.0.0.1".to_string()], 1).unwrap();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let data = web::Data::new(Arc::clone(&seen));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(record)))
            .workers(1)
            .listen_rustls_0_23(listener, config)
            .unwrap()
            .run();
        tokio::spawn(server);
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), &ca.pair.cert_pem).unwrap();
        Recorder { url: format!("https://127.0.0.1:{port}"), ca_file, seen }
    }

    fn bearers(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// The gateway, trusting the provider's ID tokens for client `kubectl` and mapping as the
/// README's example does (email, groups with an `oidc:` prefix).
async fn gateway_for(login: &Login) -> (String, tempfile::NamedTempFile) {
    let ca: String = login.provider.ca_pem.lines().map(|l| format!("        {l}\n")).collect();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nkeys:\n  startupWaitSeconds: 5\njwt:\n  - issuer:\n      url: {}\n      audiences: [kubectl]\n      certificateAuthority: |\n{ca}    claimMappings:\n      username: {{claim: email, prefix: \"\"}}\n      groups: {{claim: groups, prefix: \"oidc:\"}}\n      uid: {{claim: sub}}\n",
        login.provider.url
    );
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let settings = Settings::load(file.path()).unwrap();
    let app = Application::build(&settings, None).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    (address, file)
}

fn setup_command(login: &Login, gateway_config: &std::path::Path) -> tokio::process::Command {
    let mut setup = tokio::process::Command::new(BIN);
    let mut args = login.args("kubectl");
    args.insert(1, "setup".into());
    setup
        .args(&args)
        .arg(format!("--exec-command={BIN}"))
        .arg(format!("--config={}", gateway_config.display()))
        .envs(login.browser_env())
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    setup
}

async fn review(gateway: &str, token: &str) -> Value {
    let body = json!({"apiVersion": V1, "kind": "TokenReview", "spec": {"token": token}});
    let answer = reqwest::Client::new()
        .post(format!("{gateway}/authenticate"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    serde_json::from_str(&answer.text().await.unwrap()).unwrap()
}

fn kubeconfig(login: &Login, cluster: &Recorder, user: &str) -> tempfile::NamedTempFile {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let env: String = login
        .browser_env()
        .iter()
        .map(|(k, v)| format!("          - name: {k}\n            value: {}\n", q(v)))
        .collect();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: test\n    cluster:\n      server: {}\n      certificate-authority: {}\n{user}        env:\n{env}contexts:\n  - name: test\n    context: {{cluster: test, user: oidc}}\ncurrent-context: test\n",
        cluster.url,
        q(&cluster.ca_file.path().display().to_string()),
    );
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

async fn kubectl(config: &std::path::Path) -> crate::login::Run {
    let mut c = tokio::process::Command::new("kubectl");
    c.arg(format!("--kubeconfig={}", config.display()))
        .args(["get", "--raw", "/version"])
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    finish(c).await
}

#[tokio::test]
async fn kubectl_logs_in_through_the_plugin_once_and_the_gateway_authenticates_what_it_sends() {
    let login = Login::start().await;
    let cluster = Recorder::start();
    let (gateway, gateway_config) = gateway_for(&login).await;
    // The users entry as `login setup` prints it (written by the plugin itself), with what the
    // gateway's configuration makes of the token.
    let setup = finish(setup_command(&login, gateway_config.path())).await;
    assert!(setup.success, "{}", setup.stderr);
    assert!(setup.stdout.contains("\"email\": \"alice@example.com\""), "the claims: {}", setup.stdout);
    assert!(
        setup.stdout.contains(
            "authenticated\nusername: alice@example.com\nuid: alice\ngroups: [\"oidc:developers\",\"oidc:viewers\"]"
        ),
        "the gateway's answer: {}",
        setup.stdout
    );
    // The printed kubectl command writes the same user.
    let command = setup.stdout.split("# or, with kubectl\n").nth(1).unwrap().split("\n\n").next().unwrap();
    let written = tempfile::NamedTempFile::new().unwrap();
    let sh = std::process::Command::new("sh").arg("-c").arg(command).env("KUBECONFIG", written.path()).output();
    assert!(sh.unwrap().status.success(), "{command}");
    let view = std::process::Command::new("kubectl")
        .args(["config", "view", "-o", "jsonpath={.users[0].user.exec.args}"])
        .env("KUBECONFIG", written.path())
        .output()
        .unwrap();
    let written_args: Vec<String> = serde_json::from_slice(&view.stdout).unwrap();
    let stanza_args: Vec<String> = setup
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("          - "))
        .map(|a| serde_json::from_str(a).unwrap())
        .collect();
    assert!(stanza_args.len() > 5, "{stanza_args:?}");
    assert_eq!(written_args, stanza_args);
    let stanza = setup.stdout.split("# kubeconfig user (users[].user.exec)\n").nth(1).unwrap();
    let stanza = stanza.split("\n\n").next().unwrap();
    assert!(stanza.contains("interactiveMode: IfAvailable"), "{stanza}");
    let config = kubeconfig(&login, &cluster, &format!("{stanza}\n"));

    let first = kubectl(config.path()).await;
    assert!(first.success, "kubectl failed: {}", first.stderr);
    assert!(first.stdout.contains("v1.32.0-recorder"), "{}", first.stdout);
    let second = kubectl(config.path()).await;
    assert!(second.success, "{}", second.stderr);
    assert_eq!(login.browser_runs(), 1, "setup logged in; kubectl used the cache");

    let bearers = cluster.bearers();
    assert!(bearers.len() >= 2, "{bearers:?}");
    assert!(bearers.iter().all(|b| *b == bearers[0]), "every request carries the same token");
    let token = bearers[0].strip_prefix("Bearer ").expect("a bearer token").to_string();
    assert_eq!(claims(&token)["aud"], "kubectl");
    let answer = review(&gateway, &token).await;
    assert_eq!(
        answer["status"],
        json!({"authenticated": true, "user": {"username": "alice@example.com", "uid": "alice", "groups": ["oidc:developers", "oidc:viewers"]}}),
        "{answer}"
    );
}

#[tokio::test]
async fn kubectl_runs_the_browser_login_itself_when_the_cache_is_empty() {
    let login = Login::start().await;
    let cluster = Recorder::start();
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let mut user = format!(
        "users:\n  - name: oidc\n    user:\n      exec:\n        apiVersion: client.authentication.k8s.io/v1beta1\n        command: {}\n        interactiveMode: Never\n        args:\n",
        q(BIN)
    );
    for a in login.args("kubectl") {
        user.push_str(&format!("          - {}\n", q(&a)));
    }
    let config = kubeconfig(&login, &cluster, &user);
    let run = kubectl(config.path()).await;
    assert!(run.success, "kubectl failed: {}", run.stderr);
    assert_eq!(login.browser_runs(), 1);
    let bearers = cluster.bearers();
    let token = bearers[0].strip_prefix("Bearer ").unwrap();
    assert_eq!(claims(token)["email"], "alice@example.com");
}

#[tokio::test]
async fn login_setup_shows_why_a_gateway_would_refuse_the_token() {
    let login = Login::start().await;
    // A gateway that expects another audience (the common mistake: the client id is not in
    // jwt[].issuer.audiences).
    let ca: String = login.provider.ca_pem.lines().map(|l| format!("        {l}\n")).collect();
    let yaml = format!(
        "jwt:\n  - issuer:\n      url: {}\n      audiences: [kubernetes]\n      certificateAuthority: |\n{ca}    claimMappings:\n      username: {{claim: email, prefix: \"\"}}\n",
        login.provider.url
    );
    let config = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(config.path(), yaml).unwrap();
    let run = finish(setup_command(&login, config.path())).await;
    assert!(run.success, "{}", run.stderr);
    assert!(run.stdout.contains("rejected: wrong_audience"), "{}", run.stdout);
}

#[tokio::test]
async fn the_kubeconfig_command_prints_a_user_kubeconfig_kubectl_reads() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "CLUSTER CA").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["kubeconfig", "--server=https://k8s.example.com:6443", "--oidc-issuer-url=https://idp.example.com"])
        .args(["--oidc-client-id=kubectl", "--oidc-extra-scope=email,groups"])
        .arg(format!("--ca={}", ca.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = dir.path().join("config");
    std::fs::write(&file, &out.stdout).unwrap();
    let view = std::process::Command::new("kubectl")
        .arg(format!("--kubeconfig={}", file.display()))
        .args(["config", "view", "--raw", "-o", "json"])
        .output()
        .unwrap();
    assert!(view.status.success(), "{}", String::from_utf8_lossy(&view.stderr));
    let view: Value = serde_json::from_slice(&view.stdout).unwrap();
    let exec = &view["users"][0]["user"]["exec"];
    assert_eq!(exec["command"], "tokenreview-gateway");
    assert_eq!(
        exec["args"],
        json!([
            "login",
            "--oidc-issuer-url=https://idp.example.com",
            "--oidc-client-id=kubectl",
            "--oidc-extra-scope=email",
            "--oidc-extra-scope=groups"
        ])
    );
    assert_eq!(exec["interactiveMode"], "IfAvailable");
    assert_eq!(view["clusters"][0]["cluster"]["server"], "https://k8s.example.com:6443");
    assert_eq!(view["current-context"], "oidc");
}
