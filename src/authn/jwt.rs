//! JWT handling: an unverified peek that only routes, then verification against one issuer's keys.
//!
//! The peek never decides anything in the token's favour. It checks the compact form, reads
//! `alg`, `kid` and `iss`, refuses a member name repeated anywhere in header or payload, and
//! refuses header parameters that point at keys (`jku`, `jwk`, `x5u`, `x5c`), change how the
//! token is processed (`crit`, `b64`, nested JWTs) or belong to JWE and key agreement (`enc`,
//! `zip`, `epk`, ...): we never use them, and a token that carries them is not one our issuers
//! mint.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::keys::{AdmittedKey, KeySet, MAX_KID_BYTES};
use super::strict_json;
use crate::verdict::Reason;

/// A token without `kid` is tried against at most this many keys.
const MAX_CANDIDATES_WITHOUT_KID: usize = 8;

/// What the unverified token says about itself. Used only to pick an issuer and a key.
#[derive(Debug)]
pub struct Peeked {
    /// Header `alg`, parsed; not yet checked against the issuer's list.
    pub alg: Algorithm,
    /// Header `kid`.
    pub kid: Option<String>,
    /// Payload `iss`.
    pub iss: String,
    /// Header `typ`.
    pub typ: Option<String>,
}

/// The payload fields the peek reads. The derive refuses a duplicate `iss`.
#[derive(serde::Deserialize)]
struct RoutingClaims {
    iss: Option<Value>,
}

/// Header parameters a JWS from our issuers never carries: those that point at keys or
/// certificates (`jku`, `jwk`, `x5u`, `x5c`), change how the token is processed (`crit`, `b64`),
/// or belong to JWE and key agreement (RFC 7516: `enc`, `zip`; RFC 7518 4.6-4.8: `epk`, `apu`,
/// `apv`, `iv`, `tag`, `p2s`, `p2c`). A token mixing JOSE types is refused, not interpreted.
const REFUSED_HEADER_PARAMS: &[&str] =
    &["jku", "jwk", "x5u", "x5c", "crit", "b64", "enc", "zip", "epk", "apu", "apv", "iv", "tag", "p2s", "p2c"];

fn is_b64url(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Decodes a segment that must hold a JSON object. serde's derive would also take an array
/// positionally, so the object shape is checked first.
fn json_object_segment(segment: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    (*first == b'{').then_some(bytes)
}

/// Whether the token could be a JOSE object: its first dot-separated segment is base64url of a
/// JSON object. Such a token is only ever reviewed as a JWT, never introspected.
pub fn is_jose_shaped(token: &str) -> bool {
    token.split_once('.').is_some_and(|(first, _)| is_b64url(first) && json_object_segment(first).is_some())
}

/// Checks the compact JWS form and reads the routing fields.
pub fn peek(token: &str) -> Result<Peeked, Reason> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::MalformedToken);
    };
    if !(is_b64url(header) && is_b64url(payload) && is_b64url(signature)) {
        return Err(Reason::MalformedToken);
    }
    // Every member name once, at any depth: parsers disagree on which duplicate wins, and
    // kube-apiserver, an audit pipeline and we must read the same token. The payload gets the
    // same check in `verify`, once the issuer is known (so its rejections count for it).
    let header_bytes = json_object_segment(header).ok_or(Reason::MalformedToken)?;
    let mut h = strict_json::object(&header_bytes).ok_or(Reason::MalformedToken)?;
    if REFUSED_HEADER_PARAMS.iter().any(|p| h.contains_key(*p)) {
        return Err(Reason::HeaderNotAllowed);
    }
    if let Some(Value::String(cty)) = h.get("cty")
        && cty.eq_ignore_ascii_case("JWT")
    {
        return Err(Reason::HeaderNotAllowed);
    }
    let alg = match h.get("alg") {
        Some(Value::String(a)) => a.parse::<Algorithm>().map_err(|_| Reason::AlgorithmNotAllowed)?,
        _ => return Err(Reason::MalformedToken),
    };
    let kid = match h.remove("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if k.len() <= MAX_KID_BYTES => Some(k),
        Some(_) => return Err(Reason::MalformedToken),
    };
    let typ = match h.remove("typ") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t),
        Some(_) => return Err(Reason::MalformedToken),
    };
    let payload_bytes = json_object_segment(payload).ok_or(Reason::MalformedToken)?;
    let claims: RoutingClaims = serde_json::from_slice(&payload_bytes).map_err(|_| Reason::MalformedToken)?;
    let iss = match claims.iss {
        Some(Value::String(iss)) => iss,
        None | Some(Value::Null) => return Err(Reason::MissingIssuer),
        Some(_) => return Err(Reason::WrongIssuer),
    };
    Ok(Peeked { alg, kid, iss, typ })
}

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

