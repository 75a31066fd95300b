//! `login` (also `get-token`, kubelogin's verb): the client side. A client-go exec credential
//! plugin that logs a person (or a job) in at the same OpenID Connect providers the gateway
//! trusts, verifies the ID token with the gateway's own code, caches it, and prints the
//! `ExecCredential` kubectl asks for.
//!
//! Flow of one invocation: read `KUBERNETES_EXEC_INFO`; take the cache key's lock; a cached
//! credential still valid for [`EXPIRY_SKEW`] is printed at once; else the refresh token is
//! used; else (or when refreshing fails) a login with the chosen grant. Only a verified result
//! is written to the cache, atomically, before the lock is released, so the invocations that
//! waited for the lock find it.

pub mod authcode;
pub mod cache;
pub mod device;
pub mod exec;
pub mod kubelogin;
pub mod oauth;
pub mod setup;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use clap::{Args, Subcommand, ValueEnum};

use cache::{CacheKey, Entry, TokenCache};
use oauth::{Client, Provider, Tokens};
use verify::Verifier;

/// A cached token is used only while it is valid for at least this long, so kubectl never
/// sends one that expires in flight.
pub const EXPIRY_SKEW: Duration = Duration::from_secs(30);

/// Why a login did not produce a credential. Every message is one line that names what to fix,
/// and never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Flags, environment or configuration that cannot work.
    #[error("{0}")]
    Usage(String),
    /// The provider could not be reached or answered something unusable.
    #[error("{0}")]
    Provider(String),
    /// The provider or the person said no.
    #[error("{0}")]
    Refused(String),
    /// What the provider issued does not verify.
    #[error("{0}")]
    Verification(String),
    /// The token cache cannot be used.
    #[error("{0}")]
    Cache(String),
    /// A login needs the terminal, and kubectl said it is not ours.
    #[error("{0}")]
    NotInteractive(String),
    /// Nobody finished the login in time.
    #[error("{0}")]
    Timeout(String),
}

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
    fn name(self) -> &'static str {
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

/// `login` and its subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LoginCommand {
    /// `setup` or `clean`; without one, get a token (the exec plugin).
    #[command(subcommand)]
    pub action: Option<LoginAction>,
    /// The get-token flags.
    #[command(flatten)]
    pub args: LoginArgs,
}

