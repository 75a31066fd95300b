//! The authorization code grant with PKCE (RFC 7636, S256 always): a loopback redirect server
//! (RFC 8252 7.3) that waits for the browser, or (`authcode-keyboard`) a code pasted on the
//! terminal. `state` is checked on the redirect; the `nonce` is returned for the ID token check.

use std::time::Duration;

use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::error::LoginError;
use super::oauth::clean;

/// kubelogin's defaults, so redirect URIs registered for it keep working.
pub const DEFAULT_LISTEN: [&str; 2] = ["127.0.0.1:8000", "127.0.0.1:18000"];
/// The out-of-band redirect kubelogin uses for `authcode-keyboard` by default.
pub const OOB_REDIRECT: &str = "urn:ietf:wg:oauth:2.0:oob";
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// `n` random bytes, base64url.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // NB: the system RNG does not fail on Linux; if it ever did, a zero value must not be used.
    aws_lc_rs::rand::SystemRandom::new().fill(&mut buf).expect("the system random number generator works");
    URL_SAFE_NO_PAD.encode(buf)
}

/// The per-login secrets of one authorization request.
pub struct Request {
    /// PKCE `code_verifier` (43 characters of 32 random bytes).
    pub verifier: String,
    /// `state`.
    pub state: String,
    /// `nonce`.
    pub nonce: String,
}

impl Request {
    /// Fresh random values.
    pub fn new() -> Request {
        Request { verifier: random_token(32), state: random_token(24), nonce: random_token(24) }
    }

    /// The S256 `code_challenge`.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }

    /// The authorization URL.
    pub fn url(
        &self,
        endpoint: &str,
        client_id: &str,
        redirect_uri: &str,
        scope: &str,
        extra: &[(String, String)],
    ) -> Result<String, LoginError> {
        let mut url = url::Url::parse(endpoint)
            .map_err(|e| LoginError::Provider(format!("the authorization_endpoint {endpoint:?} is not a URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", scope)
                .append_pair("state", &self.state)
                .append_pair("nonce", &self.nonce)
                .append_pair("code_challenge", &self.challenge())
                .append_pair("code_challenge_method", "S256");
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        Ok(url.into())
    }
}

impl Default for Request {
    fn default() -> Self {
        Request::new()
    }
}

/// The bound loopback listener and the redirect URI that reaches it.
pub struct Loopback {
    listener: TcpListener,
    /// `redirect_uri` of the request.
    pub redirect_uri: String,
    path: String,
}

impl Loopback {
    /// Binds the first address of `addresses` that is free. The redirect URI is
    /// `redirect_url` when given (`--oidc-redirect-url`), else `http://localhost:<port>` as
    /// kubelogin sends it.
    pub async fn bind(addresses: &[String], redirect_url: Option<&str>) -> Result<Loopback, LoginError> {
        let mut failures = Vec::new();
        for address in addresses {
            match TcpListener::bind(address.as_str()).await {
                Ok(listener) => {
                    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                    let redirect_uri = match redirect_url {
                        Some(u) => u.to_string(),
                        None => format!("http://localhost:{port}"),
                    };
                    let path = url::Url::parse(&redirect_uri)
                        .map(|u| u.path().to_string())
                        .map_err(|e| LoginError::Usage(format!("--oidc-redirect-url {redirect_uri:?}: {e}")))?;
                    return Ok(Loopback { listener, redirect_uri, path });
                }
                Err(e) => failures.push(format!("{address} ({e})")),
            }
        }
        Err(LoginError::Usage(format!(
            "cannot listen for the login redirect on {}: free one of them or pass another --listen-address",
            failures.join(", ")
        )))
    }

    /// Serves the browser until the redirect with `code` (or `error`) arrives, and checks
    /// `state`. Other requests (a favicon, say) get a 404 and the wait goes on.
    pub async fn wait_for_code(self, state: &str) -> Result<String, LoginError> {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else { continue };
            match self.handle(stream, state).await {
                Some(outcome) => return outcome,
                None => continue,
            }
        }
    }

    async fn handle(&self, mut stream: TcpStream, state: &str) -> Option<Result<String, LoginError>> {
        let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut stream)).await.ok()??;
        let target = head.lines().next()?.strip_prefix("GET ")?.split(' ').next()?.to_string();
        let url = url::Url::parse(&format!("http://localhost{target}")).ok()?;
        if url.path() != self.path {
            respond(&mut stream, "404 Not Found", "Not found.").await;
            return None;
        }
        let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let outcome = if let Some(error) = param("error") {
            let description = param("error_description").map(|d| format!(": {}", clean(&d, 200))).unwrap_or_default();
            Err(LoginError::Refused(format!("the provider refused the login ({}{description})", clean(&error, 64))))
        } else if param("state").as_deref() != Some(state) {
            Err(LoginError::Refused(
                "the login redirect carried a state that is not this login's (a stale browser tab, or a forged request); log in again"
                    .into(),
            ))
        } else if let Some(code) = param("code") {
            Ok(code)
        } else {
            respond(&mut stream, "400 Bad Request", "This is not a login redirect.").await;
            return None;
        };
        match &outcome {
            Ok(_) => {
                respond(&mut stream, "200 OK", "Logged in. You can close this window and go back to the terminal.")
                    .await
            }
            Err(e) => respond(&mut stream, "400 Bad Request", &format!("Login failed: {e}")).await,
        }
        Some(outcome)
    }
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_REQUEST_HEAD {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).ok()
}

