//! The local stack (`docker-compose.yml`): its gateway config, run by the binary against a
//! stand-in for its Dex, gives the walkthrough's users exactly the identities the README shows.
//! The stand-in is the dev issuer, minting tokens shaped like Dex's password-grant ID tokens for
//! the users and groups in `local-stack/dex.yaml`. Only the issuer URL and the certificate paths
//! of the gateway config are rewritten; the trust path is the stack's own (`SSL_CERT_FILE`).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokenreview_gateway::dev::DevIssuer;

use crate::helpers::now;

const BIN: &str = env!("CARGO_BIN_EXE_tokenreview-gateway");
const CERTS_IN_STACK: &str = "/certs/gateway/";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A YAML file of the repository as JSON.
fn yaml(path: &str) -> Value {
    config::Config::builder()
        .add_source(config::File::from(repo(path)).format(config::FileFormat::Yaml))
        .build()
        .and_then(|c| c.try_deserialize())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct DexUser {
    email: String,
    user_id: String,
    groups: Vec<String>,
}

struct DexConfig {
    issuer: String,
    client_id: String,
    users: Vec<DexUser>,
}

fn dex_config() -> DexConfig {
    let dex = yaml("local-stack/dex.yaml");
    let text = |v: &Value| v.as_str().unwrap().to_string();
    let users = dex["staticPasswords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| DexUser {
            email: text(&u["email"]),
            user_id: text(&u["userID"]),
            groups: u["groups"].as_array().unwrap().iter().map(text).collect(),
        })
        .collect();
    DexConfig { issuer: text(&dex["issuer"]), client_id: text(&dex["staticClients"][0]["id"]), users }
}

/// Dex's `sub`: its internal IDTokenSubject protobuf (field 1 the user id, field 2 the connector
/// id), base64url without padding.
fn dex_subject(user_id: &str, connector: &str) -> String {
    let mut bytes = vec![0x0a, user_id.len() as u8];
    bytes.extend_from_slice(user_id.as_bytes());
    bytes.extend_from_slice(&[0x12, connector.len() as u8]);
    bytes.extend_from_slice(connector.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The claims of the ID token Dex issues for `user` on a password grant with scopes
/// `openid email groups` (what `scripts/dex-token` asks for), with `iss` set to the stand-in.
fn dex_id_token_claims(iss: &str, client_id: &str, user: &DexUser) -> Value {
    json!({
        "iss": iss,
        "sub": dex_subject(&user.user_id, "local"),
        "aud": client_id,
        "exp": now() + 3600,
        "iat": now(),
        "at_hash": "3bVXmyrAf3aRbQUUR0D2eA",
        "email": user.email,
        "email_verified": true,
        "groups": user.groups,
    })
}

/// The stack's gateway config with the issuer URL pointed at `issuer_url` and the certificate
/// paths at fresh certificates in `dir`; nothing else changes.
fn gateway_config_for(dex_issuer: &str, issuer_url: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo("local-stack/gateway.yaml")).unwrap();
    assert!(text.contains(&format!("url: {dex_issuer}\n")), "the gateway trusts Dex's issuer");
    assert!(text.contains(CERTS_IN_STACK), "the gateway serves the certificates of the certs step");
    let certs = dir.join("gateway");
    tokenreview_gateway::certs::write_all(&certs, &["gateway".to_string()], "kube-apiserver", 1, false).unwrap();
    let rewritten = text
        .replace(&format!("url: {dex_issuer}\n"), &format!("url: {issuer_url}\n"))
        .replace(CERTS_IN_STACK, &format!("{}/", certs.display()));
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, rewritten).unwrap();
    path
}

/// `tokenreview-gateway review` as the gateway container would decide: only `ca_file` trusted.
async fn review(config: &Path, ca_file: &Path, token: &str) -> (Option<i32>, Value, String) {
    let (config, ca_file, token) = (config.to_path_buf(), ca_file.to_path_buf(), token.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["review", "--config", config.to_str().unwrap(), "--token", &token])
            .env_remove("RUST_LOG")
            .env_remove("SSL_CERT_DIR")
            .env("SSL_CERT_FILE", ca_file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let answer = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("no JSON answer; stderr: {stderr}"));
    (out.status.code(), answer, stderr)
}

