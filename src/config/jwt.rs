//! A `jwt` entry: exactly the shape of a `jwt` entry of Kubernetes' `AuthenticationConfiguration`
//! (`apiserver.config.k8s.io/v1`), plus gateway extensions that never appear in a Kubernetes file.

use serde::Deserialize;
use serde_json::Value;

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
    /// ES256/384. `EdDSA` is opt-in. HS* and `none` are never accepted.
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
    pub user_info: Option<super::introspection::UserInfoSettings>,
    /// Gateway extension: the header `typ` values this issuer's tokens may carry, compared as
    /// media types (`at+jwt` matches `application/at+JWT`); `""` admits a token without `typ`.
    /// Unset: any. For an issuer whose ID tokens and RFC 9068 access tokens share a key.
    #[serde(default)]
    pub header_types: Option<Vec<String>>,
    /// Gateway extension: the longest lifetime (`exp - iat`) a token may have, in seconds. With
    /// it set, a token without `iat` is rejected. Unset: no limit beyond `exp`.
    #[serde(default)]
    pub max_lifetime_seconds: Option<u64>,
}

/// `groupRules` (gateway extension). Applied to each group value of the claim, in this order:
/// `rename` (the new name is used verbatim, without the prefix), then the `system:` rule, then
/// `deny`, then `allow`, then the prefix.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupRules {
    /// Exact claim value → group name, e.g. `k8s-admins: cluster-admins`.
    #[serde(default)]
    pub rename: std::collections::BTreeMap<String, String>,
    /// Regular expressions; when any are given, only groups matching one of them are kept.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Regular expressions; matching groups are dropped.
    #[serde(default)]
    pub deny: Vec<String>,
    /// A token whose groups claim holds more values than this is rejected.
    #[serde(default)]
    pub max_groups: Option<usize>,
}

/// `issuer` of a `jwt` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerSettings {
    /// Must equal the token's `iss` and the discovery document's `issuer` exactly.
    pub url: String,
    /// Fetched verbatim instead of `<url>/.well-known/openid-configuration`.
    #[serde(default, rename = "discoveryURL")]
    pub discovery_url: Option<String>,
    /// Inline PEM bundle trusted (alone) for discovery and JWKS; system roots when absent.
    #[serde(default)]
    pub certificate_authority: Option<String>,
    /// The token's `aud` must contain at least one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Only `MatchAny`; required with more than one audience.
    #[serde(default)]
    pub audience_match_policy: Option<String>,
    /// Accepted for file compatibility (`controlplane` or `cluster`); has no effect here.
    #[serde(default)]
    pub egress_selector_type: Option<String>,
}

/// `claimMappings` of a `jwt` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimMappings {
    /// Required.
    #[serde(default)]
    pub username: Option<PrefixedClaimOrExpression>,
    /// Optional.
    #[serde(default)]
    pub groups: Option<PrefixedClaimOrExpression>,
    /// Optional.
    #[serde(default)]
    pub uid: Option<ClaimOrExpression>,
    /// `key` + CEL `valueExpression` giving a string or a list of strings.
    #[serde(default)]
    pub extra: Option<Vec<ExtraMapping>>,
}

/// One `claimValidationRules` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimValidationRule {
    /// A top-level claim that must be a string equal to `requiredValue`.
    #[serde(default)]
    pub claim: Option<String>,
    /// The value `claim` must have (unset means the empty string, as in Kubernetes).
    #[serde(default)]
    pub required_value: Option<String>,
    /// A CEL condition over `claims`.
    #[serde(default)]
    pub expression: Option<String>,
    /// Why the rule failed (with `expression` only).
    #[serde(default)]
    pub message: Option<String>,
}

/// One `userValidationRules` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserValidationRule {
    /// A CEL condition over `user`.
    #[serde(default)]
    pub expression: Option<String>,
    /// Why the rule failed.
    #[serde(default)]
    pub message: Option<String>,
}

/// One `claimMappings.extra` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtraMapping {
    /// A domain-prefixed, lower-case key.
    #[serde(default)]
    pub key: Option<String>,
    /// A CEL expression giving a string or a list of strings.
    #[serde(default)]
    pub value_expression: Option<String>,
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

/// `claim` + `prefix`, or a CEL `expression`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixedClaimOrExpression {
    /// Top-level claim name.
    #[serde(default)]
    pub claim: Option<String>,
    /// Required with `claim` (may be `""`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// A CEL expression over `claims` (no prefix with it).
    #[serde(default)]
    pub expression: Option<String>,
}

/// `claim`, or a CEL `expression`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimOrExpression {
    /// Top-level claim name.
    #[serde(default)]
    pub claim: Option<String>,
    /// A CEL expression over `claims` (no prefix with it).
    #[serde(default)]
    pub expression: Option<String>,
}
