//! OAuth 2.0 messages with the identity provider: discovery of its endpoints, the token endpoint
//! (authorization code, refresh, password, client credentials, device code) and the device
//! authorization endpoint. HTTP goes through the gateway's own client rules (`authn::fetch`:
//! https only, the configured CA, no redirects, bounded time and size).
//!
//! NB: no secret (client secret, refresh token, code, password) is ever put into an error
//! message; provider error texts are shortened and stripped of control characters.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::error::LoginError;
use crate::authn::fetch::{FetchError, Fetched, get_bounded, issuer_client_builder, send_bounded_any_status};

/// Largest discovery or token response we read.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The grant type URN of RFC 8628.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The client as registered at the provider.
#[derive(Clone)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// `client_secret` for a confidential client; sent with HTTP Basic (RFC 6749 2.3.1).
    pub secret: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("id", &self.id).field("secret", &self.secret.as_ref().map(|_| "***")).finish()
    }
}

/// The provider's endpoints, from its discovery document.
pub struct Provider {
    /// The issuer URL, exactly as configured (and as discovery names it).
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: Option<String>,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `device_authorization_endpoint`.
    pub device_authorization_endpoint: Option<String>,
    /// `scopes_supported`.
    pub scopes_supported: Vec<String>,
    http: reqwest::Client,
}

/// A token endpoint success (RFC 6749 5.1).
#[derive(Deserialize)]
pub struct Tokens {
    /// `access_token`.
    pub access_token: String,
    /// `id_token` (OpenID Connect).
    pub id_token: Option<String>,
    /// `refresh_token`.
    pub refresh_token: Option<String>,
    /// `expires_in`, seconds.
    pub expires_in: Option<f64>,
}

/// A token endpoint refusal (RFC 6749 5.2) or a failure to get an answer.
#[derive(Debug)]
pub enum TokenError {
    /// The provider answered with an OAuth error code.
    OAuth {
        /// `error`.
        error: String,
        /// `error_description`, cleaned.
        description: Option<String>,
    },
    /// No usable answer.
    Failed(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::OAuth { error, description: Some(d) } => write!(f, "{error}: {d}"),
            TokenError::OAuth { error, description: None } => f.write_str(error),
            TokenError::Failed(m) => f.write_str(m),
        }
    }
}

impl TokenError {
    /// The OAuth error code, if the provider sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            TokenError::OAuth { error, .. } => Some(error),
            TokenError::Failed(_) => None,
        }
    }

    /// A message that says what to fix, for the error codes that have one answer.
    pub fn into_login_error(self, what: &str) -> LoginError {
        match self.code() {
            Some("invalid_client" | "unauthorized_client") => LoginError::Refused(format!(
                "the provider refused the client for {what} ({self}): check --oidc-client-id and --oidc-client-secret, and that the client may use this grant"
            )),
            Some("invalid_grant") => LoginError::Refused(format!("the provider refused {what} ({self})")),
            Some("invalid_scope") => LoginError::Refused(format!(
                "the provider refused the scopes for {what} ({self}): check --oidc-extra-scope"
            )),
            Some(_) => LoginError::Refused(format!("the provider refused {what} ({self})")),
            None => LoginError::Provider(format!("{what} failed: {self}")),
        }
    }
}

/// The device authorization response (RFC 8628 3.2).
#[derive(Deserialize)]
pub struct DeviceAuthorization {
    /// `device_code`.
    pub device_code: String,
    /// `user_code`.
    pub user_code: String,
    /// `verification_uri` (Google calls it `verification_url`).
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    /// `verification_uri_complete`.
    pub verification_uri_complete: Option<String>,
    /// `expires_in`, seconds.
    pub expires_in: u64,
    /// `interval`, seconds (default 5).
    pub interval: Option<u64>,
}