/// The payload as a whole, without any check: only for a token [`verify`] has accepted (the
/// login plugin reads `nonce` and shows the claims) or to name a refused token's claim in an
/// error. `None` when it is not a JSON object.
pub fn payload_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&json_object_segment(payload)?).ok()
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
pub fn candidates<'a>(set: &'a KeySet, alg: Algorithm, kid: Option<&str>) -> Candidates<'a> {
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

/// The per-issuer, per-algorithm validation policy: `iss` exact, `aud` any of the configured
/// audiences, `exp` required, `nbf` checked when present, explicit leeway.
pub fn validation_for(alg: Algorithm, issuers: &[&str], audiences: &[String], leeway: u64) -> Validation {
    let mut v = Validation::new(alg);
    v.set_issuer(issuers);
    v.set_audience(audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.leeway = leeway;
    v
}

/// Verifies signature and registered claims with each candidate key until one verifies.
/// The library checks the signature before any claim, so claim errors only come from
/// genuinely signed tokens.
pub fn verify(token: &str, keys: &[&AdmittedKey], validation: &Validation) -> Result<Map<String, Value>, Reason> {
    unique_payload_members(token)?;
    let mut outcome = Err(Reason::BadSignature);
    for key in keys {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
            Ok(data) => return sane_dates(&data.claims).map(|()| data.claims),
            Err(e) => match e.kind() {
                ErrorKind::InvalidSignature => continue,
                kind => {
                    outcome = Err(reason_for(kind));
                    break;
                }
            },
        }
    }
    outcome
}

/// Refuses a payload that names a member twice, at any depth: the library (like serde_json)
/// would keep the last, another reader of the same token the first.
pub fn unique_payload_members(token: &str) -> Result<(), Reason> {
    let payload = token.split('.').nth(1).ok_or(Reason::MalformedToken)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Reason::MalformedToken)?;
    strict_json::object(&bytes).map(|_| ()).ok_or(Reason::MalformedToken)
}

/// The latest `exp` we accept: 9999-12-31T23:59:59Z.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// What the library leaves open about dates: it takes any number as `exp` (`1e300`, `2^63`: a
/// token that never expires, which kube-apiserver's own verifier would turn into a date in the
/// past), and never reads `iat`, so a string or `null` there passed. `exp` must be at most
/// [`MAX_NUMERIC_DATE`]; `iat` and `nbf`, when present, must be numbers.
fn sane_dates(claims: &Map<String, Value>) -> Result<(), Reason> {
    let number = |name: &str| claims.get(name).map(Value::as_f64);
    match number("exp") {
        Some(Some(exp)) if exp <= MAX_NUMERIC_DATE => {}
        _ => return Err(Reason::InvalidClaim),
    }
    if ["iat", "nbf"].iter().any(|name| matches!(number(name), Some(None))) {
        return Err(Reason::InvalidClaim);
    }
    Ok(())
}

