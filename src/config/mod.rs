//! Settings: one YAML (or TOML) file plus `TOKENREVIEW_GATEWAY__SECTION__FIELD` environment
//! overrides, deserialized strictly (unknown fields are errors) and validated completely at load,
//! with every problem reported against the field that has it.
//!
//! One file per concept: the settings types per section (`settings`, `server`, `cache`, `keys`,
//! `logging`, `jwt`, `introspection`, and `mapping` for what both kinds of entry share), `load`
//! (files and environment overrides), `validate` and `validate_mapping` (every rule, with the
//! field it names), `error`. This file only re-exports, so `crate::config::X` names them all.

mod cache;
mod error;
mod introspection;
mod jwt;
mod keys;
mod load;
mod logging;
mod mapping;
mod paths;
mod server;
mod settings;
mod unknown_keys;
mod validate;
mod validate_mapping;

pub use cache::CacheSettings;
pub use error::ConfigError;
pub use introspection::{ClientAuthentication, DEFAULT_OPAQUE_TOKEN_PATTERN, IntrospectionEndpoint, OpaqueTokenRoute};
pub use jwt::{
    AnonymousSettings, AuthenticationConfiguration, DEFAULT_ALGORITHMS, JwtAuthenticator, KubernetesJwtAuthenticator,
    SUPPORTED_ALGORITHMS,
};
pub use keys::KeySettings;
pub use load::load_authentication_configuration;
pub use logging::{LogFormat, LoggingSettings};
pub use mapping::{
    ClaimMappings, ClaimOrExpression, ClaimValidationRule, ExtraMapping, GroupRules, IssuerSettings,
    PrefixedClaimOrExpression, UserInfoSettings, UserValidationRule,
};
pub use server::{CallerAuthSettings, MIN_CALLER_TOKEN_CHARS, ServerSettings, TlsSettings};
pub use settings::{MAX_JWT_AUTHENTICATORS, Settings, Sources};
pub use validate::is_loopback;
