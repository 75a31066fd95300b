//! What a `jwt` entry and an `introspection` entry share: the issuer, claim mappings, validation
//! rules, `groupRules` and `userInfo`. Both entry files import it; it imports neither.

use serde::Deserialize;

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

/// `userInfo` of a `jwt` entry (gateway extension): when a verified token lacks its groups,
/// ask the issuer's discovered userinfo endpoint with the token itself as the bearer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserInfoSettings {
    /// The claim holding groups, in the token and in the userinfo response. Default: the
    /// claim of `claimMappings.groups` (required when groups come from an expression).
    #[serde(default)]
    pub groups_claim: Option<String>,
}
