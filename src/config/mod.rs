//! Settings: one YAML (or TOML) file plus `TOKENREVIEW_GATEWAY__SECTION__FIELD` environment
//! overrides, deserialized strictly (unknown fields are errors) and validated completely at load,
//! with every problem reported against the field that has it.

mod introspection;
mod jwt;
mod paths;
mod unknown_keys;

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

pub use introspection::{
    ClientAuthentication, DEFAULT_OPAQUE_TOKEN_PATTERN, IntrospectionEndpoint, OpaqueTokenRoute, UserInfoSettings,
};
pub use jwt::{
    AnonymousSettings, AuthenticationConfiguration, ClaimMappings, ClaimOrExpression, ClaimValidationRule,
    ExtraMapping, GroupRules, IssuerSettings, JwtAuthenticator, KubernetesJwtAuthenticator, PrefixedClaimOrExpression,
    UserValidationRule,
};

/// Algorithms accepted when an issuer does not list its own. ES512 is absent: the JWT library
/// has no P-521 verifier, so it could only ever fail.
pub const DEFAULT_ALGORITHMS: [&str; 8] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"];

/// Algorithms an operator may opt into with `algorithms:`.
pub const SUPPORTED_ALGORITHMS: [&str; 9] =
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// Kubernetes caps an `AuthenticationConfiguration` at 64 JWT authenticators.
pub const MAX_JWT_AUTHENTICATORS: usize = 64;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// The webhook listener and request limits.
    #[serde(default)]
    pub server: ServerSettings,
    /// The review result cache.
    #[serde(default)]
    pub cache: CacheSettings,
    /// Fetching discovery documents and key sets.
    #[serde(default)]
    pub keys: KeySettings,
    /// Trusted issuers, Kubernetes `AuthenticationConfiguration` `jwt` entries.
    #[serde(default)]
    pub jwt: Vec<JwtAuthenticator>,
    /// A verbatim Kubernetes `AuthenticationConfiguration` whose `jwt` entries are added to
    /// `jwt` (relative paths are relative to this file's directory).
    #[serde(default)]
    pub authentication_config_file: Option<String>,
    /// The cluster's service-account issuers (`--service-account-issuer`): configuring one of
    /// them as a JWT issuer is refused, as kube-apiserver refuses it.
    #[serde(default)]
    pub service_account_issuers: Vec<String>,
    /// RFC 7662 endpoints for opaque OAuth2 tokens (and revocation checks of JWTs).
    #[serde(default)]
    pub introspection: Vec<IntrospectionEndpoint>,
    /// Log output.
    #[serde(default)]
    pub logging: LoggingSettings,
    /// Files this configuration was read from (the main file, then the Kubernetes file), for
    /// reload; how many `jwt` entries came from the main file.
    #[serde(skip)]
    pub sources: Sources,
}

/// Where a configuration came from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The files read, in order.
    pub files: Vec<std::path::PathBuf>,
    /// How many `jwt` entries are inline; the rest came from `authenticationConfigFile`.
    pub inline_jwt: Option<usize>,
}

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

/// `server.auth:`
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallerAuthSettings {
    /// File holding the token callers must send as `Authorization: Bearer <token>`.
    pub bearer_token_file: String,
}

/// `cache:`
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheSettings {
    /// Most review results kept (bounds memory whatever the traffic); an answer longer than 640
    /// bytes (a user with many groups) counts as one entry per 640 bytes. 0 disables the cache.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Longest a positive answer is reused; never beyond the token's `exp`.
    #[serde(default = "default_ttl_seconds")]
    pub ttl_seconds: u64,
    /// How long a definite rejection is reused. Transient failures are never cached.
    #[serde(default = "default_negative_ttl_seconds")]
    pub negative_ttl_seconds: u64,
}

fn default_max_entries() -> u64 {
    100_000
}
fn default_ttl_seconds() -> u64 {
    300
}
fn default_negative_ttl_seconds() -> u64 {
    10
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_entries: default_max_entries(),
            ttl_seconds: default_ttl_seconds(),
            negative_ttl_seconds: default_negative_ttl_seconds(),
        }
    }
}

/// `keys:`
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeySettings {
    /// JWKS refresh period when the JWKS response has no `Cache-Control: max-age`.
    #[serde(default = "default_refresh_interval_seconds")]
    pub refresh_interval_seconds: u64,
    /// Lower bound applied to a JWKS `max-age` (and to `refreshIntervalSeconds`).
    #[serde(default = "default_min_refresh_seconds")]
    pub min_refresh_seconds: u64,
    /// Upper bound applied to a JWKS `max-age`.
    #[serde(default = "default_max_refresh_seconds")]
    pub max_refresh_seconds: u64,
    /// How often the discovery document itself is fetched again.
    #[serde(default = "default_discovery_refresh_seconds")]
    pub discovery_refresh_seconds: u64,
    /// First retry delay after a failed fetch; doubles (with jitter) up to `maxRetryIntervalSeconds`.
    #[serde(default = "default_retry_interval_seconds")]
    pub retry_interval_seconds: u64,
    /// Longest delay between retries.
    #[serde(default = "default_max_retry_interval_seconds")]
    pub max_retry_interval_seconds: u64,
    /// After this long without a successful fetch, an issuer's keys are no longer trusted: its
    /// tokens get a transient error and `/readyz` fails, until a fetch succeeds again.
    #[serde(default = "default_max_staleness_seconds")]
    pub max_staleness_seconds: u64,
    /// A token with an unknown `kid` triggers at most one JWKS fetch per issuer per this period.
    #[serde(default = "default_unknown_kid_cooldown_seconds")]
    pub unknown_kid_cooldown_seconds: u64,
    /// TCP + TLS connect timeout for discovery and JWKS.
    #[serde(default = "default_connect_timeout_seconds")]
    pub connect_timeout_seconds: u64,
    /// Total timeout of one discovery or JWKS request, body included.
    #[serde(default = "default_request_timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// Largest discovery or JWKS response accepted, in bytes.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// How long startup waits for every issuer's first key set before serving anyway.
    #[serde(default = "default_startup_wait_seconds")]
    pub startup_wait_seconds: u64,
}

fn default_refresh_interval_seconds() -> u64 {
    3600
}
fn default_min_refresh_seconds() -> u64 {
    300
}
fn default_max_refresh_seconds() -> u64 {
    86400
}
fn default_discovery_refresh_seconds() -> u64 {
    86400
}
fn default_retry_interval_seconds() -> u64 {
    10
}
fn default_max_retry_interval_seconds() -> u64 {
    300
}
fn default_max_staleness_seconds() -> u64 {
    86400
}
fn default_unknown_kid_cooldown_seconds() -> u64 {
    30
}
fn default_connect_timeout_seconds() -> u64 {
    5
}
fn default_request_timeout_seconds() -> u64 {
    10
}
fn default_max_response_bytes() -> usize {
    256 * 1024
}
fn default_startup_wait_seconds() -> u64 {
    10
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            refresh_interval_seconds: default_refresh_interval_seconds(),
            min_refresh_seconds: default_min_refresh_seconds(),
            max_refresh_seconds: default_max_refresh_seconds(),
            discovery_refresh_seconds: default_discovery_refresh_seconds(),
            retry_interval_seconds: default_retry_interval_seconds(),
            max_retry_interval_seconds: default_max_retry_interval_seconds(),
            max_staleness_seconds: default_max_staleness_seconds(),
            unknown_kid_cooldown_seconds: default_unknown_kid_cooldown_seconds(),
            connect_timeout_seconds: default_connect_timeout_seconds(),
            request_timeout_seconds: default_request_timeout_seconds(),
            max_response_bytes: default_max_response_bytes(),
            startup_wait_seconds: default_startup_wait_seconds(),
        }
    }
}

