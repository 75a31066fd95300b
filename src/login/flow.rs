//! One invocation's way to a credential: the cache, else the refresh token, else a login with
//! the chosen grant; only a verified result is cached.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::cache::{CacheKey, Entry, TokenCache};
use super::error::LoginError;
use super::oauth::{Provider, Tokens};
use super::options::{GrantType, Options};
use super::verify::Verifier;
use super::{authcode, device};

/// A cached token is used only while it is valid for at least this long, so kubectl never
/// sends one that expires in flight.
pub const EXPIRY_SKEW: Duration = Duration::from_secs(30);

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
    let line = authcode::read_line(&format!("Password for {username}: ")).await?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
