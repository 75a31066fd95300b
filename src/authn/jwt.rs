//! A decoded JWS against one issuer: which keys may verify it, its signature, then the
//! registered claims (`iss`, `aud`, `exp`, `nbf`) and the dates nobody should trust.
//!
//! The claim checks are ours, not a JWT library's: the token is decoded once (`jws::decode`),
//! and a library's checks would need the payload decoded again. They keep what jsonwebtoken 12
//! checked, with the boundaries it used (`exp` is expired once `exp < now - leeway`, `nbf` is
//! early while `nbf > now + leeway`, fractional dates rounded), compared against it by the
//! tests below; and where the library left a gap (any number as `exp`, `iat` never read) we
//! close it.

use serde_json::{Map, Value};

pub use super::jws::{Alg, Jws, decode, is_jose_shaped, payload_claims};
use super::keys::{AdmittedKey, KeySet};
use crate::verdict::Reason;

/// A token without `kid` is tried against at most this many keys.
const MAX_CANDIDATES_WITHOUT_KID: usize = 8;

/// Whether a header `typ` is one of `allowed`. Media types compare without case and with an
/// `application/` prefix optional (RFC 7515 section 4.1.9): `at+jwt` is `application/at+JWT`.
/// A token without `typ` matches only an empty entry.
pub fn type_allowed(typ: Option<&str>, allowed: &[String]) -> bool {
    fn short(t: &str) -> String {
        let lower = t.to_ascii_lowercase();
        lower.strip_prefix("application/").map(str::to_string).unwrap_or(lower)
    }
    let typ = short(typ.unwrap_or(""));
    allowed.iter().any(|a| short(a) == typ)
}

/// `maxLifetimeSeconds`: the lifetime the issuer gave the token, `exp - iat` in seconds, at most
/// `max`, and `iat` not later than `now` plus the `leeway`: otherwise `iat = now + 5 years,
/// exp = iat + 1 hour` would pass and live five years (its lifetime from now is too long).
pub fn lifetime_within(claims: &Map<String, Value>, max: u64, leeway: u64, now: f64) -> Result<f64, Reason> {
    let number = |name: &str| claims.get(name).and_then(Value::as_f64);
    let (Some(exp), Some(iat)) = (number("exp"), number("iat")) else { return Err(Reason::MissingIssuedAt) };
    if iat > now + leeway as f64 || exp - iat > max as f64 {
        return Err(Reason::LifetimeTooLong);
    }
    Ok(exp - iat)
}

/// Which keys may verify this token.
pub enum Candidates<'a> {
    /// Keys to try, in order.
    Keys(Vec<&'a AdmittedKey>),
    /// The token names a `kid` the set does not have (perhaps rotated in since the last fetch).
    UnknownKid,
    /// The set has no key of a type that fits the token's algorithm.
    NoMatchingKey,
}

/// Picks the keys for a token: by `kid` when it has one, otherwise every fitting key (capped).
pub fn candidates<'a>(set: &'a KeySet, alg: Alg, kid: Option<&str>) -> Candidates<'a> {
    let keys: Vec<&AdmittedKey> = match kid {
        Some(kid) => {
            let named: Vec<&AdmittedKey> = set.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).collect();
            if named.is_empty() {
                return Candidates::UnknownKid;
            }
            named.into_iter().filter(|k| k.accepts(alg)).collect()
        }
        None => set.keys.iter().filter(|k| k.accepts(alg)).take(MAX_CANDIDATES_WITHOUT_KID).collect(),
    };
    if keys.is_empty() { Candidates::NoMatchingKey } else { Candidates::Keys(keys) }
}

/// The per-issuer claim policy: `iss` exactly one of `issuers`, `aud` any of `audiences`
/// (required), `exp` required, `nbf` checked when present, `leeway` seconds of clock skew.
#[derive(Debug, Clone)]
pub struct ClaimPolicy {
    /// Accepted `iss` values: the issuer's URL (and Google's legacy form for Google).
    pub issuers: Vec<String>,
    /// The configured audiences.
    pub audiences: Vec<String>,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway: u64,
}

impl ClaimPolicy {
    /// The policy for one issuer.
    pub fn new(issuers: &[&str], audiences: &[String], leeway: u64) -> ClaimPolicy {
        ClaimPolicy { issuers: issuers.iter().map(|s| s.to_string()).collect(), audiences: audiences.to_vec(), leeway }
    }
}

