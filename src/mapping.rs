//! Claims to Kubernetes identity, with Kubernetes' `claim` + `prefix` semantics and our
//! reserved-name rule: a name that comes from a token claim and starts with `system:` (any case)
//! rejects the token, whatever the prefix.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::authn::Reason;
use crate::config::JwtAuthenticator;
use crate::review::UserInfo;

/// The extra key kube-apiserver's own JWT authenticator fills from `jti`.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

#[derive(Debug, Clone)]
struct PrefixedClaim {
    claim: String,
    prefix: String,
}

/// A compiled `claimMappings` block, the `claim` + `requiredValue` rules and `groupRules`.
#[derive(Debug, Clone)]
pub struct ClaimMapper {
    username: PrefixedClaim,
    groups: Option<PrefixedClaim>,
    uid: Option<String>,
    required: Vec<(String, String)>,
    group_rules: Option<CompiledGroupRules>,
}

#[derive(Debug, Clone)]
struct CompiledGroupRules {
    rename: std::collections::HashMap<String, String>,
    allow: Option<regex::RegexSet>,
    deny: Option<regex::RegexSet>,
    max_groups: Option<usize>,
}

impl CompiledGroupRules {
    fn new(rules: &crate::config::GroupRules) -> Result<Self, String> {
        let set = |patterns: &[String]| -> Result<Option<regex::RegexSet>, String> {
            if patterns.is_empty() {
                return Ok(None);
            }
            regex::RegexSet::new(patterns).map(Some).map_err(|e| format!("groupRules: {e}"))
        };
        Ok(CompiledGroupRules {
            rename: rules.rename.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            allow: set(&rules.allow)?,
            deny: set(&rules.deny)?,
            max_groups: rules.max_groups,
        })
    }
}

impl ClaimMapper {
    /// Builds the mapper from a validated `jwt` entry.
    pub fn from_settings(a: &JwtAuthenticator) -> Result<Self, String> {
        let m = &a.claim_mappings;
        let required = a
            .claim_validation_rules
            .iter()
            .flatten()
            .filter_map(|r| r.claim.clone().map(|c| (c, r.required_value.clone().unwrap_or_default())))
            .collect();
        let prefixed = |p: &crate::config::PrefixedClaimOrExpression| match (&p.claim, &p.prefix) {
            (Some(claim), Some(prefix)) => Ok(PrefixedClaim { claim: claim.clone(), prefix: prefix.clone() }),
            _ => Err("claim and prefix are required".to_string()),
        };
        Ok(ClaimMapper {
            username: prefixed(m.username.as_ref().ok_or("username mapping is required")?)?,
            groups: m.groups.as_ref().map(prefixed).transpose()?,
            uid: m.uid.as_ref().and_then(|u| u.claim.clone()),
            required,
            group_rules: a.group_rules.as_ref().map(CompiledGroupRules::new).transpose()?,
        })
    }

    /// Maps verified claims to a user, or says why the token must be rejected. The order is
    /// Kubernetes': username, groups, uid, extra, then the claim rules (it decides which
    /// error a token that breaks several gets).
    pub fn map(&self, claims: &Map<String, Value>) -> Result<UserInfo, Reason> {
        let username = self.username(claims)?;
        let groups = match &self.groups {
            None => Vec::new(),
            Some(g) => groups(claims, g, self.group_rules.as_ref())?,
        };
        let uid = match &self.uid {
            None => String::new(),
            Some(claim) => match claims.get(claim) {
                None => return Err(Reason::UidClaimMissing),
                Some(Value::String(s)) => checked(s)?.to_string(),
                Some(_) => return Err(Reason::InvalidClaim),
            },
        };
        let mut extra = BTreeMap::new();
        if let Some(Value::String(jti)) = claims.get("jti")
            && !jti.is_empty()
        {
            extra.insert(CREDENTIAL_ID_KEY.to_string(), vec![format!("JTI={}", checked(jti)?)]);
        }
        for (claim, value) in &self.required {
            // Kubernetes: the claim must be present and a string equal to the value.
            if claims.get(claim).and_then(Value::as_str) != Some(value.as_str()) {
                return Err(Reason::ClaimRuleFailed);
            }
        }
        Ok(UserInfo { username, uid, groups, extra })
    }