impl Provider {
    /// Reads `<issuer>/.well-known/openid-configuration`, whose `issuer` must be the configured
    /// one, with `ca_pem` (the `--certificate-authority` bundle) or the platform's roots.
    pub async fn discover(issuer: &str, ca_pem: Option<&str>) -> Result<Provider, LoginError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            authorization_endpoint: Option<String>,
            token_endpoint: Option<String>,
            device_authorization_endpoint: Option<String>,
            #[serde(default)]
            scopes_supported: Vec<String>,
        }
        // NB: no idle connection is reused. The device flow polls every 5 s, which is also
        // Node's (and many proxies') keep-alive timeout: a POST on a connection the server is
        // closing fails, and a token request must not be retried blindly.
        let http = issuer_client_builder(ca_pem, CONNECT_TIMEOUT, REQUEST_TIMEOUT, false)
            .and_then(|b| b.pool_max_idle_per_host(0).build().map_err(|e| format!("cannot build HTTPS client: {e}")))
            .map_err(|e| LoginError::Usage(format!("--certificate-authority: {e}")))?;
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let Fetched { body, .. } = get_bounded(&http, &url, MAX_RESPONSE_BYTES).await.map_err(|e| {
            LoginError::Provider(format!("cannot read the provider's discovery document: {e}{}", hint(&e)))
        })?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| LoginError::Provider(format!("{url} is not an OpenID discovery document: {e}")))?;
        if doc.issuer != issuer {
            return Err(LoginError::Usage(format!(
                "the discovery document at {url} names issuer {:?}; --oidc-issuer-url must be exactly that",
                doc.issuer
            )));
        }
        let token_endpoint = doc
            .token_endpoint
            .ok_or_else(|| LoginError::Provider(format!("the discovery document at {url} has no token_endpoint")))?;
        Ok(Provider {
            issuer: doc.issuer,
            authorization_endpoint: doc.authorization_endpoint,
            token_endpoint,
            device_authorization_endpoint: doc.device_authorization_endpoint,
            scopes_supported: doc.scopes_supported,
            http,
        })
    }

    /// POSTs a grant to the token endpoint.
    pub async fn token(&self, client: &Client, params: &[(&str, &str)]) -> Result<Tokens, TokenError> {
        let value = self.post(&self.token_endpoint, client, params).await?;
        serde_json::from_value(value).map_err(|e| {
            TokenError::Failed(format!(
                "the token endpoint {} answered without a usable token: {e}",
                self.token_endpoint
            ))
        })
    }

    /// Starts the device flow.
    pub async fn device_authorization(&self, client: &Client, scope: &str) -> Result<DeviceAuthorization, LoginError> {
        let endpoint = self.device_authorization_endpoint.as_deref().ok_or_else(|| {
            LoginError::Usage(format!(
                "{} does not advertise a device_authorization_endpoint: use another --grant-type",
                self.issuer
            ))
        })?;
        let value = self
            .post(endpoint, client, &[("scope", scope)])
            .await
            .map_err(|e| e.into_login_error("the device authorization request"))?;
        serde_json::from_value(value)
            .map_err(|e| LoginError::Provider(format!("{endpoint} answered without a usable device code: {e}")))
    }

    async fn post(&self, url: &str, client: &Client, params: &[(&str, &str)]) -> Result<Value, TokenError> {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        let mut request = self.http.post(url);
        match &client.secret {
            Some(secret) => {
                // RFC 6749 2.3.1: both parts are form-urlencoded before they are joined.
                let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                request = request.basic_auth(encode(&client.id), Some(encode(secret)));
            }
            None => form.push(("client_id", &client.id)),
        }
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let request = request.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body);
        let (status, Fetched { body, .. }) = send_bounded_any_status(request, url, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| TokenError::Failed(format!("{e}{}", hint(&e))))?;
        let value: Value = serde_json::from_slice(&body)
            .map_err(|_| TokenError::Failed(format!("{url} answered HTTP {status} with invalid JSON")))?;
        if status == 200 {
            return Ok(value);
        }
        match value.get("error").and_then(Value::as_str) {
            Some(error) => Err(TokenError::OAuth {
                error: clean(error, 64),
                description: value.get("error_description").and_then(Value::as_str).map(|d| clean(d, 200)),
            }),
            None => Err(TokenError::Failed(format!("{url} answered HTTP {status}"))),
        }
    }
}

/// What to check when the provider cannot be reached.
fn hint(e: &FetchError) -> &'static str {
    match e {
        FetchError::Request { message, .. } if message.contains("certificate") => {
            " (the provider's certificate is not trusted: pass its CA with --certificate-authority)"
        }
        FetchError::Request { .. } => " (is --oidc-issuer-url right and the provider up?)",
        _ => "",
    }
}

/// Provider text shown to the user: printable characters only, bounded.
pub fn clean(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_texts_are_cleaned_and_bounded() {
        assert_eq!(clean("bad\u{1b}[31m\ncode", 64), "bad[31mcode");
        assert_eq!(clean(&"x".repeat(300), 10), format!("{}…", "x".repeat(10)));
    }

    #[test]
    fn the_client_secret_never_shows_in_debug_output() {
        let c = Client { id: "kubectl".into(), secret: Some("s3cret".into()) };
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn refusals_name_what_to_fix() {
        let e = TokenError::OAuth { error: "invalid_client".into(), description: None };
        let m = e.into_login_error("the code exchange").to_string();
        assert!(m.contains("--oidc-client-secret"), "{m}");
    }
}
