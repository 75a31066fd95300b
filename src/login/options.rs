//! The flags of `login` / `get-token` (kubelogin's names) and their validation into [`Options`].

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use clap::{Args, ValueEnum};

use super::cache::{self, CacheKey};
use super::error::LoginError;
use super::oauth::{Client, Provider};
use super::{authcode, kubelogin};

/// `--grant-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GrantType {
    /// `password` when --username is given, else `authcode` (as kubelogin).
    Auto,
    /// Authorization code with PKCE through the browser and a loopback redirect.
    Authcode,
    /// Authorization code with PKCE, the code pasted on the terminal.
    AuthcodeKeyboard,
    /// Device authorization grant (RFC 8628).
    DeviceCode,
    /// Resource owner password credentials.
    Password,
    /// Client credentials (no person; the access token is sent).
    ClientCredentials,
}

impl GrantType {
    /// The name kubelogin uses.
    pub fn name(self) -> &'static str {
        match self {
            GrantType::Auto => "auto",
            GrantType::Authcode => "authcode",
            GrantType::AuthcodeKeyboard => "authcode-keyboard",
            GrantType::DeviceCode => "device-code",
            GrantType::Password => "password",
            GrantType::ClientCredentials => "client-credentials",
        }
    }
}

/// The flags of `login` / `get-token`: kubelogin's names, so a kubeconfig moves over by changing
/// the command.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Issuer URL of the provider (as the gateway's jwt[].issuer.url).
    #[arg(long)]
    pub oidc_issuer_url: Option<String>,
    /// Client id registered at the provider (the ID token's aud).
    #[arg(long)]
    pub oidc_client_id: Option<String>,
    /// Client secret, for a confidential client. Prefer the environment variable: argv is
    /// visible to other users of the machine.
    #[arg(long, env = "TOKENREVIEW_GATEWAY_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// Scopes to request besides openid (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub oidc_extra_scope: Vec<String>,
    /// Send the access token to the cluster instead of the ID token.
    #[arg(long)]
    pub oidc_use_access_token: bool,
    /// Redirect URI to send (default http://localhost:PORT of the loopback listener).
    #[arg(long)]
    pub oidc_redirect_url: Option<String>,
    /// Extra authorization request parameters, key=value (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub oidc_auth_request_extra_params: Vec<String>,
    /// The grant to log in with.
    #[arg(long, value_enum, default_value_t = GrantType::Auto)]
    pub grant_type: GrantType,
    /// Loopback address for the redirect, tried in order (default 127.0.0.1:8000, then
    /// 127.0.0.1:18000).
    #[arg(long)]
    pub listen_address: Vec<String>,
    /// Print the login URL instead of opening a browser.
    #[arg(long)]
    pub skip_open_browser: bool,
    /// Program that opens the login URL (given as its only argument).
    #[arg(long)]
    pub browser_command: Option<String>,
    /// CA bundle (PEM file) that signed the provider's certificate (repeatable).
    #[arg(long)]
    pub certificate_authority: Vec<PathBuf>,
    /// The same, base64-encoded PEM (repeatable).
    #[arg(long)]
    pub certificate_authority_data: Vec<String>,
    /// Token cache directory (default ~/.kube/cache/tokenreview-gateway-login).
    #[arg(long)]
    pub token_cache_dir: Option<PathBuf>,
    /// Username for the password grant.
    #[arg(long)]
    pub username: Option<String>,
    /// Password for the password grant (prompted on the terminal when absent).
    #[arg(long, env = "TOKENREVIEW_GATEWAY_OIDC_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Give up a login nobody finished after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub authentication_timeout_sec: u64,
    /// Ignore a cached token that is still valid: refresh, or log in.
    #[arg(long)]
    pub force_refresh: bool,
    /// kubelogin flags that are not supported: each gets an error that names it.
    #[command(flatten)]
    pub unsupported: kubelogin::Unsupported,
}

/// Validated options of one login.
pub struct Options {
    pub(super) issuer: String,
    pub(super) client: Client,
    pub(super) extra_scopes: Vec<String>,
    pub(super) use_access_token: bool,
    pub(super) redirect_url: Option<String>,
    pub(super) extra_params: Vec<(String, String)>,
    pub(super) grant: GrantType,
    pub(super) listen: Vec<String>,
    pub(super) skip_open_browser: bool,
    pub(super) browser_command: Option<String>,
    pub(super) ca_pem: Option<String>,
    pub(super) cache_dir: PathBuf,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) timeout: Duration,
    pub(super) force_refresh: bool,
}

