//! `tokenreview-gateway login`, the kubectl exec credential plugin, run as a process against the
//! real OAuth 2.0 server of the introspection tests (oidc-provider). The "browser" is
//! tests/oidc-provider/browser.mjs, given as `--browser-command`: it signs in and consents on
//! the provider's own pages over HTTP and lands on the plugin's loopback redirect.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::process::Command;

use crate::introspection::{AuthServer, provider_dir};

pub const BIN: &str = env!("CARGO_BIN_EXE_tokenreview-gateway");
const V1_NOT_INTERACTIVE: &str =
    r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#;
const V1BETA1_INTERACTIVE: &str =
    r#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":true}}"#;

/// The provider, and a directory with its CA file, the token cache and the browser's log.
pub struct Login {
    pub provider: AuthServer,
    pub dir: tempfile::TempDir,
}

/// One finished plugin run.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Login {
    pub async fn start() -> Login {
        Login::start_with(&[]).await
    }

    pub async fn start_with(env: &[(&str, &str)]) -> Login {
        let provider = AuthServer::start_with(env).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &provider.ca_pem).unwrap();
        Login { provider, dir }
    }

    pub fn ca_file(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn browser_log(&self) -> PathBuf {
        self.dir.path().join("browser.log")
    }

    pub fn browser() -> String {
        provider_dir().join("browser.mjs").display().to_string()
    }

    /// The arguments every run has: this provider, `client`, its CA, the test's cache, a free
    /// loopback port and the scripted browser.
    pub fn args(&self, client: &str) -> Vec<String> {
        vec![
            "login".into(),
            format!("--oidc-issuer-url={}", self.provider.url),
            format!("--oidc-client-id={client}"),
            "--oidc-extra-scope=email,groups".into(),
            format!("--certificate-authority={}", self.ca_file()),
            format!("--token-cache-dir={}", self.cache_dir().display()),
            "--listen-address=127.0.0.1:0".into(),
            format!("--browser-command={}", Login::browser()),
        ]
    }

    /// The environment the browser needs (it is the plugin's child).
    pub fn browser_env(&self) -> Vec<(&'static str, String)> {
        vec![("NODE_EXTRA_CA_CERTS", self.ca_file()), ("BROWSER_LOG", self.browser_log().display().to_string())]
    }

    /// The plugin as kubectl runs it (v1, not interactive), for the `kubectl` client, plus `extra`.
    pub fn command(&self, extra: &[&str]) -> Command {
        self.command_for("kubectl", extra)
    }

    /// A flag in `extra` replaces the usual one of the same name.
    pub fn command_for(&self, client: &str, extra: &[&str]) -> Command {
        let name = |a: &str| a.split('=').next().unwrap_or("").to_string();
        let replaced: Vec<String> = extra.iter().map(|a| name(a)).collect();
        let base: Vec<String> = self.args(client).into_iter().filter(|a| !replaced.contains(&name(a))).collect();
        let mut c = Command::new(BIN);
        c.args(base)
            .args(extra)
            .envs(self.browser_env())
            .env("KUBERNETES_EXEC_INFO", V1_NOT_INTERACTIVE)
            .env_remove("RUST_LOG")
            .env_remove("BROWSER_ACTION")
            .env_remove("TOKENREVIEW_GATEWAY_OIDC_CLIENT_SECRET")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    pub async fn run(&self, extra: &[&str]) -> Run {
        finish(self.command(extra)).await
    }

    /// How many times the browser was started.
    pub fn browser_runs(&self) -> usize {
        std::fs::read_to_string(self.browser_log()).map(|s| s.lines().count()).unwrap_or(0)
    }

    async fn counts(&self) -> Value {
        let text =
            self.provider.http.get(format!("{}/__test/counts", self.provider.url)).send().await.unwrap().text().await;
        serde_json::from_str(&text.unwrap()).unwrap()
    }

    /// Requests or grants the provider counted under `key` (`grant:refresh_token`, say).
    pub async fn count(&self, key: &str) -> u64 {
        self.counts().await[key].as_u64().unwrap_or(0)
    }

    async fn post_test(&self, path: &str) {
        let url = format!("{}/__test/{path}", self.provider.url);
        let status = self.provider.http.post(url).send().await.unwrap().status();
        assert!(status.is_success(), "{path}: {status}");
    }

    /// Lifetime of the ID tokens issued from now on.
    pub async fn set_id_token_ttl(&self, seconds: u64) {
        self.post_test(&format!("idtoken-ttl?seconds={seconds}")).await;
    }

    /// The cache files (not locks).
    pub fn cache_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.cache_dir()) else { return Vec::new() };
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect()
    }

    fn cache_entry(&self) -> Value {
        let files = self.cache_files();
        assert_eq!(files.len(), 1, "{files:?}");
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap()
    }
}

