//! `introspection:` entries: RFC 7662 endpoints for opaque OAuth2 access tokens.
//!
//! An introspection response is mapped with the same `claimMappings` and rule schema as a `jwt`
//! entry, so one vocabulary covers both kinds of token.

use serde::Deserialize;

use super::jwt::JwtAuthenticator;
use super::mapping::{ClaimMappings, ClaimValidationRule, GroupRules, IssuerSettings, UserValidationRule};

/// One RFC 7662 introspection endpoint and how its answers map to Kubernetes identities.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntrospectionEndpoint {
    /// A short unique name: the label in metrics and logs, and what a `jwt` entry's `introspect`
    /// refers to.
    pub name: String,
    /// The endpoint, `https://` (or loopback `http://` with `allowLoopbackHTTP`).
    pub url: String,
    /// Inline PEM bundle trusted (alone) for this endpoint; system roots when absent.
    #[serde(default)]
    pub certificate_authority: Option<String>,
    /// How the gateway authenticates to the endpoint.
    pub client_authentication: ClientAuthentication,
    /// Which opaque tokens are sent here. Leave it out for an endpoint that only a `jwt` entry's
    /// `introspect` uses (revocation checks of JWTs).
    #[serde(default)]
    pub opaque_tokens: Option<OpaqueTokenRoute>,
    /// The response's `iss` must equal this (when set).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The response's `aud` or `client_id` must contain one of these (when set): a token issued
    /// to another client is refused even though the server says it is active.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The response's `token_type` must be one of these, compared without case (when set): keeps
    /// refresh tokens out where the server reports their type.
    #[serde(default)]
    pub token_types: Vec<String>,
    /// Refuse answers without `exp` (default false: RFC 7662 makes it optional).
    #[serde(default)]
    pub require_exp: bool,
    /// Longest time an active answer is reused: the revocation window (default 60 s). Never
    /// beyond the token's `exp`, nor `cache.ttlSeconds`.
    #[serde(default = "default_cache_max_seconds")]
    pub cache_max_seconds: u64,
    /// Sustained calls per second allowed to this endpoint (default 50); above it, reviews that
    /// need a call get a transient error instead of adding load.
    #[serde(default = "default_max_requests_per_second")]
    pub max_requests_per_second: u32,
    /// Calls allowed at once above the sustained rate (default 100).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Connect timeout in seconds (default 5).
    #[serde(default = "default_connect_timeout_seconds")]
    pub connect_timeout_seconds: u64,
    /// Total time for one call in seconds (default 5).
    #[serde(default = "default_request_timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// Largest response body read (default 64 KiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 0; at most 300).
    #[serde(default)]
    pub clock_skew_seconds: u64,
    /// For tests and local stacks only: allow an `http://` URL on a loopback host.
    #[serde(default, rename = "allowLoopbackHTTP")]
    pub allow_loopback_http: bool,
    /// As in a `jwt` entry, over the introspection response as `claims`.
    #[serde(default)]
    pub claim_validation_rules: Option<Vec<ClaimValidationRule>>,
    /// As in a `jwt` entry; required for an endpoint with `opaqueTokens`.
    #[serde(default)]
    pub claim_mappings: Option<ClaimMappings>,
    /// As in a `jwt` entry.
    #[serde(default)]
    pub user_validation_rules: Option<Vec<UserValidationRule>>,
    /// As in a `jwt` entry.
    #[serde(default)]
    pub group_rules: Option<GroupRules>,
}

fn default_cache_max_seconds() -> u64 {
    60
}
fn default_max_requests_per_second() -> u32 {
    50
}
fn default_burst() -> u32 {
    100
}
fn default_connect_timeout_seconds() -> u64 {
    5
}
fn default_request_timeout_seconds() -> u64 {
    5
}
fn default_max_response_bytes() -> usize {
    64 * 1024
}

/// `clientAuthentication`: RFC 6749 section 2.3.1 client credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAuthentication {
    /// `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default = "default_auth_method")]
    pub method: String,
    /// The gateway's client id at the authorization server.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// A file holding the client secret (surrounding whitespace is ignored).
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// An environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
}

fn default_auth_method() -> String {
    "client_secret_basic".into()
}

impl ClientAuthentication {
    /// Reads the secret from its file or variable.
    pub fn secret(&self) -> Result<String, String> {
        let secret =
            match (&self.client_secret_file, &self.client_secret_env) {
                (Some(file), None) => std::fs::read_to_string(file)
                    .map_err(|e| format!("clientSecretFile cannot be read: {file}: {e}"))?,
                (None, Some(var)) => std::env::var(var)
                    .map_err(|_| format!("environment variable {var} (clientSecretEnv) is not set"))?,
                _ => return Err("set exactly one of clientSecretFile and clientSecretEnv".into()),
            };
        let secret = secret.trim().to_string();
        if secret.is_empty() {
            return Err("the client secret is empty".into());
        }
        Ok(secret)
    }
}

/// `opaqueTokens`: the explicit rule that sends a token to one endpoint. A token goes to the
/// endpoint with the longest matching `prefix`; it is never tried against several endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpaqueTokenRoute {
    /// Tokens starting with this are sent here; `""` takes every opaque token no longer prefix
    /// claims. Prefixes must be distinct across endpoints.
    pub prefix: String,
    /// A regular expression the whole token must match before it is sent (checked locally, so
    /// random strings cost no call). Default: the RFC 6750 token characters, 16 to 4096 bytes.
    #[serde(default)]
    pub pattern: Option<String>,
}

/// The default format gate: RFC 6750 `b64token` characters, 16 to 4096 bytes.
pub const DEFAULT_OPAQUE_TOKEN_PATTERN: &str = r"[A-Za-z0-9\-._~+/]{16,4096}=*";

impl IntrospectionEndpoint {
    /// The mapping part of this entry in the shape of a `jwt` entry, so the mapper and its
    /// load-time checks are shared. `claimMappings` is required by validation; an entry
    /// without it (used only for revocation checks) maps nothing.
    pub fn as_mapping(&self) -> JwtAuthenticator {
        JwtAuthenticator {
            issuer: IssuerSettings {
                url: self.issuer.clone().unwrap_or_else(|| self.url.clone()),
                discovery_url: None,
                certificate_authority: None,
                audiences: self.audiences.clone(),
                audience_match_policy: None,
                egress_selector_type: None,
            },
            claim_validation_rules: self.claim_validation_rules.clone(),
            claim_mappings: self.claim_mappings.clone().unwrap_or(ClaimMappings {
                username: None,
                groups: None,
                uid: None,
                extra: None,
            }),
            user_validation_rules: self.user_validation_rules.clone(),
            algorithms: None,
            clock_skew_seconds: None,
            jwks_hosts: Vec::new(),
            allow_loopback_http: self.allow_loopback_http,
            group_rules: self.group_rules.clone(),
            introspect: None,
            user_info: None,
            header_types: None,
            max_lifetime_seconds: None,
        }
    }
}
