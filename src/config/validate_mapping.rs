//! Validation of the mapping half of an entry (a `jwt` entry, or an `introspection` entry's
//! mapping): Kubernetes' rules for claim and user validation rules, claim mappings and extra
//! keys, and the gateway's `groupRules`; every CEL expression compiled and dry-run.

use std::collections::HashSet;

use super::jwt::JwtAuthenticator;
use super::mapping::{ClaimValidationRule, ExtraMapping, PrefixedClaimOrExpression, UserValidationRule};

/// The mapping half of a `jwt` entry (also used for `introspection` entries): rules, mappings and
/// groupRules, each expression compiled and dry-run.
pub(super) fn check_mapping(
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
        let expression = match self.cel.compile_with(source, &[variable]) {
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

#[cfg(test)]
mod tests {
    use super::super::load::tests::{MINIMAL, load_yaml, problems};

    #[test]
    fn an_undeclared_name_in_an_expression_fails_at_load_with_its_field() {
        let e = problems(
            &MINIMAL.replace("username: {claim: email, prefix: \"\"}", "username: {expression: \"claim.sub\"}"),
        );
        assert!(
            e.contains("jwt[0].claimMappings.username.expression: uses \"claim\", which is not defined here"),
            "{e}"
        );
        let rule = format!("{MINIMAL}    userValidationRules:\n      - expression: \"claims.sub != ''\"\n");
        assert!(problems(&rule).contains("userValidationRules[0].expression: uses \"claims\""), "{}", problems(&rule));
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
}