/// `login setup`, `login clean`.
#[derive(Debug, Subcommand)]
pub enum LoginAction {
    /// Log in once and print the token's claims, what the gateway would answer for it, and the
    /// kubeconfig user that runs this plugin.
    Setup(Box<setup::SetupArgs>),
    /// Remove the token cache.
    Clean {
        /// The cache directory (default ~/.kube/cache/tokenreview-gateway-login).
        #[arg(long)]
        token_cache_dir: Option<PathBuf>,
    },
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
    issuer: String,
    client: Client,
    extra_scopes: Vec<String>,
    use_access_token: bool,
    redirect_url: Option<String>,
    extra_params: Vec<(String, String)>,
    grant: GrantType,
    listen: Vec<String>,
    skip_open_browser: bool,
    browser_command: Option<String>,
    ca_pem: Option<String>,
    cache_dir: PathBuf,
    username: Option<String>,
    password: Option<String>,
    timeout: Duration,
    force_refresh: bool,
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
        let listen = if a.listen_address.is_empty() {
            authcode::DEFAULT_LISTEN.iter().map(|s| s.to_string()).collect()
        } else {
            a.listen_address.clone()
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
    fn scopes(&self, provider: Option<&Provider>) -> Vec<String> {
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

    fn cache_key(&self) -> CacheKey {
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

/// What a login hands out, and the ID token it came with (for `login setup`).
pub struct Credential {
    /// The bearer token for the cluster.
    pub token: String,
    /// When it expires (Unix seconds), if known.
    pub expiry: Option<i64>,
    /// The ID token, when there is one.
    pub id_token: Option<String>,
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Entry {
    fn credential(&self, use_access_token: bool) -> Option<Credential> {
        let token = if use_access_token { self.access_token.clone() } else { self.id_token.clone() }?;
        Some(Credential { token, expiry: self.expiry, id_token: self.id_token.clone() })
    }

    fn fresh(&self, now: i64) -> bool {
        self.expiry.is_some_and(|exp| exp - EXPIRY_SKEW.as_secs() as i64 > now)
    }
}

/// Gets a credential: from the cache, by refreshing, or by logging in.
pub async fn obtain(opts: &Options, interactive: bool) -> Result<Credential, LoginError> {
    let cache = TokenCache::open(&opts.cache_dir)?;
    let key = opts.cache_key();
    // Whoever holds the lock may be waiting for a person; wait as long as a login may take.
    let _lock =
        tokio::time::timeout(opts.timeout + Duration::from_secs(30), cache.lock(&key)).await.map_err(|_| {
            LoginError::Timeout(format!(
                "another login for this issuer and client has held the token cache lock for over {} s; try again",
                opts.timeout.as_secs() + 30
            ))
        })??;
    let cached = cache.read(&key);
    if let Some(entry) = &cached
        && !opts.force_refresh
        && entry.fresh(now())
        && let Some(c) = entry.credential(opts.use_access_token)
    {
        return Ok(c);
    }
    let provider = Provider::discover(&opts.issuer, opts.ca_pem.as_deref()).await?;
    let session = Session { provider: &provider, opts, key: &key, verifier: tokio::sync::OnceCell::new() };
    if let Some(refresh_token) = cached.and_then(|e| e.refresh_token) {
        match session.refresh(&refresh_token).await {
            Ok(entry) => return store(&cache, &key, entry, opts),
            Err(e) => eprintln!("note: the refresh token did not work ({e}); logging in again"),
        }
    }
    let entry = tokio::time::timeout(opts.timeout, session.login(interactive)).await.map_err(|_| {
        LoginError::Timeout(format!(
            "the login was not completed within {} s (--authentication-timeout-sec)",
            opts.timeout.as_secs()
        ))
    })??;
    store(&cache, &key, entry, opts)
}

fn store(cache: &TokenCache, key: &CacheKey, entry: Entry, opts: &Options) -> Result<Credential, LoginError> {
    let credential = entry.credential(opts.use_access_token).ok_or_else(|| {
        LoginError::Provider(
            "the provider answered without the token to send (no id_token; try --oidc-use-access-token)".into(),
        )
    })?;
    if entry.expiry.is_some() {
        cache.write(key, &entry)?;
    }
    Ok(credential)
}

/// One refresh or login against one provider.
struct Session<'a> {
    provider: &'a Provider,
    opts: &'a Options,
    key: &'a CacheKey,
    /// Built at the first ID token: client credentials need no keys.
    verifier: tokio::sync::OnceCell<Verifier>,
}

impl Session<'_> {
    async fn verifier(&self) -> Result<&Verifier, LoginError> {
        let o = self.opts;
        self.verifier.get_or_try_init(|| Verifier::new(&o.issuer, &o.client.id, o.ca_pem.as_deref())).await
    }

    async fn refresh(&self, refresh_token: &str) -> Result<Entry, LoginError> {
        let params = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
        let tokens = self
            .provider
            .token(&self.opts.client, &params)
            .await
            .map_err(|e| e.into_login_error("the refresh token"))?;
        let mut entry = self.entry_from(tokens, None).await?;
        // A provider that does not rotate refresh tokens answers without one: keep the old one.
        entry.refresh_token.get_or_insert_with(|| refresh_token.to_string());
        Ok(entry)
    }

    /// Verifies what the token endpoint returned and turns it into a cache entry.
    async fn entry_from(&self, tokens: Tokens, nonce: Option<&str>) -> Result<Entry, LoginError> {
        let use_access_token = self.opts.use_access_token;
        let mut entry = Entry::new(self.key);
        let mut expiry = tokens.expires_in.filter(|s| s.is_finite() && *s > 0.0).map(|s| now() + s as i64);
        if let Some(id_token) = &tokens.id_token {
            let claims = self.verifier().await?.verify(id_token, nonce).await?;
            if !use_access_token {
                expiry = claims.get("exp").and_then(serde_json::Value::as_i64);
            }
        } else if !use_access_token {
            return Err(LoginError::Provider(
                "the provider answered without an id_token: request the openid scope from an OpenID Connect provider, or use --oidc-use-access-token".into(),
            ));
        }
        entry.id_token = tokens.id_token;
        entry.access_token = Some(tokens.access_token);
        entry.refresh_token = tokens.refresh_token;
        entry.expiry = expiry;
        Ok(entry)
    }

    async fn login(&self, interactive: bool) -> Result<Entry, LoginError> {
        let (provider, opts) = (self.provider, self.opts);
        let scope = opts.scopes(Some(provider)).join(" ");
        let client = &opts.client;
        let needs_terminal = |what: &str| {
            LoginError::NotInteractive(format!(
                "{what} needs the terminal, and kubectl runs this plugin without one (interactive: false); log in once by hand (tokenreview-gateway login ...) or use --grant-type authcode or device-code"
            ))
        };
        match opts.grant {
            GrantType::Authcode | GrantType::Auto => {
                let authorize = authorization_endpoint(provider)?;
                let request = authcode::Request::new();
                let loopback = authcode::Loopback::bind(&opts.listen, opts.redirect_url.as_deref()).await?;
                let redirect_uri = loopback.redirect_uri.clone();
                let url = request.url(authorize, &client.id, &redirect_uri, &scope, &opts.extra_params)?;
                authcode::open_browser(&url, opts.browser_command.as_deref(), opts.skip_open_browser);
                let code = loopback.wait_for_code(&request.state).await?;
                self.exchange(&code, &redirect_uri, &request).await
            }
            GrantType::AuthcodeKeyboard => {
                if !interactive {
                    return Err(needs_terminal("--grant-type authcode-keyboard"));
                }
                let authorize = authorization_endpoint(provider)?;
                let request = authcode::Request::new();
                let redirect_uri = opts.redirect_url.clone().unwrap_or_else(|| authcode::OOB_REDIRECT.to_string());
                let url = request.url(authorize, &client.id, &redirect_uri, &scope, &opts.extra_params)?;
                authcode::open_browser(&url, None, true);
                let code = authcode::read_code_from_terminal().await?;
                self.exchange(&code, &redirect_uri, &request).await
            }
            GrantType::DeviceCode => {
                let open = |url: &str| {
                    if opts.browser_command.is_some() && !opts.skip_open_browser {
                        authcode::open_browser(url, opts.browser_command.as_deref(), false);
                    }
                };
                let tokens = device::login(provider, client, &scope, open).await?;
                self.entry_from(tokens, None).await
            }
            GrantType::Password => {
                let username = opts.username.as_deref().unwrap_or_default();
                let password = match &opts.password {
                    Some(p) => p.clone(),
                    None if interactive => prompt_password(username).await?,
                    None => return Err(needs_terminal("the password prompt (no --password)")),
                };
                let params =
                    [("grant_type", "password"), ("username", username), ("password", &password), ("scope", &scope)];
                let tokens =
                    provider.token(client, &params).await.map_err(|e| e.into_login_error("the password grant"))?;
                self.entry_from(tokens, None).await
            }
            GrantType::ClientCredentials => {
                let mut params = vec![("grant_type", "client_credentials")];
                if !scope.is_empty() {
                    params.push(("scope", &scope));
                }
                let tokens = provider
                    .token(client, &params)
                    .await
                    .map_err(|e| e.into_login_error("the client credentials grant"))?;
                self.entry_from(tokens, None).await
            }
        }
    }

    async fn exchange(&self, code: &str, redirect_uri: &str, request: &authcode::Request) -> Result<Entry, LoginError> {
        let params = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", request.verifier.as_str()),
        ];
        let tokens = self
            .provider
            .token(&self.opts.client, &params)
            .await
            .map_err(|e| e.into_login_error("the code exchange"))?;
        self.entry_from(tokens, Some(&request.nonce)).await
    }
}

fn authorization_endpoint(provider: &Provider) -> Result<&str, LoginError> {
    provider.authorization_endpoint.as_deref().ok_or_else(|| {
        LoginError::Provider(format!(
            "{} advertises no authorization_endpoint: use another --grant-type",
            provider.issuer
        ))
    })
}

async fn prompt_password(username: &str) -> Result<String, LoginError> {
    // NB: without a terminal library the typed password is echoed; the plugin runs in the
    // user's own terminal and nothing is logged.
    let line = read_line(&format!("Password for {username}: ")).await?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Asks on stderr and reads one line from stdin (only when kubectl says stdin is ours).
async fn read_line(prompt: &str) -> Result<String, LoginError> {
    eprint!("{prompt}");
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| LoginError::Usage(format!("cannot read from the terminal: {e}")))?
    .map_err(|e| LoginError::Usage(format!("cannot read from stdin: {e}")))
}

/// Runs `login`, `login setup` or `login clean`.
pub async fn run(cmd: &LoginCommand) -> ExitCode {
    let result = match &cmd.action {
        None => get_token(&cmd.args).await,
        Some(LoginAction::Setup(args)) => setup::run(args).await,
        Some(LoginAction::Clean { token_cache_dir }) => {
            let dir = token_cache_dir.clone().unwrap_or_else(cache::default_dir);
            TokenCache::clean(&dir).map(|n| eprintln!("removed {n} file(s) from {}", dir.display()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn get_token(args: &LoginArgs) -> Result<(), LoginError> {
    let info = exec::ExecInfo::from_env()?;
    let opts = Options::from_args(args)?;
    let credential = obtain(&opts, info.interactive).await?;
    println!("{}", exec::credential(info.api, &credential.token, credential.expiry));
    Ok(())
}
