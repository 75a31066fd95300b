//! Claims to Kubernetes identity, with Kubernetes' semantics: `claim` + `prefix` or a CEL
//! `expression` for username, groups and uid; `extra` from CEL; claim and user validation rules;
//! all in Kubernetes' order, which decides which error a token that breaks several rules gets.
//!
//! Our reserved-name rule on top: a name that comes from a token claim and starts with `system:`
//! (any case) rejects the token, whatever the prefix. Only a rule the operator wrote may produce
//! such a name: a `groupRules` rename, or an expression containing a string literal that spells
//! the reserved name out beyond `system:` itself (`'system:serviceaccount:ci:' + claims.sub`):
//! the name must start with that literal. Merely mentioning `system:` is not enough, or a
//! sanitiser such as `g.replace('system:', '')` would turn the claim `ssystem:ystem:masters`
//! into a granted `system:masters`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::cel::{Activation, Cel, Expression};
use crate::config::{JwtAuthenticator, PrefixedClaimOrExpression};
use crate::review::UserInfo;
use crate::verdict::{Reason, Trace};

/// The extra key kube-apiserver's own JWT authenticator fills from `jti`.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

struct PrefixedClaim {
    claim: String,
    prefix: String,
}

/// A mapping from a claim (with prefix) or from an expression.
enum Source {
    Claim(PrefixedClaim),
    Expression(Mapped),
}

/// An expression and the reserved names its author spelled out: string literals longer than
/// `system:` that start with it. Only names starting with one of those may be reserved names.
struct Mapped {
    expression: Expression,
    system_literals: Vec<String>,
}

impl Mapped {
    fn new(cel: &Cel, source: &str) -> Result<Mapped, String> {
        let expression = cel.compile(source)?;
        let system_literals: Vec<String> =
            string_literals(source).into_iter().filter(|l| l.len() > 7 && is_reserved(l)).collect();
        if !system_literals.is_empty() {
            tracing::warn!(expression = source, literals = ?system_literals, "a mapping expression may produce system: names");
        }
        Ok(Mapped { expression, system_literals })
    }

    fn name<'a>(&self, value: &'a str) -> Result<&'a str, Reason> {
        let spelled_out = self.system_literals.iter().any(|l| value.starts_with(l.as_str()));
        if spelled_out { no_control_characters(value) } else { checked(value) }
    }
}

/// The contents of the quoted strings in CEL source (single, double or triple quotes; an escaped
/// character is taken as written, so an escape sequence never spells a literal out).
fn string_literals(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' && c != '"' {
            continue;
        }
        let mut literal = String::new();
        while let Some(d) = chars.next() {
            match d {
                '\\' => {
                    chars.next();
                    literal.push('\u{0}');
                }
                d if d == c => break,
                d => literal.push(d),
            }
        }
        out.push(literal);
    }
    out
}

/// A compiled `jwt` entry's mapping and rules.
pub struct ClaimMapper {
    cel: Cel,
    username: Source,
    groups: Option<Source>,
    uid: Option<Source>,
    extra: Vec<(String, Mapped)>,
    required: Vec<(String, String)>,
    claim_rules: Vec<Expression>,
    user_rules: Vec<Expression>,
    /// Each rule's `message`, for `review --explain`.
    claim_rule_messages: Vec<Option<String>>,
    user_rule_messages: Vec<Option<String>>,
    group_rules: Option<CompiledGroupRules>,
}

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

fn source(cel: &Cel, p: &PrefixedClaimOrExpression) -> Result<Source, String> {
    match (&p.claim, &p.prefix, &p.expression) {
        (Some(claim), Some(prefix), None) => {
            Ok(Source::Claim(PrefixedClaim { claim: claim.clone(), prefix: prefix.clone() }))
        }
        (None, None, Some(e)) => Ok(Source::Expression(Mapped::new(cel, e)?)),
        _ => Err("set claim and prefix, or expression".to_string()),
    }
}

impl ClaimMapper {
    /// Compiles a validated `jwt` entry.
    pub fn from_settings(a: &JwtAuthenticator) -> Result<Self, String> {
        let cel = Cel::new()?;
        let m = &a.claim_mappings;
        let rules = a.claim_validation_rules.iter().flatten();
        let required = rules
            .clone()
            .filter_map(|r| r.claim.clone().map(|c| (c, r.required_value.clone().unwrap_or_default())))
            .collect();
        let claim_rules =
            rules.clone().filter_map(|r| r.expression.as_deref()).map(|e| cel.compile(e)).collect::<Result<_, _>>()?;
        let claim_rule_messages = rules.filter(|r| r.expression.is_some()).map(|r| r.message.clone()).collect();
        let user_rules = a
            .user_validation_rules
            .iter()
            .flatten()
            .filter_map(|r| r.expression.as_deref())
            .map(|e| cel.compile(e))
            .collect::<Result<_, _>>()?;
        let user_rule_messages = a.user_validation_rules.iter().flatten().map(|r| r.message.clone()).collect();
        let extra = m
            .extra
            .iter()
            .flatten()
            .filter_map(|e| Some((e.key.clone()?, e.value_expression.clone()?)))
            .map(|(k, v)| Ok((k, Mapped::new(&cel, &v)?)))
            .collect::<Result<_, String>>()?;
        let uid = match &m.uid {
            None => None,
            Some(u) => match (&u.claim, &u.expression) {
                (Some(c), None) => Some(Source::Claim(PrefixedClaim { claim: c.clone(), prefix: String::new() })),
                (None, Some(e)) => Some(Source::Expression(Mapped::new(&cel, e)?)),
                _ => return Err("uid: set claim or expression".into()),
            },
        };
        Ok(ClaimMapper {
            username: source(&cel, m.username.as_ref().ok_or("username mapping is required")?)?,
            groups: m.groups.as_ref().map(|g| source(&cel, g)).transpose()?,
            uid,
            extra,
            required,
            claim_rules,
            user_rules,
            claim_rule_messages,
            user_rule_messages,
            group_rules: a.group_rules.as_ref().map(CompiledGroupRules::new).transpose()?,
            cel,
        })
    }