/// `logging:`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingSettings {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `tokenreview_gateway=debug`; `RUST_LOG` wins when set.
    #[serde(default)]
    pub level: Option<String>,
    /// File with a secret key for the token fingerprints in logs, so replicas and restarts agree;
    /// without it each process uses a random key.
    #[serde(default)]
    pub token_hash_key_file: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything wrong with a configuration, one line per problem, each naming its field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a field has the wrong type or is unknown.
    #[error("cannot load configuration {path}: {message}")]
    Load {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// The file parsed but some values are invalid.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

const ENV_PREFIX: &str = "TOKENREVIEW_GATEWAY";

impl Settings {
    /// Reads `path` (YAML, or TOML when it ends in `.toml`), applies environment overrides and
    /// validates the result.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// [`Settings::load`] with the environment given explicitly (`None`: the process's).
    fn load_with_env(path: &Path, env: Option<config::Map<String, String>>) -> Result<Settings, ConfigError> {
        let load_err = |message: String| ConfigError::Load { path: path.display().to_string(), message };
        if let Some(problem) = paths::config_file_problem(path) {
            return Err(load_err(problem));
        }
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => config::FileFormat::Toml,
            _ => config::FileFormat::Yaml,
        };
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(format))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .convert_case(config::Case::Camel)
                    .try_parsing(true)
                    .source(env),
            )
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        let found = unknown_keys::deserialize_all::<Settings>(built.cache, ENV_PREFIX);
        let (mut settings, mut problems) = match found.value {
            Some(settings) => (settings, found.unknown),
            None if found.unknown.is_empty() => return Err(load_err(found.other.unwrap_or_default())),
            None => return Err(ConfigError::Invalid(found.unknown.into_iter().chain(found.other).collect())),
        };
        settings.sources.files.push(path.to_path_buf());
        settings.resolve_paths(&paths::base_directory(path));
        if let Some(file) = settings.authentication_config_file.clone() {
            let k8s_path = path.parent().unwrap_or(Path::new(".")).join(&file);
            let imported = load_authentication_configuration(&k8s_path)?;
            settings.sources.inline_jwt = Some(settings.jwt.len());
            settings.jwt.extend(imported.jwt.into_iter().map(JwtAuthenticator::from));
            settings.sources.files.push(k8s_path);
        }
        if !problems.is_empty() {
            // Every problem at once: the unknown keys, then what the rest of the file has.
            if let Err(ConfigError::Invalid(more)) = settings.validate() {
                problems.extend(more);
            }
            return Err(ConfigError::Invalid(problems));
        }
        settings.validate()?;
        Ok(settings)
    }

    /// The name of `jwt` entry `i` in error messages: `jwt[i]`, or the entry's place in the
    /// Kubernetes file it came from.
    fn jwt_field(&self, i: usize) -> String {
        match self.sources.inline_jwt {
            Some(inline) if i >= inline => format!("authenticationConfigFile jwt[{}]", i - inline),
            _ => format!("jwt[{i}]"),
        }
    }

    /// Checks every value; returns all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut p = |field: String, msg: &str| problems.push(format!("{field}: {msg}"));

        let sv = &self.server;
        if sv.listen.parse::<std::net::SocketAddr>().is_err() {
            p("server.listen".into(), "must be an address such as 0.0.0.0:8443");
        }
        if let Some(ops) = &sv.ops_listen
            && ops.parse::<std::net::SocketAddr>().is_err()
        {
            p("server.opsListen".into(), "must be an address such as 0.0.0.0:9090");
        }
        for (name, v) in [
            ("server.bodyTimeoutSeconds", sv.body_timeout_seconds),
            ("server.reviewTimeoutSeconds", sv.review_timeout_seconds),
            ("server.maxInFlight", sv.max_in_flight as u64),
        ] {
            if v == 0 {
                p(name.into(), "must be greater than 0");
            }
        }
        if sv.review_timeout_seconds >= 30 {
            p("server.reviewTimeoutSeconds".into(), "must be under 30 (kube-apiserver's webhook timeout)");
        }
        if let Some(tls) = &sv.tls {
            for (name, file) in [("server.tls.certFile", &tls.cert_file), ("server.tls.keyFile", &tls.key_file)] {
                if !Path::new(file).is_file() {
                    p(name.into(), &format!("file not found: {file}"));
                }
            }
            if let Some(ca) = &tls.client_ca_file
                && !Path::new(ca).is_file()
            {
                p("server.tls.clientCAFile".into(), &format!("file not found: {ca}"));
            }
            if !tls.allowed_client_names.is_empty() && tls.client_ca_file.is_none() {
                p("server.tls.allowedClientNames".into(), "needs server.tls.clientCAFile");
            }
            if tls.reload_interval_seconds == 0 {
                p("server.tls.reloadIntervalSeconds".into(), "must be greater than 0");
            }
        }
        if let Some(f) = &self.logging.token_hash_key_file {
            match std::fs::read(f) {
                Ok(k) if k.len() >= 16 => {}
                Ok(_) => p("logging.tokenHashKeyFile".into(), "the key must be at least 16 bytes"),
                Err(e) => p("logging.tokenHashKeyFile".into(), &format!("cannot read {f}: {e}")),
            }
        }
        if let Some(auth) = &sv.auth {
            match std::fs::read_to_string(&auth.bearer_token_file) {
                Ok(t) if t.trim().len() >= 16 => {}
                Ok(_) => p("server.auth.bearerTokenFile".into(), "the token must be at least 16 characters"),
                Err(e) => {
                    p("server.auth.bearerTokenFile".into(), &format!("cannot read {}: {e}", auth.bearer_token_file))
                }
            }
        }
        if self.server.max_body_bytes < 1024 {
            p("server.maxBodyBytes".into(), "must be at least 1024");
        }
        if self.server.max_token_bytes == 0 || self.server.max_token_bytes >= self.server.max_body_bytes {
            p("server.maxTokenBytes".into(), "must be greater than 0 and less than server.maxBodyBytes");
        }
        if self.cache.ttl_seconds == 0 && self.cache.max_entries > 0 {
            p("cache.ttlSeconds".into(), "must be greater than 0 (set cache.maxEntries: 0 to disable the cache)");
        }
        let k = &self.keys;
        for (name, v) in [
            ("keys.refreshIntervalSeconds", k.refresh_interval_seconds),
            ("keys.minRefreshSeconds", k.min_refresh_seconds),
            ("keys.discoveryRefreshSeconds", k.discovery_refresh_seconds),
            ("keys.retryIntervalSeconds", k.retry_interval_seconds),
            ("keys.maxStalenessSeconds", k.max_staleness_seconds),
            ("keys.unknownKidCooldownSeconds", k.unknown_kid_cooldown_seconds),
            ("keys.connectTimeoutSeconds", k.connect_timeout_seconds),
            ("keys.requestTimeoutSeconds", k.request_timeout_seconds),
        ] {
            if v == 0 {
                p(name.into(), "must be greater than 0");
            }
        }
        if k.max_refresh_seconds < k.min_refresh_seconds {
            p("keys.maxRefreshSeconds".into(), "must not be less than keys.minRefreshSeconds");
        }
        if k.max_retry_interval_seconds < k.retry_interval_seconds {
            p("keys.maxRetryIntervalSeconds".into(), "must not be less than keys.retryIntervalSeconds");
        }
        if k.max_response_bytes < 1024 {
            p("keys.maxResponseBytes".into(), "must be at least 1024");
        }
        if self.jwt.len() > MAX_JWT_AUTHENTICATORS {
            p("jwt".into(), "at most 64 entries are allowed");
        }

        let mut urls = HashSet::new();
        let mut discovery_urls = HashSet::new();
        let cel = match crate::cel::Cel::new() {
            Ok(c) => c,
            Err(e) => {
                problems.push(e);
                return Err(ConfigError::Invalid(problems));
            }
        };
        let reserved_issuers = ["https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local"];
        for (i, a) in self.jwt.iter().enumerate() {
            let entry = self.jwt_field(i);
            let at = |f: &str| format!("{entry}.{f}");
            if self.service_account_issuers.contains(&a.issuer.url) || reserved_issuers.contains(&a.issuer.url.as_str())
            {
                p(at("issuer.url"), "must not be a service-account issuer of the cluster");
            }
            let iss = &a.issuer;
            let allow_http = a.allow_loopback_http;
            match check_issuer_url(&iss.url, allow_http) {
                Err(msg) => p(at("issuer.url"), msg),
                Ok(()) => {
                    if !urls.insert(iss.url.as_str()) {
                        p(at("issuer.url"), "duplicate issuer URL");
                    }
                }
            }
            if let Some(d) = &iss.discovery_url {
                if let Err(msg) = check_issuer_url(d, allow_http) {
                    p(at("issuer.discoveryURL"), msg);
                } else if d.trim_end_matches('/') == iss.url.trim_end_matches('/') {
                    p(at("issuer.discoveryURL"), "must differ from issuer.url (leave it unset to use the default)");
                } else if !discovery_urls.insert(d.as_str()) {
                    p(at("issuer.discoveryURL"), "duplicate discovery URL");
                }
            }
            if let Some(ca) = &iss.certificate_authority
                && !ca.trim().is_empty()
                && !reqwest::Certificate::from_pem_bundle(ca.as_bytes()).is_ok_and(|c| !c.is_empty())
            {
                p(at("issuer.certificateAuthority"), &paths::pem_bundle_problem(ca));
            }
            if iss.audiences.is_empty() {
                p(at("issuer.audiences"), "at least one audience is required");
            }
            if iss.audiences.iter().any(|a| a.is_empty()) {
                p(at("issuer.audiences"), "audiences must not be empty strings");
            }
            let distinct: HashSet<_> = iss.audiences.iter().collect();
            if distinct.len() != iss.audiences.len() {
                p(at("issuer.audiences"), "duplicate audience");
            }
            match (iss.audiences.len(), iss.audience_match_policy.as_deref()) {
                (_, None | Some("MatchAny")) if iss.audiences.len() <= 1 => {}
                (_, Some("MatchAny")) => {}
                (_, None) => p(at("issuer.audienceMatchPolicy"), "must be MatchAny when more than one audience is set"),
                (_, Some(_)) => p(at("issuer.audienceMatchPolicy"), "the only supported value is MatchAny"),
            }
            if let Some(e) = &iss.egress_selector_type
                && e != "controlplane"
                && e != "cluster"
            {
                p(at("issuer.egressSelectorType"), "must be controlplane or cluster");
            }
            check_mapping(&cel, a, &at, &mut p);
            if let Some(algs) = &a.algorithms {
                if algs.is_empty() {
                    p(at("algorithms"), "must list at least one algorithm (or be left out for the default)");
                }
                for alg in algs {
                    if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
                        p(
                            at("algorithms"),
                            &format!("unsupported algorithm {alg:?}; supported: {}", SUPPORTED_ALGORITHMS.join(", ")),
                        );
                    }
                }
            }
            for (j, host) in a.jwks_hosts.iter().enumerate() {
                if host.is_empty() || host.contains(['/', ':', '@', ' ']) {
                    p(at(&format!("jwksHosts[{j}]")), "must be a bare host name such as www.googleapis.com");
                }
            }
            if a.clock_skew_seconds.is_some_and(|s| s > 300) {
                p(at("clockSkewSeconds"), "must be at most 300");
            }
            if let Some(name) = &a.introspect
                && !self.introspection.iter().any(|e| &e.name == name)
            {
                p(at("introspect"), "names no introspection entry");
            }
            if let Some(ui) = &a.user_info {
                let mapped = a.claim_mappings.groups.as_ref().and_then(|g| g.claim.as_deref());
                match (ui.groups_claim.as_deref(), mapped) {
                    (Some(""), _) => p(at("userInfo.groupsClaim"), "must not be empty"),
                    (None, None) => {
                        p(at("userInfo.groupsClaim"), "is required unless claimMappings.groups names a claim")
                    }
                    _ => {}
                }
            }
        }
        self.validate_introspection(&cel, &mut p);
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }
}