/// The stand-in for Dex and the stack's gateway config pointed at it.
struct Stack {
    dex: DexConfig,
    issuer: DevIssuer,
    config: PathBuf,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn start() -> Stack {
        let dex = dex_config();
        let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = gateway_config_for(&dex.issuer, issuer.url(), dir.path());
        let ca_file = dir.path().join("dex-ca.crt");
        std::fs::write(&ca_file, issuer.ca_pem()).unwrap();
        Stack { dex, issuer, config, ca_file, _dir: dir }
    }

    /// A Dex-shaped ID token for `user` with audience `client_id`, and the gateway's verdict.
    async fn review(&self, user: &DexUser, client_id: &str) -> (Option<i32>, Value, String) {
        let claims = dex_id_token_claims(self.issuer.url(), client_id, user);
        review(&self.config, &self.ca_file, &self.issuer.sign("rs256-1", &claims).unwrap()).await
    }
}

#[tokio::test]
async fn the_walkthrough_users_get_exactly_the_identities_the_readme_shows() {
    let stack = Stack::start().await;

    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let rbac = yaml("local-stack/rbac.yaml");
    let bound_group = rbac["subjects"][0]["name"].as_str().unwrap();
    let mut mapped = Vec::new();
    for user in &stack.dex.users {
        let (code, answer, stderr) = stack.review(user, &stack.dex.client_id).await;
        assert_eq!(code, Some(0), "{} is authenticated: {stderr}", user.email);
        let identity = &answer["status"]["user"];
        let groups: Vec<String> = user.groups.iter().map(|g| format!("dex:{g}")).collect();
        assert_eq!(identity, &json!({"username": user.email, "groups": groups}), "{}", user.email);
        // What `kubectl auth whoami` prints for this identity, as the README shows it.
        let username_line = format!("Username    {}\n", user.email);
        let groups_line = format!("Groups      [{} system:authenticated]\n", groups.join(" "));
        assert!(readme.contains(&username_line), "README shows {username_line:?}");
        assert!(readme.contains(&groups_line), "README shows {groups_line:?}");
        mapped.push((user.email.clone(), groups));
    }

    let in_bound_group = |email: &str| mapped.iter().any(|(e, g)| e == email && g.iter().any(|g| g == bound_group));
    assert!(in_bound_group("alice@example.com"), "alice is in {bound_group}, the group rbac.yaml binds");
    assert!(mapped.iter().any(|(e, _)| e == "bob@example.com"), "bob is a Dex user");
    assert!(!in_bound_group("bob@example.com"), "bob is not in {bound_group}");
    assert!(readme.contains(
        "pods is forbidden: User \"bob@example.com\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
    ));
}

#[tokio::test]
async fn tokens_of_dexs_public_kubectl_client_are_accepted_too() {
    let stack = Stack::start().await;
    let dex = yaml("local-stack/dex.yaml");
    let kubectl = &dex["staticClients"][1];
    assert_eq!((kubectl["id"].as_str(), kubectl["public"].as_bool()), (Some("kubectl"), Some(true)));
    assert!(kubectl.get("redirectURIs").is_none(), "no redirectURIs: any loopback port (RFC 8252)");
    let (code, answer, stderr) = stack.review(&stack.dex.users[0], "kubectl").await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(answer["status"]["user"]["username"], "alice@example.com");
}

#[tokio::test]
async fn a_token_for_another_audience_than_dexs_client_is_rejected() {
    let stack = Stack::start().await;
    let (code, answer, stderr) = stack.review(&stack.dex.users[0], "some-other-client").await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(answer["status"], json!({"authenticated": false}));
}

#[tokio::test]
async fn check_offline_validates_the_stacks_config_without_reaching_dex() {
    let dex = dex_config();
    let dir = tempfile::tempdir().unwrap();
    // The issuer stays https://dex:5556/dex, which nothing here resolves.
    let config = gateway_config_for(&dex.issuer, &dex.issuer, dir.path());
    let run = |config: PathBuf| {
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(["check", "--offline", "--config", config.to_str().unwrap()])
                .env_remove("RUST_LOG")
                .output()
                .unwrap()
        })
    };
    let out = run(config.clone()).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("configuration is valid: 1 issuer(s)\noffline: no keys fetched"), "{stdout}");

    // Offline still loads the serving certificate: a file that is not one fails the check.
    std::fs::write(dir.path().join("gateway/tls.crt"), "not a certificate\n").unwrap();
    let out = run(config).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.tls"), "{}", String::from_utf8_lossy(&out.stderr));
}
