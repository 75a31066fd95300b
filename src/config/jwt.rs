//! A `jwt` entry: exactly the shape of a `jwt` entry of Kubernetes' `AuthenticationConfiguration`
//! (`apiserver.config.k8s.io/v1`), plus gateway extensions that never appear in a Kubernetes file.

use serde::Deserialize;
use serde_json::Value;

use super::mapping::{
    ClaimMappings, ClaimValidationRule, GroupRules, IssuerSettings, UserInfoSettings, UserValidationRule,
};

/// Algorithms accepted when an issuer does not list its own: the nine kube-apiserver's JWT
/// authenticator accepts.
pub const DEFAULT_ALGORITHMS: [&str; 9] =
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"];

/// Algorithms an operator may opt into with `algorithms:`.
pub const SUPPORTED_ALGORITHMS: [&str; 10] =
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];

/// One trusted issuer and how its tokens map to Kubernetes identities.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtAuthenticator {
    /// Where tokens come from and who they must be for.
    pub issuer: IssuerSettings,
    /// Conditions on claims: `claim` + `requiredValue`, or a CEL `expression` (+ `message`).
    #[serde(default)]
    pub claim_validation_rules: Option<Vec<ClaimValidationRule>>,
    /// How claims become username, groups and uid.
    pub claim_mappings: ClaimMappings,
    /// CEL conditions over the mapped `user` that must hold.
    #[serde(default)]
    pub user_validation_rules: Option<Vec<UserValidationRule>>,
    /// Gateway extension: accepted signature algorithms. Default: RS256/384/512, PS256/384/512,
    /// ES256/384/512. `EdDSA` is opt-in. HS* and `none` are never accepted.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Gateway extension: clock skew tolerated on `exp` and `nbf`, in seconds (default 60, at most 300).
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    /// Gateway extension: hosts besides the issuer's own that may serve its JWKS (Google's keys live
    /// on www.googleapis.com). Discovery naming any other `jwks_uri` host is refused.
    #[serde(default)]
    pub jwks_hosts: Vec<String>,
    /// Gateway extension, for tests and local stacks only: allow `http://` issuer, discovery and
    /// JWKS URLs on a loopback host. Logged loudly at load.
    #[serde(default, rename = "allowLoopbackHTTP")]
    pub allow_loopback_http: bool,
    /// Gateway extension: declarative rules for the groups claim, for the common cases that would
    /// otherwise need CEL.
    #[serde(default)]
    pub group_rules: Option<GroupRules>,
    /// Gateway extension: the `name` of an `introspection` entry that must also report this
    /// issuer's verified tokens active (revocation checks). JWTs are never introspected
    /// otherwise, and never when they fail their own checks.
    #[serde(default)]
    pub introspect: Option<String>,
    /// Gateway extension: fetch groups from the issuer's userinfo endpoint when a verified token
    /// does not carry them.
    #[serde(default)]
    pub user_info: Option<UserInfoSettings>,
    /// Gateway extension: the header `typ` values this issuer's tokens may carry, compared as
    /// media types (`at+jwt` matches `application/at+JWT`); `""` admits a token without `typ`.
    /// Unset: any. For an issuer whose ID tokens and RFC 9068 access tokens share a key.
    #[serde(default)]
    pub header_types: Option<Vec<String>>,
    /// Gateway extension: the longest lifetime (`exp - iat`) a token may have, in seconds. With
    /// it set, a token without `iat`, or with `iat` later than now plus `clockSkewSeconds`, is
    /// rejected. Unset: no limit beyond `exp`.
    #[serde(default)]
    pub max_lifetime_seconds: Option<u64>,
}
/// A `jwt` entry as it appears in a Kubernetes `AuthenticationConfiguration` file: the same
/// fields, none of the gateway extensions (an extension in such a file is an unknown field).
///
/// NB: this repeats [`JwtAuthenticator`]'s Kubernetes fields instead of being `#[serde(flatten)]`ed
/// into it, because serde ignores `deny_unknown_fields` on a struct that flattens another, and
/// strictness is the point of both types.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesJwtAuthenticator {
    /// As in [`JwtAuthenticator`].
    pub issuer: IssuerSettings,
    /// As in [`JwtAuthenticator`].
    #[serde(default)]
    pub claim_validation_rules: Option<Vec<ClaimValidationRule>>,
    /// As in [`JwtAuthenticator`].
    pub claim_mappings: ClaimMappings,
    /// As in [`JwtAuthenticator`].
    #[serde(default)]
    pub user_validation_rules: Option<Vec<UserValidationRule>>,
}

impl From<KubernetesJwtAuthenticator> for JwtAuthenticator {
    fn from(k: KubernetesJwtAuthenticator) -> Self {
        JwtAuthenticator {
            issuer: k.issuer,
            claim_validation_rules: k.claim_validation_rules,
            claim_mappings: k.claim_mappings,
            user_validation_rules: k.user_validation_rules,
            algorithms: None,
            clock_skew_seconds: None,
            jwks_hosts: Vec::new(),
            allow_loopback_http: false,
            group_rules: None,
            introspect: None,
            user_info: None,
            header_types: None,
            max_lifetime_seconds: None,
        }
    }
}

/// A verbatim `apiserver.config.k8s.io` `AuthenticationConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationConfiguration {
    /// `apiserver.config.k8s.io/v1`, `v1beta1` or `v1alpha1`.
    pub api_version: String,
    /// `AuthenticationConfiguration`.
    pub kind: String,
    /// The JWT authenticators.
    #[serde(default)]
    pub jwt: Vec<KubernetesJwtAuthenticator>,
    /// Anonymous access to the apiserver: meaningless for a token webhook, accepted and ignored.
    #[serde(default)]
    pub anonymous: Option<AnonymousSettings>,
}

/// `anonymous` of an `AuthenticationConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnonymousSettings {
    /// Whether anonymous requests are allowed.
    #[serde(default)]
    pub enabled: bool,
    /// Paths anonymous requests may reach.
    #[serde(default)]
    pub conditions: Vec<Value>,
}