    fn username(&self, claims: &Map<String, Value>) -> Result<String, Reason> {
        let m = &self.username;
        let value = match claims.get(&m.claim) {
            None | Some(Value::Null) => return Err(Reason::UsernameClaimMissing),
            Some(Value::String(s)) => s,
            Some(_) => return Err(Reason::InvalidClaim),
        };
        // Kubernetes: an email username needs email_verified to be the boolean true when present.
        if m.claim == "email" {
            match claims.get("email_verified") {
                None | Some(Value::Bool(true)) => {}
                Some(_) => return Err(Reason::EmailNotVerified),
            }
        }
        if value.is_empty() {
            return Err(Reason::EmptyUsername);
        }
        let username = format!("{}{}", m.prefix, checked(value)?);
        checked(&username)?;
        Ok(username)
    }
}

fn groups(
    claims: &Map<String, Value>,
    m: &PrefixedClaim,
    rules: Option<&CompiledGroupRules>,
) -> Result<Vec<String>, Reason> {
    let raw: Vec<&str> = match claims.get(&m.claim) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_str().ok_or(Reason::InvalidGroups)).collect::<Result<_, _>>()?
        }
        Some(_) => return Err(Reason::InvalidGroups),
    };
    let Some(rules) = rules else {
        return raw.into_iter().map(|g| prefixed(&m.prefix, g)).collect();
    };
    if rules.max_groups.is_some_and(|max| raw.len() > max) {
        return Err(Reason::TooManyGroups);
    }
    let mut out = Vec::with_capacity(raw.len());
    for g in raw {
        // An operator's rename is taken verbatim: it may even grant a system: group.
        if let Some(renamed) = rules.rename.get(g) {
            out.push(renamed.clone());
            continue;
        }
        checked(g)?;
        let denied = rules.deny.as_ref().is_some_and(|d| d.is_match(g));
        let allowed = rules.allow.as_ref().is_none_or(|a| a.is_match(g));
        if allowed && !denied {
            out.push(prefixed(&m.prefix, g)?);
        }
    }
    Ok(out)
}

fn prefixed(prefix: &str, group: &str) -> Result<String, Reason> {
    let name = format!("{prefix}{}", checked(group)?);
    checked(&name)?;
    Ok(name)
}