    /// Maps verified claims to a user, or says why the token must be rejected. Order, as in
    /// Kubernetes: username, groups, uid, extra (credential id first), claim rules (claim +
    /// requiredValue, then expressions), user rules.
    pub fn map(&self, claims: &Map<String, Value>) -> Result<UserInfo, Reason> {
        self.map_traced(claims, &mut Trace::off())
    }

    /// [`ClaimMapper::map`], recording each step and its result in `trace`.
    pub fn map_traced(&self, claims: &Map<String, Value>, trace: &mut Trace) -> Result<UserInfo, Reason> {
        // Every expression below sees this one `claims`, converted for CEL once (at the first).
        let cel_claims = self.cel.activation("claims", claims);
        let username = trace
            .step(|| "username".into(), self.username(claims, &cel_claims))
            .inspect_err(|r| trace.because(|| explain_name(*r, &self.username, claims)))?;
        let groups = match &self.groups {
            None => Vec::new(),
            Some(source @ Source::Claim(g)) => trace
                .step(|| "groups".into(), groups(claims, g, self.group_rules.as_ref()))
                .inspect_err(|r| trace.because(|| explain_name(*r, source, claims)))?,
            Some(source @ Source::Expression(e)) => trace
                .step(|| "groups".into(), self.strings(e, &cel_claims, true))
                .inspect_err(|r| trace.because(|| explain_name(*r, source, claims)))?,
        };
        let uid = match &self.uid {
            None => String::new(),
            Some(Source::Claim(c)) => trace.step(
                || "uid".into(),
                match claims.get(&c.claim) {
                    None => Err(Reason::UidClaimMissing),
                    // A uid is not a name anything authorises on: only control characters matter.
                    Some(Value::String(s)) => no_control_characters(s).map(str::to_string),
                    Some(_) => Err(Reason::InvalidClaim),
                },
            )?,
            Some(Source::Expression(e)) => trace.step(
                || "uid".into(),
                match self.eval(&e.expression, &cel_claims)? {
                    Value::String(s) => no_control_characters(&s).map(str::to_string),
                    _ => Err(Reason::ExpressionFailed),
                },
            )?,
        };
        let mut extra = BTreeMap::new();
        if let Some(Value::String(jti)) = claims.get("jti")
            && !jti.is_empty()
        {
            extra.insert(CREDENTIAL_ID_KEY.to_string(), vec![format!("JTI={}", checked(jti)?)]);
        }
        for (key, e) in &self.extra {
            let values = trace.step(|| format!("extra {key}"), self.strings(e, &cel_claims, false))?;
            if !values.is_empty() {
                extra.insert(key.clone(), values);
            }
        }
        for (claim, value) in &self.required {
            // Kubernetes: the claim must be present and a string equal to the value.
            let holds = claims.get(claim).and_then(Value::as_str) == Some(value.as_str());
            trace
                .step(
                    || format!("claim rule {claim} == {value:?}"),
                    if holds { Ok(true) } else { Err(Reason::ClaimRuleFailed) },
                )
                .inspect_err(|_| {
                    trace.because(|| {
                        Some(match claims.get(claim) {
                            None => format!("the token has no claim {claim:?}"),
                            Some(actual) => format!("the token's {claim} is {actual}"),
                        })
                    })
                })?;
        }
        for (rule, message) in self.claim_rules.iter().zip(&self.claim_rule_messages) {
            let outcome = match self.eval(rule, &cel_claims) {
                Ok(Value::Bool(true)) => Ok(true),
                Ok(_) => Err(Reason::ClaimRuleFailed),
                Err(r) => Err(r),
            };
            trace
                .step(|| format!("claim rule {}", rule.source()), outcome)
                .inspect_err(|_| trace.because(|| Some(explain_rule(cel_claims.evaluate(rule), message))))?;
        }
        let user = UserInfo { username, uid, groups, extra };
        if !self.user_rules.is_empty() {
            let as_json =
                json!({"username": user.username, "uid": user.uid, "groups": user.groups, "extra": user.extra});
            let Value::Object(user_var) = as_json else { return Err(Reason::ExpressionFailed) };
            let cel_user = self.cel.activation("user", &user_var);
            for (rule, message) in self.user_rules.iter().zip(&self.user_rule_messages) {
                let outcome = match cel_user.evaluate(rule) {
                    Ok(Value::Bool(true)) => Ok(true),
                    Ok(_) => Err(Reason::UserRuleFailed),
                    Err(_) => Err(Reason::ExpressionFailed),
                };
                trace
                    .step(|| format!("user rule {}", rule.source()), outcome)
                    .inspect_err(|_| trace.because(|| Some(explain_rule(cel_user.evaluate(rule), message))))?;
            }
        }
        Ok(user)
    }