pub async fn finish(mut c: Command) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(90), c.output()).await.expect("the plugin ends").unwrap();
    Run {
        success: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

impl Run {
    /// The ExecCredential: the run succeeded and stdout is exactly one JSON document.
    pub fn credential(&self) -> Value {
        assert!(self.success, "the plugin failed: {}", self.stderr);
        assert_eq!(self.stdout.lines().count(), 1, "stdout carries only the ExecCredential: {:?}", self.stdout);
        let c: Value = serde_json::from_str(&self.stdout).unwrap();
        assert_eq!(c["kind"], "ExecCredential");
        c
    }

    pub fn token(&self) -> String {
        let token = self.credential()["status"]["token"].as_str().unwrap().to_string();
        assert!(!self.stderr.contains(&token), "the token must not be on stderr: {}", self.stderr);
        token
    }

    /// The error line: the run failed, printed nothing on stdout, and said why on stderr.
    pub fn error(&self) -> String {
        assert!(!self.success, "the plugin should have failed; stdout: {}", self.stdout);
        assert!(self.stdout.is_empty(), "nothing on stdout after a failure: {}", self.stdout);
        let line = self.stderr.lines().rfind(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{}", self.stderr));
        line.to_string()
    }
}

pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_browser_login_prints_a_verified_credential_in_the_callers_version_and_caches_it_privately() {
    let login = Login::start().await;
    let run = login.run(&[]).await;
    let credential = run.credential();
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1");
    let token = run.token();
    let c = claims(&token);
    assert_eq!((c["iss"].as_str(), c["aud"].as_str()), (Some(login.provider.url.as_str()), Some("kubectl")));
    assert_eq!(c["email"], "alice@example.com");
    assert!(c["nonce"].is_string(), "the authorization request's nonce is in the token: {c}");
    let exp = c["exp"].as_i64().unwrap();
    assert_eq!(credential["status"]["expirationTimestamp"], tokenreview_gateway::login::exec::rfc3339(exp));
    assert_eq!(login.browser_runs(), 1);
    assert!(run.stderr.contains("Opening the browser"), "{}", run.stderr);

    // Private files: the directory 0700, the entry 0600.
    assert_eq!(mode(&login.cache_dir()), 0o700);
    let files = login.cache_files();
    assert_eq!(files.len(), 1);
    assert_eq!(mode(&files[0]), 0o600);
    assert!(login.cache_entry()["refresh_token"].is_string(), "offline_access brought a refresh token");

    // The next call is answered from the cache, in the version it asks for.
    let mut again = login.command(&[]);
    again.env("KUBERNETES_EXEC_INFO", V1BETA1_INTERACTIVE);
    let again = finish(again).await;
    assert_eq!(again.credential()["apiVersion"], "client.authentication.k8s.io/v1beta1");
    assert_eq!(again.token(), token);
    assert_eq!(login.browser_runs(), 1);
    assert_eq!(login.count("grant:authorization_code").await, 1);
}

#[tokio::test]
async fn eight_parallel_invocations_with_an_empty_cache_share_one_login() {
    let login = Login::start().await;
    let runs = futures_util::future::join_all((0..8).map(|_| login.run(&[]))).await;
    let tokens: Vec<String> = runs.iter().map(Run::token).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "every invocation prints the same token");
    assert_eq!(login.browser_runs(), 1);
    assert_eq!(login.count("grant:authorization_code").await, 1);
}

#[tokio::test]
async fn a_stale_cached_token_is_refreshed_once_for_parallel_invocations() {
    let login = Login::start().await;
    // A token that expires within the plugin's skew is stale as soon as it is cached.
    login.set_id_token_ttl(5).await;
    let first = login.run(&[]).await.token();
    login.set_id_token_ttl(3600).await;
    let runs = futures_util::future::join_all((0..4).map(|_| login.run(&[]))).await;
    let tokens: Vec<String> = runs.iter().map(Run::token).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0] && *t != first), "one new token for all");
    assert_eq!(login.count("grant:refresh_token").await, 1);
    assert_eq!(login.browser_runs(), 1, "no second login");
}