/// Refuses reserved `system:` names and control characters (which would forge log lines and
/// confuse audit), returning the value unchanged otherwise.
fn checked(value: &str) -> Result<&str, Reason> {
    let reserved = value.len() >= 7 && value.as_bytes()[..7].eq_ignore_ascii_case(b"system:");
    if reserved {
        return Err(Reason::ReservedName);
    }
    if value.chars().any(char::is_control) {
        return Err(Reason::InvalidCharacters);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClaimMappings, ClaimValidationRule, PrefixedClaimOrExpression};
    use serde_json::json;

    fn mapper(username: (&str, &str), groups: Option<(&str, &str)>, uid: Option<&str>) -> ClaimMapper {
        mapper_with_rules(username, groups, uid, &[])
    }

    fn mapper_with_rules(
        username: (&str, &str),
        groups: Option<(&str, &str)>,
        uid: Option<&str>,
        rules: &[(&str, Option<&str>)],
    ) -> ClaimMapper {
        let p = |(c, p): (&str, &str)| PrefixedClaimOrExpression {
            claim: Some(c.into()),
            prefix: Some(p.into()),
            expression: None,
        };
        let rules = rules
            .iter()
            .map(|(c, v)| ClaimValidationRule {
                claim: Some(c.to_string()),
                required_value: v.map(str::to_string),
                expression: None,
                message: None,
            })
            .collect();
        let entry = crate::config::KubernetesJwtAuthenticator {
            issuer: crate::config::IssuerSettings {
                url: "https://idp.example.com".into(),
                discovery_url: None,
                certificate_authority: None,
                audiences: vec!["k".into()],
                audience_match_policy: None,
                egress_selector_type: None,
            },
            claim_validation_rules: Some(rules),
            claim_mappings: ClaimMappings {
                username: Some(p(username)),
                groups: groups.map(p),
                uid: uid.map(|c| crate::config::ClaimOrExpression { claim: Some(c.into()), expression: None }),
                extra: None,
            },
            user_validation_rules: None,
        };
        ClaimMapper::from_settings(&entry.into()).unwrap()
    }

    #[test]
    fn required_claims_must_be_strings_equal_to_the_value() {
        let m = mapper_with_rules(("sub", ""), None, None, &[("hd", Some("example.com")), ("tier", None)]);
        assert!(m.map(&claims(json!({"sub": "a", "hd": "example.com", "tier": ""}))).is_ok());
        for bad in [
            json!({"sub": "a", "tier": ""}),
            json!({"sub": "a", "hd": "example.org", "tier": ""}),
            json!({"sub": "a", "hd": ["example.com"], "tier": ""}),
            json!({"sub": "a", "hd": "example.com"}),
        ] {
            assert_eq!(m.map(&claims(bad.clone())).err(), Some(Reason::ClaimRuleFailed), "{bad}");
        }
    }

    fn mapper_with_group_rules(yaml: &str) -> ClaimMapper {
        let rules: crate::config::GroupRules = serde_json::from_value(serde_json::from_str(yaml).unwrap()).unwrap();
        let mut m = mapper(("sub", ""), Some(("groups", "oidc:")), None);
        m.group_rules = Some(CompiledGroupRules::new(&rules).unwrap());
        m
    }

    fn groups_of(m: &ClaimMapper, groups: Value) -> Result<Vec<String>, Reason> {
        m.map(&claims(json!({"sub": "a", "groups": groups}))).map(|u| u.groups)
    }

    #[test]
    fn group_rules_rename_deny_and_allow_in_that_order() {
        let m = mapper_with_group_rules(
            r#"{"rename": {"k8s-admins": "cluster-admins"}, "allow": ["^dev-", "^k8s-"], "deny": ["-tmp$"]}"#,
        );
        assert_eq!(
            groups_of(&m, json!(["k8s-admins", "dev-web", "dev-tmp", "sales", "k8s-viewers"])).unwrap(),
            vec!["cluster-admins", "oidc:dev-web", "oidc:k8s-viewers"]
        );
    }

    #[test]
    fn a_rename_may_grant_a_system_group_but_a_claim_may_not() {
        let m = mapper_with_group_rules(r#"{"rename": {"k8s-admins": "system:masters"}, "deny": ["^system:"]}"#);
        assert_eq!(groups_of(&m, json!(["k8s-admins"])).unwrap(), vec!["system:masters"]);
        assert_eq!(groups_of(&m, json!(["system:masters"])).err(), Some(Reason::ReservedName));
    }

    #[test]
    fn more_groups_than_max_groups_reject_the_token() {
        let m = mapper_with_group_rules(r#"{"maxGroups": 2}"#);
        assert_eq!(groups_of(&m, json!(["a", "b"])).unwrap(), vec!["oidc:a", "oidc:b"]);
        assert_eq!(groups_of(&m, json!(["a", "b", "c"])).err(), Some(Reason::TooManyGroups));
    }

    #[test]
    fn a_mapping_error_wins_over_a_failed_claim_rule() {
        let m = mapper_with_rules(("sub", ""), None, None, &[("hd", Some("example.com"))]);
        assert_eq!(m.map(&claims(json!({"hd": "other"}))).err(), Some(Reason::UsernameClaimMissing));
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn username_groups_uid_and_credential_id_are_mapped_with_prefixes() {
        let m = mapper(("sub", "oidc:"), Some(("groups", "oidc:")), Some("sub"));
        let u = m.map(&claims(json!({"sub": "alice", "groups": ["dev", "ops"], "jti": "j-1"}))).unwrap();
        assert_eq!(u.username, "oidc:alice");
        assert_eq!(u.groups, vec!["oidc:dev", "oidc:ops"]);
        assert_eq!(u.uid, "alice");
        assert_eq!(u.extra.get(CREDENTIAL_ID_KEY), Some(&vec!["JTI=j-1".to_string()]));
    }

    #[test]
    fn username_claim_missing_or_not_a_string_fails() {
        let m = mapper(("sub", ""), None, None);
        assert_eq!(m.map(&claims(json!({}))).err(), Some(Reason::UsernameClaimMissing));
        assert_eq!(m.map(&claims(json!({"sub": null}))).err(), Some(Reason::UsernameClaimMissing));
        assert_eq!(m.map(&claims(json!({"sub": 42}))).err(), Some(Reason::InvalidClaim));
        assert_eq!(m.map(&claims(json!({"sub": ["a"]}))).err(), Some(Reason::InvalidClaim));
    }

    #[test]
    fn empty_username_fails_even_with_a_prefix() {
        let m = mapper(("sub", "oidc:"), None, None);
        assert_eq!(m.map(&claims(json!({"sub": ""}))).err(), Some(Reason::EmptyUsername));
    }

    #[test]
    fn email_verified_must_be_boolean_true_when_present() {
        let m = mapper(("email", ""), None, None);
        assert_eq!(m.map(&claims(json!({"email": "a@x"}))).unwrap().username, "a@x");
        assert_eq!(m.map(&claims(json!({"email": "a@x", "email_verified": true}))).unwrap().username, "a@x");
        for bad in [json!(false), json!("true"), json!(1), json!(null)] {
            let c = claims(json!({"email": "a@x", "email_verified": bad}));
            assert_eq!(m.map(&c).err(), Some(Reason::EmailNotVerified), "{bad}");
        }
    }

    #[test]
    fn email_verified_is_not_required_for_other_username_claims() {
        let m = mapper(("sub", ""), None, None);
        assert!(m.map(&claims(json!({"sub": "a", "email_verified": false}))).is_ok());
    }

    #[test]
    fn reserved_names_from_claims_fail_whatever_the_prefix() {
        let m = mapper(("sub", "oidc:"), Some(("groups", "oidc:")), None);
        for sub in ["system:admin", "System:node:n1", "SYSTEM:serviceaccount:kube-system:x"] {
            assert_eq!(m.map(&claims(json!({"sub": sub}))).err(), Some(Reason::ReservedName), "{sub}");
        }
        for g in [json!("system:masters"), json!(["dev", "system:nodes"])] {
            assert_eq!(m.map(&claims(json!({"sub": "a", "groups": g}))).err(), Some(Reason::ReservedName));
        }
        let unprefixed = mapper(("sub", ""), Some(("groups", "")), None);
        assert_eq!(unprefixed.map(&claims(json!({"sub": "system:anonymous"}))).err(), Some(Reason::ReservedName));
    }

    #[test]
    fn a_prefix_and_value_that_spell_system_together_fail() {
        let m = mapper(("sub", "sys"), None, None);
        assert_eq!(m.map(&claims(json!({"sub": "tem:masters"}))).err(), Some(Reason::ReservedName));
    }

    #[test]
    fn groups_accept_a_string_a_list_or_nothing() {
        let m = mapper(("sub", ""), Some(("groups", "")), None);
        assert_eq!(m.map(&claims(json!({"sub": "a", "groups": "dev"}))).unwrap().groups, vec!["dev"]);
        assert!(m.map(&claims(json!({"sub": "a"}))).unwrap().groups.is_empty());
        assert!(m.map(&claims(json!({"sub": "a", "groups": null}))).unwrap().groups.is_empty());
        for bad in [json!(1), json!({"a": 1}), json!(["a", 1]), json!([["a"]])] {
            assert_eq!(m.map(&claims(json!({"sub": "a", "groups": bad}))).err(), Some(Reason::InvalidGroups));
        }
    }

    #[test]
    fn a_configured_uid_claim_must_be_present() {
        let m = mapper(("sub", ""), None, Some("oid"));
        assert_eq!(m.map(&claims(json!({"sub": "a"}))).err(), Some(Reason::UidClaimMissing));
        assert_eq!(m.map(&claims(json!({"sub": "a", "oid": 5}))).err(), Some(Reason::InvalidClaim));
    }

    #[test]
    fn control_characters_in_names_fail() {
        let m = mapper(("sub", ""), Some(("groups", "")), None);
        assert_eq!(m.map(&claims(json!({"sub": "a\nb"}))).err(), Some(Reason::InvalidCharacters));
        assert_eq!(m.map(&claims(json!({"sub": "a", "groups": ["x\u{0}"]}))).err(), Some(Reason::InvalidCharacters));
    }

    #[test]
    fn a_non_string_jti_is_ignored() {
        let m = mapper(("sub", ""), None, None);
        assert!(m.map(&claims(json!({"sub": "a", "jti": 5}))).unwrap().extra.is_empty());
    }
}