    fn eval(&self, e: &Expression, claims: &Activation<'_>) -> Result<Value, Reason> {
        // A missing claim is an evaluation error, and rejects the token (Kubernetes does the same).
        claims.evaluate(e).map_err(|_| Reason::ExpressionFailed)
    }

    /// A string, a list of strings or null, as Kubernetes accepts for groups and extra values:
    /// empty strings are dropped, `""`, `[]` and `null` mean none.
    /// `identity` says whether the values are names kube-apiserver authorises on (groups), which
    /// get the reserved-name rule, or attributes (extra), which only must be free of control
    /// characters.
    fn strings(&self, e: &Mapped, claims: &Activation<'_>, identity: bool) -> Result<Vec<String>, Reason> {
        let values = match self.eval(&e.expression, claims)? {
            Value::Null => Vec::new(),
            Value::String(s) => vec![s],
            Value::Array(items) => items
                .into_iter()
                .map(|v| v.as_str().map(str::to_string).ok_or(Reason::ExpressionFailed))
                .collect::<Result<_, _>>()?,
            _ => return Err(Reason::ExpressionFailed),
        };
        values
            .into_iter()
            .filter(|v| !v.is_empty())
            .map(|v| if identity { e.name(&v) } else { no_control_characters(&v) }.map(str::to_string))
            .collect()
    }