#[tokio::test]
async fn a_refused_refresh_token_leads_to_a_new_login() {
    let login = Login::start().await;
    login.set_id_token_ttl(5).await;
    login.run(&[]).await.token();
    login.set_id_token_ttl(3600).await;
    // The provider revokes the refresh token (as after a password change or an admin action).
    let refresh_token = login.cache_entry()["refresh_token"].as_str().unwrap().to_string();
    let form = format!("token={refresh_token}&client_id=kubectl");
    let revoked = login
        .provider
        .http
        .post(format!("{}/token/revocation", login.provider.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());

    let run = login.run(&[]).await;
    run.token();
    assert!(run.stderr.contains("the refresh token did not work"), "{}", run.stderr);
    assert!(!run.stderr.contains(&refresh_token), "the refresh token is never printed");
    assert_eq!(login.count("grant_error:refresh_token").await, 1);
    assert_eq!(login.browser_runs(), 2);
}

#[tokio::test]
async fn a_corrupt_cache_file_is_replaced_by_the_next_login() {
    let login = Login::start().await;
    login.run(&[]).await.token();
    let file = login.cache_files().remove(0);
    std::fs::write(&file, b"{\"version\": 1, \"id_tok").unwrap();
    let run = login.run(&[]).await;
    run.token();
    assert!(run.stderr.contains("ignoring the unreadable token cache file"), "{}", run.stderr);
    assert_eq!(login.browser_runs(), 2);
    assert!(login.cache_entry()["id_token"].is_string(), "the file holds a whole entry again");
}

#[tokio::test]
async fn the_access_token_is_sent_with_oidc_use_access_token() {
    let login = Login::start().await;
    let run = login.run(&["--oidc-use-access-token"]).await;
    let token = run.token();
    assert!(!token.contains('.'), "oidc-provider's access tokens are opaque: {token}");
    assert_eq!(login.cache_entry()["access_token"], token.as_str());
}

/// The failures of issue 15's "Bad input and failure": one line on stderr that names what to
/// fix, a non-zero exit, nothing on stdout and nothing in the cache.
async fn assert_fails(login: &Login, command: Command, expected: &[&str]) {
    let run = finish(command).await;
    let error = run.error();
    for e in expected {
        assert!(error.contains(e), "{error:?} should contain {e:?}");
    }
    assert!(login.cache_files().is_empty(), "nothing half-written in the cache: {:?}", login.cache_files());
}

#[tokio::test]
async fn a_redirect_with_a_forged_state_fails_the_login() {
    let login = Login::start().await;
    let mut c = login.command(&[]);
    c.env("BROWSER_ACTION", "wrong-state");
    assert_fails(&login, c, &["state that is not this login's"]).await;
}

#[tokio::test]
async fn a_callback_with_an_error_names_it() {
    let login = Login::start().await;
    let mut c = login.command(&[]);
    c.env("BROWSER_ACTION", "deny");
    assert_fails(&login, c, &["the provider refused the login (access_denied"]).await;
}

#[tokio::test]
async fn id_tokens_with_a_wrong_audience_or_signature_are_refused_before_kubectl_sees_them() {
    let login = Login::start().await;
    login.post_test("tamper?what=aud").await;
    assert_fails(&login, login.command(&[]), &["audience \"some-other-client\"", "--oidc-client-id is \"kubectl\""])
        .await;
    login.post_test("tamper?what=signature").await;
    assert_fails(&login, login.command(&[]), &["signature does not verify"]).await;
}

#[tokio::test]
async fn a_provider_that_is_down_is_named() {
    let login = Login::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = Command::new(BIN);
    c.args(["login", &format!("--oidc-issuer-url=https://127.0.0.1:{port}"), "--oidc-client-id=kubectl"])
        .arg(format!("--token-cache-dir={}", login.cache_dir().display()))
        .env("KUBERNETES_EXEC_INFO", V1_NOT_INTERACTIVE)
        .stdin(Stdio::null());
    assert_fails(&login, c, &["cannot read the provider's discovery document", "is --oidc-issuer-url right"]).await;
}

#[tokio::test]
async fn a_wrong_client_secret_is_named_and_never_printed() {
    let login = Login::start().await;
    let mut c = login.command_for("kubectl-confidential", &[]);
    c.env("TOKENREVIEW_GATEWAY_OIDC_CLIENT_SECRET", "not-the-secret");
    let run = finish(c).await;
    let error = run.error();
    assert!(error.contains("invalid_client") && error.contains("--oidc-client-secret"), "{error}");
    assert!(!run.stderr.contains("not-the-secret"));
    assert!(login.cache_files().is_empty());
    // The right one works.
    let mut c = login.command_for("kubectl-confidential", &[]);
    c.env("TOKENREVIEW_GATEWAY_OIDC_CLIENT_SECRET", "kubectl-confidential-secret");
    assert_eq!(claims(&finish(c).await.token())["aud"], "kubectl-confidential");
}

#[tokio::test]
async fn a_login_nobody_finishes_times_out() {
    let login = Login::start().await;
    // A browser that opens nothing: nobody ever signs in.
    let c = login.command(&["--browser-command=true", "--authentication-timeout-sec=1"]);
    assert_fails(&login, c, &["not completed within 1 s (--authentication-timeout-sec)"]).await;
}

#[tokio::test]
async fn a_listen_address_in_use_is_named() {
    let login = Login::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let c = login.command(&[&format!("--listen-address={address}")]);
    assert_fails(&login, c, &[&format!("cannot listen for the login redirect on {address}"), "--listen-address"]).await;
}

#[tokio::test]
async fn a_cache_directory_that_cannot_be_written_is_named() {
    let login = Login::start().await;
    // Under a regular file (a mode would not stop root, who runs CI containers).
    let file = login.dir.path().join("a-file");
    std::fs::File::create(&file).unwrap().write_all(b"x").unwrap();
    let dir = file.join("cache");
    let run = login.run(&[&format!("--token-cache-dir={}", dir.display())]).await;
    let error = run.error();
    assert!(error.contains("cannot write the token cache") && error.contains("--token-cache-dir"), "{error}");
    assert_eq!(login.browser_runs(), 0, "checked before anyone is asked to log in");
}

#[tokio::test]
async fn logins_that_need_the_terminal_fail_clearly_when_kubectl_says_it_is_not_interactive() {
    let login = Login::start().await;
    assert_fails(
        &login,
        login.command(&["--grant-type=authcode-keyboard"]),
        &["needs the terminal", "interactive: false"],
    )
    .await;
    assert_fails(&login, login.command(&["--grant-type=password", "--username=alice"]), &["needs the terminal"]).await;
    assert_eq!(login.browser_runs(), 0);
}

#[tokio::test]
async fn kubelogin_flags_we_do_not_support_are_named() {
    let login = Login::start().await;
    for (flag, expected) in [
        ("--insecure-skip-tls-verify", "--insecure-skip-tls-verify is a kubelogin flag"),
        ("--token-cache-storage=keyring", "--token-cache-storage is a kubelogin flag"),
        ("--listen-port=8000", "--listen-port is a kubelogin flag"),
        ("--oidc-pkce-method=plain", "PKCE is always S256"),
    ] {
        assert_fails(&login, login.command(&[flag]), &[expected]).await;
    }
    // S256 is what we do anyway; and kubelogin's verb works as well as ours.
    let mut get_token = Command::new(BIN);
    get_token
        .arg("get-token")
        .args(login.args("kubectl").into_iter().skip(1))
        .arg("--oidc-pkce-method=S256")
        .envs(login.browser_env())
        .stdin(Stdio::null());
    finish(get_token).await.token();
}

#[tokio::test]
async fn the_device_flow_logs_in_and_backs_off_after_slow_down() {
    // The provider advertises a 1 s interval but wants 2 s between polls: our first poll gets
    // slow_down, and the next one must come 5 s later, else there would be a second slow_down.
    let login = Login::start_with(&[("DEVICE_INTERVAL", "1"), ("DEVICE_MIN_INTERVAL", "2")]).await;
    let run = login.run(&["--grant-type=device-code"]).await;
    let token = run.token();
    assert_eq!(claims(&token)["email"], "alice@example.com");
    assert!(run.stderr.contains("and enter the code"), "{}", run.stderr);
    assert_eq!(login.count("slow_down").await, 1);
    assert_eq!(login.count("grant:urn:ietf:params:oauth:grant-type:device_code").await, 1);
    assert_eq!(login.browser_runs(), 1, "the browser opened verification_uri_complete");
}

#[tokio::test]
async fn a_device_login_denied_by_the_person_says_so() {
    let login = Login::start_with(&[("DEVICE_INTERVAL", "1")]).await;
    let mut c = login.command(&["--grant-type=device-code"]);
    c.env("BROWSER_ACTION", "deny");
    assert_fails(&login, c, &["the login was denied at the provider (access_denied"]).await;
}

#[tokio::test]
async fn a_device_code_nobody_uses_expires_with_a_clear_message() {
    let login = Login::start_with(&[("DEVICE_INTERVAL", "1"), ("DEVICE_CODE_TTL", "2")]).await;
    let c = login.command(&["--grant-type=device-code", "--browser-command=true"]);
    assert_fails(&login, c, &["the device code expired before the login was completed"]).await;
}

#[tokio::test]
async fn the_password_grant_logs_in_and_names_a_wrong_password() {
    let login = Login::start().await;
    // kubelogin's auto: --username means the password grant.
    let run = login.run(&["--username=bob", "--password=bob-password"]).await;
    assert_eq!(claims(&run.token())["email"], "bob@example.com");
    assert_eq!(login.browser_runs(), 0);
    assert_eq!(login.count("grant:password").await, 1);

    let other = Login::start().await;
    let run = other.run(&["--grant-type=password", "--username=bob", "--password=wrong-password"]).await;
    let error = run.error();
    assert!(error.contains("refused the password grant (invalid_grant"), "{error}");
    assert!(!run.stderr.contains("wrong-password"), "the password is never printed");
    assert!(other.cache_files().is_empty());
}

#[tokio::test]
async fn client_credentials_send_the_access_token() {
    let login = Login::start().await;
    let mut c =
        login.command_for("kubectl-confidential", &["--grant-type=client-credentials", "--oidc-extra-scope=read"]);
    c.env("TOKENREVIEW_GATEWAY_OIDC_CLIENT_SECRET", "kubectl-confidential-secret");
    let run = finish(c).await;
    let credential = run.credential();
    let token = run.token();
    assert!(!token.contains('.'), "an opaque access token: {token}");
    assert!(credential["status"]["expirationTimestamp"].is_string(), "from expires_in: {credential}");
    assert_eq!(login.count("grant:client_credentials").await, 1);
}

#[tokio::test]
async fn authcode_keyboard_reads_the_pasted_code_and_checks_the_nonce() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let login = Login::start().await;
    // Nothing listens on the redirect URI: the person copies the code from the address bar.
    let mut c = login.command(&["--grant-type=authcode-keyboard", "--oidc-redirect-url=http://127.0.0.1:9"]);
    c.env("KUBERNETES_EXEC_INFO", V1BETA1_INTERACTIVE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = stderr.next_line().await.unwrap().expect("the plugin prints the URL");
        if let Some(url) = line.trim().strip_prefix("https://") {
            break format!("https://{url}");
        }
    };
    let mut browser = Command::new(Login::browser());
    browser.arg(&url).envs(login.browser_env()).env("BROWSER_ACTION", "print-code");
    let code = browser.output().await.unwrap();
    assert!(code.status.success(), "{}", String::from_utf8_lossy(&code.stderr));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&code.stdout).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let credential: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1beta1");
    assert_eq!(claims(credential["status"]["token"].as_str().unwrap())["email"], "alice@example.com");
}

#[tokio::test]
async fn login_clean_removes_the_cache() {
    let login = Login::start().await;
    login.run(&[]).await.token();
    assert_eq!(login.cache_files().len(), 1);
    let mut clean = Command::new(BIN);
    clean.args(["login", "clean", &format!("--token-cache-dir={}", login.cache_dir().display())]);
    let run = finish(clean).await;
    assert!(run.success && run.stderr.contains("removed 2 file(s)"), "{}", run.stderr);
    assert!(login.cache_files().is_empty());
    // The next call logs in again.
    login.run(&[]).await.token();
    assert_eq!(login.browser_runs(), 2);
}