impl Options {
    /// Checks the flags.
    pub fn from_args(a: &LoginArgs) -> Result<Options, LoginError> {
        a.unsupported.check()?;
        let issuer = a
            .oidc_issuer_url
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| LoginError::Usage("--oidc-issuer-url is required (the provider's issuer URL)".into()))?;
        let parsed = url::Url::parse(&issuer)
            .map_err(|e| LoginError::Usage(format!("--oidc-issuer-url {issuer:?} is not a URL: {e}")))?;
        if parsed.scheme() != "https" {
            return Err(LoginError::Usage(format!("--oidc-issuer-url {issuer:?} must be an https URL")));
        }
        let client_id = a
            .oidc_client_id
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| LoginError::Usage("--oidc-client-id is required".into()))?;
        let mut extra_params = Vec::new();
        for p in &a.oidc_auth_request_extra_params {
            let (k, v) = p.split_once('=').ok_or_else(|| {
                LoginError::Usage(format!("--oidc-auth-request-extra-params {p:?} must be key=value"))
            })?;
            extra_params.push((k.to_string(), v.to_string()));
        }
        let grant = match a.grant_type {
            GrantType::Auto if a.username.is_some() => GrantType::Password,
            GrantType::Auto => GrantType::Authcode,
            g => g,
        };
        if let Some(r) = &a.oidc_redirect_url
            && grant == GrantType::Authcode
        {
            let u = url::Url::parse(r)
                .map_err(|e| LoginError::Usage(format!("--oidc-redirect-url {r:?} is not a URL: {e}")))?;
            if u.scheme() != "http" || !crate::config::is_loopback(&u) {
                return Err(LoginError::Usage(format!(
                    "--oidc-redirect-url {r:?} must be an http URL on localhost or a loopback address (the listener is local)"
                )));
            }
        }
        if grant == GrantType::Password && a.username.is_none() {
            return Err(LoginError::Usage("--grant-type password needs --username".into()));
        }
        if grant == GrantType::ClientCredentials && a.oidc_client_secret.is_none() {
            return Err(LoginError::Usage("--grant-type client-credentials needs --oidc-client-secret".into()));
        }
        // A redirect URL with a port can only reach a listener on that port.
        let redirect_port = a.oidc_redirect_url.as_deref().and_then(|r| url::Url::parse(r).ok()).and_then(|u| u.port());
        let listen = match (a.listen_address.is_empty(), redirect_port) {
            (false, _) => a.listen_address.clone(),
            (true, Some(port)) if grant == GrantType::Authcode => vec![format!("127.0.0.1:{port}")],
            (true, _) => authcode::DEFAULT_LISTEN.iter().map(|s| s.to_string()).collect(),
        };
        for l in &listen {
            let addr: std::net::SocketAddr = l.parse().map_err(|_| {
                LoginError::Usage(format!("--listen-address {l:?} must be an address such as 127.0.0.1:8000"))
            })?;
            if !addr.ip().is_loopback() {
                return Err(LoginError::Usage(format!(
                    "--listen-address {l:?} is not a loopback address: the redirect listener must not be reachable from the network"
                )));
            }
        }
        if a.authentication_timeout_sec == 0 {
            return Err(LoginError::Usage("--authentication-timeout-sec must be greater than 0".into()));
        }
        Ok(Options {
            issuer,
            client: Client { id: client_id, secret: a.oidc_client_secret.clone().filter(|s| !s.is_empty()) },
            extra_scopes: a.oidc_extra_scope.iter().filter(|s| !s.is_empty()).cloned().collect(),
            use_access_token: a.oidc_use_access_token || grant == GrantType::ClientCredentials,
            redirect_url: a.oidc_redirect_url.clone(),
            extra_params,
            grant,
            listen,
            skip_open_browser: a.skip_open_browser,
            browser_command: a.browser_command.clone(),
            ca_pem: ca_bundle(&a.certificate_authority, &a.certificate_authority_data)?,
            cache_dir: a.token_cache_dir.clone().unwrap_or_else(cache::default_dir),
            username: a.username.clone(),
            password: a.password.clone(),
            timeout: Duration::from_secs(a.authentication_timeout_sec),
            force_refresh: a.force_refresh,
        })
    }

    /// The scopes sent: openid, the extra ones, and offline_access when the provider lists it
    /// (so a refresh token comes back).
    pub(super) fn scopes(&self, provider: Option<&Provider>) -> Vec<String> {
        let mut scopes = Vec::new();
        if self.grant != GrantType::ClientCredentials {
            scopes.push("openid".to_string());
        }
        for s in &self.extra_scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let offline = "offline_access".to_string();
        let refreshable = !matches!(self.grant, GrantType::ClientCredentials);
        if refreshable && !scopes.contains(&offline) && provider.is_some_and(|p| p.scopes_supported.contains(&offline))
        {
            scopes.push(offline);
        }
        scopes
    }

    pub(super) fn cache_key(&self) -> CacheKey {
        let mut scopes = self.scopes(None);
        scopes.sort();
        CacheKey {
            issuer: self.issuer.clone(),
            client_id: self.client.id.clone(),
            scopes,
            grant: self.grant.name().to_string(),
            username: self.username.clone(),
            access_token: self.use_access_token,
        }
    }
}

