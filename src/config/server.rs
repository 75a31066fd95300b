//! `server:`: the webhook listener, its TLS and caller authentication, and request limits.

use serde::Deserialize;

/// `server:`
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSettings {
    /// Address of the webhook listener, `host:port`. Loopback by default: without `tls` the
    /// listener speaks plain HTTP, so exposing it beyond the node is an explicit choice.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Optional plain-HTTP address for `/healthz`, `/livez`, `/readyz` and `/metrics` only (never
    /// tokens), for probes and scrapers that cannot present the webhook's client certificate.
    #[serde(default)]
    pub ops_listen: Option<String>,
    /// Largest accepted request body in bytes (413 above it).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest accepted token in bytes; longer tokens are rejected before any decoding.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Time allowed to receive the request body once the headers are in (408 after it).
    #[serde(default = "default_body_timeout_seconds")]
    pub body_timeout_seconds: u64,
    /// Time allowed for one review; after it the answer is a transient error (kube-apiserver
    /// gives up after 30 s).
    #[serde(default = "default_review_timeout_seconds")]
    pub review_timeout_seconds: u64,
    /// Reviews processed at once; beyond it the answer is an immediate transient error, never a
    /// status the apiserver retries.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[serde(default = "default_shutdown_grace_seconds")]
    pub shutdown_grace_seconds: u64,
    /// Serve the webhook over TLS (and optionally require client certificates).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Require callers to authenticate with a bearer token.
    #[serde(default)]
    pub auth: Option<CallerAuthSettings>,
}

fn default_listen() -> String {
    "127.0.0.1:8443".into()
}
fn default_max_body_bytes() -> usize {
    128 * 1024
}
fn default_max_token_bytes() -> usize {
    64 * 1024
}
fn default_body_timeout_seconds() -> u64 {
    5
}
fn default_review_timeout_seconds() -> u64 {
    10
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_shutdown_grace_seconds() -> u64 {
    10
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: default_listen(),
            ops_listen: None,
            max_body_bytes: default_max_body_bytes(),
            max_token_bytes: default_max_token_bytes(),
            body_timeout_seconds: default_body_timeout_seconds(),
            review_timeout_seconds: default_review_timeout_seconds(),
            max_in_flight: default_max_in_flight(),
            shutdown_grace_seconds: default_shutdown_grace_seconds(),
            tls: None,
            auth: None,
        }
    }
}

/// `server.tls:`
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain; re-read when it changes (cert-manager, kubelet-mounted Secrets).
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM CA bundle: when set, a client certificate from it is required (mTLS). Named
    /// `clientCAFile` as documented; `clientCaFile` is what an environment override
    /// (`..._TLS__CLIENT_CA_FILE`) turns into, so it is accepted too.
    #[serde(default, rename = "clientCAFile", alias = "clientCaFile")]
    pub client_ca_file: Option<String>,
    /// With `clientCAFile`: the client certificate's subject CN or a DNS SAN must be one of these.
    /// Leave empty only if the CA signs nothing but the apiserver's client certificate.
    #[serde(default)]
    pub allowed_client_names: Vec<String>,
    /// How often the certificate and key files are checked for changes.
    #[serde(default = "default_tls_reload_seconds")]
    pub reload_interval_seconds: u64,
}

fn default_tls_reload_seconds() -> u64 {
    10
}

/// The shortest caller token accepted in `server.auth.bearerTokenFile` (also checked by
/// `kubeconfig --token-file`, so the two never disagree).
pub const MIN_CALLER_TOKEN_CHARS: usize = 16;

/// `server.auth:`
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallerAuthSettings {
    /// File holding the token callers must send as `Authorization: Bearer <token>`.
    pub bearer_token_file: String,
}