    fn username(&self, claims: &Map<String, Value>, cel_claims: &Activation<'_>) -> Result<String, Reason> {
        let m = match &self.username {
            Source::Claim(m) => m,
            Source::Expression(e) => {
                return match self.eval(&e.expression, cel_claims)? {
                    Value::String(s) if s.trim().is_empty() => Err(Reason::EmptyUsername),
                    Value::String(s) => Ok(e.name(&s)?.to_string()),
                    _ => Err(Reason::ExpressionFailed),
                };
            }
        };
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
        // Blank counts as empty: a username of spaces is no identity anyone can audit.
        if value.trim().is_empty() {
            return Err(Reason::EmptyUsername);
        }
        let username = [m.prefix.as_str(), checked(value)?].concat();
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
    // An empty group is no group: with a prefix it would become the bare prefix (`oidc:`), a
    // name every user of the issuer could be given by whoever edits their groups.
    if raw.iter().any(|g| g.is_empty()) {
        return Err(Reason::InvalidGroups);
    }
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
            if renamed.is_empty() {
                return Err(Reason::InvalidGroups);
            }
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
    let name = [prefix, checked(group)?].concat();
    checked(&name)?;
    Ok(name)
}

/// Refuses reserved `system:` names and control characters (which would forge log lines and
/// confuse audit), returning the value unchanged otherwise.
fn checked(value: &str) -> Result<&str, Reason> {
    if is_reserved(value) {
        return Err(Reason::ReservedName);
    }
    no_control_characters(value)
}

/// Starts with `system:` in any ASCII case.
/// For `review --explain`: which value of a username or groups mapping broke which rule.
fn explain_name(reason: Reason, source: &Source, claims: &Map<String, Value>) -> Option<String> {
    let Source::Claim(c) = source else {
        return (reason == Reason::ReservedName).then(|| {
            "the expression produced a name under `system:`, which only a literal in it may spell out".into()
        });
    };
    let value = claims.get(&c.claim);
    let values: Vec<&str> = match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    Some(match reason {
        Reason::ReservedName => {
            let reserved: Vec<&str> = values.into_iter().filter(|v| is_reserved(v)).collect();
            format!(
                "claim {:?} holds {reserved:?}: a name under `system:` from a token is refused whatever the prefix",
                c.claim
            )
        }
        Reason::UsernameClaimMissing => format!("the token has no claim {:?}", c.claim),
        Reason::EmptyUsername => format!("claim {:?} is empty", c.claim),
        Reason::EmailNotVerified => {
            format!("email_verified is {}, not true", claims.get("email_verified").unwrap_or(&Value::Null))
        }
        Reason::InvalidClaim | Reason::InvalidGroups => {
            format!("claim {:?} is {}, not a string (or a list of strings for groups)", c.claim, value?)
        }
        _ => return None,
    })
}

/// For `review --explain`: a failed rule's value or evaluation error, and its `message`.
fn explain_rule(evaluated: Result<Value, String>, message: &Option<String>) -> String {
    let what = match evaluated {
        Ok(value) => format!("evaluated to {value}, not true"),
        Err(e) => format!("evaluation error: {e}"),
    };
    match message {
        Some(m) => format!("{what}; its message: {m:?}"),
        None => what,
    }
}

fn is_reserved(value: &str) -> bool {
    value.len() >= 7 && value.as_bytes()[..7].eq_ignore_ascii_case(b"system:")
}

/// Refuses control characters and the Unicode bidirectional controls (embeddings, overrides,
/// isolates and marks): those make a name display as another one in audit logs and `kubectl`
/// output (`alice\u{202e}...` can read as anything).
fn no_control_characters(value: &str) -> Result<&str, Reason> {
    let bidi =
        |c: char| matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    // Names are nearly always ASCII, whose only controls are C0 and DEL: checked by bytes, with
    // no char decoding (this ran at 40 instructions a byte, over every name and group of a token).
    let clean = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        || (!value.is_ascii() && !value.chars().any(|c| c.is_control() || bidi(c)));
    if clean { Ok(value) } else { Err(Reason::InvalidCharacters) }
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

    /// A mapper for a `jwt` entry given as JSON (issuer filled in).
    fn entry(mut config: Value) -> ClaimMapper {
        config["issuer"] = json!({"url": "https://idp.example.com", "audiences": ["k"]});
        let k: crate::config::KubernetesJwtAuthenticator = serde_json::from_value(config).unwrap();
        ClaimMapper::from_settings(&k.into()).unwrap()
    }

    /// Section 2 of the spec, case by case: config, claims, and the exact identity or reason.
    #[test]
    fn kubernetes_mapping_semantics_case_by_case() {
        let user = |u: &str, g: Value, uid: &str, extra: Value| {
            Ok(json!({"username": u, "groups": g, "uid": uid, "extra": extra}))
        };
        let cases: Vec<(&str, Value, Value, Result<Value, Reason>)> = vec![
            (
                "username expression",
                json!({"claimMappings": {"username": {"expression": "'u:' + claims.sub"}}}),
                json!({"sub": "a"}),
                user("u:a", json!([]), "", json!({})),
            ),
            (
                "username expression over a missing claim rejects",
                json!({"claimMappings": {"username": {"expression": "claims.nope"}}}),
                json!({"sub": "a"}),
                Err(Reason::ExpressionFailed),
            ),
            (
                "username expression giving a non-string rejects",
                json!({"claimMappings": {"username": {"expression": "claims.n"}}}),
                json!({"n": 5}),
                Err(Reason::ExpressionFailed),
            ),
            (
                "username expression giving an empty string rejects",
                json!({"claimMappings": {"username": {"expression": "''"}}}),
                json!({}),
                Err(Reason::EmptyUsername),
            ),
            (
                "username expression reaching a reserved name through a claim rejects",
                json!({"claimMappings": {"username": {"expression": "claims.sub"}}}),
                json!({"sub": "system:admin"}),
                Err(Reason::ReservedName),
            ),
            (
                "username expression written to produce system: names may",
                json!({"claimMappings": {"username": {"expression": "'system:serviceaccount:ci:' + claims.sub"}}}),
                json!({"sub": "runner"}),
                user("system:serviceaccount:ci:runner", json!([]), "", json!({})),
            ),
            (
                "nested claim through an expression (Keycloak realm roles)",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""},
                    "groups": {"expression": "claims.realm_access.roles.map(r, 'kc:' + r)"}}}),
                json!({"sub": "a", "realm_access": {"roles": ["admin", "dev"]}}),
                user("a", json!(["kc:admin", "kc:dev"]), "", json!({})),
            ),
            (
                "groups expression: a string is one group",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "groups": {"expression": "claims.team"}}}),
                json!({"sub": "a", "team": "red"}),
                user("a", json!(["red"]), "", json!({})),
            ),
            (
                "groups expression: empty string, null and empty list are no groups",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""},
                    "groups": {"expression": "claims.?team.orValue('')"}}}),
                json!({"sub": "a"}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "groups expression: empty strings in a list are dropped",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "groups": {"expression": "['a', '', 'b']"}}}),
                json!({"sub": "a"}),
                user("a", json!(["a", "b"]), "", json!({})),
            ),
            (
                "groups expression giving numbers rejects",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "groups": {"expression": "[1, 2]"}}}),
                json!({"sub": "a"}),
                Err(Reason::ExpressionFailed),
            ),
            (
                "uid expression",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "uid": {"expression": "claims.iss + '#' + claims.sub"}}}),
                json!({"sub": "a", "iss": "https://i"}),
                user("a", json!([]), "https://i#a", json!({})),
            ),
            (
                "extra values: string, list, and omitted when empty",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "extra": [
                    {"key": "example.com/tenant", "valueExpression": "claims.tid"},
                    {"key": "example.com/roles", "valueExpression": "claims.roles"},
                    {"key": "example.com/none", "valueExpression": "[]"}]}}),
                json!({"sub": "a", "tid": "t1", "roles": ["r1", ""], "jti": "j"}),
                user(
                    "a",
                    json!([]),
                    "",
                    json!({"authentication.kubernetes.io/credential-id": ["JTI=j"],
                    "example.com/roles": ["r1"], "example.com/tenant": ["t1"]}),
                ),
            ),
            (
                "claim rule expression true",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}},
                    "claimValidationRules": [{"expression": "claims.hd == 'example.com'", "message": "wrong domain"}]}),
                json!({"sub": "a", "hd": "example.com"}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "claim rule expression false rejects",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}},
                    "claimValidationRules": [{"expression": "claims.hd == 'example.com'"}]}),
                json!({"sub": "a", "hd": "example.org"}),
                Err(Reason::ClaimRuleFailed),
            ),
            (
                "claim rule over a missing claim rejects",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}},
                    "claimValidationRules": [{"expression": "claims.hd == 'example.com'"}]}),
                json!({"sub": "a"}),
                Err(Reason::ExpressionFailed),
            ),
            (
                "sets.equivalent on the audience",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}},
                    "claimValidationRules": [{"expression": "sets.equivalent(claims.aud, ['k'])"}]}),
                json!({"sub": "a", "aud": ["k", "other"]}),
                Err(Reason::ClaimRuleFailed),
            ),
            (
                "user rule true",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": "oidc:"}},
                    "userValidationRules": [{"expression": "user.username.startsWith('oidc:')"}]}),
                json!({"sub": "a"}),
                user("oidc:a", json!([]), "", json!({})),
            ),
            (
                "user rule false rejects",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}},
                    "userValidationRules": [{"expression": "user.groups.size() > 0"}]}),
                json!({"sub": "a"}),
                Err(Reason::UserRuleFailed),
            ),
            (
                "user rule sees uid and extra as empty when unset",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}},
                    "userValidationRules": [{"expression": "user.uid == '' && !('x' in user.extra)"}]}),
                json!({"sub": "a"}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "a mapping error wins over a failing claim rule",
                json!({"claimMappings": {"username": {"claim": "missing", "prefix": ""}},
                    "claimValidationRules": [{"expression": "false"}]}),
                json!({"sub": "a"}),
                Err(Reason::UsernameClaimMissing),
            ),
            (
                "a failing claim rule wins over a failing user rule",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}},
                    "claimValidationRules": [{"expression": "false"}],
                    "userValidationRules": [{"expression": "false"}]}),
                json!({"sub": "a"}),
                Err(Reason::ClaimRuleFailed),
            ),
            (
                "required values are checked before claim expressions",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}},
                    "claimValidationRules": [{"expression": "claims.nope"}, {"claim": "hd", "requiredValue": "x"}]}),
                json!({"sub": "a"}),
                Err(Reason::ClaimRuleFailed),
            ),
            (
                "escaped claim names in expressions",
                json!({"claimMappings": {"username": {"expression": "claims.kubernetes__dot__io.pod__dash__name"}}}),
                json!({"kubernetes.io": {"pod-name": "p1"}}),
                user("p1", json!([]), "", json!({})),
            ),
        ];
        let cm = |username: Value| json!({"claimMappings": {"username": username}});
        let with_groups =
            |groups: Value| json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "groups": groups}});
        let more: Vec<(&str, Value, Value, Result<Value, Reason>)> = vec![
            (
                "username claim without prefix",
                cm(json!({"claim": "sub", "prefix": ""})),
                json!({"sub": "a"}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "username claim with prefix",
                cm(json!({"claim": "sub", "prefix": "oidc:"})),
                json!({"sub": "a"}),
                user("oidc:a", json!([]), "", json!({})),
            ),
            (
                "username claim missing",
                cm(json!({"claim": "sub", "prefix": ""})),
                json!({}),
                Err(Reason::UsernameClaimMissing),
            ),
            (
                "username claim null",
                cm(json!({"claim": "sub", "prefix": ""})),
                json!({"sub": null}),
                Err(Reason::UsernameClaimMissing),
            ),
            (
                "username claim a number",
                cm(json!({"claim": "sub", "prefix": ""})),
                json!({"sub": 1}),
                Err(Reason::InvalidClaim),
            ),
            (
                "username claim a list",
                cm(json!({"claim": "sub", "prefix": ""})),
                json!({"sub": ["a"]}),
                Err(Reason::InvalidClaim),
            ),
            (
                "username claim empty (deliberate difference)",
                cm(json!({"claim": "sub", "prefix": "p:"})),
                json!({"sub": ""}),
                Err(Reason::EmptyUsername),
            ),
            (
                "nested claim names are literal keys for claim:",
                cm(json!({"claim": "a.b", "prefix": ""})),
                json!({"a": {"b": "x"}}),
                Err(Reason::UsernameClaimMissing),
            ),
            (
                "a claim literally named a.b",
                cm(json!({"claim": "a.b", "prefix": ""})),
                json!({"a.b": "x"}),
                user("x", json!([]), "", json!({})),
            ),
            (
                "email with email_verified true",
                cm(json!({"claim": "email", "prefix": ""})),
                json!({"email": "e@x", "email_verified": true}),
                user("e@x", json!([]), "", json!({})),
            ),
            (
                "email with email_verified missing",
                cm(json!({"claim": "email", "prefix": ""})),
                json!({"email": "e@x"}),
                user("e@x", json!([]), "", json!({})),
            ),
            (
                "email with email_verified false",
                cm(json!({"claim": "email", "prefix": ""})),
                json!({"email": "e@x", "email_verified": false}),
                Err(Reason::EmailNotVerified),
            ),
            (
                "email with email_verified the string true",
                cm(json!({"claim": "email", "prefix": ""})),
                json!({"email": "e@x", "email_verified": "true"}),
                Err(Reason::EmailNotVerified),
            ),
            (
                "email_verified ignored for another claim",
                cm(json!({"claim": "sub", "prefix": ""})),
                json!({"sub": "a", "email_verified": false}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "reserved username from a claim",
                cm(json!({"claim": "sub", "prefix": "oidc:"})),
                json!({"sub": "system:masters"}),
                Err(Reason::ReservedName),
            ),
            (
                "reserved username in another case",
                cm(json!({"claim": "sub", "prefix": ""})),
                json!({"sub": "SYSTEM:admin"}),
                Err(Reason::ReservedName),
            ),
            (
                "control characters in a username",
                cm(json!({"claim": "sub", "prefix": ""})),
                json!({"sub": "a\u{0007}"}),
                Err(Reason::InvalidCharacters),
            ),
            (
                "groups as a string",
                with_groups(json!({"claim": "g", "prefix": "p:"})),
                json!({"sub": "a", "g": "x"}),
                user("a", json!(["p:x"]), "", json!({})),
            ),
            (
                "groups as a list",
                with_groups(json!({"claim": "g", "prefix": "p:"})),
                json!({"sub": "a", "g": ["x", "y"]}),
                user("a", json!(["p:x", "p:y"]), "", json!({})),
            ),
            (
                "groups missing",
                with_groups(json!({"claim": "g", "prefix": "p:"})),
                json!({"sub": "a"}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "groups null",
                with_groups(json!({"claim": "g", "prefix": "p:"})),
                json!({"sub": "a", "g": null}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "groups a number",
                with_groups(json!({"claim": "g", "prefix": ""})),
                json!({"sub": "a", "g": 3}),
                Err(Reason::InvalidGroups),
            ),
            (
                "groups an object",
                with_groups(json!({"claim": "g", "prefix": ""})),
                json!({"sub": "a", "g": {"x": 1}}),
                Err(Reason::InvalidGroups),
            ),
            (
                "groups a mixed list",
                with_groups(json!({"claim": "g", "prefix": ""})),
                json!({"sub": "a", "g": ["x", 1]}),
                Err(Reason::InvalidGroups),
            ),
            (
                "groups with a reserved name",
                with_groups(json!({"claim": "g", "prefix": "p:"})),
                json!({"sub": "a", "g": ["system:nodes"]}),
                Err(Reason::ReservedName),
            ),
            (
                "groups with no prefix",
                with_groups(json!({"claim": "g", "prefix": ""})),
                json!({"sub": "a", "g": ["x"]}),
                user("a", json!(["x"]), "", json!({})),
            ),
            (
                "uid claim present",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "uid": {"claim": "oid"}}}),
                json!({"sub": "a", "oid": "o"}),
                user("a", json!([]), "o", json!({})),
            ),
            (
                "uid claim missing",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "uid": {"claim": "oid"}}}),
                json!({"sub": "a"}),
                Err(Reason::UidClaimMissing),
            ),
            (
                "uid claim not a string",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "uid": {"claim": "oid"}}}),
                json!({"sub": "a", "oid": 7}),
                Err(Reason::InvalidClaim),
            ),
            (
                "jti becomes the credential id",
                cm(json!({"claim": "sub", "prefix": ""})),
                json!({"sub": "a", "jti": "j1"}),
                user("a", json!([]), "", json!({"authentication.kubernetes.io/credential-id": ["JTI=j1"]})),
            ),
            (
                "a non-string jti is ignored",
                cm(json!({"claim": "sub", "prefix": ""})),
                json!({"sub": "a", "jti": 9}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "required value equal",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}}, "claimValidationRules": [{"claim": "hd", "requiredValue": "x"}]}),
                json!({"sub": "a", "hd": "x"}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "required value different",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}}, "claimValidationRules": [{"claim": "hd", "requiredValue": "x"}]}),
                json!({"sub": "a", "hd": "y"}),
                Err(Reason::ClaimRuleFailed),
            ),
            (
                "required value not a string",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}}, "claimValidationRules": [{"claim": "n", "requiredValue": "1"}]}),
                json!({"sub": "a", "n": 1}),
                Err(Reason::ClaimRuleFailed),
            ),
            (
                "required value unset means empty string",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}}, "claimValidationRules": [{"claim": "e"}]}),
                json!({"sub": "a", "e": ""}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "extra value null is omitted",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "extra": [{"key": "example.com/x", "valueExpression": "null"}]}}),
                json!({"sub": "a"}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "extra value a number rejects",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "extra": [{"key": "example.com/x", "valueExpression": "claims.n"}]}}),
                json!({"sub": "a", "n": 1}),
                Err(Reason::ExpressionFailed),
            ),
            (
                "a claim rule with has()",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}}, "claimValidationRules": [{"expression": "has(claims.tid)"}]}),
                json!({"sub": "a"}),
                Err(Reason::ClaimRuleFailed),
            ),
            (
                "a claim rule over a list claim",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}}, "claimValidationRules": [{"expression": "'admins' in claims.groups"}]}),
                json!({"sub": "a", "groups": ["admins"]}),
                user("a", json!([]), "", json!({})),
            ),
            (
                "extra values are attributes: a system: prefix is fine there",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "extra": [{"key": "example.com/x", "valueExpression": "claims.v"}]}}),
                json!({"sub": "a", "v": "system:x"}),
                user("a", json!([]), "", json!({"example.com/x": ["system:x"]})),
            ),
            (
                "a uid is not a name: a system: prefix is fine there",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "uid": {"claim": "oid"}}}),
                json!({"sub": "a", "oid": "system:1"}),
                user("a", json!([]), "system:1", json!({})),
            ),
            (
                "a user rule over extra",
                json!({"claimMappings": {"username": {"claim": "sub", "prefix": ""}, "extra": [{"key": "example.com/t", "valueExpression": "'t1'"}]}, "userValidationRules": [{"expression": "user.extra['example.com/t'] == ['t1']"}]}),
                json!({"sub": "a"}),
                user("a", json!([]), "", json!({"example.com/t": ["t1"]})),
            ),
        ];
        let cases: Vec<_> = cases.into_iter().chain(more).collect();
        assert!(cases.len() >= 60, "{} cases", cases.len());
        for (name, config, claims_json, want) in cases {
            let m = entry(config);
            let got = m
                .map(&claims(claims_json))
                .map(|u| json!({"username": u.username, "groups": u.groups, "uid": u.uid, "extra": u.extra}));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn every_expression_of_a_review_sees_the_escaped_claims() {
        let m = entry(json!({
            "claimMappings": {
                "username": {"expression": "claims.kubernetes__dot__io.user__dash__name"},
                "groups": {"expression": "claims['kubernetes.io'].groups"},
                "uid": {"expression": "claims.my__dash__id"},
                "extra": [{"key": "example.com/ns", "valueExpression": "claims.kubernetes__dot__io.__namespace__"}],
            },
            "claimValidationRules": [
                {"expression": "has(claims.kubernetes__dot__io.user__dash__name)"},
                {"expression": "claims.my__dash__id == 'id-1'"},
            ],
            "userValidationRules": [{"expression": "user.username == 'alice' && user.extra['example.com/ns'] == ['ns1']"}],
        }));
        let u = m
            .map(&claims(json!({"kubernetes.io": {"user-name": "alice", "groups": ["dev"], "namespace": "ns1"},
                "my-id": "id-1"})))
            .unwrap();
        assert_eq!((u.username.as_str(), u.uid.as_str()), ("alice", "id-1"));
        assert_eq!(u.groups, vec!["dev"]);
        assert_eq!(u.extra.get("example.com/ns"), Some(&vec!["ns1".to_string()]));
    }

    #[test]
    fn the_trace_names_the_expression_that_failed() {
        let m = entry(json!({
            "claimMappings": {"username": {"expression": "claims.sub"}},
            "claimValidationRules": [{"expression": "claims.sub != ''"}, {"expression": "claims.hd == 'example.com'"}],
            "userValidationRules": [{"expression": "user.username != 'x'"}],
        }));
        let mut trace = Trace::on();
        let got = m.map_traced(&claims(json!({"sub": "a", "hd": "other"})), &mut trace);
        assert_eq!(got.err(), Some(Reason::ClaimRuleFailed));
        let steps = trace.into_steps();
        assert!(steps.iter().any(|s| s.starts_with("claim rule claims.sub != '': ok")), "{steps:?}");
        assert_eq!(
            steps.last().map(String::as_str),
            Some(
                format!(
                    "claim rule claims.hd == 'example.com': FAILED ({}): evaluated to false, not true",
                    Reason::ClaimRuleFailed.as_str()
                )
                .as_str()
            )
        );

        let mut trace = Trace::on();
        let got = m.map_traced(&claims(json!({"sub": "x", "hd": "example.com"})), &mut trace);
        assert_eq!(got.err(), Some(Reason::UserRuleFailed));
        assert!(trace.into_steps().last().unwrap().starts_with("user rule user.username != 'x': FAILED"));
    }

    #[test]
    fn a_list_over_the_cel_bound_fails_expressions_but_not_claim_mappings() {
        let long: Vec<String> = (0..=crate::cel::MAX_LIST_LEN).map(|i| format!("g{i}")).collect();
        let token = claims(json!({"sub": "a", "hd": "x", "groups": long}));
        let plain = mapper_with_rules(("sub", ""), Some(("groups", "")), None, &[("hd", Some("x"))]);
        assert_eq!(plain.map(&token).map(|u| u.groups.len()), Ok(crate::cel::MAX_LIST_LEN + 1));
        let with_rule = entry(json!({
            "claimMappings": {"username": {"claim": "sub", "prefix": ""}, "groups": {"claim": "groups", "prefix": ""}},
            "claimValidationRules": [{"expression": "claims.hd == 'x'"}],
        }));
        assert_eq!(with_rule.map(&token).err(), Some(Reason::ExpressionFailed));
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
    fn an_empty_group_is_invalid_and_never_a_bare_prefix() {
        let m = mapper(("sub", ""), Some(("groups", "oidc:")), None);
        for bad in [json!(""), json!(["dev", ""]), json!([""])] {
            assert_eq!(m.map(&claims(json!({"sub": "a", "groups": bad}))).err(), Some(Reason::InvalidGroups), "{bad}");
        }
        let renamed = mapper_with_group_rules(r#"{"rename": {"legacy": ""}}"#);
        assert_eq!(groups_of(&renamed, json!(["dev", "legacy"])), Err(Reason::InvalidGroups));
        assert_eq!(groups_of(&renamed, json!(["dev"])), Ok(vec!["oidc:dev".to_string()]));
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
        // Both ways a name is checked: ASCII by bytes (C0, DEL), anything else by chars (C1 too).
        for bad in ["a\u{1f}", "a\u{7f}", "é\u{7f}", "é\u{85}", "\u{9f}"] {
            assert_eq!(m.map(&claims(json!({"sub": bad}))).err(), Some(Reason::InvalidCharacters), "{bad:?}");
        }
        assert!(m.map(&claims(json!({"sub": "é~ a"}))).is_ok());
    }

    #[test]
    fn mentioning_system_in_an_expression_does_not_grant_it() {
        let sanitiser = entry(json!({"claimMappings": {
            "username": {"expression": "claims.sub.replace('system:', '')"},
            "groups": {"expression": "claims.g.map(g, g.replace(\"system:\", \"\"))"}
        }}));
        let smuggled = claims(json!({"sub": "ssystem:ystem:admin", "g": []}));
        assert_eq!(sanitiser.map(&smuggled).err(), Some(Reason::ReservedName));
        let smuggled = claims(json!({"sub": "a", "g": ["ssystem:ystem:masters"]}));
        assert_eq!(sanitiser.map(&smuggled).err(), Some(Reason::ReservedName));
        assert_eq!(sanitiser.map(&claims(json!({"sub": "system:a", "g": []}))).unwrap().username, "a");

        let spelled = entry(json!({"claimMappings": {
            "username": {"expression": "'system:serviceaccount:ci:' + claims.sub"},
            "groups": {"expression": "claims.g.map(g, g == 'admins' ? \"system:masters\" : g)"}
        }}));
        let u = spelled.map(&claims(json!({"sub": "runner", "g": ["admins", "dev"]}))).unwrap();
        assert_eq!(
            (u.username.as_str(), u.groups),
            ("system:serviceaccount:ci:runner", vec!["system:masters".into(), "dev".into()])
        );
        // A claim may not reach another reserved name through the same expression.
        let other = claims(json!({"sub": "runner", "g": ["system:nodes"]}));
        assert_eq!(spelled.map(&other).err(), Some(Reason::ReservedName));
    }

    #[test]
    fn string_literals_are_read_with_escapes_taken_as_written() {
        assert_eq!(string_literals(r#"'a' + "b" + claims.x"#), vec!["a", "b"]);
        assert_eq!(string_literals(r#"'it\'s' + "x""#), vec!["it\u{0}s", "x"]);
        assert_eq!(string_literals(r#"'\x73ystem:masters'"#), vec!["\u{0}73ystem:masters"]);
    }

    #[test]
    fn bidi_controls_in_names_fail() {
        let m = mapper(("sub", ""), Some(("groups", "")), None);
        for bad in ["a\u{202e}b", "\u{2066}a\u{2069}", "a\u{200f}", "\u{61c}a", "\u{202a}x"] {
            assert_eq!(m.map(&claims(json!({"sub": bad}))).err(), Some(Reason::InvalidCharacters), "{bad:?}");
            let g = json!({"sub": "a", "groups": [bad]});
            assert_eq!(m.map(&claims(g)).err(), Some(Reason::InvalidCharacters), "{bad:?}");
        }
        // Joiners are part of ordinary writing (Persian ZWNJ, emoji ZWJ): not refused.
        assert!(m.map(&claims(json!({"sub": "a\u{200c}b\u{200d}c"}))).is_ok());
    }

    #[test]
    fn a_blank_username_is_empty() {
        let m = mapper(("sub", "oidc:"), None, None);
        for blank in [" ", "\t ", "\u{3000}", "\u{a0}"] {
            assert_eq!(m.map(&claims(json!({"sub": blank}))).err(), Some(Reason::EmptyUsername), "{blank:?}");
        }
        assert_eq!(m.map(&claims(json!({"sub": " a "}))).unwrap().username, "oidc: a ");
    }

    #[test]
    fn a_non_string_jti_is_ignored() {
        let m = mapper(("sub", ""), None, None);
        assert!(m.map(&claims(json!({"sub": "a", "jti": 5}))).unwrap().extra.is_empty());
    }
}