impl Settings {
    /// `introspection` entries: endpoint, credentials, routing, limits and mapping.
    fn validate_introspection(&self, cel: &crate::cel::Cel, p: &mut impl FnMut(String, &str)) {
        let mut names = HashSet::new();
        let mut prefixes = HashSet::new();
        for (i, e) in self.introspection.iter().enumerate() {
            let at = |f: &str| format!("introspection[{i}].{f}");
            if e.name.is_empty() || !e.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                p(at("name"), "must be letters, digits, '-', '_' or '.'");
            } else if !names.insert(e.name.as_str()) {
                p(at("name"), "duplicate name");
            }
            if let Err(msg) = check_issuer_url(&e.url, e.allow_loopback_http) {
                p(at("url"), msg);
            }
            if let Some(ca) = &e.certificate_authority
                && !ca.trim().is_empty()
                && !reqwest::Certificate::from_pem_bundle(ca.as_bytes()).is_ok_and(|c| !c.is_empty())
            {
                p(at("certificateAuthority"), &paths::pem_bundle_problem(ca));
            }
            let auth = &e.client_authentication;
            if !["client_secret_basic", "client_secret_post"].contains(&auth.method.as_str()) {
                p(at("clientAuthentication.method"), "must be client_secret_basic or client_secret_post");
            }
            if auth.client_id.is_empty() {
                p(at("clientAuthentication.clientID"), "is required");
            }
            // The secret itself is read when the endpoint is compiled (start, reload, `check`), so
            // a file can be validated on a machine that does not hold the secret.
            if auth.client_secret_file.is_some() == auth.client_secret_env.is_some() {
                p(at("clientAuthentication"), "set exactly one of clientSecretFile and clientSecretEnv");
            }
            let used_by_jwt = self.jwt.iter().any(|a| a.introspect.as_ref() == Some(&e.name));
            match &e.opaque_tokens {
                Some(route) => {
                    if !prefixes.insert(route.prefix.as_str()) {
                        p(at("opaqueTokens.prefix"), "another entry already takes tokens with this prefix");
                    }
                    if let Some(pattern) = &route.pattern
                        && regex::Regex::new(&format!("^(?:{pattern})$")).is_err()
                    {
                        p(at("opaqueTokens.pattern"), "is not a valid regular expression");
                    }
                    if e.claim_mappings.is_none() {
                        p(at("claimMappings"), "is required with opaqueTokens");
                    }
                }
                None if !used_by_jwt => {
                    p(at("opaqueTokens"), "is required unless a jwt entry's introspect names this endpoint")
                }
                None => {}
            }
            if e.claim_mappings.is_some() {
                check_mapping(cel, &e.as_mapping(), &at, p);
            }
            for (name, v) in [
                ("cacheMaxSeconds", e.cache_max_seconds),
                ("maxRequestsPerSecond", u64::from(e.max_requests_per_second)),
                ("burst", u64::from(e.burst)),
                ("connectTimeoutSeconds", e.connect_timeout_seconds),
                ("requestTimeoutSeconds", e.request_timeout_seconds),
            ] {
                if v == 0 {
                    p(at(name), "must be greater than 0");
                }
            }
            if e.request_timeout_seconds >= self.server.review_timeout_seconds {
                p(at("requestTimeoutSeconds"), "must be less than server.reviewTimeoutSeconds");
            }
            if e.max_response_bytes < 1024 {
                p(at("maxResponseBytes"), "must be at least 1024");
            }
            if e.clock_skew_seconds > 300 {
                p(at("clockSkewSeconds"), "must be at most 300");
            }
            if e.audiences.iter().chain(&e.token_types).any(String::is_empty) {
                p(at("audiences"), "audiences and tokenTypes must not contain empty strings");
            }
        }
    }
}