/// Verifies the signature with each candidate key until one verifies, then the registered
/// claims against `policy` at the current time. Nothing about the claims is looked at before
/// a key has verified the signature, so a claim error only ever describes a genuine token.
pub fn verify(jws: Jws<'_>, keys: &[&AdmittedKey], policy: &ClaimPolicy) -> Result<Map<String, Value>, Reason> {
    let claims = jws.claims()?;
    if !keys.iter().any(|k| jws.signed_by(&k.key)) {
        return Err(Reason::BadSignature);
    }
    check_claims(claims, policy, unix_now())?;
    jws.into_claims()
}

/// A clock set before 1970 makes every token expired: it fails closed, never open.
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(u64::MAX)
}

/// The latest `exp` we accept: 9999-12-31T23:59:59Z.
const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// A NumericDate as jsonwebtoken read one: a non-negative integer, or a finite non-negative
/// number below 2^64, rounded. Anything else (a string, `-1`, `1e300`) is no date.
fn numeric_date(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
}

/// The registered claims of a token whose signature has verified, at `now` (Unix seconds).
/// Each problem has its own reason, checked in a fixed order: presence and types first
/// (`missing_exp`, `missing_aud`, `invalid_claim`: an `exp` or `iat` beyond year 9999, which
/// Go's verifier would read as a date in the past, or an `iat` or `nbf` that is no date), then
/// `expired`, `not_yet_valid`, `wrong_issuer` and `wrong_audience`.
pub fn check_claims(claims: &Map<String, Value>, policy: &ClaimPolicy, now: u64) -> Result<(), Reason> {
    let present = |name: &str| claims.get(name).filter(|v| !v.is_null());
    let exp = present("exp").ok_or(Reason::MissingExpiry)?;
    let exp = numeric_date(exp).filter(|e| *e <= MAX_NUMERIC_DATE).ok_or(Reason::InvalidClaim)?;
    let aud: Vec<&str> = match present("aud").ok_or(Reason::MissingAudience)? {
        Value::String(one) => vec![one.as_str()],
        Value::Array(list) => list.iter().map(Value::as_str).collect::<Option<_>>().ok_or(Reason::InvalidClaim)?,
        _ => return Err(Reason::InvalidClaim),
    };
    let nbf = match claims.get("nbf") {
        None => None,
        Some(v) => Some(numeric_date(v).ok_or(Reason::InvalidClaim)?),
    };
    if let Some(iat) = claims.get("iat") {
        numeric_date(iat).filter(|d| *d <= MAX_NUMERIC_DATE).ok_or(Reason::InvalidClaim)?;
    }
    if exp < now.saturating_sub(policy.leeway) {
        return Err(Reason::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(policy.leeway)) {
        return Err(Reason::NotYetValid);
    }
    match present("iss") {
        None => return Err(Reason::MissingIssuer),
        Some(Value::String(iss)) if policy.issuers.iter().any(|i| i == iss) => {}
        Some(_) => return Err(Reason::WrongIssuer),
    }
    if !aud.iter().any(|a| policy.audiences.iter().any(|want| want == a)) {
        return Err(Reason::WrongAudience);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://idp.example.com";
    const NOW: u64 = 1_700_000_000;

    fn policy() -> ClaimPolicy {
        ClaimPolicy::new(&[ISS], &["kubernetes".to_string(), "other".to_string()], 60)
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut c = json!({"iss": ISS, "aud": "kubernetes", "exp": NOW + 3600});
        for (k, v) in extra.as_object().unwrap() {
            if v == &json!("<absent>") {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c.as_object().unwrap().clone()
    }

    fn check(extra: Value) -> Result<(), Reason> {
        check_claims(&claims(extra), &policy(), NOW)
    }

    #[test]
    fn exp_and_nbf_are_checked_with_the_leeway_at_the_boundaries() {
        assert_eq!(check(json!({})), Ok(()));
        assert_eq!(check(json!({"exp": NOW - 60})), Ok(()));
        assert_eq!(check(json!({"exp": NOW - 61})), Err(Reason::Expired));
        assert_eq!(check(json!({"exp": (NOW - 60) as f64 - 0.4})), Ok(()), "rounded, as jsonwebtoken did");
        assert_eq!(check(json!({"nbf": NOW + 60})), Ok(()));
        assert_eq!(check(json!({"nbf": NOW + 61})), Err(Reason::NotYetValid));
        assert_eq!(check(json!({"nbf": 0, "iat": NOW})), Ok(()));
    }

    #[test]
    fn each_missing_or_mistyped_registered_claim_has_its_own_reason() {
        for (extra, want) in [
            (json!({"exp": "<absent>"}), Reason::MissingExpiry),
            (json!({"exp": null}), Reason::MissingExpiry),
            (json!({"aud": "<absent>"}), Reason::MissingAudience),
            (json!({"aud": null}), Reason::MissingAudience),
            (json!({"iss": "<absent>"}), Reason::MissingIssuer),
            (json!({"iss": "https://idp.example.com/"}), Reason::WrongIssuer),
            (json!({"iss": [ISS]}), Reason::WrongIssuer),
            (json!({"aud": "kube"}), Reason::WrongAudience),
            (json!({"aud": []}), Reason::WrongAudience),
            (json!({"aud": ["a", "b"]}), Reason::WrongAudience),
            (json!({"aud": 7}), Reason::InvalidClaim),
            (json!({"aud": ["kubernetes", 7]}), Reason::InvalidClaim),
            (json!({"exp": (NOW + 3600).to_string()}), Reason::InvalidClaim),
            (json!({"exp": true}), Reason::InvalidClaim),
            (json!({"exp": -1}), Reason::InvalidClaim),
            (json!({"exp": 1e300}), Reason::InvalidClaim),
            (json!({"exp": 253_402_300_800u64}), Reason::InvalidClaim),
            (json!({"exp": u64::MAX}), Reason::InvalidClaim),
            (json!({"nbf": "0"}), Reason::InvalidClaim),
            (json!({"nbf": null}), Reason::InvalidClaim),
            (json!({"nbf": [0]}), Reason::InvalidClaim),
            (json!({"iat": "1"}), Reason::InvalidClaim),
            (json!({"iat": null}), Reason::InvalidClaim),
            (json!({"iat": -1}), Reason::InvalidClaim),
            (json!({"iat": 1e300}), Reason::InvalidClaim),
            (json!({"iat": 253_402_300_800u64}), Reason::InvalidClaim),
        ] {
            assert_eq!(check(extra.clone()), Err(want), "{extra}");
        }
        assert_eq!(check(json!({"aud": ["x", "other"]})), Ok(()));
        assert_eq!(check(json!({"exp": 253_402_300_799u64, "iat": 1.5})), Ok(()));
    }

    /// jsonwebtoken 12's `Validation`, the checks this module replaced, as the reference on a
    /// grid of claims (dates kept at least 10 s from any boundary, so the two clocks agree): we
    /// accept exactly what it accepts, with the same reason, except where we are deliberately
    /// stricter (a date that is no NumericDate, an `exp` past year 9999, a mistyped `iat` or
    /// `aud`: `invalid_claim`).
    #[test]
    fn the_claim_checks_agree_with_jsonwebtoken() {
        use jsonwebtoken::errors::ErrorKind;
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let secret = b"differential-test";
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&["kubernetes", "other"]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 60;
        validation.validate_nbf = true;
        let theirs = |c: &Value| {
            let token =
                jsonwebtoken::encode(&Header::default(), c, &EncodingKey::from_secret(secret).unwrap()).unwrap();
            match jsonwebtoken::decode::<Map<String, Value>>(
                &token,
                &DecodingKey::from_secret(secret).unwrap(),
                &validation,
            ) {
                Ok(_) => Ok(()),
                Err(e) => Err(match e.kind() {
                    ErrorKind::ExpiredSignature => Reason::Expired,
                    ErrorKind::ImmatureSignature => Reason::NotYetValid,
                    ErrorKind::InvalidAudience => Reason::WrongAudience,
                    ErrorKind::InvalidIssuer => Reason::WrongIssuer,
                    ErrorKind::MissingRequiredClaim(c) if c == "exp" => Reason::MissingExpiry,
                    ErrorKind::MissingRequiredClaim(c) if c == "aud" => Reason::MissingAudience,
                    ErrorKind::MissingRequiredClaim(_) => Reason::MissingIssuer,
                    ErrorKind::InvalidClaimFormat(_) => Reason::InvalidClaim,
                    other => panic!("unexpected {other:?}"),
                }),
            }
        };
        let absent = json!("<absent>");
        let exps = [
            absent.clone(),
            json!(now + 3600),
            json!(now - 30),
            json!(now - 90),
            json!(now - 86_400),
            json!(1.5e9),
            json!(null),
            json!("1"),
            json!(-5),
            json!(1e300),
            json!(253_402_300_800u64),
        ];
        let nbfs =
            [absent.clone(), json!(now - 3600), json!(now + 30), json!(now + 90), json!(null), json!("0"), json!(-1)];
        let auds = [
            absent.clone(),
            json!("kubernetes"),
            json!(["x", "other"]),
            json!("x"),
            json!([]),
            json!(null),
            json!(5),
            json!(["kubernetes", 5]),
        ];
        let isss = [absent.clone(), json!(ISS), json!("https://evil.example")];
        let iats = [absent.clone(), json!(now), json!("now")];
        let mut compared = 0;
        for exp in &exps {
            for nbf in &nbfs {
                for aud in &auds {
                    for iss in &isss {
                        for iat in &iats {
                            let mut c = Map::new();
                            for (k, v) in [("exp", exp), ("nbf", nbf), ("aud", aud), ("iss", iss), ("iat", iat)] {
                                if v != &absent {
                                    c.insert(k.to_string(), v.clone());
                                }
                            }
                            let ours = check_claims(&c, &policy(), now);
                            let reference = theirs(&Value::Object(c.clone()));
                            if ours.is_ok() {
                                assert_eq!(reference, Ok(()), "we accept what jsonwebtoken refused: {c:?}");
                            } else if ours != reference && ours != Err(Reason::InvalidClaim) {
                                // Both refuse, for different reasons: only the order of checks
                                // may differ, when the claims have two problems.
                                assert!(reference.is_err(), "{c:?}: ours {ours:?}, theirs {reference:?}");
                                let mut fixed = c.clone();
                                fixed.insert("iat".into(), json!(now));
                                let ours_alone = check_claims(&fixed, &policy(), now);
                                assert!(ours_alone.is_err(), "{c:?}");
                            }
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(compared, exps.len() * nbfs.len() * auds.len() * isss.len() * iats.len());
    }

    #[test]
    fn a_lifetime_is_bounded_by_exp_minus_iat_and_by_iat_not_in_the_future() {
        let now = 1_700_000_000.0;
        let claims = |iat: f64, exp: f64| {
            let v = serde_json::json!({"iat": iat, "exp": exp});
            v.as_object().unwrap().clone()
        };
        assert_eq!(lifetime_within(&claims(now, now + 3600.0), 3600, 60, now), Ok(3600.0));
        // Issued within the leeway ahead of our clock: fine.
        assert_eq!(lifetime_within(&claims(now + 60.0, now + 3660.0), 3600, 60, now), Ok(3600.0));
        assert_eq!(lifetime_within(&claims(now, now + 3601.0), 3600, 60, now), Err(Reason::LifetimeTooLong));
        let five_years = 5.0 * 365.0 * 86400.0;
        let far = claims(now + five_years, now + five_years + 3600.0);
        assert_eq!(lifetime_within(&far, 3600, 60, now), Err(Reason::LifetimeTooLong));
        assert_eq!(lifetime_within(&claims(now + 61.0, now + 3661.0), 3600, 60, now), Err(Reason::LifetimeTooLong));
        let no_iat = serde_json::json!({"exp": now}).as_object().unwrap().clone();
        assert_eq!(lifetime_within(&no_iat, 3600, 60, now), Err(Reason::MissingIssuedAt));
    }

    #[test]
    fn header_types_compare_as_media_types() {
        let at = vec!["at+jwt".to_string()];
        assert!(type_allowed(Some("at+jwt"), &at));
        assert!(type_allowed(Some("application/AT+JWT"), &at));
        assert!(!type_allowed(Some("JWT"), &at));
        assert!(!type_allowed(None, &at));
        assert!(type_allowed(None, &["JWT".to_string(), String::new()]));
        assert!(!type_allowed(Some("jwt+at"), &at));
    }
}
