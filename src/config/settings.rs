//! The whole configuration file: one field per section.

use serde::Deserialize;

use super::cache::CacheSettings;
use super::introspection::IntrospectionEndpoint;
use super::jwt::JwtAuthenticator;
use super::keys::KeySettings;
use super::logging::LoggingSettings;
use super::server::ServerSettings;

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