fn ca_bundle(files: &[PathBuf], data: &[String]) -> Result<Option<String>, LoginError> {
    let mut pem = String::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| LoginError::Usage(format!("--certificate-authority {}: {e}", f.display())))?;
        pem.push_str(&text);
        pem.push('\n');
    }
    for d in data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(d.trim())
            .map_err(|e| LoginError::Usage(format!("--certificate-authority-data is not base64: {e}")))?;
        pem.push_str(&String::from_utf8_lossy(&bytes));
        pem.push('\n');
    }
    Ok((!pem.trim().is_empty()).then_some(pem))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoginArgs,
    }

    fn options(args: &[&str]) -> Result<Options, LoginError> {
        let mut argv = vec!["login", "--oidc-issuer-url=https://idp.example.com", "--oidc-client-id=kubectl"];
        argv.extend_from_slice(args);
        Options::from_args(&Cli::try_parse_from(argv).unwrap().args)
    }

    fn error(args: &[&str]) -> String {
        options(args).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn auto_is_the_password_grant_with_a_username_and_authcode_without() {
        assert_eq!(options(&[]).unwrap().grant, GrantType::Authcode);
        assert_eq!(options(&["--username=alice"]).unwrap().grant, GrantType::Password);
    }

    #[test]
    fn the_redirect_listener_stays_on_loopback() {
        assert!(error(&["--listen-address=0.0.0.0:8000"]).contains("not a loopback address"));
        assert!(error(&["--oidc-redirect-url=https://example.com/cb"]).contains("must be an http URL on localhost"));
        let o = options(&[]).unwrap();
        assert_eq!(o.listen, ["127.0.0.1:8000", "127.0.0.1:18000"]);
        let o = options(&["--oidc-redirect-url=http://localhost:18000/callback"]).unwrap();
        assert_eq!(o.listen, ["127.0.0.1:18000"], "the listener is where the redirect goes");
    }

    #[test]
    fn flags_that_cannot_work_are_named() {
        let mut argv = vec!["login", "--oidc-issuer-url=http://idp.example.com", "--oidc-client-id=kubectl"];
        let http = Options::from_args(&Cli::try_parse_from(argv.clone()).unwrap().args).err().unwrap();
        assert!(http.to_string().contains("must be an https URL"), "{http}");
        argv.truncate(1);
        let missing = Options::from_args(&Cli::try_parse_from(argv).unwrap().args).err().unwrap();
        assert!(missing.to_string().contains("--oidc-issuer-url is required"), "{missing}");
        assert!(error(&["--grant-type=password"]).contains("needs --username"));
        assert!(error(&["--grant-type=client-credentials"]).contains("needs --oidc-client-secret"));
        assert!(error(&["--oidc-auth-request-extra-params=prompt"]).contains("must be key=value"));
    }

    #[test]
    fn offline_access_is_asked_only_when_the_provider_lists_it_and_never_for_client_credentials() {
        let o = options(&["--oidc-extra-scope=email,groups"]).unwrap();
        assert_eq!(o.scopes(None), ["openid", "email", "groups"]);
        let cc = options(&["--grant-type=client-credentials", "--oidc-client-secret=s", "--oidc-extra-scope=read"]);
        assert_eq!(cc.unwrap().scopes(None), ["read"]);
    }
}
