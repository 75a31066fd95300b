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
    /// Not supported yet (CEL and required claims come with the mapping issue); refused at load.
    #[serde(default)]
    pub claim_validation_rules: Option<Vec<Value>>,
    /// How claims become username, groups and uid.
    pub claim_mappings: ClaimMappings,
    /// Not supported yet; refused at load.
    #[serde(default)]
    pub user_validation_rules: Option<Vec<Value>>,
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
    /// Not supported yet; refused at load.
    #[serde(default)]
    pub extra: Option<Vec<Value>>,
}

/// `claim` + `prefix`, or a CEL `expression` (not supported yet).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixedClaimOrExpression {
    /// Top-level claim name.
    #[serde(default)]
    pub claim: Option<String>,
    /// Required with `claim` (may be `""`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// CEL; refused at load for now.
    #[serde(default)]
    pub expression: Option<String>,
}

/// `claim`, or a CEL `expression` (not supported yet).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimOrExpression {
    /// Top-level claim name.
    #[serde(default)]
    pub claim: Option<String>,
    /// CEL; refused at load for now.
    #[serde(default)]
    pub expression: Option<String>,
}