fn reason_for(kind: &ErrorKind) -> Reason {
    match kind {
        ErrorKind::ExpiredSignature => Reason::Expired,
        ErrorKind::ImmatureSignature => Reason::NotYetValid,
        ErrorKind::InvalidAudience => Reason::WrongAudience,
        ErrorKind::InvalidIssuer => Reason::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => Reason::MissingExpiry,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => Reason::MissingAudience,
        ErrorKind::MissingRequiredClaim(_) => Reason::MissingIssuer,
        ErrorKind::InvalidClaimFormat(_) => Reason::InvalidClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm | ErrorKind::InvalidAlgorithmName => {
            Reason::AlgorithmNotAllowed
        }
        ErrorKind::Json(_) | ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            Reason::MalformedToken
        }
        _ => Reason::BadSignature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    const ISS: &str = r#"{"iss":"https://idp.example.com"}"#;

    #[test]
    fn peek_reads_alg_kid_and_iss() {
        let p = peek(&token(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#, ISS)).unwrap();
        assert_eq!(p.alg, Algorithm::RS256);
        assert_eq!(p.kid.as_deref(), Some("k1"));
        assert_eq!(p.iss, "https://idp.example.com");
    }

    #[test]
    fn anything_that_could_be_jose_is_never_treated_as_opaque() {
        assert!(is_jose_shaped(&token(r#"{"alg":"RS256"}"#, ISS)));
        assert!(is_jose_shaped(&format!("{}.not-even-a-payload", b64(r#"{"alg":"none"}"#))));
        assert!(is_jose_shaped(&format!("{}.a.b.c.d", b64(r#"{"enc":"A256GCM"}"#))));
        for opaque in ["glpat-0123456789abcdef", "ory_at_abc.def", "ya29.a0AfH6SMB", "v4.public.eyJ", "abc"] {
            assert!(!is_jose_shaped(opaque), "{opaque}");
        }
    }

    #[test]
    fn peek_refuses_what_is_not_a_compact_jws() {
        for t in [
            "".to_string(),
            "abc".to_string(),
            "a.b".to_string(),
            "a.b.c.d.e".to_string(),
            format!("{}.{}.", b64(r#"{"alg":"RS256"}"#), b64(ISS)),
            format!("{}.{}.sig=", b64(r#"{"alg":"RS256"}"#), b64(ISS)),
            format!("{} .{}.sig", b64(r#"{"alg":"RS256"}"#), b64(ISS)),
            token(r#"["RS256"]"#, ISS),
            token(r#"{"alg":"RS256"}"#, r#"["https://idp.example.com"]"#),
            token(r#"{"alg":"RS256","alg":"HS256"}"#, ISS),
            token(r#"{"alg":"RS256","kid":7}"#, ISS),
            token(r#"{"alg":"RS256"}"#, r#"{"iss":"a","iss":"b"}"#),
            token(r#"{"kid":"x"}"#, ISS),
            token(r#"{"alg":"RS256","kid":"x"}"#, "not json"),
        ] {
            assert_eq!(peek(&t).err(), Some(Reason::MalformedToken), "{t}");
        }
    }

    #[test]
    fn peek_refuses_none_hmac_and_unknown_algorithms() {
        for alg in ["none", "None", "NONE", "", "rs256", "ES512", "ES256K", "RSA-OAEP"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), ISS);
            assert_eq!(peek(&t).err(), Some(Reason::AlgorithmNotAllowed), "{alg}");
        }
        // HS256 parses; the issuer's allow-list (never HS*) refuses it later.
        assert_eq!(peek(&token(r#"{"alg":"HS256"}"#, ISS)).unwrap().alg, Algorithm::HS256);
    }

    #[test]
    fn peek_refuses_key_pointing_and_processing_headers() {
        for extra in [
            r#""jku":"https://evil.example/jwks""#,
            r#""jwk":{"kty":"RSA"}"#,
            r#""x5u":"https://evil.example/cert""#,
            r#""x5c":["MIIB"]"#,
            r#""crit":["exp"]"#,
            r#""b64":false"#,
            r#""zip":"DEF""#,
            r#""enc":"A128GCM""#,
            r#""cty":"JWT""#,
            r#""epk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#,
            r#""apu":"QWxpY2U""#,
            r#""apv":"Qm9i""#,
            r#""iv":"AAAAAAAAAAAAAAAA""#,
            r#""tag":"AAAAAAAAAAAAAAAAAAAAAA""#,
            r#""p2s":"c2FsdA""#,
            r#""p2c":4096"#,
            r#""jku":null"#,
        ] {
            let t = token(&format!(r#"{{"alg":"RS256",{extra}}}"#), ISS);
            assert_eq!(peek(&t).err(), Some(Reason::HeaderNotAllowed), "{extra}");
        }
    }

    #[test]
    fn a_member_name_repeated_at_any_depth_is_malformed() {
        for (header, payload) in [
            (r#"{"alg":"RS256","typ":"JWT","typ":"at+jwt"}"#, ISS),
            (r#"{"alg":"RS256"}"#, r#"{"iss":"https://idp.example.com","groups":["a"],"groups":["system:masters"]}"#),
            (r#"{"alg":"RS256"}"#, r#"{"iss":"https://idp.example.com","sub":"a","\u0073ub":"b"}"#),
            (r#"{"alg":"RS256"}"#, r#"{"iss":"https://idp.example.com","x":{"k":[{"role":"a","role":"b"}]}}"#),
        ] {
            let t = token(header, payload);
            let found = peek(&t).err().or_else(|| unique_payload_members(&t).err());
            assert_eq!(found, Some(Reason::MalformedToken), "{header} {payload}");
        }
        let fine =
            token(r#"{"alg":"RS256","kid":null}"#, r#"{"iss":"https://idp.example.com","a":{"k":1},"b":{"k":2}}"#);
        assert!(peek(&fine).is_ok() && unique_payload_members(&fine).is_ok());
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
        assert_eq!(peek(&token(r#"{"alg":"RS256","typ":"at+jwt"}"#, ISS)).unwrap().typ.as_deref(), Some("at+jwt"));
        assert_eq!(peek(&token(r#"{"alg":"RS256","typ":1}"#, ISS)).err(), Some(Reason::MalformedToken));
    }

    #[test]
    fn peek_requires_a_string_iss() {
        assert_eq!(peek(&token(r#"{"alg":"RS256"}"#, "{}")).err(), Some(Reason::MissingIssuer));
        assert_eq!(peek(&token(r#"{"alg":"RS256"}"#, r#"{"iss":["a"]}"#)).err(), Some(Reason::WrongIssuer));
    }

    #[test]
    fn peek_never_panics_on_arbitrary_input() {
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1du64);
        let alphabet: Vec<char> = "eyJ.-_AZaz09{}\":,[]\\ \u{0}é".chars().collect();
        let fragments = [r#"{"alg":"RS256"}"#, r#"{"iss":"x"}"#, r#"{"alg":null}"#, "[]", "{", "\u{feff}{}", "{\"a\":"];
        for _ in 0..20_000 {
            let mut token = String::new();
            for _ in 0..(next() % 80) {
                token.push(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            let _ = peek(&token);
            let (h, p) = (fragments[(next() % 7) as usize], fragments[(next() % 7) as usize]);
            let _ = peek(&format!("{}.{}.{}", b64(h), b64(p), &token.replace('.', "")));
        }
    }

    #[test]
    fn dates_beyond_year_9999_or_of_the_wrong_type_are_invalid() {
        let check = |v: Value| sane_dates(v.as_object().unwrap());
        assert_eq!(check(serde_json::json!({"exp": 253_402_300_799u64, "iat": 1.5, "nbf": 0})), Ok(()));
        for bad in [
            serde_json::json!({"exp": 253_402_300_800u64}),
            serde_json::json!({"exp": 1e300}),
            serde_json::json!({"exp": 9_223_372_036_854_775_807i64}),
            serde_json::json!({"exp": u64::MAX}),
            serde_json::json!({"exp": "2000000000"}),
            serde_json::json!({}),
            serde_json::json!({"exp": 2_000_000_000, "iat": "1"}),
            serde_json::json!({"exp": 2_000_000_000, "iat": null}),
            serde_json::json!({"exp": 2_000_000_000, "nbf": [1]}),
        ] {
            assert_eq!(check(bad.clone()), Err(Reason::InvalidClaim), "{bad}");
        }
    }

    #[test]
    fn an_overlong_kid_is_malformed() {
        let t = token(&format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(300)), ISS);
        assert_eq!(peek(&t).err(), Some(Reason::MalformedToken));
    }
}