/// The mapping half of a `jwt` entry (also used for `introspection` entries): rules, mappings and
/// groupRules, each expression compiled and dry-run.
fn check_mapping(
    cel: &crate::cel::Cel,
    a: &JwtAuthenticator,
    at: &dyn Fn(&str) -> String,
    p: &mut impl FnMut(String, &str),
) {
    let x = ExprCheck::new(cel, a);
    check_claim_rules(&x, &at("claimValidationRules"), a.claim_validation_rules.as_deref().unwrap_or(&[]), p);
    check_user_rules(&x, &at("userValidationRules"), a.user_validation_rules.as_deref().unwrap_or(&[]), p);
    let m = &a.claim_mappings;
    check_extra(&x, &at("claimMappings.extra"), m.extra.as_deref().unwrap_or(&[]), p);
    check_email_verified_reference(cel, a, &at("claimMappings.username.expression"), p);
    match &m.username {
        None => p(at("claimMappings.username"), "is required"),
        Some(u) => check_prefixed(&x, &at("claimMappings.username"), u, true, Expect::String, p),
    }
    if let Some(g) = &m.groups {
        check_prefixed(&x, &at("claimMappings.groups"), g, false, Expect::Strings, p);
    }
    if let Some(u) = &m.uid {
        match (u.claim.as_deref(), &u.expression) {
            (Some(_), Some(_)) => p(at("claimMappings.uid"), "set claim or expression, not both"),
            (None, Some(e)) => x.check(&at("claimMappings.uid.expression"), e, Expect::String, p),
            (None | Some(""), None) => p(at("claimMappings.uid.claim"), "is required when uid is set"),
            (Some(_), None) => {}
        }
    }
    if let Some(rules) = &a.group_rules {
        if m.groups.is_none() {
            p(at("groupRules"), "needs claimMappings.groups");
        }
        for (list, name) in [(&rules.allow, "allow"), (&rules.deny, "deny")] {
            for (j, pattern) in list.iter().enumerate() {
                if regex::Regex::new(pattern).is_err() {
                    p(at(&format!("groupRules.{name}[{j}]")), "is not a valid regular expression");
                }
            }
        }
        for (from, to) in &rules.rename {
            if from.is_empty() || to.is_empty() || to.chars().any(char::is_control) {
                p(at("groupRules.rename"), "names must be non-empty and free of control characters");
            } else if to.to_ascii_lowercase().starts_with("system:") {
                tracing::warn!(from = %from, to = %to, "groupRules.rename grants a system: group");
            }
        }
        if rules.max_groups == Some(0) {
            p(at("groupRules.maxGroups"), "must be greater than 0");
        }
    }
}

/// What an expression must evaluate to.
#[derive(Clone, Copy)]
enum Expect {
    Bool,
    String,
    /// A string, a list of strings, or null.
    Strings,
}

/// Compiles expressions and evaluates them once against sample input, because the CEL crate has
/// no type checker: a rule that is not a bool or a username that is not a string fails at load,
/// not at the first token. An evaluation error on the sample (a claim it lacks) is not a config
/// error; it is decided per token.
struct ExprCheck<'a> {
    cel: &'a crate::cel::Cel,
    claims: serde_json::Map<String, serde_json::Value>,
    user: serde_json::Map<String, serde_json::Value>,
}

impl<'a> ExprCheck<'a> {
    fn new(cel: &'a crate::cel::Cel, a: &JwtAuthenticator) -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let claims = serde_json::json!({
            "iss": a.issuer.url, "sub": "sample-subject", "aud": a.issuer.audiences, "exp": now + 3600, "iat": now,
            "nbf": now, "jti": "sample-jti", "email": "sample@example.com", "email_verified": true,
            "name": "Sample User", "preferred_username": "sample", "groups": ["sample-group"],
            // What an RFC 7662 introspection response carries besides the JWT claims above.
            "active": true, "client_id": "sample-client", "scope": "openid sample", "token_type": "Bearer",
            "username": "sample",
        });
        let user = serde_json::json!({"username": "sample", "uid": "", "groups": [], "extra": {}});
        let (serde_json::Value::Object(claims), serde_json::Value::Object(user)) = (claims, user) else {
            unreachable!("both are object literals")
        };
        ExprCheck { cel, claims, user }
    }

    fn check(&self, field: &str, source: &str, expect: Expect, p: &mut impl FnMut(String, &str)) {
        self.check_with(field, source, "claims", expect, p)
    }

    fn check_with(&self, field: &str, source: &str, variable: &str, expect: Expect, p: &mut impl FnMut(String, &str)) {
        if source.trim().is_empty() {
            p(field.to_string(), "is required");
            return;
        }
        let expression = match self.cel.compile(source) {
            Ok(e) => e,
            Err(e) => return p(field.to_string(), &e),
        };
        let sample = if variable == "user" { &self.user } else { &self.claims };
        let Ok(value) = self.cel.evaluate(&expression, variable, sample) else { return };
        use serde_json::Value::{Array, Bool, Null, String as Str};
        let fits = match (expect, &value) {
            (Expect::Bool, Bool(_)) | (Expect::String, Str(_)) | (Expect::Strings, Str(_) | Null) => true,
            (Expect::Strings, Array(items)) => items.iter().all(|v| v.is_string()),
            _ => false,
        };
        if !fits {
            let want = match expect {
                Expect::Bool => "must evaluate to a bool",
                Expect::String => "must evaluate to a string",
                Expect::Strings => "must evaluate to a string, a list of strings or null",
            };
            p(field.to_string(), want);
        }
    }
}

/// Kubernetes' syntactic rule: a username expression that uses `claims.email` must be
/// accompanied by a reference to `claims.email_verified` somewhere in the entry's expressions.
fn check_email_verified_reference(
    cel: &crate::cel::Cel,
    a: &JwtAuthenticator,
    field: &str,
    p: &mut impl FnMut(String, &str),
) {
    let Some(username) = a.claim_mappings.username.as_ref().and_then(|u| u.expression.as_deref()) else { return };
    let Ok(compiled) = cel.compile(username) else { return };
    if !compiled.references_claim("email") {
        return;
    }
    let others = a
        .claim_mappings
        .extra
        .iter()
        .flatten()
        .filter_map(|e| e.value_expression.as_deref())
        .chain(a.claim_validation_rules.iter().flatten().filter_map(|r| r.expression.as_deref()));
    let verified = std::iter::once(username)
        .chain(others)
        .filter_map(|e| cel.compile(e).ok())
        .any(|e| e.references_claim("email_verified"));
    if !verified {
        p(
            field.to_string(),
            "uses claims.email, so claims.email_verified must be checked too (for example a claimValidationRules expression claims.?email_verified.orValue(true) == true)",
        );
    }
}