async fn respond(stream: &mut TcpStream, status: &str, text: &str) {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>tokenreview-gateway login</title></head><body><p>{escaped}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Opens `url` with `--browser-command`, else the desktop's opener. The URL is always printed
/// on stderr too, so a person can open it by hand when no browser starts.
pub fn open_browser(url: &str, command: Option<&str>, skip: bool) {
    if skip {
        eprintln!("Open this URL in a browser to log in:\n\n  {url}\n");
        return;
    }
    let opener = command.unwrap_or(if cfg!(target_os = "macos") { "open" } else { "xdg-open" });
    eprintln!("Opening the browser to log in. If it does not open, visit:\n\n  {url}\n");
    // NB: the browser's stdout must never reach ours: stdout carries only the ExecCredential.
    let spawned = tokio::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("note: could not run the browser command {opener:?}: {e}");
    }
}

/// `authcode-keyboard`: reads the code the person pastes.
pub async fn read_code_from_terminal() -> Result<String, LoginError> {
    let line = read_line("Enter the code shown by the provider after login: ").await?;
    let code = line.trim();
    if code.is_empty() {
        return Err(LoginError::Usage("no code was entered".into()));
    }
    Ok(code.to_string())
}

/// Asks on stderr and reads one line from stdin (only when kubectl says stdin is ours).
pub async fn read_line(prompt: &str) -> Result<String, LoginError> {
    eprint!("{prompt}");
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| LoginError::Usage(format!("cannot read from the terminal: {e}")))?
    .map_err(|e| LoginError::Usage(format!("cannot read from stdin: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_s256_of_the_verifier() {
        // RFC 7636 appendix B.
        let r = Request {
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
            state: String::new(),
            nonce: String::new(),
        };
        assert_eq!(r.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let fresh = Request::new();
        assert_eq!(fresh.verifier.len(), 43);
        assert_ne!(fresh.state, Request::new().state);
    }

    #[test]
    fn the_authorization_url_carries_pkce_state_nonce_and_extras() {
        let r = Request::new();
        let extra = vec![("prompt".to_string(), "consent".to_string())];
        let u = r.url("https://idp/auth", "kubectl", "http://localhost:8000", "openid email", &extra).unwrap();
        let u = url::Url::parse(&u).unwrap();
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], r.challenge());
        assert_eq!(q["state"], r.state);
        assert_eq!(q["nonce"], r.nonce);
        assert_eq!(q["scope"], "openid email");
        assert_eq!(q["prompt"], "consent");
        assert!(!q.contains_key("code_verifier"));
    }
}
