//! The words of `review --explain` for the JWT steps: what a person needs to see to fix a token
//! or a configuration (the token's `aud` beside the configured audiences, `exp` beside the clock
//! and the leeway), never Rust debug text. Only called when the trace is on.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::jwt::{ClaimPolicy, Jws};
use super::keys::DroppedKey;
use crate::verdict::Reason;

/// The unverified header and issuer, as the first step reads them.
pub(super) fn token(t: &Jws<'_>) -> String {
    match &t.kid {
        Some(kid) => format!("token: ok, a JWT signed with {}, kid {kid:?}, issuer {:?}", t.alg, t.iss()),
        None => format!("token: ok, a JWT signed with {}, no kid, issuer {:?}", t.alg, t.iss()),
    }
}

/// The key step's success line.
pub(super) fn key(kid: Option<&str>, candidates: usize) -> String {
    match kid {
        Some(kid) => format!("key: ok, kid {kid:?} is in the issuer's key set"),
        None => format!("key: ok, no kid: {candidates} key(s) of the issuer fit the algorithm, each is tried"),
    }
}

/// When the issuer's JWKS had a key under the token's `kid` (or, without a kid, any key) that
/// the gateway dropped at admission: which, and why.
pub(super) fn dropped(kid: Option<&str>, dropped: &[DroppedKey]) -> Option<String> {
    let relevant: Vec<&DroppedKey> = dropped.iter().filter(|d| kid.is_none() || d.kid.as_deref() == kid).collect();
    if relevant.is_empty() {
        return None;
    }
    let whys: Vec<String> = relevant
        .iter()
        .map(|d| match &d.kid {
            Some(k) => format!("key {k:?} dropped: {}", d.why),
            None => format!("a key without kid dropped: {}", d.why),
        })
        .collect();
    Some(format!("the issuer's JWKS has it, but the gateway dropped it at admission: {}", whys.join("; ")))
}

/// The claims a verified token carries, by name.
pub(super) fn verified(claims: &Map<String, Value>) -> String {
    let names: Vec<&str> = claims.keys().map(String::as_str).collect();
    format!("signature, iss, aud, exp, nbf: ok (claims: {})", names.join(", "))
}

/// Why the signature or a registered claim failed, with the values involved. For the claim
/// checks the signature has already verified, so the values are the issuer's.
pub(super) fn claim_check_failure(reason: Reason, token: &str, policy: &ClaimPolicy) -> Option<String> {
    let claims = super::jws::payload_claims(token)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let date = |name: &str| claims.get(name).and_then(Value::as_f64).map(|t| t as i64);
    let leeway = policy.leeway;
    Some(match reason {
        Reason::BadSignature => "no key of the issuer's set verifies the signature (a token of another issuer, \
             a rotated-out key, or an altered token)"
            .into(),
        Reason::WrongAudience => {
            let mut accepted: Vec<&String> = policy.audiences.iter().collect();
            accepted.sort();
            format!("the token's aud is {}; this issuer accepts {accepted:?}", claims.get("aud")?)
        }
        Reason::MissingAudience => "the token has no aud claim".into(),
        Reason::MissingExpiry => "the token has no exp claim".into(),
        Reason::Expired => {
            let exp = date("exp")?;
            format!(
                "exp is {} ({} s ago, now {}), beyond the {leeway} s leeway (clockSkewSeconds)",
                rfc3339(exp),
                now - exp,
                rfc3339(now)
            )
        }
        Reason::NotYetValid => {
            let nbf = date("nbf")?;
            format!(
                "nbf is {} ({} s from now, now {}), beyond the {leeway} s leeway (clockSkewSeconds)",
                rfc3339(nbf),
                nbf - now,
                rfc3339(now)
            )
        }
        Reason::WrongIssuer => format!("the token's iss is {}", claims.get("iss")?),
        Reason::InvalidClaim => {
            let mut bad: Vec<String> = ["exp", "nbf", "iat"]
                .iter()
                .filter_map(|n| Some((n, claims.get(*n)?)))
                .filter(|(_, v)| !v.is_number() || v.as_f64().is_some_and(|t| !(0.0..=253_402_300_799.0).contains(&t)))
                .map(|(n, v)| format!("{n} {v}"))
                .collect();
            let aud_ok = |v: &Value| v.is_string() || v.as_array().is_some_and(|l| l.iter().all(Value::is_string));
            bad.extend(claims.get("aud").filter(|v| !v.is_null() && !aud_ok(v)).map(|v| format!("aud {v}")));
            format!(
                "exp, nbf and iat must be dates (numbers from 0 to year 9999), aud a string or a list of strings; \
                 found {}",
                bad.join(", ")
            )
        }
        _ => return None,
    })
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{unix} (Unix time)"))
}