fn check_prefixed(
    x: &ExprCheck<'_>,
    field: &str,
    m: &PrefixedClaimOrExpression,
    required: bool,
    expect: Expect,
    p: &mut impl FnMut(String, &str),
) {
    if let Some(e) = &m.expression {
        if m.claim.is_some() {
            p(field.to_string(), "set claim or expression, not both");
        } else if m.prefix.is_some() {
            p(format!("{field}.prefix"), "is not allowed with expression");
        } else {
            x.check(&format!("{field}.expression"), e, expect, p);
        }
        return;
    }
    match m.claim.as_deref() {
        None | Some("") if required => p(format!("{field}.claim"), "is required"),
        None | Some("") => p(format!("{field}.claim"), "is required when this mapping is set"),
        Some(_) => match m.prefix.as_deref() {
            None => p(format!("{field}.prefix"), "is required when claim is set (use \"\" for no prefix)"),
            Some(prefix) if prefix.to_ascii_lowercase().starts_with("system:") => {
                p(format!("{field}.prefix"), "must not start with system: (reserved for Kubernetes identities)")
            }
            Some(_) => {}
        },
    }
}

/// Kubernetes' rules for `claimValidationRules` (section 2.10 of the spec).
fn check_claim_rules(x: &ExprCheck<'_>, field: &str, rules: &[ClaimValidationRule], p: &mut impl FnMut(String, &str)) {
    let (mut claims, mut expressions) = (HashSet::new(), HashSet::new());
    for (j, r) in rules.iter().enumerate() {
        let at = format!("{field}[{j}]");
        match (&r.claim, &r.expression) {
            (Some(_), Some(_)) | (None, None) => p(at, "set exactly one of claim and expression"),
            (Some(c), None) => {
                if c.is_empty() {
                    p(format!("{at}.claim"), "must not be empty");
                }
                if r.message.is_some() {
                    p(format!("{at}.message"), "is only allowed with expression");
                }
                if !claims.insert(c.as_str()) {
                    p(format!("{at}.claim"), "duplicate claim");
                }
            }
            (None, Some(e)) => {
                if r.required_value.is_some() {
                    p(format!("{at}.requiredValue"), "is not allowed with expression");
                }
                if !expressions.insert(e.as_str()) {
                    p(format!("{at}.expression"), "duplicate expression");
                }
                x.check(&format!("{at}.expression"), e, Expect::Bool, p);
            }
        }
    }
}

/// Kubernetes' rules for `userValidationRules`.
fn check_user_rules(x: &ExprCheck<'_>, field: &str, rules: &[UserValidationRule], p: &mut impl FnMut(String, &str)) {
    let mut seen = HashSet::new();
    for (j, r) in rules.iter().enumerate() {
        let at = format!("{field}[{j}].expression");
        match r.expression.as_deref() {
            None | Some("") => p(at, "is required"),
            Some(e) if !seen.insert(e) => p(at, "duplicate expression"),
            Some(e) => x.check_with(&at, e, "user", Expect::Bool, p),
        }
    }
}

/// Kubernetes' rules for `claimMappings.extra`.
fn check_extra(x: &ExprCheck<'_>, field: &str, extra: &[ExtraMapping], p: &mut impl FnMut(String, &str)) {
    let mut keys = HashSet::new();
    for (j, e) in extra.iter().enumerate() {
        let at = format!("{field}[{j}]");
        match e.key.as_deref() {
            None | Some("") => p(format!("{at}.key"), "is required"),
            Some(key) => {
                if let Err(msg) = check_extra_key(key) {
                    p(format!("{at}.key"), msg);
                }
                if !keys.insert(key) {
                    p(format!("{at}.key"), "duplicate key");
                }
            }
        }
        match e.value_expression.as_deref() {
            None | Some("") => p(format!("{at}.valueExpression"), "is required"),
            Some(e) => x.check(&format!("{at}.valueExpression"), e, Expect::Strings, p),
        }
    }
}

/// A domain-prefixed path (`example.com/team`), lower case, outside Kubernetes' own domains.
fn check_extra_key(key: &str) -> Result<(), &'static str> {
    if key != key.to_ascii_lowercase() {
        return Err("must be lower case");
    }
    let Some((domain, _path)) = key.split_once('/') else {
        return Err("must be domain-prefixed, such as example.com/team");
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.len() > 253 || !domain.split('.').all(label_ok) {
        return Err("must start with a DNS subdomain, such as example.com/team");
    }
    for reserved in ["kubernetes.io", "k8s.io"] {
        if domain == reserved || domain.ends_with(&format!(".{reserved}")) {
            return Err("must not use the kubernetes.io or k8s.io domains");
        }
    }
    Ok(())
}

/// Loads a verbatim Kubernetes `AuthenticationConfiguration`: strict (unknown or duplicate
/// fields are errors), any of its three API versions, `anonymous` accepted and ignored.
pub fn load_authentication_configuration(path: &Path) -> Result<AuthenticationConfiguration, ConfigError> {
    let load_err = |message: String| ConfigError::Load { path: path.display().to_string(), message };
    if !path.is_file() {
        return Err(load_err("no such file (authenticationConfigFile)".into()));
    }
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Yaml))
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    let found = unknown_keys::deserialize_all::<AuthenticationConfiguration>(built.cache, ENV_PREFIX);
    let doc = match found.value {
        Some(doc) if found.unknown.is_empty() => doc,
        _ if found.unknown.is_empty() => return Err(load_err(found.other.unwrap_or_default())),
        _ => return Err(load_err(found.unknown.into_iter().chain(found.other).collect::<Vec<_>>().join("; "))),
    };
    const VERSIONS: [&str; 3] =
        ["apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1beta1", "apiserver.config.k8s.io/v1alpha1"];
    if !VERSIONS.contains(&doc.api_version.as_str()) {
        return Err(load_err(format!("apiVersion must be one of {}", VERSIONS.join(", "))));
    }
    if doc.kind != "AuthenticationConfiguration" {
        return Err(load_err("kind must be AuthenticationConfiguration".into()));
    }
    if let Some(anonymous) = &doc.anonymous {
        if !anonymous.enabled && !anonymous.conditions.is_empty() {
            return Err(load_err("anonymous.conditions: not allowed when anonymous.enabled is false".into()));
        }
        tracing::info!(path = %path.display(), "the anonymous block only concerns kube-apiserver; ignored");
    }
    Ok(doc)
}

/// Kubernetes' rules for `issuer.url` and `discoveryURL`: https, no userinfo, query or fragment.
/// `http` only on a loopback host and only with the issuer's `allowLoopbackHTTP` (tests, dev stacks).
fn check_issuer_url(s: &str, allow_loopback_http: bool) -> Result<(), &'static str> {
    let u = url::Url::parse(s).map_err(|_| "must be a valid URL")?;
    match u.scheme() {
        "https" => {}
        "http" if allow_loopback_http && is_loopback(&u) => {}
        "http" if allow_loopback_http => return Err("http is only allowed for a loopback host"),
        _ => return Err("must use https"),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not contain a user name or password");
    }
    if u.query().is_some() {
        return Err("must not contain a query");
    }
    if u.fragment().is_some() {
        return Err("must not contain a fragment");
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("must contain a host");
    }
    Ok(())
}

