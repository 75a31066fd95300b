//! Groups a verified token does not carry, from its issuer's userinfo endpoint (OIDC Core 5.3).
//!
//! Only after the token has passed every JWT check, only for issuers that opt in with
//! `userInfo`, and only to the `userinfo_endpoint` of the configured issuer's own discovery
//! document: nothing in the token picks the URL.

use serde_json::{Map, Value};

use super::fetch::{self, FetchError, Fetched};

/// Whether the token needs its groups fetched: the claim is absent, or the provider marked an
/// overage (Entra ID's `_claim_names.groups`, or `hasgroups: true` in implicit-flow tokens).
pub fn groups_missing(claims: &Map<String, Value>, groups_claim: &str) -> bool {
    let overage = claims.get("_claim_names").and_then(Value::as_object).is_some_and(|n| n.contains_key(groups_claim))
        || claims.get("hasgroups") == Some(&Value::Bool(true));
    overage || !claims.contains_key(groups_claim)
}

/// Why the groups could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum UserInfoError {
    /// Discovery named no usable `userinfo_endpoint`.
    #[error("the issuer's discovery document names no usable userinfo_endpoint")]
    NoEndpoint,
    /// The call failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The response's `sub` is not the token's (OIDC Core 5.3.2 requires them equal).
    #[error("the userinfo response is for another subject")]
    SubjectMismatch,
    /// The groups claim is neither a string nor a list of strings.
    #[error("the userinfo response's groups claim is not a string or a list of strings")]
    InvalidGroups,
}

impl UserInfoError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            UserInfoError::NoEndpoint => "no_endpoint",
            UserInfoError::Fetch(e) => e.label(),
            UserInfoError::SubjectMismatch => "subject_mismatch",
            UserInfoError::InvalidGroups => "invalid_groups",
        }
    }
}

/// GETs the userinfo endpoint with `token` as the bearer and returns the groups claim's value
/// (an empty list when the response has none).
pub async fn fetch_groups(
    client: &reqwest::Client,
    endpoint: Option<&str>,
    token: &str,
    sub: Option<&str>,
    groups_claim: &str,
    limit: usize,
) -> Result<Value, UserInfoError> {
    let url = endpoint.ok_or(UserInfoError::NoEndpoint)?;
    let Fetched { body, .. } = fetch::send_bounded(client.get(url).bearer_auth(token), url, limit).await?;
    // Strict, as introspection and distributed claims answers: with a repeated member name,
    // which `groups` counts would depend on the parser.
    let response = super::strict_json::object(&body)
        .ok_or(FetchError::InvalidDocument { url: url.to_string(), what: "userinfo response" })?;
    groups_from_response(&response, sub, groups_claim)
}

fn groups_from_response(
    response: &Map<String, Value>,
    sub: Option<&str>,
    groups_claim: &str,
) -> Result<Value, UserInfoError> {
    if sub.is_none() || response.get("sub").and_then(Value::as_str) != sub {
        return Err(UserInfoError::SubjectMismatch);
    }
    match response.get(groups_claim) {
        None | Some(Value::Null) => Ok(Value::Array(Vec::new())),
        Some(Value::String(g)) => Ok(Value::String(g.clone())),
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => Ok(Value::Array(list.clone())),
        Some(_) => Err(UserInfoError::InvalidGroups),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn groups_are_fetched_when_absent_or_marked_as_overage() {
        assert!(groups_missing(&obj(json!({"sub": "a"})), "groups"));
        assert!(!groups_missing(&obj(json!({"sub": "a", "groups": []})), "groups"));
        let entra = json!({"sub": "a", "groups": [], "_claim_names": {"groups": "src1"}});
        assert!(groups_missing(&obj(entra), "groups"));
        assert!(groups_missing(&obj(json!({"sub": "a", "groups": ["x"], "hasgroups": true})), "groups"));
    }

    #[test]
    fn the_response_must_be_for_the_tokens_subject() {
        let r = obj(json!({"sub": "alice", "groups": ["dev"]}));
        assert_eq!(groups_from_response(&r, Some("alice"), "groups").unwrap(), json!(["dev"]));
        assert!(matches!(groups_from_response(&r, Some("mallory"), "groups"), Err(UserInfoError::SubjectMismatch)));
        assert!(matches!(groups_from_response(&r, None, "groups"), Err(UserInfoError::SubjectMismatch)));
        let no_groups = obj(json!({"sub": "alice"}));
        assert_eq!(groups_from_response(&no_groups, Some("alice"), "groups").unwrap(), json!([]));
        let bad = obj(json!({"sub": "alice", "groups": [1]}));
        assert!(matches!(groups_from_response(&bad, Some("alice"), "groups"), Err(UserInfoError::InvalidGroups)));
    }
}