/// `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_yaml(yaml: &str) -> Result<Settings, ConfigError> {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
        Settings::load(f.path())
    }

    fn problems(yaml: &str) -> String {
        match load_yaml(yaml) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("config was accepted:\n{yaml}"),
        }
    }

    const MINIMAL: &str = r#"
jwt:
  - issuer:
      url: https://idp.example.com
      audiences: [kubernetes]
    claimMappings:
      username: {claim: email, prefix: ""}
      groups: {claim: groups, prefix: "oidc:"}
"#;

    #[test]
    fn the_contracts_smallest_file_loads_with_defaults() {
        let s = load_yaml(MINIMAL).unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:8443");
        assert_eq!(s.server.max_body_bytes, 131072);
        assert_eq!(s.jwt.len(), 1);
        let m = &s.jwt[0].claim_mappings;
        assert_eq!(m.username.as_ref().unwrap().claim.as_deref(), Some("email"));
        assert_eq!(m.groups.as_ref().unwrap().prefix.as_deref(), Some("oidc:"));
    }

    #[test]
    fn unknown_fields_are_errors_that_name_the_field() {
        let e = problems("server:\n  lisen: 0.0.0.0:1\n");
        assert!(e.contains("lisen"), "{e}");
        let e = problems(&MINIMAL.replace("audiences:", "audience:"));
        assert!(e.contains("audience"), "{e}");
    }

    #[test]
    fn issuer_url_rules_follow_kubernetes() {
        for (url, want) in [
            ("http://idp.example.com", "must use https"),
            ("https://user@idp.example.com", "user name"),
            ("https://idp.example.com?x=1", "query"),
            ("https://idp.example.com#f", "fragment"),
            ("not a url", "valid URL"),
        ] {
            let e = problems(&MINIMAL.replace("https://idp.example.com", url));
            assert!(e.contains("jwt[0].issuer.url") && e.contains(want), "{url}: {e}");
        }
    }

    #[test]
    fn http_issuers_need_the_loopback_flag_and_a_loopback_host() {
        let http = MINIMAL.replace("https://idp.example.com", "http://127.0.0.1:5556");
        assert!(problems(&http).contains("jwt[0].issuer.url: must use https"));
        let flagged = format!("{http}    allowLoopbackHTTP: true\n");
        assert!(load_yaml(&flagged).is_ok());
        let remote = format!("{MINIMAL}    allowLoopbackHTTP: true\n").replace("https://", "http://");
        assert!(problems(&remote).contains("http is only allowed for a loopback host"));
    }

    #[test]
    fn key_refresh_bounds_must_be_consistent() {
        let e = problems(&format!(
            "keys:\n  minRefreshSeconds: 600\n  maxRefreshSeconds: 60\n  unknownKidCooldownSeconds: 0\n{MINIMAL}"
        ));
        assert!(e.contains("keys.maxRefreshSeconds: must not be less than keys.minRefreshSeconds"), "{e}");
        assert!(e.contains("keys.unknownKidCooldownSeconds: must be greater than 0"), "{e}");
    }

    #[test]
    fn audience_rules_follow_kubernetes() {
        let e = problems(&MINIMAL.replace("[kubernetes]", "[]"));
        assert!(e.contains("jwt[0].issuer.audiences: at least one"), "{e}");
        let e = problems(&MINIMAL.replace("[kubernetes]", "[a, b]"));
        assert!(e.contains("jwt[0].issuer.audienceMatchPolicy: must be MatchAny"), "{e}");
        let e = problems(&MINIMAL.replace("[kubernetes]", "[a, a]\n      audienceMatchPolicy: MatchAny"));
        assert!(e.contains("duplicate audience"), "{e}");
        let e = problems(&MINIMAL.replace("[kubernetes]", "[a]\n      audienceMatchPolicy: MatchAll"));
        assert!(e.contains("only supported value is MatchAny"), "{e}");
        assert!(load_yaml(&MINIMAL.replace("[kubernetes]", "[a, b]\n      audienceMatchPolicy: MatchAny")).is_ok());
    }

    #[test]
    fn mapping_rules_are_checked_with_the_field_named() {
        let e = problems(&MINIMAL.replace("{claim: email, prefix: \"\"}", "{claim: email}"));
        assert!(e.contains("jwt[0].claimMappings.username.prefix: is required"), "{e}");
        let e = problems(&MINIMAL.replace("prefix: \"oidc:\"", "prefix: \"System:\""));
        assert!(e.contains("jwt[0].claimMappings.groups.prefix: must not start with system:"), "{e}");
        let ok = MINIMAL.replace("{claim: email, prefix: \"\"}", "{expression: \"'oidc:' + claims.sub\"}");
        assert!(load_yaml(&ok).is_ok());
        let e = problems(&MINIMAL.replace("{claim: email, prefix: \"\"}", "{expression: claims.email_verified}"));
        assert!(e.contains("jwt[0].claimMappings.username.expression: must evaluate to a string"), "{e}");
        let e = problems(&MINIMAL.replace("{claim: email, prefix: \"\"}", "{expression: 'claims.sub +'}"));
        assert!(e.contains("jwt[0].claimMappings.username.expression: does not compile"), "{e}");
        let e = problems(&MINIMAL.replace("claim: groups, prefix: \"oidc:\"", "expression: '1 + 1'"));
        assert!(
            e.contains("jwt[0].claimMappings.groups.expression: must evaluate to a string, a list of strings or null"),
            "{e}"
        );
        let e = problems(&MINIMAL.replace("      username: {claim: email, prefix: \"\"}\n", ""));
        assert!(e.contains("jwt[0].claimMappings.username: is required"), "{e}");
        let ok = format!("{MINIMAL}    claimValidationRules:\n      - claim: hd\n        requiredValue: example.com\n");
        assert_eq!(load_yaml(&ok).unwrap().jwt[0].claim_validation_rules.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn duplicate_issuers_bad_ca_and_unknown_algorithms_are_refused() {
        let two = format!("{MINIMAL}{}", MINIMAL.trim_start_matches("\njwt:\n"));
        assert!(problems(&two).contains("jwt[1].issuer.url: duplicate issuer URL"));
        let e = problems(&MINIMAL.replace("[kubernetes]", "[kubernetes]\n      certificateAuthority: not a pem"));
        assert!(e.contains("jwt[0].issuer.certificateAuthority"), "{e}");
        let e = problems(&format!("{MINIMAL}    algorithms: [HS256]\n"));
        assert!(e.contains("jwt[0].algorithms: unsupported algorithm \"HS256\""), "{e}");
    }

    fn rules(yaml_rules: &str) -> String {
        problems(&format!("{MINIMAL}    claimValidationRules:\n{yaml_rules}"))
    }

    #[test]
    fn claim_validation_rules_follow_kubernetes() {
        let cases = [
            (
                "      - {claim: hd, expression: 'true'}\n",
                "claimValidationRules[0]: set exactly one of claim and expression",
            ),
            ("      - {message: m}\n", "claimValidationRules[0]: set exactly one of claim and expression"),
            ("      - {claim: hd, message: m}\n", "claimValidationRules[0].message: is only allowed with expression"),
            (
                "      - {expression: 'true', requiredValue: x}\n",
                "claimValidationRules[0].requiredValue: is not allowed with expression",
            ),
            ("      - {claim: hd}\n      - {claim: hd}\n", "claimValidationRules[1].claim: duplicate claim"),
            (
                "      - {expression: 'true'}\n      - {expression: 'true'}\n",
                "claimValidationRules[1].expression: duplicate expression",
            ),
            ("      - {expression: claims.sub}\n", "claimValidationRules[0].expression: must evaluate to a bool"),
            ("      - {expression: 'claims.sub =='}\n", "claimValidationRules[0].expression: does not compile"),
        ];
        for (yaml, want) in cases {
            let e = rules(yaml);
            assert!(e.contains(&format!("jwt[0].{want}")), "{yaml}: {e}");
        }
    }

    #[test]
    fn an_email_username_expression_needs_email_verified_checked_somewhere() {
        let username = "{expression: claims.email}";
        let e = problems(&MINIMAL.replace("{claim: email, prefix: \"\"}", username));
        assert!(e.contains("jwt[0].claimMappings.username.expression: uses claims.email"), "{e}");
        let with_rule = format!(
            "{}    claimValidationRules:\n      - expression: claims.?email_verified.orValue(true) == true\n",
            MINIMAL.replace("{claim: email, prefix: \"\"}", username)
        );
        assert!(load_yaml(&with_rule).is_ok());
        let inline = "{expression: \"claims.email_verified ? claims.email : ''\"}";
        assert!(load_yaml(&MINIMAL.replace("{claim: email, prefix: \"\"}", inline)).is_ok());
    }

    #[test]
    fn user_validation_rules_must_be_bools_over_user() {
        let ok = format!(
            "{MINIMAL}    userValidationRules:\n      - expression: \"!user.username.startsWith('system:')\"\n"
        );
        assert!(load_yaml(&ok).is_ok());
        let e = problems(&format!("{MINIMAL}    userValidationRules:\n      - expression: user.username\n"));
        assert!(e.contains("jwt[0].userValidationRules[0].expression: must evaluate to a bool"), "{e}");
    }

    #[test]
    fn claim_and_expression_together_or_prefix_with_expression_are_refused() {
        let e = problems(&MINIMAL.replace("{claim: email, prefix: \"\"}", "{claim: email, expression: claims.email}"));
        assert!(e.contains("jwt[0].claimMappings.username: set claim or expression, not both"), "{e}");
        let e = problems(&MINIMAL.replace("{claim: email, prefix: \"\"}", "{expression: claims.sub, prefix: x}"));
        assert!(e.contains("jwt[0].claimMappings.username.prefix: is not allowed with expression"), "{e}");
        let e = problems(&format!("{MINIMAL}      uid: {{claim: sub, expression: claims.sub}}\n"));
        assert!(e.contains("jwt[0].claimMappings.uid: set claim or expression, not both"), "{e}");
    }

    #[test]
    fn extra_keys_follow_kubernetes() {
        let extra = |key: &str| {
            problems(&format!("{MINIMAL}      extra:\n        - {{key: '{key}', valueExpression: claims.x}}\n"))
        };
        for (key, want) in [
            ("Example.com/x", "must be lower case"),
            ("team", "must be domain-prefixed"),
            ("-bad.com/x", "must start with a DNS subdomain"),
            ("kubernetes.io/x", "must not use the kubernetes.io or k8s.io domains"),
            ("sub.k8s.io/x", "must not use the kubernetes.io or k8s.io domains"),
        ] {
            let e = extra(key);
            assert!(e.contains(&format!("jwt[0].claimMappings.extra[0].key: {want}")), "{key}: {e}");
        }
        for fine in ["example.com/team", "ak8s.io/x", "bkubernetes.io/x"] {
            let yaml = format!("{MINIMAL}      extra:\n        - {{key: '{fine}', valueExpression: claims.sub}}\n");
            assert!(load_yaml(&yaml).is_ok(), "{fine}");
        }
        let e = problems(&format!("{MINIMAL}      extra:\n        - {{key: example.com/a}}\n"));
        assert!(e.contains("jwt[0].claimMappings.extra[0].valueExpression: is required"), "{e}");
    }

    #[test]
    fn group_rules_are_validated_with_the_field_named() {
        let e = problems(&format!(
            "{MINIMAL}    groupRules:\n      allow: ['(unclosed']\n      deny: ['ok', '[z-a]']\n      maxGroups: 0\n      rename: {{a: ''}}\n"
        ));
        for want in [
            "jwt[0].groupRules.allow[0]: is not a valid regular expression",
            "jwt[0].groupRules.deny[1]: is not a valid regular expression",
            "jwt[0].groupRules.maxGroups: must be greater than 0",
            "jwt[0].groupRules.rename: names must be non-empty",
        ] {
            assert!(e.contains(want), "missing {want} in {e}");
        }
        let ok =
            format!("{MINIMAL}    groupRules:\n      rename: {{k8s-admins: cluster-admins}}\n      deny: ['^tmp-']\n");
        assert!(load_yaml(&ok).is_ok());
    }

    const INTROSPECTION: &str = r#"
introspection:
  - name: hydra
    url: https://hydra.example.com/admin/oauth2/introspect
    clientAuthentication: {clientID: gateway, clientSecretEnv: HYDRA_SECRET}
    opaqueTokens: {prefix: "ory_at_"}
    claimMappings:
      username: {claim: sub, prefix: "hydra:"}
"#;

    #[test]
    fn an_introspection_entry_loads_with_its_defaults() {
        let s = load_yaml(INTROSPECTION).unwrap();
        let e = &s.introspection[0];
        assert_eq!((e.cache_max_seconds, e.max_requests_per_second, e.burst), (60, 50, 100));
        assert_eq!((e.connect_timeout_seconds, e.request_timeout_seconds, e.max_response_bytes), (5, 5, 65536));
        assert_eq!(e.client_authentication.method, "client_secret_basic");
        assert!(!e.require_exp && e.token_types.is_empty() && e.audiences.is_empty());
    }

    #[test]
    fn introspection_entries_are_validated_with_the_field_named() {
        let bad = INTROSPECTION
            .replace("https://hydra.example.com", "http://hydra.example.com")
            .replace(
                "clientSecretEnv: HYDRA_SECRET",
                "clientSecretEnv: A, clientSecretFile: /b, method: private_key_jwt",
            )
            .replace("prefix: \"ory_at_\"", "prefix: x, pattern: '(unclosed'")
            .replace("prefix: \"hydra:\"", "prefix: \"hydra:\"}\n      groups: {expression: 'claims.scope.size()'");
        let e = problems(&format!("{bad}    cacheMaxSeconds: 0\n    requestTimeoutSeconds: 20\n"));
        for want in [
            "introspection[0].url: must use https",
            "introspection[0].clientAuthentication.method: must be client_secret_basic or client_secret_post",
            "introspection[0].clientAuthentication: set exactly one of clientSecretFile and clientSecretEnv",
            "introspection[0].opaqueTokens.pattern: is not a valid regular expression",
            "introspection[0].claimMappings.groups.expression",
            "introspection[0].cacheMaxSeconds: must be greater than 0",
            "introspection[0].requestTimeoutSeconds: must be less than server.reviewTimeoutSeconds",
        ] {
            assert!(e.contains(want), "missing {want} in {e}");
        }
        let twice = format!("{INTROSPECTION}{}", INTROSPECTION.replace("introspection:\n", ""));
        let e = problems(&twice);
        assert!(e.contains("introspection[1].name: duplicate name"), "{e}");
        assert!(e.contains("introspection[1].opaqueTokens.prefix: another entry already takes"), "{e}");
        let unrouted = INTROSPECTION.replace("    opaqueTokens: {prefix: \"ory_at_\"}\n", "");
        let e = problems(&unrouted);
        assert!(e.contains("introspection[0].opaqueTokens: is required unless a jwt entry's introspect"), "{e}");
    }

    #[test]
    fn introspect_and_user_info_on_a_jwt_entry_are_checked() {
        let e = problems(&format!("{MINIMAL}    introspect: nowhere\n    userInfo: {{groupsClaim: ''}}\n"));
        assert!(e.contains("jwt[0].introspect: names no introspection entry"), "{e}");
        assert!(e.contains("jwt[0].userInfo.groupsClaim: must not be empty"), "{e}");
        let revocation = INTROSPECTION.replace("    opaqueTokens: {prefix: \"ory_at_\"}\n", "");
        let ok = format!("{MINIMAL}    introspect: hydra\n    userInfo: {{}}\n{revocation}");
        let s = load_yaml(&ok).unwrap();
        assert_eq!(s.jwt[0].introspect.as_deref(), Some("hydra"));
    }

    #[test]
    fn a_service_account_issuer_cannot_be_a_jwt_issuer() {
        let e = problems(&format!("serviceAccountIssuers: [https://idp.example.com]\n{MINIMAL}"));
        assert!(e.contains("jwt[0].issuer.url: must not be a service-account issuer of the cluster"), "{e}");
        let e = problems(&MINIMAL.replace("https://idp.example.com", "https://kubernetes.default.svc"));
        assert!(e.contains("must not be a service-account issuer"), "{e}");
    }

    #[test]
    fn duplicate_keys_in_the_file_are_errors() {
        let e = problems("server:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n");
        assert!(e.contains("duplicated key"), "{e}");
    }

    const K8S_FILE: &str = r#"apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions: [{path: /livez}]
jwt:
  - issuer:
      url: https://k8s-file.example.com
      audiences: [a, b]
      audienceMatchPolicy: MatchAny
    claimValidationRules:
      - claim: hd
        requiredValue: example.com
    claimMappings:
      username: {claim: sub, prefix: "k:"}
"#;

    fn with_k8s_file(k8s: &str, main: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("authn.yaml"), k8s).unwrap();
        let main_path = dir.path().join("gateway.yaml");
        std::fs::write(&main_path, format!("authenticationConfigFile: authn.yaml\n{main}")).unwrap();
        Settings::load(&main_path)
    }

    #[test]
    fn a_verbatim_kubernetes_file_adds_its_jwt_entries() {
        for version in ["v1", "v1beta1", "v1alpha1"] {
            let k8s = K8S_FILE.replace("k8s.io/v1\n", &format!("k8s.io/{version}\n"));
            let s = with_k8s_file(&k8s, MINIMAL).unwrap_or_else(|e| panic!("{version}: {e}"));
            let urls: Vec<&str> = s.jwt.iter().map(|a| a.issuer.url.as_str()).collect();
            assert_eq!(urls, vec!["https://idp.example.com", "https://k8s-file.example.com"]);
            assert_eq!(s.sources.files.len(), 2);
        }
    }

    #[test]
    fn a_kubernetes_file_is_strict_and_names_its_own_entries_in_errors() {
        let e = with_k8s_file(&K8S_FILE.replace("audienceMatchPolicy", "audienceMatchPolicyy"), "").unwrap_err();
        assert!(e.to_string().contains("audienceMatchPolicyy"), "{e}");
        let e = with_k8s_file(&format!("{K8S_FILE}    algorithms: [RS256]\n"), "").unwrap_err();
        assert!(e.to_string().contains("algorithms"), "gateway extensions are not Kubernetes fields: {e}");
        let e = with_k8s_file(&K8S_FILE.replace("k8s.io/v1\n", "k8s.io/v2\n"), "").unwrap_err();
        assert!(e.to_string().contains("apiVersion must be one of"), "{e}");
        let e = with_k8s_file(&K8S_FILE.replace("[a, b]", "[]"), "").unwrap_err();
        assert!(e.to_string().contains("authenticationConfigFile jwt[0].issuer.audiences"), "{e}");
        let e = with_k8s_file(&K8S_FILE.replace("enabled: true", "enabled: false"), "").unwrap_err();
        assert!(e.to_string().contains("anonymous.conditions"), "{e}");
        let dup = MINIMAL.replace("https://idp.example.com", "https://k8s-file.example.com");
        let e = with_k8s_file(K8S_FILE, &dup).unwrap_err();
        assert!(e.to_string().contains("authenticationConfigFile jwt[0].issuer.url: duplicate issuer URL"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = problems(
            "server:\n  listen: nowhere\njwt:\n  - issuer: {url: http://x, audiences: []}\n    claimMappings: {}\n",
        );
        for want in ["server.listen", "jwt[0].issuer.url", "jwt[0].issuer.audiences", "jwt[0].claimMappings.username"] {
            assert!(e.contains(want), "missing {want} in {e}");
        }
    }

    #[test]
    fn environment_variables_override_file_values() {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(MINIMAL.as_bytes()).unwrap();
        let env = [
            ("TOKENREVIEW_GATEWAY__SERVER__MAX_BODY_BYTES", "4096"),
            ("TOKENREVIEW_GATEWAY__SERVER__MAX_TOKEN_BYTES", "2048"),
            ("TOKENREVIEW_GATEWAY__LOGGING__FORMAT", "json"),
            ("TOKENREVIEW_GATEWAY_CONFIG", "ignored: single underscore is the CLI's variable"),
        ];
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let s = Settings::load_with_env(f.path(), Some(env)).unwrap();
        assert_eq!(s.server.max_body_bytes, 4096);
        assert_eq!(s.server.max_token_bytes, 2048);
        assert_eq!(s.logging.format, LogFormat::Json);
        assert_eq!(s.jwt[0].issuer.url, "https://idp.example.com");
    }

    #[test]
    fn an_unknown_environment_override_is_an_error() {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(MINIMAL.as_bytes()).unwrap();
        let env = [("TOKENREVIEW_GATEWAY__SERVER__LISTEN_ADRESS".to_string(), "x".to_string())];
        let e = Settings::load_with_env(f.path(), Some(env.into_iter().collect())).unwrap_err();
        assert!(e.to_string().contains("listenAdress"), "{e}");
    }

    #[test]
    fn the_client_ca_file_is_read_as_documented_and_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "PEM").unwrap();
            path.display().to_string()
        };
        let (cert, key, ca) = (file("tls.crt"), file("tls.key"), file("client-ca.crt"));
        let tls = format!("server:\n  tls:\n    certFile: {cert}\n    keyFile: {key}\n");
        let documented = dir.path().join("documented.yaml");
        std::fs::write(&documented, format!("{tls}    clientCAFile: {ca}\n{MINIMAL}")).unwrap();
        let s = Settings::load_with_env(&documented, Some(config::Map::new())).unwrap();
        assert_eq!(s.server.tls.unwrap().client_ca_file.as_deref(), Some(ca.as_str()));

        let from_env = dir.path().join("env.yaml");
        std::fs::write(&from_env, format!("{tls}{MINIMAL}")).unwrap();
        let env = [("TOKENREVIEW_GATEWAY__SERVER__TLS__CLIENT_CA_FILE".to_string(), ca.clone())];
        let s = Settings::load_with_env(&from_env, Some(env.into_iter().collect())).unwrap();
        assert_eq!(s.server.tls.unwrap().client_ca_file.as_deref(), Some(ca.as_str()));
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let e = Settings::load(Path::new("/nonexistent/gateway.yaml")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/gateway.yaml") && e.contains("no such file"), "{e}");
    }
}
